//! Criterion benchmarks of the hot paths: frame parsing and validation, event
//! serialization, and the fan-out engine posting through the real SDK management
//! client to a local HTTP sink. Run with `cargo bench -p roomcast-core`.

#[path = "../tests/support/http_sink.rs"]
mod http_sink;

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use roomcast_core::fanout::{Fanout, RetryPolicy};
use roomcast_core::management::apigw::ApiGatewayManagement;
use roomcast_core::protocol::{self, ServerFrame};
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Member, Store};
use serde_json::value::RawValue;

fn frame(data_bytes: usize) -> String {
    format!(
        r#"{{"action":"send","room":"chat:general","event":"message","data":{{"text":"{}","n":[1,2,3],"ok":true}},"id":42}}"#,
        "x".repeat(data_bytes)
    )
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for size in [64, 1024, 16 * 1024] {
        let body = frame(size);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(body.len()), &body, |b, body| {
            b.iter(|| {
                let request = protocol::parse(black_box(body), 32 * 1024);
                assert!(request.frame.is_ok());
                request.id.is_some()
            });
        });
    }
    group.finish();
}

fn serialization(c: &mut Criterion) {
    let mut group = c.benchmark_group("event_json");
    for size in [64, 1024, 16 * 1024] {
        let data = RawValue::from_string(format!(r#"{{"text":"{}"}}"#, "x".repeat(size))).unwrap();
        group.throughput(Throughput::Bytes(data.get().len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| {
                ServerFrame::Event {
                    room: Some("chat:general"),
                    event: "message",
                    data: black_box(data),
                    from: protocol::Sender::member("L0SM9cOFvHcCIhw=", Some("alice")),
                    ts: 1_800_000_000_000,
                    offset: None,
                    epoch: None,
                }
                .to_json()
            });
        });
    }
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (endpoint, _seen) = runtime.block_on(http_sink::serve());
    let sdk = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("bench", "bench", None, None, "static"),
        ))
        .build();
    let management = ApiGatewayManagement::new(&sdk);
    let mut group = c.benchmark_group("fanout_http_sink");
    group.sample_size(10);
    for members in [100usize, 1000] {
        let store = Arc::new(MemoryStore::new());
        runtime.block_on(async {
            for i in 0..members {
                let member = Member {
                    connection_id: format!("ok{i:05}="),
                    user_id: None,
                    expires_at: u64::MAX,
                };
                store.join("room", 0, &member).await.unwrap();
            }
        });
        group.throughput(Throughput::Elements(members as u64));
        group.bench_function(BenchmarkId::from_parameter(members), |b| {
            b.to_async(&runtime).iter(|| async {
                let fanout = Fanout {
                    store: store.as_ref() as &dyn Store,
                    management: &management,
                    endpoint: &endpoint,
                    concurrency: 64,
                    retry: RetryPolicy::default(),
                    presence: None,
                    stop_at: None,
                    pacer: None,
                };
                let stats = fanout
                    .to_room(
                        "room",
                        1,
                        None,
                        Bytes::from_static(b"{\"type\":\"event\"}"),
                        0,
                    )
                    .await
                    .unwrap();
                assert_eq!(stats.delivered, members);
            });
        });
    }
    group.finish();
}

criterion_group!(benches, parsing, serialization, fan_out);
criterion_main!(benches);
