//! One conformance suite, run against both store adapters: the in-memory store and
//! the DynamoDB store against a real DynamoDB-compatible server (dynalite, started
//! by scripts/test, which sets ROOMCAST_TEST_DYNAMODB_ENDPOINT).

mod support;

use std::collections::BTreeSet;

use roomcast_core::store::dynamo::DynamoStore;
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Connection, FrameCounts, Member, Store, StoreError, shard_of};

const NOW: u64 = 1_800_000_000;
const LATER: u64 = NOW + 7_200;

fn connection(id: &str, user: Option<&str>) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        connected_at: NOW * 1000,
        user_id: user.map(str::to_owned),
        // Identity from the authorizer round-trips with the user.
        roles: user.map_or_else(Vec::new, |_| vec!["admin".into(), "ops".into()]),
        token_expires_at: user.map(|_| NOW + 600),
        expires_at: LATER,
    }
}

fn member(id: &str, expires_at: u64) -> Member {
    Member {
        connection_id: id.to_owned(),
        user_id: Some(format!("user-{id}")),
        expires_at,
    }
}

async fn all_members(store: &dyn Store, room: &str, page: usize, now: u64) -> Vec<Member> {
    shard_members(store, room, 0, page, now).await
}

/// Every live member of `shard` of `room`, read `page` at a time.
async fn shard_members(
    store: &dyn Store,
    room: &str,
    shard: u16,
    page: usize,
    now: u64,
) -> Vec<Member> {
    let mut out = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let p = store
            .members_page(room, shard, cursor.as_deref(), page, now)
            .await
            .unwrap();
        assert!(
            p.members.len() <= page,
            "a page holds at most `limit` members"
        );
        out.extend(p.members);
        pages += 1;
        assert!(pages < 1000, "pagination does not end");
        match p.next {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
}

fn ids(members: &[Member]) -> BTreeSet<String> {
    members.iter().map(|m| m.connection_id.clone()).collect()
}

/// Every property both adapters must have. Connection ids look like API Gateway's
/// (base64 with `=`, `+` and `/`).
async fn suite(store: &dyn Store) {
    // Connections: stored, read back, expired ones invisible, unknown ones absent.
    let alice = connection("aA1+/b=", Some("alice"));
    store.put_connection(&alice).await.unwrap();
    assert_eq!(
        store.connection("aA1+/b=", NOW).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(store.connection("aA1+/b=", LATER).await.unwrap(), None);
    assert_eq!(store.connection("nobody", NOW).await.unwrap(), None);
    let anon = connection("anon=", None);
    store.put_connection(&anon).await.unwrap();
    assert_eq!(store.connection("anon=", NOW).await.unwrap(), Some(anon));

    // Join is idempotent, membership is per room, rooms with shared prefixes stay apart.
    store
        .join("chat", 0, &member("aA1+/b=", LATER))
        .await
        .unwrap();
    store
        .join("chat", 0, &member("aA1+/b=", LATER))
        .await
        .unwrap();
    store
        .join("chat:1", 0, &member("anon=", LATER))
        .await
        .unwrap();
    assert_eq!(
        store.member("chat", 0, "aA1+/b=", NOW).await.unwrap(),
        Some(member("aA1+/b=", LATER))
    );
    assert_eq!(store.member("chat", 0, "anon=", NOW).await.unwrap(), None);
    assert_eq!(
        ids(&all_members(store, "chat", 10, NOW).await),
        BTreeSet::from(["aA1+/b=".to_owned()])
    );
    assert_eq!(
        ids(&all_members(store, "chat:1", 10, NOW).await),
        BTreeSet::from(["anon=".to_owned()])
    );
    assert!(all_members(store, "empty", 10, NOW).await.is_empty());

    // Pagination returns every member exactly once, in pages of at most `limit`.
    let many: Vec<String> = (0..23).map(|i| format!("m{i:02}=")).collect();
    for id in &many {
        store.join("big", 0, &member(id, LATER)).await.unwrap();
    }
    for page in [1, 5, 23, 100] {
        let got = all_members(store, "big", page, NOW).await;
        assert_eq!(got.len(), many.len(), "page size {page}");
        assert_eq!(ids(&got), many.iter().cloned().collect());
    }

    // Expired memberships are ignored by every read.
    store
        .join("big", 0, &member("stale=", NOW - 1))
        .await
        .unwrap();
    assert_eq!(store.member("big", 0, "stale=", NOW).await.unwrap(), None);
    assert!(!ids(&all_members(store, "big", 4, NOW).await).contains("stale="));
    assert_eq!(all_members(store, "big", 4, NOW).await.len(), many.len());

    // Leave reports whether the membership existed, and only removes that one.
    assert!(store.leave("big", 0, "m00=").await.unwrap());
    assert!(!store.leave("big", 0, "m00=").await.unwrap());
    assert!(!store.leave("nowhere", 0, "m01=").await.unwrap());
    assert_eq!(store.member("big", 0, "m00=", NOW).await.unwrap(), None);
    assert_eq!(
        all_members(store, "big", 7, NOW).await.len(),
        many.len() - 1
    );

    // Removing a connection deletes its record and every membership, across more
    // rooms than one BatchWriteItem takes, and nothing of anyone else's.
    let bob = connection("bob=", Some("bob"));
    store.put_connection(&bob).await.unwrap();
    for r in 0..30 {
        store
            .join(&format!("r{r}"), 0, &member("bob=", LATER))
            .await
            .unwrap();
        store
            .join(&format!("r{r}"), 0, &member("carol=", LATER))
            .await
            .unwrap();
    }
    store.join("big", 0, &member("bob=", LATER)).await.unwrap();
    let removed = store.remove_connection("bob=").await.unwrap();
    assert_eq!(removed.items, 1 + 30 + 1);
    // The rooms it was in, in name order, for presence `leave`s.
    let mut rooms: Vec<String> = (0..30).map(|r| format!("r{r}")).collect();
    rooms.push("big".into());
    rooms.sort();
    assert_eq!(removed.rooms, rooms);
    assert_eq!(store.connection("bob=", NOW).await.unwrap(), None);
    for r in 0..30 {
        let room = format!("r{r}");
        assert_eq!(store.member(&room, 0, "bob=", NOW).await.unwrap(), None);
        assert_eq!(
            ids(&all_members(store, &room, 10, NOW).await),
            BTreeSet::from(["carol=".to_owned()])
        );
    }
    assert_eq!(
        all_members(store, "big", 50, NOW).await.len(),
        many.len() - 1
    );
    assert_eq!(store.remove_connection("bob=").await.unwrap().items, 0);
    assert_eq!(store.remove_connection("never=").await.unwrap().items, 0);
    // A connection that joined without a $connect record (a missed write) is removed too.
    assert_eq!(store.remove_connection("carol=").await.unwrap().items, 30);
    assert!(all_members(store, "r0", 10, NOW).await.is_empty());
    assert_eq!(store.connection("aA1+/b=", NOW).await.unwrap(), Some(alice));
}

/// Rate counters: one atomic increment per call of the connection-wide count and
/// (optionally) one key's count in one item, per connection and bucket, left to
/// TTL when the connection is removed.
async fn rate_suite(store: &dyn Store) {
    let expires = NOW + 70;
    let counts = |all, key| FrameCounts { all, key };
    for expected in 1..=5 {
        assert_eq!(
            store
                .count_frame("rc1=", "rate#*#100", Some("chat"), 1, expires, NOW)
                .await
                .unwrap(),
            counts(expected, Some(expected))
        );
    }
    // Another key in the same item counts apart, while the connection-wide count
    // keeps rising; frames without a key raise only the connection-wide count.
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#100", Some("*"), 1, expires, NOW)
            .await
            .unwrap(),
        counts(6, Some(1))
    );
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#100", None, 1, expires, NOW)
            .await
            .unwrap(),
        counts(7, None)
    );
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#100", Some(""), 1, expires, NOW)
            .await
            .unwrap(),
        counts(8, Some(1))
    );
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#100", Some("chat"), 1, expires, NOW)
            .await
            .unwrap(),
        counts(9, Some(6))
    );
    // A replay's charge adds several units at once, to both counts or the
    // connection-wide one alone.
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#100", Some("chat"), 127, expires, NOW)
            .await
            .unwrap(),
        counts(136, Some(133))
    );
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#100", None, 4, expires, NOW)
            .await
            .unwrap(),
        counts(140, None)
    );
    // Another bucket (window) and another connection count apart.
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#110", Some("chat"), 1, expires, NOW)
            .await
            .unwrap(),
        counts(1, Some(1))
    );
    assert_eq!(
        store
            .count_frame("rc1=", "rate#*#120", None, 1, expires, NOW)
            .await
            .unwrap(),
        counts(1, None)
    );
    assert_eq!(
        store
            .count_frame("rc2=", "rate#*#100", Some("chat"), 1, expires, NOW)
            .await
            .unwrap(),
        counts(1, Some(1))
    );
    // Units create a fresh item at their number.
    assert_eq!(
        store
            .count_frame("rc2=", "rate#*#110", Some("chat"), 9, expires, NOW)
            .await
            .unwrap(),
        counts(9, Some(9))
    );
    // Concurrent increments are not lost.
    let results = futures::future::join_all(
        (0..20).map(|_| store.count_frame("rc3=", "rate#*#0", Some("x"), 1, expires, NOW)),
    )
    .await;
    let mut alls: Vec<u64> = results.iter().map(|r| r.as_ref().unwrap().all).collect();
    let mut keys: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().key.unwrap())
        .collect();
    alls.sort_unstable();
    keys.sort_unstable();
    assert_eq!(alls, (1..=20).collect::<Vec<u64>>());
    assert_eq!(keys, (1..=20).collect::<Vec<u64>>());
    // Removing the connection deletes its record and its membership; its three
    // counter items are left to TTL, not deleted one by one.
    store
        .put_connection(&connection("rc1=", Some("u")))
        .await
        .unwrap();
    store
        .join("chat:1", 0, &member("rc1=", LATER))
        .await
        .unwrap();
    assert_eq!(store.remove_connection("rc1=").await.unwrap().items, 1 + 1);
    // Counters are not connections or members.
    assert_eq!(store.connection("rc2=", NOW).await.unwrap(), None);
    assert_eq!(store.remove_connection("rc2=").await.unwrap().items, 0);
}

