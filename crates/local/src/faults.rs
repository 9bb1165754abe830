//! Fault injection for `@connections` POSTs (`roomcast dev --fault-rate 0.2
//! --fault-kinds 410,429,500`), so fan-out retries and 410 cleanup can be watched
//! and tested against real sockets.
//!
//! Decisions come from one RNG seeded from [`Faults::seed`]: the sequence of
//! decisions is the same on every run, though which connection meets which one
//! depends on the order concurrent posts arrive in.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Mutex;

/// An injected answer to `POST @connections/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 410 GoneException. The connection is closed (1001, so `$disconnect` runs)
    /// and every later POST to it answers 410 as well.
    Gone,
    /// 429 LimitExceededException.
    Throttled,
    /// 500 InternalServerErrorException.
    ServerError,
}

impl FaultKind {
    pub fn status(self) -> u16 {
        match self {
            Self::Gone => 410,
            Self::Throttled => 429,
            Self::ServerError => 500,
        }
    }
}

impl FromStr for FaultKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "410" => Ok(Self::Gone),
            "429" => Ok(Self::Throttled),
            "500" => Ok(Self::ServerError),
            other => Err(format!(
                "unknown fault kind {other:?}: expected 410, 429 or 500"
            )),
        }
    }
}

/// Injected transient faults (429, 500) in a row for one connection at most: a
/// client making more attempts than this always gets through, so tests can
/// assert that retries deliver everything.
pub const MAX_CONSECUTIVE: u32 = 3;

/// Which share of POSTs fail, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Share of POSTs answered with a fault, 0.0 to 1.0.
    pub rate: f64,
    /// The faults to choose from, uniformly.
    pub kinds: Vec<FaultKind>,
    pub seed: u64,
}

impl Faults {
    pub fn new(rate: f64, kinds: Vec<FaultKind>, seed: u64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&rate) {
            return Err(format!("fault rate {rate} is not between 0 and 1"));
        }
        if kinds.is_empty() && rate > 0.0 {
            return Err("a fault rate needs at least one fault kind".to_owned());
        }
        Ok(Self { rate, kinds, seed })
    }
}

/// The injector's state, shared by every POST.
#[derive(Debug)]
pub(crate) struct FaultInjector {
    faults: Faults,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    rng: fastrand::Rng,
    /// Transient faults injected in a row, per connection.
    streak: HashMap<String, u32>,
    /// Connections that got an injected 410.
    gone: HashSet<String>,
}

impl FaultInjector {
    pub(crate) fn new(faults: Faults) -> Self {
        let rng = fastrand::Rng::with_seed(faults.seed);
        Self {
            faults,
            state: Mutex::new(State {
                rng,
                streak: HashMap::new(),
                gone: HashSet::new(),
            }),
        }
    }

    /// The fault to answer this POST with, if any.
    pub(crate) fn decide(&self, connection_id: &str) -> Option<FaultKind> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.gone.contains(connection_id) {
            return Some(FaultKind::Gone);
        }
        let roll = state.rng.f64();
        let pick = state.rng.usize(..self.faults.kinds.len().max(1));
        let kind = (roll < self.faults.rate)
            .then(|| self.faults.kinds.get(pick).copied())
            .flatten();
        match kind {
            Some(FaultKind::Gone) => {
                state.streak.remove(connection_id);
                state.gone.insert(connection_id.to_owned());
                Some(FaultKind::Gone)
            }
            Some(kind) => {
                let streak = state.streak.entry(connection_id.to_owned()).or_default();
                if *streak >= MAX_CONSECUTIVE {
                    *streak = 0;
                    None
                } else {
                    *streak += 1;
                    Some(kind)
                }
            }
            None => {
                state.streak.remove(connection_id);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_rates_are_checked() {
        assert_eq!("410".parse(), Ok(FaultKind::Gone));
        assert_eq!(" 429".parse(), Ok(FaultKind::Throttled));
        assert!("418".parse::<FaultKind>().is_err());
        assert!(Faults::new(1.5, vec![FaultKind::Gone], 1).is_err());
        assert!(Faults::new(0.5, vec![], 1).is_err());
    }

    #[test]
    fn transient_faults_never_exceed_the_streak_cap() {
        let injector = FaultInjector::new(Faults::new(1.0, vec![FaultKind::Throttled], 7).unwrap());
        let decisions: Vec<_> = (0..8).map(|_| injector.decide("c")).collect();
        assert_eq!(decisions[..3], [Some(FaultKind::Throttled); 3]);
        assert_eq!(decisions[3], None);
        assert_eq!(decisions[4], Some(FaultKind::Throttled));
    }

    #[test]
    fn gone_is_sticky_and_seeded_runs_repeat() {
        let faults = Faults::new(0.5, vec![FaultKind::Gone, FaultKind::ServerError], 42).unwrap();
        let run = || {
            let injector = FaultInjector::new(faults.clone());
            (0..50)
                .map(|i| injector.decide(&format!("c{}", i % 10)))
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let injector = FaultInjector::new(Faults::new(1.0, vec![FaultKind::Gone], 1).unwrap());
        assert_eq!(injector.decide("x"), Some(FaultKind::Gone));
        assert_eq!(injector.decide("x"), Some(FaultKind::Gone));
    }
}
