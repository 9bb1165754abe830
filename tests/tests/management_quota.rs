//! `roomcast dev --management-rps` and `--management-burst`: the account-level
//! `@connections` quota. With a refill of 0.01 calls per second, no run of posts
//! a test makes lasts long enough to earn a token, so exactly the burst is
//! accepted however fast the machine: the counts are exact, not bounds. Posts
//! past it get API Gateway's 429 `LimitExceededException`, over HTTP, from the
//! in-process handlers and to simulated members alike.

mod support;

use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::future::join_all;
use roomcast_local::simulated::SimulatedRoom;
use roomcast_local::simulated::table::member_id;
use serde_json::json;
use support::{Client, Delivery, http, options_for, start};

/// The bucket's capacity: the calls accepted in all.
const BURST: u32 = 10;

/// A quota of [`BURST`] calls that refills one call every 100 s, and `members`
/// simulated members in room `sim`.
fn quota_options(delivery: Delivery, members: usize) -> roomcast_local::GatewayOptions {
    roomcast_local::GatewayOptions {
        management_rps: 0.01,
        management_burst: Some(BURST),
        simulated_members: vec![SimulatedRoom {
            room: "sim".into(),
            members,
        }],
        ..options_for(delivery)
    }
}

#[tokio::test]
async fn exactly_the_burst_of_posts_passes_and_the_rest_get_429() {
    let gateway = start(quota_options(Delivery::InProcess, 1)).await;
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&support::sdk().await)
        .endpoint_url(gateway.management_endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(config);
    let target = member_id(0);
    let posts = (0..30).map(|i| {
        sdk.post_to_connection()
            .connection_id(&target)
            .data(Blob::new(format!("{i}")))
            .send()
    });
    let mut accepted = 0;
    for outcome in join_all(posts).await {
        match outcome {
            Ok(_) => accepted += 1,
            Err(e) => {
                let raw = e.raw_response().map(|r| r.status().as_u16());
                assert_eq!(raw, Some(429), "{e:?}");
                let service = e.into_service_error();
                assert!(service.is_limit_exceeded_exception(), "{service:?}");
            }
        }
    }
    assert_eq!(accepted, BURST);
    // API Gateway's shape: the error type in `x-amzn-ErrorType`, a JSON message.
    let path = format!(
        "/{}/@connections/{}",
        gateway.gateway().options().stage,
        target
    );
    let headers = [("content-type", "application/json")];
    let refused = http(gateway.local_addr(), "POST", &path, &headers, b"{}").await;
    assert_eq!(refused.status, 429);
    assert_eq!(
        refused.header("x-amzn-ErrorType"),
        Some("LimitExceededException")
    );
    assert_eq!(refused.json(), json!({"message": "Rate exceeded"}));
    let room = &gateway.gateway().simulated().figures()[0];
    assert_eq!(room.posts_accepted, u64::from(BURST));
    assert_eq!(gateway.gateway().management_calls(), (31, 21));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_socket_gets_exactly_the_burst() {
    let gateway = start(quota_options(Delivery::InProcess, 1)).await;
    let url = gateway.websocket_url();
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    // One post: Bob receives Alice's event, which names her connection id.
    let alice_id = support::connection_id(&mut alice, &mut bob, "r").await;
    let sdk = support::management(&gateway.management_endpoint()).await;
    let config = sdk
        .config()
        .to_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(config);
    let posts = (0..30).map(|i| {
        sdk.post_to_connection()
            .connection_id(&alice_id)
            .data(Blob::new(format!("{i}")))
            .send()
    });
    let accepted = join_all(posts).await.iter().filter(|o| o.is_ok()).count();
    assert_eq!(accepted, BURST as usize - 1, "the burst less Bob's event");
    for _ in 0..accepted {
        alice.next_text().await;
    }
    alice.assert_nothing_pending().await;
    gateway.shutdown().await.unwrap();
}

in_both_deliveries! {
    /// A member's `send` to a room of 20 simulated members: the fan-out's posts
    /// take the burst's 10 tokens, the other 10 get 429 on every retry (the
    /// bucket refills 0.01 calls in the second the retries take), and the ack
    /// counts 10 delivered.
    async fn a_fanout_past_the_burst_delivers_exactly_the_burst(delivery: Delivery) {
        let gateway = start(quota_options(delivery, 20)).await;
        let mut sender = Client::connect(&gateway.websocket_url()).await;
        sender.join("sim").await;
        let ack = sender
            .request(json!({"action": "send", "room": "sim", "event": "e", "data": 1, "id": 7}))
            .await;
        assert_eq!((&ack["type"], &ack["recipients"]), (&json!("ack"), &json!(20)), "{ack}");
        assert_eq!(ack["delivered"], BURST, "{ack}");
        let room = &gateway.gateway().simulated().figures()[0];
        assert_eq!(room.posts_accepted, u64::from(BURST));
        assert_eq!((room.min_per_member, room.max_per_member), (0, 1));
        let (calls, throttled) = gateway.gateway().management_calls();
        assert_eq!(calls - throttled, u64::from(BURST));
        assert!(throttled >= 10, "every refused post, retried: {throttled}");
        gateway.shutdown().await.unwrap();
    }
}
