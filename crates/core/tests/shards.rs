//! Rooms whose memberships are spread over several shards (`members.shards`),
//! through the handlers: join, send, presence listing (presence events are refused
//! with shards), history and replay, leave and `$disconnect`, on the in-memory
//! store and on DynamoDB (dynalite, started by scripts/test); the fan-out's reads
//! of the shards; and how `shard_of` spreads connection ids.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use roomcast_core::fanout::{Audience, Fanout, PAGE_SIZE, RetryPolicy};
use roomcast_core::handlers::{connect, disconnect};
use roomcast_core::policy::Policies;
use roomcast_core::store::failing::{Call, FailingStore};
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Member, Store, now_secs, shard_of};
use serde_json::{Value, json};
use support::{Harness, event, harness_with};

const SHARDS: u16 = 4;

/// Most members a `presence` reply lists (the core's `presence::MAX_LISTED`).
const MAX_LISTED: usize = 1000;

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone"},
  "namespaces": {
    "big": {"members": {"shards": 4}, "history": {"size": 100, "ttlSecs": 600},
            "presence": true},
    "crowd": {"members": {"shards": 4}, "presence": true}
  }
}"#;

fn with_policies(mut h: Harness) -> Harness {
    h.app.config.policies = Policies::parse(POLICIES).unwrap();
    h
}

/// The reply to `frame` from `conn` (user `u-<conn>`).
async fn reply(h: &Harness, conn: &str, frame: Value) -> Value {
    let text = support::user_reply(h, conn, frame).await;
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The frames of type `kind` posted to `conn`.
fn frames(h: &Harness, conn: &str, kind: &str) -> Vec<Value> {
    h.management
        .received(conn)
        .into_iter()
        .filter(|f| f["type"] == kind)
        .collect()
}

/// The events named `name` posted to `conn`.
fn events(h: &Harness, conn: &str, name: &str) -> usize {
    frames(h, conn, "event")
        .iter()
        .filter(|f| f["event"] == name)
        .count()
}

/// Sends event `name` from `conn` to `room`; the ack's recipient count.
async fn send(h: &Harness, conn: &str, room: &str, name: &str) -> u64 {
    let frame = json!({"action": "send", "room": room, "event": name, "id": "s"});
    let ack = reply(h, conn, frame).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["recipients"], ack["delivered"], "{ack}");
    ack["recipients"].as_u64().unwrap()
}

/// The live members of `room` in each shard, read from the store.
async fn by_shard(store: &dyn Store, room: &str) -> BTreeMap<u16, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for shard in 0..SHARDS {
        let mut ids = BTreeSet::new();
        let mut cursor = None;
        loop {
            let page = store
                .members_page(room, shard, cursor.as_deref(), 7, now_secs())
                .await
                .unwrap();
            ids.extend(page.members.into_iter().map(|m| m.connection_id));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        out.insert(shard, ids);
    }
    out
}

async fn a_room_over_four_shards(h: Harness) {
    let h = with_policies(h);
    let room = "big:1";
    let ids: Vec<String> = (0..24).map(|i| format!("c{i:02}+/x=")).collect();
    join_all(&h, room, &ids).await;
    send_and_list(&h, room, &ids).await;
    history_and_replay(&h, room, &ids).await;
    leave_and_disconnect(&h, room, &ids).await;
    // A room of shards announces no presence changes (its policy cannot ask).
    for id in &ids {
        let changes = frames(&h, id, "presence");
        assert!(changes.is_empty(), "{id}: {changes:?}");
    }
}

