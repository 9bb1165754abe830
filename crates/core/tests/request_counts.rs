//! What each route costs in DynamoDB requests, measured: the handlers run over the
//! DynamoDB store, whose requests go through a counting TCP proxy in front of
//! dynalite (started by scripts/test, which sets ROOMCAST_TEST_DYNAMODB_ENDPOINT).
//! The proxy counts the `X-Amz-Target` header of every HTTP request, retries
//! included. docs/performance.md quotes the table this test prints.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use roomcast_core::handlers::{disconnect, message};
use roomcast_core::policy::Policies;
use roomcast_core::store::dynamo::DynamoStore;
use serde_json::{Value, json};
use support::{Harness, body, event, harness_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

const TARGET: &[u8] = b"x-amz-target: dynamodb_20120810.";

/// Counts the operation named after each `X-Amz-Target` in `bytes`, keeping the
/// tail that may hold a header cut in two by the read.
fn count_targets(pending: &mut Vec<u8>, bytes: &[u8], counts: &Counts) {
    pending.extend(bytes.iter().map(u8::to_ascii_lowercase));
    let mut start = 0;
    while let Some(at) = pending[start..]
        .windows(TARGET.len())
        .position(|w| w == TARGET)
    {
        let name_at = start + at + TARGET.len();
        let Some(end) = pending[name_at..].iter().position(|&b| b == b'\r') else {
            break;
        };
        let name = String::from_utf8_lossy(&pending[name_at..name_at + end]).into_owned();
        *counts.lock().unwrap().entry(name).or_default() += 1;
        start = name_at + end;
    }
    let keep = pending.len().saturating_sub(start).min(TARGET.len() + 32);
    pending.drain(..pending.len() - keep);
}

/// A TCP proxy to `upstream` (host:port) counting DynamoDB operations.
async fn counting_proxy(upstream: String) -> (String, Counts) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts: Counts = Arc::default();
    let log = counts.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let up = async move {
                    let (mut buf, mut pending) = ([0u8; 8192], Vec::new());
                    loop {
                        let n = client_read.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                        count_targets(&mut pending, &buf[..n], &log);
                    }
                };
                let down = tokio::io::copy(&mut server_read, &mut client_write);
                let _ = tokio::join!(up, down);
            });
        }
    });
    (format!("http://{addr}"), counts)
}

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone"},
  "namespaces": {
    "hist": {"history": {"size": 100, "ttlSecs": 600}},
    "pres": {"presence": true, "presenceEvents": true}
  }
}"#;

struct Meter {
    h: Harness,
    counts: Counts,
}

impl Meter {
    /// The DynamoDB requests `run` made, by operation.
    async fn measure<F: std::future::Future<Output = Value>>(
        &self,
        run: F,
    ) -> (Value, BTreeMap<String, usize>) {
        self.counts.lock().unwrap().clear();
        let out = run.await;
        (out, std::mem::take(&mut *self.counts.lock().unwrap()))
    }

    async fn frame(&self, conn: &str, frame: Value) -> Value {
        let route = frame["action"].as_str().unwrap().to_owned();
        let response = message(
            &self.h.app,
            event(&route, conn, Some(&frame.to_string()), Some("u")),
        )
        .await;
        body(&response).unwrap_or(Value::Null)
    }
}

fn total(counts: &BTreeMap<String, usize>) -> usize {
    counts.values().sum()
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamodb_requests_per_route() {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT must point at dynalite: run scripts/test");
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (proxy, counts) = counting_proxy(upstream).await;
    let sdk = support::local_sdk(proxy).await;
    let table = format!("counts-{:x}", fastrand::u64(..));
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    store.ensure_table().await.unwrap();
    let mut h = harness_with(Arc::new(store));
    h.app.config.policies = Policies::parse(POLICIES).unwrap();
    let m = Meter { h, counts };

    let mut rows: Vec<(&str, BTreeMap<String, usize>)> = Vec::new();
    for room in ["plain:1", "hist:1", "pres:1"] {
        for conn in ["a=", "b=", "c="] {
            m.frame(conn, json!({"action": "join", "room": room})).await;
        }
    }
    // Streams exist: the first send of a room also creates its head.
    m.frame(
        "a=",
        json!({"action": "send", "room": "hist:1", "event": "e"}),
    )
    .await;
    let send = |room: &'static str| json!({"action": "send", "room": room, "event": "e", "id": 1});

    let (ack, plain) = m.measure(m.frame("a=", send("plain:1"))).await;
    assert_eq!(ack["recipients"], 2, "{ack}");
    rows.push(("send, room without history", plain.clone()));
    let (ack, hist) = m.measure(m.frame("a=", send("hist:1"))).await;
    assert_eq!(ack["offset"], 2, "{ack}");
    rows.push(("send, room with history", hist.clone()));
    assert_eq!(
        total(&hist),
        total(&plain) + 2,
        "history costs two requests per send"
    );

    let join = |room: &'static str| json!({"action": "join", "room": room, "id": 1});
    let (_, c) = m.measure(m.frame("d=", join("plain:1"))).await;
    rows.push(("join, room without history", c));
    let (ack, c) = m.measure(m.frame("d=", join("hist:1"))).await;
    let epoch = ack["epoch"].clone();
    rows.push(("join, room with history", c));
    let since = json!({"action": "join", "room": "hist:1", "id": 1, "since": {"offset": 0, "epoch": epoch}});
    let (ack, c) = m.measure(m.frame("e=", since)).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    rows.push(("join with since, 2 events replayed", c));
    let (_, c) = m.measure(m.frame("d=", join("pres:1"))).await;
    rows.push(("join, room with presence events", c));

    let history = json!({"action": "history", "room": "hist:1", "limit": 10, "id": 1});
    let (reply, c) = m.measure(m.frame("b=", history)).await;
    assert_eq!(reply["events"].as_array().map(Vec::len), Some(2), "{reply}");
    rows.push(("history", c));
    let presence = json!({"action": "presence", "room": "pres:1", "id": 1});
    let (reply, c) = m.measure(m.frame("b=", presence)).await;
    assert_eq!(reply["count"], 4, "{reply}");
    rows.push(("presence", c));

    let gone = |conn: &str| event("$disconnect", conn, None, Some("u"));
    let (_, plain) = m
        .measure(async {
            disconnect(&m.h.app, gone("c=")).await;
            Value::Null
        })
        .await;
    // c= was in plain:1, hist:1 and pres:1: only pres:1 has presence events.
    rows.push(("disconnect, 3 rooms, 1 with presence events", plain));
    m.frame("f=", join("plain:1")).await;
    m.frame("f=", join("hist:1")).await;
    let (_, quiet) = m
        .measure(async {
            disconnect(&m.h.app, gone("f=")).await;
            Value::Null
        })
        .await;
    assert_eq!(
        total(&quiet),
        2,
        "disconnect without presence rooms: one Query, one BatchWriteItem: {quiet:?}"
    );
    rows.push(("disconnect, 2 rooms, none with presence events", quiet));

    println!("| route | DynamoDB requests | by operation |");
    println!("|---|---|---|");
    for (what, counts) in rows {
        let ops: Vec<String> = counts.iter().map(|(op, n)| format!("{op} {n}")).collect();
        println!("| {what} | {} | {} |", total(&counts), ops.join(", "));
    }
}
