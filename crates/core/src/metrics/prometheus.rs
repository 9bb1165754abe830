//! The Prometheus text exposition format 0.0.4 (`# HELP`, `# TYPE`, samples), for
//! `roomcast dev`'s `GET /metrics`.

use std::fmt::Write;

use super::{Counter, FANOUT_MS, FANOUT_MS_BUCKETS, POSTS_PER_SEC, SHARDS, Snapshot};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Every family's name starts with it.
pub const PREFIX: &str = "roomcast_";

/// A gauge the gateway reads when it is scraped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauge {
    /// The full name (conventional process gauges have no `roomcast_` prefix).
    pub name: &'static str,
    pub help: &'static str,
    pub value: f64,
}

/// The exposition of `snapshot` and `gauges`.
pub fn render(snapshot: &Snapshot, gauges: &[Gauge]) -> String {
    let mut out = String::new();
    let mut last_family = None;
    for &(counter, n) in &snapshot.counters {
        let (family, value) = counter.family();
        if last_family != Some(family.name) {
            last_family = Some(family.name);
            let _ = writeln!(out, "# HELP {PREFIX}{}_total {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {PREFIX}{}_total counter", family.name);
        }
        match (family.label, value) {
            (Some(label), Some(value)) => {
                let _ = writeln!(
                    out,
                    "{PREFIX}{}_total{{{label}=\"{value}\"}} {n}",
                    family.name
                );
            }
            _ => {
                let _ = writeln!(out, "{PREFIX}{}_total {n}", family.name);
            }
        }
    }
    let name = FANOUT_MS.name;
    let _ = writeln!(out, "# HELP {PREFIX}{name} {}", FANOUT_MS.help);
    let _ = writeln!(out, "# TYPE {PREFIX}{name} histogram");
    let histogram = &snapshot.histogram;
    let mut cumulative = 0;
    for (i, n) in histogram.buckets.iter().enumerate() {
        cumulative += n;
        let le = FANOUT_MS_BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), u64::to_string);
        let _ = writeln!(out, "{PREFIX}{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{PREFIX}{name}_sum {}", histogram.sum);
    let _ = writeln!(out, "{PREFIX}{name}_count {}", histogram.count());
    if let Some(&(rate, shards)) = snapshot.jobs.last() {
        for (family, value) in [(POSTS_PER_SEC, rate), (SHARDS, u64::from(shards))] {
            let _ = writeln!(out, "# HELP {PREFIX}{} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {PREFIX}{} gauge", family.name);
            let _ = writeln!(out, "{PREFIX}{} {value}", family.name);
        }
    }
    for gauge in gauges {
        let _ = writeln!(out, "# HELP {} {}", gauge.name, gauge.help);
        let _ = writeln!(out, "# TYPE {} gauge", gauge.name);
        let _ = writeln!(out, "{} {}", gauge.name, gauge.value);
    }
    out
}

/// The sample name and label of `counter` in the exposition, for tools that read
/// it back: (`roomcast_frames_total`, `("action", "join")`).
pub fn sample_name(counter: Counter) -> (String, Option<(&'static str, &'static str)>) {
    let (family, value) = counter.family();
    let name = format!("{PREFIX}{}_total", family.name);
    (name, family.label.zip(value))
}
