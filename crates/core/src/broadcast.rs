//! Backend broadcasts (docs/broadcast.md): the broadcast function's handler.
//!
//! One function serves two payload shapes, told apart by shape alone:
//!
//! - a direct invocation, `{"room"|"user"|"connections"|"all": ..., "event": E,
//!   "data": ..., "except": [...]}`, answered with the fan-out's [`FanoutStats`];
//! - an SQS event (`Records` whose `eventSource` is `aws:sqs`), whose messages carry
//!   the same JSON, answered with an [`SqsBatchResponse`] listing only the messages
//!   that should be retried.
//!
//! Posting, retries and 410 cleanup are the fan-out engine's ([`crate::fanout`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::App;
use crate::config::GATEWAY_MAX_PAYLOAD;
use crate::fanout::{Fanout, FanoutStats, Incomplete, PAGE_SIZE, Recipients};
use crate::protocol::{MAX_EVENT_BYTES, validate_room};
use crate::store::{StoreError, now_millis, now_secs};

/// Longest user id accepted as a target, in bytes.
pub const MAX_USER_BYTES: usize = 256;
/// Most connection ids in a `connections` target or an `except` list.
pub const MAX_IDS: usize = 10_000;
/// Longest conflation key, in bytes.
pub const MAX_CONFLATE_BYTES: usize = 256;
/// Groups of one SQS batch fanned out at the same time; each fan-out keeps its
/// own `ROOMCAST_FANOUT_CONCURRENCY` posts in flight.
pub const GROUP_CONCURRENCY: usize = 4;
/// The broadcast function's timeout (template.yaml `BroadcastFunction.Timeout`,
/// docs/broadcast.md); `roomcast dev` runs it with the same limit.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);
/// No SQS message (or group) is started with less than this left before the
/// invocation's deadline: unstarted messages are reported as failures instead, so
/// the batch is not cut off by the timeout and redelivered whole. Above the fan-out's
/// 10 s retry deadline, so a message started in time can finish its retries.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(15);
/// Most recipients a group of several SQS messages reads once and holds; a larger
/// room or user is streamed once per message instead. `all` is always streamed.
pub const MAX_LISTED: usize = MAX_IDS;

/// Who a broadcast goes to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Room(String),
    User(String),
    Connections(Vec<String>),
    All,
}

/// A validated broadcast request.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub target: Target,
    pub event: String,
    /// The event's `data`, verbatim; `null` when absent.
    pub data: Box<RawValue>,
    /// Connections not to post to.
    pub except: Vec<String>,
    /// SQS only: of the messages of one batch with the same key, only the latest is sent.
    pub conflate: Option<String>,
}

/// The request as sent. Unknown fields are refused, so a typo such as `"rooms"`
/// is an error rather than a broadcast to nobody.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    room: Option<String>,
    user: Option<String>,
    connections: Option<Vec<String>>,
    all: Option<bool>,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    except: Vec<String>,
    conflate: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The request is malformed; resending it unchanged fails again.
    #[error("invalid broadcast: {0}")]
    Invalid(String),
    /// The event frame exceeds what one `@connections` POST carries.
    #[error("event frame is {0} bytes; API Gateway posts at most {GATEWAY_MAX_PAYLOAD} bytes")]
    TooLarge(usize),
    /// Reading recipients failed; the broadcast may have reached some of them.
    #[error("reading recipients failed: {0}")]
    Store(#[from] StoreError),
    #[error("no @connections endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT")]
    NoEndpoint,
}

impl BroadcastError {
    /// The `errorType` Lambda reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidBroadcast",
            Self::TooLarge(_) => "PayloadTooLarge",
            Self::Store(_) => "StoreError",
            Self::NoEndpoint => "Misconfigured",
        }
    }
}

