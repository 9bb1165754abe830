//! A connection whose token expires is told and closed, not left deaf: the first
//! fan-out that includes it, or its own next frame, sends it the `token_expired`
//! error and then closes it through `@connections` (DELETE), as a deployed stack's
//! functions do. The authorizer accepts no leeway, and tokens live 3 seconds.

mod support;

use std::time::Duration;

use roomcast_core::policy::Policies;
use roomcast_core::store::now_secs;
use roomcast_local::{GatewayOptions, RunningGateway};
use serde_json::{Value, json};
use support::{Client, Delivery, WAIT, authorizer, token};

/// The close a DELETE on `@connections` ends a connection with.
const DELETED: (u16, &str) = (1000, "Connection Closed Normally");

async fn gateway(delivery: Delivery) -> RunningGateway {
    support::start(GatewayOptions {
        authorizer: Some(authorizer(false)),
        policies: Some(Policies::parse("{}").expect("policies")),
        ..support::options_for(delivery)
    })
    .await
}

/// A connection for `sub` whose token expires at `exp`.
async fn connect(gw: &RunningGateway, sub: &str, exp: u64) -> Client {
    let url = gw.websocket_url();
    Client::connect(&format!("{url}?token={}", token(sub, &["member"], exp))).await
}

/// Waits (bounded) until a token with `exp` has expired without leeway.
async fn until_expired(exp: u64) {
    tokio::time::timeout(WAIT, async {
        while now_secs() <= exp {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the token expires");
}

fn assert_token_expired(frame: &Value) {
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "token_expired", "{frame}");
}

in_both_deliveries! {
    /// Another member's send reaches an expired member as `token_expired`, then
    /// a close, and is not counted as delivered to it.
    async fn a_fanout_closes_a_member_whose_token_expired(delivery: Delivery) {
        let gw = gateway(delivery).await;
        let exp = now_secs() + 3;
        let mut alice = connect(&gw, "alice", exp).await;
        let mut bob = connect(&gw, "bob", now_secs() + 600).await;
        alice.join("chat:x").await;
        bob.join("chat:x").await;
        until_expired(exp).await;
        let ack = bob
            .request(json!({"action": "send", "room": "chat:x", "event": "hi", "id": 1}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        assert_eq!((ack["recipients"].as_u64(), ack["delivered"].as_u64()), (Some(0), Some(0)));
        assert_token_expired(&alice.next_json().await);
        let (code, reason) = alice.expect_close().await;
        assert_eq!((code, reason.as_str()), DELETED);
        // Bob's connection is untouched.
        bob.assert_nothing_pending().await;
        bob.close().await;
        gw.shutdown().await.unwrap();
    }

    /// A frame from an expired connection gets the same error and close.
    async fn a_frame_after_expiry_is_answered_with_token_expired_and_a_close(delivery: Delivery) {
        let gw = gateway(delivery).await;
        let exp = now_secs() + 3;
        let mut alice = connect(&gw, "alice", exp).await;
        alice.join("chat:y").await;
        until_expired(exp).await;
        let reply = alice
            .request(json!({"action": "send", "room": "chat:y", "event": "hi", "id": 7}))
            .await;
        assert_token_expired(&reply);
        assert_eq!(reply["id"], 7, "{reply}");
        let (code, reason) = alice.expect_close().await;
        assert_eq!((code, reason.as_str()), DELETED);
        gw.shutdown().await.unwrap();
    }
}
