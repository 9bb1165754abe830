//! A fan-out (to a room, a user, or every connection) tells recipients whose
//! token has expired (`token_expired`) and closes them, instead of skipping them;
//! those whose items ended by their TTL, with no token behind them, are left alone.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use roomcast_core::fanout::{Audience, Fanout};
use roomcast_core::store::{Connection, Member, now_secs};
use support::{harness, harness_with};

const ENDPOINT: &str = "https://example.test/prod";

fn connection(id: &str, token_expires_at: Option<u64>, expires_at: u64) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        connected_at: 0,
        user_id: token_expires_at.map(|_| "alice".to_owned()),
        roles: Vec::new(),
        token_expires_at,
        expires_at,
    }
}

#[tokio::test]
async fn a_room_fanout_closes_members_whose_token_expired() {
    let h = harness();
    let now = now_secs();
    let members = [
        // Live, with a token.
        ("live=", Some(now + 600), now + 600),
        // Its token expired 10 s ago: the membership ended with it.
        ("expired=", Some(now - 10), now - 9),
        // Anonymous, its items past their TTL: left to expire.
        ("stale=", None, now - 5),
    ];
    for (id, token, expires_at) in members {
        h.store
            .put_connection(&connection(id, token, expires_at))
            .await
            .unwrap();
        let member = Member {
            connection_id: id.to_owned(),
            user_id: None,
            expires_at,
        };
        h.store.join("chat:1", 0, &member).await.unwrap();
    }
    let fanout = Fanout::for_app(&h.app, ENDPOINT);
    let stats = fanout
        .to_room("chat:1", 1, None, Bytes::from_static(br#"{"n":1}"#), now)
        .await
        .unwrap();
    // Only the live member is a recipient; the expired one is told, then
    // deleted; the stale one gets nothing.
    assert_told_and_closed(&h, stats);
    // The expired one is told without an id.
    let told = h.management.received("expired=");
    assert!(told[0].get("id").is_none(), "{told:?}");
}

/// Puts a live connection, one whose token expired 10 s ago (its record ended
/// with it), and one whose record passed its TTL with no token behind it, all
/// of user `alice`.
async fn alice_connections(h: &support::Harness, now: u64) {
    for (id, token, expires_at) in [
        ("live=", Some(now + 600), now + 600),
        ("expired=", Some(now - 10), now - 9),
        ("stale=", None, now - 5),
    ] {
        let mut connection = connection(id, token, expires_at);
        connection.user_id = Some("alice".to_owned());
        h.store.put_connection(&connection).await.unwrap();
    }
}

/// What a user or all-connection broadcast must have done: the live connection
/// got the event, the expired one `token_expired` and a close, the stale one nothing.
fn assert_told_and_closed(h: &support::Harness, stats: roomcast_core::fanout::FanoutStats) {
    assert_eq!((stats.recipients, stats.delivered), (1, 1), "{stats:?}");
    assert_eq!(
        h.management.received("live="),
        [serde_json::json!({"n": 1})]
    );
    let told = h.management.received("expired=");
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["type"], "error");
    assert_eq!(told[0]["code"], "token_expired");
    assert!(h.management.gone.lock().unwrap().contains("expired="));
    assert!(h.management.received("stale=").is_empty());
    assert!(!h.management.gone.lock().unwrap().contains("stale="));
}

/// A user (`Some`) or all-connection (`None`) broadcast over `h`'s store, then
/// the checks of [`assert_told_and_closed`].
async fn broadcast_reaches_expired(h: support::Harness, user: Option<&str>) {
    let now = now_secs();
    alice_connections(&h, now).await;
    let fanout = Fanout::for_app(&h.app, ENDPOINT);
    let audience = user.map_or(Audience::All, Audience::User);
    let payload = Bytes::from_static(br#"{"n":1}"#);
    let stats = fanout.to(audience, &[], payload, now).await.unwrap();
    assert_told_and_closed(&h, stats);
}

#[tokio::test]
async fn a_user_broadcast_closes_connections_whose_token_expired() {
    broadcast_reaches_expired(harness(), Some("alice")).await;
}

#[tokio::test]
async fn an_all_connection_broadcast_closes_connections_whose_token_expired() {
    broadcast_reaches_expired(harness(), None).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_user_broadcast_closes_connections_whose_token_expired() {
    let store = support::dynamo_store("expiry-user").await;
    broadcast_reaches_expired(harness_with(Arc::new(store)), Some("alice")).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_all_connection_broadcast_closes_connections_whose_token_expired() {
    let store = support::dynamo_store("expiry-all").await;
    broadcast_reaches_expired(harness_with(Arc::new(store)), None).await;
}
