//! `roomcast dev`'s log written to a pipe (a file, a CI log) is plain text: no ANSI
//! colour codes, with `NO_COLOR` unset.

use std::process::Stdio;
use std::time::Duration;

mod support;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn the_log_has_no_colour_codes_when_stdout_is_not_a_terminal() {
    let (mut child, received) = support::spawn_dev(&["--port", "0"], |c| {
        c.env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stderr(Stdio::null())
    });
    let mut seen = Vec::new();
    let url = loop {
        let line = received.recv_timeout(WAIT).expect("the banner in time");
        seen.push(line.clone());
        if let Some((_, url)) = line.split_once("WebSocket URL:") {
            break url.trim().to_owned();
        }
    };
    // A connection, so that a tracing line (with its level and target) is logged.
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    loop {
        let line = received
            .recv_timeout(WAIT)
            .expect("a connection line in time");
        seen.push(line.clone());
        if line.contains("INFO") {
            break;
        }
    }
    drop(ws);
    child.kill().expect("stopped");
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log:\n{log:?}"
    );
}
