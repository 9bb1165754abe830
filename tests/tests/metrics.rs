//! `roomcast dev`'s `GET /metrics`, read back with a Prometheus text-format parser
//! while real WebSocket clients and the AWS SDK for Rust drive traffic: each
//! counter moves by what the traffic did.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use prometheus_parse::{Scrape, Value};
use roomcast_client::{Audience, Broadcast, Broadcaster};
use roomcast_core::auth::{AuthConfig, Authorizer};
use roomcast_local::{GatewayOptions, RunningGateway};
use serde_json::json;
use support::{WAIT, clients_in, http, options, start};
use tokio_tungstenite::tungstenite;

/// One scrape of `/metrics`, parsed.
struct Metrics {
    samples: HashMap<String, f64>,
    histogram: Vec<(f64, f64)>,
}

impl Metrics {
    async fn scrape(gateway: &RunningGateway) -> Self {
        let response = http(gateway.local_addr(), "GET", "/metrics", &[], b"").await;
        assert_eq!(response.status, 200, "{}", response.body);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let lines = response.body.lines().map(|l| Ok(l.to_owned()));
        let scrape = Scrape::parse(lines).expect("the Prometheus text format");
        let mut samples = HashMap::new();
        let mut histogram = Vec::new();
        for sample in scrape.samples {
            // `name{label="value"}`, or `name` alone.
            let mut key = sample.metric.clone();
            let labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            if !labels.is_empty() {
                key = format!("{key}{{{}}}", labels.join(","));
            }
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                Value::Histogram(buckets) => {
                    histogram = buckets.iter().map(|b| (b.less_than, b.count)).collect();
                    continue;
                }
                Value::Summary(_) => panic!("no summaries are exported"),
            };
            samples.insert(key, value);
        }
        // Every family is documented (a histogram's `_sum` and `_count` under its name).
        for name in samples.keys() {
            let name = name.split('{').next().unwrap();
            let family = ["_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| scrape.docs.contains_key(*base))
                .unwrap_or(name);
            assert!(scrape.docs.contains_key(family), "no # HELP for {family}");
        }
        Self { samples, histogram }
    }

    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("{key} is not exported: {:?}", self.samples.keys()))
    }

    /// How much `key` moved since `before`.
    fn delta(&self, before: &Metrics, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }
}

#[tokio::test]
async fn counters_follow_the_traffic() {
    let gateway = start(options()).await;
    let before = Metrics::scrape(&gateway).await;
    let mut clients = clients_in(&gateway, "lobby", 3).await;
    for i in 0..4 {
        let ack = clients[0]
            .request(json!({"action": "send", "room": "lobby", "event": "e", "data": i, "id": i}))
            .await;
        assert_eq!(ack["delivered"], 2, "{ack}");
    }
    for c in &mut clients[1..] {
        for _ in 0..4 {
            assert_eq!(c.next_json().await["type"], "event");
        }
    }
    // Two refused frames: one that does not parse, one to a room not joined.
    let error = clients[1]
        .request(json!({"action": "nope", "id": "x"}))
        .await;
    assert_eq!(error["code"], "unknown_action", "{error}");
    let error = clients[1]
        .request(json!({"action": "send", "room": "elsewhere", "event": "e", "id": "y"}))
        .await;
    assert_eq!(error["code"], "not_member", "{error}");
    clients[2].assert_nothing_pending().await;

    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&support::sdk().await)
            .endpoint_url(gateway.lambda_endpoint())
            .build(),
    );
    let stats = Broadcaster::lambda(lambda, "broadcast")
        .invoke(&Broadcast::new(Audience::room("lobby"), "news"))
        .await
        .expect("broadcast");
    assert_eq!(stats.delivered, 3);

    let after = Metrics::scrape(&gateway).await;
    let moved = |key: &str| after.delta(&before, key);
    for (key, expected) in [
        ("roomcast_connects_total", 3.0),
        ("roomcast_frames_total{action=\"join\"}", 3.0),
        ("roomcast_frames_total{action=\"send\"}", 5.0),
        ("roomcast_frames_total{action=\"invalid\"}", 1.0),
        ("roomcast_frames_total{action=\"ping\"}", 1.0),
        ("roomcast_errors_total{code=\"unknown_action\"}", 1.0),
        ("roomcast_errors_total{code=\"not_member\"}", 1.0),
        ("roomcast_broadcasts_total{audience=\"room\"}", 1.0),
        // Four sends to two members each, one broadcast to three.
        ("roomcast_fanouts_total", 5.0),
        ("roomcast_fanout_recipients_total", 11.0),
        ("roomcast_fanout_delivered_total", 11.0),
        ("roomcast_fanout_failed_total", 0.0),
        ("roomcast_fanout_ms_count", 5.0),
    ] {
        assert_eq!(moved(key), expected, "{key}");
    }
    // Cumulative buckets, ending at +Inf with every fan-out.
    let (le, count) = *after.histogram.last().expect("histogram buckets");
    assert!(le.is_infinite() && count == after.get("roomcast_fanout_ms_count"));
    assert!(after.histogram.windows(2).all(|w| w[0].1 <= w[1].1));
    assert_eq!(after.get("roomcast_open_connections"), 3.0);
    assert_eq!(after.get("roomcast_rooms"), 1.0);
    assert!(after.get("process_resident_memory_bytes") > 0.0);

    // A closed connection's $disconnect runs after the close: wait for it, bounded.
    clients.pop().unwrap().close().await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            let now = Metrics::scrape(&gateway).await;
            if now.delta(&before, "roomcast_disconnects_total") == 1.0 {
                return now;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("$disconnect counted");
    assert_eq!(closed.get("roomcast_open_connections"), 2.0);
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn refused_handshakes_are_counted_by_reason() {
    let base = options();
    let authorizer = Authorizer::new(AuthConfig {
        jwt: None,
        allow_anonymous: false,
        origins: Default::default(),
    })
    .with_metrics(Arc::clone(&base.metrics));
    let gateway = start(GatewayOptions {
        authorizer: Some(Arc::new(authorizer)),
        ..base
    })
    .await;
    let before = Metrics::scrape(&gateway).await;
    let url = gateway.websocket_url();
    for (url, status) in [
        (url.clone(), 401),
        (url.clone(), 401),
        (format!("{url}?token=anything"), 403),
    ] {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
            .await
            .expect("answer in time")
        {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status)
            }
            other => panic!("handshake not refused: {:?}", other.map(|_| ())),
        }
    }
    let after = Metrics::scrape(&gateway).await;
    let moved = |key: &str| after.delta(&before, key);
    assert_eq!(
        moved("roomcast_handshakes_refused_total{reason=\"no_token\"}"),
        2.0
    );
    assert_eq!(
        moved("roomcast_handshakes_refused_total{reason=\"bad_token\"}"),
        1.0
    );
    assert_eq!(
        moved("roomcast_handshakes_refused_total{reason=\"origin\"}"),
        0.0
    );
    assert_eq!(moved("roomcast_connects_total"), 0.0);
    gateway.shutdown().await.unwrap();
}
