//! A local HTTP server answering `@connections` calls the way API Gateway does,
//! for the management adapter's tests and the fan-out benchmark.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as the sink received it.
#[derive(Debug, Clone)]
#[allow(dead_code)] // each test target uses a different part
pub struct Seen {
    /// The request line, e.g. `POST /test/@connections/ok HTTP/1.1`.
    pub line: String,
    /// Header names (lower-cased) and values, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[allow(dead_code)] // each test target uses a different part
impl Seen {
    /// The value of the header `name` (lower-case), if the request had one.
    pub fn header(&self, name: &str) -> Option<&str> {
        let found = self.headers.iter().find(|(n, _)| n == name);
        found.map(|(_, v)| v.as_str())
    }
}

/// What to answer a request with: the status line's code and reason, the
/// `x-amzn-ErrorType` (empty: none) and the JSON body.
pub type Answer = fn(&Seen) -> (&'static str, &'static str, String);

/// Answers `@connections` calls by the connection id's first word, the way API
/// Gateway answers: status, `x-amzn-ErrorType` and a JSON message. Records each
/// request.
pub async fn serve() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let (base, seen) = serve_with(connections).await;
    (format!("{base}/test"), seen)
}

fn connections(request: &Seen) -> (&'static str, &'static str, String) {
    let (status, kind) = match request.line.split("/@connections/").nth(1).unwrap_or("") {
        id if id.starts_with("gone") => ("410 Gone", "GoneException"),
        id if id.starts_with("big") => ("413 Payload Too Large", "PayloadTooLargeException"),
        id if id.starts_with("busy") => ("429 Too Many Requests", "LimitExceededException"),
        id if id.starts_with("nope") => ("403 Forbidden", "ForbiddenException"),
        id if id.starts_with("boom") => {
            ("500 Internal Server Error", "InternalServerErrorException")
        }
        _ => ("200 OK", ""),
    };
    let body = if kind.is_empty() {
        String::new()
    } else {
        r#"{"message":null}"#.to_owned()
    };
    (status, kind, body)
}

/// A server answering every request with `answer`, recording each; its base URL.
pub async fn serve_with(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + length {
                        continue;
                    }
                    let body = buf[end + 4..end + 4 + length].to_vec();
                    buf.drain(..end + 4 + length);
                    let mut lines = head.lines();
                    let line = lines.next().unwrap().to_owned();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let request = Seen {
                        line,
                        headers,
                        body,
                    };
                    let (status, kind, body) = answer(&request);
                    log.lock().unwrap().push(request);
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nx-amzn-ErrorType: {kind}\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}
