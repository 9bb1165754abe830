//! The broadcast queue in `roomcast dev`, over real sockets: the AWS SDK for Rust's
//! SQS client and crates/client's queue mode send; the event source mapping
//! batches, conflates, retries reported failures and dead-letters what keeps failing.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName, SendMessageBatchRequestEntry};
use roomcast_client::{Audience, Broadcast, Broadcaster};
use roomcast_local::queue::{DEAD_LETTER_QUEUE_NAME, FUNCTION_NAME, QUEUE_NAME, QueueOptions};
use roomcast_local::{FunctionError, LambdaFunction, RunningGateway};
use serde_json::{Value, json};
use support::{Client, options, start};

fn sqs(gateway: &RunningGateway, sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(sdk)
            .endpoint_url(gateway.lambda_endpoint())
            .build(),
    )
}

async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("GetQueueUrl")
        .queue_url
        .expect("a queue URL")
}

/// What the event source mapping handed the function, batch by batch: each
/// record's body and `ApproximateReceiveCount`.
#[derive(Default)]
struct Recorded(Mutex<Vec<Vec<(String, u32)>>>);

/// Records each batch, then runs the real broadcast function.
struct Recorder {
    batches: Arc<Recorded>,
    inner: Arc<dyn LambdaFunction>,
}

#[async_trait]
impl LambdaFunction for Recorder {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        let batch = payload["Records"]
            .as_array()
            .expect("an SQS event")
            .iter()
            .map(|r| {
                (
                    r["body"].as_str().unwrap_or_default().to_owned(),
                    r["attributes"]["ApproximateReceiveCount"]
                        .as_str()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                )
            })
            .collect();
        self.batches.0.lock().unwrap().push(batch);
        self.inner.invoke(payload).await
    }
}

fn record(gateway: &RunningGateway) -> Arc<Recorded> {
    let functions = gateway.gateway().functions();
    let batches = Arc::new(Recorded::default());
    let inner = functions
        .get(FUNCTION_NAME)
        .expect("the broadcast function");
    functions.register(
        FUNCTION_NAME,
        Arc::new(Recorder {
            batches: Arc::clone(&batches),
            inner,
        }),
    );
    batches
}

/// Event frames until `done` says enough; panics (after the client's bounded
/// wait) if they stop coming.
async fn events_until(client: &mut Client, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    while !done(&events) {
        let frame = client.next_json().await;
        assert_eq!(frame["type"], "event", "{frame}");
        events.push(frame);
    }
    events
}

