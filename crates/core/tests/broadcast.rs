//! The broadcast function's handler over the memory store (and, for the store's
//! listing queries, DynamoDB on dynalite) with a fake management API: targets,
//! validation, stats, 410 cleanup, throttling, and SQS batches.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use roomcast_core::broadcast::{self, Audience, Broadcast, BroadcastError};
use roomcast_core::handlers::{connect, message};
use roomcast_core::store::dynamo::DynamoStore;
use roomcast_core::store::failing::{Call, FailingStore};
use roomcast_core::store::{Store, now_millis, now_secs};
use serde_json::{Value, json};
use support::{Harness, event, harness_with};

const ENDPOINT: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/test";

fn harness() -> Harness {
    with_endpoint(harness_with(Arc::new(
        roomcast_core::store::memory::MemoryStore::new(),
    )))
}

fn with_endpoint(mut h: Harness) -> Harness {
    h.app.config.management_endpoint = Some(ENDPOINT.to_owned());
    h
}

/// Connects `id` (as `user`, if any) now, and joins `rooms`.
async fn connect_as(h: &Harness, id: &str, user: Option<&str>, rooms: &[&str]) {
    let mut e = event("$connect", id, None, user);
    e.request_context.connected_at = i64::try_from(now_millis()).unwrap();
    assert_eq!(connect(&h.app, e).await.status_code, 200);
    for room in rooms {
        let frame = format!(r#"{{"action":"join","room":"{room}"}}"#);
        message(&h.app, event("join", id, Some(&frame), user)).await;
    }
}

/// An invocation deadline (epoch ms) no test gets near.
fn far() -> u64 {
    now_millis() + 3_600_000
}

async fn invoke(h: &Harness, payload: Value) -> Value {
    broadcast::handle(&h.app, payload, far())
        .await
        .expect("broadcast runs")
}

fn stats(recipients: u64, delivered: u64, gone: u64, failed: u64) -> Value {
    json!({"recipients": recipients, "delivered": delivered, "gone": gone, "failed": failed})
}

/// The stats without the timing.
fn counts(result: &Value) -> Value {
    assert!(result["ms"].is_u64(), "{result}");
    json!({
        "recipients": result["recipients"],
        "delivered": result["delivered"],
        "gone": result["gone"],
        "failed": result["failed"],
    })
}

#[test]
fn requests_are_validated() {
    let parse = |v: Value| Broadcast::parse(&v.to_string());
    let ok = parse(json!({"room": "chat:1", "event": "e", "data": {"x": [1, 2]}})).unwrap();
    assert_eq!(ok.audience, Audience::Room("chat:1".into()));
    assert_eq!(ok.data.get(), r#"{"x":[1,2]}"#);
    assert_eq!(
        parse(json!({"user": "u", "event": "e"}))
            .unwrap()
            .data
            .get(),
        "null"
    );
    assert_eq!(
        parse(json!({"all": true, "event": "e", "except": ["a"]}))
            .unwrap()
            .audience,
        Audience::All
    );
    for bad in [
        json!({"event": "e"}),
        json!({"room": "r", "user": "u", "event": "e"}),
        json!({"room": "bad room", "event": "e"}),
        json!({"room": "r"}),
        json!({"room": "r", "event": ""}),
        json!({"room": "r", "event": "e\n"}),
        json!({"rooms": "r", "event": "e"}),
        json!({"all": false, "event": "e"}),
        json!({"connections": [], "event": "e"}),
        json!({"connections": [""], "event": "e"}),
        json!({"user": "", "event": "e"}),
        json!({"room": "r", "event": "e", "conflate": ""}),
        json!({"room": 5, "event": "e"}),
        json!([1, 2]),
    ] {
        match parse(bad.clone()) {
            Err(BroadcastError::Invalid(_)) => {}
            other => panic!("{bad} gave {other:?}"),
        }
    }
}

#[tokio::test]
async fn room_broadcast_reaches_live_members_but_except() {
    let h = harness();
    for c in ["a=", "b=", "c="] {
        connect_as(&h, c, None, &["r"]).await;
    }
    connect_as(&h, "outsider=", None, &["other"]).await;
    let result = invoke(
        &h,
        json!({"room": "r", "event": "news", "data": {"n": 1}, "except": ["b="]}),
    )
    .await;
    assert_eq!(counts(&result), stats(2, 2, 0, 0));
    assert_eq!(result["throttled_retries"], 0);
    let frame = h.management.only_event("a=");
    assert_eq!(frame["room"], "r");
    assert_eq!(frame["event"], "news");
    assert_eq!(frame["data"], json!({"n": 1}));
    assert_eq!(
        frame["from"],
        json!({"connectionId": null, "userId": null, "service": true})
    );
    assert!(frame["ts"].is_u64());
    assert!(h.management.received("b=").is_empty());
    assert!(h.management.received("outsider=").is_empty());
    assert_eq!(h.management.endpoints(), [ENDPOINT.to_owned()].into());
}

#[tokio::test]
async fn user_broadcast_reaches_every_connection_of_the_user() {
    let h = harness();
    connect_as(&h, "u1a=", Some("alice"), &[]).await;
    connect_as(&h, "u1b=", Some("alice"), &["r"]).await;
    connect_as(&h, "u2=", Some("bob"), &["r"]).await;
    connect_as(&h, "anon=", None, &[]).await;
    let result = invoke(&h, json!({"user": "alice", "event": "dm"})).await;
    assert_eq!(counts(&result), stats(2, 2, 0, 0));
    for c in ["u1a=", "u1b="] {
        let frames = h.management.received(c);
        assert_eq!(frames.len(), 1, "{c}");
        assert_eq!(frames[0]["room"], Value::Null);
        assert_eq!(frames[0]["data"], Value::Null);
    }
    assert!(h.management.received("u2=").is_empty());
    let result = invoke(&h, json!({"user": "nobody", "event": "dm"})).await;
    assert_eq!(counts(&result), stats(0, 0, 0, 0));
}

#[tokio::test]
async fn all_and_connection_targets() {
    let h = harness();
    for c in ["a=", "b=", "c="] {
        connect_as(&h, c, None, &[]).await;
    }
    let result = invoke(&h, json!({"all": true, "event": "e", "except": ["c="]})).await;
    assert_eq!(counts(&result), stats(2, 2, 0, 0));
    assert!(h.management.received("c=").is_empty());
    // Duplicates are posted once; an id that is not connected answers 410.
    h.management.gone.lock().unwrap().insert("ghost=".into());
    let result = invoke(
        &h,
        json!({"connections": ["a=", "a=", "ghost=", "b="], "event": "e", "except": ["b="]}),
    )
    .await;
    assert_eq!(counts(&result), stats(2, 1, 1, 0));
    assert_eq!(h.management.received("a=").len(), 2);
}

#[tokio::test]
async fn gone_connections_are_removed_and_throttling_is_retried() {
    let h = harness();
    for c in ["a=", "b=", "c="] {
        connect_as(&h, c, Some("u"), &["r", "s"]).await;
    }
    h.management.gone.lock().unwrap().insert("b=".into());
    h.management.throttle.lock().unwrap().insert("c=".into(), 2);
    let result = invoke(&h, json!({"room": "r", "event": "e"})).await;
    assert_eq!(counts(&result), stats(3, 2, 1, 0));
    assert_eq!(result["throttled_retries"], 2);
    let now = now_secs();
    assert!(h.store.connection("b=", now).await.unwrap().is_none());
    assert!(h.store.member("s", 0, "b=", now).await.unwrap().is_none());
    let users = h
        .store
        .user_connections_page("u", None, 10, now)
        .await
        .unwrap();
    assert_eq!(users.connection_ids, ["a=", "c="]);
}

#[tokio::test]
async fn oversized_events_and_missing_endpoint_are_errors() {
    let h = harness();
    let big = "x".repeat(140 * 1024);
    let err = broadcast::handle(
        &h.app,
        json!({"room": "r", "event": "e", "data": big}),
        far(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.error_type(), "PayloadTooLarge");
    let err = broadcast::handle(&h.app, json!({"room": "r"}), far())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "InvalidBroadcast");
    assert!(err.to_string().contains("event"), "{err}");
    let mut h = harness();
    h.app.config.management_endpoint = None;
    let err = broadcast::handle(&h.app, json!({"room": "r", "event": "e"}), far())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "Misconfigured");
}

fn record(id: &str, sent: u64, body: &str) -> Value {
    json!({
        "messageId": id,
        "receiptHandle": "h",
        "body": body,
        "attributes": {"SentTimestamp": sent.to_string(), "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:broadcast",
        "awsRegion": "us-east-1"
    })
}

#[test]
fn sqs_events_are_told_apart_by_shape() {
    assert!(broadcast::is_sqs_event(
        &json!({"Records": [record("1", 1, "{}")]})
    ));
    assert!(!broadcast::is_sqs_event(
        &json!({"room": "r", "event": "e"})
    ));
    assert!(!broadcast::is_sqs_event(
        &json!({"Records": [{"eventSource": "aws:s3"}]})
    ));
}

#[tokio::test]
async fn sqs_batches_conflate_group_and_report_only_failures() {
    let h = harness();
    for c in ["a=", "b="] {
        connect_as(&h, c, Some("u"), &["r"]).await;
    }
    let batch = json!({"Records": [
        // Arrives first in the batch but was sent last: it wins the conflation.
        record("m3", 30, r#"{"room":"r","event":"price","data":3,"conflate":"p"}"#),
        record("m1", 10, r#"{"room":"r","event":"price","data":1,"conflate":"p"}"#),
        record("m2", 20, r#"{"room":"r","event":"chat","data":"hi"}"#),
        record("bad", 25, r#"{"room":"r"}"#),
        record("m4", 40, r#"{"user":"u","event":"dm","except":["b="]}"#),
        record("m5", 50, r#"{"room":"r","event":"chat","data":"again"}"#),
    ]});
    let response = invoke(&h, batch).await;
    assert_eq!(
        response,
        json!({"batchItemFailures": [{"itemIdentifier": "bad"}]})
    );
    let seen = |c: &str| -> Vec<(String, Value)> {
        h.management
            .received(c)
            .into_iter()
            .map(|f| (f["event"].as_str().unwrap().to_owned(), f["data"].clone()))
            .collect()
    };
    let mut a = seen("a=");
    // Groups run concurrently; within the room group, queue order holds.
    let dm = a
        .iter()
        .position(|(e, _)| e == "dm")
        .expect("a got the user broadcast");
    a.remove(dm);
    assert_eq!(
        a,
        [
            ("chat".to_owned(), json!("hi")),
            ("price".to_owned(), json!(3)),
            ("chat".to_owned(), json!("again")),
        ]
    );
    assert_eq!(seen("b=").len(), 3);
}

#[tokio::test]
async fn sqs_messages_whose_recipients_cannot_be_read_are_retried() {
    // A store that lists no user's connections and no table scan.
    let store = FailingStore::new(|call| {
        matches!(
            call,
            Call::UserConnectionsPage { .. } | Call::ConnectionsPage { .. }
        )
    });
    let h = with_endpoint(harness_with(Arc::new(store)));
    connect_as(&h, "a=", Some("u"), &[]).await;
    let batch = json!({"Records": [
        record("u1", 1, r#"{"user":"u","event":"e"}"#),
        record("u2", 2, r#"{"user":"u","event":"e"}"#),
        record("all", 3, r#"{"all":true,"event":"e"}"#),
        record("room", 4, r#"{"room":"r","event":"e"}"#),
    ]});
    let event: SqsEvent = serde_json::from_value(batch).unwrap();
    let response = broadcast::handle_sqs(&h.app, event, far()).await;
    let failed = failed_ids(response);
    // The room's members are still readable: that message is not retried.
    assert_eq!(failed, ["all", "u1", "u2"]);
}

/// Lists `user`'s connections (or all, for `None`) page by page at `limit`.
async fn list_all(store: &dyn Store, user: Option<&str>, limit: usize) -> Vec<String> {
    let now = now_secs();
    let mut ids = Vec::new();
    let mut cursor = None;
    loop {
        let page = match user {
            Some(user) => store
                .user_connections_page(user, cursor.as_deref(), limit, now)
                .await
                .unwrap(),
            None => store
                .connections_page(cursor.as_deref(), limit, now)
                .await
                .unwrap(),
        };
        ids.extend(page.connection_ids);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    ids.sort();
    ids
}

/// What every store must list for broadcasts: a user's live connections and all
/// live connections, each once at any page size, memberships and expired ones left out.
async fn listing_suite(h: &Harness) {
    for i in 0..7 {
        connect_as(h, &format!("alice{i}="), Some("alice"), &["r", "s"]).await;
    }
    connect_as(h, "bob=", Some("bob"), &["r"]).await;
    connect_as(h, "anon=", None, &["r"]).await;
    // Expired long ago (the sample events' connectedAt is in 2023).
    assert_eq!(
        connect(&h.app, event("$connect", "old=", None, Some("alice")))
            .await
            .status_code,
        200
    );
    let alice: Vec<String> = (0..7).map(|i| format!("alice{i}=")).collect();
    let mut everyone = alice.clone();
    everyone.extend(["anon=".to_owned(), "bob=".to_owned()]);
    everyone.sort();
    for limit in [1, 2, 3, 100] {
        assert_eq!(
            list_all(h.store.as_ref(), Some("alice"), limit).await,
            alice
        );
        assert_eq!(list_all(h.store.as_ref(), None, limit).await, everyone);
    }
    assert_eq!(
        list_all(h.store.as_ref(), Some("carol"), 5).await,
        Vec::<String>::new()
    );
    h.store.remove_connection("alice3=").await.unwrap();
    assert_eq!(list_all(h.store.as_ref(), Some("alice"), 2).await.len(), 6);
}

#[tokio::test]
async fn memory_store_lists_broadcast_targets() {
    listing_suite(&harness()).await;
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn dynamo_store_lists_broadcast_targets() {
    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT must point at dynalite: run scripts/test");
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"),
        ))
        .build();
    let table = format!("broadcast-{}-{}", std::process::id(), now_millis());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    store.ensure_table().await.unwrap();
    let h = with_endpoint(harness_with(Arc::new(store.clone())));
    listing_suite(&h).await;
    // A broadcast to a user over DynamoDB, with 410 cleanup through byConnection.
    h.management.gone.lock().unwrap().insert("alice0=".into());
    let result = invoke(&h, json!({"user": "alice", "event": "e"})).await;
    assert_eq!(counts(&result), stats(6, 5, 1, 0));
    assert_eq!(list_all(&store, Some("alice"), 100).await.len(), 5);
    assert!(matches!(
        store.connections_page(Some("garbage"), 5, now_secs()).await,
        Err(roomcast_core::store::StoreError::BadCursor)
    ));
}

#[tokio::test]
async fn sample_events_are_handled() {
    let h = harness();
    connect_as(&h, "a=", Some("alice"), &["chat:general", "prices"]).await;
    let read = |name: &str| -> Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    for name in ["broadcast-room.json", "broadcast-user.json"] {
        let result = invoke(&h, read(name)).await;
        assert_eq!(counts(&result), stats(1, 1, 0, 0), "{name}");
    }
    let sqs = read("sqs-broadcast.json");
    assert!(broadcast::is_sqs_event(&sqs));
    assert_eq!(invoke(&h, sqs).await, json!({"batchItemFailures": []}));
    let prices: Vec<Value> = h
        .management
        .received("a=")
        .into_iter()
        .filter(|f| f["event"] == "price")
        .map(|f| f["data"].clone())
        .collect();
    assert_eq!(prices, [json!({"BTC": 2})]);
}

/// A management API that answers after `delay`, as the fake would.
struct Slow {
    inner: Arc<support::FakeManagement>,
    delay: Duration,
}

#[async_trait::async_trait]
impl roomcast_core::management::Management for Slow {
    async fn post(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: bytes::Bytes,
    ) -> Result<(), roomcast_core::management::PostError> {
        tokio::time::sleep(self.delay).await;
        self.inner.post(endpoint, connection_id, data).await
    }
    async fn delete(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<(), roomcast_core::management::PostError> {
        self.inner.delete(endpoint, connection_id).await
    }
}

fn failed_ids(response: aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<String> {
    let mut failed: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    failed.sort();
    failed
}

fn margin_ms() -> u64 {
    u64::try_from(broadcast::DEADLINE_MARGIN.as_millis()).unwrap()
}

#[tokio::test]
async fn sqs_messages_not_started_before_the_deadline_are_reported() {
    let mut h = harness();
    for c in ["a=", "b="] {
        connect_as(&h, c, Some("u"), &["r"]).await;
    }
    h.app.management = Arc::new(Slow {
        inner: h.management.clone(),
        delay: Duration::from_millis(1000),
    });
    // Five groups: the first four start at once; the fifth (`all`) would start
    // after them. Within the room group, the first message starts and takes 1 s.
    let batch = json!({"Records": [
        record("m1", 1, r#"{"room":"r","event":"m","data":1}"#),
        record("m2", 2, r#"{"room":"r","event":"m","data":2}"#),
        record("m3", 3, r#"{"room":"r","event":"m","data":3}"#),
        record("u1", 4, r#"{"user":"u","event":"u"}"#),
        record("c1", 5, r#"{"connections":["a="],"event":"c"}"#),
        record("c2", 6, r#"{"connections":["b="],"event":"c"}"#),
        record("x1", 7, r#"{"all":true,"event":"x","except":["b="]}"#),
    ]});
    let event: SqsEvent = serde_json::from_value(batch.clone()).unwrap();
    // 0.5 s above the margin: everything started in the first 0.5 s runs.
    let deadline = now_millis() + margin_ms() + 500;
    let response = broadcast::handle_sqs(&h.app, event, deadline).await;
    assert_eq!(failed_ids(response), ["m2", "m3", "x1"]);
    let events = |c: &str| -> Vec<Value> {
        h.management
            .received(c)
            .into_iter()
            .map(|f| f["event"].clone())
            .collect::<Vec<_>>()
    };
    let mut a = events("a=");
    a.sort_by_key(ToString::to_string);
    assert_eq!(a, [json!("c"), json!("m"), json!("u")]);
    assert_eq!(h.management.received("a=")[0]["data"], json!(1));

    // Past the margin already: nothing starts, everything comes back.
    h.management.posts.lock().unwrap().clear();
    let event: SqsEvent = serde_json::from_value(batch).unwrap();
    let response = broadcast::handle_sqs(&h.app, event, now_millis() + margin_ms() - 1).await;
    assert_eq!(
        failed_ids(response),
        ["c1", "c2", "m1", "m2", "m3", "u1", "x1"]
    );
    assert!(h.management.posts.lock().unwrap().is_empty());
    // The handler passes the deadline through.
    let batch = json!({"Records": [record("late", 1, r#"{"room":"r","event":"e"}"#)]});
    assert_eq!(
        broadcast::handle(&h.app, batch, now_millis())
            .await
            .unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "late"}]})
    );
}

/// Listing reads of a [`counting`] store.
#[derive(Default)]
struct Counting {
    members_pages: AtomicUsize,
    connections_pages: AtomicUsize,
}

/// The memory store, counting listing reads, and failing reads of `broken`'s
/// members and of any room's second page when told.
fn counting(fail_later_pages: bool) -> (Harness, Arc<Counting>) {
    let counts = Arc::new(Counting::default());
    let seen = counts.clone();
    let store = FailingStore::new(move |call| match call {
        Call::MembersPage { room, cursor, .. } => {
            seen.members_pages.fetch_add(1, Ordering::SeqCst);
            room == "broken" || (fail_later_pages && cursor.is_some())
        }
        Call::ConnectionsPage { .. } => {
            seen.connections_pages.fetch_add(1, Ordering::SeqCst);
            false
        }
        _ => false,
    });
    (with_endpoint(harness_with(Arc::new(store))), counts)
}

#[tokio::test]
async fn a_recipient_read_failing_mid_fanout_keeps_what_went_out() {
    let (h, _) = counting(true);
    // One page and one more: the second page's read fails.
    let n = roomcast_core::fanout::PAGE_SIZE + 1;
    for i in 0..n {
        let member = roomcast_core::store::Member {
            connection_id: format!("m{i:04}="),
            user_id: None,
            expires_at: now_secs() + 3600,
        };
        h.app.store.join("big", 0, &member).await.unwrap();
    }
    let fanout = roomcast_core::fanout::Fanout {
        store: h.app.store.as_ref(),
        management: h.management.as_ref(),
        endpoint: ENDPOINT,
        concurrency: 8,
        retry: roomcast_core::fanout::RetryPolicy::default(),
        presence: None,
        stop_at: None,
        pacer: None,
    };
    let incomplete = fanout
        .send(
            roomcast_core::fanout::Audience::Room {
                room: "big",
                shards: 1,
            },
            &[],
            bytes::Bytes::from_static(b"{}"),
            now_secs(),
        )
        .await
        .unwrap_err();
    assert_eq!(incomplete.stats.recipients, n - 1);
    assert_eq!(incomplete.stats.delivered, n - 1);
    assert_eq!(h.management.posts.lock().unwrap().len(), n - 1);
    // A direct invocation still reports the error (docs/broadcast.md).
    let err = broadcast::handle(&h.app, json!({"room": "big", "event": "e"}), far())
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), "StoreError");

    // Queued: a message that reached members is not retried (they would get it
    // twice); one whose first read failed is.
    h.management.posts.lock().unwrap().clear();
    let batch = json!({"Records": [
        record("big", 1, r#"{"room":"big","event":"e"}"#),
        record("broken", 2, r#"{"room":"broken","event":"e"}"#),
    ]});
    let event: SqsEvent = serde_json::from_value(batch).unwrap();
    let response = broadcast::handle_sqs(&h.app, event, far()).await;
    assert_eq!(failed_ids(response), ["broken"]);
    assert_eq!(h.management.posts.lock().unwrap().len(), n - 1);
}

#[tokio::test]
async fn queued_all_broadcasts_stream_per_message() {
    let (h, reads) = counting(false);
    for c in ["a=", "b=", "c="] {
        connect_as(&h, c, None, &[]).await;
        let member = roomcast_core::store::Member {
            connection_id: c.to_owned(),
            user_id: None,
            expires_at: now_secs() + 3600,
        };
        h.app.store.join("r", 0, &member).await.unwrap();
    }
    let batch = json!({"Records": [
        record("x1", 1, r#"{"all":true,"event":"x","data":1,"except":["c="]}"#),
        record("x2", 2, r#"{"all":true,"event":"x","data":2,"except":["c="]}"#),
        record("r1", 3, r#"{"room":"r","event":"r","data":1}"#),
        record("r2", 4, r#"{"room":"r","event":"r","data":2}"#),
    ]});
    let event: SqsEvent = serde_json::from_value(batch).unwrap();
    let response = broadcast::handle_sqs(&h.app, event, far()).await;
    assert!(response.batch_item_failures.is_empty());
    // `all` is not collected into one list: each message scans on its own.
    assert_eq!(reads.connections_pages.load(Ordering::SeqCst), 2);
    // A room group still reads its (small) member list once.
    assert_eq!(reads.members_pages.load(Ordering::SeqCst), 1);
    for c in ["a=", "b="] {
        let data: Vec<(Value, Value)> = h
            .management
            .received(c)
            .into_iter()
            .map(|f| (f["event"].clone(), f["data"].clone()))
            .collect();
        let all: Vec<&(Value, Value)> = data.iter().filter(|(e, _)| e == "x").collect();
        assert_eq!(
            all,
            [&(json!("x"), json!(1)), &(json!("x"), json!(2))],
            "{c}"
        );
        assert_eq!(data.len(), 4, "{c}");
    }
    assert_eq!(h.management.received("c=").len(), 2);
}

#[tokio::test]
async fn a_redelivered_sqs_message_is_skipped() {
    let h = harness();
    connect_as(&h, "a=", None, &["r"]).await;
    let batch = json!({"Records": [
        record("m1", 1, r#"{"room":"r","event":"e","data":1}"#),
        record("m2", 2, r#"{"room":"r","event":"e","data":2,"idempotencyKey":"order-7"}"#),
    ]});
    assert_eq!(
        invoke(&h, batch.clone()).await,
        json!({"batchItemFailures": []})
    );
    assert_eq!(h.management.received("a=").len(), 2);
    // The batch comes back whole (a timeout, a lost response): nothing is sent again.
    assert_eq!(invoke(&h, batch).await, json!({"batchItemFailures": []}));
    // A new message with a used idempotency key is a repeat too; a new one is not.
    let again = json!({"Records": [
        record("m3", 3, r#"{"room":"r","event":"e","data":2,"idempotencyKey":"order-7"}"#),
        record("m4", 4, r#"{"room":"r","event":"e","data":4}"#),
    ]});
    invoke(&h, again).await;
    let data: Vec<Value> = h
        .management
        .received("a=")
        .iter()
        .map(|f| f["data"].clone())
        .collect();
    assert_eq!(data, [json!(1), json!(2), json!(4)]);
    let repeats = h
        .app
        .metrics
        .snapshot()
        .get(roomcast_core::metrics::Counter::BroadcastRepeats);
    assert_eq!(repeats, 3);
}

#[tokio::test]
async fn a_message_retried_for_unreadable_recipients_is_sent_on_its_retry() {
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let failing = fail.clone();
    let store = FailingStore::new(move |call| {
        matches!(call, Call::UserConnectionsPage { .. }) && failing.load(Ordering::SeqCst)
    });
    let h = with_endpoint(harness_with(Arc::new(store)));
    connect_as(&h, "a=", Some("u"), &[]).await;
    let batch = json!({"Records": [record("u1", 1, r#"{"user":"u","event":"e"}"#)]});
    let event: SqsEvent = serde_json::from_value(batch.clone()).unwrap();
    let response = broadcast::handle_sqs(&h.app, event, far()).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(h.management.received("a=").is_empty());
    // Its record was dropped with the failure: the redelivery is sent.
    fail.store(false, Ordering::SeqCst);
    assert_eq!(invoke(&h, batch).await, json!({"batchItemFailures": []}));
    assert_eq!(h.management.received("a=").len(), 1);
}

#[tokio::test]
async fn a_direct_broadcast_with_a_used_key_is_a_repeat() {
    let h = harness();
    connect_as(&h, "a=", None, &["r"]).await;
    let request = json!({"room": "r", "event": "e", "idempotencyKey": "k1"});
    let first = invoke(&h, request.clone()).await;
    assert_eq!(counts(&first), stats(1, 1, 0, 0));
    assert!(first.get("repeat").is_none(), "{first}");
    let second = invoke(&h, request).await;
    assert_eq!(second["repeat"], true, "{second}");
    assert_eq!(second["recipients"], 0, "{second}");
    assert_eq!(h.management.received("a=").len(), 1);
    let err =
        Broadcast::parse(&json!({"room": "r", "event": "e", "idempotencyKey": ""}).to_string());
    assert!(matches!(err, Err(BroadcastError::Invalid(_))));
}

#[tokio::test]
async fn a_fan_out_stops_when_its_time_is_up() {
    let h = harness();
    let slow = Slow {
        inner: Arc::new(support::FakeManagement::default()),
        delay: Duration::from_millis(50),
    };
    let ids: Vec<String> = (0..40).map(|i| format!("c{i}=")).collect();
    let fanout = roomcast_core::fanout::Fanout {
        store: h.app.store.as_ref(),
        management: &slow,
        endpoint: ENDPOINT,
        concurrency: 1,
        retry: roomcast_core::fanout::RetryPolicy::default(),
        presence: None,
        stop_at: None,
        pacer: None,
    }
    .until(Some(std::time::Instant::now() + Duration::from_millis(200)));
    let stats = fanout
        .to(
            roomcast_core::fanout::Audience::Connections(&ids),
            &[],
            bytes::Bytes::from_static(b"{}"),
            now_secs(),
        )
        .await
        .unwrap();
    // One post at a time, each at least 50 ms: at most 5 start within 200 ms.
    assert!(stats.cut_short, "{stats:?}");
    assert!(stats.delivered <= 5, "{stats:?}");
    assert_eq!(stats.delivered, slow.inner.posts.lock().unwrap().len());
    assert_eq!((stats.recipients, stats.delivered + stats.failed), (40, 40));
}