#[tokio::test]
async fn memory_store_counts_rates() {
    rate_suite(&MemoryStore::new()).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_counts_rates() {
    rate_suite(&dynamo_store().await).await;
}

/// Event streams: gapless offsets under concurrency, epochs that change only when
/// the stream expired, stored events read back in order and expiring, and the
/// head a join reads.
async fn stream_suite(store: &dyn Store) {
    let room = format!("chat:{}", roomcast_core::store::now_millis());
    // A room without a stream: reading the head starts one at 0.
    let head = store.stream_head(&room, 60, NOW).await.unwrap();
    assert_eq!(head.offset, 0);
    assert!(!head.epoch.is_empty());
    // Reading again does not start another.
    assert_eq!(store.stream_head(&room, 60, NOW).await.unwrap(), head);
    // Allocation continues in that epoch, one by one.
    let first = store.next_offset(&room, 60, NOW).await.unwrap();
    assert_eq!(
        (first.epoch.as_str(), first.offset),
        (head.epoch.as_str(), 1)
    );
    // Concurrent allocation: every offset exactly once, no gaps.
    let allocations = (0..40).map(|_| store.next_offset(&room, 60, NOW));
    let mut offsets: Vec<u64> = futures::future::join_all(allocations)
        .await
        .into_iter()
        .map(|h| {
            let h = h.unwrap();
            assert_eq!(h.epoch, head.epoch);
            h.offset
        })
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (2..=41).collect::<Vec<_>>());
    // Events are stored under their offset and read back in order, live only.
    for offset in 1..=41 {
        let expires = if offset <= 3 { NOW + 5 } else { NOW + 60 };
        store
            .put_event(
                &room,
                &head.epoch,
                offset,
                &format!(r#"{{"n":{offset}}}"#),
                expires,
                1000,
            )
            .await
            .unwrap();
    }
    let read = store.events(&room, &head.epoch, 1, 41, NOW).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.offset).collect::<Vec<_>>(),
        (1..=41).collect::<Vec<_>>()
    );
    assert_eq!(read[9].frame, r#"{"n":10}"#);
    let window = store.events(&room, &head.epoch, 10, 12, NOW).await.unwrap();
    assert_eq!(
        window.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [10, 11, 12]
    );
    // Expired events are left out; another epoch's key range holds nothing.
    let later = store
        .events(&room, &head.epoch, 1, 5, NOW + 10)
        .await
        .unwrap();
    assert_eq!(later.iter().map(|e| e.offset).collect::<Vec<_>>(), [4, 5]);
    assert!(
        store
            .events(&room, "other", 1, 41, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .events(&room, &head.epoch, 5, 4, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    // Offsets of 10+ digits still sort: keys are zero-padded.
    let other = format!("{room}-b");
    let h = store.stream_head(&other, 60, NOW).await.unwrap();
    for offset in [9, 10, 100] {
        store
            .put_event(&other, &h.epoch, offset, "{}", NOW + 60, 1000)
            .await
            .unwrap();
    }
    let sorted = store.events(&other, &h.epoch, 9, 100, NOW).await.unwrap();
    assert_eq!(
        sorted.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [9, 10, 100]
    );
    // The stream expires 60 s after its last allocation: then it starts over in a
    // new epoch, once, however many allocate at the same time.
    let expired = NOW + 61;
    let restarts = (0..8).map(|_| store.next_offset(&room, 60, expired));
    let heads: Vec<_> = futures::future::join_all(restarts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let epoch = &heads[0].epoch;
    assert_ne!(epoch, &head.epoch, "an expired stream gets a new epoch");
    let mut offsets: Vec<u64> = heads
        .iter()
        .map(|h| {
            assert_eq!(&h.epoch, epoch, "concurrent restarts agree on one epoch");
            h.offset
        })
        .collect();
    offsets.sort_unstable();
    assert_eq!(offsets, (1..=8).collect::<Vec<_>>());
    // A head read after expiry starts over too.
    let quiet = store.stream_head(&room, 60, expired + 61).await.unwrap();
    assert_eq!(quiet.offset, 0);
    assert_ne!(&quiet.epoch, epoch);
    assert!(
        store
            .events(&room, epoch, 1, 8, expired + 61)
            .await
            .unwrap()
            .is_empty(),
        "nothing of the old epoch is read"
    );
}

#[tokio::test]
async fn memory_store_keeps_streams() {
    stream_suite(&MemoryStore::new()).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_keeps_streams() {
    stream_suite(&dynamo_store().await).await;
}

/// Broadcast idempotency records: the first claim of a key wins, repeats lose
/// while the record lives, an expired record counts as absent, and a released
/// key can be claimed again.
async fn claim_suite(store: &dyn Store) {
    assert!(store.claim_broadcast("m:1", NOW + 60, NOW).await.unwrap());
    assert!(!store.claim_broadcast("m:1", NOW + 60, NOW).await.unwrap());
    assert!(store.claim_broadcast("m:2", NOW + 60, NOW).await.unwrap());
    // Concurrent claims of one key: exactly one wins.
    let results =
        futures::future::join_all((0..10).map(|_| store.claim_broadcast("k:race", NOW + 60, NOW)))
            .await;
    let won = results.iter().filter(|r| *r.as_ref().unwrap()).count();
    assert_eq!(won, 1);
    // Past its ttl (but maybe still stored, as TTL deletes lazily) it is absent.
    assert!(
        store
            .claim_broadcast("m:1", NOW + 200, NOW + 61)
            .await
            .unwrap()
    );
    store.release_broadcast("m:2").await.unwrap();
    assert!(store.claim_broadcast("m:2", NOW + 60, NOW).await.unwrap());
    store.release_broadcast("never").await.unwrap();
}

#[tokio::test]
async fn memory_store_records_broadcast_claims() {
    claim_suite(&MemoryStore::new()).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_records_broadcast_claims() {
    claim_suite(&dynamo_store().await).await;
}

#[tokio::test]
async fn memory_store_conforms() {
    suite(&MemoryStore::new()).await;
}

async fn dynamo_store() -> DynamoStore {
    let store = support::dynamo_store("conformance").await;
    // A second call finds the table and returns.
    store.ensure_table().await.unwrap();
    store
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_conforms() {
    let store = dynamo_store().await;
    suite(&store).await;
    assert!(matches!(
        store.members_page("big", 0, Some("garbage"), 5, NOW).await,
        Err(StoreError::BadCursor)
    ));
}

/// A room spread over 4 shards: each membership is in the shard `shard_of`
/// names and only there, the shards' pages together list every member once,
/// shard 0 is the room's unsharded partition, and removing a connection finds
/// its memberships in every shard and names each room once.
async fn shard_suite(store: &dyn Store) {
    const K: u16 = 4;
    let room = format!("sharded:{}", roomcast_core::store::now_millis());
    let joined: Vec<String> = (0..200).map(|i| format!("s{i:03}+/Q=")).collect();
    for id in &joined {
        store
            .join(&room, shard_of(id, K), &member(id, LATER))
            .await
            .unwrap();
    }
    let mut seen = BTreeSet::new();
    for shard in 0..K {
        let listed = shard_members(store, &room, shard, 23, NOW).await;
        assert!(!listed.is_empty(), "200 ids leave no shard empty");
        for m in listed {
            assert_eq!(shard_of(&m.connection_id, K), shard, "{}", m.connection_id);
            assert!(
                seen.insert(m.connection_id.clone()),
                "{} listed twice",
                m.connection_id
            );
        }
    }
    assert_eq!(seen, joined.iter().cloned().collect::<BTreeSet<_>>());
    assert!(shard_members(store, &room, K, 50, NOW).await.is_empty());

    // Per-shard member, leave.
    let id = &joined[7];
    let home = shard_of(id, K);
    for shard in (0..K).filter(|&s| s != home) {
        assert_eq!(store.member(&room, shard, id, NOW).await.unwrap(), None);
        assert!(!store.leave(&room, shard, id).await.unwrap());
    }
    assert!(store.member(&room, home, id, NOW).await.unwrap().is_some());
    assert!(store.leave(&room, home, id).await.unwrap());
    assert_eq!(store.member(&room, home, id, NOW).await.unwrap(), None);

    // Shard 0 of a sharded room is the room as one shard has it.
    let zero = joined.iter().find(|id| shard_of(id, K) == 0).unwrap();
    assert!(ids(&all_members(store, &room, 500, NOW).await).contains(zero));

    // A connection in two sharded rooms (one of them under two shard counts, as
    // after a change of K) and an unsharded one.
    let c = "multi+/Z=";
    store
        .put_connection(&connection(c, Some("u")))
        .await
        .unwrap();
    let other = format!("{room}-b");
    let plain = format!("{room}-plain");
    store.join(&room, 3, &member(c, LATER)).await.unwrap();
    store.join(&room, 1, &member(c, LATER)).await.unwrap();
    store.join(&other, 2, &member(c, LATER)).await.unwrap();
    store.join(&plain, 0, &member(c, LATER)).await.unwrap();
    let removed = store.remove_connection(c).await.unwrap();
    assert_eq!(removed.items, 1 + 4);
    assert_eq!(removed.rooms, [room.clone(), other.clone(), plain.clone()]);
    for (r, shard) in [(&room, 3), (&room, 1), (&other, 2), (&plain, 0)] {
        assert_eq!(store.member(r, shard, c, NOW).await.unwrap(), None);
    }
    // The other members stay.
    assert!(!shard_members(store, &room, home, 500, NOW).await.is_empty());
}

#[tokio::test]
async fn memory_store_spreads_rooms_over_shards() {
    shard_suite(&MemoryStore::new()).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_spreads_rooms_over_shards() {
    shard_suite(&dynamo_store().await).await;
}

/// Events put with `keep` 3 (a policy's history `size`): the last three are kept
/// by every store. Returns the offsets read back of the five put.
async fn retention_suite(store: &dyn Store) -> Vec<u64> {
    let room = format!("keep:{}", roomcast_core::store::now_millis());
    let head = store.stream_head(&room, 60, NOW).await.unwrap();
    for offset in 1..=5 {
        assert_eq!(
            store.next_offset(&room, 60, NOW).await.unwrap().offset,
            offset
        );
        store
            .put_event(&room, &head.epoch, offset, "{}", NOW + 60, 3)
            .await
            .unwrap();
    }
    let read: Vec<u64> = store
        .events(&room, &head.epoch, 1, 5, NOW)
        .await
        .unwrap()
        .iter()
        .map(|e| e.offset)
        .collect();
    assert!(read.ends_with(&[3, 4, 5]), "{read:?}");
    read
}

#[tokio::test]
async fn memory_store_keeps_what_the_policy_says() {
    // No more than the policy's size, as DynamoDB's readers never read more.
    assert_eq!(retention_suite(&MemoryStore::new()).await, [3, 4, 5]);
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_keeps_what_the_policy_says() {
    // Older events stay until their TTL; history and recovery read the last `size`.
    retention_suite(&dynamo_store().await).await;
}