#[tokio::test]
async fn sdk_and_client_messages_reach_room_members() {
    let gateway = start(options()).await;
    let sdk = support::sdk().await;
    let sqs = sqs(&gateway, &sdk);
    let mut members = [
        Client::connect(&gateway.websocket_url()).await,
        Client::connect(&gateway.websocket_url()).await,
    ];
    for m in &mut members {
        m.join("q").await;
    }
    let mut outsider = Client::connect(&gateway.websocket_url()).await;

    let url = queue_url(&sqs, QUEUE_NAME).await;
    assert_eq!(url, gateway.queue_url());

    let body = r#"{"room":"q","event":"raw","data":1}"#;
    let sent = sqs
        .send_message()
        .queue_url(&url)
        .message_body(body)
        .send()
        .await
        .expect("SendMessage");
    assert_eq!(
        sent.md5_of_message_body.as_deref(),
        Some("283a74c4e50f65caa1354a9472531304")
    );
    assert!(sent.message_id.is_some_and(|id| !id.is_empty()));

    let broadcaster = Broadcaster::queue(sqs.clone(), &url);
    let id = broadcaster
        .enqueue(
            &Broadcast::new(Audience::room("q"), "typed")
                .data(json!({"n": 2}))
                .unwrap(),
        )
        .await
        .expect("the client enqueues");
    assert!(!id.is_empty());

    let batch = sqs
        .send_message_batch()
        .queue_url(&url)
        .entries(
            SendMessageBatchRequestEntry::builder()
                .id("with-attributes")
                .message_body(r#"{"room":"q","event":"batched","data":3}"#)
                .message_attributes(
                    "source",
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value("test")
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .entries(
            SendMessageBatchRequestEntry::builder()
                .id("empty")
                .message_body("")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("SendMessageBatch");
    assert_eq!(batch.successful.len(), 1);
    assert_eq!(batch.successful[0].id, "with-attributes");
    assert!(batch.successful[0].md5_of_message_attributes.is_some());
    assert_eq!(batch.failed.len(), 1);
    assert_eq!(batch.failed[0].id, "empty");
    assert!(batch.failed[0].sender_fault);

    for m in &mut members {
        let events = events_until(m, |e| e.len() == 3).await;
        let names: BTreeSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
        assert_eq!(names, BTreeSet::from(["raw", "typed", "batched"]));
        for e in &events {
            assert_eq!(e["from"]["service"], true);
            assert_eq!(e["room"], "q");
        }
        m.assert_nothing_pending().await;
    }
    outsider.assert_nothing_pending().await;
}

#[tokio::test]
async fn bad_requests_get_sqs_errors() {
    let gateway = start(options()).await;
    let sqs = sqs(&gateway, &support::sdk().await);
    let missing = sqs
        .get_queue_url()
        .queue_name("nope")
        .send()
        .await
        .expect_err("no such queue")
        .into_service_error();
    assert!(missing.is_queue_does_not_exist(), "{missing:?}");
    let empty = sqs
        .send_message_batch()
        .queue_url(gateway.queue_url())
        .send()
        .await
        .expect_err("an empty batch")
        .into_service_error();
    assert!(empty.is_empty_batch_request(), "{empty:?}");
    let entry = |id: &str| {
        SendMessageBatchRequestEntry::builder()
            .id(id)
            .message_body("{}")
            .build()
            .unwrap()
    };
    let repeated = sqs
        .send_message_batch()
        .queue_url(gateway.queue_url())
        .entries(entry("a"))
        .entries(entry("a"))
        .send()
        .await
        .expect_err("repeated ids")
        .into_service_error();
    assert!(repeated.is_batch_entry_ids_not_distinct(), "{repeated:?}");
    let too_many = (0..11).fold(
        sqs.send_message_batch().queue_url(gateway.queue_url()),
        |request, n| request.entries(entry(&format!("e{n}"))),
    );
    let too_many = too_many
        .send()
        .await
        .expect_err("11 entries")
        .into_service_error();
    assert!(
        too_many.is_too_many_entries_in_batch_request(),
        "{too_many:?}"
    );
}

#[tokio::test]
async fn batches_hold_up_to_100_and_repeated_keys_conflate() {
    let gateway = start(options()).await;
    let batches = record(&gateway);
    let sqs = sqs(&gateway, &support::sdk().await);
    let mut member = Client::connect(&gateway.websocket_url()).await;
    member.join("dash:q").await;
    let broadcaster = Broadcaster::queue(sqs.clone(), gateway.queue_url());

    // 250 distinct events, ten per SendMessageBatch, then 50 updates of one key.
    for call in 0..25 {
        let mut request = sqs.send_message_batch().queue_url(gateway.queue_url());
        for i in 0..10 {
            let n = call * 10 + i;
            let body = Broadcast::new(Audience::room("dash:q"), "tick")
                .data(json!({"n": n}))
                .unwrap()
                .to_json();
            request = request.entries(
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{n}"))
                    .message_body(body)
                    .build()
                    .unwrap(),
            );
        }
        let out = request.send().await.expect("SendMessageBatch");
        assert!(out.failed.is_empty(), "{:?}", out.failed);
    }
    for n in 0..50 {
        broadcaster
            .enqueue(
                &Broadcast::new(Audience::room("dash:q"), "price")
                    .data(json!({"n": n}))
                    .unwrap()
                    .conflate("price:q"),
            )
            .await
            .expect("enqueue");
    }

    let events = events_until(&mut member, |events| {
        let ticks = events.iter().filter(|e| e["event"] == "tick").count();
        let last_price = events
            .iter()
            .any(|e| e["event"] == "price" && e["data"]["n"] == 49);
        ticks == 250 && last_price
    })
    .await;
    member.assert_nothing_pending().await;

    let ticks: BTreeSet<u64> = events
        .iter()
        .filter(|e| e["event"] == "tick")
        .filter_map(|e| e["data"]["n"].as_u64())
        .collect();
    assert_eq!(ticks, (0..250).collect(), "every distinct event, once");
    let prices: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "price")
        .filter_map(|e| e["data"]["n"].as_u64())
        .collect();
    assert!(
        prices.len() < 50,
        "updates of one key within a batch were conflated: {prices:?}"
    );
    assert_eq!(prices.last(), Some(&49), "the latest update always arrives");
    assert!(
        prices.windows(2).all(|w| w[0] < w[1]),
        "updates arrive in order: {prices:?}"
    );

    let batches = batches.0.lock().unwrap();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert!(sizes.iter().all(|&n| (1..=100).contains(&n)), "{sizes:?}");
    assert_eq!(
        sizes.iter().sum::<usize>(),
        300,
        "each message handed over once"
    );
    assert!(
        sizes.len() >= 3,
        "300 messages need at least 3 batches: {sizes:?}"
    );
    assert!(
        sizes.iter().any(|&n| n > 10),
        "messages of several SendMessageBatch calls share a batch: {sizes:?}"
    );
}

/// A gateway whose queue redelivers a message 1 s after a receive that was
/// not answered with its deletion.
async fn start_redelivering() -> RunningGateway {
    start(roomcast_local::GatewayOptions {
        queue: QueueOptions {
            visibility_timeout: Duration::from_secs(1),
            ..QueueOptions::default()
        },
        ..options()
    })
    .await
}

#[tokio::test]
async fn a_bad_message_is_retried_then_dead_lettered_without_blocking_others() {
    let gateway = start_redelivering().await;
    let batches = record(&gateway);
    let sqs = sqs(&gateway, &support::sdk().await);
    let mut member = Client::connect(&gateway.websocket_url()).await;
    member.join("q").await;

    let bad = r#"{"rooms":"q","event":"typo"}"#;
    for body in [
        r#"{"room":"q","event":"before"}"#,
        bad,
        r#"{"room":"q","event":"after"}"#,
    ] {
        sqs.send_message()
            .queue_url(gateway.queue_url())
            .message_body(body)
            .send()
            .await
            .expect("SendMessage");
    }
    let events = events_until(&mut member, |e| e.len() == 2).await;
    let names: BTreeSet<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["before", "after"]));

    // The bad message comes back after each visibility timeout, five receives in
    // all (maxReceiveCount), then moves to the dead-letter queue.
    let dead_letter_url = queue_url(&sqs, DEAD_LETTER_QUEUE_NAME).await;
    let count = |url: String| {
        let sqs = sqs.clone();
        async move {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .expect("GetQueueAttributes")
                .attributes
                .unwrap_or_default();
            let n = |name: QueueAttributeName| -> u64 {
                attributes
                    .get(&name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            n(QueueAttributeName::ApproximateNumberOfMessages)
                + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        }
    };
    let bound = tokio::time::Instant::now() + Duration::from_secs(120);
    while count(dead_letter_url.clone()).await == 0 {
        assert!(tokio::time::Instant::now() < bound, "never dead-lettered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count(dead_letter_url).await, 1);
    assert_eq!(
        count(gateway.queue_url()).await,
        0,
        "the main queue is empty"
    );

    let receives: BTreeMap<String, Vec<u32>> = batches.0.lock().unwrap().iter().flatten().fold(
        BTreeMap::new(),
        |mut by_body, (body, count)| {
            by_body.entry(body.clone()).or_default().push(*count);
            by_body
        },
    );
    assert_eq!(receives[bad], vec![1, 2, 3, 4, 5]);
    assert_eq!(
        receives.values().map(Vec::len).sum::<usize>(),
        7,
        "{receives:?}"
    );
    let dead = gateway.gateway().queues().drain_dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, bad);
    member.assert_nothing_pending().await;
}

/// Runs the real broadcast function, then answers its first invocation with an
/// error, as Lambda reports a function that timed out (or lost its answer) after
/// its posts went out: the event source mapping then gets the batch back whole.
struct LosesFirstAnswer {
    lost: std::sync::atomic::AtomicBool,
    inner: Arc<dyn LambdaFunction>,
}

#[async_trait]
impl LambdaFunction for LosesFirstAnswer {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        let answer = self.inner.invoke(payload).await;
        if !self.lost.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(FunctionError::new(
                "Sandbox.Timedout",
                "Task timed out after 120.00 seconds",
            ));
        }
        answer
    }
}

#[tokio::test]
async fn a_batch_delivered_again_after_a_lost_answer_is_not_sent_twice() {
    let gateway = start_redelivering().await;
    let functions = gateway.gateway().functions();
    let inner = functions
        .get(FUNCTION_NAME)
        .expect("the broadcast function");
    functions.register(
        FUNCTION_NAME,
        Arc::new(LosesFirstAnswer {
            lost: std::sync::atomic::AtomicBool::new(false),
            inner,
        }),
    );
    let batches = record(&gateway);
    let sdk = support::sdk().await;
    let sqs = sqs(&gateway, &sdk);
    let mut member = Client::connect(&gateway.websocket_url()).await;
    member.join("once").await;
    sqs.send_message()
        .queue_url(gateway.queue_url())
        .message_body(r#"{"room":"once","event":"e","data":1}"#)
        .send()
        .await
        .expect("SendMessage");
    let first = member.next_json().await;
    assert_eq!(
        (first["event"].as_str(), first["data"].as_u64()),
        (Some("e"), Some(1))
    );
    // The batch comes back after the visibility timeout, is received a second
    // time, and this time is deleted.
    let queues = gateway.gateway().queues();
    tokio::time::timeout(support::WAIT, async {
        loop {
            let counts = queues.counts(roomcast_local::queue::QueueKind::Broadcast);
            if batches.0.lock().unwrap().len() >= 2 && counts.visible + counts.in_flight == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the batch was received again and deleted");
    let receives: Vec<u32> = batches.0.lock().unwrap().iter().map(|b| b[0].1).collect();
    assert_eq!(receives, [1, 2]);
    // The redelivery was recognised by its messageId: no second event came.
    member.assert_nothing_pending().await;
    let repeats = gateway
        .gateway()
        .app()
        .metrics
        .snapshot()
        .get(roomcast_core::metrics::Counter::BroadcastRepeats);
    assert_eq!(repeats, 1);
}
