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
//! - `job.rs`: the job and the [`Dispatch`] port (what the `App` holds; it
//!   knows nothing of the `App`).
//! - `run.rs`: one job: claimed once per event and shard, then a paced fan-out to
//!   the shard's members.
//! - `sqs.rs`: the AWS dispatcher, `SendMessageBatch` to the FIFO queue.

mod job;
mod run;
mod sqs;

pub use job::{Dispatch, DispatchError, Envelope, JOB_FIELD, Job};
pub use run::{WorkerError, handle_sqs, is_job_batch, run};
pub use sqs::SqsDispatch;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::App;
use crate::metrics::Counter;
use crate::store::{StreamHead, shard_of};

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
            // Each job carries only the ids of its own shard: a broadcast's
            // `except` (up to 10,000 ids) copied K times would not fit SQS.
            except: except
                .iter()
                .filter(|id| shard_of(id, shards) == shard)
                .map(|&id| id.to_owned())
                .collect(),
            rate,
            frame: frame.clone(),
        })
        .collect())
}

/// `room`'s shard count when its fan-outs go to workers: it is sharded and
/// workers are configured. `None`: the caller fans out itself.
pub fn worker_shards(app: &App, room: &str) -> Option<u16> {
    let shards = app.config.policies.shards(room);
    (app.dispatch.is_some() && shards >= 2).then_some(shards)
}

/// Hands the event to workers when [`worker_shards`] says so: `Some(jobs)`
/// then, `None` when the caller is to fan out itself.
pub async fn hand_off(
    app: &App,
    room: &str,
    head: Option<&StreamHead>,
    except: &[&str],
    frame: &Bytes,
) -> Result<Option<u16>, DispatchError> {
    let (Some(dispatch), Some(shards)) = (app.dispatch.as_deref(), worker_shards(app, room)) else {
        return Ok(None);
    };
    let jobs = plan(app, room, shards, &event_id(head), except, frame)?;
    dispatch.dispatch(jobs).await?;
    app.metrics.add(Counter::FanoutJobs, u64::from(shards));
    tracing::info!(room, shards, "fan-out handed to workers");
    Ok(Some(shards))
}
