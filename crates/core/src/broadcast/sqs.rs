//! The broadcast function's SQS path: one batch of queued broadcasts, with its
//! policy for grouping, conflation, the invocation deadline and partial batch
//! failures (docs/broadcast.md).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};

use super::request::{Audience, Broadcast, BroadcastError, MAX_IDS, invalid};
use super::{claim, endpoint, log_stats, release, stop_at};
use crate::App;
use crate::fanout::{self, Fanout, Incomplete};
use crate::metrics::Counter;
use crate::store::{now_millis, now_secs};

/// Groups of one SQS batch fanned out at the same time; each fan-out keeps its
/// own `ROOMCAST_FANOUT_CONCURRENCY` posts in flight.
pub const GROUP_CONCURRENCY: usize = 4;
/// No SQS message (or group) is started with less than this left before the
/// invocation's deadline: unstarted messages are reported as failures instead, so
/// the batch is not cut off by the timeout and redelivered whole. Above the fan-out's
/// 10 s retry deadline, so a message started in time can finish its retries.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(15);
/// Most recipients a group of several SQS messages reads once and holds; a larger
/// room or user is streamed once per message instead. `all` is always streamed.
pub const MAX_LISTED: usize = MAX_IDS;

/// One SQS message kept for sending, with where it came from.
struct Queued {
    message_id: String,
    broadcast: Broadcast,
}

impl Queued {
    /// The idempotency key: the caller's, else the SQS messageId, which a
    /// redelivery keeps.
    fn key(&self) -> String {
        match &self.broadcast.idempotency_key {
            Some(key) => format!("k:{key}"),
            None => format!("m:{}", self.message_id),
        }
    }
}

/// Handles one SQS batch: drops superseded conflated messages, groups the rest by
/// audience (recipients are read once per group), fans them out in queue order and
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
/// is logged and not retried. Each message is recorded by its idempotency key
/// before it goes out, so a redelivered one (a batch that came back whole) is
/// skipped; a message reported for retry has its record deleted first.
pub async fn handle_sqs(app: &App, event: SqsEvent, deadline_ms: u64) -> SqsBatchResponse {
    let mut failures: Vec<String> = Vec::new();
    app.metrics
        .add(Counter::SqsMessages, event.records.len() as u64);
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
    let parsed = kept.len();
    let kept = conflate(kept.into_iter().map(|(_, _, q)| q).collect());
    app.metrics
        .add(Counter::SqsConflated, (parsed - kept.len()) as u64);

    let mut groups: BTreeMap<(Audience, Vec<String>), Vec<Queued>> = BTreeMap::new();
    for queued in kept {
        let mut except = queued.broadcast.except.clone();
        except.sort();
        except.dedup();
        groups
            .entry((queued.broadcast.audience.clone(), except))
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
    let fanout = Fanout::for_app(app, endpoint).until(stop_at(deadline_ms));
    let now = now_secs();
    // One message, or `all`: stream the recipients as the direct path does. More:
    // read the recipients once, up to `MAX_LISTED`, and post every message to the
    // same list.
    let listed;
    let streamed = first.broadcast.audience.view(&app.config.policies);
    // A sharded room's messages go to workers: nothing to list here.
    let handed_off = matches!(&first.broadcast.audience, Audience::Room(room)
        if crate::workers::worker_shards(app, room).is_some());
    let recipients = if group.len() == 1 || handed_off || first.broadcast.audience == Audience::All
    {
        streamed
    } else {
        match fanout.list(streamed, now, MAX_LISTED).await {
            Ok(Some(ids)) => {
                listed = ids;
                fanout::Audience::Connections(&listed)
            }
            Ok(None) => streamed,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "reading broadcast recipients failed");
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
        if !send_one(app, &fanout, recipients, &except, queued, now).await {
            retry.push(queued.message_id.clone());
        }
    }
    retry
}

/// Sends one queued message of a group to `recipients`, once per idempotency
/// key; `false` when it is to be retried (nothing went out, and its record is
/// deleted so the retry is sent).
async fn send_one(
    app: &App,
    fanout: &Fanout<'_>,
    recipients: fanout::Audience<'_>,
    except: &[&str],
    queued: &Queued,
    now: u64,
) -> bool {
    let key = queued.key();
    match claim(app, &key).await {
        Ok(true) => {}
        Ok(false) => return true,
        Err(e) => {
            tracing::warn!(message_id = queued.message_id, error = %e, "queued broadcast failed");
            return false;
        }
    }
    let (payload, head) = match super::frame(app, &queued.broadcast, now).await {
        Ok(published) => published,
        // Too large fails again: let it reach the dead-letter queue. A store
        // failure may not: the retry takes a new offset.
        Err(e) => {
            tracing::warn!(message_id = queued.message_id, error = %e, "queued broadcast failed");
            release(app, &key).await;
            return false;
        }
    };
    app.metrics.incr(queued.broadcast.audience.counter());
    match super::hand_off(app, &queued.broadcast, except, &payload, head.as_ref()).await {
        Ok(Some(_)) => return true,
        Ok(None) => {}
        // Published but not handed over: a retry would publish it again, so
        // count it and move on, as for a fan-out that failed part-way.
        Err(e) => {
            tracing::error!(message_id = queued.message_id, error = %e, "queued broadcast not handed to workers; not retried");
            return true;
        }
    }
    match fanout.send(recipients, except, payload, now).await {
        Ok(stats) => log_stats(app, "queued broadcast", &stats),
        // Nothing went out: retrying sends it once.
        Err(Incomplete { stats, error }) if stats.recipients == 0 => {
            tracing::warn!(message_id = queued.message_id, error = %crate::error_chain(&error), "queued broadcast failed");
            release(app, &key).await;
            return false;
        }
        // Some posts went out: a retry would reach them twice. Count and log.
        Err(Incomplete { stats, error }) => {
            tracing::error!(
                message_id = queued.message_id,
                error = %crate::error_chain(&error),
                "queued broadcast incomplete: reading recipients failed after some posts; not retried"
            );
            log_stats(app, "incomplete queued broadcast", &stats);
        }
    }
    true
}
