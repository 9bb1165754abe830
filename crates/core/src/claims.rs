//! Idempotency records: a broadcast, or one shard's job of a big room's
//! fan-out, is recorded by its key before it goes out (a conditional write), so
//! a delivery of it again finds the record and is skipped (docs/broadcast.md,
//! "Repeats" and "Nothing twice").

use std::time::Duration;

use crate::App;
use crate::metrics::Counter;
use crate::store::{StoreError, now_secs};

/// How long an idempotency record lives: the broadcast queue's message retention
/// (template.yaml `MessageRetentionPeriod`), past which no redelivery comes.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Records the idempotency `key` before a broadcast or a job goes out:
/// `Ok(true)` to send it, `Ok(false)` for a repeat (counted and logged).
pub async fn claim(app: &App, key: &str) -> Result<bool, StoreError> {
    let now = now_secs();
    let claimed = app
        .store
        .claim_broadcast(key, now + IDEMPOTENCY_TTL.as_secs(), now)
        .await?;
    if !claimed {
        app.metrics.incr(Counter::BroadcastRepeats);
        tracing::info!("repeat of a broadcast already sent; skipped");
    }
    Ok(claimed)
}

/// Drops the record of a broadcast that could not start, so its retry is sent.
pub async fn release(app: &App, key: &str) {
    if let Err(e) = app.store.release_broadcast(key).await {
        tracing::warn!(error = %crate::error_chain(&e), "could not delete an idempotency record; a retry of the broadcast will be skipped");
    }
}
