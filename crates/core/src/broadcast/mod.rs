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
//! Posting, retries and 410 cleanup are the fan-out engine's ([`crate::fanout`]),
//! each fan-out stopping [`FANOUT_STOP_MARGIN`] before the invocation's deadline.
//! A broadcast with an idempotency key (the caller's `idempotencyKey`, or a
//! queued message's SQS messageId) is recorded before it is sent
//! ([`claim`]): a redelivery or a repeat is skipped.

mod request;
mod sqs;

pub use request::{
    Audience, Broadcast, BroadcastError, MAX_CONFLATE_BYTES, MAX_IDEMPOTENCY_KEY_BYTES, MAX_IDS,
    MAX_USER_BYTES,
};
pub use sqs::{DEADLINE_MARGIN, GROUP_CONCURRENCY, MAX_LISTED, handle_sqs};

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use serde_json::Value;

use bytes::Bytes;

use crate::App;
use crate::fanout::{Fanout, FanoutStats, Incomplete};
use crate::store::{StreamHead, now_millis, now_secs};
use crate::stream;
use request::invalid;

/// The broadcast function's timeout (template.yaml `BroadcastFunction.Timeout`,
/// docs/broadcast.md); `roomcast dev` runs it with the same limit.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(120);
pub use crate::claims::{IDEMPOTENCY_TTL, claim, release};
pub use crate::fanout::{FANOUT_STOP_MARGIN, stop_at};

fn endpoint(app: &App) -> Result<&str, BroadcastError> {
    app.config
        .management_endpoint
        .as_deref()
        .ok_or(BroadcastError::NoEndpoint)
}

/// Sends one broadcast, within an invocation ending at `deadline_ms`, and
/// reports what the fan-out did. With an idempotency key, a repeat is not sent
/// (`repeat` in the stats).
pub async fn send(
    app: &App,
    broadcast: &Broadcast,
    deadline_ms: u64,
) -> Result<FanoutStats, BroadcastError> {
    let endpoint = endpoint(app)?;
    let key = broadcast
        .idempotency_key
        .as_deref()
        .map(|k| format!("k:{k}"));
    if let Some(key) = &key
        && !claim(app, key).await?
    {
        return Ok(FanoutStats {
            repeat: true,
            ..FanoutStats::default()
        });
    }
    let sent = fan_out(app, endpoint, broadcast, deadline_ms).await;
    // Nothing went out: a retry must not be taken for a repeat.
    if let (
        Some(key),
        Err(_)
        | Ok(Err(Incomplete {
            stats: FanoutStats { recipients: 0, .. },
            ..
        })),
    ) = (&key, &sent)
    {
        release(app, key).await;
    }
    let stats = sent?.map_err(|incomplete| incomplete.error)?;
    log_stats(app, "broadcast", &stats);
    Ok(stats)
}

/// The frame and the fan-out of one broadcast.
async fn fan_out(
    app: &App,
    endpoint: &str,
    broadcast: &Broadcast,
    deadline_ms: u64,
) -> Result<Result<FanoutStats, Incomplete>, BroadcastError> {
    let (payload, head) = frame(app, broadcast, now_secs()).await?;
    let except: Vec<&str> = broadcast.except.iter().map(String::as_str).collect();
    app.metrics.incr(broadcast.audience.counter());
    if let Some(workers) = hand_off(app, broadcast, &except, &payload, head.as_ref()).await? {
        return Ok(Ok(FanoutStats {
            workers,
            ..FanoutStats::default()
        }));
    }
    Ok(Fanout::for_app(app, endpoint)
        .until(stop_at(deadline_ms))
        .send(
            broadcast.audience.view(&app.config.policies),
            &except,
            payload,
            now_secs(),
        )
        .await)
}

/// Hands a broadcast to a sharded room to the workers: `Some(jobs)` when it
/// was, `None` when the caller fans out itself (other audiences, rooms of one
/// shard, no workers configured).
pub async fn hand_off(
    app: &App,
    broadcast: &Broadcast,
    except: &[&str],
    payload: &Bytes,
    head: Option<&StreamHead>,
) -> Result<Option<u16>, BroadcastError> {
    let Audience::Room(room) = &broadcast.audience else {
        return Ok(None);
    };
    Ok(crate::workers::hand_off(app, room, head, except, payload).await?)
}

/// The frame of `broadcast`, and the stream head it was published at. To a
/// room with history, like a member's `send`, it gets the stream's next offset
/// and is stored before it is posted.
pub async fn frame(
    app: &App,
    broadcast: &Broadcast,
    now: u64,
) -> Result<(Bytes, Option<StreamHead>), BroadcastError> {
    // Checked before an offset is taken, so a refused frame leaves no gap.
    let plain = broadcast.frame(now_millis(), None)?;
    let Audience::Room(room) = &broadcast.audience else {
        return Ok((plain, None));
    };
    let history = app.config.policies.for_room(room).history;
    let render = |head: Option<&StreamHead>| match head {
        None => Ok(plain.clone()),
        Some(head) => broadcast.frame(now_millis(), Some(head)),
    };
    stream::publish(app.store.as_ref(), history, room, now, render).await
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
        let response = if crate::workers::is_job_batch(&event) {
            crate::workers::handle_sqs(app, event, deadline_ms).await
        } else {
            handle_sqs(app, event, deadline_ms).await
        };
        return serde_json::to_value(response).map_err(|e| invalid(e.to_string()));
    }
    // Parsed from text so `data` is kept as raw JSON, as for client frames.
    let broadcast = Broadcast::parse(&payload.to_string())?;
    let stats = send(app, &broadcast, deadline_ms).await?;
    serde_json::to_value(stats).map_err(|e| invalid(e.to_string()))
}
