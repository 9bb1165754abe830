//! Recovery's replay within its bounds: packed into `replay` frames for clients
//! that ask, cut short by the byte bound with the position it reached, and
//! resumed from that position. Limits high enough for the replays' charges
//! (`replay_rate.rs`) to leave the rejoins alone.

mod support;

use roomcast_core::policy::Policies;
use serde_json::json;
use support::{Harness, fill_room as fill, harness, send_frame as join};

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone"},
  "namespaces": {"big": {"history": {"size": 1000, "ttlSecs": 600}, "rateLimit": {"limit": 1000}}}
}"#;

fn setup() -> Harness {
    let mut h = harness();
    h.app.config.policies = Policies::parse(POLICIES).unwrap();
    h.app.config.management_endpoint = Some("https://example.test/stage".into());
    h
}

/// The offsets `conn` received, from event frames and packed replay frames, and
/// how many posts carried them.
fn offsets(h: &Harness, conn: &str) -> (Vec<u64>, usize) {
    let frames = h.management.received(conn);
    let mut offsets = Vec::new();
    for frame in &frames {
        match frame["type"].as_str() {
            Some("event") => offsets.push(frame["offset"].as_u64().unwrap()),
            Some("replay") => {
                for e in frame["events"].as_array().unwrap() {
                    assert_eq!(e["type"], "event", "{e}");
                    offsets.push(e["offset"].as_u64().unwrap());
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    (offsets, frames.len())
}

#[tokio::test]
async fn a_client_that_asks_gets_the_replay_packed() {
    let h = setup();
    let epoch = fill(&h, "big:1", 300, 100).await;
    let since = json!({"offset": 0, "epoch": epoch});
    let ack = join(
        &h,
        "packed=",
        json!({"action": "join", "room": "big:1", "since": since, "pack": true, "id": 2}),
    )
    .await;
    assert_eq!(
        (ack["recovered"].as_bool(), ack["offset"].as_u64()),
        (Some(true), Some(300)),
        "{ack}"
    );
    assert!(ack.get("replayedTo").is_none(), "{ack}");
    let (got, posts) = offsets(&h, "packed=");
    assert_eq!(got, (1..=300).collect::<Vec<_>>());
    // About 45 KB of events: one frame, where unpacked it is 300 posts.
    assert_eq!(posts, 1);
    let ack = join(
        &h,
        "plain=",
        json!({"action": "join", "room": "big:1", "since": since, "id": 3}),
    )
    .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let (got, posts) = offsets(&h, "plain=");
    assert_eq!((got.len(), posts), (300, 300));
}

#[tokio::test]
async fn packed_frames_stay_under_the_message_limit() {
    let h = setup();
    let epoch = fill(&h, "big:2", 120, 10_000).await;
    let since = json!({"offset": 0, "epoch": epoch});
    let ack = join(
        &h,
        "packed=",
        json!({"action": "join", "room": "big:2", "since": since, "pack": true, "id": 2}),
    )
    .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    let posts = h.management.posts.lock().unwrap().clone();
    let sizes: Vec<usize> = posts
        .iter()
        .filter(|(_, c, _)| c == "packed=")
        .map(|(_, _, b)| b.len())
        .collect();
    // 120 events of about 10 KB: 10 frames, each under 128 KB.
    assert!(sizes.len() >= 10 && sizes.len() < 120, "{sizes:?}");
    assert!(sizes.iter().all(|&s| s <= 128 * 1024), "{sizes:?}");
    assert_eq!(offsets(&h, "packed=").0, (1..=120).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_replay_over_the_byte_bound_stops_with_its_position_and_resumes() {
    let h = setup();
    // 200 events of about 25 KB: 5 MB, over the 4 MiB one join replays.
    let epoch = fill(&h, "big:3", 200, 25_000).await;
    let since = json!({"offset": 0, "epoch": epoch});
    let ack = join(
        &h,
        "r=",
        json!({"action": "join", "room": "big:3", "since": since, "id": 2}),
    )
    .await;
    assert_eq!(ack["recovered"], false, "{ack}");
    let to = ack["replayedTo"].as_u64().expect("the position it reached");
    assert!((100..200).contains(&to), "{ack}");
    let (got, _) = offsets(&h, "r=");
    assert_eq!(got, (1..=to).collect::<Vec<_>>());
    // Rejoining from there brings the rest.
    h.management.posts.lock().unwrap().clear();
    let since = json!({"offset": to, "epoch": epoch});
    let ack = join(
        &h,
        "r=",
        json!({"action": "join", "room": "big:3", "since": since, "id": 3}),
    )
    .await;
    assert_eq!(ack["recovered"], true, "{ack}");
    assert!(ack.get("replayedTo").is_none(), "{ack}");
    assert_eq!(offsets(&h, "r=").0, (to + 1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_replay_out_of_time_stops_and_says_so() {
    // A spent time budget: the replay posts nothing and the ack says it did not
    // recover, without a position (nothing was delivered), rather than outliving
    // API Gateway's 29 s integration timeout.
    let mut h = setup();
    h.app.config.replay_budget = std::time::Duration::ZERO;
    let epoch = fill(&h, "big:late", 5, 100).await;
    let ack = join(
        &h,
        "late=",
        json!({"action": "join", "room": "big:late", "id": 2,
               "since": {"offset": 0, "epoch": epoch}}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["recovered"], false, "{ack}");
    assert!(ack.get("replayedTo").is_none(), "{ack}");
    assert_eq!(offsets(&h, "late=").0, Vec::<u64>::new());
}
