//! The broadcast function in `roomcast dev`, over real sockets: invoked through the
//! Lambda Invoke endpoint by crates/client (the AWS SDK for Rust) and by boto3,
//! and fanned out under injected 410, 429 and 500 answers.

mod support;

use std::sync::Arc;

use futures::StreamExt;
use roomcast_client::{Audience, Broadcast, Broadcaster, Error, Stats};
use roomcast_core::store::Store;
use roomcast_core::store::memory::MemoryStore;
use roomcast_local::{FaultKind, Faults, RunningGateway};
use serde_json::{Value, json};
use support::{Client, WAIT, clients_in, connection_id, options, options_for, start, start_with};
use tokio_tungstenite::tungstenite::Message;

async fn broadcaster(gateway: &RunningGateway, function: &str) -> Broadcaster {
    let lambda = aws_sdk_lambda::Client::from_conf(
        aws_sdk_lambda::config::Builder::from(&support::sdk().await)
            .endpoint_url(gateway.lambda_endpoint())
            .build(),
    );
    Broadcaster::lambda(lambda, function)
}

fn assert_adds_up(stats: &Stats) {
    assert_eq!(
        stats.recipients,
        stats.delivered + stats.gone + stats.failed,
        "{stats:?}"
    );
}

in_both_deliveries! {
async fn client_broadcasts_through_the_lambda_endpoint(delivery: Delivery) {
    let gateway = start(options_for(delivery)).await;
    let mut clients = clients_in(&gateway, "news", 3).await;
    let mut outsider = Client::connect(&gateway.websocket_url()).await;
    let b = broadcaster(&gateway, "broadcast").await;

    let stats = b
        .invoke(
            &Broadcast::new(Audience::room("news"), "headline")
                .data(json!({"text": "hello"}))
                .unwrap(),
        )
        .await
        .expect("invoke succeeds");
    assert_eq!(
        (stats.recipients, stats.delivered, stats.gone, stats.failed),
        (3, 3, 0, 0)
    );
    for c in &mut clients {
        let event = c.next_json().await;
        assert_eq!(event["type"], "event");
        assert_eq!(event["room"], "news");
        assert_eq!(event["event"], "headline");
        assert_eq!(event["data"], json!({"text": "hello"}));
        assert_eq!(
            event["from"],
            json!({"connectionId": null, "userId": null, "service": true})
        );
    }
    outsider.assert_nothing_pending().await;

    // Connection targets with except, under the template's logical id.
    let [a, b_client, c] = &mut clients[..] else {
        unreachable!()
    };
    let a_id = connection_id(a, b_client, "ids").await;
    let c_id = connection_id(c, b_client, "ids2").await;
    let by_logical_id = broadcaster(&gateway, "BroadcastFunction").await;
    let stats = by_logical_id
        .invoke(
            &Broadcast::new(Audience::connections([a_id.clone(), c_id.clone()]), "direct")
                .except([c_id]),
        )
        .await
        .unwrap();
    assert_eq!((stats.recipients, stats.delivered), (1, 1));
    let event = a.next_json().await;
    assert_eq!(
        (event["event"].as_str(), &event["room"]),
        (Some("direct"), &Value::Null)
    );
    c.assert_nothing_pending().await;

    // All connections.
    let stats = b.invoke(&Broadcast::new(Audience::All, "all")).await.unwrap();
    assert_eq!((stats.recipients, stats.delivered), (4, 4));
    for c in clients.iter_mut().chain([&mut outsider]) {
        assert_eq!(c.next_json().await["event"], "all");
    }

    // A bad request is a function error with a clear message.
    let err = b
        .invoke(&Broadcast::new(Audience::room("no spaces"), "e"))
        .await
        .unwrap_err();
    match err {
        Error::Function {
            error_type,
            message,
        } => {
            assert_eq!(error_type, "InvalidBroadcast");
            assert!(message.contains("room"), "{message}");
        }
        other => panic!("expected a function error, got {other:?}"),
    }
    gateway.shutdown().await.unwrap();
}
}

in_both_deliveries! {
async fn retries_deliver_everything_under_injected_429_and_500(delivery: Delivery) {
    let mut opts = options_for(delivery);
    opts.faults =
        Some(Faults::new(0.5, vec![FaultKind::Throttled, FaultKind::ServerError], 7).unwrap());
    let gateway = start(opts).await;
    let mut clients = clients_in(&gateway, "busy", 20).await;
    let stats = broadcaster(&gateway, "broadcast")
        .await
        .invoke(
            &Broadcast::new(Audience::room("busy"), "tick")
                .data(1)
                .unwrap(),
        )
        .await
        .unwrap();
    assert_adds_up(&stats);
    assert_eq!(
        (stats.recipients, stats.delivered, stats.gone, stats.failed),
        (20, 20, 0, 0)
    );
    assert!(stats.throttled_retries > 0, "{stats:?}");
    for c in &mut clients {
        let event = c.next_json().await;
        assert_eq!(
            (event["event"].as_str(), &event["data"]),
            (Some("tick"), &json!(1))
        );
    }
    gateway.shutdown().await.unwrap();
}
}

/// What a member saw of a broadcast: the event, or its connection closing.
async fn event_or_close(client: &mut Client) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(WAIT, client.stream().next())
            .await
            .expect("an event or a close in time");
        match message {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
                return None;
            }
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

