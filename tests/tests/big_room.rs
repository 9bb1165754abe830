//! A room of 100,000 members on one machine: `GatewayOptions::simulated_members`
//! (`roomcast dev --simulated-members`) puts 100,000 simulated members in a room
//! with history, 50 real sockets join it too, and events sent by a member and
//! broadcast by the broadcast function reach every real socket exactly once, in
//! order, while the simulated members' counters show each of them got every
//! event exactly once, in offset order: in a room fanned out in line, and in a
//! room of 16 shards whose fan-outs go to workers. No latency and no quota:
//! only counts.

mod support;

use roomcast_client::{Audience, Broadcast, Broadcaster};
use roomcast_core::policy::Policies;
use roomcast_local::RunningGateway;
use roomcast_local::simulated::SimulatedRoom;
use serde_json::json;
use support::{Client, clients_in, options, start};

const SIMULATED: usize = 100_000;
const REAL: usize = 50;
/// Events sent by a member, then as many broadcast.
const EACH: usize = 3;
/// Shards of the `big` namespace's rooms: their fan-outs go to workers.
const SHARDS: u64 = 16;

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone"},
  "namespaces": {
    "hist": {"history": {"size": 100, "ttlSecs": 600}},
    "big": {"history": {"size": 100, "ttlSecs": 600}, "members": {"shards": 16}}
  }
}"#;

#[tokio::test]
async fn every_member_of_a_room_of_100_000_gets_each_event_once_in_order() {
    every_member_gets_each_event_once_in_order("hist:big", false).await;
}

#[tokio::test]
async fn every_member_of_a_sharded_room_of_100_000_gets_each_event_once_in_order_through_workers() {
    every_member_gets_each_event_once_in_order("big:room", true).await;
}

async fn every_member_gets_each_event_once_in_order(room: &str, sharded: bool) {
    let gateway = start(roomcast_local::GatewayOptions {
        policies: Some(Policies::parse(POLICIES).unwrap()),
        simulated_members: vec![SimulatedRoom {
            room: room.into(),
            members: SIMULATED,
        }],
        // Workers pace their posts to a share of this budget: a quota far above
        // what a debug build posts keeps the test about counts, not speed.
        management_rps: 10_000_000.0,
        ..options()
    })
    .await;
    let mut members = clients_in(&gateway, room, REAL).await;
    let mut sender = Client::connect(&gateway.websocket_url()).await;
    sender.join(room).await;
    members_send(&mut sender, room, sharded).await;
    broadcasts_sent(&gateway, room, sharded).await;
    for seq in EACH..2 * EACH {
        assert_eq!(sender.next_json().await["data"], seq);
    }
    for member in &mut members {
        each_event_once_in_order(member).await;
    }
    simulated_members_got_each_once(&gateway).await;
    gateway.shutdown().await.unwrap();
}

/// `sender` sends events 0 to [`EACH`] − 1; each is acked after its in-line
/// fan-out, or, in a sharded room, once handed to a worker per shard.
async fn members_send(sender: &mut Client, room: &str, sharded: bool) {
    let recipients = json!(SIMULATED + REAL);
    for seq in 0..EACH {
        let ack = sender
            .request(json!({"action": "send", "room": room, "event": "e", "data": seq, "id": seq}))
            .await;
        let expected = if sharded {
            (json!(null), json!(SHARDS))
        } else {
            (recipients.clone(), json!(null))
        };
        assert_eq!(
            (&ack["type"], &ack["delivered"], &ack["workers"]),
            (&json!("ack"), &expected.0, &expected.1),
            "{ack}"
        );
    }
}

/// The broadcast function sends events [`EACH`] to 2 × [`EACH`] − 1 to `room`,
/// invoked through the gateway's Lambda endpoint.
async fn broadcasts_sent(gateway: &RunningGateway, room: &str, sharded: bool) {
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&support::sdk().await)
            .endpoint_url(gateway.lambda_endpoint())
            .build(),
    );
    let broadcaster = Broadcaster::lambda(lambda, "broadcast");
    for seq in EACH..2 * EACH {
        let broadcast = Broadcast::new(Audience::room(room), "e")
            .data(json!(seq))
            .unwrap();
        let stats = broadcaster
            .invoke(&broadcast)
            .await
            .expect("invoke succeeds");
        // The sender is a member too: broadcasts reach it as well.
        let expected = if sharded {
            (0, SHARDS)
        } else {
            ((SIMULATED + REAL + 1) as u64, 0)
        };
        assert_eq!((stats.delivered, stats.workers), expected, "{stats:?}");
    }
}

/// `member` gets events 0 to 2 × [`EACH`] − 1, each once, in offset order, and
/// nothing more.
async fn each_event_once_in_order(member: &mut Client) {
    for seq in 0..2 * EACH {
        let event = member.next_json().await;
        assert_eq!(
            (&event["type"], &event["data"]),
            (&json!("event"), &json!(seq)),
            "{event}"
        );
        assert_eq!(event["offset"], seq + 1, "{event}");
    }
    member.assert_nothing_pending().await;
}

/// Every simulated member got each of the 2 × [`EACH`] events exactly once, in
/// offset order.
async fn simulated_members_got_each_once(gateway: &RunningGateway) {
    let events = 2 * EACH as u64;
    let expected = SIMULATED as u64 * events;
    // Workers may still be posting to simulated members: wait (bounded) for
    // the count, then check it is exact.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let room = loop {
        let figures = gateway.gateway().simulated().figures()[0].clone();
        if figures.posts_accepted >= expected || std::time::Instant::now() > deadline {
            break figures;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(room.posts_accepted, expected);
    assert_eq!((room.min_per_member, room.max_per_member), (events, events));
    assert_eq!((room.repeats, room.out_of_order), (0, 0));
}

#[tokio::test]
async fn the_figures_are_served_as_json_and_metrics_but_not_to_web_pages() {
    let gateway = start(roomcast_local::GatewayOptions {
        simulated_members: vec![SimulatedRoom {
            room: "r".into(),
            members: 3,
        }],
        ..options()
    })
    .await;
    let addr = gateway.local_addr();
    let figures = support::http(addr, "GET", "/@simulated", &[], b"").await;
    assert_eq!(figures.status, 200, "{}", figures.body);
    let json = figures.json();
    assert_eq!(json["rooms"][0]["room"], "r", "{json}");
    assert_eq!(json["rooms"][0]["members"], 3, "{json}");
    assert_eq!(json["rooms"][0]["posts_accepted"], 0, "{json}");
    assert!(json["management_rps"].is_null(), "{json}");
    let page = [("origin", "https://example.com")];
    let refused = support::http(addr, "GET", "/@simulated", &page, b"").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let metrics = support::http(addr, "GET", "/metrics", &[], b"").await;
    assert!(
        metrics
            .body
            .contains("roomcast_simulated_members{room=\"r\"} 3\n"),
        "{}",
        metrics.body
    );
    gateway.shutdown().await.unwrap();
}
