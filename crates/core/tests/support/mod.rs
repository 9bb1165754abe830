//! Test doubles and event builders shared by the core's integration tests.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use roomcast_core::App;
use roomcast_core::config::Config;
use roomcast_core::management::{Management, PostError};
use roomcast_core::store::Store;
use roomcast_core::store::memory::MemoryStore;
use serde_json::{Value, json};

/// A management API that records posts and answers as told: 410 for `gone`
/// connections, 429 the given number of times before accepting, and no answer
/// (a refused connection) the given number of times before accepting.
#[derive(Default)]
pub struct FakeManagement {
    pub posts: Mutex<Vec<(String, String, String)>>,
    pub gone: Mutex<HashSet<String>>,
    pub throttle: Mutex<HashMap<String, u32>>,
    pub unreachable: Mutex<HashMap<String, u32>>,
}

impl FakeManagement {
    /// The frames posted to `connection_id`, parsed.
    pub fn received(&self, connection_id: &str) -> Vec<Value> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, c, _)| c == connection_id)
            .map(|(_, _, body)| serde_json::from_str(body).unwrap())
            .collect()
    }

    /// The one frame posted to `connection_id`, which must be an event.
    pub fn only_event(&self, connection_id: &str) -> Value {
        let frames = self.received(connection_id);
        assert_eq!(frames.len(), 1, "{frames:?}");
        assert_eq!(frames[0]["type"], "event");
        frames[0].clone()
    }

    pub fn endpoints(&self) -> HashSet<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|(e, _, _)| e.clone())
            .collect()
    }
}

#[async_trait]
impl Management for FakeManagement {
    async fn post(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), PostError> {
        if self.gone.lock().unwrap().contains(connection_id) {
            return Err(PostError::Gone);
        }
        if let Some(left) = self.throttle.lock().unwrap().get_mut(connection_id)
            && *left > 0
        {
            *left -= 1;
            return Err(PostError::Throttled);
        }
        if let Some(left) = self.unreachable.lock().unwrap().get_mut(connection_id)
            && *left > 0
        {
            *left -= 1;
            return Err(PostError::Unreachable("connection refused".into()));
        }
        self.posts.lock().unwrap().push((
            endpoint.to_owned(),
            connection_id.to_owned(),
            String::from_utf8(data.to_vec()).unwrap(),
        ));
        Ok(())
    }

    async fn delete(&self, _endpoint: &str, connection_id: &str) -> Result<(), PostError> {
        self.gone.lock().unwrap().insert(connection_id.to_owned());
        Ok(())
    }
}

pub struct Harness {
    pub app: App,
    pub store: Arc<dyn Store>,
    pub management: Arc<FakeManagement>,
}

pub fn harness_with(store: Arc<dyn Store>) -> Harness {
    let management = Arc::new(FakeManagement::default());
    let mut config = Config::new("unused");
    // Handler tests act as anonymous and signed-in users alike; the namespace
    // policies have tests of their own (auth_handlers.rs).
    config.policies = roomcast_core::policy::Policies::open();
    let app = App::new(config, store.clone(), management.clone());
    Harness {
        app,
        store,
        management,
    }
}

pub fn harness() -> Harness {
    harness_with(Arc::new(MemoryStore::new()))
}

