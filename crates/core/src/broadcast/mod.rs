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

mod request;
mod sqs;

pub use request::{
    Audience, Broadcast, BroadcastError, MAX_CONFLATE_BYTES, MAX_IDS, MAX_USER_BYTES,
};
pub use sqs::{DEADLINE_MARGIN, GROUP_CONCURRENCY, MAX_LISTED, handle_sqs};

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use bytes::Bytes;

use crate::App;
use crate::fanout::{Fanout, FanoutStats};
use crate::store::{StreamHead, now_millis, now_secs};
use crate::stream;
use request::invalid;

/// The broadcast function's timeout (template.yaml `BroadcastFunction.Timeout`,
/// docs/broadcast.md); `roomcast dev` runs it with the same limit.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);
fn endpoint(app: &App) -> Result<&str, BroadcastError> {
    app.config
        .management_endpoint
        .as_deref()
        .ok_or(BroadcastError::NoEndpoint)
}

/// Sends one broadcast and reports what the fan-out did.
pub async fn send(app: &App, broadcast: &Broadcast) -> Result<FanoutStats, BroadcastError> {
    let endpoint = endpoint(app)?;
    let payload = frame(app, broadcast, now_secs()).await?;
    let except: Vec<&str> = broadcast.except.iter().map(String::as_str).collect();
    app.metrics.incr(broadcast.audience.counter());
    let stats = Fanout::for_app(app, endpoint)
        .to(
            broadcast.audience.recipients(),
            &except,
            payload,
            now_secs(),
        )
        .await?;
    log_stats(app, "broadcast", &stats);
    Ok(stats)
}

/// The frame of `broadcast`. To a room with history, like a member's `send`, it
/// gets the stream's next offset and is stored before it is posted.
pub async fn frame(app: &App, broadcast: &Broadcast, now: u64) -> Result<Bytes, BroadcastError> {
    // Checked before an offset is taken, so a refused frame leaves no gap.
    let plain = broadcast.frame(now_millis(), None)?;
    let Audience::Room(room) = &broadcast.audience else {
        return Ok(plain);
    };
    let history = app.config.policies.for_room(room).history;
    let render = |head: Option<&StreamHead>| match head {
        None => Ok(plain.clone()),
        Some(head) => broadcast.frame(now_millis(), Some(head)),
    };
    let (frame, _head) = stream::publish(app.store.as_ref(), history, room, now, render).await?;
    Ok(frame)
}

/// Logs and counts one fan-out of a broadcast.
fn log_stats(app: &App, what: &'static str, stats: &FanoutStats) {
    app.metrics.fanout(stats);
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
