//! Per-connection, per-namespace rate limits: fixed windows counted in the store.
//!
//! Each room frame costs exactly one write: an atomic increment of the counter of
//! (connection, namespace, window) that returns the new count
//! ([`crate::store::Store::count_rate`]; in DynamoDB an `UpdateItem` `ADD` with
//! `ReturnValues: UPDATED_NEW`). The count keeps rising past the limit, which is
//! what tells a client that slipped over the limit once from one that keeps
//! flooding. Counter items expire with their window (TTL) and live in the
//! connection's partition, so `$disconnect` removes them with the rest.

use super::policy::RateLimit;
use crate::names::attr;
use crate::store::{Store, StoreError};

/// Counter items outlive their window by this much, then TTL removes them.
pub const COUNTER_TTL_MARGIN_SECS: u64 = 60;

/// The outcome of counting one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit.
    Allowed,
    /// Over the limit: refuse with `rate_limited`.
    Limited,
    /// At `close_after` times the limit: refuse and close the connection.
    Flooding,
}

impl Verdict {
    pub fn of(count: u64, limit: &RateLimit) -> Self {
        if count <= limit.limit {
            Self::Allowed
        } else if count >= limit.limit.saturating_mul(limit.close_after) {
            Self::Flooding
        } else {
            Self::Limited
        }
    }
}

/// The counter's name within the connection: `rate#<namespace>#<window start>`.
pub fn bucket(namespace: &str, window_secs: u64, now: u64) -> (String, u64) {
    let window = window_secs.max(1);
    let start = now - now % window;
    (
        format!("{}{namespace}#{start}", attr::RATE_PREFIX),
        start + window + COUNTER_TTL_MARGIN_SECS,
    )
}

/// Counts one frame of `connection_id` in `namespace` at `now` (epoch seconds).
pub async fn count(
    store: &dyn Store,
    connection_id: &str,
    namespace: &str,
    limit: &RateLimit,
    now: u64,
) -> Result<Verdict, StoreError> {
    let (bucket, expires_at) = bucket(namespace, limit.window_secs, now);
    let count = store
        .count_rate(connection_id, &bucket, expires_at, now)
        .await?;
    Ok(Verdict::of(count, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        let l = RateLimit {
            limit: 3,
            window_secs: 10,
            close_after: 2,
        };
        let v: Vec<Verdict> = (1..=7).map(|n| Verdict::of(n, &l)).collect();
        use Verdict::*;
        assert_eq!(
            v,
            [
                Allowed, Allowed, Allowed, Limited, Limited, Flooding, Flooding
            ]
        );
    }

    #[test]
    fn buckets_are_fixed_windows() {
        assert_eq!(
            bucket("chat", 10, 1_000_005),
            ("rate#chat#1000000".into(), 1_000_070)
        );
        assert_eq!(bucket("chat", 10, 1_000_009).0, "rate#chat#1000000");
        assert_eq!(bucket("chat", 10, 1_000_010).0, "rate#chat#1000010");
        assert_eq!(bucket("", 60, 120).0, "rate##120");
    }
}
