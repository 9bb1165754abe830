//! The bench's connections: members' and the publisher's sockets to roomcast or
//! Socket.io (connect, join, answer pings), and the publish time read off each
//! delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{SinkExt, StreamExt};
use roomcast_client::{Audience, Broadcast, Broadcaster};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::report::Progress;
use super::{BenchArgs, EVENT, Server, Via, socketio};

pub(super) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where members connect and what they join.
#[derive(Debug, Clone)]
pub(super) struct Endpoint {
    pub(super) server: Server,
    /// The WebSocket URL (for Socket.io, with its Engine.IO path and query).
    url: Arc<str>,
    room: Arc<str>,
}

impl Endpoint {
    pub(super) fn new(args: &BenchArgs) -> Self {
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
    pub(super) async fn connect(&self) -> anyhow::Result<Socket> {
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
    pub(super) async fn join(&self) -> anyhow::Result<Socket> {
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

/// The bench's client sockets. tungstenite's default 128 KiB read buffer is
/// zero-filled again for every read: half of the bench's CPU went to `memset`
/// in a profile. Events are small; the buffer grows if one is not.
fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096)
}

/// The publish time (µs on the bench clock) of a bench event, if `text` is one.
pub(super) fn bench_timestamp(server: Server, text: &str) -> Option<u64> {
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

pub(super) enum Publisher {
    Send(Box<tokio::sync::Mutex<Socket>>),
    Broadcast(Broadcaster),
}

impl Publisher {
    pub(super) async fn open(args: &BenchArgs, endpoint: &Endpoint) -> anyhow::Result<Self> {
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

    pub(super) async fn publish(
        &self,
        args: &BenchArgs,
        clock: Instant,
        seq: usize,
    ) -> anyhow::Result<()> {
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
                let broadcast = Broadcast::new(Audience::room(&args.room), EVENT).data(data)?;
                broadcaster.invoke(&broadcast).await?;
            }
        }
        Ok(())
    }
}

pub(super) fn micros(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `GET {base}{path}` (`base`: `http://HOST:PORT`) over a fresh connection: the
/// body of a 200 answer.
pub(super) async fn http_get(base: &str, path: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let authority = base
        .strip_prefix("http://")
        .with_context(|| format!("{base} is not an http:// URL"))?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no answer from {base}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!(
            "GET {base}{path} answered {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(body.to_owned())
}

/// What [`open`] does with each socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Open {
    Connect,
    /// Connect, then join the room.
    Join,
}

/// Opens `--connections` sockets at `--rate`; returns them and the failures.
pub(super) async fn open(args: &BenchArgs, endpoint: &Endpoint, how: Open) -> (Vec<Socket>, usize) {
    let connections = args.connections();
    let bar = Progress::new("connected", connections as u64, args.json);
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate)));
    let mut pending = Vec::with_capacity(connections);
    for _ in 0..connections {
        ticker.tick().await;
        let endpoint = endpoint.clone();
        pending.push(tokio::spawn(async move {
            match how {
                Open::Connect => endpoint.connect().await,
                Open::Join => endpoint.join().await,
            }
        }));
    }
    let (mut sockets, mut failures) = (Vec::new(), 0);
    for task in pending {
        match task.await {
            Ok(Ok(socket)) => sockets.push(socket),
            Ok(Err(e)) => {
                if failures == 0 {
                    eprintln!("roomcast bench: a connection failed: {e:#}");
                }
                failures += 1;
            }
            Err(_) => failures += 1,
        }
        bar.set(bar.position() + 1);
    }
    bar.finish();
    (sockets, failures)
}
