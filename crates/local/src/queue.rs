//! The broadcast queue: an in-memory SQS queue and its dead-letter queue, with the
//! Lambda event source mapping template.yaml declares between the queue and the
//! broadcast function (batches of up to [`BATCH_SIZE`] or a [`BATCHING_WINDOW`],
//! `ReportBatchItemFailures`, the `RedrivePolicy`'s `maxReceiveCount`). Clients
//! reach it through the SQS API on the gateway's port (`http::queue`); docs/local.md
//! lists the differences from SQS and Lambda.
//!
//! The consumer starts with the first message and stops with the gateway.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use roomcast_core::store::now_millis;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::functions::registry::FunctionRegistry;

/// The queue's name: the template's logical id, as CloudFormation names a queue
/// without `QueueName` after it (`<stack>-BroadcastQueue-<suffix>`).
pub const QUEUE_NAME: &str = "BroadcastQueue";
/// The dead-letter queue's name (the template's logical id).
pub const DEAD_LETTER_QUEUE_NAME: &str = "BroadcastDeadLetterQueue";
/// The function the event source mapping invokes (template.yaml `BroadcastFunction`).
pub const FUNCTION_NAME: &str = "BroadcastFunction";
/// The account id in queue URLs and ARNs.
pub const ACCOUNT: &str = crate::aws::LOCAL_ACCOUNT;
/// The event source mapping's `BatchSize`.
pub const BATCH_SIZE: usize = 100;
/// The event source mapping's `MaximumBatchingWindowInSeconds`.
pub const BATCHING_WINDOW: Duration = Duration::from_secs(1);
/// The queue's `VisibilityTimeout`.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(720);
/// The `RedrivePolicy`'s `maxReceiveCount`.
pub const MAX_RECEIVE_COUNT: u32 = 5;
/// SQS's largest message (body and attributes), since August 2025.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Most entries in one `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Longest `DelaySeconds`.
pub const MAX_DELAY_SECS: u64 = 900;

/// How the queue and its event source mapping behave; [`Default`] is template.yaml's.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub batch_size: usize,
    pub batching_window: Duration,
    /// How long a message handed to the function stays invisible; a failed one
    /// comes back after it.
    pub visibility_timeout: Duration,
    /// A message received this many times and failed again goes to the dead-letter queue.
    pub max_receive_count: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            batch_size: BATCH_SIZE,
            batching_window: BATCHING_WINDOW,
            visibility_timeout: VISIBILITY_TIMEOUT,
            max_receive_count: MAX_RECEIVE_COUNT,
        }
    }
}

/// A message attribute as sent (`DataType` String, Number or Binary, or a custom
/// type after a dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub data_type: String,
    pub value: AttributeValue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    String(String),
    Binary(Vec<u8>),
}

/// One stored message.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: String,
    pub md5_of_body: String,
    pub attributes: Vec<(String, Attribute)>,
    pub md5_of_attributes: Option<String>,
    pub sent_ms: u64,
    pub receive_count: u32,
    first_receive_ms: Option<u64>,
    receipt: Option<String>,
    visible_at: Instant,
}

impl Message {
    pub(crate) fn new(
        body: String,
        md5_of_body: String,
        attributes: Vec<(String, Attribute)>,
        md5_of_attributes: Option<String>,
        delay: Duration,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            body,
            md5_of_body,
            attributes,
            md5_of_attributes,
            sent_ms: now_millis(),
            receive_count: 0,
            first_receive_ms: None,
            receipt: None,
            visible_at: Instant::now() + delay,
        }
    }
}

/// Message counts, as `GetQueueAttributes` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Visible messages.
    pub visible: usize,
    /// Messages handed to the function and not yet deleted.
    pub in_flight: usize,
    /// Messages sent with a delay that has not passed.
    pub delayed: usize,
}

#[derive(Default)]
struct State {
    main: VecDeque<Message>,
    dead: VecDeque<Message>,
}

/// The broadcast queue, its dead-letter queue and its consumer.
pub struct Queues {
    options: QueueOptions,
    state: Mutex<State>,
    /// Wakes the consumer when a message arrives.
    arrived: Notify,
    started: AtomicBool,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Which of the two queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Broadcast,
    DeadLetter,
}

