//! `roomcast bench`: a load generator for any roomcast WebSocket URL.
//!
//! It opens N member connections at a set rate and joins them to one room, then
//! publishes M events, through a member's `send` or through the broadcast function,
//! and measures each delivery from publish to receipt. Publisher and receivers live
//! in this one process, so every latency is read off one monotonic clock, locally
//! or against a deployed stage.
//!
//! The bench's own CPU use is reported beside the results: a load generator that
//! saturates its cores measures itself, not the gateway.
//!
//! `--target socketio` drives a Socket.io 4 server (bench/socketio/server.js)
//! with the same client design: Engine.IO v4 over a raw WebSocket (answering the
//! server's `2` pings with `3`), `40` to connect the namespace, `42["join",room]`
//! with an ack, and a publisher emitting `42["publish",room,data]`, which the
//! server sends to the room as `42["event",data]`. Deliveries are timestamped
//! the same way on both, so the two servers can be compared side by side.
//!
//! `--mode joins` measures something else: connections joining and leaving one
//! room at a set rate, each join and leave a write under the room's partition
//! key (`joins`).
//!
//! `--mode bigroom` sends events into a room of `roomcast dev`'s simulated
//! members plus a few real sockets, and counts every post (`bigroom`).
//!
//! `client` holds the connections, `socketio` the Engine.IO packets, `report`
//! the results and progress, `joins` the join-rate mode, `bigroom` the big-room
//! mode; this file the options and the delivery run.

mod bigroom;
mod client;
mod joins;
mod report;
mod socketio;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use client::{Endpoint, Publisher, bench_timestamp, micros};
pub use report::{CpuCost, GatewayMemory, Latency, Report};
use report::{Progress, cpu_seconds, memory, print_table};

/// The event name bench messages carry, so other traffic in the room is ignored.
const EVENT: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// A member connection sends with `{"action":"send"}`.
    Send,
    /// The broadcast function is invoked (roomcast dev's Lambda endpoint or AWS).
    Broadcast,
}

/// What the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Members join a room, events are published to it, deliveries are timed.
    Deliveries,
    /// Connections join and leave one room at --joins-per-sec for --duration-secs.
    Joins,
    /// Events into a room of roomcast dev's simulated members (--simulated-members)
    /// plus --connections real sockets: every post counted, timed against the
    /// @connections quota.
    Bigroom,
}

/// The server the bench drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Server {
    /// roomcast: roomcast dev or a deployed stage.
    Roomcast,
    /// A Socket.io 4 server with `join` and `publish` events (bench/socketio);
    /// `--url` is its base URL, e.g. ws://127.0.0.1:3400.
    Socketio,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// WebSocket URL of the gateway: roomcast dev or a deployed stage.
    #[arg(long, default_value = "ws://127.0.0.1:3001/local")]
    url: String,
    /// What serves --url.
    #[arg(long, value_enum, default_value_t = Server::Roomcast)]
    target: Server,
    /// Member connections to open (the publisher for --via send comes on top);
    /// default 1000, with --mode bigroom 50.
    #[arg(long)]
    connections: Option<usize>,
    /// New connections per second (API Gateway's default quota is 500/s per account).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// The room the members join.
    #[arg(long, default_value = "bench:room")]
    room: String,
    /// Events to publish.
    #[arg(long, default_value_t = 10)]
    messages: usize,
    /// Pause between publishes, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Bytes of padding in each event's data.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// How events are published.
    #[arg(long, value_enum, default_value_t = Via::Send)]
    via: Via,
    /// Lambda endpoint for --via broadcast (roomcast dev: http://127.0.0.1:3001);
    /// without it the AWS SDK resolves credentials and region as usual.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// The broadcast function's name for --via broadcast.
    #[arg(long, env = "ROOMCAST_BROADCAST_FUNCTION", default_value = "broadcast")]
    function: String,
    /// Seconds to wait for outstanding deliveries after the last publish.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    /// Hold the connections open this many seconds before publishing (idle-memory runs).
    #[arg(long, default_value_t = 0)]
    hold_secs: u64,
    /// PID of a local gateway (roomcast dev) whose memory to report.
    #[arg(long)]
    gateway_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Deliveries)]
    mode: Mode,
    /// --mode joins: join/leave cycles started per second, over all connections.
    #[arg(long, default_value_t = 1000)]
    joins_per_sec: u32,
    /// --mode joins: how long to keep starting cycles.
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// --mode joins: base URL of scripts/ddb_throttle_proxy.py in front of the
    /// gateway's DynamoDB; its counts for the room's key are reported.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
}

