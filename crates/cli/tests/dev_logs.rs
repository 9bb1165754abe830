//! The `roomcast dev` binary's logs through an authenticated session, at TRACE:
//! neither the token, nor a frame's body, nor the authorizer context appears in
//! them at any level, and each connection gets one INFO line per event (none with
//! `--quiet`).

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod support;

const SECRET: &str = "dev-logs-test-secret-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);
/// A frame body no log line has any business repeating.
const BODY_MARKER: &str = "body-marker-7f3a9c2e51";

/// `roomcast dev` with a JWT secret on a free port, logging at `rust_log`; its
/// WebSocket URL once it is listening, and its stdout lines so far.
fn start(rust_log: &str, extra: &[&str]) -> (Child, String, mpsc::Receiver<String>) {
    let jwt = ["--jwt-issuer", "iss.test", "--jwt-audience", "aud.test"];
    let (child, received) =
        support::spawn_dev(&[&["--port", "0"], &jwt[..], extra].concat(), |c| {
            c.env("ROOMCAST_JWT_SECRET", SECRET)
                .env("RUST_LOG", rust_log)
                .env("NO_COLOR", "1")
                .stderr(Stdio::piped())
        });
    let mut url = None;
    while url.is_none() {
        let line = received.recv_timeout(WAIT).expect("the banner in time");
        url = line
            .split_once("WebSocket URL:")
            .map(|(_, u)| u.trim().to_owned());
    }
    (child, url.expect("a URL"), received)
}

/// Stops the child with SIGINT (Ctrl-C) and returns everything it wrote.
fn stop(mut child: Child, stdout: &mpsc::Receiver<String>) -> String {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr reads");
    let exit = child.wait().expect("roomcast dev exits");
    assert!(exit.success(), "{exit}: {stderr}");
    let out: Vec<String> = stdout.try_iter().collect();
    format!("{}\n{stderr}", out.join("\n"))
}

fn token(exp: u64) -> String {
    let claims = json!({"sub": "log-user", "iss": "iss.test", "aud": "aud.test", "exp": exp, "roles": ["member"]});
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends a frame and returns the next text frame, as JSON.
async fn request(ws: &mut Socket, frame: Value) -> Value {
    ws.send(Message::text(frame.to_string()))
        .await
        .expect("sent");
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a reply in time");
        if let Some(Ok(Message::Text(text))) = next {
            return serde_json::from_str(text.as_str()).expect("JSON");
        }
    }
}

/// A WebSocket session of `roomcast dev` at `url`, authenticated with `token`.
async fn connect(url: &str, token: &str) -> Socket {
    let connecting = tokio_tungstenite::connect_async(format!("{url}?token={token}"));
    let (ws, _) = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    ws
}

/// Connects with `token`, joins a room, sends a frame carrying [`BODY_MARKER`]
/// and waits for its ack; then closes.
async fn session(url: &str, token: &str) {
    let mut ws = connect(url, token).await;
    // A second member, so the frame's event goes out through @connections.
    let mut witness = connect(url, token).await;
    for socket in [&mut witness, &mut ws] {
        let joined = request(socket, json!({"action": "join", "room": "logs:1", "id": 1})).await;
        assert_eq!(joined["ok"], true, "{joined}");
    }
    let sent = request(&mut ws, json!({"action": "send", "room": "logs:1", "event": "msg", "data": {"text": BODY_MARKER}, "id": 2})).await;
    assert_eq!(
        (&sent["type"], &sent["delivered"]),
        (&json!("ack"), &json!(1)),
        "{sent}"
    );
    for mut socket in [witness, ws] {
        let _ = socket.close(None).await;
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, socket.next()).await {}
    }
}

/// Waits (bounded) until the child's stdout shows a line containing `text`.
fn until_logged(stdout: &mpsc::Receiver<String>, seen: &mut Vec<String>, text: &str) {
    while !seen.iter().any(|l| l.contains(text)) {
        seen.push(
            stdout
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("{text:?} logged in time")),
        );
    }
}

#[tokio::test]
async fn tokens_bodies_and_contexts_never_reach_the_logs_even_at_trace() {
    let (child, url, stdout) = start("trace", &[]);
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = token(exp);
    session(&url, &token).await;
    let mut seen = Vec::new();
    until_logged(&stdout, &mut seen, "disconnected");
    let mut logs = seen.join("\n");
    logs.push_str(&stop(child, &stdout));
    // The session really was logged below INFO...
    assert!(logs.contains("DEBUG"), "no DEBUG lines: {logs}");
    assert!(logs.contains("connected"), "{logs}");
    // ...without the token (nor its signature part), the body or the context.
    let signature = token.rsplit('.').next().unwrap();
    for secret in [
        token.as_str(),
        signature,
        BODY_MARKER,
        &exp.to_string(),
        SECRET,
    ] {
        assert!(!logs.contains(secret), "{secret:?} is in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn one_info_line_per_connection_event_and_none_with_quiet() {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    for quiet in [false, true] {
        let flags: &[&str] = if quiet { &["--quiet"] } else { &[] };
        let (child, url, stdout) = start("", flags);
        session(&url, &token(exp)).await;
        // A refused handshake is a connection event too.
        let refused = tokio_tungstenite::connect_async(format!("{url}?token=garbage")).await;
        assert!(refused.is_err());
        let mut seen = Vec::new();
        if !quiet {
            until_logged(&stdout, &mut seen, "handshake refused");
        }
        let logs = format!("{}\n{}", seen.join("\n"), stop(child, &stdout));
        let info: Vec<&str> = logs.lines().filter(|l| l.contains(" INFO ")).collect();
        let per_connection: Vec<&&str> = info
            .iter()
            .filter(|l| l.contains("roomcast::connection"))
            .collect();
        if quiet {
            assert!(per_connection.is_empty(), "{logs}");
        } else {
            // Two connections, connected and disconnected, and the refused
            // handshake: one line each.
            assert_eq!(per_connection.len(), 5, "{logs}");
            assert_eq!(info.len(), per_connection.len(), "other INFO lines: {logs}");
        }
    }
}
