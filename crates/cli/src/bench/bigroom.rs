//! `roomcast bench --mode bigroom`: one event to a room of 100,000 or 1,000,000
//! members, on one machine. The room's members are mostly simulated
//! (`roomcast dev --simulated-members ROOM=N`: store records and counters, no
//! sockets); `--connections` real sockets join it too and check what a client
//! sees.
//!
//! The bench reads the room's simulated members from the gateway's
//! `GET /@simulated`, joins the real sockets, triggers `--messages` events (a
//! member's `send`, or the broadcast function with `--via broadcast`), and waits
//! until the simulated members have accepted every post and every real socket
//! every event, until nothing has arrived for [`STALL`] (a fan-out that gave up),
//! or `--drain-secs`. It reports the time from the first trigger to the last
//! accepted post beside the bound the `@connections` quota puts on it,
//! `(N + R) × E / rps`, and what was lost, repeated or out of order.
//!
//! The simulated counters are the gateway's since it started: run each
//! measurement against a fresh `roomcast dev`.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use futures::StreamExt;
use roomcast_local::simulated::RoomFigures;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::client::{Endpoint, Open, Publisher, Socket, http_get, open};
use super::report::{Progress, cpu_seconds, memory};
use super::{BenchArgs, EVENT, Server, raise_fd_limit};

/// With nothing more arriving for this long, the run ends.
const STALL: Duration = Duration::from_secs(5);
/// How often the gateway's figures are read while waiting.
const POLL: Duration = Duration::from_millis(100);

/// `GET /@simulated`.
#[derive(Debug, Deserialize)]
struct Simulated {
    management_rps: Option<f64>,
    rooms: Vec<RoomFigures>,
}

/// What the real sockets saw.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct RealFigures {
    pub sockets: usize,
    pub connect_failures: usize,
    /// Bench events received in all.
    pub received: u64,
    /// Events a socket did not get.
    pub lost: u64,
    /// Events a socket got again.
    pub duplicates: u64,
    /// Events that came after a later one.
    pub out_of_order: u64,
}

