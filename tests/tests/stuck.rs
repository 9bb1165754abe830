//! A client that stops reading cannot freeze its connection, the gateway's memory
//! or its shutdown: a raw TCP client with a 4 KB receive buffer handshakes, joins
//! and never reads while another member floods the room. Its connection is closed
//! over the outbound byte budget, at the write timeout, or at the connection cap,
//! its later `@connections` posts get 410, the other members get every event, and
//! the gateway shuts down promptly.

mod support;

use std::time::Duration;

use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::SinkExt;
use roomcast_core::policy::Policies;
use roomcast_local::{GatewayOptions, RunningGateway};
use serde_json::json;
use support::{Client, WAIT};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const ROOM: &str = "flood:1";

/// Room frames are not what these tests limit.
const POLICIES: &str =
    r#"{"default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 100000}}}"#;

/// Each flood frame's data: near the 32 KB frame limit.
fn filler() -> String {
    "x".repeat(30_000)
}

/// A gateway with [`POLICIES`], an outbound budget of `max_outbound_bytes` per
/// connection and a write timeout of `write_timeout`, otherwise as `options`.
async fn gateway(
    max_outbound_bytes: usize,
    write_timeout: Duration,
    options: GatewayOptions,
) -> RunningGateway {
    support::start(GatewayOptions {
        policies: Some(Policies::parse(POLICIES).expect("policies")),
        max_outbound_bytes,
        write_timeout,
        ..options
    })
    .await
}

