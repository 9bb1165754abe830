//! `roomcast dev --dynamodb-endpoint`: the room flow against dynalite, started by
//! scripts/test (which sets ROOMCAST_TEST_DYNAMODB_ENDPOINT).

mod support;

use roomcast_local::Backend;
use serde_json::json;
use support::options;

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn rooms_work_with_dynamodb() {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT is set (scripts/test sets it)");
    let table = format!("roomcast-e2e-{:x}", fastrand::u64(..));
    let backend = Backend::Dynamo { endpoint, table };
    let sdk = support::sdk().await;
    // Twice: the second call finds the table the first created.
    let _ = roomcast_local::open_store(&backend, &sdk)
        .await
        .expect("table created");
    let (store, table) = roomcast_local::open_store(&backend, &sdk)
        .await
        .expect("existing table accepted");
    let gateway = support::start_with(options(), store, table).await;
    let url = gateway.websocket_url();
    let (mut alice, mut bob, mut carol) = support::alice_bob_and_carol(&url).await;
    let ack = alice
        .request(json!({"action": "send", "room": "chat:1", "event": "msg", "data": 1, "id": 1}))
        .await;
    assert_eq!(
        (&ack["recipients"], &ack["delivered"]),
        (&json!(1), &json!(1)),
        "{ack}"
    );
    let event = bob.next_json().await;
    assert_eq!(
        (&event["type"], &event["data"]),
        (&json!("event"), &json!(1))
    );
    carol.assert_nothing_pending().await;

    let bob_id = support::connection_id(&mut bob, &mut carol, "chat:2").await;
    bob.close().await;
    support::until_removed(gateway.gateway().app().store.as_ref(), &bob_id).await;
    support::assert_send_reaches_nobody(&mut alice, "chat:1", 2).await;
    gateway.shutdown().await.expect("clean shutdown");
}
