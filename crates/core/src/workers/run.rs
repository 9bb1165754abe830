//! Running one fan-out job: the shard's members, paced to the job's share.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use bytes::Bytes;

use super::job::{Envelope, JOB_FIELD, Job};
use crate::App;
use crate::claims::{claim, release};
use crate::fanout::{Audience, Fanout, FanoutStats, RetryPolicy};
use crate::metrics::Counter;
use crate::pace::Pacer;
use crate::store::{StoreError, now_secs};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("no @connections endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT")]
    NoEndpoint,
    /// Taking the job's claim or reading the shard's members failed.
    #[error("the store failed")]
    Store(#[from] StoreError),
}

/// How long a worker's post may keep retrying 5xx and connect errors: as long
/// as the invocation lasts (`stop_at` ends it), not the 10 s of an in-line
/// fan-out, which must answer its sender.
const RETRY_DEADLINE: Duration = Duration::from_secs(15 * 60);

/// Runs `job` unless it already ran (its claim, one conditional write, is
/// taken before the first post): the shard's members get the frame, paced to
/// `job.rate` and backing off on 429, until `stop_at`. A run that posted
/// nothing (its read failed at once) gives the claim back so a retry runs it.
///
/// Nothing is posted twice when the job is delivered again (an SQS redelivery,
/// a retried batch): the retry finds the claim. A run stopped part-way
/// (`stop_at`, or a read that failed after some posts) is done, not resumed:
/// the members it did not reach are counted `failed` or not at all
/// (docs/broadcast.md says how to size shards so a job fits one invocation).
/// `Err` only when nothing went out, so a retry is worth making.
pub async fn run(
    app: &App,
    job: &Job,
    stop_at: Option<Instant>,
) -> Result<FanoutStats, WorkerError> {
    let endpoint = app
        .config
        .management_endpoint
        .as_deref()
        .ok_or(WorkerError::NoEndpoint)?;
    let key = job.claim_key();
    if !claim(app, &key).await? {
        return Ok(FanoutStats {
            repeat: true,
            ..FanoutStats::default()
        });
    }
    let pacer = Pacer::new(job.rate);
    let fanout = Fanout {
        retry: RetryPolicy {
            deadline: RETRY_DEADLINE,
            ..RetryPolicy::default()
        },
        ..Fanout::for_app(app, endpoint)
    }
    .paced(&pacer)
    .until(stop_at);
    let except: Vec<&str> = job.except.iter().map(String::as_str).collect();
    let audience = Audience::Shard {
        room: &job.room,
        shard: job.shard,
    };
    let payload = Bytes::from(job.frame.get().to_owned());
    let sent = fanout.send(audience, &except, payload, now_secs()).await;
    let stats = match sent {
        Ok(stats) => stats,
        // Nothing went out: the claim is given back, so a retry runs the job.
        Err(incomplete) if incomplete.stats.recipients == 0 => {
            release(app, &key).await;
            record(app, job, &incomplete.stats, &pacer);
            return Err(incomplete.error.into());
        }
        // Some posts went out and the claim is kept: a retry would be a
        // repeat, so the job is done, short of the members not read.
        Err(incomplete) => {
            tracing::error!(shard = job.shard, error = %crate::error_chain(&incomplete.error), "fan-out job incomplete: reading members failed after some posts; not retried");
            incomplete.stats
        }
    };
    record(app, job, &stats, &pacer);
    Ok(stats)
}

/// Counts and logs one job: the fan-out's figures, its posts per second and the
/// room's shard count.
fn record(app: &App, job: &Job, stats: &FanoutStats, pacer: &Pacer) {
    app.metrics.fanout(stats);
    app.metrics.incr(Counter::FanoutJobsRun);
    let per_sec = (stats.delivered as u64)
        .saturating_mul(1000)
        .checked_div(stats.ms)
        .unwrap_or(0);
    app.metrics.worker(per_sec, job.shards);
    tracing::info!(
        shard = job.shard,
        shards = job.shards,
        recipients = stats.recipients,
        delivered = stats.delivered,
        gone = stats.gone,
        failed = stats.failed,
        throttled_retries = stats.throttled_retries,
        rate_cuts = pacer.cuts(),
        ms = stats.ms,
        posts_per_sec = per_sec,
        "fan-out job"
    );
}

/// Whether every record of `event` is a fan-out job (the fan-out queue's
/// messages, whose body has the top-level [`JOB_FIELD`]), as opposed to queued
/// broadcasts, which may mention the word anywhere in their data.
pub fn is_job_batch(event: &SqsEvent) -> bool {
    !event.records.is_empty()
        && event.records.iter().all(|record| {
            record
                .body
                .as_deref()
                .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok())
                .is_some_and(|body| body.get(JOB_FIELD).is_some())
        })
}

/// Runs a batch from the fan-out FIFO queue in order. As Lambda asks of FIFO
/// sources, the first job that fails stops the batch: it and every later
/// record are reported, so SQS keeps the group's order ("Handling errors for an
/// SQS event source in Lambda", docs.aws.amazon.com/lambda/latest/dg/
/// services-sqs-errorhandling.html). A job whose fan-out ran (even cut short)
/// is done: its claim makes a redelivery a no-op anyway.
pub async fn handle_sqs(app: &App, event: SqsEvent, deadline_ms: u64) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed = false;
    for record in event.records {
        let Some(message_id) = record.message_id.clone() else {
            tracing::warn!("SQS record without a messageId; dropped");
            continue;
        };
        if !failed {
            failed = !run_record(app, &record, deadline_ms).await;
        }
        if failed {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// One record of the fan-out queue; `false` when it is to be retried.
async fn run_record(app: &App, record: &SqsMessage, deadline_ms: u64) -> bool {
    let body = record.body.as_deref().unwrap_or_default();
    let job = match serde_json::from_str::<Envelope>(body) {
        Ok(envelope) => envelope.job,
        Err(e) => {
            // Fails again: left to reach the dead-letter queue, where it can be read.
            tracing::warn!(error = %e, "malformed fan-out job");
            return false;
        }
    };
    match run(app, &job, crate::fanout::stop_at(deadline_ms)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(shard = job.shard, error = %crate::error_chain(&e), "fan-out job failed");
            false
        }
    }
}
