//! A fan-out job and the port jobs go through.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
    /// `#` separates its parts: room names and event ids never contain one.
    pub fn claim_key(&self) -> String {
        format!("job#{}#{}#{}", self.room, self.event, self.shard)
    }
}

/// Where jobs go: the FIFO queue on AWS, in-process workers in `roomcast dev`.
#[async_trait]
pub trait Dispatch: Send + Sync {
    /// Hands over every job, or fails. Jobs handed over before a failure stay
    /// handed over: the event is published, and its sender, told of the
    /// failure, may send it again as a new event (docs/broadcast.md, "Nothing
    /// twice"), so adapters retry what they can before failing.
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
    #[error("a fan-out job is {0} bytes; an SQS message holds at most 262,144")]
    TooLarge(usize),
    #[error("the fan-out workers have stopped")]
    Stopped,
}
