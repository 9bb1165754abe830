//! `roomcast dev --management-rps`: the account-level `@connections` quota. Calls
//! past the bucket get 429 `LimitExceededException` from the SDK client, and a
//! room's fan-out, which retries 429s, still reaches every member.

mod support;

use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::future::join_all;
use roomcast_core::metrics::Counter;
use serde_json::json;
use support::{Client, Delivery, options_for, start};

/// 20 calls per second, a burst of 10.
const RPS: u32 = 20;

#[tokio::test]
async fn posts_past_the_burst_answer_429_and_the_rest_deliver() {
    let gateway = start(roomcast_local::GatewayOptions {
        management_rps: f64::from(RPS),
        ..options_for(Delivery::InProcess)
    })
    .await;
    let url = gateway.websocket_url();
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    let alice_id = support::connection_id(&mut alice, &mut bob, "r").await;

    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&support::sdk().await)
        .endpoint_url(gateway.management_endpoint())
        .retry_config(RetryConfig::disabled())
        .build();
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(config);
    // Far more than the bucket holds plus what it refills while they run.
    let posts = (0..200).map(|i| {
        sdk.post_to_connection()
            .connection_id(&alice_id)
            .data(Blob::new(format!("{i}")))
            .send()
    });
    let outcomes = join_all(posts).await;
    let mut delivered = 0;
    let mut throttled = 0;
    for outcome in outcomes {
        match outcome {
            Ok(_) => delivered += 1,
            Err(e) => {
                let raw = e.raw_response().map(|r| r.status().as_u16());
                assert_eq!(raw, Some(429), "{e:?}");
                let service = e.into_service_error();
                assert!(service.is_limit_exceeded_exception(), "{service:?}");
                throttled += 1;
            }
        }
    }
    assert!(delivered > 0, "some posts fit in the bucket");
    assert!(throttled > 0, "some posts were past it");
    for _ in 0..delivered {
        alice.next_text().await;
    }
    alice.assert_nothing_pending().await;
    gateway.shutdown().await.unwrap();
}

in_both_deliveries! {
    /// More members than the burst (100 per second, a burst of 50): the fan-out's
    /// posts past the bucket get 429 and are retried with backoff until every
    /// member has the event. The excess is what the bucket refills well within the
    /// fan-out's retries (five, up to about 0.8 s in all); far past that, posts
    /// fail for good, as they would against API Gateway.
    async fn a_fanout_past_the_burst_reaches_every_member(delivery: Delivery) {
        let gateway = start(roomcast_local::GatewayOptions {
            management_rps: 100.0,
            ..options_for(delivery)
        })
        .await;
        let mut members = support::clients_in(&gateway, "big", 61).await;
        let mut sender = members.pop().expect("a sender");
        sender
            .send(json!({"action": "send", "room": "big", "event": "e", "data": 1, "id": 1}))
            .await;
        for member in &mut members {
            let event = member.next_json().await;
            assert_eq!((&event["type"], &event["data"]), (&json!("event"), &json!(1)));
        }
        let ack = sender.next_json().await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let metrics = &gateway.gateway().options().metrics;
        assert!(metrics.snapshot().get(Counter::FanoutThrottledRetries) > 0, "posts were throttled");
        gateway.shutdown().await.unwrap();
    }
}
