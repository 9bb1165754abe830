//! `roomcast bench --mode joins`: joins and leaves into one room at a set rate.
//!
//! N connections open first (at `--rate`), then for `--duration-secs` a
//! scheduler starts `--joins-per-sec` join/leave cycles a second, each on an
//! idle connection: `join`, wait for its reply, `leave`, wait for its reply,
//! back to the idle pool. A cycle due while every connection is busy is counted
//! as not started (the connections, not the gateway, were then the limit).
//!
//! Every join and leave writes one membership item under the room's partition
//! key (`room#<room>`): against DynamoDB that key takes at most 1,000 write units
//! a second. With `--proxy URL` (scripts/ddb_throttle_proxy.py between
//! `roomcast dev` and dynalite) the report adds what the proxy counted for that
//! key, reset when the cycles start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};
use tokio_tungstenite::tungstenite::Message;

use super::client::{Endpoint, Open, Socket, http_get, open};
use super::report::{Progress, cpu_seconds};
use super::{BenchArgs, raise_fd_limit};

/// How long a join or leave may wait for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the join-rate run measured; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct JoinReport {
    pub url: String,
    pub room: String,
    pub connections: usize,
    pub connect_failures: usize,
    pub target_joins_per_sec: u32,
    pub duration_secs: f64,
    /// Cycles due while every connection was busy, so never sent.
    pub not_started: u64,
    pub joins: Outcomes,
    pub leaves: Outcomes,
    pub joins_per_sec: f64,
    pub acked_joins_per_sec: f64,
    /// Join request to its reply, milliseconds.
    pub join_latency_ms: super::Latency,
    /// CPU this process used during the cycles, as a share of one core.
    pub bench_cpu_percent: f64,
    pub gateway_cpu_percent: Option<f64>,
    pub cores: usize,
    pub proxy: Option<ProxyFigures>,
}

/// Replies to one kind of frame.
#[derive(Debug, Default, Serialize)]
pub struct Outcomes {
    pub attempted: u64,
    pub acked: u64,
    /// Error replies by code, and `timeout` / `closed` for no reply.
    pub errors: BTreeMap<String, u64>,
}

impl Outcomes {
    fn record(&mut self, outcome: Result<(), String>) {
        self.attempted += 1;
        match outcome {
            Ok(()) => self.acked += 1,
            Err(code) => *self.errors.entry(code).or_default() += 1,
        }
    }

