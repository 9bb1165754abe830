//! Big rooms' fan-out workers: a sharded room's event is handed over as one job
//! per shard (the sender acked at once), each job reaches its shard's members
//! once however often it runs, and a paced job rides out 429s instead of giving
//! up. On the memory store and on DynamoDB (dynalite, from scripts/test).

mod support;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use roomcast_core::policy::Policies;
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Member, Store, shard_of};
use roomcast_core::workers::{self, Dispatch, DispatchError, Job};
use serde_json::{Value, json};
use support::{Harness, harness_with, send_frame};

const POLICIES: &str = r#"{
  "default": {"join": "anyone", "send": "anyone", "rateLimit": {"limit": 1000}},
  "namespaces": {
    "big": {"members": {"shards": 4}, "history": {"size": 100, "ttlSecs": 600}},
    "plain": {"members": {"shards": 4}}
  }
}"#;

/// Keeps the jobs handed to it, running none.
#[derive(Default)]
struct Recorder {
    jobs: Mutex<Vec<Job>>,
}

#[async_trait]
impl Dispatch for Recorder {
    async fn dispatch(&self, jobs: Vec<Job>) -> Result<(), DispatchError> {
        self.jobs.lock().unwrap().extend(jobs);
        Ok(())
    }
}

fn sharded(store: Arc<dyn Store>) -> (Harness, Arc<Recorder>) {
    let mut h = harness_with(store);
    h.app.config.policies = Policies::parse(POLICIES).unwrap();
    h.app.config.management_endpoint = Some("https://abc.example/test".into());
    let recorder = Arc::new(Recorder::default());
    h.app.dispatch = Some(recorder.clone() as Arc<dyn Dispatch>);
    (h, recorder)
}

/// `n` members of `room`, each in the shard `shard_of` names.
async fn members(h: &Harness, room: &str, n: usize) -> Vec<String> {
    let ids: Vec<String> = (0..n).map(|i| format!("m{i:03}=")).collect();
    for id in &ids {
        let member = Member {
            connection_id: id.clone(),
            user_id: None,
            expires_at: u64::MAX / 2,
        };
        h.store.join(room, shard_of(id, 4), &member).await.unwrap();
    }
    ids
}

async fn jobs_reach_each_member_once(store: Arc<dyn Store>) {
    let (h, recorder) = sharded(store);
    let ids = members(&h, "big:r", 40).await;
    let sender = "sender=";
    let join = send_frame(
        &h,
        sender,
        json!({"action": "join", "room": "big:r", "id": 1}),
    )
    .await;
    assert_eq!(join["type"], "ack", "{join}");
    let ack = send_frame(
        &h,
        sender,
        json!({"action": "send", "room": "big:r", "event": "e", "data": {"n": 1}, "id": 2}),
    )
    .await;
    // Acked at once with the event's offset; no member was posted to yet.
    assert_eq!(
        (ack["workers"].as_u64(), ack["offset"].as_u64()),
        (Some(4), Some(1)),
        "{ack}"
    );
    assert!(h.management.posts.lock().unwrap().is_empty());
    let jobs = recorder.jobs.lock().unwrap().clone();
    let shards: Vec<u16> = jobs.iter().map(|j| j.shard).collect();
    assert_eq!(shards, [0, 1, 2, 3]);
    assert!(jobs.iter().all(|j| j.event == jobs[0].event));
    // The sender is left out by the job of its own shard, the only one that reads it.
    for job in &jobs {
        let own = shard_of(sender, 4) == job.shard;
        let expected: Vec<&str> = if own { vec![sender] } else { Vec::new() };
        assert_eq!(job.except, expected, "shard {}", job.shard);
    }

    for job in &jobs {
        let first = workers::run(&h.app, job, None).await.unwrap();
        let in_shard = ids.iter().filter(|id| shard_of(id, 4) == job.shard).count();
        // The sender is left out of its own shard's job.
        assert_eq!(
            (first.recipients, first.delivered),
            (in_shard, in_shard),
            "shard {}",
            job.shard
        );
        let again = workers::run(&h.app, job, None).await.unwrap();
        assert!(again.repeat && again.recipients == 0, "{again:?}");
    }
    for id in &ids {
        let event = h.management.only_event(id);
        assert_eq!(
            (event["offset"].as_u64(), &event["data"]),
            (Some(1), &json!({"n": 1}))
        );
    }
    assert!(h.management.received(sender).is_empty());
}

