//! Helpers shared by the end-to-end tests: starting a gateway on a free port, a
//! WebSocket client that reads protocol frames, and a bare HTTP/1.1 client.
//! Every wait is bounded so that a broken gateway fails a test instead of hanging it.

#![allow(dead_code)] // each test file uses a different subset

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use roomcast_core::store::Store;
use roomcast_core::store::memory::MemoryStore;
use roomcast_local::{GatewayOptions, RunningGateway};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret, issuer and audience of the tests' tokens.
pub const JWT_SECRET: &[u8] = b"e2e-test-only-secret-0123456789abcdef";
pub const JWT_ISS: &str = "https://issuer.test";
pub const JWT_AUD: &str = "roomcast-e2e";

/// A token for `sub` with `roles`, expiring at `exp` (epoch seconds).
pub fn token(sub: &str, roles: &[&str], exp: u64) -> String {
    let claims = json!({"sub": sub, "iss": JWT_ISS, "aud": JWT_AUD, "exp": exp, "roles": roles});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET),
    )
    .expect("a token")
}

/// roomcast's authorizer verifying [`token`]s, without leeway.
pub fn authorizer(allow_anonymous: bool) -> Arc<roomcast_core::auth::Authorizer> {
    use roomcast_core::auth::jwt::{JWKS_MAX_AGE, JWKS_MIN_REFRESH, JwtConfig};
    Arc::new(roomcast_core::auth::Authorizer::new(
        roomcast_core::auth::AuthConfig {
            jwt: Some(JwtConfig {
                secret: Some(JWT_SECRET.to_vec()),
                jwks_url: None,
                issuer: JWT_ISS.into(),
                audience: JWT_AUD.into(),
                leeway_secs: 0,
                jwks_min_refresh: JWKS_MIN_REFRESH,
                jwks_max_age: JWKS_MAX_AGE,
            }),
            allow_anonymous,
            origins: Default::default(),
        },
    ))
}

/// Generous bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn options() -> GatewayOptions {
    GatewayOptions {
        port: 0,
        ..GatewayOptions::default()
    }
}

/// How the gateway's own handlers reach its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Straight to the connections' queues (`roomcast dev`'s default).
    InProcess,
    /// Through the `@connections` endpoint with the real HTTP adapter
    /// (`roomcast dev --management-http`).
    Http,
}

/// [`options`] for `delivery`.
pub fn options_for(delivery: Delivery) -> GatewayOptions {
    GatewayOptions {
        management_http: delivery == Delivery::Http,
        ..options()
    }
}

/// Declares each `async fn name(delivery: Delivery) { ... }` as a module `name`
/// with two tests, `in_process` and `over_http`: the same body against both ways
/// the gateway's handlers deliver.
#[macro_export]
macro_rules! in_both_deliveries {
    ($($(#[$doc:meta])* async fn $name:ident($delivery:ident: Delivery) $body:block)*) => {$(
        $(#[$doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($delivery: $crate::support::Delivery) $body

            #[tokio::test]
            async fn in_process() {
                run($crate::support::Delivery::InProcess).await
            }

            #[tokio::test]
            async fn over_http() {
                run($crate::support::Delivery::Http).await
            }
        }
    )*};
}

pub async fn sdk() -> aws_config::SdkConfig {
    roomcast_local::local_sdk_config("us-east-1").await
}

/// `n` clients connected to `gateway`, each a member of `room`.
pub async fn clients_in(gateway: &RunningGateway, room: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let mut c = Client::connect(&gateway.websocket_url()).await;
        c.join(room).await;
        clients.push(c);
    }
    clients
}

/// A gateway on a free port with the in-memory store.
pub async fn start(options: GatewayOptions) -> RunningGateway {
    start_with(options, Arc::new(MemoryStore::new()), "test".into()).await
}

pub async fn start_with(
    options: GatewayOptions,
    store: Arc<dyn Store>,
    table: String,
) -> RunningGateway {
    roomcast_local::serve(options, store, table, &sdk().await)
        .await
        .expect("gateway starts")
}