    fn errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What the throttling proxy counted over the cycles.
#[derive(Debug, Serialize)]
pub struct ProxyFigures {
    pub requests: u64,
    pub throttled: u64,
    /// The room's partition key (of its first shard, in a room of several).
    pub room_key: String,
    pub room_requests: u64,
    pub room_throttled: u64,
    pub room_throttled_per_sec: f64,
    pub room_throttled_percent: f64,
    pub room_write_units_per_sec: f64,
    pub proxy_cpu_percent: f64,
    /// Each of the room's shard keys the proxy saw (`room#<room>` and
    /// `room#<room>#<shard>`, in key order): one in a room of one shard.
    pub shard_keys: Vec<KeyFigures>,
    /// The proxy's whole answer, hottest keys included.
    pub stats: Value,
}

/// What the proxy counted for one partition key.
#[derive(Debug, Serialize, PartialEq)]
pub struct KeyFigures {
    pub key: String,
    pub requests: u64,
    pub throttled: u64,
    pub write_units_per_sec: f64,
}

/// How many of the hottest keys the proxy is asked for: more than a room's most
/// shards (64), whose keys are by far the hottest in a joins run.
const KEYS_LISTED: usize = 100;

/// The run's shared counters.
#[derive(Default)]
struct Tally {
    joins: Outcomes,
    leaves: Outcomes,
    join_latency_us: Vec<u64>,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.connections() == 0 || args.joins_per_sec == 0 || args.duration_secs == 0 {
        bail!("--connections, --joins-per-sec and --duration-secs must be at least 1");
    }
    raise_fd_limit(args.connections());
    let endpoint = Endpoint::new(args);
    let (sockets, failures) = open(args, &endpoint, Open::Connect).await;
    if sockets.is_empty() {
        bail!("no connection opened to {}", args.url);
    }
    let connections = sockets.len();
    let proxy_before = match &args.proxy {
        Some(url) => Some(proxy_stats(url, true).await?),
        None => None,
    };
    let cpu_before = cpu_seconds("self");
    let gateway_before = args.gateway_pid.map(|pid| cpu_seconds(&pid.to_string()));
    let started = Instant::now();
    // The sockets stay open until the proxy has been read: closing them runs
    // `$disconnect`, whose requests are not the cycles'.
    let (tally, not_started, open_sockets) = cycles(args, sockets).await;
    let secs = started.elapsed().as_secs_f64();
    let bench_cpu_percent = 100.0 * (cpu_seconds("self") - cpu_before) / secs;
    let gateway_cpu_percent = args
        .gateway_pid
        .zip(gateway_before)
        .map(|(pid, before)| 100.0 * (cpu_seconds(&pid.to_string()) - before) / secs);
    let proxy = match (&args.proxy, proxy_before) {
        (Some(url), Some(before)) => Some(proxy_figures(
            args,
            &before,
            proxy_stats(url, false).await?,
            secs,
        )),
        _ => None,
    };
    drop(open_sockets);
    let tally = Arc::try_unwrap(tally).map_or_else(|_| Tally::default(), Mutex::into_inner);
    let report = JoinReport {
        url: args.url.clone(),
        room: args.room.clone(),
        connections,
        connect_failures: failures,
        target_joins_per_sec: args.joins_per_sec,
        duration_secs: secs,
        not_started,
        joins_per_sec: tally.joins.attempted as f64 / secs,
        acked_joins_per_sec: tally.joins.acked as f64 / secs,
        join_latency_ms: latency(&tally.join_latency_us)?,
        joins: tally.joins,
        leaves: tally.leaves,
        bench_cpu_percent,
        gateway_cpu_percent,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        proxy,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// Starts join/leave cycles at `--joins-per-sec` for `--duration-secs`, then
/// waits for the cycles under way. Returns the tally, the cycles not started
/// and the sockets still open.
async fn cycles(args: &BenchArgs, sockets: Vec<Socket>) -> (Arc<Mutex<Tally>>, u64, Vec<Socket>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<mpsc::Sender<()>>();
    let mut workers = Vec::with_capacity(sockets.len());
    for (n, socket) in sockets.into_iter().enumerate() {
        let (go_tx, go_rx) = mpsc::channel::<()>(1);
        let _ = idle_tx.send(go_tx);
        let worker = Worker {
            socket,
            room: args.room.clone(),
            next_id: n as u64 * 1_000_000,
            tally: Arc::clone(&tally),
        };
        workers.push(tokio::spawn(worker.run(go_rx, idle_tx.clone())));
    }
    drop(idle_tx);
    let rate = f64::from(args.joins_per_sec);
    let duration = Duration::from_secs(args.duration_secs);
    let bar = Progress::new("joins", (rate * duration.as_secs_f64()) as u64, args.json);
    let started = Instant::now();
    let (mut started_cycles, mut not_started) = (0u64, 0u64);
    let mut ticker = tokio::time::interval(Duration::from_millis(5));
    loop {
        ticker.tick().await;
        // Capped at the duration: the last pass makes the count exactly
        // rate x duration, however late it comes.
        let elapsed = started.elapsed().min(duration);
        let due = (elapsed.as_secs_f64() * rate) as u64;
        while started_cycles + not_started < due {
            match idle_rx.try_recv() {
                Ok(go) if go.try_send(()).is_ok() => started_cycles += 1,
                Ok(_) => {}
                Err(_) => not_started += 1,
            }
        }
        bar.set(started_cycles);
        if elapsed >= duration {
            break;
        }
    }
    bar.finish();
    // Dropping the idle senders ends each worker once its cycle is done.
    drop(idle_rx);
    let mut open = Vec::new();
    for worker in workers {
        if let Ok(socket) = worker.await {
            open.push(socket);
        }
    }
    (tally, not_started, open)
}

/// One connection: a join/leave cycle each time it is told to go.
struct Worker {
    socket: Socket,
    room: String,
    next_id: u64,
    tally: Arc<Mutex<Tally>>,
}

impl Worker {
    async fn run(
        mut self,
        mut go: mpsc::Receiver<()>,
        idle: mpsc::UnboundedSender<mpsc::Sender<()>>,
    ) -> Socket {
        while go.recv().await.is_some() {
            let sent = Instant::now();
            let joined = self.request("join").await;
            let join_us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
            let mut lost = is_lost(&joined);
            let left = if lost {
                None
            } else {
                let left = self.request("leave").await;
                lost = is_lost(&left);
                Some(left)
            };
            {
                let mut tally = self.tally.lock().await;
                tally.joins.record(joined);
                tally.join_latency_us.push(join_us);
                if let Some(left) = left {
                    tally.leaves.record(left);
                }
            }
            // The idle pool holds the only sender of the next cycle's channel:
            // once the scheduler drops the pool, an idle worker's wait ends.
            let (go_tx, go_rx) = mpsc::channel::<()>(1);
            go = go_rx;
            if lost || idle.send(go_tx).is_err() {
                break;
            }
        }
        self.socket
    }

    /// Sends `join` or `leave` and waits for the reply with its id: Ok on an
    /// ack, the error code otherwise.
    async fn request(&mut self, action: &str) -> Result<(), String> {
        self.next_id += 1;
        let id = self.next_id;
        let frame = json!({"action": action, "room": self.room, "id": id}).to_string();
        if self.socket.send(Message::text(frame)).await.is_err() {
            return Err("closed".into());
        }
        let wait = async {
            while let Some(frame) = self.socket.next().await {
                let Ok(Message::Text(text)) = frame else {
                    if frame.is_err() {
                        break;
                    }
                    continue;
                };
                let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if reply["id"] != id {
                    continue;
                }
                return match reply["type"].as_str() {
                    Some("ack") => Ok(()),
                    _ => Err(reply["code"].as_str().unwrap_or("error").to_string()),
                };
            }
            Err("closed".to_string())
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait)
            .await
            .unwrap_or_else(|_| Err("timeout".into()))
    }
}

/// No reply, or the connection is gone: the worker stops.
fn is_lost(outcome: &Result<(), String>) -> bool {
    matches!(outcome, Err(code) if code == "closed" || code == "timeout")
}

fn latency(us: &[u64]) -> anyhow::Result<super::Latency> {
    let mut h = Histogram::<u64>::new(3).context("histogram")?;
    for &v in us {
        h.record(v).context("histogram")?;
    }
    let ms = |v: u64| v as f64 / 1000.0;
    Ok(super::Latency {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    })
}

/// `GET <proxy>/stats` (with `?reset=1` to start counting afresh), as JSON.
async fn proxy_stats(url: &str, reset: bool) -> anyhow::Result<Value> {
    if !url.starts_with("http://") {
        bail!("--proxy must be an http:// URL");
    }
    let path = if reset {
        "/stats?reset=1".to_owned()
    } else {
        format!("/stats?top={KEYS_LISTED}")
    };
    let body = http_get(url, &path)
        .await
        .with_context(|| format!("cannot read the proxy's stats at {url}"))?;
    serde_json::from_str(&body).context("the proxy's /stats is not JSON")
}

/// The proxy's counts since the reset, the room's key picked out.
fn proxy_figures(args: &BenchArgs, before: &Value, stats: Value, secs: f64) -> ProxyFigures {
    let room_key = format!("room#{}", args.room);
    let room = stats["hottest"]
        .as_array()
        .and_then(|keys| {
            keys.iter()
                .find(|k| k["key"] == room_key.as_str() && k["index"].is_null())
        })
        .cloned()
        .unwrap_or(Value::Null);
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let room_requests = n(&room["requests"]);
    let room_throttled = n(&room["throttled"]);
    let cpu = stats["proxy_cpu_secs"].as_f64().unwrap_or(0.0)
        - before["proxy_cpu_secs"].as_f64().unwrap_or(0.0);
    ProxyFigures {
        requests: n(&stats["requests"]),
        throttled: n(&stats["throttled"]),
        room_key,
        room_requests,
        room_throttled,
        room_throttled_per_sec: room_throttled as f64 / secs,
        room_throttled_percent: if room_requests > 0 {
            100.0 * room_throttled as f64 / room_requests as f64
        } else {
            0.0
        },
        room_write_units_per_sec: room["write_units"].as_f64().unwrap_or(0.0) / secs,
        proxy_cpu_percent: 100.0 * cpu / secs,
        shard_keys: shard_keys(&args.room, &stats, secs),
        stats,
    }
}

/// The proxy's counts for each of `room`'s shard keys among the hottest.
fn shard_keys(room: &str, stats: &Value, secs: f64) -> Vec<KeyFigures> {
    let key = format!("room#{room}");
    let shard_prefix = format!("{key}#");
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let mut keys: Vec<KeyFigures> = stats["hottest"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| k["index"].is_null())
        .filter_map(|k| {
            let name = k["key"].as_str()?;
            (name == key || name.starts_with(&shard_prefix)).then(|| KeyFigures {
                key: name.to_owned(),
                requests: n(&k["requests"]),
                throttled: n(&k["throttled"]),
                write_units_per_sec: k["write_units"].as_f64().unwrap_or(0.0) / secs,
            })
        })
        .collect();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    keys
}

fn print_table(r: &JoinReport) {
    let row = |name: &str, value: String| println!("  {name:<30} {value}");
    println!("roomcast bench --mode joins: {} room {}", r.url, r.room);
    row(
        "connections",
        format!("{} ({} failed)", r.connections, r.connect_failures),
    );
    row(
        "target",
        format!(
            "{} joins/s for {:.1} s",
            r.target_joins_per_sec, r.duration_secs
        ),
    );
    let outcome = |o: &Outcomes| {
        format!(
            "{} attempted, {} acked, {} errors {:?}",
            o.attempted,
            o.acked,
            o.errors(),
            o.errors
        )
    };
    row("joins", outcome(&r.joins));
    row("leaves", outcome(&r.leaves));
    row("not started (all busy)", r.not_started.to_string());
    row(
        "join rate",
        format!(
            "{:.0}/s attempted, {:.0}/s acked",
            r.joins_per_sec, r.acked_joins_per_sec
        ),
    );
    let l = &r.join_latency_ms;
    row(
        "join latency p50/p90/p99/max",
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1} ms",
            l.p50, l.p90, l.p99, l.max
        ),
    );
    row(
        "bench CPU",
        format!(
            "{:.0}% of one core ({} cores)",
            r.bench_cpu_percent, r.cores
        ),
    );
    if let Some(g) = r.gateway_cpu_percent {
        row("gateway CPU", format!("{g:.0}% of one core"));
    }
    if let Some(p) = &r.proxy {
        print_proxy(p, &row);
    }
}

/// The proxy's counts: all requests, the room's first key, each shard key.
fn print_proxy(p: &ProxyFigures, row: &impl Fn(&str, String)) {
    row(
        "proxy requests",
        format!("{} ({} throttled)", p.requests, p.throttled),
    );
    row(
        &format!("key {}", p.room_key),
        format!(
            "{} requests, {} throttled ({:.1}%, {:.0}/s), {:.0} WCU/s accepted",
            p.room_requests,
            p.room_throttled,
            p.room_throttled_percent,
            p.room_throttled_per_sec,
            p.room_write_units_per_sec
        ),
    );
    if p.shard_keys.len() > 1 {
        for k in &p.shard_keys {
            row(
                &format!("shard key {}", k.key),
                format!(
                    "{} requests, {} throttled, {:.0} WCU/s accepted",
                    k.requests, k.throttled, k.write_units_per_sec
                ),
            );
        }
    }
    row(
        "proxy CPU",
        format!("{:.0}% of one core", p.proxy_cpu_percent),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_keys_are_the_rooms_keys_only() {
        let stats = serde_json::json!({"hottest": [
            {"key": "room#bench:room#2", "index": null, "requests": 8, "throttled": 1, "write_units": 8.0},
            {"key": "room#bench:room", "index": null, "requests": 10, "throttled": 0, "write_units": 10.0},
            {"key": "room#bench:room2", "index": null, "requests": 50, "throttled": 5, "write_units": 50.0},
            {"key": "room#bench:room#1", "index": "byConnection", "requests": 4, "throttled": 0, "write_units": 4.0},
            {"key": "conn#a=", "index": null, "requests": 3, "throttled": 0, "write_units": 3.0}
        ]});
        let keys = shard_keys("bench:room", &stats, 2.0);
        assert_eq!(
            keys,
            [
                KeyFigures {
                    key: "room#bench:room".into(),
                    requests: 10,
                    throttled: 0,
                    write_units_per_sec: 5.0
                },
                KeyFigures {
                    key: "room#bench:room#2".into(),
                    requests: 8,
                    throttled: 1,
                    write_units_per_sec: 4.0
                },
            ]
        );
    }
}
