//! History, recovery and presence through the handlers, driven by API Gateway
//! event shapes over the in-memory store and a recording management API.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use roomcast_core::broadcast;
use roomcast_core::handlers::{disconnect, message};
use roomcast_core::policy::Policies;
use roomcast_core::store::failing::{Call, FailingStore};
use serde_json::{Value, json};
use support::{Harness, body, event, harness, harness_with};

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone"},
  "namespaces": {
    "hist": {"history": {"size": 10, "ttlSecs": 600}, "presence": true, "presenceEvents": true},
    "quiet": {"presence": true}
  }
}"#;

fn with_policies(mut h: Harness) -> Harness {
    h.app.config.policies = Policies::parse(POLICIES).unwrap();
    h
}

fn setup() -> Harness {
    with_policies(harness())
}

/// The reply to `frame` from `conn` (user `u-<conn>`, or anonymous for `anon*`).
async fn frame(h: &Harness, conn: &str, frame: Value) -> Value {
    let user = (!conn.starts_with("anon")).then(|| format!("u-{conn}"));
    let route = frame["action"].as_str().unwrap_or("$default").to_owned();
    let response = message(
        &h.app,
        event(&route, conn, Some(&frame.to_string()), user.as_deref()),
    )
    .await;
    body(&response).unwrap_or(Value::Null)
}

async fn join(h: &Harness, conn: &str, room: &str) -> Value {
    frame(h, conn, json!({"action": "join", "room": room, "id": "j"})).await
}

async fn send(h: &Harness, conn: &str, room: &str, n: u64) -> Value {
    let f = json!({"action": "send", "room": room, "event": "m", "data": n, "id": "s"});
    frame(h, conn, f).await
}

/// The frames of `type_` posted to `conn`.
fn received(h: &Harness, conn: &str, type_: &str) -> Vec<Value> {
    h.management
        .received(conn)
        .into_iter()
        .filter(|f| f["type"] == type_)
        .collect()
}

fn clear(h: &Harness) {
    h.management.posts.lock().unwrap().clear();
}

