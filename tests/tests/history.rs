//! History, recovery and presence over real sockets against `roomcast dev`, with
//! the memory store and with DynamoDB (dynalite, started by scripts/test, which
//! sets ROOMCAST_TEST_DYNAMODB_ENDPOINT).

mod support;

use std::sync::Arc;
use std::time::Duration;

use roomcast_core::policy::Policies;
use roomcast_core::store::Store;
use roomcast_core::store::memory::MemoryStore;
use roomcast_local::{Backend, GatewayOptions, RunningGateway};
use serde_json::{Value, json};
use support::{Client, options};

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 1000}},
  "namespaces": {
    "hist": {"history": {"size": 100, "ttlSecs": 600}, "presence": true, "presenceEvents": true},
    "small": {"history": {"size": 5, "ttlSecs": 600}},
    "brief": {"history": {"size": 100, "ttlSecs": 1}}
  }
}"#;

fn gateway_options() -> GatewayOptions {
    GatewayOptions {
        policies: Some(Policies::parse(POLICIES).unwrap()),
        ..options()
    }
}

async fn memory_gateway() -> RunningGateway {
    support::start_with(
        gateway_options(),
        Arc::new(MemoryStore::new()),
        "test".into(),
    )
    .await
}

async fn dynamo_gateway() -> RunningGateway {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT is set (scripts/test sets it)");
    let table = format!("roomcast-history-{:x}", fastrand::u64(..));
    let backend = Backend::Dynamo { endpoint, table };
    let (store, table) = roomcast_local::open_store(&backend, &support::sdk().await)
        .await
        .expect("table created");
    support::start_with(gateway_options(), store, table).await
}

fn store(gateway: &RunningGateway) -> &dyn Store {
    gateway.gateway().app().store.as_ref()
}

/// Sends `frame` and returns the reply echoing its id, skipping the events and
/// presence changes that arrive meanwhile.
async fn reply(client: &mut Client, frame: Value) -> Value {
    let id = frame["id"].clone();
    client.send(frame).await;
    loop {
        let next = client.next_json().await;
        if next["id"] == id && next["type"] != "event" {
            return next;
        }
    }
}

/// Joins `room` and returns the ack.
async fn join(client: &mut Client, room: &str, since: Option<Value>) -> Value {
    let mut frame = json!({"action": "join", "room": room, "id": "j"});
    if let Some(since) = since {
        frame["since"] = since;
    }
    let ack = reply(client, frame).await;
    assert_eq!(
        (&ack["type"], &ack["action"]),
        (&json!("ack"), &json!("join")),
        "{ack}"
    );
    ack
}

/// Sends `n` events and returns their acks' offsets.
async fn send_many(client: &mut Client, room: &str, n: u64) -> Vec<u64> {
    let mut offsets = Vec::new();
    for i in 0..n {
        let ack = reply(
            client,
            json!({"action": "send", "room": room, "event": "m", "data": i, "id": i}),
        )
        .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        offsets.push(
            ack["offset"]
                .as_u64()
                .expect("a send ack in a history room has an offset"),
        );
    }
    offsets
}

/// Closes `client` after learning its connection id, and waits for `$disconnect`.
async fn drop_connection(gateway: &RunningGateway, mut client: Client, witness: &mut Client) {
    let id = support::connection_id(&mut client, witness, "side:room").await;
    client.close().await;
    support::until_removed(store(gateway), &id).await;
}

async fn recovery(gateway: RunningGateway) {
    let url = gateway.websocket_url();
    let room = format!("hist:{:x}", fastrand::u64(..));
    let (mut a, mut b, mut witness) = (
        Client::connect(&url).await,
        Client::connect(&url).await,
        Client::connect(&url).await,
    );
    join(&mut a, &room, None).await;
    send_many(&mut a, &room, 3).await;
    let position = join(&mut b, &room, None).await;
    assert_eq!(position["offset"], 3);
    let epoch = position["epoch"].as_str().unwrap().to_owned();
    drop_connection(&gateway, b, &mut witness).await;
    let sent = send_many(&mut a, &room, 50).await;
    assert_eq!(sent, (4..=53).collect::<Vec<_>>());
    // The rejoin gets exactly the 50 missed events, in order, then its ack.
    let mut b = Client::connect(&url).await;
    b.send(
        json!({"action": "join", "room": room, "id": "re", "since": {"offset": 3, "epoch": epoch}}),
    )
    .await;
    for expected in 4..=53u64 {
        let event = b.next_json().await;
        assert_eq!(event["type"], "event", "{event}");
        assert_eq!(
            (event["offset"].as_u64(), event["data"].as_u64()),
            (Some(expected), Some(expected - 4))
        );
        assert_eq!(event["epoch"], epoch.as_str());
    }
    let ack = b.next_json().await;
    assert_eq!(
        (
            &ack["type"],
            &ack["recovered"],
            &ack["offset"],
            &ack["epoch"]
        ),
        (&json!("ack"), &json!(true), &json!(53), &json!(epoch)),
        "{ack}"
    );
    b.assert_nothing_pending().await;
    // Live events continue from there.
    send_many(&mut a, &room, 1).await;
    assert_eq!(b.next_json().await["offset"], 54);

    // history reads back what was delivered.
    let page = b
        .request(json!({"action": "history", "room": room, "limit": 3, "before": 10, "id": "h"}))
        .await;
    let offsets = event_offsets(&page);
    assert_eq!(
        (offsets, &page["epoch"]),
        (vec![7, 8, 9], &json!(epoch)),
        "{page}"
    );

    // A history exceeded: more missed than the namespace keeps.
    let small = format!("small:{:x}", fastrand::u64(..));
    join(&mut a, &small, None).await;
    let c = Client::connect(&url).await;
    let mut c = c;
    let at = join(&mut c, &small, None).await;
    drop_connection(&gateway, c, &mut witness).await;
    send_many(&mut a, &small, 6).await;
    let mut c = Client::connect(&url).await;
    let since = json!({"offset": at["offset"], "epoch": at["epoch"]});
    let ack = join(&mut c, &small, Some(since)).await;
    assert_eq!(
        (&ack["recovered"], &ack["offset"]),
        (&json!(false), &json!(6)),
        "{ack}"
    );
    c.assert_nothing_pending().await;

    // A history expired as a whole: the stream starts over in a new epoch.
    let brief = format!("brief:{:x}", fastrand::u64(..));
    join(&mut a, &brief, None).await;
    let sent = send_many(&mut a, &brief, 2).await;
    let before = join(&mut c, &brief, None).await;
    // TTLs are whole seconds: wait until this one has surely passed.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let mut d = Client::connect(&url).await;
    let since = json!({"offset": sent[0], "epoch": before["epoch"]});
    let ack = join(&mut d, &brief, Some(since)).await;
    assert_eq!(ack["recovered"], false, "{ack}");
    assert_ne!(ack["epoch"], before["epoch"], "{ack}");
    assert_eq!(ack["offset"], 0);
    d.assert_nothing_pending().await;
    gateway.shutdown().await.expect("clean shutdown");
}