impl From<BroadcastError> for lambda_runtime::Diagnostic {
    fn from(e: BroadcastError) -> Self {
        Self {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

fn invalid(message: impl Into<String>) -> BroadcastError {
    BroadcastError::Invalid(message.into())
}

fn check_ids(name: &str, ids: &[String]) -> Result<(), BroadcastError> {
    if ids.len() > MAX_IDS {
        return Err(invalid(format!(
            "\"{name}\" lists {} ids; at most {MAX_IDS}",
            ids.len()
        )));
    }
    if ids
        .iter()
        .any(|id| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "\"{name}\" ids must be 1 to 128 bytes without control characters"
        )));
    }
    Ok(())
}

impl Broadcast {
    /// Parses and validates one request's JSON text.
    pub fn parse(text: &str) -> Result<Self, BroadcastError> {
        let wire: Wire = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let target = match (wire.room, wire.user, wire.connections, wire.all) {
            (Some(room), None, None, None) => {
                validate_room(&room).map_err(|e| invalid(e.message))?;
                Target::Room(room)
            }
            (None, Some(user), None, None) => {
                if user.is_empty() || user.len() > MAX_USER_BYTES {
                    return Err(invalid(format!(
                        "\"user\" must be 1 to {MAX_USER_BYTES} bytes"
                    )));
                }
                Target::User(user)
            }
            (None, None, Some(ids), None) => {
                if ids.is_empty() {
                    return Err(invalid("\"connections\" must list at least one id"));
                }
                check_ids("connections", &ids)?;
                Target::Connections(ids)
            }
            (None, None, None, Some(true)) => Target::All,
            (None, None, None, Some(false)) => {
                return Err(invalid("\"all\" must be true when present"));
            }
            _ => {
                return Err(invalid(
                    "exactly one target is needed: \"room\", \"user\", \"connections\" or \"all\"",
                ));
            }
        };
        let event = wire.event.ok_or_else(|| invalid("missing \"event\""))?;
        if event.is_empty() || event.len() > MAX_EVENT_BYTES || event.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "\"event\" must be 1 to {MAX_EVENT_BYTES} bytes without control characters"
            )));
        }
        check_ids("except", &wire.except)?;
        if let Some(key) = &wire.conflate
            && (key.is_empty() || key.len() > MAX_CONFLATE_BYTES)
        {
            return Err(invalid(format!(
                "\"conflate\" must be 1 to {MAX_CONFLATE_BYTES} bytes"
            )));
        }
        let data = match wire.data {
            Some(data) => data,
            None => RawValue::from_string("null".to_owned()).map_err(|e| invalid(e.to_string()))?,
        };
        Ok(Self {
            target,
            event,
            data,
            except: wire.except,
            conflate: wire.conflate,
        })
    }

    /// The event frame members receive, checked against API Gateway's post limit.
    pub fn frame(&self, ts: u64) -> Result<Bytes, BroadcastError> {
        let room = match &self.target {
            Target::Room(room) => Some(room.as_str()),
            _ => None,
        };
        let frame = serde_json::to_vec(&EventFrame {
            kind: "event",
            room,
            event: &self.event,
            data: &self.data,
            from: ServiceSender::default(),
            ts,
        })
        .map_err(|e| invalid(e.to_string()))?;
        if frame.len() > GATEWAY_MAX_PAYLOAD {
            return Err(BroadcastError::TooLarge(frame.len()));
        }
        Ok(Bytes::from(frame))
    }
}

/// Protocol v1's `event` frame as the backend sends it (docs/protocol.md).
#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// The room for room broadcasts, `null` for the other targets.
    room: Option<&'a str>,
    event: &'a str,
    data: &'a RawValue,
    from: ServiceSender,
    ts: u64,
}

/// `from` of a backend event: no connection, no user, `service: true`. The keys
/// clients read on member events are kept (as `null`) so they need no special case.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceSender {
    connection_id: Option<String>,
    user_id: Option<String>,
    service: bool,
}

impl Default for ServiceSender {
    fn default() -> Self {
        Self {
            connection_id: None,
            user_id: None,
            service: true,
        }
    }
}