/// The gateway's cost over the run (`--gateway-pid`).
#[derive(Debug, Serialize)]
pub struct GatewayCost {
    pub pid: u32,
    pub cpu_secs: f64,
    pub cpu_percent: f64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

/// What the run measured; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct BigRoomReport {
    pub url: String,
    pub room: String,
    pub via: String,
    /// Simulated plus real members.
    pub members: u64,
    pub events: usize,
    /// (simulated + real members) × events.
    pub expected_posts: u64,
    /// Whether every post arrived before the run ended.
    pub complete: bool,
    /// From the first trigger to the last accepted post (simulated or real).
    pub fanout_secs: Option<f64>,
    /// The gateway's `--management-rps`, if it has a quota.
    pub quota_rps: Option<f64>,
    /// `expected_posts / quota_rps`: the least time the quota allows.
    pub quota_bound_secs: Option<f64>,
    /// `fanout_secs / quota_bound_secs`, when every post arrived.
    pub ratio_to_bound: Option<f64>,
    /// Posts not accepted, simulated and real.
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Every simulated member accepted each event once: its count of posts
    /// grew by exactly `events` (the only check of repeats in a room without
    /// history, whose frames carry no offset).
    pub simulated_exactly_once: bool,
    pub simulated: RoomFigures,
    pub real: RealFigures,
    /// `@connections` calls over the run, those answered 429 by the quota, and
    /// their share of the calls.
    pub management_calls: u64,
    pub throttled_429: u64,
    pub throttled_percent: f64,
    pub gateway: Option<GatewayCost>,
    pub bench_cpu_secs: f64,
    pub bench_cpu_percent: f64,
    pub cores: usize,
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.target != Server::Roomcast {
        bail!("--mode bigroom needs --target roomcast");
    }
    let base = http_base(&args.url)?;
    let simulated = simulated(&base).await?;
    let room = find_room(&simulated, &args.room)?;
    let connections = args.connections();
    raise_fd_limit(connections);
    let endpoint = Endpoint::new(args);
    let clock = Instant::now();
    let (stop, stop_rx) = watch::channel(false);
    let sockets = join_sockets(args, &endpoint, &stop_rx).await;
    let joined = sockets.readers.len();
    let members = (room.members + joined) as u64;
    let expected_posts = members * args.messages as u64;
    let calls_before = management_calls(&base).await?;
    let cpu_before = cpu_seconds("self");
    let gateway_before = args.gateway_pid.map(|pid| cpu_seconds(&pid.to_string()));
    let publisher = Publisher::open(args, &endpoint).await?;
    let started_ms = epoch_ms();
    for seq in 0..args.messages {
        publisher.publish(args, clock, seq).await?;
    }
    let target = room.posts_accepted + (room.members * args.messages) as u64;
    let (after, complete) = wait(args, &base, &sockets, target, joined).await?;
    let secs = clock.elapsed().as_secs_f64();
    let bench_cpu_secs = cpu_seconds("self") - cpu_before;
    let calls_after = management_calls(&base).await?;
    let _ = stop.send(true);
    let real_last_ms = sockets.last_ms.load(Ordering::Relaxed);
    let real = sockets.figures(args.messages, connections).await;
    drop(publisher);
    let report = report(Measured {
        args,
        room: after,
        before: room,
        real,
        real_last_ms,
        complete,
        started_ms,
        quota_rps: simulated.management_rps,
        calls: (
            calls_after.0 - calls_before.0,
            calls_after.1 - calls_before.1,
        ),
        gateway: gateway_cost(args, gateway_before, secs)?,
        bench_cpu_secs,
        secs,
        members,
        expected_posts,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// `http://HOST:PORT` of a `ws://HOST:PORT/STAGE` URL.
fn http_base(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("ws://")
        .context("--mode bigroom needs a ws:// URL of roomcast dev")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    Ok(format!("http://{authority}"))
}

async fn simulated(base: &str) -> anyhow::Result<Simulated> {
    let body = http_get(base, "/@simulated").await.context(
        "cannot read GET /@simulated: is --url a roomcast dev with --simulated-members?",
    )?;
    serde_json::from_str(&body).context("GET /@simulated is not the figures' JSON")
}

fn find_room(simulated: &Simulated, room: &str) -> anyhow::Result<RoomFigures> {
    match simulated.rooms.iter().find(|r| r.room == room) {
        Some(r) => Ok(r.clone()),
        None => bail!(
            "room {room:?} has no simulated members (the gateway has: {:?}); start roomcast dev \
             with --simulated-members {room}=N, or pass --room",
            simulated.rooms.iter().map(|r| &r.room).collect::<Vec<_>>()
        ),
    }
}

/// `roomcast_management_calls_total` and `roomcast_management_throttled_total`
/// from the gateway's `/metrics`.
async fn management_calls(base: &str) -> anyhow::Result<(u64, u64)> {
    let text = http_get(base, "/metrics").await?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    };
    Ok((
        value("roomcast_management_calls_total"),
        value("roomcast_management_throttled_total"),
    ))
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The real sockets: a reader task each, and the count of events received.
struct Sockets {
    readers: Vec<tokio::task::JoinHandle<Vec<usize>>>,
    received: Arc<AtomicU64>,
    /// Epoch milliseconds of the last event a real socket received.
    last_ms: Arc<AtomicU64>,
    failures: usize,
}

impl Sockets {
    /// Each socket's sequence numbers, checked against `events` sent.
    async fn figures(self, events: usize, asked: usize) -> RealFigures {
        let mut figures = RealFigures {
            sockets: self.readers.len(),
            connect_failures: self.failures.max(asked.saturating_sub(self.readers.len())),
            ..RealFigures::default()
        };
        for reader in self.readers {
            let seqs = reader.await.unwrap_or_default();
            figures.received += seqs.len() as u64;
            let mut seen = HashSet::new();
            let mut last = None;
            for &seq in &seqs {
                if !seen.insert(seq) {
                    figures.duplicates += 1;
                } else if last.is_some_and(|l| seq < l) {
                    figures.out_of_order += 1;
                }
                last = last.max(Some(seq));
            }
            figures.lost += (0..events).filter(|s| !seen.contains(s)).count() as u64;
        }
        figures
    }
}

/// Opens `--connections` sockets that join the room (at `--rate`), each read by a task.
async fn join_sockets(
    args: &BenchArgs,
    endpoint: &Endpoint,
    stop: &watch::Receiver<bool>,
) -> Sockets {
    let (sockets, failures) = open(args, endpoint, Open::Join).await;
    let received = Arc::new(AtomicU64::new(0));
    let last_ms = Arc::new(AtomicU64::new(0));
    let readers = sockets
        .into_iter()
        .map(|socket| {
            let (received, last_ms) = (Arc::clone(&received), Arc::clone(&last_ms));
            tokio::spawn(read(socket, received, last_ms, stop.clone()))
        })
        .collect();
    Sockets {
        readers,
        received,
        last_ms,
        failures,
    }
}

/// Reads one socket's bench events until told to stop: their `seq`s, in arrival order.
async fn read(
    socket: Socket,
    received: Arc<AtomicU64>,
    last_ms: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Vec<usize> {
    let (_sink, mut stream) = socket.split();
    let mut seqs = Vec::new();
    loop {
        tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let Some(seq) = bench_seq(&text) {
                        seqs.push(seq);
                        received.fetch_add(1, Ordering::Relaxed);
                        last_ms.fetch_max(epoch_ms(), Ordering::Relaxed);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            _ = stop.changed() => break,
        }
    }
    seqs
}

/// The `seq` of a bench event.
fn bench_seq(text: &str) -> Option<usize> {
    #[derive(Deserialize)]
    struct Frame {
        #[serde(rename = "type")]
        kind: String,
        event: String,
        data: Data,
    }
    #[derive(Deserialize)]
    struct Data {
        seq: usize,
    }
    let frame: Frame = serde_json::from_str(text).ok()?;
    (frame.kind == "event" && frame.event == EVENT).then_some(frame.data.seq)
}

/// Waits until the simulated room has accepted `target` posts in all and the real
/// sockets every event, nothing arrived for [`STALL`], or `--drain-secs` passed.
/// Returns the room's last figures and whether everything arrived.
async fn wait(
    args: &BenchArgs,
    base: &str,
    sockets: &Sockets,
    target: u64,
    joined: usize,
) -> anyhow::Result<(RoomFigures, bool)> {
    let real_target = (joined * args.messages) as u64;
    let bar = Progress::new("posts", target, args.json);
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    let (mut progress, mut moved) = ((0, 0), Instant::now());
    loop {
        let room = find_room(&simulated(base).await?, &args.room)?;
        let real = sockets.received.load(Ordering::Relaxed);
        bar.set(room.posts_accepted);
        let complete = room.posts_accepted >= target && real >= real_target;
        if (room.posts_accepted, real) != progress {
            progress = (room.posts_accepted, real);
            moved = Instant::now();
        }
        if complete || moved.elapsed() >= STALL || Instant::now() >= deadline {
            bar.finish();
            return Ok((room, complete));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn gateway_cost(
    args: &BenchArgs,
    cpu_before: Option<f64>,
    secs: f64,
) -> anyhow::Result<Option<GatewayCost>> {
    let (Some(pid), Some(before)) = (args.gateway_pid, cpu_before) else {
        return Ok(None);
    };
    let cpu_secs = cpu_seconds(&pid.to_string()) - before;
    let (rss, peak) = memory(pid)?;
    Ok(Some(GatewayCost {
        pid,
        cpu_secs,
        cpu_percent: 100.0 * cpu_secs / secs,
        rss_mb: rss / 1024.0,
        peak_rss_mb: peak / 1024.0,
    }))
}

/// Everything [`report`] reads.
struct Measured<'a> {
    args: &'a BenchArgs,
    room: RoomFigures,
    before: RoomFigures,
    real: RealFigures,
    /// Epoch milliseconds of the last event a real socket received (0: none).
    real_last_ms: u64,
    complete: bool,
    started_ms: u64,
    quota_rps: Option<f64>,
    calls: (u64, u64),
    gateway: Option<GatewayCost>,
    bench_cpu_secs: f64,
    secs: f64,
    members: u64,
    expected_posts: u64,
}

fn report(m: Measured<'_>) -> BigRoomReport {
    let args = m.args;
    let simulated_posts = m.room.posts_accepted - m.before.posts_accepted;
    let simulated_expected = (m.room.members * args.messages) as u64;
    let last_ms = m
        .room
        .last_post_ms
        .max(Some(m.real_last_ms))
        .filter(|&t| t > 0);
    let per_member = m.before.max_per_member + args.messages as u64;
    let exactly_once = m.room.min_per_member == per_member && m.room.max_per_member == per_member;
    let fanout_secs = last_ms.map(|t| t.saturating_sub(m.started_ms) as f64 / 1000.0);
    let quota_bound_secs = m.quota_rps.map(|rps| m.expected_posts as f64 / rps);
    let (calls, throttled) = m.calls;
    BigRoomReport {
        url: args.url.clone(),
        room: args.room.clone(),
        via: format!("{:?}", args.via).to_lowercase(),
        members: m.members,
        events: args.messages,
        expected_posts: m.expected_posts,
        complete: m.complete,
        fanout_secs,
        quota_rps: m.quota_rps,
        quota_bound_secs,
        ratio_to_bound: fanout_secs
            .zip(quota_bound_secs)
            .filter(|_| m.complete)
            .map(|(s, b)| s / b),
        lost: simulated_expected.saturating_sub(simulated_posts) + m.real.lost,
        duplicates: m.room.repeats + m.real.duplicates,
        out_of_order: m.room.out_of_order + m.real.out_of_order,
        simulated_exactly_once: exactly_once,
        simulated: m.room,
        real: m.real,
        management_calls: calls,
        throttled_429: throttled,
        throttled_percent: if calls > 0 {
            100.0 * throttled as f64 / calls as f64
        } else {
            0.0
        },
        gateway: m.gateway,
        bench_cpu_secs: m.bench_cpu_secs,
        bench_cpu_percent: 100.0 * m.bench_cpu_secs / m.secs,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

fn print_table(r: &BigRoomReport) {
    let row = |name: &str, value: String| println!("  {name:<30} {value}");
    println!("roomcast bench --mode bigroom: {} room {}", r.url, r.room);
    row(
        "members",
        format!(
            "{} ({} simulated, {} real sockets, {} failed)",
            r.members, r.simulated.members, r.real.sockets, r.real.connect_failures
        ),
    );
    row("events", format!("{} via {}", r.events, r.via));
    row(
        "posts",
        format!("{} expected, complete: {}", r.expected_posts, r.complete),
    );
    let secs = |s: Option<f64>| s.map_or("-".to_owned(), |s| format!("{s:.2} s"));
    row("first trigger to last post", secs(r.fanout_secs));
    if let Some(rps) = r.quota_rps {
        row(
            "quota bound",
            format!(
                "{} at {rps}/s (ratio {})",
                secs(r.quota_bound_secs),
                r.ratio_to_bound
                    .map_or("-".to_owned(), |x| format!("{x:.2}"))
            ),
        );
    }
    row(
        "lost / duplicates / out of order",
        format!("{} / {} / {}", r.lost, r.duplicates, r.out_of_order),
    );
    let s = &r.simulated;
    row(
        "simulated per member",
        format!(
            "min {} max {} (exactly once: {})",
            s.min_per_member, s.max_per_member, r.simulated_exactly_once
        ),
    );
    row(
        "real sockets",
        format!(
            "{} received, {} lost, {} duplicates, {} out of order",
            r.real.received, r.real.lost, r.real.duplicates, r.real.out_of_order
        ),
    );
    row(
        "429s (quota)",
        format!(
            "{} of {} @connections calls ({:.1}%)",
            r.throttled_429, r.management_calls, r.throttled_percent
        ),
    );
    if let Some(g) = &r.gateway {
        row(
            "gateway",
            format!(
                "{:.1} CPU s ({:.0}% of one core), RSS {:.0} MB (peak {:.0} MB)",
                g.cpu_secs, g.cpu_percent, g.rss_mb, g.peak_rss_mb
            ),
        );
    }
    row(
        "bench CPU",
        format!(
            "{:.1} s ({:.0}% of one core, {} cores)",
            r.bench_cpu_secs, r.bench_cpu_percent, r.cores
        ),
    );
}
