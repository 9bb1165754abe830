//! A room whose namespace spreads its memberships over four shards, over real
//! sockets against `roomcast dev`, with the memory store and with DynamoDB
//! (dynalite, started by scripts/test, which sets ROOMCAST_TEST_DYNAMODB_ENDPOINT):
//! every member hears each send once (through the workers, one per shard),
//! presence lists all, history numbers the room's events, and leave and
//! disconnect take a member out of its shard.

mod support;

use std::sync::Arc;

use roomcast_core::policy::Policies;
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Store, now_secs, shard_of};
use roomcast_local::{Backend, GatewayOptions, RunningGateway};
use serde_json::json;
use support::{Client, options};

const SHARDS: u16 = 4;
const ROOM: &str = "big:1";

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 1000}},
  "namespaces": {
    "big": {"members": {"shards": 4}, "history": {"size": 100, "ttlSecs": 600}, "presence": true}
  }
}"#;

fn gateway_options() -> GatewayOptions {
    GatewayOptions {
        policies: Some(Policies::parse(POLICIES).unwrap()),
        ..options()
    }
}

/// How many live members each shard of [`ROOM`] holds.
async fn per_shard(store: &dyn Store) -> Vec<usize> {
    let mut counts = Vec::new();
    for shard in 0..SHARDS {
        let mut n = 0;
        let mut cursor = None;
        loop {
            let page = store
                .members_page(ROOM, shard, cursor.as_deref(), 100, now_secs())
                .await
                .unwrap();
            n += page.members.len();
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        counts.push(n);
    }
    counts
}

/// `sender` sends event `name`, which goes to the room's workers; every one of
/// `others` gets it once, and nothing more. Returns the event as the first of `others` got it.
async fn send_reaches(
    sender: &mut Client,
    others: &mut [&mut Client],
    name: &str,
) -> serde_json::Value {
    let frame = json!({"action": "send", "room": ROOM, "event": name, "id": name});
    let ack = sender.request(frame).await;
    // Handed to a worker per shard, which deliver after the ack: the ack has no
    // recipient counts.
    assert_eq!(
        (&ack["type"], &ack["workers"]),
        (&json!("ack"), &json!(SHARDS)),
        "{ack}"
    );
    assert!(ack.get("recipients").is_none(), "{ack}");
    assert!(ack.get("delivered").is_none(), "{ack}");
    let mut first = None;
    for other in others.iter_mut() {
        let event = other.next_json().await;
        assert_eq!(
            (&event["type"], &event["event"]),
            (&json!("event"), &json!(name)),
            "{event}"
        );
        other.assert_nothing_pending().await;
        first.get_or_insert(event);
    }
    sender.assert_nothing_pending().await;
    first.expect("at least one recipient")
}

async fn a_sharded_room(gateway: RunningGateway) {
    let store = gateway.gateway().app().store.clone();
    let mut clients = support::clients_in(&gateway, ROOM, 12).await;
    let counts = per_shard(store.as_ref()).await;
    assert_eq!(counts.iter().sum::<usize>(), 12, "{counts:?}");
    assert!(counts.iter().filter(|&&n| n > 0).count() > 1, "{counts:?}");

    let (first, rest) = clients.split_first_mut().unwrap();
    let mut others: Vec<&mut Client> = rest.iter_mut().collect();
    let event = send_reaches(first, &mut others, "hello").await;
    assert_eq!(event["offset"], 1, "{event}");

    let listing = clients[1]
        .request(json!({"action": "presence", "room": ROOM, "id": "p"}))
        .await;
    assert_eq!(listing["count"], 12, "{listing}");
    let history = clients[1]
        .request(json!({"action": "history", "room": ROOM, "limit": 10, "id": "h"}))
        .await;
    assert_eq!(history["events"][0]["event"], "hello", "{history}");

    // The one who leaves hears no more.
    let ack = clients[2]
        .request(json!({"action": "leave", "room": ROOM, "id": "l"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Learn client 3's id from its event, then close it.
    let gone_event = {
        let (before, after) = clients.split_at_mut(3);
        let (three, after) = after.split_first_mut().unwrap();
        let mut others: Vec<&mut Client> = before
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, c)| c)
            .chain(after.iter_mut())
            .collect();
        send_reaches(three, &mut others, "me").await
    };
    assert_eq!(gone_event["offset"], 2, "{gone_event}");
    let gone = support::sender_id(&gone_event);
    let gone_shard = shard_of(&gone, SHARDS);
    clients.remove(3).close().await;
    support::until_removed(store.as_ref(), &gone).await;
    let member = store
        .member(ROOM, gone_shard, &gone, now_secs())
        .await
        .unwrap();
    assert_eq!(member, None);

    // Twelve joined, one left (client 2), one disconnected.
    let (first, rest) = clients.split_first_mut().unwrap();
    let mut others: Vec<&mut Client> = rest
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, c)| c)
        .collect();
    send_reaches(first, &mut others, "after").await;
    clients[2].assert_nothing_pending().await;
    assert_eq!(per_shard(store.as_ref()).await.iter().sum::<usize>(), 10);
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_sharded_room_with_the_memory_store() {
    let store = Arc::new(MemoryStore::new());
    a_sharded_room(support::start_with(gateway_options(), store, "test".into()).await).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn a_sharded_room_with_dynamodb() {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT is set (scripts/test sets it)");
    let table = format!("roomcast-shards-{:x}", fastrand::u64(..));
    let backend = Backend::Dynamo { endpoint, table };
    let (store, table) = roomcast_local::open_store(&backend, &support::sdk().await)
        .await
        .expect("table created");
    a_sharded_room(support::start_with(gateway_options(), store, table).await).await;
}
