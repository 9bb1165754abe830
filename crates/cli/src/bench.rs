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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use roomcast_client::{Broadcast, Broadcaster, Target};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

/// The event name bench messages carry, so other traffic in the room is ignored.
const EVENT: &str = "bench";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// A member connection sends with `{"action":"send"}`.
    Send,
    /// The broadcast function is invoked (roomcast dev's Lambda endpoint or AWS).
    Broadcast,
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
    /// Member connections to open (the publisher for --via send comes on top).
    #[arg(long, default_value_t = 1000)]
    connections: usize,
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
}

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

/// What one member task hands back at the end: its latencies in microseconds,
/// merged into one histogram at the end. (A histogram per member cost a
/// zero-filled counts array on its first record: 10,000 of those made the
/// bench's CPU per delivery 3-4 times higher on the first message.)
struct Received {
    latencies_us: Vec<u64>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    if args.target == Server::Socketio && args.via == Via::Broadcast {
        bail!("--via broadcast needs --target roomcast");
    }
    let endpoint = Endpoint::new(&args);
    raise_fd_limit(args.connections);
    let clock = Instant::now();
    let rss_before = args
        .gateway_pid
        .map(|pid| memory(pid).map(|m| m.0))
        .transpose()?;

    // Phase 1: members connect at the set rate and join the room.
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery_us = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let bar = Progress::new("connected", args.connections as u64, args.json);
    let started = Instant::now();
    let mut members = Vec::with_capacity(args.connections);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    for _ in 0..args.connections {
        ticker.tick().await;
        let member = Member {
            endpoint: endpoint.clone(),
            clock,
            delivered: Arc::clone(&delivered),
            last_delivery_us: Arc::clone(&last_delivery_us),
            stop: stop_rx.clone(),
            ready: ready_tx.clone(),
        };
        members.push(tokio::spawn(member.run()));
    }
    drop(ready_tx);
    let mut failures = Vec::new();
    for _ in 0..args.connections {
        match ready_rx.recv().await {
            Some(Ok(())) => bar.set(bar.position() + 1),
            Some(Err(e)) => failures.push(e),
            None => break,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    bar.finish();
    let joined = args.connections - failures.len();
    if let Some(first) = failures.first() {
        eprintln!(
            "roomcast bench: {} of {} connections failed; first: {first}",
            failures.len(),
            args.connections
        );
    }
    if joined == 0 {
        bail!("no member connected to {}", args.url);
    }
    let rss_connected = args
        .gateway_pid
        .map(|pid| memory(pid).map(|m| m.0))
        .transpose()?;
    if args.hold_secs > 0 {
        tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    }

    // Phase 2: publish, and wait for the deliveries.
    let cpu_before = cpu_seconds("self");
    let gateway_cpu_before = args.gateway_pid.map(|pid| cpu_seconds(&pid.to_string()));
    let publish_started_us = micros(clock);
    let publisher = Publisher::open(&args, &endpoint).await?;
    for seq in 0..args.messages {
        publisher.publish(&args, clock, seq).await?;
        if args.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
        }
    }
    let expected = (joined * args.messages) as u64;
    let bar = Progress::new("delivered", expected, args.json);
    let deadline = Instant::now() + Duration::from_secs(args.drain_secs);
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
    let _ = stop_tx.send(true);

    let mut histogram = Histogram::<u64>::new(3).context("histogram")?;
    for member in members {
        if let Ok(Some(received)) = member.await {
            for latency in received.latencies_us {
                histogram.record(latency).context("histogram")?;
            }
        }
    }
    let deliveries = delivered.load(Ordering::Relaxed);
    let last = last_delivery_us.load(Ordering::Relaxed);
    let delivery_secs = last.saturating_sub(publish_started_us) as f64 / 1e6;
    let ms = |us: u64| us as f64 / 1000.0;
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let report = Report {
        url: args.url.clone(),
        via: format!("{:?}", args.via).to_lowercase(),
        members: joined,
        connect_failures: failures.len(),
        connect_secs,
        connects_per_sec: joined as f64 / connect_secs,
        messages: args.messages,
        expected_deliveries: expected,
        deliveries,
        lost: expected.saturating_sub(deliveries),
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
        cpu: gateway_cpu.filter(|_| deliveries > 0).map(|secs| CpuCost {
            gateway_secs: secs,
            gateway_percent: if busy_secs > 0.0 {
                100.0 * secs / busy_secs
            } else {
                0.0
            },
            gateway_us_per_delivery: 1e6 * secs / deliveries as f64,
            bench_us_per_delivery: 1e6 * cpu_used / deliveries as f64,
        }),
        bench_cpu_percent: if busy_secs > 0.0 {
            100.0 * cpu_used / busy_secs
        } else {
            0.0
        },
        cores,
    };
    drop(publisher);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
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

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where members connect and what they join.
#[derive(Debug, Clone)]
struct Endpoint {
    server: Server,
    /// The WebSocket URL (for Socket.io, with its Engine.IO path and query).
    url: Arc<str>,
    room: Arc<str>,
}

impl Endpoint {
    fn new(args: &BenchArgs) -> Self {
        let url = match args.target {
            Server::Socketio if !args.url.contains("/socket.io/") => format!(
                "{}/socket.io/?EIO=4&transport=websocket",
                args.url.trim_end_matches('/')
            ),
            _ => args.url.clone(),
        };
        Self {
            server: args.target,
            url: url.into(),
            room: args.room.as_str().into(),
        }
    }

    /// A connection, ready for events (for Socket.io: its namespace connected).
    async fn connect(&self) -> anyhow::Result<Socket> {
        let url = &*self.url;
        let (mut socket, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true)
                .await
                .with_context(|| format!("cannot connect to {url}"))?;
        if self.server == Server::Socketio {
            socket.send(Message::text(socketio::CONNECT)).await?;
            reply(&mut socket, "namespace connect", |text| {
                text.starts_with(socketio::CONNECT)
                    .then(|| Ok(()))
                    .or_else(|| {
                        text.starts_with(socketio::CONNECT_ERROR)
                            .then(|| Err(anyhow::anyhow!("connect refused: {text}")))
                    })
            })
            .await??;
        }
        Ok(socket)
    }

    /// Connects and joins the room, waiting for the join's ack.
    async fn join(&self) -> anyhow::Result<Socket> {
        let mut socket = self.connect().await?;
        match self.server {
            Server::Roomcast => {
                let frame = json!({"action": "join", "room": &*self.room, "id": "join"});
                socket.send(Message::text(frame.to_string())).await?;
                let ack = reply(&mut socket, "join ack", |text| {
                    let reply: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                    (reply["id"] == "join").then_some(reply)
                })
                .await?;
                if ack["type"] != "ack" {
                    bail!("join refused: {ack}");
                }
            }
            Server::Socketio => {
                let frame = format!("{}{}", socketio::JOIN_ACK_ID, json!(["join", &*self.room]));
                socket.send(Message::text(frame)).await?;
                reply(&mut socket, "join ack", |text| {
                    text.starts_with(socketio::JOINED).then_some(())
                })
                .await?;
            }
        }
        Ok(socket)
    }
}

/// Reads frames until `pick` finds the awaited one (answering Engine.IO pings
/// meanwhile), for at most 30 s.
async fn reply<T>(
    socket: &mut Socket,
    what: &str,
    mut pick: impl FnMut(&str) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(frame) = socket.next().await {
            if let Message::Text(text) = frame? {
                if text.as_str() == socketio::PING {
                    socket.send(Message::text(socketio::PONG)).await?;
                } else if let Some(found) = pick(&text) {
                    return Ok(found);
                }
            }
        }
        bail!("connection closed before the {what}")
    })
    .await
    .with_context(|| format!("no {what} within 30 s"))?
}

