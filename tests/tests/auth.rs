//! Auth over real sockets on `roomcast dev`: the `$connect` authorizer
//! refuses handshakes before the upgrade, accepts tokens from the query string and
//! from the `bearer` subprotocol, and its context reaches every later event; the
//! namespace policies and the rate limits apply to frames.

mod support;

use std::sync::Arc;

use roomcast_core::auth::{AuthConfig, Authorizer};
use roomcast_core::policy::Policies;
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Store, now_secs};
use roomcast_local::{GatewayOptions, RunningGateway};
use serde_json::{Value, json};
use support::{Client, WAIT};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

use support::{authorizer, token};

fn valid(sub: &str) -> String {
    token(sub, &["member"], now_secs() + 600)
}

async fn gateway(allow_anonymous: bool, policies: &str) -> (RunningGateway, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let options = GatewayOptions {
        authorizer: Some(authorizer(allow_anonymous)),
        policies: Some(Policies::parse(policies).unwrap()),
        ..support::options()
    };
    let running = support::start_with(options, store.clone(), "test".into()).await;
    (running, store)
}

/// The status a refused handshake got.
async fn refused(url: &str) -> u16 {
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("answer in time")
    {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("handshake accepted"),
    }
}

#[tokio::test]
async fn missing_and_bad_tokens_are_refused_before_the_upgrade() {
    let (gw, store) = gateway(false, "{}").await;
    let url = gw.websocket_url();
    assert_eq!(refused(&url).await, 401);
    // An empty token is a bad one, not a missing one.
    assert_eq!(refused(&format!("{url}?token=")).await, 403);
    assert_eq!(refused(&format!("{url}?token=garbage")).await, 403);
    let expired = token("alice", &[], now_secs() - 3600);
    assert_eq!(refused(&format!("{url}?token={expired}")).await, 403);
    let forged = {
        let t = valid("alice");
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.AAAA")
    };
    assert_eq!(refused(&format!("{url}?token={forged}")).await, 403);
    // $connect never ran for any of them.
    assert!(store.is_empty());
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn query_string_tokens_connect_and_identify_the_sender() {
    let (gw, store) = gateway(false, "{}").await;
    let url = gw.websocket_url();
    let mut alice = Client::connect(&format!("{url}?token={}", valid("alice"))).await;
    let mut bob = Client::connect(&format!("{url}?token={}", valid("bob"))).await;
    alice.join("chat:1").await;
    bob.join("chat:1").await;
    alice
        .send(json!({"action": "send", "room": "chat:1", "event": "hi", "data": 1, "id": 1}))
        .await;
    let event = bob.next_json().await;
    assert_eq!(event["type"], "event", "{event}");
    assert_eq!(event["from"]["userId"], "alice");
    let ack = alice.next_json().await;
    assert_eq!(ack["recipients"], 1, "{ack}");
    // The connection record keeps the identity the authorizer established.
    let id = event["from"]["connectionId"].as_str().unwrap();
    let record = store.connection(id, now_secs()).await.unwrap().unwrap();
    assert_eq!(record.user_id.as_deref(), Some("alice"));
    assert_eq!(record.roles, ["member"]);
    assert!(record.token_expires_at.unwrap() > now_secs());
    alice.close().await;
    bob.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn subprotocol_tokens_connect_and_the_handshake_selects_bearer() {
    let (gw, _store) = gateway(false, "{}").await;
    let mut request = gw.websocket_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&format!("bearer, {}", valid("carol"))).unwrap(),
    );
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake in time")
        .expect("handshake accepted");
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "bearer"
    );
    let mut ws = ws;
    use futures::{SinkExt, StreamExt};
    ws.send(Message::text(
        r#"{"action":"join","room":"user:carol","id":1}"#,
    ))
    .await
    .unwrap();
    let reply = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(reply["type"], "ack", "{reply}");
    // A bad token in the subprotocol is refused like one in the query string.
    let mut request = gw.websocket_url().into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("bearer, nope"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let _ = ws.close(None).await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn namespace_policies_apply_to_socket_frames() {
    let (gw, _store) = gateway(
        true,
        r#"{"namespaces": {
            "user": {"join": "owner", "send": "owner"},
            "public": {"join": "anyone", "send": "anyone"},
            "news": {"join": "anyone", "send": "nobody"}
        }}"#,
    )
    .await;
    let url = gw.websocket_url();
    let mut alice = Client::connect(&format!("{url}?token={}", valid("alice"))).await;
    let mut anon = Client::connect(&url).await;
    alice.join("user:alice").await;
    let r = alice
        .request(json!({"action": "join", "room": "user:bob", "id": 1}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    // Anonymous: allowed here by configuration, but only where the policy says anyone.
    let r = anon
        .request(json!({"action": "join", "room": "chat:1", "id": 2}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    anon.join("public:lobby").await;
    anon.join("news:today").await;
    let r = anon
        .request(json!({"action": "send", "room": "news:today", "event": "e", "id": 3}))
        .await;
    assert_eq!(r["code"], "forbidden", "{r}");
    alice.close().await;
    anon.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn flooding_connections_are_rate_limited_then_closed() {
    // A day-long window: the test never straddles two windows in practice.
    let (gw, _store) = gateway(
        false,
        r#"{"default": {"rateLimit": {"limit": 2, "windowSecs": 86400, "closeAfter": 2}}}"#,
    )
    .await;
    let url = gw.websocket_url();
    let mut alice = Client::connect(&format!("{url}?token={}", valid("alice"))).await;
    let mut bob = Client::connect(&format!("{url}?token={}", valid("bob"))).await;
    alice.join("chat:1").await;
    alice.join("chat:1").await;
    let join = json!({"action": "join", "room": "chat:1", "id": 9});
    let r = alice.request(join.clone()).await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    assert_eq!(r["id"], 9);
    // At twice the limit: the error, then the close.
    let r = alice.request(join.clone()).await;
    assert_eq!(r["code"], "rate_limited", "{r}");
    let (code, _) = alice.expect_close().await;
    assert_eq!(code, 1000);
    // Other connections are unaffected.
    bob.join("chat:1").await;
    bob.close().await;
    gw.shutdown().await.unwrap();
}

#[tokio::test]
async fn dev_without_auth_configuration_stays_anonymous_and_open() {
    // What `roomcast dev` does without auth flags: anonymous allowed, open policies.
    let options = GatewayOptions {
        authorizer: Some(Arc::new(Authorizer::new(AuthConfig {
            jwt: None,
            allow_anonymous: true,
            origins: Default::default(),
        }))),
        ..support::options()
    };
    let gw = support::start(options).await;
    let url = gw.websocket_url();
    let mut a = Client::connect(&url).await;
    a.join("chat:general").await;
    let r = a
        .request(json!({"action": "send", "room": "chat:general", "event": "m", "id": 1}))
        .await;
    assert_eq!(r["type"], "ack", "{r}");
    a.close().await;
    gw.shutdown().await.unwrap();
}