impl BenchArgs {
    /// `--connections`, or the mode's default.
    fn connections(&self) -> usize {
        self.connections.unwrap_or(match self.mode {
            Mode::Bigroom => 50,
            Mode::Deliveries | Mode::Joins => 1000,
        })
    }
}

/// What one member task hands back at the end: its latencies in microseconds,
/// merged into one histogram at the end. (A histogram per member cost a
/// zero-filled counts array on its first record: 10,000 of those made the
/// bench's CPU per delivery 3-4 times higher on the first message.)
struct Received {
    latencies_us: Vec<u64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.mode == Mode::Bigroom {
        return bigroom::run(&args).await;
    }
    if args.mode == Mode::Joins {
        if args.target != Server::Roomcast {
            bail!("--mode joins needs --target roomcast");
        }
        return joins::run(&args).await;
    }
    if args.connections() == 0 {
        bail!("--connections must be at least 1");
    }
    if args.target == Server::Socketio && args.via == Via::Broadcast {
        bail!("--via broadcast needs --target roomcast");
    }
    let endpoint = Endpoint::new(&args);
    raise_fd_limit(args.connections());
    let clock = Instant::now();
    let rss_before = gateway_rss(&args)?;

    // Phase 1: members connect at the set rate and join the room.
    let mut members = connect_members(&args, &endpoint, clock).await;
    let joined = args.connections() - members.failures.len();
    if let Some(first) = members.failures.first() {
        eprintln!(
            "roomcast bench: {} of {} connections failed; first: {first}",
            members.failures.len(),
            args.connections()
        );
    }
    if joined == 0 {
        bail!("no member connected to {}", args.url);
    }
    let rss_connected = gateway_rss(&args)?;
    if args.hold_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }

    // Phase 2: publish, and wait for the deliveries.
    let published = publish(&args, &endpoint, clock, &members, joined).await?;
    let _ = members.stop.send(true);
    let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
    for member in std::mem::take(&mut members.tasks) {
        if let Ok(Some(received)) = member.await {
            for latency in received.latencies_us {
                histogram.record(latency).context("histogram")?;
            }
        }
    }
    let gateway = match (args.gateway_pid, rss_before, rss_connected) {
        (Some(pid), Some(before), Some(connected)) => Some(GatewayMemory {
            pid,
            rss_before_mb: before / 1024.0,
            rss_connected_mb: connected / 1024.0,
            peak_rss_mb: memory(pid)?.1 / 1024.0,
            kb_per_connection: (connected - before) / joined as f64,
        }),
        _ => None,
    };
    let report = report(&args, &members, &published, joined, &histogram, gateway);
    drop(published.publisher);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
}

/// The gateway's resident memory now, with `--gateway-pid`.
fn gateway_rss(args: &BenchArgs) -> anyhow::Result<Option<f64>> {
    args.gateway_pid
        .map(|pid| memory(pid).map(|m| m.0))
        .transpose()
}

/// The member connections, once each has joined or failed to.
struct Members {
    tasks: Vec<tokio::task::JoinHandle<Option<Received>>>,
    delivered: Arc<AtomicU64>,
    last_delivery_us: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
    failures: Vec<String>,
    connect_secs: f64,
}