/// An SDK client for the gateway's @connections endpoint.
pub async fn management(endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk().await)
        .endpoint_url(endpoint)
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("handshake in time")
            .expect("handshake accepted");
        Self { ws }
    }

    /// A client over a stream connected elsewhere (e.g. with extra handshake headers).
    pub fn from_stream(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self { ws }
    }

    pub async fn send_raw(&mut self, message: Message) {
        tokio::time::timeout(WAIT, self.ws.send(message))
            .await
            .expect("send in time")
            .expect("send succeeds");
    }

    /// Sends without asserting success (the gateway may already have closed).
    pub async fn try_send(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        tokio::time::timeout(WAIT, self.ws.send(message))
            .await
            .expect("send in time")
    }

    pub fn stream(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }

    pub async fn send(&mut self, frame: Value) {
        self.send_raw(Message::text(frame.to_string())).await;
    }

    /// The next data frame (text), skipping control frames.
    pub async fn next_text(&mut self) -> String {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame in time")
                .expect("connection open")
                .expect("frame reads");
            match message {
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    pub async fn next_json(&mut self) -> Value {
        let text = self.next_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Sends a frame and returns the next frame received.
    pub async fn request(&mut self, frame: Value) -> Value {
        self.send(frame).await;
        self.next_json().await
    }

    pub async fn join(&mut self, room: &str) {
        let ack = self
            .request(json!({"action": "join", "room": room, "id": "j"}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!(ack["ok"], true, "{ack}");
    }

    /// Proves nothing else was queued for this client: a ping's pong is the next frame.
    pub async fn assert_nothing_pending(&mut self) {
        let pong = self.request(json!({"action": "ping", "id": "p"})).await;
        assert_eq!((&pong["type"], &pong["id"]), (&json!("pong"), &json!("p")));
    }

    /// Reads until the server's close frame and returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("close in time");
            match next {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return (u16::from(code), reason.as_str().to_owned());
                }
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(WAIT, self.ws.close(None)).await;
        // Read the server's close echo so the handshake completes.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

/// Three clients of the gateway at `url`, the first two (alice and bob) in room
/// `chat:1`.
pub async fn alice_bob_and_carol(url: &str) -> (Client, Client, Client) {
    let (mut alice, mut bob, carol) = (
        Client::connect(url).await,
        Client::connect(url).await,
        Client::connect(url).await,
    );
    alice.join("chat:1").await;
    bob.join("chat:1").await;
    (alice, bob, carol)
}

/// A `msg` event sent by `sender` to `room` (frame id `id`) is acked as reaching
/// no member.
pub async fn assert_send_reaches_nobody(sender: &mut Client, room: &str, id: u64) {
    let ack = sender
        .request(json!({"action": "send", "room": room, "event": "msg", "id": id}))
        .await;
    assert_eq!(
        (&ack["recipients"], &ack["delivered"]),
        (&json!(0), &json!(0)),
        "{ack}"
    );
}

/// The connection id of `who`, learnt the way clients learn each other's: `who` sends
/// an event to a room `witness` is in, and the event says who sent it.
pub async fn connection_id(who: &mut Client, witness: &mut Client, room: &str) -> String {
    who.join(room).await;
    witness.join(room).await;
    who.send(json!({"action": "send", "room": room, "event": "hi", "id": 1}))
        .await;
    let event = witness.next_json().await;
    assert_eq!(event["type"], "event", "{event}");
    let ack = who.next_json().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    sender_id(&event)
}

/// The connection id of the sender of an `event` frame.
pub fn sender_id(event: &Value) -> String {
    let id = event["from"]["connectionId"].as_str();
    id.expect("connectionId").to_owned()
}

/// Waits (bounded) until the store no longer holds `connection_id`: $disconnect ran.
pub async fn until_removed(store: &dyn Store, connection_id: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            let now = roomcast_core::store::now_secs();
            if store
                .connection(connection_id, now)
                .await
                .expect("store reads")
                .is_none()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("$disconnect removed the connection in time");
}

/// A plain HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), so tests can
/// send exactly the bytes they mean to, bad ones included.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    tokio::time::timeout(WAIT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connects");
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("writes");
        stream.write_all(body).await.expect("writes");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("reads");
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        HttpResponse {
            status,
            headers,
            body: body.to_owned(),
        }
    })
    .await
    .expect("HTTP response in time")
}

pub fn is_tungstenite_http_error(e: &tungstenite::Error, status: u16) -> bool {
    matches!(e, tungstenite::Error::Http(response) if response.status().as_u16() == status)
}
