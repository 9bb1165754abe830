//! Big rooms over real sockets: in a sharded room `send` and the broadcast
//! function hand the fan-out to `roomcast dev`'s in-process workers (one job
//! per shard, a shard's jobs in order), and every member gets every event once,
//! in order. On the memory store and on DynamoDB (dynalite, from scripts/test).

mod support;

use std::sync::Arc;

use roomcast_client::{Audience, Broadcast, Broadcaster};
use roomcast_core::policy::Policies;
use roomcast_core::store::Store;
use roomcast_core::store::memory::MemoryStore;
use roomcast_local::{Backend, GatewayOptions, RunningGateway};
use serde_json::json;
use support::{clients_in, options};

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 1000}},
  "namespaces": {"big": {"members": {"shards": 4}, "history": {"size": 100, "ttlSecs": 600}}}
}"#;

/// Events the sender sends back to back.
const EVENTS: u64 = 30;

fn gateway_options() -> GatewayOptions {
    GatewayOptions {
        policies: Some(Policies::parse(POLICIES).unwrap()),
        ..options()
    }
}

async fn gateway_on(store: Arc<dyn Store>, table: String) -> RunningGateway {
    support::start_with(gateway_options(), store, table).await
}

async fn dynamo() -> (Arc<dyn Store>, String) {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT is set (scripts/test sets it)");
    let table = format!("roomcast-workers-{:x}", fastrand::u64(..));
    let backend = Backend::Dynamo { endpoint, table };
    roomcast_local::open_store(&backend, &support::sdk().await)
        .await
        .expect("table created")
}

async fn events_arrive_once_and_in_order(gateway: RunningGateway) {
    let mut members = clients_in(&gateway, "big:r", 8).await;
    let mut sender = members.remove(0);
    for i in 1..=EVENTS {
        let frame = json!({"action": "send", "room": "big:r", "event": "n", "data": i, "id": i});
        let ack = sender.request(frame).await;
        // Acked with its offset as soon as the four jobs are handed over.
        assert_eq!(
            (&ack["type"], &ack["workers"], &ack["offset"]),
            (&json!("ack"), &json!(4), &json!(i)),
            "{ack}"
        );
    }
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&support::sdk().await)
            .endpoint_url(gateway.lambda_endpoint())
            .build(),
    );
    let stats = Broadcaster::lambda(lambda, "broadcast")
        .invoke(
            &Broadcast::new(Audience::room("big:r"), "n")
                .data(json!(EVENTS + 1))
                .unwrap(),
        )
        .await
        .expect("invoke succeeds");
    assert_eq!((stats.workers, stats.recipients), (4, 0), "{stats:?}");
    for member in &mut members {
        for i in 1..=EVENTS + 1 {
            let event = member.next_json().await;
            assert_eq!(
                (&event["type"], &event["offset"], &event["data"]),
                (&json!("event"), &json!(i), &json!(i)),
                "{event}"
            );
        }
        member.assert_nothing_pending().await;
    }
    // The sender heard its own broadcast (it is no `send` of its), nothing else.
    let own = sender.next_json().await;
    assert_eq!(
        (&own["offset"], &own["data"]),
        (&json!(EVENTS + 1), &json!(EVENTS + 1))
    );
    sender.assert_nothing_pending().await;
}

#[tokio::test]
async fn a_sharded_room_gets_every_event_once_in_order_on_the_memory_store() {
    events_arrive_once_and_in_order(gateway_on(Arc::new(MemoryStore::new()), "test".into()).await)
        .await;
}

#[tokio::test]
async fn a_sharded_room_gets_every_event_once_in_order_on_dynamodb() {
    let (store, table) = dynamo().await;
    events_arrive_once_and_in_order(gateway_on(store, table).await).await;
}
