//! Per-connection rate limits: fixed windows counted in the store.
//!
//! Every frame of a connection is counted (room frames, pings, unknown actions,
//! unparsable and refused frames alike) against the connection-wide limit, and a
//! room frame that passed its policy also against its policy's limit, keyed by the
//! policy the room resolves to (the configured namespace, or `*` for every room
//! under the default), so made-up namespaces share one counter.
//!
//! Each frame costs exactly one write: one counter item per connection and window
//! holds all the counts, and one atomic `UpdateItem` (`ADD n :units, n#<key>
//! :units`, `ReturnValues: UPDATED_NEW`) adds to them and returns the new values
//! ([`crate::store::Store::count_frame`]). A frame is one unit. A `join` that
//! replays history is charged again after its replay, in the same one write:
//! [`replay_units`] for the event bytes it sent, so rejoining with `since` cannot
//! pull megabytes for one unit. Counts keep rising past the limit,
//! which is what tells a client that slipped over the limit once from one that
//! keeps flooding. Counter items expire with their window (TTL) and live in the
//! connection's partition, so `$disconnect` removes them with the rest.

use super::RateLimit;
use crate::names::attr;
use crate::store::{Store, StoreError};

/// Counter items outlive their window by this much, then TTL removes them.
pub const COUNTER_TTL_MARGIN_SECS: u64 = 60;

/// API Gateway meters WebSocket messages in 32 KB increments (AWS, "Amazon API
/// Gateway pricing", WebSocket APIs: <https://aws.amazon.com/api-gateway/pricing/>);
/// replays are charged in the same increments.
pub const METERED_BYTES: usize = 32 * 1024;

/// The units a replay of `bytes` event bytes costs besides its `join` frame: one
/// per started [`METERED_BYTES`] beyond the first (which the frame's own unit
/// covers), so a replay of up to 32 KB costs nothing extra and the 4 MiB bound
/// 127 units.
pub fn replay_units(bytes: usize) -> u64 {
    (bytes.div_ceil(METERED_BYTES).saturating_sub(1)) as u64
}

/// The outcome of counting one frame, from mildest to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// The counter item of the window holding `now`: `rate#*#<window start>`, and its TTL.
pub(crate) fn bucket(window_secs: u64, now: u64) -> (String, u64) {
    let window = window_secs.max(1);
    let start = now - now % window;
    (
        format!("{}*#{start}", attr::RATE_PREFIX),
        start + window + COUNTER_TTL_MARGIN_SECS,
    )
}

/// The verdicts on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdicts {
    /// Against the connection-wide limit.
    pub connection: Verdict,
    /// Against the room's policy limit, for a counted room frame.
    pub room: Option<Verdict>,
}

/// Counts `units` (one for a frame) of `connection_id` at `now` (epoch seconds):
/// against `connection` always, and against `room` = (policy key, its limit) if
/// given. Every limit shares `connection`'s window (policies enforce that).
pub async fn count(
    store: &dyn Store,
    connection_id: &str,
    connection: &RateLimit,
    room: Option<(&str, &RateLimit)>,
    units: u64,
    now: u64,
) -> Result<Verdicts, StoreError> {
    let (bucket, expires_at) = bucket(connection.window_secs, now);
    let counts = store
        .count_frame(
            connection_id,
            &bucket,
            room.map(|(key, _)| key),
            units,
            expires_at,
            now,
        )
        .await?;
    Ok(Verdicts {
        connection: Verdict::of(counts.all, connection),
        room: room
            .zip(counts.key)
            .map(|((_, limit), n)| Verdict::of(n, limit)),
    })
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
    fn replays_cost_a_unit_per_started_32_kb_beyond_the_first() {
        let units: Vec<u64> = [0, 1, 32_768, 32_769, 65_536, 65_537, 300_000]
            .into_iter()
            .map(replay_units)
            .collect();
        assert_eq!(units, [0, 0, 0, 1, 1, 2, 9]);
        assert_eq!(replay_units(4 * 1024 * 1024), 127);
    }

    #[test]
    fn buckets_are_fixed_windows() {
        assert_eq!(bucket(10, 1_000_005), ("rate#*#1000000".into(), 1_000_070));
        assert_eq!(bucket(10, 1_000_009).0, "rate#*#1000000");
        assert_eq!(bucket(10, 1_000_010).0, "rate#*#1000010");
        assert_eq!(bucket(60, 120).0, "rate#*#120");
    }
}