/// An event as API Gateway builds it, for `route` on `connection_id`.
pub fn event(
    route: &str,
    connection_id: &str,
    body: Option<&str>,
    user: Option<&str>,
) -> ApiGatewayWebsocketProxyRequest {
    let event_type = match route {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    let mut context = json!({
        "routeKey": route,
        "eventType": event_type,
        "connectionId": connection_id,
        "connectedAt": 1_700_000_000_000u64,
        "requestTimeEpoch": 1_700_000_000_100u64,
        "requestId": "req-1",
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "stage": "test",
        "apiId": "abc123",
        "identity": {"sourceIp": "127.0.0.1"},
    });
    if let Some(user) = user {
        context["authorizer"] = json!({"principalId": user, "userId": user});
    }
    let mut event = json!({"requestContext": context, "isBase64Encoded": false});
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    serde_json::from_value(event).unwrap()
}

/// The record of `connection_id`, which must be live at the time [`event`]s
/// give as their connectedAt (1_700_000_000, in 2023).
pub async fn stored_connection(
    h: &Harness,
    connection_id: &str,
) -> roomcast_core::store::Connection {
    h.store
        .connection(connection_id, 1_700_000_000)
        .await
        .unwrap()
        .expect("a live record")
}

/// The body of a handler's response, parsed; `None` when it has no body.
pub fn body(response: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Option<Value> {
    use aws_lambda_events::encodings::Body;
    match &response.body {
        Some(Body::Text(text)) => Some(serde_json::from_str(text).unwrap()),
        Some(other) => panic!("unexpected body {other:?}"),
        None => None,
    }
}

/// The message handler's reply to a `send` of event `e` to `room` (frame id
/// `id`) by the anonymous connection `conn`.
pub async fn anonymous_send(app: &App, conn: &str, room: &str, id: u64) -> Value {
    let frame = json!({"action": "send", "room": room, "event": "e", "id": id}).to_string();
    let request = event("send", conn, Some(&frame), None);
    body(&roomcast_core::handlers::message(app, request).await).expect("a reply")
}

/// What the message handler answers `frame`, sent on `conn` (the `join` route).
pub async fn send_frame(h: &Harness, conn: &str, frame: Value) -> Value {
    let request = event("join", conn, Some(&frame.to_string()), None);
    let response = roomcast_core::handlers::message(&h.app, request).await;
    body(&response).unwrap_or(Value::Null)
}

/// The reply text to `frame` from `conn` as user `u-<conn>`, on the route of its
/// `action`; empty when there is none.
pub async fn user_reply(h: &Harness, conn: &str, frame: Value) -> String {
    let user = format!("u-{conn}");
    let route = frame["action"].as_str().unwrap_or("$default").to_owned();
    let request = event(&route, conn, Some(&frame.to_string()), Some(&user));
    let response = roomcast_core::handlers::message(&h.app, request).await;
    body_text(&response).unwrap_or_default()
}

/// `n` service events of `pad` bytes each into `room`, after a member joined it;
/// the stream's epoch.
pub async fn fill_room(h: &Harness, room: &str, n: u64, pad: usize) -> String {
    let frame = json!({"action": "join", "room": room, "id": 1});
    let ack = send_frame(h, "member=", frame).await;
    for i in 1..=n {
        let data = json!({"i": i, "pad": "x".repeat(pad)});
        let request = json!({"room": room, "event": "e", "data": data});
        roomcast_core::broadcast::handle(&h.app, request, u64::MAX)
            .await
            .unwrap();
    }
    ack["epoch"].as_str().unwrap().to_owned()
}

/// The AWS SDK's configuration for a local service at `endpoint`, with static
/// test credentials.
pub async fn local_sdk(endpoint: impl Into<String>) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "static",
        ))
        .load()
        .await
}

/// A DynamoDB store on a fresh table of the dynalite that scripts/test starts
/// (ROOMCAST_TEST_DYNAMODB_ENDPOINT).
pub async fn dynamo_store(name: &str) -> roomcast_core::store::dynamo::DynamoStore {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT must point at dynalite: run scripts/test");
    let sdk = local_sdk(endpoint).await;
    let table = format!(
        "{name}-{}-{}",
        std::process::id(),
        roomcast_core::store::now_millis()
    );
    let store =
        roomcast_core::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    store.ensure_table().await.unwrap();
    store
}

/// The text of a handler's response body, as sent; `None` when it has none.
pub fn body_text(response: &aws_lambda_events::apigw::ApiGatewayProxyResponse) -> Option<String> {
    use aws_lambda_events::encodings::Body;
    match &response.body {
        Some(Body::Text(text)) => Some(text.clone()),
        Some(other) => panic!("unexpected body {other:?}"),
        None => None,
    }
}
