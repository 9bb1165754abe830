//! What the bench measured and how it shows it: the report (`--json` or a
//! table), progress on stderr, and the memory and CPU readings from /proc.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Everything the bench measured; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Report {
    pub url: String,
    pub via: String,
    pub members: usize,
    pub connect_failures: usize,
    pub connect_secs: f64,
    pub connects_per_sec: f64,
    pub messages: usize,
    pub expected_deliveries: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub latency_ms: Latency,
    /// From the first publish to the last delivery.
    pub delivery_secs: f64,
    pub deliveries_per_sec: f64,
    pub gateway: Option<GatewayMemory>,
    /// With `--gateway-pid`: CPU cost per delivery.
    pub cpu: Option<CpuCost>,
    /// CPU time this process used while publishing and receiving, as a share of one
    /// core; near `cores * 100` means the bench, not the gateway, was the limit.
    pub bench_cpu_percent: f64,
    pub cores: usize,
}

/// CPU time spent per delivery while publishing: less sensitive than rates and
/// latencies to other work on a shared machine, so runs can be compared.
#[derive(Debug, Serialize)]
pub struct CpuCost {
    /// The gateway's CPU seconds from the first publish to the last delivery.
    pub gateway_secs: f64,
    /// The gateway's CPU use over that time, as a share of one core.
    pub gateway_percent: f64,
    /// Gateway CPU microseconds per delivery (the fan-out, @connections calls
    /// and WebSocket writes, all in the gateway process with `roomcast dev`).
    pub gateway_us_per_delivery: f64,
    /// The bench's own CPU microseconds per delivery (receiving and measuring).
    pub bench_us_per_delivery: f64,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct GatewayMemory {
    pub pid: u32,
    pub rss_before_mb: f64,
    pub rss_connected_mb: f64,
    pub peak_rss_mb: f64,
    /// (RSS with every member connected - RSS before) / members.
    pub kb_per_connection: f64,
}

/// Progress while members connect and deliveries arrive: a bar on a terminal,
/// a plain line every few seconds otherwise (logs of scripted runs).
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    position: std::cell::Cell<u64>,
    printed: std::cell::Cell<Option<Instant>>,
}

/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    pub(super) fn new(what: &'static str, total: u64, quiet: bool) -> Self {
        use std::io::IsTerminal as _;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            let template = format!("{what:>9} {{bar:40}} {{pos}}/{{len}} {{per_sec}} eta {{eta}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Self {
            bar,
            what,
            total: if quiet { 0 } else { total },
            position: std::cell::Cell::new(0),
            printed: std::cell::Cell::new(quiet.then(Instant::now)),
        }
    }

    pub(super) fn position(&self) -> u64 {
        self.position.get()
    }

    pub(super) fn set(&self, position: u64) {
        self.position.set(position);
        if let Some(bar) = &self.bar {
            bar.set_position(position);
            return;
        }
        let due = self
            .printed
            .get()
            .is_none_or(|at| at.elapsed() >= PLAIN_EVERY && self.total > 0);
        if due && self.total > 0 {
            self.printed.set(Some(Instant::now()));
            eprintln!("roomcast bench: {} {position}/{}", self.what, self.total);
        }
    }

    pub(super) fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.total > 0 => eprintln!(
                "roomcast bench: {} {}/{}",
                self.what,
                self.position(),
                self.total
            ),
            None => {}
        }
    }
}

/// (VmRSS, VmHWM) of `pid` in KiB, from /proc.
pub(super) fn memory(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss), Some(hwm)) => Ok((rss, hwm)),
        _ => bail!("no memory figures for process {pid}"),
    }
}

/// User plus system CPU seconds of a process (`self` or a PID; Linux /proc,
/// USER_HZ is 100).
pub(super) fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

pub(super) fn print_table(r: &Report) {
    let row = |name: &str, value: String| println!("  {name:<30} {value}");
    println!("roomcast bench: {} via {}", r.url, r.via);
    row(
        "members",
        format!("{} ({} failed)", r.members, r.connect_failures),
    );
    row(
        "connect rate",
        format!("{:.0}/s over {:.2} s", r.connects_per_sec, r.connect_secs),
    );
    row("messages", r.messages.to_string());
    row(
        "deliveries",
        format!(
            "{} of {} ({} lost)",
            r.deliveries, r.expected_deliveries, r.lost
        ),
    );
    row(
        "latency p50 / p90 / p99 / max",
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms",
            r.latency_ms.p50, r.latency_ms.p90, r.latency_ms.p99, r.latency_ms.max
        ),
    );
    row(
        "deliveries per second",
        format!("{:.0} over {:.3} s", r.deliveries_per_sec, r.delivery_secs),
    );
    if let Some(g) = &r.gateway {
        row(
            "gateway RSS",
            format!(
                "{:.1} MB before, {:.1} MB connected, {:.1} MB peak ({:.1} KB per connection)",
                g.rss_before_mb, g.rss_connected_mb, g.peak_rss_mb, g.kb_per_connection
            ),
        );
    }
    if let Some(c) = &r.cpu {
        row(
            "gateway CPU",
            format!(
                "{:.0}% of one core, {:.1} µs per delivery (bench: {:.1} µs)",
                c.gateway_percent, c.gateway_us_per_delivery, c.bench_us_per_delivery
            ),
        );
    }
    row(
        "bench CPU",
        format!(
            "{:.0}% of one core ({} cores)",
            r.bench_cpu_percent, r.cores
        ),
    );
}
