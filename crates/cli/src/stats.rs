//! `roomcast dev --stats`: one summary line every [`INTERVAL`] for someone watching
//! the terminal, from the same counters `GET /metrics` serves.

use std::time::{Duration, Instant};

use roomcast_core::metrics::{Counter, Snapshot};
use roomcast_local::Gateway;
use tokio::task::JoinHandle;

pub const INTERVAL: Duration = Duration::from_secs(5);

/// Prints a line every `every` until aborted.
pub fn spawn(gateway: Gateway, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let metrics = &gateway.app().metrics;
        let mut before = metrics.snapshot();
        let mut at = Instant::now();
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let now = metrics.snapshot();
            let elapsed = at.elapsed();
            println!(
                "{}",
                line(gateway.connections().len(), &before, &now, elapsed)
            );
            before = now;
            at = Instant::now();
        }
    })
}

/// `connections 12 | frames/s 340.0 | deliveries/s 5100.0 | p99 fan-out <= 25 ms`:
/// rates between two snapshots `elapsed` apart; the p99 is the upper bound of its
/// histogram bucket.
fn line(connections: usize, before: &Snapshot, now: &Snapshot, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(f64::EPSILON);
    let delta = |counters: &[Counter]| -> u64 {
        counters
            .iter()
            .map(|&c| now.get(c).saturating_sub(before.get(c)))
            .sum()
    };
    let frames = delta(&[
        Counter::FrameJoin,
        Counter::FrameLeave,
        Counter::FrameSend,
        Counter::FramePing,
        Counter::FrameInvalid,
    ]);
    let delivered = delta(&[Counter::FanoutDelivered]);
    let p99 = match now.histogram.quantile_since(&before.histogram, 0.99) {
        None => "-".to_owned(),
        Some(u64::MAX) => "> 10000 ms".to_owned(),
        Some(ms) => format!("<= {ms} ms"),
    };
    format!(
        "connections {connections} | frames/s {:.1} | deliveries/s {:.1} | p99 fan-out {p99}",
        frames as f64 / secs,
        delivered as f64 / secs,
    )
}

#[cfg(test)]
mod tests {
    use roomcast_core::fanout::FanoutStats;
    use roomcast_core::metrics::Metrics;

    use super::*;

    #[test]
    fn a_line_reports_rates_and_the_p99_bucket() {
        let metrics = Metrics::default();
        let before = metrics.snapshot();
        for _ in 0..10 {
            metrics.incr(Counter::FrameSend);
        }
        for ms in [3, 4, 40] {
            metrics.fanout(&FanoutStats {
                recipients: 2,
                delivered: 2,
                ms,
                ..FanoutStats::default()
            });
        }
        let line = line(7, &before, &metrics.snapshot(), Duration::from_secs(2));
        assert_eq!(
            line,
            "connections 7 | frames/s 5.0 | deliveries/s 3.0 | p99 fan-out <= 50 ms"
        );
    }
}