/// Connects and joins each of `ids`; each membership sits in the shard
/// `shard_of` names, and only there.
async fn join_all(h: &Harness, room: &str, ids: &[String]) {
    for id in ids {
        let user = format!("u-{id}");
        let connected = connect(&h.app, event("$connect", id, None, Some(&user))).await;
        assert_eq!(connected.status_code, 200);
        let ack = reply(h, id, json!({"action": "join", "room": room, "id": "j"})).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let shards = by_shard(h.store.as_ref(), room).await;
    for id in ids {
        let home = shard_of(id, SHARDS);
        for (shard, members) in &shards {
            assert_eq!(
                members.contains(id),
                *shard == home,
                "{id} in shard {shard}"
            );
        }
    }
    assert!(
        shards.values().filter(|m| !m.is_empty()).count() > 1,
        "{} ids spread over more than one shard: {shards:?}",
        ids.len()
    );
}

/// A send reaches every other member once, whatever its shard, and the listing
/// holds every member, each once.
async fn send_and_list(h: &Harness, room: &str, ids: &[String]) {
    let others = ids.len() as u64 - 1;
    assert_eq!(send(h, &ids[0], room, "hello").await, others);
    assert_eq!(events(h, &ids[0], "hello"), 0, "the sender is skipped");
    for id in &ids[1..] {
        assert_eq!(events(h, id, "hello"), 1, "{id}");
    }
    let listing = reply(
        h,
        &ids[3],
        json!({"action": "presence", "room": room, "id": "p"}),
    )
    .await;
    assert_eq!(listing["count"], ids.len(), "{listing}");
    assert!(listing.get("after").is_none());
    let users: BTreeSet<&str> = listing["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), ids.len());
}

/// History and replay are the room's, not a shard's (after `send_and_list`'s
/// event, the room's first).
async fn history_and_replay(h: &Harness, room: &str, ids: &[String]) {
    assert_eq!(send(h, &ids[1], room, "second").await, ids.len() as u64 - 1);
    let history = reply(
        h,
        &ids[2],
        json!({"action": "history", "room": room, "limit": 10, "id": "h"}),
    )
    .await;
    let offsets: Vec<u64> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, [1, 2], "{history}");
    let epoch = history["epoch"].clone();
    let since = json!({"epoch": epoch, "offset": 1});
    let ack = reply(
        h,
        "late=",
        json!({"action": "join", "room": room, "since": since, "id": "j"}),
    )
    .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let replayed = frames(h, "late=", "event");
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["offset"], 2);
}

