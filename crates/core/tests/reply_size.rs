//! `history` and `presence` replies stay within `MAX_REPLY_BYTES` (under API
//! Gateway's 128 KB message limit): exactly at the bound a reply is whole, one
//! byte over it is cut with `truncated` and a cursor that pages on. On the
//! in-memory store and on DynamoDB (dynalite, started by scripts/test).

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use roomcast_core::limits::MAX_REPLY_BYTES;
use roomcast_core::policy::Policies;
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Member, Store, shard_of};
use serde_json::{Value, json};
use support::{Harness, harness_with};

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone"},
  "namespaces": {
    "hist": {"history": {"size": 100, "ttlSecs": 600}, "presence": true},
    "wide": {"members": {"shards": 4}, "presence": true}
  }
}"#;

fn with_policies(mut h: Harness) -> Harness {
    h.app.config.policies = Policies::parse(POLICIES).unwrap();
    h
}

/// The reply to `frame` from `conn` (user `u-<conn>`), as text.
async fn reply(h: &Harness, conn: &str, frame: Value) -> String {
    support::user_reply(h, conn, frame).await
}

/// Fills `room` with events of data strings of the given lengths, sent by `a=`.
async fn fill(h: &Harness, room: &str, lengths: &[usize]) {
    let join = json!({"action": "join", "room": room, "id": 1});
    assert!(reply(h, "a=", join).await.contains("\"ack\""));
    for &len in lengths {
        let send = json!({"action": "send", "room": room, "event": "m", "data": "x".repeat(len)});
        reply(h, "a=", send).await;
    }
}

async fn history(h: &Harness, room: &str, before: Option<u64>) -> (usize, Value) {
    let frame =
        json!({"action": "history", "room": room, "limit": 100, "before": before, "id": "h"});
    let text = reply(h, "a=", frame).await;
    (text.len(), serde_json::from_str(&text).unwrap())
}