/// The Engine.IO v4 / Socket.IO v5 packets the bench speaks, as text frames.
mod socketio {
    /// Engine.IO ping from the server; answered with [`PONG`].
    pub const PING: &str = "2";
    pub const PONG: &str = "3";
    /// Connect the default namespace; the server answers `40{"sid":...}`.
    pub const CONNECT: &str = "40";
    pub const CONNECT_ERROR: &str = "44";
    /// An event with ack id 1 (`42` + id); its ack comes back as [`JOINED`].
    pub const JOIN_ACK_ID: &str = "421";
    pub const JOINED: &str = "431";
    /// An event frame as the server emits it to the room: `42["event",data]`.
    pub const EVENT_PREFIX: &str = "42[\"event\",";
}

/// The publish time (µs on the bench clock) of a bench event, if `text` is one.
/// The bench's client sockets. tungstenite's default 128 KiB read buffer is
/// zero-filled again for every read: half of the bench's CPU went to `memset`
/// in a profile. Events are small; the buffer grows if one is not.
fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

fn bench_timestamp(server: Server, text: &str) -> Option<u64> {
    if server == Server::Socketio {
        #[derive(serde::Deserialize)]
        struct Data {
            t: u64,
        }
        let data = text
            .strip_prefix(socketio::EVENT_PREFIX)?
            .strip_suffix(']')?;
        return serde_json::from_str::<Data>(data).ok().map(|d| d.t);
    }
    roomcast_timestamp(text)
}