fn recipients(target: &Target) -> Recipients<'_> {
    match target {
        Target::Room(room) => Recipients::Room(room),
        Target::User(user) => Recipients::User(user),
        Target::Connections(ids) => Recipients::Connections(ids),
        Target::All => Recipients::All,
    }
}

fn endpoint(app: &App) -> Result<&str, BroadcastError> {
    app.config
        .management_endpoint
        .as_deref()
        .ok_or(BroadcastError::NoEndpoint)
}

/// Sends one broadcast and reports what the fan-out did.
pub async fn send(app: &App, broadcast: &Broadcast) -> Result<FanoutStats, BroadcastError> {
    let endpoint = endpoint(app)?;
    let payload = broadcast.frame(now_millis())?;
    let except: Vec<&str> = broadcast.except.iter().map(String::as_str).collect();
    let stats = Fanout::for_app(app, endpoint)
        .to(recipients(&broadcast.target), &except, payload, now_secs())
        .await?;
    log_stats("broadcast", &stats);
    Ok(stats)
}

fn log_stats(what: &'static str, stats: &FanoutStats) {
    tracing::info!(
        recipients = stats.recipients,
        delivered = stats.delivered,
        gone = stats.gone,
        failed = stats.failed,
        throttled_retries = stats.throttled_retries,
        ms = stats.ms,
        "{what}"
    );
}

/// Whether `payload` is an SQS event rather than a direct invocation.
pub fn is_sqs_event(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .is_some_and(|records| {
            records
                .iter()
                .all(|r| r.get("eventSource").and_then(Value::as_str) == Some("aws:sqs"))
        })
}

/// The function's handler: an SQS event gets an [`SqsBatchResponse`], anything
/// else is a direct invocation and gets its [`FanoutStats`]. `deadline_ms` is the
/// invocation's deadline in epoch milliseconds (Lambda's `Context::deadline`); see
/// [`handle_sqs`].
pub async fn handle(app: &App, payload: Value, deadline_ms: u64) -> Result<Value, BroadcastError> {
    if is_sqs_event(&payload) {
        let event: SqsEvent = serde_json::from_value(payload)
            .map_err(|e| invalid(format!("not an SQS event: {e}")))?;
        let response = handle_sqs(app, event, deadline_ms).await;
        return serde_json::to_value(response).map_err(|e| invalid(e.to_string()));
    }
    // Parsed from text so `data` is kept as raw JSON, as for client frames.
    let broadcast = Broadcast::parse(&payload.to_string())?;
    let stats = send(app, &broadcast).await?;
    serde_json::to_value(stats).map_err(|e| invalid(e.to_string()))
}

/// One SQS message kept for sending, with where it came from.
struct Queued {
    message_id: String,
    broadcast: Broadcast,
}

