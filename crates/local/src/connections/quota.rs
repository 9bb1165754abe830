//! The account-level `@connections` quota (`--management-rps`): a token bucket
//! refilled at `rate` calls per second up to a burst of half that, API Gateway's
//! default ratio (10,000 requests per second steady, a burst of 5,000, per
//! account and region; calls past it get 429 `LimitExceededException`,
//! docs.aws.amazon.com/apigateway/latest/developerguide/limits.html). Here there
//! is one bucket per gateway process. The burst can be set apart
//! (`--management-burst`) and the rate may be a fraction: with a rate of 0.01 and
//! a burst of 10, exactly 10 of any quick run of calls pass, however fast the
//! machine.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket over an injected clock: [`Quota::admit_at`] takes the instant.
#[derive(Debug)]
pub(crate) struct Quota {
    /// Tokens added per second.
    rate: f64,
    /// The most tokens the bucket holds.
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled: Instant,
}

impl Quota {
    /// A full bucket refilled at `rate` per second holding `burst` (by default
    /// `rate / 2`, at least 1); `None` for a rate of 0 or less (no quota).
    pub(crate) fn new(rate: f64, burst: Option<u32>, now: Instant) -> Option<Self> {
        if rate.is_nan() || rate <= 0.0 {
            return None;
        }
        let burst = burst.map_or((rate / 2.0).floor(), f64::from).max(1.0);
        Some(Self {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                refilled: now,
            }),
        })
    }

    /// Takes one token at `now`; `false` when the bucket is empty.
    pub(crate) fn admit_at(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.rate).min(self.burst);
        state.refilled = state.refilled.max(now);
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes one token now.
    pub(crate) fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn admitted(quota: &Quota, now: Instant, calls: usize) -> usize {
        (0..calls).filter(|_| quota.admit_at(now)).count()
    }

    #[test]
    fn burst_is_half_the_rate_and_refills_at_the_rate() {
        let start = Instant::now();
        let quota = Quota::new(10.0, None, start).unwrap();
        assert_eq!(admitted(&quota, start, 5), 5);
        assert!(!quota.admit_at(start), "the 6th call in the same instant");
        let later = start + Duration::from_secs(1);
        assert_eq!(admitted(&quota, later, 10), 5, "refilled up to the burst");
        let half = later + Duration::from_millis(200);
        assert_eq!(admitted(&quota, half, 10), 2, "10 per second");
    }

    #[test]
    fn a_set_burst_and_a_slow_refill_admit_an_exact_count() {
        let start = Instant::now();
        let quota = Quota::new(0.01, Some(7), start).unwrap();
        assert_eq!(admitted(&quota, start, 20), 7);
        let later = start + Duration::from_secs(50);
        assert_eq!(admitted(&quota, later, 20), 0, "half a token refilled");
        let much_later = start + Duration::from_secs(100);
        assert_eq!(admitted(&quota, much_later, 20), 1, "one token refilled");
    }

    #[test]
    fn zero_is_no_quota() {
        assert!(Quota::new(0.0, None, Instant::now()).is_none());
        assert!(Quota::new(0.0, Some(5), Instant::now()).is_none());
    }
}