/// Connects `--connections` members at `--rate` and waits until each has joined
/// the room or failed to.
async fn connect_members(args: &BenchArgs, endpoint: &Endpoint, clock: Instant) -> Members {
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery_us = Arc::new(AtomicU64::new(0));
    let (stop, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let bar = Progress::new("connected", args.connections() as u64, args.json);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections());
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    for _ in 0..args.connections() {
        ticker.tick().await;
        let member = Member {
            endpoint: endpoint.clone(),
            clock,
            delivered: Arc::clone(&delivered),
            last_delivery_us: Arc::clone(&last_delivery_us),
            stop: stop_rx.clone(),
            ready: ready_tx.clone(),
        };
        tasks.push(tokio::spawn(member.run()));
    }
    drop(ready_tx);
    let mut failures = Vec::new();
    for _ in 0..args.connections() {
        match ready_rx.recv().await {
            Some(Ok(())) => bar.set(bar.position() + 1),
            Some(Err(e)) => failures.push(e),
            None => break,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    bar.finish();
    Members {
        tasks,
        delivered,
        last_delivery_us,
        stop,
        failures,
        connect_secs,
    }
}

/// What publishing cost, and when it started.
struct Published {
    publisher: Publisher,
    publish_started_us: u64,
    expected: u64,
    cpu_used: f64,
    gateway_cpu: Option<f64>,
    busy_secs: f64,
}

/// Publishes `--messages` and waits (at most `--drain-secs`) for every delivery.
async fn publish(
    args: &BenchArgs,
    endpoint: &Endpoint,
    clock: Instant,
    members: &Members,
    joined: usize,
) -> anyhow::Result<Published> {
    let cpu_before = cpu_seconds("self");
    let gateway_cpu_before = args.gateway_pid.map(|pid| cpu_seconds(&pid.to_string()));
    let publish_started_us = micros(clock);
    let publisher = Publisher::open(args, endpoint).await?;
    for seq in 0..args.messages {
        publisher.publish(args, clock, seq).await?;
        if args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    }
    let expected = (joined * args.messages) as u64;
    let bar = Progress::new("delivered", expected, args.json);
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
    let delivered = &members.delivered;
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        bar.set(delivered.load(Ordering::Relaxed));
    }
    bar.finish();
    let cpu_used = cpu_seconds("self") - cpu_before;
    let gateway_cpu = args
        .gateway_pid
        .zip(gateway_cpu_before)
        .map(|(pid, before)| cpu_seconds(&pid.to_string()) - before);
    let busy_secs = (micros(clock) - publish_started_us) as f64 / 1e6;
    Ok(Published {
        publisher,
        publish_started_us,
        expected,
        cpu_used,
        gateway_cpu,
        busy_secs,
    })
}

/// The run's report from what was measured.
fn report(
    args: &BenchArgs,
    members: &Members,
    published: &Published,
    joined: usize,
    histogram: &Histogram<u64>,
    gateway: Option<GatewayMemory>,
) -> Report {
    let deliveries = members.delivered.load(Ordering::Relaxed);
    let last = members.last_delivery_us.load(Ordering::Relaxed);
    let delivery_secs = last.saturating_sub(published.publish_started_us) as f64 / 1e6;
    let ms = |us: u64| us as f64 / 1000.0;
    let busy_secs = published.busy_secs;
    let cpu_used = published.cpu_used;
    let percent_of_busy = |secs: f64| {
        if busy_secs > 0.0 {
            100.0 * secs / busy_secs
        } else {
            0.0
        }
    };
    Report {
        url: args.url.clone(),
        via: format!("{:?}", args.via).to_lowercase(),
        members: joined,
        connect_failures: members.failures.len(),
        connect_secs: members.connect_secs,
        connects_per_sec: joined as f64 / members.connect_secs,
        messages: args.messages,
        expected_deliveries: published.expected,
        deliveries,
        lost: published.expected.saturating_sub(deliveries),
        latency_ms: Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        },
        delivery_secs,
        deliveries_per_sec: if delivery_secs > 0.0 {
            deliveries as f64 / delivery_secs
        } else {
            0.0
        },
        gateway,
        cpu: published
            .gateway_cpu
            .filter(|_| deliveries > 0)
            .map(|secs| CpuCost {
                gateway_secs: secs,
                gateway_percent: percent_of_busy(secs),
                gateway_us_per_delivery: 1e6 * secs / deliveries as f64,
                bench_us_per_delivery: 1e6 * cpu_used / deliveries as f64,
            }),
        bench_cpu_percent: percent_of_busy(cpu_used),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// One member connection: joins, then records every bench event's latency.
struct Member {
    endpoint: Endpoint,
    clock: Instant,
    delivered: Arc<AtomicU64>,
    last_delivery_us: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
    ready: mpsc::UnboundedSender<Result<(), String>>,
}

impl Member {
    async fn run(mut self) -> Option<Received> {
        let socket = match self.endpoint.join().await {
            Ok(socket) => {
                let _ = self.ready.send(Ok(()));
                socket
            }
            Err(e) => {
                let _ = self.ready.send(Err(e.to_string()));
                return None;
            }
        };
        let (mut sink, mut stream) = socket.split();
        let server = self.endpoint.server;
        let mut latencies_us = Vec::new();
        loop {
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if server == Server::Socketio && text.as_str() == socketio::PING {
                            let _ = sink.send(Message::text(socketio::PONG)).await;
                        } else if let Some(sent_us) = bench_timestamp(server, &text) {
                            let now = micros(self.clock);
                            latencies_us.push(now.saturating_sub(sent_us));
                            self.delivered.fetch_add(1, Ordering::Relaxed);
                            self.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break,
                },
                _ = self.stop.changed() => break,
            }
        }
        Some(Received { latencies_us })
    }
}

/// Lets one process hold many sockets: the soft open-files limit up to the hard one.
fn raise_fd_limit(connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < connections as u64 + 64 => eprintln!(
            "roomcast bench: the open-files limit is {limit}; {connections} connections may fail (raise it with ulimit -n)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("roomcast bench: cannot raise the open-files limit: {e}"),
    }
}