impl QueueKind {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            QUEUE_NAME => Some(Self::Broadcast),
            DEAD_LETTER_QUEUE_NAME => Some(Self::DeadLetter),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Broadcast => QUEUE_NAME,
            Self::DeadLetter => DEAD_LETTER_QUEUE_NAME,
        }
    }
}

impl Queues {
    pub fn new(options: QueueOptions) -> Self {
        Self {
            options,
            state: Mutex::default(),
            arrived: Notify::new(),
            started: AtomicBool::new(false),
        }
    }

    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts messages on the broadcast queue and starts the consumer if it is not running.
    pub(crate) fn send(self: &Arc<Self>, consumer: &Consumer, messages: Vec<Message>) {
        self.state().main.extend(messages);
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(consume(
                Arc::clone(self),
                consumer.functions.clone(),
                consumer.region.clone(),
                consumer.shutdown.clone(),
            ));
        }
        self.arrived.notify_one();
    }

    /// The counts of one queue.
    pub fn counts(&self, kind: QueueKind) -> Counts {
        let state = self.state();
        let now = Instant::now();
        let mut counts = Counts::default();
        let queue = match kind {
            QueueKind::Broadcast => &state.main,
            QueueKind::DeadLetter => &state.dead,
        };
        for m in queue {
            if m.visible_at <= now {
                counts.visible += 1;
            } else if m.receipt.is_some() {
                counts.in_flight += 1;
            } else {
                counts.delayed += 1;
            }
        }
        counts
    }

    /// Removes and returns the dead-letter queue's messages (for inspection; SQS
    /// would hand them out with `ReceiveMessage`).
    pub fn drain_dead_letters(&self) -> Vec<Message> {
        self.state().dead.drain(..).collect()
    }

    /// When the next message becomes visible: `Ok(())` if one is now, else the
    /// instant the first invisible one comes back, if any.
    fn next_visible(&self) -> Result<(), Option<Instant>> {
        let state = self.state();
        let now = Instant::now();
        let mut next = None;
        for m in &state.main {
            if m.visible_at <= now {
                return Ok(());
            }
            next = Some(next.map_or(m.visible_at, |n: Instant| n.min(m.visible_at)));
        }
        Err(next)
    }

    fn visible_count(&self) -> usize {
        let now = Instant::now();
        self.state()
            .main
            .iter()
            .filter(|m| m.visible_at <= now)
            .count()
    }

    /// Receives up to `batch_size` visible messages, as the event source mapping's
    /// poller does: each becomes invisible for the visibility timeout and its
    /// receive count goes up. A message already received `max_receive_count`
    /// times moves to the dead-letter queue instead, as SQS's redrive does.
    fn receive(&self) -> Vec<Message> {
        let mut state = self.state();
        let now = Instant::now();
        let now_ms = now_millis();
        let mut batch = Vec::new();
        let mut kept = VecDeque::with_capacity(state.main.len());
        let mut dead = Vec::new();
        for mut m in std::mem::take(&mut state.main) {
            if batch.len() < self.options.batch_size && m.visible_at <= now {
                if m.receive_count >= self.options.max_receive_count {
                    tracing::warn!(
                        message_id = %m.id,
                        receives = m.receive_count,
                        "queued broadcast moved to the dead-letter queue"
                    );
                    m.receipt = None;
                    m.visible_at = now;
                    dead.push(m);
                    continue;
                }
                m.receive_count += 1;
                m.first_receive_ms.get_or_insert(now_ms);
                m.receipt = Some(uuid::Uuid::new_v4().to_string());
                m.visible_at = now + self.options.visibility_timeout;
                batch.push(m.clone());
            }
            kept.push_back(m);
        }
        state.main = kept;
        state.dead.extend(dead);
        batch
    }

    /// Deletes the messages of a batch that succeeded (by receipt handle, so a
    /// message received again since is not deleted).
    fn delete(&self, receipts: &[String]) {
        self.state().main.retain(|m| {
            m.receipt
                .as_ref()
                .is_none_or(|receipt| !receipts.contains(receipt))
        });
    }
}