fn roomcast_timestamp(text: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        event: std::borrow::Cow<'a, str>,
        data: Data,
    }
    #[derive(serde::Deserialize)]
    struct Data {
        t: u64,
    }
    // Cheap pre-check: most frames on a bench connection are bench events, but
    // acks and other rooms' traffic must not be parsed as such. Typed parsing
    // skips the padding instead of building a `Value` tree per delivery.
    if !text.contains(EVENT) {
        return None;
    }
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    (frame.kind == "event" && frame.event == EVENT).then_some(frame.data.t)
}

enum Publisher {
    Send(Box<tokio::sync::Mutex<Socket>>),
    Broadcast(Broadcaster),
}

impl Publisher {
    async fn open(args: &BenchArgs, endpoint: &Endpoint) -> anyhow::Result<Self> {
        Ok(match (args.via, args.target) {
            // A roomcast member's `send` goes to the room's other members.
            (Via::Send, Server::Roomcast) => {
                Self::Send(Box::new(tokio::sync::Mutex::new(endpoint.join().await?)))
            }
            // `io.to(room).emit` would include the publisher: it stays out of the room.
            (Via::Send, Server::Socketio) => {
                Self::Send(Box::new(tokio::sync::Mutex::new(endpoint.connect().await?)))
            }
            (Via::Broadcast, _) => {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(endpoint) = &args.endpoint {
                    loader = loader.endpoint_url(endpoint);
                }
                let sdk = loader.load().await;
                Self::Broadcast(Broadcaster::lambda(
                    aws_sdk_lambda::Client::new(&sdk),
                    &args.function,
                ))
            }
        })
    }

    async fn publish(&self, args: &BenchArgs, clock: Instant, seq: usize) -> anyhow::Result<()> {
        let data = json!({"seq": seq, "t": micros(clock), "pad": "x".repeat(args.payload_bytes)});
        match self {
            Self::Send(socket) => {
                let frame = match args.target {
                    Server::Roomcast => {
                        json!({"action": "send", "room": args.room, "event": EVENT, "data": data})
                            .to_string()
                    }
                    Server::Socketio => format!("42{}", json!(["publish", args.room, data])),
                };
                socket.lock().await.send(Message::text(frame)).await?;
            }
            Self::Broadcast(broadcaster) => {
                let broadcast = Broadcast::new(Target::room(&args.room), EVENT).data(data)?;
                broadcaster.invoke(&broadcast).await?;
            }
        }
        Ok(())
    }
}

fn micros(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Progress while members connect and deliveries arrive: a bar on a terminal,
/// a plain line every few seconds otherwise (logs of scripted runs).
struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    position: std::cell::Cell<u64>,
    printed: std::cell::Cell<Option<Instant>>,
}

/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

impl Progress {
    fn new(what: &'static str, total: u64, quiet: bool) -> Self {
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

    fn position(&self) -> u64 {
        self.position.get()
    }

    fn set(&self, position: u64) {
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

    fn finish(&self) {
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

/// (VmRSS, VmHWM) of `pid` in KiB, from /proc.
fn memory(pid: u32) -> anyhow::Result<(f64, f64)> {
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
fn cpu_seconds(pid: &str) -> f64 {
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

fn print_table(r: &Report) {
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