/// Leaving removes the membership from its shard and the leaver hears no more;
/// a connection that never joined may not send; `$disconnect` removes the
/// connection's membership from its shard. `late=` (joined by
/// `history_and_replay`) is a member too.
async fn leave_and_disconnect(h: &Harness, room: &str, ids: &[String]) {
    let members = ids.len() as u64 + 1;
    let leaver = &ids[5];
    let ack = reply(
        h,
        leaver,
        json!({"action": "leave", "room": room, "id": "l"}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let home = shard_of(leaver, SHARDS);
    let now = now_secs();
    assert_eq!(h.store.member(room, home, leaver, now).await.unwrap(), None);
    assert_eq!(send(h, &ids[0], room, "after-leave").await, members - 2);
    assert_eq!(events(h, leaver, "after-leave"), 0);
    let refused = reply(
        h,
        "stranger=",
        json!({"action": "send", "room": room, "event": "x", "id": "x"}),
    )
    .await;
    assert_eq!(refused["code"], "not_member", "{refused}");

    let gone = &ids[6];
    let user = format!("u-{gone}");
    let response = disconnect(&h.app, event("$disconnect", gone, None, Some(&user))).await;
    assert_eq!(response.status_code, 200);
    let home = shard_of(gone, SHARDS);
    assert_eq!(h.store.member(room, home, gone, now).await.unwrap(), None);
    assert_eq!(
        send(h, &ids[0], room, "after-disconnect").await,
        members - 3
    );
    assert_eq!(events(h, gone, "after-disconnect"), 0);
}

#[tokio::test]
async fn a_room_over_four_shards_on_the_memory_store() {
    a_room_over_four_shards(harness_with(Arc::new(MemoryStore::new()))).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn a_room_over_four_shards_on_dynamodb() {
    let store = support::dynamo_store("shards-room").await;
    a_room_over_four_shards(harness_with(Arc::new(store))).await;
}

/// More members than one `presence` reply lists: the page token carries the
/// listing from shard to shard, and the pages list every member once.
async fn presence_pages_across_shards(h: Harness) {
    let h = with_policies(h);
    let room = "crowd:1";
    let ack = reply(
        &h,
        "req=",
        json!({"action": "join", "room": room, "id": "j"}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let n = MAX_LISTED + 99;
    let expires_at = now_secs() + 600;
    for i in 0..n {
        let member = Member {
            connection_id: format!("m{i:04}="),
            user_id: Some(format!("u-m{i:04}")),
            expires_at,
        };
        let shard = shard_of(&member.connection_id, SHARDS);
        h.store.join(room, shard, &member).await.unwrap();
    }
    let mut users: BTreeMap<String, u64> = BTreeMap::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let frame = json!({"action": "presence", "room": room, "after": after, "id": "p"});
        let page = reply(&h, "req=", frame).await;
        assert!(
            page["count"].as_u64().unwrap() <= MAX_LISTED as u64,
            "{page}"
        );
        for m in page["members"].as_array().unwrap() {
            *users
                .entry(m["userId"].as_str().unwrap().to_owned())
                .or_default() += m["connections"].as_u64().unwrap();
        }
        pages += 1;
        assert!(pages < 10, "paging does not end");
        match page["after"].as_str() {
            Some(token) => {
                assert_eq!(page["truncated"], true);
                after = Some(token.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(users.len(), n + 1, "every member, the requester too");
    assert!(users.values().all(|&c| c == 1), "each once");

    // A token without a shard count (a room of one shard's, or the format before
    // the count), of another shard count, or naming a shard the room does not
    // have, is refused.
    for token in ["m0001=", "1.m0001=", "1.8.m0001=", "9.4.m0001="] {
        let frame = json!({"action": "presence", "room": room, "after": token, "id": "p"});
        let refused = reply(&h, "req=", frame).await;
        assert_eq!(refused["code"], "bad_request", "{token}: {refused}");
    }
}

#[tokio::test]
async fn presence_pages_across_shards_on_the_memory_store() {
    presence_pages_across_shards(harness_with(Arc::new(MemoryStore::new()))).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn presence_pages_across_shards_on_dynamodb() {
    let store = support::dynamo_store("shards-presence").await;
    presence_pages_across_shards(harness_with(Arc::new(store))).await;
}

/// The members page reads a store was asked for: each one's shard and whether it
/// continued the shard.
type Reads = Arc<Mutex<Vec<(u16, bool)>>>;

/// The memory store, recording each members page read.
fn recording() -> (Arc<FailingStore>, Reads) {
    let reads = Arc::new(Mutex::new(Vec::new()));
    let seen = reads.clone();
    let store = FailingStore::new(move |call| {
        if let Call::MembersPage { shard, cursor, .. } = call {
            seen.lock().unwrap().push((shard, cursor.is_some()));
        }
        false
    });
    (Arc::new(store), reads)
}

#[tokio::test]
async fn a_fanout_reads_every_shard_at_once_and_a_shard_alone() {
    let (store, reads) = recording();
    let h = harness_with(store.clone());
    // More than a page in every shard.
    let n = 5 * PAGE_SIZE;
    let expires_at = now_secs() + 600;
    let mut per_shard = BTreeMap::<u16, usize>::new();
    for i in 0..n {
        let member = Member {
            connection_id: format!("f{i:05}="),
            user_id: None,
            expires_at,
        };
        let shard = shard_of(&member.connection_id, SHARDS);
        *per_shard.entry(shard).or_default() += 1;
        store.join("wide", shard, &member).await.unwrap();
    }
    assert!(per_shard.values().all(|&m| m > PAGE_SIZE), "{per_shard:?}");
    let fanout = Fanout {
        store: store.as_ref(),
        management: h.management.as_ref(),
        endpoint: "https://example.com/test",
        concurrency: 8,
        retry: RetryPolicy::default(),
        presence: None,
        stop_at: None,
        pacer: None,
    };
    let payload = bytes::Bytes::from_static(b"{}");
    let room = Audience::Room {
        room: "wide",
        shards: SHARDS,
    };
    let stats = fanout
        .to(room, &[], payload.clone(), now_secs())
        .await
        .unwrap();
    assert_eq!((stats.recipients, stats.delivered), (n, n));
    let posted: Vec<String> = h
        .management
        .posts
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.1.clone())
        .collect();
    assert_eq!(
        posted.iter().collect::<BTreeSet<_>>().len(),
        n,
        "each member once"
    );
    // The first read took every shard's first page; the shards' ids are interleaved.
    let first: BTreeSet<(u16, bool)> = reads.lock().unwrap()[..4].iter().copied().collect();
    assert_eq!(first, (0..SHARDS).map(|s| (s, false)).collect());
    let shards_of_first: BTreeSet<u16> =
        posted[..4].iter().map(|id| shard_of(id, SHARDS)).collect();
    assert_eq!(shards_of_first.len(), 4, "{:?}", &posted[..4]);

    // One shard alone: its members only.
    h.management.posts.lock().unwrap().clear();
    let one = Audience::Shard {
        room: "wide",
        shard: 2,
    };
    let stats = fanout.to(one, &[], payload, now_secs()).await.unwrap();
    assert_eq!(stats.delivered, per_shard[&2]);
    let posted = h.management.posts.lock().unwrap().clone();
    assert!(posted.iter().all(|p| shard_of(&p.1, SHARDS) == 2));

    // A listing covers every shard.
    let listed = fanout.list(room, now_secs(), n).await.unwrap().unwrap();
    assert_eq!(listed.iter().collect::<BTreeSet<_>>().len(), n);
    assert_eq!(fanout.list(room, now_secs(), n - 1).await.unwrap(), None);
}

/// `n` ids shaped like API Gateway's (15 base64 characters of 11 bytes, then
/// `=`), from a seeded generator so that the test cannot flake.
fn gateway_like_ids(n: usize) -> Vec<String> {
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    (0..n)
        .map(|_| {
            let mut id: String = (0..14)
                .map(|_| char::from(BASE64[rng.usize(..64)]))
                .collect();
            // The last character holds 4 bits of the 11th byte and 2 zero bits.
            id.push(char::from(BASE64[rng.usize(..16) * 4]));
            id.push('=');
            id
        })
        .collect()
}

/// How many of `ids` each of `shards` shards holds.
fn spread<'a>(ids: impl IntoIterator<Item = &'a str>, shards: u16) -> Vec<usize> {
    let mut counts = vec![0; usize::from(shards)];
    for id in ids {
        counts[usize::from(shard_of(id, shards))] += 1;
    }
    counts
}

#[test]
fn shard_of_spreads_gateway_like_ids_evenly() {
    let ids = gateway_like_ids(10_000);
    assert!(ids.iter().all(|id| id.len() == 16));
    let counts = spread(ids.iter().map(String::as_str), 16);
    let mean = 10_000 / 16;
    for (shard, &n) in counts.iter().enumerate() {
        assert!(
            n.abs_diff(mean) * 4 <= mean,
            "shard {shard} holds {n}, mean {mean}: {counts:?}"
        );
    }
}

#[test]
fn shard_of_depends_on_every_bit_of_each_character() {
    // 1,024 ids that differ only in the case of their letters (bit 5 of a byte):
    // a modulo by 16 of FNV-1a alone would put all of them in one shard.
    let ids: Vec<String> = (0u32..1024)
        .map(|mask| {
            let mut id: String = "abcdefghij"
                .chars()
                .enumerate()
                .map(|(i, c)| {
                    if mask & (1 << i) != 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            id.push_str("klmn=");
            id
        })
        .collect();
    let counts = spread(ids.iter().map(String::as_str), 16);
    let mean = 1024 / 16;
    assert!(
        counts.iter().all(|n| n.abs_diff(mean) * 2 <= mean),
        "{counts:?}"
    );
    // Stable across releases: memberships are found where they were written.
    assert_eq!(shard_of("L0SM9cOFvHcCIhw=", 1), 0);
    assert_eq!(shard_of("L0SM9cOFvHcCIhw=", 0), 0);
}