/// What the event source mapping needs of the gateway: the functions it invokes,
/// the region of its events, and the gateway's shutdown signal.
pub(crate) struct Consumer {
    pub(crate) functions: FunctionRegistry,
    pub(crate) region: String,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// The event source mapping: waits for messages, gathers a batch (full, or the
/// window after the first message passed), invokes the function and deletes what
/// it did not report as failed. One batch at a time, until the gateway shuts
/// down (or is dropped, which closes `shutdown`).
async fn consume(
    queues: Arc<Queues>,
    functions: FunctionRegistry,
    region: String,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        // Wait for a visible message.
        loop {
            let arrived = queues.arrived.notified();
            match queues.next_visible() {
                Ok(()) => break,
                Err(next) => {
                    let wake = async {
                        match next {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = arrived => {}
                        _ = wake => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                }
            }
        }
        // The batching window.
        let window_end = Instant::now() + queues.options.batching_window;
        while queues.visible_count() < queues.options.batch_size && Instant::now() < window_end {
            let arrived = queues.arrived.notified();
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(window_end) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        let batch = queues.receive();
        if batch.is_empty() {
            continue;
        }
        let failed = invoke(&functions, &batch, &region).await;
        let done: Vec<String> = batch
            .iter()
            .filter(|m| !failed.contains(&m.id))
            .filter_map(|m| m.receipt.clone())
            .collect();
        queues.delete(&done);
    }
}

/// Invokes the function with one batch; the ids of the messages to retry. A
/// function error, or a response naming a message that is not in the batch,
/// fails the whole batch, as Lambda does.
async fn invoke(functions: &FunctionRegistry, batch: &[Message], region: &str) -> Vec<String> {
    let everything = || batch.iter().map(|m| m.id.clone()).collect::<Vec<_>>();
    let Some(function) = functions.get(FUNCTION_NAME) else {
        tracing::error!(
            function = FUNCTION_NAME,
            "the queue's function is not registered"
        );
        return everything();
    };
    let event = sqs_event(batch, region);
    let payload = match serde_json::to_value(&event) {
        Ok(payload) => payload,
        Err(e) => {
            tracing::error!(error = %e, "could not encode the SQS event");
            return everything();
        }
    };
    match function.invoke(payload).await {
        Err(e) => {
            tracing::warn!(
                error_type = %e.error_type,
                messages = batch.len(),
                "the broadcast function failed; the batch comes back after the visibility timeout"
            );
            everything()
        }
        Ok(Value::Null) => Vec::new(),
        Ok(response) => match batch_failures(response, batch) {
            Some(failed) => failed,
            None => {
                tracing::warn!("invalid batchItemFailures: the whole batch is retried");
                everything()
            }
        },
    }
}

/// The failed message ids of a function's response; `None` when the response
/// names an id that is not in the batch (or none at all).
fn batch_failures(response: Value, batch: &[Message]) -> Option<Vec<String>> {
    let response: SqsBatchResponse = serde_json::from_value(response).ok()?;
    response
        .batch_item_failures
        .into_iter()
        .map(|f| {
            let id = f.item_identifier;
            batch
                .iter()
                .any(|m| m.id == id && !id.is_empty())
                .then_some(id)
        })
        .collect()
}

/// The event Lambda sends for a batch (aws_lambda_events' `SqsEvent`).
fn sqs_event(batch: &[Message], region: &str) -> SqsEvent {
    let arn = format!("arn:aws:sqs:{region}:{ACCOUNT}:{QUEUE_NAME}");
    let mut event = SqsEvent::default();
    event.records = batch
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.id.clone());
            record.receipt_handle = m.receipt.clone();
            record.body = Some(m.body.clone());
            record.md5_of_body = Some(m.md5_of_body.clone());
            record.md5_of_message_attributes = m.md5_of_attributes.clone();
            record.attributes = HashMap::from([
                (
                    "ApproximateReceiveCount".to_owned(),
                    m.receive_count.to_string(),
                ),
                ("SentTimestamp".to_owned(), m.sent_ms.to_string()),
                ("SenderId".to_owned(), ACCOUNT.to_owned()),
                (
                    "ApproximateFirstReceiveTimestamp".to_owned(),
                    m.first_receive_ms.unwrap_or(m.sent_ms).to_string(),
                ),
            ]);
            record.message_attributes = m
                .attributes
                .iter()
                .map(|(name, a)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.data_type = Some(a.data_type.clone());
                    match &a.value {
                        AttributeValue::String(s) => attribute.string_value = Some(s.clone()),
                        AttributeValue::Binary(b) => {
                            let mut data = aws_lambda_events::encodings::Base64Data::default();
                            data.extend_from_slice(b);
                            attribute.binary_value = Some(data);
                        }
                    }
                    (name.clone(), attribute)
                })
                .collect();
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(arn.clone());
            record.aws_region = Some(region.to_owned());
            record
        })
        .collect();
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Message {
        Message::new(
            body.to_owned(),
            String::new(),
            Vec::new(),
            None,
            Duration::ZERO,
        )
    }

    #[test]
    fn the_defaults_are_the_templates() {
        let template = include_str!("../../../template.yaml");
        let section = |start: &str| &template[template.find(start).expect(start)..];
        let value = |text: &str, key: &str| -> String {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .expect(key)
                .trim()
                .to_owned()
        };
        let mapping = section("        Queue:\n          Type: SQS");
        assert_eq!(value(mapping, "BatchSize:"), BATCH_SIZE.to_string());
        assert_eq!(
            value(mapping, "MaximumBatchingWindowInSeconds:"),
            BATCHING_WINDOW.as_secs().to_string()
        );
        assert!(mapping.contains("ReportBatchItemFailures"));
        let queue = section(&format!("  {QUEUE_NAME}:\n"));
        assert_eq!(
            value(queue, "VisibilityTimeout:"),
            VISIBILITY_TIMEOUT.as_secs().to_string()
        );
        assert_eq!(
            value(queue, "maxReceiveCount:"),
            MAX_RECEIVE_COUNT.to_string()
        );
        assert!(template.contains(&format!("  {DEAD_LETTER_QUEUE_NAME}:\n")));
        assert!(template.contains(&format!("  {FUNCTION_NAME}:\n")));
    }

    #[test]
    fn batch_failures_must_name_messages_of_the_batch() {
        let batch = vec![message("a"), message("b")];
        let id = batch[1].id.clone();
        let response = serde_json::json!({"batchItemFailures": [{"itemIdentifier": id}]});
        assert_eq!(batch_failures(response, &batch), Some(vec![id]));
        let none = serde_json::json!({"batchItemFailures": []});
        assert_eq!(batch_failures(none, &batch), Some(vec![]));
        let stranger = serde_json::json!({"batchItemFailures": [{"itemIdentifier": "x"}]});
        assert_eq!(batch_failures(stranger, &batch), None);
        let empty = serde_json::json!({"batchItemFailures": [{"itemIdentifier": ""}]});
        assert_eq!(batch_failures(empty, &batch), None);
    }

    #[tokio::test]
    async fn receiving_hides_messages_and_redrives_after_max_receives() {
        let queues = Queues::new(QueueOptions {
            visibility_timeout: Duration::ZERO,
            max_receive_count: 2,
            ..QueueOptions::default()
        });
        queues.state().main.push_back(message("x"));
        for n in 1..=2 {
            let batch = queues.receive();
            assert_eq!(batch.len(), 1);
            assert_eq!(batch[0].receive_count, n);
        }
        assert!(queues.receive().is_empty(), "a third receive redrives");
        assert_eq!(queues.counts(QueueKind::DeadLetter).visible, 1);
        assert_eq!(queues.counts(QueueKind::Broadcast), Counts::default());
    }

    #[tokio::test]
    async fn deleting_by_receipt_spares_a_message_received_again() {
        let queues = Queues::new(QueueOptions {
            visibility_timeout: Duration::ZERO,
            ..QueueOptions::default()
        });
        queues.state().main.push_back(message("x"));
        let first = queues.receive()[0].receipt.clone().unwrap();
        let _second = queues.receive();
        queues.delete(&[first]);
        assert_eq!(queues.state().main.len(), 1);
    }

    #[test]
    fn events_have_lambdas_shape() {
        let m = message("{}");
        let event = serde_json::to_value(sqs_event(&[m], "eu-west-1")).unwrap();
        let record = &event["Records"][0];
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(
            record["eventSourceARN"],
            "arn:aws:sqs:eu-west-1:000000000000:BroadcastQueue"
        );
        assert!(record["attributes"]["SentTimestamp"].is_string());
        assert!(roomcast_core::broadcast::is_sqs_event(&event));
    }
}
