//! The files in events/ are what API Gateway sends: each parses into its
//! aws_lambda_events type and runs through its handler, in a session's order.

mod support;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use roomcast_core::handlers::{connect, disconnect, message};
use serde_json::json;
use support::{body, harness};

fn load(name: &str) -> ApiGatewayWebsocketProxyRequest {
    let path = format!("{}/../../events/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test]
async fn every_sample_event_parses_and_runs_through_its_handler() {
    let h = harness();
    let e = load("connect");
    assert_eq!(e.request_context.route_key.as_deref(), Some("$connect"));
    assert_eq!(e.request_context.event_type.as_deref(), Some("CONNECT"));
    let connection_id = e.request_context.connection_id.clone().unwrap();
    assert!(!e.headers.is_empty(), "CONNECT events carry headers");
    assert_eq!(connect(&h.app, e).await.status_code, 200);

    // Another member, so the sample send has someone to reach.
    let mut other = load("join");
    other.request_context.connection_id = Some("other=".into());
    message(&h.app, other).await;

    for (name, route, reply) in [
        (
            "join",
            "join",
            json!({"type":"ack","id":1,"ok":true,"action":"join","room":"chat:general"}),
        ),
        (
            "send",
            "send",
            json!({"type":"ack","id":2,"ok":true,"action":"send","room":"chat:general","recipients":1,"delivered":1}),
        ),
        (
            "ping",
            "ping",
            json!({"type":"pong","id":4,"connectionId":"L0SM9cOFvHcCIhw="}),
        ),
        (
            "leave",
            "leave",
            json!({"type":"ack","id":3,"ok":true,"action":"leave","room":"chat:general"}),
        ),
    ] {
        let e = load(name);
        assert_eq!(
            e.request_context.route_key.as_deref(),
            Some(route),
            "{name}"
        );
        assert_eq!(
            e.request_context.event_type.as_deref(),
            Some("MESSAGE"),
            "{name}"
        );
        assert_eq!(
            e.request_context.connection_id.as_deref(),
            Some(connection_id.as_str())
        );
        assert_eq!(body(&message(&h.app, e).await), Some(reply), "{name}");
    }
    let got = h.management.received("other=");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"], json!({"text":"hello"}));

    let e = load("default");
    assert_eq!(e.request_context.route_key.as_deref(), Some("$default"));
    let reply = body(&message(&h.app, e).await).unwrap();
    assert_eq!(
        (reply["code"].clone(), reply["id"].clone()),
        (json!("unknown_action"), json!(5))
    );

    let e = load("disconnect");
    assert_eq!(e.request_context.event_type.as_deref(), Some("DISCONNECT"));
    assert!(e.request_context.disconnect_status_code.is_some());
    assert_eq!(disconnect(&h.app, e).await.status_code, 200);
    assert_eq!(h.store.connection(&connection_id, 0).await.unwrap(), None);
}
