//! CloudWatch Embedded Metric Format: one JSON log line per invocation, which
//! CloudWatch Logs turns into metrics without an API call (research notes, EMF
//! specification: `_aws.Timestamp`, `_aws.CloudWatchMetrics[]` with `Namespace`,
//! `Dimensions` and at most 100 `Metrics`; each metric and dimension a root member).

use std::io::Write;

use serde_json::{Map, Value, json};

use super::{Counter, FANOUT_MS, POSTS_PER_SEC, SHARDS, Snapshot};

/// The CloudWatch namespace of roomcast's metrics.
pub const NAMESPACE: &str = "roomcast";
/// The one dimension: the API Gateway stage.
pub const STAGE_DIMENSION: &str = "Stage";
/// Most metrics one directive may name.
pub const MAX_METRICS: usize = 100;

/// Where EMF lines go: stdout in a deployed function, a buffer in tests.
pub trait EmfWriter: Send + Sync {
    fn write_line(&self, line: &str);
}

/// Lambda's stdout, which CloudWatch Logs reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stdout;

impl EmfWriter for Stdout {
    fn write_line(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // A lost metrics line must not fail the invocation.
        let _ = writeln!(out, "{line}");
    }
}

/// The EMF line of `snapshot` (the counters that moved, and the fan-out
/// durations); `None` when nothing was counted.
pub fn line(snapshot: &Snapshot, stage: &str, timestamp_ms: u64) -> Option<String> {
    let mut root = Map::new();
    let mut metrics = Vec::new();
    for &(counter, n) in &snapshot.counters {
        if n == 0 {
            continue;
        }
        let name = counter.emf_name();
        metrics.push(json!({"Name": name, "Unit": "Count"}));
        root.insert(name, json!(n));
    }
    if !snapshot.fanout_ms.is_empty() {
        metrics.push(json!({"Name": FANOUT_MS.name, "Unit": "Milliseconds"}));
        root.insert(FANOUT_MS.name.to_owned(), json!(snapshot.fanout_ms));
    }
    if !snapshot.jobs.is_empty() {
        let (rates, shards): (Vec<u64>, Vec<u16>) = snapshot.jobs.iter().copied().unzip();
        metrics.push(json!({"Name": POSTS_PER_SEC.name, "Unit": "Count/Second"}));
        root.insert(POSTS_PER_SEC.name.to_owned(), json!(rates));
        metrics.push(json!({"Name": SHARDS.name, "Unit": "Count"}));
        root.insert(SHARDS.name.to_owned(), json!(shards));
    }
    if metrics.is_empty() {
        return None;
    }
    // Counter::ALL plus one duration stays far below the limit; the guard keeps a
    // future counter from producing a line CloudWatch would reject whole.
    debug_assert!(Counter::ALL.len() < MAX_METRICS);
    metrics.truncate(MAX_METRICS);
    root.insert(STAGE_DIMENSION.to_owned(), json!(stage));
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[STAGE_DIMENSION]],
                "Metrics": metrics,
            }],
        }),
    );
    Some(Value::Object(root).to_string())
}