in_both_deliveries! {
async fn gone_connections_are_cleaned_up_under_injected_410(delivery: Delivery) {
    let mut opts = options_for(delivery);
    opts.faults = Some(
        // Seeded: the first 20 decisions (one per member at least) include 410s.
        Faults::new(
            0.5,
            vec![
                FaultKind::Gone,
                FaultKind::Throttled,
                FaultKind::ServerError,
            ],
            3,
        )
        .unwrap(),
    );
    let store = Arc::new(MemoryStore::new());
    let gateway = start_with(opts, store.clone(), "test".into()).await;
    let mut clients = clients_in(&gateway, "lossy", 20).await;
    let stats = broadcaster(&gateway, "broadcast")
        .await
        .invoke(&Broadcast::new(Audience::room("lossy"), "e"))
        .await
        .unwrap();
    assert_adds_up(&stats);
    assert_eq!((stats.recipients, stats.failed), (20, 0), "{stats:?}");
    assert!(stats.gone > 0, "{stats:?}");
    let mut received = 0;
    for c in &mut clients {
        if event_or_close(c).await.is_some() {
            received += 1;
        }
    }
    assert_eq!(received, stats.delivered);
    // The fan-out removed the gone connections before answering.
    let now = roomcast_core::store::now_secs();
    let page = store.members_page("lossy", 0, None, 100, now).await.unwrap();
    assert_eq!(page.members.len() as u64, stats.delivered);
    let all = store.connections_page(None, 100, now).await.unwrap();
    assert_eq!(all.connection_ids.len() as u64, stats.delivered);
    gateway.shutdown().await.unwrap();
}
}

/// Invokes the broadcast function on roomcast dev through another AWS SDK, with
/// nothing but the endpoint changed, and checks both members of `room` got the event.
/// `command` gets the Lambda endpoint and prints the function's JSON result.
async fn external_sdk_broadcasts(
    room: &str,
    event: &str,
    command: impl FnOnce(String) -> std::process::Command + Send + 'static,
) {
    let gateway = start(options()).await;
    let mut clients = clients_in(&gateway, room, 2).await;
    let mut command = command(gateway.lambda_endpoint());
    command
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the SDK's program runs");
    assert!(
        output.status.success(),
        "{room}: the SDK call failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{room}: {e}: {}", String::from_utf8_lossy(&output.stdout)));
    assert_eq!(
        (&stats["recipients"], &stats["delivered"]),
        (&json!(2), &json!(2))
    );
    for c in &mut clients {
        let got = c.next_json().await;
        assert_eq!(
            (got["event"].as_str(), &got["data"]),
            (Some(event), &json!([1, 2]))
        );
    }
    gateway.shutdown().await.unwrap();
}

/// boto3 (`pip install boto3`; .ci/run installs it).
#[tokio::test]
async fn boto3_invokes_the_broadcast_function() {
    let script = r#"
import json, os, boto3
client = boto3.client("lambda", endpoint_url=os.environ["ENDPOINT"])
out = client.invoke(
    FunctionName="BroadcastFunction",
    Payload=json.dumps({"room": "py", "event": "from-python", "data": [1, 2]}),
)
assert "FunctionError" not in out, out
print(out["Payload"].read().decode())
"#;
    external_sdk_broadcasts("py", "from-python", move |endpoint| {
        let mut c = std::process::Command::new("python3");
        c.args(["-c", script]).env("ENDPOINT", endpoint);
        c
    })
    .await;
}

/// The AWS CLI (`pip install awscli`, v1; .ci/run installs it), run as
/// `python3 -m awscli` so no console-script shim is needed on PATH. v1 takes the
/// payload as raw text; v2 needs `--cli-binary-format raw-in-base64-out`.
#[tokio::test]
async fn aws_cli_invokes_the_broadcast_function() {
    // The CLI writes the payload to a file and prints its own summary; keep them apart.
    let out = std::env::temp_dir().join(format!("roomcast-cli-{}.json", std::process::id()));
    let script = r#"
fe=$(python3 -m awscli lambda invoke --endpoint-url "$ENDPOINT" --function-name broadcast \
  --payload '{"room":"cli","event":"from-cli","data":[1,2]}' \
  --query FunctionError --output text "$OUT") || exit 1
[ "$fe" = None ] || { echo "function error: $fe" >&2; exit 1; }
cat "$OUT"
"#;
    external_sdk_broadcasts("cli", "from-cli", move |endpoint| {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", script])
            .env("ENDPOINT", endpoint)
            .env("OUT", out);
        c
    })
    .await;
}

/// The AWS SDK for JavaScript v3 (`@aws-sdk/client-lambda`, pinned in infra/package.json).
#[tokio::test]
async fn javascript_sdk_invokes_the_broadcast_function() {
    let script = r#"
const { LambdaClient, InvokeCommand } = require("@aws-sdk/client-lambda");
const client = new LambdaClient({ endpoint: process.env.ENDPOINT });
client
  .send(new InvokeCommand({
    FunctionName: "broadcast",
    Payload: JSON.stringify({ room: "js", event: "from-js", data: [1, 2] }),
  }))
  .then((out) => {
    if (out.FunctionError) throw new Error(out.FunctionError);
    process.stdout.write(Buffer.from(out.Payload).toString());
  })
  .catch((e) => { console.error(e); process.exit(1); });
"#;
    let infra = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra");
    external_sdk_broadcasts("js", "from-js", move |endpoint| {
        let mut c = std::process::Command::new("node");
        c.args(["-e", script])
            .current_dir(infra)
            .env("ENDPOINT", endpoint);
        c
    })
    .await;
}
