//! What roomcast counts, for operators (docs/operations.md): one [`Metrics`]
//! accumulator that handlers borrow from the [`crate::App`], and two ways out of it.
//!
//! - [`emf`]: a deployed function's invocation as one CloudWatch Embedded Metric
//!   Format line (the Lambda entry point drains the accumulator after each
//!   invocation: lambda_runtime runs one invocation at a time per process).
//! - [`prometheus`]: `roomcast dev`'s process-wide totals in the Prometheus text
//!   format, with a fan-out latency histogram and the gateway's gauges.
//!
//! Every counter is a [`Counter`], declared once in the `counters!` table, which
//! yields the enum, [`Counter::ALL`] and each counter's family. Its name is the
//! same on both sides: [`Counter::family`] plus, for labelled counters, one label. EMF names the metric
//! `family.value` (`frames.join`); Prometheus `roomcast_family_total{label="value"}`.

pub mod emf;
pub mod prometheus;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::fanout::FanoutStats;
use crate::names::route;
use crate::protocol::ErrorCode;

/// Declares every counter once, as `Variant => family, label;`: the table yields
/// the [`Counter`] enum, [`Counter::ALL`] and [`Counter::family`], so a counter
/// cannot be left out of the list the accumulator is sized by.
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $family:expr, $label:expr;)*) => {
        /// A counted event. Labelled families (refused handshakes, frames, errors,
        /// broadcasts) have one variant per label value so the accumulator is an array.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Counter {
            $($(#[$doc])* $variant,)*
        }

        impl Counter {
            /// Every counter, in the table's order.
            pub const ALL: [Self; [$(stringify!($variant)),*].len()] = [$(Self::$variant),*];

            /// The counter's family and, for labelled families, its label value.
            pub fn family(self) -> (Family, Option<&'static str>) {
                match self {
                    $(Self::$variant => ($family, $label),)*
                }
            }
        }
    };
}

counters! {
    Connects => CONNECTS, None;
    Disconnects => DISCONNECTS, None;
    /// A `$connect` handshake the authorizer refused: no token (401).
    RefusedNoToken => REFUSED, Some("no_token");
    /// A token that did not verify (403).
    RefusedBadToken => REFUSED, Some("bad_token");
    /// An `Origin` header the stage does not allow (403).
    RefusedOrigin => REFUSED, Some("origin");
    FrameJoin => FRAMES, Some(route::JOIN);
    FrameLeave => FRAMES, Some(route::LEAVE);
    FrameSend => FRAMES, Some(route::SEND);
    FramePing => FRAMES, Some(route::PING);
    FrameHistory => FRAMES, Some(route::HISTORY);
    FramePresence => FRAMES, Some(route::PRESENCE);
    /// A frame that did not parse (bad JSON, unknown action, too large).
    FrameInvalid => FRAMES, Some("invalid");
    ErrorBadRequest => ERRORS, Some(ErrorCode::BadRequest.as_str());
    ErrorUnknownAction => ERRORS, Some(ErrorCode::UnknownAction.as_str());
    ErrorNotMember => ERRORS, Some(ErrorCode::NotMember.as_str());
    ErrorTooLarge => ERRORS, Some(ErrorCode::TooLarge.as_str());
    ErrorForbidden => ERRORS, Some(ErrorCode::Forbidden.as_str());
    ErrorRateLimited => ERRORS, Some(ErrorCode::RateLimited.as_str());
    ErrorTokenExpired => ERRORS, Some(ErrorCode::TokenExpired.as_str());
    ErrorInternal => ERRORS, Some(ErrorCode::Internal.as_str());
    Fanouts => FANOUTS, None;
    FanoutRecipients => RECIPIENTS, None;
    FanoutDelivered => DELIVERED, None;
    FanoutGone => GONE, None;
    FanoutFailed => FAILED, None;
    FanoutThrottledRetries => THROTTLED, None;
    BroadcastRoom => BROADCASTS, Some("room");
    BroadcastUser => BROADCASTS, Some("user");
    BroadcastConnections => BROADCASTS, Some("connections");
    BroadcastAll => BROADCASTS, Some("all");
    /// Messages in the SQS batches the broadcast function received.
    SqsMessages => SQS_MESSAGES, None;
    /// Queued broadcasts dropped because a later one had the same conflation key.
    SqsConflated => SQS_CONFLATED, None;
    /// Broadcasts skipped as repeats of one already sent (same idempotency key).
    BroadcastRepeats => BROADCAST_REPEATS, None;
    /// Fan-out jobs handed to workers (one per shard of a big room's event).
    FanoutJobs => FANOUT_JOBS, None;
    /// Fan-out jobs a worker ran (repeats not included).
    FanoutJobsRun => FANOUT_JOBS_RUN, None;
}

