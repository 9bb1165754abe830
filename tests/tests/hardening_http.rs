//! The management endpoints (`@connections`, Lambda Invoke, the queue's `POST /`,
//! `/metrics`) against requests a web page can make, oversized or slow bodies,
//! and sockets that never send a request; the WebSocket endpoint beside them.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use roomcast_local::{GatewayOptions, ManagementCredentials};
use serde_json::json;
use support::{Client, WAIT, http, options, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INVOKE: &str = "/2015-03-31/functions/broadcast/invocations";

/// Sends `head` (request line and headers, without the blank line) and `body`
/// as they are; the status and body of the answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> (u16, String) {
    tokio::time::timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let request = format!(
            "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.expect("writes");
        stream.write_all(body).await.expect("writes");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("reads");
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        (status, body.unwrap_or_default())
    })
    .await
    .expect("an answer in time")
}

/// A WebSocket handshake request for `url` with one header set.
fn handshake_with(
    url: &str,
    name: &'static str,
    value: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(name, value.parse().unwrap());
    request
}

/// The start of the answer to a JSON POST's headers declaring `len` bytes, sent
/// without any of the body.
async fn answer_to_headers(addr: SocketAddr, path: &str, len: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0; 1024];
    let n = tokio::time::timeout(WAIT, stream.read(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn broadcast_to(room: &str) -> Vec<u8> {
    json!({"room": room, "event": "e", "data": 1})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn requests_a_web_page_can_make_are_refused_on_loopback() {
    let gateway = start(options()).await;
    let addr = gateway.local_addr();
    let mut member = Client::connect(&gateway.websocket_url()).await;
    member.join("news").await;
    let body = broadcast_to("news");

    let page_requests: [&[(&str, &str)]; 5] = [
        // The simple cross-site request a page sends without a preflight.
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "https://evil.example"),
        ],
        &[("Origin", "null")],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Sec-Fetch-Site", "same-site")],
        &[("Content-Type", "application/x-www-form-urlencoded")],
    ];
    for headers in page_requests {
        let answer = http(addr, "POST", INVOKE, headers, &body).await;
        assert_eq!(answer.status, 403, "{headers:?}: {}", answer.body);
        assert_eq!(
            answer.header("x-amzn-ErrorType"),
            Some("AccessDeniedException")
        );
        assert!(answer.json()["message"].is_string(), "{}", answer.body);
    }
    // DNS rebinding: the page's own name in Host.
    let (status, _) = raw(
        addr,
        &format!(
            "POST {INVOKE} HTTP/1.1\r\nHost: evil.example:{}",
            addr.port()
        ),
        &body,
    )
    .await;
    assert_eq!(status, 403);
    member.assert_nothing_pending().await;

    // @connections, the queue and /metrics are guarded the same way.
    let origin = [("Origin", "https://evil.example")];
    for (method, path) in [
        ("POST", "/local/@connections/abc"),
        ("GET", "/local/@connections/abc"),
        ("DELETE", "/@connections/abc"),
        ("POST", "/"),
        ("GET", "/metrics"),
    ] {
        let answer = http(addr, method, path, &origin, b"").await;
        assert_eq!(answer.status, 403, "{method} {path}: {}", answer.body);
        assert_eq!(
            answer.header("x-amzn-ErrorType"),
            Some("ForbiddenException")
        );
    }
    member.assert_nothing_pending().await;

    // What the SDKs and CLIs send is served: by name, by IPv4 or IPv6 loopback.
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let head = format!(
            "POST {INVOKE} HTTP/1.1\r\nHost: {host}:{}\r\nContent-Type: application/json",
            addr.port()
        );
        let (status, answer) = raw(addr, &head, &body).await;
        assert_eq!(status, 200, "{host}: {answer}");
        assert_eq!(member.next_json().await["event"], "e");
    }
    assert_eq!(http(addr, "GET", "/metrics", &[], b"").await.status, 200);
    // The WebSocket endpoint keeps its own rule (the origin allowlist, open here).
    let request = handshake_with(&gateway.websocket_url(), "origin", "https://evil.example");
    assert!(tokio_tungstenite::connect_async(request).await.is_ok());
}