/// A client that handshakes over a socket with a 4 KB receive buffer, joins
/// `ROOM`, and never reads again.
async fn stuck_client(gw: &RunningGateway) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = tokio::time::timeout(WAIT, socket.connect(gw.local_addr()))
        .await
        .expect("connects in time")
        .expect("connects");
    let (mut ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(gw.websocket_url(), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake accepted");
    let join = json!({"action": "join", "room": ROOM, "id": "j"});
    ws.send(Message::text(join.to_string()))
        .await
        .expect("join sent");
    ws
}

/// The stuck client's connection id: it sends (it still can) and `witness` reads
/// who sent it.
async fn stuck_id(stuck: &mut WebSocketStream<TcpStream>, witness: &mut Client) -> String {
    let hello = json!({"action": "send", "room": ROOM, "event": "hello"});
    stuck
        .send(Message::text(hello.to_string()))
        .await
        .expect("sent");
    let event = witness.next_json().await;
    assert_eq!(event["event"], "hello", "{event}");
    support::sender_id(&event)
}

/// A stuck client, its connection id, and two reading members of the room
/// (alice and bob), both past the stuck client's hello.
async fn stuck_and_members(
    gw: &RunningGateway,
) -> (WebSocketStream<TcpStream>, String, Client, Client) {
    let mut stuck = stuck_client(gw).await;
    let mut alice = Client::connect(&gw.websocket_url()).await;
    let mut bob = Client::connect(&gw.websocket_url()).await;
    alice.join(ROOM).await;
    bob.join(ROOM).await;
    let stuck_id = stuck_id(&mut stuck, &mut bob).await;
    // alice read the hello too.
    assert_eq!(alice.next_json().await["event"], "hello");
    (stuck, stuck_id, alice, bob)
}

/// Shuts `gw` down, failing the test if that takes longer than [`WAIT`].
async fn shutdown_in_time(gw: RunningGateway) {
    tokio::time::timeout(WAIT, gw.shutdown())
        .await
        .expect("shutdown in time")
        .expect("shutdown");
}

/// `flooder` sends `n` large events to the room; `reader` reads each. Returns
/// whether the stuck member was still counted as delivered to in the last one.
async fn flood(flooder: &mut Client, reader: &mut Client, n: usize) -> bool {
    let data = filler();
    let mut delivered_to_all = true;
    for i in 0..n {
        let ack = flooder
            .request(json!({"action": "send", "room": ROOM, "event": "big", "data": data, "id": i}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
        delivered_to_all = ack["delivered"] == ack["recipients"] && ack["recipients"] == 2;
        let event = reader.next_json().await;
        assert_eq!(
            (
                event["event"].as_str(),
                event["data"].as_str().map(str::len)
            ),
            (Some("big"), Some(30_000))
        );
    }
    delivered_to_all
}

/// A POST to `connection_id`: `Ok` when delivered, `Err(true)` on 410.
async fn post(gw: &RunningGateway, connection_id: &str) -> Result<(), bool> {
    let client = support::management(&gw.management_endpoint()).await;
    match client
        .post_to_connection()
        .connection_id(connection_id)
        .data(Blob::new("{}"))
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(matches!(
            e.into_service_error(),
            PostToConnectionError::GoneException(_)
        )),
    }
}

/// Floods until a post to `connection_id` gets 410 (bounded by [`WAIT`] and a
/// number of frames far over any budget the tests set).
async fn flood_until_gone(
    gw: &RunningGateway,
    flooder: &mut Client,
    reader: &mut Client,
    connection_id: &str,
) -> usize {
    for round in 1..=200 {
        flood(flooder, reader, 10).await;
        if post(gw, connection_id).await == Err(true) {
            return round * 10;
        }
    }
    panic!("the stuck connection was never closed");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_over_its_outbound_budget() {
    // Only the budget can end it.
    let gw = gateway(256 * 1024, Duration::from_secs(3600), support::options()).await;
    let (stuck, stuck_id, mut alice, mut bob) = stuck_and_members(&gw).await;
    flood_until_gone(&gw, &mut alice, &mut bob, &stuck_id).await;
    // Later posts keep getting 410; the others still get every event.
    assert_eq!(post(&gw, &stuck_id).await, Err(true));
    assert!(
        !flood(&mut alice, &mut bob, 5).await,
        "the closed connection is no longer a recipient"
    );
    alice.assert_nothing_pending().await;
    bob.assert_nothing_pending().await;
    // Shutdown does not wait for the stuck socket.
    shutdown_in_time(gw).await;
    drop(stuck);
}

#[tokio::test]
async fn a_write_that_makes_no_progress_closes_the_connection_at_the_write_timeout() {
    // Only the write timeout can end it.
    let gw = gateway(usize::MAX, Duration::from_secs(1), support::options()).await;
    let (stuck, stuck_id, mut alice, mut bob) = stuck_and_members(&gw).await;
    flood_until_gone(&gw, &mut alice, &mut bob, &stuck_id).await;
    assert_eq!(post(&gw, &stuck_id).await, Err(true));
    bob.assert_nothing_pending().await;
    shutdown_in_time(gw).await;
    drop(stuck);
}

#[tokio::test]
async fn the_connection_cap_fires_while_a_write_is_stuck() {
    let options = GatewayOptions {
        max_connection_duration: Duration::from_secs(3),
        ..support::options()
    };
    let gw = gateway(usize::MAX, Duration::from_secs(3600), options).await;
    let mut stuck = stuck_client(&gw).await;
    let mut witness = Client::connect(&gw.websocket_url()).await;
    witness.join(ROOM).await;
    let stuck_id = stuck_id(&mut stuck, &mut witness).await;
    // Posts straight to the stuck connection (no member to outlive the cap):
    // they block its writes, and go on until the cap has closed it.
    let client = support::management(&gw.management_endpoint()).await;
    let data = filler();
    tokio::time::timeout(WAIT, async {
        loop {
            let posted = client
                .post_to_connection()
                .connection_id(&stuck_id)
                .data(Blob::new(data.as_bytes()))
                .send()
                .await;
            if let Err(e) = posted
                && matches!(
                    e.into_service_error(),
                    PostToConnectionError::GoneException(_)
                )
            {
                return;
            }
        }
    })
    .await
    .expect("the cap closed the stuck connection");
    drop(stuck);
    shutdown_in_time(gw).await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_a_stuck_write() {
    let gw = gateway(usize::MAX, Duration::from_secs(3600), support::options()).await;
    let (stuck, stuck_id, mut alice, mut bob) = stuck_and_members(&gw).await;
    // 9 MB: more than the socket buffers hold, so the stuck writes block.
    assert!(
        flood(&mut alice, &mut bob, 300).await,
        "nothing closed it yet"
    );
    assert_eq!(post(&gw, &stuck_id).await, Ok(()));
    shutdown_in_time(gw).await;
    drop(stuck);
}

/// The process's resident set, in MB (Linux).
fn rss_mb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb / 1024
}

/// A measurement, not a check (docs/local.md, "Clients that stop reading"): the
/// gateway's RSS before, during and after 20 clients that join a full history room
/// with `since` (1000 events of 30 KB to replay) and never read. Uses only the
/// default options, so it runs unchanged against older gateways.
#[tokio::test]
#[ignore = "a measurement: cargo test -p roomcast-e2e --test stuck -- --ignored --nocapture"]
async fn rss_with_twenty_clients_that_stop_reading() {
    const HISTORY: &str = r#"{"default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 100000}},
        "namespaces": {"flood": {"history": {"size": 1000, "ttlSecs": 3600}}}}"#;
    let gw = support::start(GatewayOptions {
        policies: Some(Policies::parse(HISTORY).expect("policies")),
        ..support::options()
    })
    .await;
    let mut publisher = Client::connect(&gw.websocket_url()).await;
    let ack = publisher
        .request(json!({"action": "join", "room": ROOM, "id": "j"}))
        .await;
    let epoch = ack["epoch"].as_str().expect("a history room").to_owned();
    let data = filler();
    for i in 0..1000 {
        let ack = publisher
            .request(json!({"action": "send", "room": ROOM, "event": "big", "data": data, "id": i}))
            .await;
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let settle = Duration::from_secs(5);
    tokio::time::sleep(settle).await;
    let before = rss_mb();
    let mut stuck = Vec::new();
    for _ in 0..20 {
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(gw.local_addr()).await.expect("connects");
        let (mut ws, _) = tokio_tungstenite::client_async(gw.websocket_url(), tcp)
            .await
            .expect("handshake");
        let join = json!({"action": "join", "room": ROOM, "since": {"offset": 0, "epoch": epoch}});
        ws.send(Message::text(join.to_string()))
            .await
            .expect("sent");
        stuck.push(ws);
    }
    tokio::time::sleep(settle).await;
    let during = rss_mb();
    let open = gw.gateway().connections().len();
    // Shutdown with the stuck clients still connected.
    let shutdown = std::time::Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(120), gw.shutdown()).await;
    let shutdown_ms = shutdown.elapsed().as_millis();
    tokio::time::sleep(settle).await;
    let after = rss_mb();
    drop(stuck);
    println!(
        "RSS MB: before {before}, during {during} ({open} of 21 connections open), \
         after shutdown {after}; shutdown took {shutdown_ms} ms ({})",
        if stopped.is_ok() {
            "done"
        } else {
            "gave up after 120 s"
        }
    );
}