#[tokio::test]
async fn history_rooms_number_events_and_acks() {
    let h = setup();
    let first = join(&h, "a=", "hist:1").await;
    assert_eq!(first["offset"], 0);
    let epoch = first["epoch"].as_str().unwrap().to_owned();
    assert!(first.get("recovered").is_none(), "no since, no recovered");
    join(&h, "b=", "hist:1").await;
    for n in 1..=3 {
        let ack = send(&h, "a=", "hist:1", n).await;
        assert_eq!(
            (ack["offset"].as_u64(), ack["epoch"].as_str()),
            (Some(n), Some(epoch.as_str()))
        );
        assert_eq!(ack["recipients"], 1);
    }
    let got = received(&h, "b=", "event");
    let stamps: Vec<(u64, &str, u64)> = got
        .iter()
        .map(|e| {
            (
                e["offset"].as_u64().unwrap(),
                e["epoch"].as_str().unwrap(),
                e["data"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        stamps,
        [
            (1, epoch.as_str(), 1),
            (2, epoch.as_str(), 2),
            (3, epoch.as_str(), 3)
        ]
    );
    // A broadcast into the room takes the next offset like any event.
    let mut h = h;
    h.app.config.management_endpoint = Some("https://example.test/stage".into());
    broadcast::handle(
        &h.app,
        json!({"room": "hist:1", "event": "news", "data": 4}),
        u64::MAX,
    )
    .await
    .unwrap();
    let last = received(&h, "b=", "event").pop().unwrap();
    assert_eq!(
        (last["offset"].as_u64(), last["from"]["service"].as_bool()),
        (Some(4), Some(true))
    );
    // A join reports where the stream is now.
    assert_eq!(join(&h, "c=", "hist:1").await["offset"], 4);
}

#[tokio::test]
async fn rooms_without_history_carry_no_offsets_and_touch_no_stream() {
    let stream_calls = Arc::new(AtomicUsize::new(0));
    let counter = stream_calls.clone();
    let store = FailingStore::new(move |call| {
        if matches!(
            call,
            Call::NextOffset { .. }
                | Call::PutEvent { .. }
                | Call::StreamHead { .. }
                | Call::Events { .. }
        ) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
        false
    });
    let h = with_policies(harness_with(Arc::new(store)));
    let ack = join(&h, "a=", "plain:1").await;
    assert_eq!(
        ack,
        json!({"type":"ack","id":"j","ok":true,"action":"join","room":"plain:1"})
    );
    join(&h, "b=", "plain:1").await;
    let ack = send(&h, "a=", "plain:1", 1).await;
    assert!(
        ack.get("offset").is_none() && ack.get("epoch").is_none(),
        "{ack}"
    );
    let ev = received(&h, "b=", "event").pop().unwrap();
    assert!(ev.get("offset").is_none(), "{ev}");
    // A since in a room without history is ignored, not refused.
    let f =
        json!({"action": "join", "room": "plain:1", "id": 1, "since": {"offset": 3, "epoch": "e"}});
    assert!(frame(&h, "c=", f).await.get("recovered").is_none());
    assert_eq!(stream_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_rejoin_with_since_replays_the_missed_events_before_its_ack() {
    let h = setup();
    join(&h, "a=", "hist:r").await;
    let b = join(&h, "b=", "hist:r").await;
    send(&h, "a=", "hist:r", 1).await;
    let seen = received(&h, "b=", "event").pop().unwrap();
    // b drops: $disconnect removes its membership; five events go by.
    disconnect(&h.app, event("$disconnect", "b=", None, Some("u-b="))).await;
    for n in 2..=6 {
        assert_eq!(send(&h, "a=", "hist:r", n).await["recipients"], 0);
    }
    clear(&h);
    // Replay posts are retried like any fan-out's: two 429s do not stop it.
    h.management
        .throttle
        .lock()
        .unwrap()
        .insert("b2=".into(), 2);
    let since = json!({"offset": seen["offset"], "epoch": b["epoch"]});
    let ack = frame(
        &h,
        "b2=",
        json!({"action": "join", "room": "hist:r", "id": "re", "since": since}),
    )
    .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert_eq!(ack["offset"], 6);
    assert_eq!(ack["epoch"], b["epoch"]);
    // Posted during the handler, that is before the ack (the integration response).
    let replayed: Vec<(u64, u64)> = received(&h, "b2=", "event")
        .iter()
        .map(|e| (e["offset"].as_u64().unwrap(), e["data"].as_u64().unwrap()))
        .collect();
    assert_eq!(replayed, [(2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]);
    // Up to date: nothing to replay, still recovered.
    clear(&h);
    let since = json!({"offset": 6, "epoch": b["epoch"]});
    let ack = frame(
        &h,
        "b3=",
        json!({"action": "join", "room": "hist:r", "id": 1, "since": since}),
    )
    .await;
    assert_eq!(ack["recovered"], true);
    assert!(received(&h, "b3=", "event").is_empty());
    // A replay to a connection that is gone stops: not recovered.
    h.management.gone.lock().unwrap().insert("b4=".into());
    let since = json!({"offset": 4, "epoch": b["epoch"]});
    let ack = frame(
        &h,
        "b4=",
        json!({"action": "join", "room": "hist:r", "id": 1, "since": since}),
    )
    .await;
    assert_eq!(ack["recovered"], false);
}

#[tokio::test]
async fn a_since_the_history_cannot_serve_is_not_recovered() {
    let h = setup();
    let first = join(&h, "a=", "hist:x").await;
    let epoch = first["epoch"].clone();
    for n in 1..=12 {
        send(&h, "a=", "hist:x", n).await;
    }
    clear(&h);
    // size 10: offset 1 is no longer history; offset 2 still is (events 3..=12).
    for (since, recovered, replayed) in [
        (json!({"offset": 1, "epoch": epoch}), false, 0),
        (json!({"offset": 2, "epoch": epoch}), true, 10),
        (json!({"offset": 0, "epoch": "an-old-epoch"}), false, 0),
        (json!({"offset": 13, "epoch": epoch}), false, 0),
    ] {
        clear(&h);
        let f = json!({"action": "join", "room": "hist:x", "id": 1, "since": since});
        let ack = frame(&h, "b=", f).await;
        assert_eq!(ack["recovered"], recovered, "{since}");
        assert_eq!(ack["offset"], 12);
        assert_eq!(received(&h, "b=", "event").len(), replayed, "{since}");
    }
    // Bad since values are bad requests, the id echoed.
    for since in [
        json!({"offset": -1, "epoch": "e"}),
        json!({"offset": 1}),
        json!("1"),
    ] {
        let f = json!({"action": "join", "room": "hist:x", "id": 9, "since": since});
        let reply = frame(&h, "b=", f).await;
        assert_eq!(
            (reply["code"].as_str(), reply["id"].as_u64()),
            (Some("bad_request"), Some(9)),
            "{since}"
        );
    }
}

#[tokio::test]
async fn history_returns_stored_frames_oldest_first() {
    let h = setup();
    join(&h, "a=", "hist:h").await;
    join(&h, "b=", "hist:h").await;
    for n in 1..=12 {
        send(&h, "a=", "hist:h", n).await;
    }
    let delivered = received(&h, "b=", "event");
    let reply = frame(
        &h,
        "b=",
        json!({"action": "history", "room": "hist:h", "limit": 3, "id": "h"}),
    )
    .await;
    assert_eq!(reply["type"], "history");
    assert_eq!(reply["id"], "h");
    assert_eq!(reply["room"], "hist:h");
    assert_eq!(reply["epoch"], delivered[0]["epoch"]);
    // Each event exactly as it was delivered.
    assert_eq!(reply["events"], json!(delivered[9..12]));
    let page = frame(
        &h,
        "b=",
        json!({"action": "history", "room": "hist:h", "limit": 2, "before": 6}),
    )
    .await;
    let offsets = event_offsets(&page);
    assert_eq!(offsets, [4, 5]);
    // Only the last `size` (10) events are history.
    let all = frame(
        &h,
        "b=",
        json!({"action": "history", "room": "hist:h", "limit": 100}),
    )
    .await;
    let offsets = event_offsets(&all);
    assert_eq!(offsets, (3..=12).collect::<Vec<_>>());
    let none = frame(
        &h,
        "b=",
        json!({"action": "history", "room": "hist:h", "limit": 5, "before": 1}),
    )
    .await;
    assert_eq!(none["events"], json!([]));
}

#[tokio::test]
async fn history_and_presence_are_refused_where_not_enabled_or_not_joined() {
    let h = setup();
    join(&h, "a=", "plain:1").await;
    join(&h, "a=", "quiet:1").await;
    for (f, code) in [
        (
            json!({"action": "history", "room": "plain:1", "limit": 5, "id": 1}),
            "forbidden",
        ),
        (
            json!({"action": "history", "room": "quiet:1", "limit": 5, "id": 1}),
            "forbidden",
        ),
        (
            json!({"action": "presence", "room": "plain:1", "id": 1}),
            "forbidden",
        ),
        (
            json!({"action": "history", "room": "hist:1", "limit": 5, "id": 1}),
            "not_member",
        ),
        (
            json!({"action": "presence", "room": "hist:1", "id": 1}),
            "not_member",
        ),
        (
            json!({"action": "history", "room": "hist:1", "limit": 0, "id": 1}),
            "bad_request",
        ),
        (
            json!({"action": "history", "room": "hist:1", "limit": 101, "id": 1}),
            "bad_request",
        ),
        (
            json!({"action": "history", "room": "hist:1", "id": 1}),
            "bad_request",
        ),
    ] {
        let reply = frame(&h, "a=", f.clone()).await;
        assert_eq!(reply["type"], "error", "{f}");
        assert_eq!(reply["code"], code, "{f}");
        assert_eq!(reply["id"], 1, "{f}");
    }
}

#[tokio::test]
async fn presence_lists_members_grouped_by_user() {
    let h = setup();
    for conn in ["a1=", "anon1=", "anon2=", "b=", "b2="] {
        join(&h, conn, "quiet:p").await;
    }
    // Two connections of one user: b2= acts as user u-b= too.
    let b2 = message(
        &h.app,
        event(
            "join",
            "b2=",
            Some(r#"{"action":"join","room":"quiet:p"}"#),
            Some("u-b="),
        ),
    )
    .await;
    assert_eq!(b2.status_code, 200);
    let reply = frame(
        &h,
        "anon1=",
        json!({"action": "presence", "room": "quiet:p", "id": 3}),
    )
    .await;
    assert_eq!(
        reply,
        json!({"type": "presence", "id": 3, "room": "quiet:p", "count": 5, "members": [
            {"userId": null, "connections": 2},
            {"userId": "u-a1=", "connections": 1},
            {"userId": "u-b=", "connections": 2},
        ]})
    );
    // No presence events in this namespace: nobody was told of the joins.
    assert!(received(&h, "a1=", "presence").is_empty());
}

#[tokio::test]
async fn presence_events_tell_joins_leaves_disconnects_and_gone_connections() {
    let h = setup();
    join(&h, "a=", "hist:p").await;
    join(&h, "b=", "hist:p").await;
    join(&h, "anon=", "hist:p").await;
    let changes = |h: &Harness, conn: &str| -> Vec<(String, Value, Value)> {
        received(h, conn, "presence")
            .into_iter()
            .map(|f| {
                assert_eq!(f["room"], "hist:p");
                (
                    f["change"].as_str().unwrap().to_owned(),
                    f["member"]["connectionId"].clone(),
                    f["member"]["userId"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        changes(&h, "a="),
        [
            ("join".to_owned(), json!("b="), json!("u-b=")),
            ("join".to_owned(), json!("anon="), Value::Null)
        ]
    );
    assert!(changes(&h, "anon=").is_empty(), "no change of its own join");
    clear(&h);
    frame(&h, "b=", json!({"action": "leave", "room": "hist:p"})).await;
    assert_eq!(
        changes(&h, "a="),
        [("leave".to_owned(), json!("b="), json!("u-b="))]
    );
    assert!(changes(&h, "b=").is_empty());
    // Leaving a room one is not in tells nobody.
    clear(&h);
    frame(&h, "b=", json!({"action": "leave", "room": "hist:p"})).await;
    assert!(changes(&h, "a=").is_empty());
    // $disconnect: one leave per room with presence events.
    join(&h, "c=", "hist:p").await;
    join(&h, "c=", "hist:q").await;
    join(&h, "a=", "hist:q").await;
    clear(&h);
    disconnect(&h.app, event("$disconnect", "c=", None, Some("u-c="))).await;
    let left: Vec<(String, Value)> = received(&h, "a=", "presence")
        .into_iter()
        .map(|f| {
            (
                f["room"].as_str().unwrap().to_owned(),
                f["member"]["connectionId"].clone(),
            )
        })
        .collect();
    assert_eq!(
        left,
        [
            ("hist:p".to_owned(), json!("c=")),
            ("hist:q".to_owned(), json!("c="))
        ]
    );
    // Found gone (410) during a fan-out: removed, and the others told.
    h.store
        .put_connection(&roomcast_core::store::Connection {
            connection_id: "anon=".into(),
            connected_at: 0,
            user_id: None,
            roles: vec![],
            token_expires_at: None,
            expires_at: u64::MAX,
        })
        .await
        .unwrap();
    h.management.gone.lock().unwrap().insert("anon=".into());
    clear(&h);
    let ack = send(&h, "a=", "hist:p", 1).await;
    assert_eq!(ack["recipients"], 1);
    assert_eq!(
        changes(&h, "a="),
        [("leave".to_owned(), json!("anon="), Value::Null)]
    );
    let members = frame(&h, "a=", json!({"action": "presence", "room": "hist:p"})).await;
    assert_eq!(members["count"], 1);
}

#[tokio::test]
async fn concurrent_sends_get_gapless_offsets() {
    let h = Arc::new(setup());
    for conn in ["a=", "b=", "c=", "d="] {
        join(&h, conn, "hist:c").await;
    }
    let offsets = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for conn in ["a=", "b=", "c="] {
        let (h, offsets) = (h.clone(), offsets.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..3 {
                let ack = send(&h, conn, "hist:c", n).await;
                offsets
                    .lock()
                    .unwrap()
                    .push(ack["offset"].as_u64().unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut offsets = offsets.lock().unwrap().clone();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=9).collect::<Vec<_>>());
    let mut seen: Vec<u64> = received(&h, "d=", "event")
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=9).collect::<Vec<_>>());
}

/// The offsets of the events of a `history` reply, in order.
fn event_offsets(reply: &Value) -> Vec<u64> {
    let events = reply["events"].as_array().unwrap();
    let offsets = events.iter().map(|e| e["offset"].as_u64());
    offsets.collect::<Option<_>>().unwrap()
}