/// A gateway on every interface, with management keys.
async fn exposed(options: GatewayOptions) -> roomcast_local::RunningGateway {
    start(GatewayOptions {
        host: "0.0.0.0".into(),
        management_credentials: Some(ManagementCredentials::new("AKIDLOCAL", "secret")),
        ..options
    })
    .await
}

#[tokio::test]
async fn off_loopback_unsigned_bodies_are_refused_before_they_are_read() {
    let gateway = exposed(options()).await;
    let port = gateway.local_addr().port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Headers promising 6 MB, and no body at all: the refusal comes first.
    let answer = answer_to_headers(addr, INVOKE, 6 * 1024 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains("MissingAuthenticationTokenException"),
        "{answer}"
    );

    // /metrics needs a signature off loopback too.
    assert_eq!(http(addr, "GET", "/metrics", &[], b"").await.status, 403);
}

#[tokio::test]
async fn bodies_over_the_apis_limits_are_refused_unread() {
    let gateway = start(options()).await;
    let addr = gateway.local_addr();
    let cases = [
        (
            "/local/@connections/abc",
            128 * 1024 + 1,
            "PayloadTooLargeException",
        ),
        (INVOKE, 6 * 1024 * 1024 + 1, "RequestTooLargeException"),
    ];
    for (path, len, code) in cases {
        let answer = answer_to_headers(addr, path, len).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains(code), "{path}: {answer}");
    }
    // Under Lambda's 6 MB (and over axum's default 2 MB), Invoke reads it all.
    let big = json!({"room": "nobody", "event": "e", "data": "x".repeat(3 * 1024 * 1024)});
    let answer = http(
        addr,
        "POST",
        INVOKE,
        &[("Content-Type", "application/json")],
        big.to_string().as_bytes(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn silent_sockets_and_slow_bodies_are_cut_off() {
    let gateway = start(GatewayOptions {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..options()
    })
    .await;
    let addr = gateway.local_addr();
    // A socket that sends nothing is closed by the gateway (read returns 0).
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("closed by the gateway")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A body promised and never sent: 408.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {INVOKE} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let n = tokio::time::timeout(WAIT, slow.read(&mut buf))
        .await
        .expect("answered")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

/// A template whose only route is `$connect`, run by a function behind `endpoint`.
const CONNECT_ONLY: &str = r#"
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: $request.body.action}
  Connect:
    Type: AWS::Serverless::Function
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Connect.Arn}/invocations
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref Api
      RouteKey: $connect
      Target: !Sub integrations/${ConnectIntegration}
"#;

/// An Invoke endpoint that records every event and answers 200.
async fn recording_endpoint(
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
) -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/2015-03-31/functions/{function}/invocations",
        post(move |body: String| async move {
            let event = serde_json::from_str(&body).unwrap_or_default();
            seen.lock().unwrap().push(event);
            json!({"statusCode": 200}).to_string()
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn domain_name_is_the_gateways_own_address_not_the_clients_host() {
    use roomcast_local::template::Template;
    use roomcast_local::{FunctionMode, SamOptions};
    let seen = std::sync::Arc::default();
    let endpoint = recording_endpoint(std::sync::Arc::clone(&seen)).await;
    let gateway = start(GatewayOptions {
        sam: Some(SamOptions {
            template: std::sync::Arc::new(Template::parse(CONNECT_ONLY).unwrap()),
            environment: Default::default(),
            mode: FunctionMode::Remote {
                endpoint,
                names: Default::default(),
            },
        }),
        ..options()
    })
    .await;
    let request = handshake_with(&gateway.websocket_url(), "host", "evil.example");
    let (_ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let events = seen.lock().unwrap().clone();
    let connect = events.first().expect("$connect ran");
    assert_eq!(
        connect["requestContext"]["domainName"],
        gateway.local_addr().to_string(),
        "{connect}"
    );
}

#[tokio::test]
async fn a_missing_static_file_is_404_and_a_hidden_one_behind_a_symlink_is_not_served() {
    let root = std::env::temp_dir().join(format!("roomcast-static-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), "page").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1").unwrap();
    std::os::unix::fs::symlink(root.join(".env"), root.join("env.txt")).unwrap();
    let gateway = start(GatewayOptions {
        static_dir: Some(roomcast_local::StaticDir::new(&root).unwrap()),
        ..options()
    })
    .await;
    let addr = gateway.local_addr();
    assert_eq!(http(addr, "GET", "/index.html", &[], b"").await.status, 200);
    assert_eq!(http(addr, "GET", "/missing.js", &[], b"").await.status, 404);
    let through_link = http(addr, "GET", "/env.txt", &[], b"").await;
    assert_eq!(through_link.status, 404);
    assert!(!through_link.body.contains("SECRET"));
    // The gateway's own routes still answer beside the files.
    assert_eq!(http(addr, "GET", "/metrics", &[], b"").await.status, 200);
    assert_eq!(http(addr, "POST", "/nowhere", &[], b"").await.status, 403);
    std::fs::remove_dir_all(&root).unwrap();
}

/// This machine's address on its default route, if it has one (no packet is sent).
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("198.51.100.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn one_address_holds_at_most_its_cap_of_sockets() {
    let Some(ip) = non_loopback_ip() else {
        println!("SKIPPED: no non-loopback address to connect from");
        return;
    };
    let gateway = exposed(GatewayOptions {
        max_connections_per_address: 2,
        ..options()
    })
    .await;
    let url = format!(
        "ws://{}/local",
        SocketAddr::new(ip, gateway.local_addr().port())
    );
    let first = Client::connect(&url).await;
    let _second = Client::connect(&url).await;
    let third = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .expect("an answer in time");
    assert!(third.is_err(), "a third socket from {ip} was served");
    // A closed socket gives its place back.
    first.close().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio_tungstenite::connect_async(&url).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Loopback clients are not counted.
    let local = gateway.websocket_url().replace("0.0.0.0", "127.0.0.1");
    let mut many = Vec::new();
    for _ in 0..4 {
        many.push(Client::connect(&local).await);
    }
}

/// A signed Invoke of `broadcast` with `body`, as raw headers for `addr`.
fn signed_invoke(addr: SocketAddr, body: &[u8]) -> Vec<(String, String)> {
    use roomcast_core::management::sigv4::{Key, Request, Signer};
    let key = Key {
        access_key_id: "AKIDLOCAL",
        secret_access_key: "secret",
        session_token: None,
        region: "us-east-1",
        service: "lambda",
    };
    let host = addr.to_string();
    let request = Request {
        method: "POST",
        host: &host,
        path: INVOKE,
        headers: &[("content-type", "application/json")],
        body,
    };
    let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    for (name, value) in Signer::default().sign(&key, &request, std::time::SystemTime::now()) {
        headers.push((name.to_string(), value.to_string()));
    }
    headers
}

#[tokio::test]
async fn an_x_amz_header_added_after_signing_is_refused() {
    let gateway = exposed(options()).await;
    let addr: SocketAddr = ([127, 0, 0, 1], gateway.local_addr().port()).into();
    let body = broadcast_to("nobody");
    let signed = signed_invoke(addr, &body);
    let head = |extra: &str| {
        let mut head = format!("POST {INVOKE} HTTP/1.1\r\nHost: {addr}");
        for (name, value) in &signed {
            head.push_str(&format!("\r\n{name}: {value}"));
        }
        head + extra
    };
    let (status, answer) = raw(addr, &head(""), &body).await;
    assert_eq!(status, 200, "the signed call itself: {answer}");
    let (status, answer) = raw(addr, &head("\r\nX-Amz-Invocation-Type: Event"), &body).await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("x-amz-"), "{answer}");
}