/// Handles one SQS batch: drops superseded conflated messages, groups the rest by
/// target (recipients are read once per group), fans them out in queue order and
/// reports as failed only the messages worth retrying:
///
/// - malformed messages (they fail again, and so reach the dead-letter queue
///   after `maxReceiveCount` receives, where they can be inspected);
/// - messages whose recipients could not be read before any post went out;
/// - messages not started because less than [`DEADLINE_MARGIN`] was left before
///   `deadline_ms` (the invocation's deadline, epoch milliseconds): a batch that
///   ran into the timeout would come back whole, delivered messages included.
///
/// Posts that fail for good after their retries are counted, not retried: a
/// retried message would reach its other recipients twice. For the same reason
/// a message whose recipients stopped being readable after some posts went out
/// is logged and not retried.
pub async fn handle_sqs(app: &App, event: SqsEvent, deadline_ms: u64) -> SqsBatchResponse {
    let mut failures: Vec<String> = Vec::new();
    let mut kept: Vec<(u64, usize, Queued)> = Vec::new();
    for (position, message) in event.records.into_iter().enumerate() {
        let Some(message_id) = message.message_id.clone() else {
            // Without an id it cannot be reported; nothing to retry it by.
            tracing::warn!("SQS record without a messageId; dropped");
            continue;
        };
        match parse_message(&message) {
            Ok(broadcast) => kept.push((
                sent_timestamp(&message),
                position,
                Queued {
                    message_id,
                    broadcast,
                },
            )),
            Err(e) => {
                tracing::warn!(message_id, error = %e, "malformed broadcast message");
                failures.push(message_id);
            }
        }
    }
    // Oldest first: SentTimestamp, then batch order (a standard queue does not
    // keep order, so this is best effort).
    kept.sort_by_key(|(sent, position, _)| (*sent, *position));
    let kept = conflate(kept.into_iter().map(|(_, _, q)| q).collect());

    let mut groups: BTreeMap<(Target, Vec<String>), Vec<Queued>> = BTreeMap::new();
    for queued in kept {
        let mut except = queued.broadcast.except.clone();
        except.sort();
        except.dedup();
        groups
            .entry((queued.broadcast.target.clone(), except))
            .or_default()
            .push(queued);
    }
    let groups: Vec<Vec<Queued>> = groups.into_values().collect();
    for chunk in groups.chunks(GROUP_CONCURRENCY) {
        if out_of_time(deadline_ms) {
            let unstarted: Vec<String> = chunk
                .iter()
                .flatten()
                .map(|q| q.message_id.clone())
                .collect();
            tracing::warn!(
                messages = unstarted.len(),
                "invocation deadline near; messages left for redelivery"
            );
            failures.extend(unstarted);
            continue;
        }
        let results =
            futures::future::join_all(chunk.iter().map(|g| send_group(app, g, deadline_ms))).await;
        failures.extend(results.into_iter().flatten());
    }
    let mut response = SqsBatchResponse::default();
    for id in failures {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

fn parse_message(message: &SqsMessage) -> Result<Broadcast, BroadcastError> {
    let body = message
        .body
        .as_deref()
        .ok_or_else(|| invalid("message has no body"))?;
    Broadcast::parse(body)
}

fn sent_timestamp(message: &SqsMessage) -> u64 {
    message
        .attributes
        .get("SentTimestamp")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Keeps, per conflation key, only the last message (the input is oldest first).
/// Messages without a key are all kept; order is preserved.
fn conflate(messages: Vec<Queued>) -> Vec<Queued> {
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, q) in messages.iter().enumerate() {
        if let Some(key) = &q.broadcast.conflate {
            last.insert(key, i);
        }
    }
    let keep: Vec<bool> = messages
        .iter()
        .enumerate()
        .map(|(i, q)| {
            q.broadcast
                .conflate
                .as_deref()
                .is_none_or(|key| last.get(key) == Some(&i))
        })
        .collect();
    let superseded = keep.iter().filter(|k| !**k).count();
    if superseded > 0 {
        tracing::info!(superseded, "conflated broadcast messages");
    }
    messages
        .into_iter()
        .zip(keep)
        .filter_map(|(q, keep)| keep.then_some(q))
        .collect()
}

/// Whether less than [`DEADLINE_MARGIN`] is left before `deadline_ms`.
fn out_of_time(deadline_ms: u64) -> bool {
    let margin = u64::try_from(DEADLINE_MARGIN.as_millis()).unwrap_or(u64::MAX);
    deadline_ms.saturating_sub(now_millis()) < margin
}

/// Fans out one group's messages in order; returns the ids of those to retry.
async fn send_group(app: &App, group: &[Queued], deadline_ms: u64) -> Vec<String> {
    let all_ids = || group.iter().map(|q| q.message_id.clone()).collect();
    let Ok(endpoint) = endpoint(app) else {
        tracing::error!("no @connections endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT");
        return all_ids();
    };
    let Some(first) = group.first() else {
        return Vec::new();
    };
    if out_of_time(deadline_ms) {
        return all_ids();
    }
    let except: Vec<&str> = first.broadcast.except.iter().map(String::as_str).collect();
    let fanout = Fanout::for_app(app, endpoint);
    let now = now_secs();
    // One message, or `all`: stream the recipients as the direct path does. More:
    // read the recipients once, up to `MAX_LISTED`, and post every message to the
    // same list.
    let listed;
    let streamed = recipients(&first.broadcast.target);
    let target = if group.len() == 1 || first.broadcast.target == Target::All {
        streamed
    } else {
        match list_recipients(app, &first.broadcast.target, now).await {
            Ok(Some(ids)) => {
                listed = ids;
                Recipients::Connections(&listed)
            }
            Ok(None) => streamed,
            Err(e) => {
                tracing::error!(error = %e, "reading broadcast recipients failed");
                return all_ids();
            }
        }
    };
    let mut retry = Vec::new();
    for (i, queued) in group.iter().enumerate() {
        if out_of_time(deadline_ms) {
            let unstarted: Vec<String> = group[i..].iter().map(|q| q.message_id.clone()).collect();
            tracing::warn!(
                messages = unstarted.len(),
                "invocation deadline near; messages left for redelivery"
            );
            retry.extend(unstarted);
            break;
        }
        let payload = match queued.broadcast.frame(now_millis()) {
            Ok(payload) => payload,
            // Too large fails again: let it reach the dead-letter queue.
            Err(e) => {
                tracing::warn!(message_id = queued.message_id, error = %e, "queued broadcast failed");
                retry.push(queued.message_id.clone());
                continue;
            }
        };
        match fanout.send(target, &except, payload, now).await {
            Ok(stats) => log_stats("queued broadcast", &stats),
            // Nothing went out: retrying sends it once.
            Err(Incomplete { stats, error }) if stats.recipients == 0 => {
                tracing::warn!(message_id = queued.message_id, error = %error, "queued broadcast failed");
                retry.push(queued.message_id.clone());
            }
            // Some posts went out: a retry would reach them twice. Count and log.
            Err(Incomplete { stats, error }) => {
                tracing::error!(
                    message_id = queued.message_id,
                    error = %error,
                    "queued broadcast incomplete: reading recipients failed after some posts; not retried"
                );
                log_stats("incomplete queued broadcast", &stats);
            }
        }
    }
    retry
}

/// Every live recipient of a paged target, read once; `None` past [`MAX_LISTED`].
async fn list_recipients(
    app: &App,
    target: &Target,
    now: u64,
) -> Result<Option<Vec<String>>, StoreError> {
    let store = app.store.as_ref();
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor.as_deref();
        let (page, next) = match target {
            Target::Connections(list) => return Ok(Some(list.clone())),
            Target::Room(room) => {
                let page = store.members_page(room, c, PAGE_SIZE, now).await?;
                (
                    page.members.into_iter().map(|m| m.connection_id).collect(),
                    page.next,
                )
            }
            Target::User(user) => {
                let page = store.user_connections_page(user, c, PAGE_SIZE, now).await?;
                (page.connection_ids, page.next)
            }
            Target::All => {
                let page = store.connections_page(c, PAGE_SIZE, now).await?;
                (page.connection_ids, page.next)
            }
        };
        ids.extend::<Vec<String>>(page);
        if ids.len() > MAX_LISTED {
            return Ok(None);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(Some(ids)),
        }
    }
}

/// Runs the broadcast function under the Lambda runtime. Unlike the WebSocket
/// functions it has no event to derive the `@connections` endpoint from, so
/// `ROOMCAST_MANAGEMENT_ENDPOINT` is required and checked at cold start.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    if app.config.management_endpoint.is_none() {
        return Err(
            crate::config::ConfigError::Missing(crate::names::env::MANAGEMENT_ENDPOINT).into(),
        );
    }
    let app = &app;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<Value>| async move {
            handle(app, event.payload, event.context.deadline).await
        },
    ))
    .await
}
