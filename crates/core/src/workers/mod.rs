//! Big rooms' fan-out in parallel workers (docs/broadcast.md, "Big rooms").
//!
//! A room whose namespace spreads its members over several shards (`shards` in
//! the policy) is not posted to by the invocation that published the event: the
//! event is split into one [`Job`] per shard and handed to workers through a
//! [`Dispatch`]er, and the sender gets its ack (with the event's offset) at
//! once. On AWS the jobs go to an SQS FIFO queue (`sqs.rs`) whose messages are
//! grouped by room and shard, so each shard's events reach its members in the
//! order they were published, and the broadcast function runs them (`run.rs`);
//! `roomcast dev` runs them in-process with the same ordering and concurrency.
//!
//! - `run.rs`: one job: claimed once per event and shard, then a paced fan-out to
//!   the shard's members.
//! - `sqs.rs`: the AWS dispatcher, `SendMessageBatch` to the FIFO queue.

mod run;
mod sqs;

pub use run::{WorkerError, handle_sqs, is_job_batch, run};
pub use sqs::SqsDispatch;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::App;
use crate::metrics::Counter;
use crate::store::StreamHead;

/// The field of an SQS message body that holds a [`Job`] (a queued broadcast has
/// none), so the broadcast function tells the two apart by shape.
pub const JOB_FIELD: &str = "fanoutJob";

/// One shard's part of one event's fan-out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Job {
    pub room: String,
    pub shard: u16,
    /// The room's shard count when the job was made.
    pub shards: u16,
    /// The event's identity, the same in every shard's job: `<epoch>:<offset>`
    /// in rooms with history, else a random id. With the room and the shard it
    /// names the job's idempotency record.
    pub event: String,
    /// Connections not to post to (the sender of a `send`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
    /// Posts per second this job may make: its share of the account's budget.
    pub rate: f64,
    /// The frame, as posted.
    pub frame: Box<RawValue>,
}

/// A job with its envelope, as an SQS message body carries it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "fanoutJob")]
    pub job: Job,
}

impl Job {
    /// The FIFO queue's message group: one per room and shard, so a shard's
    /// events are run one after another, in order, and shards in parallel.
    pub fn group(&self) -> String {
        format!("{}#{}", self.room, self.shard)
    }

    /// The key of the job's idempotency record: an event's job for one shard is
    /// run once, however often it is delivered.
    pub fn claim_key(&self) -> String {
        format!("job:{}:{}:{}", self.room, self.event, self.shard)
    }
}

/// Where jobs go: the FIFO queue on AWS, in-process workers in `roomcast dev`.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Hands over every job, or fails; jobs handed over before a failure stay
    /// handed over (the ones retried are deduplicated by their claim).
    async fn dispatch(&self, jobs: Vec<Job>) -> Result<(), DispatchError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("SQS {operation} failed")]
    Backend {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{failed} of {total} fan-out jobs were not queued: {reason}")]
    NotQueued {
        failed: usize,
        total: usize,
        reason: String,
    },
    #[error("a frame is not JSON: {0}")]
    Frame(String),
    #[error("the fan-out workers have stopped")]
    Stopped,
}

/// Each job's share of the account's `@connections` budget: the budget divided
/// by the workers that may run at once for this room (its shards, at most the
/// configured workers).
pub fn share(app: &App, shards: u16) -> f64 {
    let at_once = usize::from(shards).clamp(1, app.config.fanout_workers.max(1));
    app.config.management_rps as f64 / at_once as f64
}

/// The event's identity in its jobs.
pub fn event_id(head: Option<&StreamHead>) -> String {
    match head {
        Some(head) => format!("{}:{}", head.epoch, head.offset),
        None => crate::store::new_epoch(),
    }
}

/// One job per shard of `room` for the event `frame`.
pub fn plan(
    app: &App,
    room: &str,
    shards: u16,
    event: &str,
    except: &[&str],
    frame: &Bytes,
) -> Result<Vec<Job>, DispatchError> {
    let text = std::str::from_utf8(frame).map_err(|e| DispatchError::Frame(e.to_string()))?;
    let frame =
        RawValue::from_string(text.to_owned()).map_err(|e| DispatchError::Frame(e.to_string()))?;
    let rate = share(app, shards);
    Ok((0..shards)
        .map(|shard| Job {
            room: room.to_owned(),
            shard,
            shards,
            event: event.to_owned(),
            except: except.iter().map(|&id| id.to_owned()).collect(),
            rate,
            frame: frame.clone(),
        })
        .collect())
}

/// Hands the event to workers when `room` is sharded and workers are
/// configured: `Some(jobs)` then, `None` when the caller is to fan out itself.
pub async fn hand_off(
    app: &App,
    room: &str,
    head: Option<&StreamHead>,
    except: &[&str],
    frame: &Bytes,
) -> Result<Option<u16>, DispatchError> {
    let shards = app.config.policies.for_room(room).shards;
    let Some(dispatch) = app.dispatch.as_deref() else {
        return Ok(None);
    };
    if shards < 2 {
        return Ok(None);
    }
    let jobs = plan(app, room, shards, &event_id(head), except, frame)?;
    dispatch.dispatch(jobs).await?;
    app.metrics.add(Counter::FanoutJobs, u64::from(shards));
    tracing::info!(room, shards, "fan-out handed to workers");
    Ok(Some(shards))
}
