//! The AWS dispatcher: jobs to the fan-out FIFO queue (template.yaml
//! `FanoutQueue`), ten to a `SendMessageBatch` and no more than SQS's 256 KiB
//! a batch ("Amazon SQS message quotas", docs.aws.amazon.com/AWSSimpleQueueService/
//! latest/SQSDeveloperGuide/quotas-messages.html).
//!
//! Each message's group is its room and shard, so Lambda runs a shard's jobs
//! one at a time in the order they were sent, and other shards' in parallel
//! ("Using Lambda with Amazon SQS", FIFO queues); its deduplication id is the
//! job's claim key hashed, so a job sent twice within SQS's five-minute
//! deduplication interval is queued once (the claim covers later repeats).

use async_trait::async_trait;
use aws_lc_rs::digest;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::job::{Dispatch, DispatchError, Envelope, Job};

/// Entries per `SendMessageBatch`.
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Bytes of message bodies per `SendMessageBatch` (256 KiB).
pub const MAX_BATCH_BYTES: usize = 262_144;
/// Tries per batch (the SDK's own retries of a failed call come on top).
pub const ATTEMPTS: u32 = 3;
/// Before the second try; twice that before the third.
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest message group and deduplication id SQS takes.
pub const MAX_ID_CHARS: usize = 128;

/// Sends jobs to the FIFO queue at `queue_url`.
#[derive(Debug, Clone)]
pub struct SqsDispatch {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDispatch {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: String) -> Self {
        Self { client, queue_url }
    }

    /// The `SendMessageBatch` entries `jobs` go in ([`batches`]).
    pub fn batches(jobs: &[Job]) -> Result<Vec<Vec<SendMessageBatchRequestEntry>>, DispatchError> {
        batches(jobs)
    }

    /// Sends one batch, sending again what SQS did not take (a call that
    /// failed, or entries it reports failed on its side) up to [`ATTEMPTS`]
    /// times: a repeat of an entry it did take is dropped by its deduplication
    /// id, so only a lost job is worse than trying again.
    async fn send_batch(
        &self,
        mut batch: Vec<SendMessageBatchRequestEntry>,
    ) -> Result<(), DispatchError> {
        let total = batch.len();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(batch.clone()))
                .send()
                .await
            {
                Ok(out) if out.failed.is_empty() => return Ok(()),
                Ok(out) => {
                    let first = &out.failed[0];
                    let error = DispatchError::NotQueued {
                        failed: out.failed.len(),
                        total,
                        reason: format!(
                            "{}: {}",
                            first.code,
                            first.message.as_deref().unwrap_or("")
                        ),
                    };
                    // A sender's fault (a malformed entry) fails again.
                    if out.failed.iter().any(|f| f.sender_fault) {
                        return Err(error);
                    }
                    let failed: Vec<&str> = out.failed.iter().map(|f| f.id.as_str()).collect();
                    batch.retain(|entry| failed.contains(&entry.id()));
                    error
                }
                Err(e) => DispatchError::Backend {
                    operation: "SendMessageBatch",
                    source: Box::new(e),
                },
            };
            if attempt >= ATTEMPTS {
                return Err(error);
            }
            tracing::warn!(attempt, error = %crate::error_chain(&error), "fan-out jobs not queued; sending again");
            tokio::time::sleep(RETRY_DELAY * attempt).await;
        }
    }
}

#[async_trait]
impl Dispatch for SqsDispatch {
    async fn dispatch(&self, jobs: Vec<Job>) -> Result<(), DispatchError> {
        for batch in batches(&jobs)? {
            self.send_batch(batch).await?;
        }
        Ok(())
    }
}

/// The jobs as batch entries, in order, split at ten entries or 256 KiB.
pub fn batches(jobs: &[Job]) -> Result<Vec<Vec<SendMessageBatchRequestEntry>>, DispatchError> {
    let mut batches = Vec::new();
    let mut batch: Vec<SendMessageBatchRequestEntry> = Vec::new();
    let mut bytes = 0;
    for job in jobs {
        let body = serde_json::to_string(&Envelope { job: job.clone() })
            .map_err(|e| DispatchError::Frame(e.to_string()))?;
        if body.len() > MAX_BATCH_BYTES {
            return Err(DispatchError::TooLarge(body.len()));
        }
        if !batch.is_empty()
            && (batch.len() == MAX_BATCH_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES)
        {
            batches.push(std::mem::take(&mut batch));
            bytes = 0;
        }
        bytes += body.len();
        let entry = SendMessageBatchRequestEntry::builder()
            .id(format!("s{}", job.shard))
            .message_body(body)
            .message_group_id(group_id(job))
            .message_deduplication_id(sha256_hex(&job.claim_key()))
            .build()
            .map_err(|e| DispatchError::Frame(e.to_string()))?;
        batch.push(entry);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    Ok(batches)
}

/// The job's group, readable when it fits SQS's 128 characters (room names
/// use only characters SQS allows), else its hash.
pub fn group_id(job: &Job) -> String {
    let group = job.group();
    if group.len() <= MAX_ID_CHARS {
        group
    } else {
        sha256_hex(&group)
    }
}

fn sha256_hex(text: &str) -> String {
    digest::digest(&digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn job(room: &str, shard: u16, frame_bytes: usize) -> Job {
        let frame = format!("{{\"d\":\"{}\"}}", "x".repeat(frame_bytes));
        Job {
            room: room.to_owned(),
            shard,
            shards: 16,
            event: "e:1".to_owned(),
            except: Vec::new(),
            rate: 625.0,
            frame: RawValue::from_string(frame).unwrap(),
        }
    }

    #[test]
    fn batches_hold_ten_jobs_or_256_kib() {
        let small: Vec<Job> = (0..16).map(|s| job("r", s, 10)).collect();
        let sizes: Vec<usize> = batches(&small).unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 6]);
        let big: Vec<Job> = (0..4).map(|s| job("r", s, 100_000)).collect();
        let sizes: Vec<usize> = batches(&big).unwrap().iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2]);
    }

    #[test]
    fn groups_are_room_and_shard_and_fit_sqs() {
        assert_eq!(group_id(&job("chat:big", 3, 1)), "chat:big#3");
        let long = "r".repeat(128);
        assert_eq!(group_id(&job(&long, 3, 1)).len(), 64);
        let entries = batches(&[job("a", 0, 1), job("a", 1, 1)]).unwrap();
        let dedup: Vec<_> = entries[0]
            .iter()
            .map(|e| e.message_deduplication_id().unwrap().to_owned())
            .collect();
        assert_ne!(dedup[0], dedup[1]);
    }
}
