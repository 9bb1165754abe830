//! The EMF lines the Lambda entry point writes after an invocation, captured and
//! checked against the CloudWatch Embedded Metric Format specification.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use roomcast_core::auth::{self, AuthConfig};
use roomcast_core::fanout::FanoutStats;
use roomcast_core::handlers::Integration;
use roomcast_core::lambda::{self, Handler};
use roomcast_core::metrics::emf::{self, EmfWriter};
use roomcast_core::metrics::{Counter, Metrics};
use roomcast_core::store::now_millis;
use serde_json::{Map, Value, json};
use support::{Harness, event, harness};

const ENDPOINT: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/test";

/// EMF lines written instead of printed.
#[derive(Default)]
struct Capture(Mutex<Vec<String>>);

impl EmfWriter for Capture {
    fn write_line(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_owned());
    }
}

impl Capture {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// The unit strings the specification allows.
const UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks `line` against the EMF specification and returns its metrics (name →
/// value) and dimensions (key → value).
fn check_emf(line: &str) -> (BTreeMap<String, Value>, BTreeMap<String, String>) {
    assert!(!line.contains('\n'), "one line: {line}");
    let root: Map<String, Value> = serde_json::from_str(line).expect("a JSON object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    let timestamp = aws["Timestamp"].as_u64().expect("Timestamp in ms");
    assert!(
        timestamp > 1_600_000_000_000,
        "Timestamp is epoch ms: {timestamp}"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    let mut metrics = BTreeMap::new();
    let mut dimensions = BTreeMap::new();
    for directive in directives {
        assert!(
            directive["Namespace"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
        );
        let sets = directive["Dimensions"].as_array().expect("Dimensions");
        assert!(!sets.is_empty(), "Dimensions has at least one set");
        for set in sets {
            let keys = set.as_array().expect("a dimension set is an array");
            assert!(keys.len() <= 30);
            for key in keys {
                let key = key.as_str().expect("dimension keys are strings");
                let value = root[key]
                    .as_str()
                    .expect("each dimension is a string member");
                dimensions.insert(key.to_owned(), value.to_owned());
            }
        }
        let defs = directive["Metrics"].as_array().expect("Metrics");
        assert!(defs.len() <= emf::MAX_METRICS);
        for def in defs {
            let name = def["Name"].as_str().expect("Name");
            assert!(!name.is_empty() && name.len() <= 255);
            if let Some(unit) = def.get("Unit") {
                let unit = unit.as_str().expect("Unit is a string");
                assert!(UNITS.contains(&unit), "unit {unit}");
            }
            let value = &root[name];
            match value {
                Value::Number(_) => {}
                Value::Array(values) => {
                    assert!(!values.is_empty() && values.len() <= 100);
                    assert!(values.iter().all(Value::is_number), "{name}: {value}");
                }
                _ => panic!("metric {name} is not a number or an array of numbers: {value}"),
            }
            metrics.insert(name.to_owned(), value.clone());
        }
    }
    (metrics, dimensions)
}

/// The only EMF line `capture` holds, checked, as its metrics; the stage checked.
fn only_line(capture: &Capture, stage: &str) -> BTreeMap<String, Value> {
    let lines = capture.take();
    assert_eq!(lines.len(), 1, "one EMF line per invocation: {lines:?}");
    let (metrics, dimensions) = check_emf(&lines[0]);
    assert_eq!(
        dimensions,
        BTreeMap::from([("Stage".to_owned(), stage.to_owned())])
    );
    metrics
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect()
}

fn websocket(h: Harness, integration: Integration) -> lambda::WebSocket {
    lambda::WebSocket {
        app: h.app,
        integration,
    }
}

/// Another function of the same stack: `h`'s store, management API and metrics.
fn sharing(h: &Harness, integration: Integration) -> lambda::WebSocket {
    let app = roomcast_core::App::new(
        h.app.config.clone(),
        Arc::clone(&h.store),
        h.management.clone(),
    )
    .with_metrics(Arc::clone(&h.app.metrics));
    lambda::WebSocket { app, integration }
}

async fn run<H: Handler>(handler: &H, event: H::Event, capture: &Capture) {
    let mut context = lambda_runtime::Context::default();
    // An invocation deadline no test gets near (the SQS path checks it).
    context.deadline = now_millis() + 3_600_000;
    let _ = lambda::invoke(handler, event, context, capture).await;
}

fn connect_event(id: &str) -> aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest {
    let mut e = event("$connect", id, None, None);
    e.request_context.connected_at = i64::try_from(now_millis()).unwrap();
    e
}

#[tokio::test]
async fn a_connect_writes_one_line_with_the_events_stage() {
    let capture = Capture::default();
    let connect = websocket(harness(), Integration::Connect);
    run(&connect, connect_event("c1"), &capture).await;
    assert_eq!(only_line(&capture, "test"), counts(&[("connects", 1)]));
    // The accumulator is per invocation: the next line counts the next connect only.
    run(&connect, connect_event("c2"), &capture).await;
    assert_eq!(only_line(&capture, "test"), counts(&[("connects", 1)]));
}

#[tokio::test]
async fn a_send_counts_its_frame_and_its_fan_out() {
    let capture = Capture::default();
    let mut h = harness();
    h.app.config.management_endpoint = Some(ENDPOINT.to_owned());
    let management = Arc::clone(&h.management);
    let connect = sharing(&h, Integration::Connect);
    let message = websocket(h, Integration::Message);
    for id in ["a", "b", "c", "d"] {
        run(&connect, connect_event(id), &capture).await;
        run(
            &message,
            event("join", id, Some(r#"{"action":"join","room":"r"}"#), None),
            &capture,
        )
        .await;
    }
    assert_eq!(capture.take().len(), 8);
    management.gone.lock().unwrap().insert("c".to_owned());
    management
        .throttle
        .lock()
        .unwrap()
        .insert("d".to_owned(), 1);
    let send = r#"{"action":"send","room":"r","event":"e","data":{"secret":"body"}}"#;
    run(&message, event("send", "a", Some(send), None), &capture).await;
    let lines = capture.0.lock().unwrap().clone();
    let mut metrics = only_line(&capture, "test");
    let ms = metrics.remove("fanout_ms").expect("fanout_ms");
    assert_eq!(
        ms.as_array().map(Vec::len),
        Some(1),
        "one duration per fan-out"
    );
    assert_eq!(
        metrics,
        counts(&[
            ("frames.send", 1),
            ("fanouts", 1),
            ("fanout_recipients", 3),
            ("fanout_delivered", 2),
            ("fanout_gone", 1),
            ("fanout_throttled_retries", 1),
        ])
    );
    // Metrics carry no message body.
    assert!(!lines[0].contains("secret"));
    // A refused frame counts its error code.
    run(&message, event("send", "a", Some("{"), None), &capture).await;
    assert_eq!(
        only_line(&capture, "test"),
        counts(&[("frames.invalid", 1), ("errors.bad_request", 1)])
    );
}

#[tokio::test]
async fn broadcasts_count_their_audience_batch_and_conflation() {
    let capture = Capture::default();
    let mut h = harness();
    h.app.config.management_endpoint = Some(ENDPOINT.to_owned());
    let connect = sharing(&h, Integration::Connect);
    for id in ["a", "b"] {
        run(&connect, connect_event(id), &capture).await;
    }
    capture.take();
    let broadcast = lambda::Broadcast {
        app: h.app,
        stage: "prod".to_owned(),
    };
    run(
        &broadcast,
        json!({"all": true, "event": "e", "data": 1}),
        &capture,
    )
    .await;
    let mut metrics = only_line(&capture, "prod");
    assert!(metrics.remove("fanout_ms").is_some());
    assert_eq!(
        metrics,
        counts(&[
            ("broadcasts.all", 1),
            ("fanouts", 1),
            ("fanout_recipients", 2),
            ("fanout_delivered", 2),
        ])
    );
    let record = |id: &str, sent: u64, body: &str| {
        json!({
            "messageId": id, "receiptHandle": "h", "body": body,
            "attributes": {"SentTimestamp": sent.to_string()},
            "messageAttributes": {}, "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:broadcast",
            "awsRegion": "us-east-1"
        })
    };
    let batch = json!({"Records": [
        record("m1", 10, r#"{"connections":["a"],"event":"p","data":1,"conflate":"k"}"#),
        record("m2", 20, r#"{"connections":["a"],"event":"p","data":2,"conflate":"k"}"#),
        record("m3", 30, r#"{"user":"nobody","event":"q"}"#),
    ]});
    run(&broadcast, batch, &capture).await;
    let mut metrics = only_line(&capture, "prod");
    let ms = metrics.remove("fanout_ms").expect("fanout_ms");
    assert_eq!(ms.as_array().map(Vec::len), Some(2));
    assert_eq!(
        metrics,
        counts(&[
            ("sqs_messages", 3),
            ("sqs_conflated", 1),
            ("broadcasts.connections", 1),
            ("broadcasts.user", 1),
            ("fanouts", 2),
            ("fanout_recipients", 1),
            ("fanout_delivered", 1),
        ])
    );
}

/// The authorizer's event for a `$connect` handshake on stage `prod` with
/// `headers` and `query`.
fn handshake(
    headers: Value,
    query: Value,
) -> aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest {
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc/prod/$connect",
        "headers": headers,
        "queryStringParameters": query,
        "requestContext": {"stage": "prod", "routeKey": "$connect"}
    }))
    .unwrap()
}

/// The metrics line the `$connect` authorizer configured by `config` logs for
/// `request`.
async fn authorizer_line(
    config: AuthConfig,
    request: aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest,
) -> BTreeMap<String, Value> {
    let capture = Capture::default();
    let authorizer = lambda::Authorizer(auth::Authorizer::new(config));
    run(&authorizer, request, &capture).await;
    only_line(&capture, "prod")
}

#[tokio::test]
async fn a_handshake_without_a_token_counts_a_refusal() {
    let config = AuthConfig {
        jwt: None,
        allow_anonymous: false,
        origins: Default::default(),
    };
    assert_eq!(
        authorizer_line(config, handshake(json!({}), json!({}))).await,
        counts(&[("handshakes_refused.no_token", 1)])
    );
}

#[tokio::test]
async fn a_handshake_from_another_origin_counts_an_origin_refusal() {
    let config = AuthConfig {
        jwt: None,
        allow_anonymous: true,
        origins: auth::origin::Origins {
            allowed: Some(vec!["https://app.example.com".to_owned()]),
            require: false,
        },
    };
    let request = handshake(
        json!({"Origin": "https://evil.example.com"}),
        json!({"token": "not-even-read"}),
    );
    assert_eq!(
        authorizer_line(config, request).await,
        counts(&[("handshakes_refused.origin", 1)])
    );
}

#[test]
fn every_counter_fits_one_directive() {
    let metrics = Metrics::default();
    for counter in Counter::ALL {
        metrics.incr(counter);
    }
    for ms in 0..150 {
        metrics.fanout(&FanoutStats {
            ms,
            ..FanoutStats::default()
        });
    }
    let line = emf::line(&metrics.drain(), "prod", now_millis()).unwrap();
    let (names, _) = check_emf(&line);
    assert_eq!(names.len(), Counter::ALL.len() + 1);
    // Durations past the per-metric limit of 100 values are left out.
    assert_eq!(names["fanout_ms"].as_array().map(Vec::len), Some(100));
    // Drained: nothing left, no line.
    assert_eq!(emf::line(&metrics.drain(), "prod", now_millis()), None);
}

#[test]
fn worker_jobs_write_their_rate_and_shards() {
    let metrics = Metrics::default();
    for rate in [600, 625] {
        metrics.worker(rate, 16);
        metrics.incr(Counter::FanoutJobsRun);
    }
    let snapshot = metrics.snapshot();
    let text = roomcast_core::metrics::prometheus::render(&snapshot, &[]);
    // roomcast dev shows the last job's figures as gauges.
    assert!(
        text.contains("roomcast_fanout_posts_per_sec 625\n"),
        "{text}"
    );
    assert!(text.contains("roomcast_fanout_shards 16\n"), "{text}");
    assert!(
        text.contains("roomcast_fanout_jobs_run_total 2\n"),
        "{text}"
    );
    let line = emf::line(&metrics.drain(), "prod", now_millis()).unwrap();
    let (names, _) = check_emf(&line);
    assert_eq!(names["fanout_posts_per_sec"], json!([600, 625]));
    assert_eq!(names["fanout_shards"], json!([16, 16]));
    assert_eq!(names["fanout_jobs_run"], json!(2));
    assert_eq!(emf::line(&metrics.drain(), "prod", now_millis()), None);
}