async fn concurrent_sends(gateway: RunningGateway) {
    let url = gateway.websocket_url();
    let room = format!("hist:{:x}", fastrand::u64(..));
    let mut listener = Client::connect(&url).await;
    join(&mut listener, &room, None).await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        let mut client = Client::connect(&url).await;
        join(&mut client, &room, None).await;
        senders.push(client);
    }
    // Every sender also receives the others' events: read them out of the way.
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut client| {
            let room = room.clone();
            tokio::spawn(async move {
                let mut acks = Vec::new();
                for i in 0..10 {
                    client
                        .send(json!({"action": "send", "room": room, "event": "m", "data": i, "id": i}))
                        .await;
                }
                while acks.len() < 10 {
                    let frame = client.next_json().await;
                    if frame["type"] == "ack" {
                        acks.push(frame["offset"].as_u64().unwrap());
                    }
                }
                acks
            })
        })
        .collect();
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=40).collect::<Vec<_>>(),
        "every offset once, none missing"
    );
    let mut seen = Vec::new();
    while seen.len() < 40 {
        // The senders' joins came first, as presence changes.
        let event = next_of(&mut listener, "event").await;
        seen.push(event["offset"].as_u64().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (1..=40).collect::<Vec<_>>());
    gateway.shutdown().await.expect("clean shutdown");
}

/// The next frame of `type_`, skipping others (each wait bounded by WAIT).
async fn next_of(client: &mut Client, type_: &str) -> Value {
    loop {
        let frame = client.next_json().await;
        if frame["type"] == type_ {
            return frame;
        }
    }
}

async fn presence(gateway: RunningGateway) {
    let url = gateway.websocket_url();
    let room = format!("hist:{:x}", fastrand::u64(..));
    let (mut a, mut b, mut witness) = (
        Client::connect(&url).await,
        Client::connect(&url).await,
        Client::connect(&url).await,
    );
    join(&mut a, &room, None).await;
    join(&mut b, &room, None).await;
    let change = next_of(&mut a, "presence").await;
    assert_eq!(
        (&change["change"], &change["room"]),
        (&json!("join"), &json!(room)),
        "{change}"
    );
    let b_id = change["member"]["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(change["member"]["userId"], Value::Null);
    let list = a
        .request(json!({"action": "presence", "room": room, "id": "p"}))
        .await;
    assert_eq!(
        list,
        json!({"type": "presence", "id": "p", "room": room, "count": 2, "members": [{"userId": null, "connections": 2}]})
    );
    // A leave.
    b.request(json!({"action": "leave", "room": room, "id": "l"}))
        .await;
    let change = next_of(&mut a, "presence").await;
    assert_eq!(
        (&change["change"], &change["member"]["connectionId"]),
        (&json!("leave"), &json!(b_id))
    );
    // A disconnect.
    join(&mut b, &room, None).await;
    let change = next_of(&mut a, "presence").await;
    assert_eq!(change["change"], "join");
    drop_connection(&gateway, b, &mut witness).await;
    let change = next_of(&mut a, "presence").await;
    assert_eq!(
        (&change["change"], &change["member"]["connectionId"]),
        (&json!("leave"), &json!(b_id))
    );
    let list = a
        .request(json!({"action": "presence", "room": room, "id": "p"}))
        .await;
    assert_eq!(list["count"], 1, "{list}");
    // Not a member: refused.
    let refused = witness
        .request(json!({"action": "presence", "room": room, "id": 1}))
        .await;
    assert_eq!(refused["code"], "not_member");
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn recovery_with_the_memory_store() {
    recovery(memory_gateway().await).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn recovery_with_dynamodb() {
    recovery(dynamo_gateway().await).await;
}

#[tokio::test]
async fn concurrent_sends_get_gapless_offsets_with_the_memory_store() {
    concurrent_sends(memory_gateway().await).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn concurrent_sends_get_gapless_offsets_with_dynamodb() {
    concurrent_sends(dynamo_gateway().await).await;
}

#[tokio::test]
async fn presence_with_the_memory_store() {
    presence(memory_gateway().await).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn presence_with_dynamodb() {
    presence(dynamo_gateway().await).await;
}

/// The offsets of the events of a `history` reply, in order.
fn event_offsets(reply: &Value) -> Vec<u64> {
    let events = reply["events"].as_array().unwrap();
    let offsets = events.iter().map(|e| e["offset"].as_u64());
    offsets.collect::<Option<_>>().unwrap()
}
