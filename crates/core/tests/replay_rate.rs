//! A `join`'s replay is charged to the rate limit for the bytes it sends: one
//! unit per started 32 KB beyond the first, against the connection-wide counter
//! and the room's namespace counter, so rejoining with `since` cannot pull
//! megabytes per frame. Windows of a day keep a window boundary out of the tests.

mod support;

use roomcast_core::policy::Policies;
use serde_json::{Value, json};
use support::{Harness, fill_room, harness, send_frame as send};

/// `connection` and `namespace`: the limits of the connection and of `hist`.
fn setup(connection: u64, namespace: u64) -> Harness {
    setup_closing(connection, namespace, 10)
}

/// As [`setup`], with the connection closed at `close_after` times its limit.
fn setup_closing(connection: u64, namespace: u64, close_after: u64) -> Harness {
    let mut h = harness();
    let policies = json!({
        "default": {"join": "anyone", "send": "anyone",
                    "rateLimit": {"limit": 1000, "windowSecs": 86400, "closeAfter": 10}},
        "namespaces": {"hist": {"join": "anyone",
                                "history": {"size": 1000, "ttlSecs": 600},
                                "rateLimit": {"limit": namespace, "closeAfter": 10}}},
        "connection": {"limit": connection, "closeAfter": close_after}
    });
    h.app.config.policies = Policies::parse(&policies.to_string()).unwrap();
    h.app.config.management_endpoint = Some("https://example.test/stage".into());
    h
}

/// 300 service events of about 1.2 KB (about 350 KB) into `room`; the stream's epoch.
async fn fill(h: &Harness, room: &str) -> String {
    fill_padded(h, room, 1000).await
}

/// 300 service events of about `pad` bytes each into `room`; the stream's epoch.
async fn fill_padded(h: &Harness, room: &str, pad: usize) -> String {
    fill_room(h, room, 300, pad).await
}

/// The reply to a plain `join` of `room` (frame id `id`) on `conn`.
async fn join(h: &Harness, conn: &str, room: &str, id: u64) -> Value {
    send(h, conn, json!({"action": "join", "room": room, "id": id})).await
}

/// Joins `room` on `conn` twice, the second time with `since` (its offset 0) if
/// given, and returns the second ack.
async fn rejoin(h: &Harness, conn: &str, room: &str, since: Option<&str>) -> Value {
    let ack = join(h, conn, room, 2).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut frame = json!({"action": "join", "room": room, "id": 3});
    if let Some(epoch) = since {
        frame["since"] = json!({"offset": 0, "epoch": epoch});
    }
    let ack = send(h, conn, frame).await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack
}

#[tokio::test]
async fn a_replay_is_charged_to_the_connection_limit() {
    let h = setup(10, 1000);
    let epoch = fill(&h, "hist:1").await;
    // Without since: two joins and a ping are three frames of ten.
    rejoin(&h, "plain=", "hist:1", None).await;
    let pong = send(&h, "plain=", json!({"action": "ping", "id": 4})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    // With since: the second join replays the 300 events, over 9 × 32 KB, which
    // costs at least nine units more; the next frame is over the limit.
    let ack = rejoin(&h, "replayed=", "hist:1", Some(&epoch)).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let received = h.management.received("replayed=");
    assert_eq!(received.len(), 300);
    let bytes: usize = received.iter().map(|f| f.to_string().len()).sum();
    assert!(bytes > 9 * 32 * 1024, "{bytes}");
    let refused = send(&h, "replayed=", json!({"action": "ping", "id": 4})).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    // Over the limit, not at closeAfter times it: refused, not closed.
    assert_eq!(h.management.received("replayed=").len(), 300);
}

#[tokio::test]
async fn a_packed_replay_is_charged_to_the_namespace_limit_too() {
    let h = setup(1000, 10);
    let epoch = fill(&h, "hist:2").await;
    let pack = json!({"action": "join", "room": "hist:2", "id": 3, "pack": true,
                      "since": {"offset": 0, "epoch": epoch}});
    let ack = send(&h, "packed=", pack).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    // The connection's own limit is far off: a ping goes through.
    let pong = send(&h, "packed=", json!({"action": "ping", "id": 4})).await;
    assert_eq!(pong["type"], "pong", "{pong}");
    // The namespace's counter took the charge: the next frame to it is refused,
    // while a room elsewhere is not.
    let refused = join(&h, "packed=", "hist:3", 5).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    let ack = join(&h, "packed=", "lobby", 6).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn a_replay_alone_never_closes_a_connection_as_flooding() {
    // Limit 10, closed at 20. 300 events of about 5 KB (about 1.5 MB) would cost
    // some 45 units uncapped: flooding on the next frame. Capped at one window's
    // limit, the next frame is refused and the connection stays open.
    let h = setup_closing(10, 1000, 2);
    let epoch = fill_padded(&h, "hist:4", 5000).await;
    let ack = rejoin(&h, "long=", "hist:4", Some(&epoch)).await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let bytes: usize = h
        .management
        .received("long=")
        .iter()
        .map(|f| f.to_string().len())
        .sum();
    assert!(bytes > 20 * 32 * 1024, "{bytes}");
    let refused = send(&h, "long=", json!({"action": "ping", "id": 4})).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert!(
        !h.management.gone.lock().unwrap().contains("long="),
        "a replay alone closed the connection"
    );
}