/// A family of counters: its name, its label (if it has one) and its help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub label: Option<&'static str>,
    pub help: &'static str,
}

const CONNECTS: Family = Family::new(
    "connects",
    None,
    "WebSocket connections recorded by $connect.",
);
const DISCONNECTS: Family = Family::new("disconnects", None, "Connections removed by $disconnect.");
const REFUSED: Family = Family::new(
    "handshakes_refused",
    Some("reason"),
    "Handshakes the $connect authorizer refused, by reason.",
);
const FRAMES: Family = Family::new(
    "frames",
    Some("action"),
    "Client frames received, by action (invalid: did not parse).",
);
const ERRORS: Family = Family::new(
    "errors",
    Some("code"),
    "Error frames sent to clients, by code.",
);
const FANOUTS: Family = Family::new(
    "fanouts",
    None,
    "Fan-outs (a send or a broadcast to its recipients).",
);
const RECIPIENTS: Family =
    Family::new("fanout_recipients", None, "Connections fan-outs posted to.");
const DELIVERED: Family = Family::new("fanout_delivered", None, "Posts API Gateway accepted.");
const GONE: Family = Family::new(
    "fanout_gone",
    None,
    "Recipients found gone (410) and removed.",
);
const FAILED: Family = Family::new(
    "fanout_failed",
    None,
    "Posts that failed for good (413, 403, retries exhausted).",
);
const THROTTLED: Family = Family::new(
    "fanout_throttled_retries",
    None,
    "Posts retried after a 429 from @connections.",
);
const BROADCASTS: Family = Family::new(
    "broadcasts",
    Some("audience"),
    "Backend broadcast requests, by audience kind.",
);
const SQS_MESSAGES: Family = Family::new(
    "sqs_messages",
    None,
    "Messages in the SQS batches of the broadcast function (per invocation: the batch size).",
);
const SQS_CONFLATED: Family = Family::new(
    "sqs_conflated",
    None,
    "Queued broadcasts superseded by a later one with the same conflation key.",
);

const BROADCAST_REPEATS: Family = Family::new(
    "broadcast_repeats",
    None,
    "Broadcasts skipped as repeats (an SQS redelivery, or a reused idempotency key).",
);

const FANOUT_JOBS: Family = Family::new(
    "fanout_jobs",
    None,
    "Fan-out jobs handed to workers: one per shard of each event to a sharded room.",
);
const FANOUT_JOBS_RUN: Family = Family::new(
    "fanout_jobs_run",
    None,
    "Fan-out jobs workers ran (repeats skipped are not counted).",
);

/// A worker's posts per second, one value per job run.
pub const POSTS_PER_SEC: Family = Family::new(
    "fanout_posts_per_sec",
    None,
    "Posts per second of the last fan-out job a worker ran.",
);
/// The shard count of the room of each job run.
pub const SHARDS: Family = Family::new(
    "fanout_shards",
    None,
    "Shards of the room of the last fan-out job a worker ran.",
);

/// The fan-out duration: a histogram in Prometheus, one value per fan-out in EMF.
pub const FANOUT_MS: Family = Family::new(
    "fanout_ms",
    None,
    "Milliseconds from the start of a fan-out to its last post's outcome.",
);