fn offsets(reply: &Value) -> Vec<u64> {
    reply["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect()
}

async fn history_at_the_bound(h: Harness) {
    let h = with_policies(h);
    // The same five events with empty data: what everything but the data takes.
    fill(&h, "hist:a", &[0; 5]).await;
    let (small, _) = history(&h, "hist:a", None).await;
    let last = MAX_REPLY_BYTES - small - 4 * 25_000;
    fill(&h, "hist:b", &[25_000, 25_000, 25_000, 25_000, last]).await;
    let (len, whole) = history(&h, "hist:b", None).await;
    eprintln!("history reply at the bound: {len} bytes");
    assert_eq!(len, MAX_REPLY_BYTES);
    assert_eq!(offsets(&whole), [1, 2, 3, 4, 5]);
    assert!(whole.get("truncated").is_none() && whole.get("before").is_none());
    assert_eq!(whole["id"], "h");

    fill(&h, "hist:c", &[25_000, 25_000, 25_000, 25_000, last + 1]).await;
    let (len, cut) = history(&h, "hist:c", None).await;
    eprintln!("history reply one byte over the bound, cut: {len} bytes");
    assert!(len <= MAX_REPLY_BYTES, "{len}");
    assert_eq!(offsets(&cut), [2, 3, 4, 5], "the newest that fit");
    assert_eq!(
        (&cut["truncated"], &cut["before"]),
        (&json!(true), &json!(2))
    );
    assert_eq!(cut["id"], "h");
    let (_, rest) = history(&h, "hist:c", Some(2)).await;
    assert_eq!(offsets(&rest), [1]);
    assert!(rest.get("truncated").is_none());
}

#[tokio::test]
async fn history_replies_stay_within_the_bound_on_the_memory_store() {
    history_at_the_bound(harness_with(Arc::new(MemoryStore::new()))).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn history_replies_stay_within_the_bound_on_dynamodb() {
    let store = support::dynamo_store("reply-history").await;
    history_at_the_bound(harness_with(Arc::new(store))).await;
}

/// Adds members to `room` directly, each in its shard of the room, with user ids
/// of the given lengths (each starting with its number, so all differ), and the
/// requester `req=`.
async fn members(store: &dyn Store, room: &str, lengths: &[usize]) {
    let shards = Policies::parse(POLICIES).unwrap().shards(room);
    let expires_at = roomcast_core::store::now_secs() + 600;
    let requester = Member {
        connection_id: "req=".into(),
        user_id: Some("u-req=".into()),
        expires_at,
    };
    let shard = shard_of(&requester.connection_id, shards);
    store.join(room, shard, &requester).await.unwrap();
    for (i, &len) in lengths.iter().enumerate() {
        let user = format!("{i:04}{}", "u".repeat(len - 4));
        let member = Member {
            connection_id: format!("m{i:04}="),
            user_id: Some(user),
            expires_at,
        };
        let shard = shard_of(&member.connection_id, shards);
        store.join(room, shard, &member).await.unwrap();
    }
}

async fn presence(h: &Harness, room: &str, after: Option<&str>) -> (usize, Value) {
    let frame = json!({"action": "presence", "room": room, "after": after, "id": "p"});
    let text = reply(h, "req=", frame).await;
    (text.len(), serde_json::from_str(&text).unwrap())
}

/// User ids of at most 256 bytes whose entries take `bytes` bytes in all, each
/// entry `{"userId":"…","connections":1}` and its comma taking 30 bytes more than its id.
fn lengths_for(bytes: usize) -> Vec<usize> {
    let n = bytes.div_ceil(30 + 256);
    let ids = bytes - 30 * n;
    (0..n).map(|i| ids / n + usize::from(i < ids % n)).collect()
}

/// The bound in a room of namespace `ns` (with one shard or several: the page
/// token then names the shard too).
async fn presence_at_the_bound(h: Harness, ns: &str) {
    let h = with_policies(h);
    let room = |name: &str| format!("{ns}:{name}");
    members(h.store.as_ref(), &room("a"), &[]).await;
    let (alone, _) = presence(&h, &room("a"), None).await;
    // The count grows from 1 to 3 digits.
    let lengths = lengths_for(MAX_REPLY_BYTES - alone - 2);
    assert!(lengths.len() >= 100 && lengths.iter().all(|&l| l <= 256));
    members(h.store.as_ref(), &room("b"), &lengths).await;
    let (len, whole) = presence(&h, &room("b"), None).await;
    eprintln!(
        "presence reply at the bound: {len} bytes, {} members",
        whole["count"]
    );
    assert_eq!(len, MAX_REPLY_BYTES);
    assert_eq!(whole["count"], lengths.len() + 1);
    assert!(whole.get("truncated").is_none() && whole.get("after").is_none());

    let mut over = lengths.clone();
    over[0] += 1;
    members(h.store.as_ref(), &room("c"), &over).await;
    let (len, cut) = presence(&h, &room("c"), None).await;
    eprintln!("presence reply one byte over the bound, cut: {len} bytes");
    assert!(len <= MAX_REPLY_BYTES, "{len}");
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["id"], "p");
    let after = cut["after"].as_str().unwrap().to_owned();
    let (_, rest) = presence(&h, &room("c"), Some(&after)).await;
    assert!(rest.get("truncated").is_none());
    // Together the pages list every member once.
    let mut users: BTreeMap<String, u64> = BTreeMap::new();
    for page in [&cut, &rest] {
        for m in page["members"].as_array().unwrap() {
            *users
                .entry(m["userId"].as_str().unwrap().to_owned())
                .or_default() += m["connections"].as_u64().unwrap();
        }
    }
    assert_eq!(users.len(), over.len() + 1);
    assert!(users.values().all(|&n| n == 1));
    assert_eq!(
        cut["count"].as_u64().unwrap() + rest["count"].as_u64().unwrap(),
        over.len() as u64 + 1
    );
}

#[tokio::test]
async fn presence_replies_stay_within_the_bound_on_the_memory_store() {
    presence_at_the_bound(harness_with(Arc::new(MemoryStore::new())), "hist").await;
}

#[tokio::test]
async fn presence_replies_of_a_sharded_room_stay_within_the_bound_on_the_memory_store() {
    presence_at_the_bound(harness_with(Arc::new(MemoryStore::new())), "wide").await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn presence_replies_stay_within_the_bound_on_dynamodb() {
    let store = support::dynamo_store("reply-presence").await;
    presence_at_the_bound(harness_with(Arc::new(store)), "hist").await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn presence_replies_of_a_sharded_room_stay_within_the_bound_on_dynamodb() {
    let store = support::dynamo_store("reply-presence-wide").await;
    presence_at_the_bound(harness_with(Arc::new(store)), "wide").await;
}
