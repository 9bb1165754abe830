//! Route handler tests over the in-memory store and a recording management API,
//! including every error path of protocol v1.

mod support;

use roomcast_core::handlers::{connect, disconnect, message};
use roomcast_core::store::now_secs;
use serde_json::{Value, json};
use support::{Harness, body, event, harness};

async fn send(h: &Harness, conn: &str, frame: &str) -> Option<Value> {
    body(
        &message(
            &h.app,
            event("send", conn, Some(frame), Some(&format!("u-{conn}"))),
        )
        .await,
    )
}

async fn join(h: &Harness, conn: &str, room: &str) {
    let reply = send(
        h,
        conn,
        &format!(r#"{{"action":"join","room":"{room}","id":"j"}}"#),
    )
    .await;
    assert_eq!(
        reply,
        Some(json!({"type":"ack","id":"j","ok":true,"action":"join","room":room}))
    );
}

#[tokio::test]
async fn connect_records_the_connection_with_its_user() {
    let h = harness();
    let response = connect(&h.app, event("$connect", "c1=", None, Some("alice"))).await;
    assert_eq!(response.status_code, 200);
    assert!(response.body.is_none());
    // The event's connectedAt (2023) is the clock the record's TTL runs from.
    let stored = support::stored_connection(&h, "c1=").await;
    assert_eq!(h.store.connection("c1=", now_secs()).await.unwrap(), None);
    assert_eq!(stored.user_id.as_deref(), Some("alice"));
    assert_eq!(stored.connected_at, 1_700_000_000_000);
    assert_eq!(
        stored.expires_at,
        1_700_000_000 + h.app.config.item_ttl.as_secs()
    );
}

#[tokio::test]
async fn events_without_a_connection_id_are_refused() {
    let h = harness();
    let mut e = event("$connect", "x", None, None);
    e.request_context.connection_id = None;
    assert_eq!(connect(&h.app, e.clone()).await.status_code, 400);
    assert_eq!(disconnect(&h.app, e.clone()).await.status_code, 400);
    assert_eq!(message(&h.app, e).await.status_code, 400);
}

#[tokio::test]
async fn join_send_reaches_other_members_only_and_acks_the_sender() {
    let h = harness();
    join(&h, "a=", "chat:1").await;
    join(&h, "b=", "chat:1").await;
    join(&h, "c=", "chat:2").await;
    let reply = send(
        &h,
        "a=",
        r#"{"action":"send","room":"chat:1","event":"msg","data":{"text":"hi"},"id":7}"#,
    )
    .await;
    assert_eq!(
        reply,
        Some(
            json!({"type":"ack","id":7,"ok":true,"action":"send","room":"chat:1","recipients":1,"delivered":1})
        )
    );
    let ev = h.management.only_event("b=");
    assert_eq!(ev["room"], "chat:1");
    assert_eq!(ev["event"], "msg");
    assert_eq!(ev["data"], json!({"text":"hi"}));
    assert_eq!(ev["from"], json!({"connectionId":"a=","userId":"u-a="}));
    assert!(ev["ts"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(
        h.management.received("a=").is_empty(),
        "the sender is skipped"
    );
    assert!(
        h.management.received("c=").is_empty(),
        "other rooms hear nothing"
    );
    // Posts go to the endpoint derived from the event's domain and stage.
    assert_eq!(
        h.management.endpoints(),
        ["https://abc123.execute-api.us-east-1.amazonaws.com/test".to_owned()].into()
    );
}

#[tokio::test]
async fn frames_without_id_get_no_ack_but_still_act() {
    let h = harness();
    let r = message(
        &h.app,
        event("join", "a=", Some(r#"{"action":"join","room":"r"}"#), None),
    )
    .await;
    assert_eq!((r.status_code, r.body.is_none()), (200, true));
    join(&h, "b=", "r").await;
    let r = message(
        &h.app,
        event(
            "send",
            "a=",
            Some(r#"{"action":"send","room":"r","event":"e"}"#),
            None,
        ),
    )
    .await;
    assert!(r.body.is_none());
    let got = h.management.received("b=");
    assert_eq!(got[0]["data"], Value::Null);
    assert_eq!(got[0]["from"]["userId"], Value::Null);
}

#[tokio::test]
async fn ping_pongs_with_and_without_id() {
    let h = harness();
    assert_eq!(
        send(&h, "a=", r#"{"action":"ping","id":"p1"}"#).await,
        Some(json!({"type":"pong","id":"p1","connectionId":"a="}))
    );
    assert_eq!(
        send(&h, "a=", r#"{"action":"ping"}"#).await,
        Some(json!({"type":"pong","connectionId":"a="}))
    );
}

#[tokio::test]
async fn leave_stops_delivery() {
    let h = harness();
    join(&h, "a=", "r").await;
    join(&h, "b=", "r").await;
    assert_eq!(
        send(&h, "b=", r#"{"action":"leave","room":"r","id":1}"#).await,
        Some(json!({"type":"ack","id":1,"ok":true,"action":"leave","room":"r"}))
    );
    let reply = send(
        &h,
        "a=",
        r#"{"action":"send","room":"r","event":"e","id":2}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply["recipients"], 0);
    assert!(h.management.received("b=").is_empty());
    // Leaving a room one is not in is not an error.
    assert_eq!(
        send(&h, "b=", r#"{"action":"leave","room":"r","id":3}"#)
            .await
            .unwrap()["ok"],
        true
    );
}

fn error(reply: Option<Value>) -> (Value, String) {
    let reply = reply.expect("an error frame");
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    (
        reply["id"].clone(),
        reply["code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn every_bad_frame_gets_a_typed_error() {
    let h = harness();
    let big = format!(r#"{{"action":"ping","pad":"{}"}}"#, "x".repeat(40 * 1024));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("{not json", Value::Null, "bad_request"),
        ("", Value::Null, "bad_request"),
        ("[]", Value::Null, "bad_request"),
        (r#""join""#, Value::Null, "bad_request"),
        (r#"{"action":"join","id":1}"#, json!(1), "bad_request"),
        (
            r#"{"action":"join","room":"bad room","id":2}"#,
            json!(2),
            "bad_request",
        ),
        (
            r#"{"action":"send","room":"r","id":3}"#,
            json!(3),
            "bad_request",
        ),
        (
            r#"{"action":"send","room":"r","event":42,"id":4}"#,
            json!(4),
            "bad_request",
        ),
        (r#"{"action":"dance","id":5}"#, json!(5), "unknown_action"),
        (r#"{"hello":"world"}"#, Value::Null, "unknown_action"),
        (
            r#"{"action":"send","room":"r","event":"e","id":6}"#,
            json!(6),
            "not_member",
        ),
        (&big, Value::Null, "too_large"),
    ];
    for (frame, id, code) in cases {
        let got = error(send(&h, "a=", frame).await);
        assert_eq!(got, (id, code.to_owned()), "frame {:.60}", frame);
    }
    // Binary frames arrive base64-encoded; the protocol is text.
    let mut e = event("$default", "a=", Some("AAEC"), None);
    e.is_base64_encoded = true;
    assert_eq!(error(body(&message(&h.app, e).await)).1, "bad_request");
    // None of that touched any state.
    assert!(h.management.posts.lock().unwrap().is_empty());
}

#[tokio::test]
async fn gone_connections_are_removed_during_a_send() {
    let h = harness();
    for c in ["a=", "b=", "dead="] {
        connect(&h.app, event("$connect", c, None, None)).await;
    }
    join(&h, "a=", "r").await;
    join(&h, "b=", "r").await;
    join(&h, "dead=", "r").await;
    join(&h, "dead=", "other").await;
    h.management.gone.lock().unwrap().insert("dead=".into());
    let reply = send(
        &h,
        "a=",
        r#"{"action":"send","room":"r","event":"e","id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        (reply["recipients"].clone(), reply["delivered"].clone()),
        (json!(2), json!(1))
    );
    assert_eq!(h.management.received("b=").len(), 1);
    // The gone connection lost its record and every membership, not just this room's.
    assert_eq!(h.store.member("r", 0, "dead=", 0).await.unwrap(), None);
    assert_eq!(h.store.member("other", 0, "dead=", 0).await.unwrap(), None);
    assert_eq!(h.store.connection("dead=", 0).await.unwrap(), None);
    assert!(h.store.member("r", 0, "b=", 0).await.unwrap().is_some());
    let reply = send(
        &h,
        "a=",
        r#"{"action":"send","room":"r","event":"e","id":2}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply["recipients"], 1);
}

#[tokio::test]
async fn throttled_posts_are_retried() {
    let h = harness();
    join(&h, "a=", "r").await;
    join(&h, "b=", "r").await;
    h.management.throttle.lock().unwrap().insert("b=".into(), 2);
    let reply = send(
        &h,
        "a=",
        r#"{"action":"send","room":"r","event":"e","id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply["delivered"], 1);
    assert_eq!(h.management.received("b=").len(), 1);
}

#[tokio::test]
async fn posts_without_an_answer_are_retried_like_5xx() {
    let h = harness();
    join(&h, "a=", "r").await;
    join(&h, "b=", "r").await;
    h.management
        .unreachable
        .lock()
        .unwrap()
        .insert("b=".into(), 2);
    let reply = send(
        &h,
        "a=",
        r#"{"action":"send","room":"r","event":"e","id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply["delivered"], 1);
    assert_eq!(h.management.received("b=").len(), 1);
    assert_eq!(h.management.unreachable.lock().unwrap()["b="], 0);
}

#[tokio::test]
async fn disconnect_removes_connection_and_memberships() {
    let h = harness();
    connect(&h.app, event("$connect", "a=", None, None)).await;
    join(&h, "a=", "r1").await;
    join(&h, "a=", "r2").await;
    join(&h, "b=", "r1").await;
    assert_eq!(
        disconnect(&h.app, event("$disconnect", "a=", None, None))
            .await
            .status_code,
        200
    );
    assert_eq!(h.store.member("r1", 0, "a=", 0).await.unwrap(), None);
    assert_eq!(h.store.member("r2", 0, "a=", 0).await.unwrap(), None);
    assert!(h.store.member("r1", 0, "b=", 0).await.unwrap().is_some());
    let reply = send(
        &h,
        "b=",
        r#"{"action":"send","room":"r1","event":"e","id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply["recipients"], 0);
    assert!(h.management.received("a=").is_empty());
    // A repeated or late $disconnect is harmless.
    assert_eq!(
        disconnect(&h.app, event("$disconnect", "a=", None, None))
            .await
            .status_code,
        200
    );
}

#[tokio::test]
async fn configured_management_endpoint_wins() {
    let mut h = harness();
    h.app.config.management_endpoint = Some("http://127.0.0.1:3001/local".into());
    join(&h, "a=", "r").await;
    join(&h, "b=", "r").await;
    send(&h, "a=", r#"{"action":"send","room":"r","event":"e"}"#).await;
    assert_eq!(
        h.management.endpoints(),
        ["http://127.0.0.1:3001/local".to_owned()].into()
    );
}

#[tokio::test]
async fn handler_futures_are_send_so_they_can_be_spawned() {
    let h = std::sync::Arc::new(harness());
    join(&h, "b=", "r").await;
    join(&h, "a=", "r").await;
    let task = {
        let h = h.clone();
        tokio::spawn(async move { support::anonymous_send(&h.app, "a=", "r", 1).await })
    };
    assert_eq!(task.await.unwrap()["delivered"], 1);
}

#[tokio::test]
async fn fan_out_pages_through_large_rooms() {
    let mut h = harness();
    h.app.config.fanout_concurrency = 7;
    let members: Vec<String> = (0..1203).map(|i| format!("m{i}=")).collect();
    for m in &members {
        let frame = r#"{"action":"join","room":"big"}"#;
        message(&h.app, event("join", m, Some(frame), None)).await;
    }
    h.management.gone.lock().unwrap().insert("m17=".into());
    let reply = send(
        &h,
        "m0=",
        r#"{"action":"send","room":"big","event":"e","id":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(reply["recipients"], 1202);
    assert_eq!(reply["delivered"], 1201);
    let posts = h.management.posts.lock().unwrap().clone();
    let reached: std::collections::HashSet<_> = posts.iter().map(|(_, c, _)| c.clone()).collect();
    assert_eq!(posts.len(), 1201, "each member exactly once");
    assert_eq!(reached.len(), 1201);
    assert!(!reached.contains("m0=") && !reached.contains("m17="));
}