/// Upper bounds (ms) of the fan-out latency histogram's buckets (`+Inf` follows).
pub const FANOUT_MS_BUCKETS: [u64; 13] =
    [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/// Most fan-out durations kept between two drains: EMF takes at most 100 values
/// per metric.
pub const MAX_SAMPLES: usize = 100;

impl Family {
    const fn new(name: &'static str, label: Option<&'static str>, help: &'static str) -> Self {
        Self { name, label, help }
    }
}

impl Counter {
    /// The EMF metric name: the family, then `.value` for labelled counters.
    pub fn emf_name(self) -> String {
        match self.family() {
            (family, None) => family.name.to_owned(),
            (family, Some(value)) => format!("{}.{value}", family.name),
        }
    }

    /// The error frame's counter.
    pub fn error(code: ErrorCode) -> Self {
        match code {
            ErrorCode::BadRequest => Self::ErrorBadRequest,
            ErrorCode::UnknownAction => Self::ErrorUnknownAction,
            ErrorCode::NotMember => Self::ErrorNotMember,
            ErrorCode::TooLarge => Self::ErrorTooLarge,
            ErrorCode::Forbidden => Self::ErrorForbidden,
            ErrorCode::RateLimited => Self::ErrorRateLimited,
            ErrorCode::TokenExpired => Self::ErrorTokenExpired,
            ErrorCode::Internal => Self::ErrorInternal,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The accumulator: lock-free counters and histogram buckets, plus the fan-out
/// durations since the last [`Metrics::drain`] (at most [`MAX_SAMPLES`]).
#[derive(Debug)]
pub struct Metrics {
    counters: [AtomicU64; Counter::ALL.len()],
    /// Fan-outs per bucket of [`FANOUT_MS_BUCKETS`], the last one `+Inf`.
    buckets: [AtomicU64; FANOUT_MS_BUCKETS.len() + 1],
    ms_sum: AtomicU64,
    samples: Mutex<Vec<u64>>,
    /// Each job run since the last drain: (posts per second, shard count).
    jobs: Mutex<Vec<(u64, u16)>>,
}

// By hand: `Default` is derived for arrays of at most 32 elements.
impl Default for Metrics {
    fn default() -> Self {
        Self {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            ms_sum: AtomicU64::new(0),
            samples: Mutex::default(),
            jobs: Mutex::default(),
        }
    }
}

/// The fan-out latency histogram at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Fan-outs per bucket (not cumulative), the last one `+Inf`.
    pub buckets: Vec<u64>,
    pub sum: u64,
}

impl Histogram {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound (ms) of the bucket holding quantile `q` of the fan-outs in
    /// `self` but not in `before`; `None` without fan-outs in between, `u64::MAX`
    /// for the `+Inf` bucket.
    pub fn quantile_since(&self, before: &Histogram, q: f64) -> Option<u64> {
        let delta: Vec<u64> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(before.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let total: u64 = delta.iter().sum();
        if total == 0 {
            return None;
        }
        // The rank of the quantile, 1-based: ceil(q * total).
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in delta.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(FANOUT_MS_BUCKETS.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

/// The counters (in [`Counter::ALL`] order), the histogram and the fan-out
/// durations, read or drained at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub counters: Vec<(Counter, u64)>,
    pub histogram: Histogram,
    pub fanout_ms: Vec<u64>,
    /// The jobs workers ran: (posts per second, shard count), at most
    /// [`MAX_SAMPLES`] between drains; `roomcast dev` keeps the last.
    pub jobs: Vec<(u64, u16)>,
}

impl Snapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, n)| *n)
    }
}

impl Metrics {
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    pub fn add(&self, counter: Counter, n: u64) {
        self.counters[counter.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts an error frame sent to a client.
    pub fn error(&self, code: ErrorCode) {
        self.incr(Counter::error(code));
    }

    /// Counts one fan-out: its recipients, outcomes, retries and duration.
    pub fn fanout(&self, stats: &FanoutStats) {
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        self.incr(Counter::Fanouts);
        self.add(Counter::FanoutRecipients, n(stats.recipients));
        self.add(Counter::FanoutDelivered, n(stats.delivered));
        self.add(Counter::FanoutGone, n(stats.gone));
        self.add(Counter::FanoutFailed, n(stats.failed));
        self.add(Counter::FanoutThrottledRetries, n(stats.throttled_retries));
        let bucket = FANOUT_MS_BUCKETS
            .iter()
            .position(|&bound| stats.ms <= bound)
            .unwrap_or(FANOUT_MS_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.ms_sum.fetch_add(stats.ms, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < MAX_SAMPLES {
            samples.push(stats.ms);
        }
    }

    /// Records a job a worker ran: its posts per second and its room's shards.
    pub fn worker(&self, posts_per_sec: u64, shards: u16) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() >= MAX_SAMPLES {
            // Keep the newest: `roomcast dev` never drains, and reports the last.
            jobs.remove(0);
        }
        jobs.push((posts_per_sec, shards));
    }

    /// The totals so far (`roomcast dev`'s `/metrics`).
    pub fn snapshot(&self) -> Snapshot {
        self.read(|a| a.load(Ordering::Relaxed), false)
    }

    /// The totals since the last drain, resetting them (one Lambda invocation's).
    pub fn drain(&self) -> Snapshot {
        self.read(|a| a.swap(0, Ordering::Relaxed), true)
    }

    fn read(&self, take: impl Fn(&AtomicU64) -> u64, reset: bool) -> Snapshot {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let fanout_ms = if reset {
            std::mem::take(&mut *samples)
        } else {
            samples.clone()
        };
        let jobs = {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            if reset {
                std::mem::take(&mut *jobs)
            } else {
                jobs.clone()
            }
        };
        Snapshot {
            jobs,
            counters: Counter::ALL
                .iter()
                .map(|&c| (c, take(&self.counters[c.index()])))
                .collect(),
            histogram: Histogram {
                buckets: self.buckets.iter().map(&take).collect(),
                sum: take(&self.ms_sum),
            },
            fanout_ms,
        }
    }
}