#[tokio::test]
async fn jobs_reach_each_member_once_on_the_memory_store() {
    jobs_reach_each_member_once(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn jobs_reach_each_member_once_on_dynamodb() {
    jobs_reach_each_member_once(Arc::new(support::dynamo_store("workers").await)).await;
}

#[tokio::test]
async fn a_broadcast_to_a_sharded_room_is_handed_over_with_its_event_id() {
    let (h, recorder) = sharded(Arc::new(MemoryStore::new()));
    let request = json!({"room": "plain:r", "event": "e", "data": 1});
    let reply = roomcast_core::broadcast::handle(&h.app, request, u64::MAX)
        .await
        .unwrap();
    assert_eq!(reply["workers"], 4, "{reply}");
    let jobs = recorder.jobs.lock().unwrap().clone();
    assert_eq!(jobs.len(), 4);
    // Without history the event id is random but one for all four shards.
    assert!(
        jobs.iter()
            .all(|j| j.event == jobs[0].event && !j.event.is_empty())
    );
    let frame: Value = serde_json::from_str(jobs[0].frame.get()).unwrap();
    assert_eq!(
        (&frame["room"], &frame["data"]),
        (&json!("plain:r"), &json!(1))
    );
}

#[tokio::test]
async fn a_room_of_one_shard_is_fanned_out_in_line() {
    let (h, recorder) = sharded(Arc::new(MemoryStore::new()));
    let member = Member {
        connection_id: "a=".into(),
        user_id: None,
        expires_at: u64::MAX / 2,
    };
    h.store.join("other", 0, &member).await.unwrap();
    let request = json!({"room": "other", "event": "e"});
    let reply = roomcast_core::broadcast::handle(&h.app, request, u64::MAX)
        .await
        .unwrap();
    assert_eq!(
        (reply["delivered"].as_u64(), reply.get("workers")),
        (Some(1), None)
    );
    assert!(recorder.jobs.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_paced_job_rides_out_more_429s_than_a_fanout_retries() {
    let (h, _) = sharded(Arc::new(MemoryStore::new()));
    let ids = members(&h, "big:r", 12).await;
    // Seven 429s each: one more than the in-line fan-out's six attempts.
    for id in &ids {
        h.management.throttle.lock().unwrap().insert(id.clone(), 7);
    }
    let frame = Bytes::from(json!({"type": "event", "room": "big:r"}).to_string());
    let jobs = workers::plan(&h.app, "big:r", 4, "ev1", &[], &frame).unwrap();
    let mut delivered = 0;
    let mut throttled = 0;
    for job in &jobs {
        let stats = workers::run(&h.app, job, None).await.unwrap();
        assert_eq!(stats.failed, 0, "{stats:?}");
        delivered += stats.delivered;
        throttled += stats.throttled_retries;
    }
    assert_eq!((delivered, throttled), (12, 12 * 7));
    for id in &ids {
        assert_eq!(h.management.received(id).len(), 1);
    }
}

#[test]
fn each_job_gets_its_share_of_the_budget() {
    let (mut h, _) = sharded(Arc::new(MemoryStore::new()));
    h.app.config.management_rps = 10_000;
    h.app.config.fanout_workers = 16;
    // Fewer shards than workers: each shard's job gets a bigger share.
    assert_eq!(workers::share(&h.app, 4), 2_500.0);
    assert_eq!(workers::share(&h.app, 16), 625.0);
    assert_eq!(workers::share(&h.app, 64), 625.0);
}

fn sqs_event(bodies: &[String]) -> aws_lambda_events::event::sqs::SqsEvent {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| json!({"messageId": format!("m{i}"), "body": body, "eventSource": "aws:sqs"}))
        .collect();
    serde_json::from_value(json!({"Records": records})).unwrap()
}

fn envelope(job: &Job) -> String {
    serde_json::to_string(&workers::Envelope { job: job.clone() }).unwrap()
}

#[tokio::test]
async fn a_failed_job_stops_its_batch_and_is_reported_with_every_later_one() {
    let (h, _) = sharded(Arc::new(MemoryStore::new()));
    let ids = members(&h, "big:r", 40).await;
    let frame = Bytes::from(json!({"type": "event", "room": "big:r"}).to_string());
    let jobs = workers::plan(&h.app, "big:r", 4, "ev1", &[], &frame).unwrap();
    let malformed = json!({"fanoutJob": {"room": "big:r"}}).to_string();
    let event = sqs_event(&[envelope(&jobs[0]), malformed, envelope(&jobs[1])]);
    assert!(workers::is_job_batch(&event));
    let response = workers::handle_sqs(&h.app, event, u64::MAX).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m1", "m2"]);
    // The first job ran; the third, after the failure, did not.
    for id in &ids {
        let expected = usize::from(shard_of(id, 4) == 0);
        assert_eq!(h.management.received(id).len(), expected, "{id}");
    }
}

#[test]
fn a_broadcast_that_mentions_jobs_is_not_taken_for_one() {
    let body = json!({"room": "r", "event": "fanoutJob", "data": {"x": "fanoutJob"}}).to_string();
    assert!(!workers::is_job_batch(&sqs_event(&[body])));
}

#[test]
fn each_job_carries_only_its_own_shards_exceptions() {
    let (h, _) = sharded(Arc::new(MemoryStore::new()));
    let except: Vec<String> = (0..10_000).map(|i| format!("x{i:05}=")).collect();
    let except: Vec<&str> = except.iter().map(String::as_str).collect();
    let frame = Bytes::from_static(b"{}");
    let jobs = workers::plan(&h.app, "big:r", 4, "ev1", &except, &frame).unwrap();
    assert_eq!(jobs.iter().map(|j| j.except.len()).sum::<usize>(), 10_000);
    for job in &jobs {
        assert!(job.except.iter().all(|id| shard_of(id, 4) == job.shard));
    }
    // What still cannot fit one SQS message is refused, not sent.
    let big = Bytes::from(format!("{{\"d\":\"{}\"}}", "x".repeat(300_000)));
    let jobs = workers::plan(&h.app, "big:r", 4, "ev2", &[], &big).unwrap();
    let refused = workers::SqsDispatch::batches(&jobs);
    assert!(
        matches!(refused, Err(DispatchError::TooLarge(n)) if n > 300_000),
        "{refused:?}"
    );
}
