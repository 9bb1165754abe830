//! Pacing posts to the account's `@connections` budget.
//!
//! API Gateway counts `@connections` posts against the account's request quota
//! (10,000 requests per second per Region by default, shared with every other
//! API Gateway call; "Amazon API Gateway quotas", docs.aws.amazon.com/apigateway/
//! latest/developerguide/limits.html) and answers 429 past it. A big room's
//! fan-out runs in several workers at once, so each is given its share of the
//! budget ([`crate::workers::Job::rate`]) and spaces its posts by it: a fan-out
//! that posts as fast as it can would meet a 429 storm and spend the quota on
//! retries.
//!
//! The share is a ceiling, not a promise: other traffic (small rooms' fan-outs,
//! another big room's workers, other APIs of the account) draws on the same
//! quota. So the pacer also backs off on a 429, the way TCP does on a loss:
//! the rate halves (at most once per [`COOL_DOWN`], as the 429s of posts already
//! in flight tell nothing new), every post of the worker waits [`PAUSE`], and
//! the rate climbs back by a twentieth of the share every [`RAISE_EVERY`] once
//! a second has passed without a 429. Every worker seeing the quota's 429s backs
//! off the same way at the same time, without talking to the others.

use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so tests can pause it.
use tokio::time::Instant;

/// After a 429, no further cut for this long.
pub const COOL_DOWN: Duration = Duration::from_millis(250);
/// After a 429, every post of the worker waits this long.
pub const PAUSE: Duration = Duration::from_millis(100);
/// How far ahead turns are booked.
pub const HORIZON: Duration = Duration::from_secs(1);
/// How often the rate may climb back after a cut.
pub const RAISE_EVERY: Duration = Duration::from_millis(100);
/// How long after the last cut the rate starts to climb back.
const CALM: Duration = Duration::from_secs(1);
/// The slowest a pacer goes, in posts per second.
const MIN_RATE: f64 = 1.0;

/// Spaces the posts of one worker at a rate that adapts to 429s; shared by all
/// the worker's concurrent posts.
#[derive(Debug)]
pub struct Pacer {
    share: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rate: f64,
    /// When the next post may start.
    next: Instant,
    last_cut: Option<Instant>,
    last_raise: Instant,
    cuts: u64,
}

impl Pacer {
    /// A pacer allowing `share` posts per second (at least one).
    pub fn new(share: f64) -> Self {
        let share = if share.is_finite() {
            share.max(MIN_RATE)
        } else {
            MIN_RATE
        };
        let now = Instant::now();
        Self {
            share,
            state: Mutex::new(State {
                rate: share,
                next: now,
                last_cut: None,
                last_raise: now,
                cuts: 0,
            }),
        }
    }

    /// Waits for this post's turn: turns are `1 / rate` apart and taken in the
    /// order asked for. An idle pacer saves no turns (no burst after a lull).
    /// Turns are booked at most [`HORIZON`] ahead, at the rate of the moment:
    /// a post that finds the book full waits until it has room, so turns booked
    /// while the rate was low do not hold back a rate that has climbed again.
    /// `false`, without a turn, when the turn would come at or after `deadline`.
    pub async fn wait(&self, deadline: Option<Instant>) -> bool {
        loop {
            let (at, booked) = {
                let mut state = self.lock();
                let now = Instant::now();
                let turn = state.next.max(now);
                if turn <= now + HORIZON {
                    state.next = turn + Duration::from_secs_f64(1.0 / state.rate);
                    (turn, true)
                } else {
                    (turn - HORIZON, false)
                }
            };
            if deadline.is_some_and(|deadline| at >= deadline) {
                return false;
            }
            tokio::time::sleep_until(at).await;
            if booked {
                return true;
            }
        }
    }

    /// A post was answered 429: halve the rate and pause every post, unless a
    /// cut was made within [`COOL_DOWN`].
    pub fn throttled(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        if state
            .last_cut
            .is_some_and(|cut| now.duration_since(cut) < COOL_DOWN)
        {
            return;
        }
        state.rate = (state.rate / 2.0).max(MIN_RATE);
        state.next = state.next.max(now + PAUSE);
        state.last_cut = Some(now);
        state.cuts += 1;
    }

    /// A post was accepted: after a calm second, the rate climbs back towards
    /// the share.
    pub fn delivered(&self) {
        let mut state = self.lock();
        if state.rate >= self.share {
            return;
        }
        let now = Instant::now();
        let calm = state
            .last_cut
            .is_none_or(|cut| now.duration_since(cut) >= CALM);
        if calm && now.duration_since(state.last_raise) >= RAISE_EVERY {
            state.rate = (state.rate + self.share / 20.0).min(self.share);
            state.last_raise = now;
        }
    }

    /// The rate now, in posts per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// The share this pacer never exceeds, in posts per second.
    pub fn share(&self) -> f64 {
        self.share
    }

    /// How many times a 429 made the pacer back off (halve, down to one post a
    /// second, and pause).
    pub fn cuts(&self) -> u64 {
        self.lock().cuts
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain numbers behind: still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_halves_the_rate_once_per_cool_down() {
        let pacer = Pacer::new(1000.0);
        pacer.throttled();
        pacer.throttled();
        assert_eq!(pacer.rate(), 500.0);
        assert_eq!(pacer.cuts(), 1);
    }

    #[test]
    fn the_rate_never_falls_below_one() {
        let pacer = Pacer::new(0.0);
        assert_eq!(pacer.share(), 1.0);
        pacer.throttled();
        assert_eq!(pacer.rate(), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_calm_second_the_rate_climbs_back_to_the_share_and_no_further() {
        let pacer = Pacer::new(100.0);
        pacer.throttled();
        assert_eq!(pacer.rate(), 50.0);
        // Within the calm second: no climb.
        tokio::time::advance(Duration::from_millis(900)).await;
        pacer.delivered();
        assert_eq!(pacer.rate(), 50.0);
        // After it: a twentieth of the share every 100 ms, capped at the share.
        for _ in 0..20 {
            tokio::time::advance(RAISE_EVERY + CALM).await;
            pacer.delivered();
        }
        assert_eq!(pacer.rate(), 100.0);
    }

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_the_rate() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        for _ in 0..11 {
            assert!(pacer.wait(None).await);
        }
        // Ten gaps of 100 ms on tokio's paused clock: no real time passes.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_the_next_turn() {
        let pacer = Pacer::new(1000.0);
        assert!(pacer.wait(None).await);
        let start = Instant::now();
        pacer.throttled();
        assert!(pacer.wait(None).await);
        assert!(start.elapsed() >= PAUSE, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_past_the_deadline_is_refused_and_turns_are_booked_one_horizon_ahead() {
        let pacer = Pacer::new(1.0);
        let start = Instant::now();
        // A second apart: the first now, the second at 1 s.
        assert!(pacer.wait(None).await);
        assert!(!pacer.wait(Some(start + Duration::from_millis(500))).await);
        // Turns were booked only up to the horizon, so a faster pacer's next
        // turn is not pushed out by a long list of slow ones.
        let waits: Vec<_> = (0..3).map(|_| pacer.wait(None)).collect();
        for wait in waits {
            assert!(wait.await);
        }
        assert!(
            start.elapsed() <= Duration::from_secs(4) + HORIZON,
            "{:?}",
            start.elapsed()
        );
    }
}
