//! `roomcast dev` end to end, with the in-memory store: real WebSocket clients, the
//! real AWS SDK management client and raw HTTP against a gateway on a free port.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use roomcast_core::store::failing::{Call, FailingStore};
use serde_json::json;
use support::{Client, WAIT, http, options, options_for, start, start_with};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

in_both_deliveries! {
async fn rooms_reach_members_only_and_disconnect_cleans_up(delivery: Delivery) {
    let gateway = start(options_for(delivery)).await;
    let url = gateway.websocket_url();
    let (mut alice, mut bob, mut carol) = support::alice_bob_and_carol(&url).await;

    alice
        .send(json!({"action": "send", "room": "chat:1", "event": "msg", "data": {"text": "hi"}, "id": 7}))
        .await;
    let event = bob.next_json().await;
    assert_eq!(event["type"], "event");
    assert_eq!(event["room"], "chat:1");
    assert_eq!(event["data"], json!({"text": "hi"}));
    let ack = alice.next_json().await;
    assert_eq!(
        (
            &ack["type"],
            &ack["id"],
            &ack["recipients"],
            &ack["delivered"]
        ),
        (&json!("ack"), &json!(7), &json!(1), &json!(1)),
        "{ack}"
    );
    // The ack comes after the fan-out: anything for carol would already be queued.
    carol.assert_nothing_pending().await;
    alice.assert_nothing_pending().await;

    // Leave: later sends skip bob.
    let ack = bob
        .request(json!({"action": "leave", "room": "chat:1", "id": "l"}))
        .await;
    assert_eq!(ack["action"], "leave", "{ack}");
    let ack = alice
        .request(json!({"action": "send", "room": "chat:1", "event": "msg", "id": 8}))
        .await;
    assert_eq!(ack["recipients"], 0, "{ack}");
    bob.assert_nothing_pending().await;

    // Disconnect: carol joins, learns nothing, closes; $disconnect removes her.
    let carol_id = support::connection_id(&mut carol, &mut bob, "chat:2").await;
    carol.join("chat:1").await;
    carol.close().await;
    support::until_removed(gateway.gateway().app().store.as_ref(), &carol_id).await;
    support::assert_send_reaches_nobody(&mut alice, "chat:1", 9).await;

    gateway.shutdown().await.expect("clean shutdown");
}
}

#[tokio::test]
async fn routes_by_action_and_falls_back_to_default() {
    let gateway = start(options()).await;
    let mut client = Client::connect(&gateway.websocket_url()).await;
    // Not JSON: $default, whose handler answers with an error frame.
    client.send_raw(Message::text("hello")).await;
    let reply = client.next_json().await;
    assert_eq!(
        (&reply["type"], &reply["code"]),
        (&json!("error"), &json!("bad_request"))
    );
    // An unknown action goes to $default too.
    let reply = client.request(json!({"action": "dance"})).await;
    assert_eq!(reply["code"], "unknown_action", "{reply}");
    // WebSocket pings are answered.
    client.send_raw(Message::Ping(vec![9u8].into())).await;
    let pong = tokio::time::timeout(WAIT, async {
        loop {
            match futures::StreamExt::next(client.stream()).await {
                Some(Ok(Message::Pong(data))) => return data,
                Some(Ok(_)) => {}
                other => panic!("no pong: {other:?}"),
            }
        }
    })
    .await
    .expect("pong in time");
    assert_eq!(&pong[..], &[9u8]);
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn management_api_posts_gets_and_deletes_through_the_sdk() {
    let gateway = start(options()).await;
    let url = gateway.websocket_url();
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    let alice_id = support::connection_id(&mut alice, &mut bob, "r").await;
    assert!(alice_id.ends_with('='), "API Gateway-like id: {alice_id}");

    let sdk = support::management(&gateway.management_endpoint()).await;
    sdk.post_to_connection()
        .connection_id(&alice_id)
        .data(Blob::new("from the server"))
        .send()
        .await
        .expect("post succeeds");
    assert_eq!(alice.next_text().await, "from the server");

    // The stage-less path works too.
    let root = support::management(&format!("http://{}", gateway.local_addr())).await;
    root.post_to_connection()
        .connection_id(&alice_id)
        .data(Blob::new("again"))
        .send()
        .await
        .expect("post without the stage succeeds");
    assert_eq!(alice.next_text().await, "again");

    let info = sdk
        .get_connection()
        .connection_id(&alice_id)
        .send()
        .await
        .expect("get succeeds");
    assert!(info.connected_at().is_some());
    assert!(info.last_active_at().is_some());
    let identity = info.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));

    sdk.delete_connection()
        .connection_id(&alice_id)
        .send()
        .await
        .expect("delete succeeds");
    let (code, _) = alice.expect_close().await;
    assert_eq!(code, 1000);
    support::until_removed(gateway.gateway().app().store.as_ref(), &alice_id).await;
    let err = sdk
        .post_to_connection()
        .connection_id(&alice_id)
        .data(Blob::new("late"))
        .send()
        .await
        .expect_err("deleted connection is gone");
    assert!(matches!(
        err.into_service_error(),
        PostToConnectionError::GoneException(_)
    ));

    // Too large for API Gateway: 413, typed.
    let bob_id = support::connection_id(&mut bob, &mut Client::connect(&url).await, "s").await;
    let err = sdk
        .post_to_connection()
        .connection_id(&bob_id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await
        .expect_err("oversized post is refused");
    assert!(matches!(
        err.into_service_error(),
        PostToConnectionError::PayloadTooLargeException(_)
    ));
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn unknown_connections_are_gone() {
    let gateway = start(options()).await;
    let sdk = support::management(&gateway.management_endpoint()).await;
    let err = sdk
        .post_to_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .data(Blob::new("x"))
        .send()
        .await
        .expect_err("unknown id");
    assert!(matches!(
        err.into_service_error(),
        PostToConnectionError::GoneException(_)
    ));
    let err = sdk
        .get_connection()
        .connection_id("nope")
        .send()
        .await
        .expect_err("unknown id");
    assert!(matches!(
        err.into_service_error(),
        GetConnectionError::GoneException(_)
    ));
    let err = sdk
        .delete_connection()
        .connection_id("nope")
        .send()
        .await
        .expect_err("unknown id");
    assert!(matches!(
        err.into_service_error(),
        DeleteConnectionError::GoneException(_)
    ));

    let raw = http(
        gateway.local_addr(),
        "POST",
        "/local/@connections/abc%3D",
        &[],
        b"x",
    )
    .await;
    assert_eq!(raw.status, 410);
    assert_eq!(raw.header("x-amzn-ErrorType"), Some("GoneException"));
    // Paths the gateway does not serve: 403, as API Gateway answers.
    let raw = http(gateway.local_addr(), "GET", "/other-stage/x", &[], b"").await;
    assert_eq!(raw.status, 403);
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let gateway = start(options()).await;
    let mut client = Client::connect(&gateway.websocket_url()).await;
    // One 40 KB frame: over the 32 KB frame limit.
    let body = json!({"action": "ping", "pad": "x".repeat(40 * 1024)}).to_string();
    client.send_raw(Message::text(body)).await;
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1009);
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let gateway = start(options()).await;
    let mut client = Client::connect(&gateway.websocket_url()).await;
    // Five 30 KB frames of one 150 KB message: each frame fits, the message does not.
    let chunk = vec![b'x'; 30 * 1024];
    for i in 0..5 {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let frame = Frame::message(chunk.clone(), OpCode::Data(opcode), i == 4);
        // The gateway may close before the last fragments: a failed send is fine.
        let _ = client.try_send(Message::Frame(frame)).await;
    }
    let (code, _) = client.expect_close().await;
    assert_eq!(code, 1009);
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn idle_connections_close_with_going_away() {
    let mut opts = options();
    opts.idle_timeout = Duration::from_secs(1);
    let gateway = start(opts).await;
    let url = gateway.websocket_url();
    let (mut idle, mut witness) = (Client::connect(&url).await, Client::connect(&url).await);
    let idle_id = support::connection_id(&mut idle, &mut witness, "r").await;
    let (code, reason) = idle.expect_close().await;
    assert_eq!((code, reason.as_str()), (1001, "Going away"));
    support::until_removed(gateway.gateway().app().store.as_ref(), &idle_id).await;
    gateway.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_closes_connections_with_going_away() {
    let gateway = start(options()).await;
    let mut client = Client::connect(&gateway.websocket_url()).await;
    client.assert_nothing_pending().await;
    let (closed, stopped) = tokio::join!(client.expect_close(), gateway.shutdown());
    assert_eq!(closed.0, 1001);
    stopped.expect("clean shutdown");
}

#[tokio::test]
async fn handshake_is_refused_with_the_connect_status() {
    let gateway = start_with(
        options(),
        // `put_connection` fails, as it would when DynamoDB is down.
        Arc::new(FailingStore::new(|call| call == Call::PutConnection)),
        "test".into(),
    )
    .await;
    let result = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(gateway.websocket_url()),
    )
    .await
    .expect("answer in time");
    let err = result.expect_err("handshake refused");
    assert!(support::is_tungstenite_http_error(&err, 500), "{err:?}");
    gateway.shutdown().await.expect("clean shutdown");
}

in_both_deliveries! {
async fn lambda_invoke_api_runs_the_functions(delivery: Delivery) {
    let gateway = start(options_for(delivery)).await;
    let addr = gateway.local_addr();
    let event = json!({
        "requestContext": {
            "routeKey": "ping", "eventType": "MESSAGE", "connectionId": "abc=",
            "connectedAt": 1, "requestTimeEpoch": 1, "stage": "local"
        },
        "body": "{\"action\":\"ping\",\"id\":1}",
        "isBase64Encoded": false
    });
    let path = "/2015-03-31/functions/message/invocations";
    let ok = http(addr, "POST", path, &[], event.to_string().as_bytes()).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("X-Amz-Function-Error"), None);
    let body = ok.json();
    assert_eq!(body["statusCode"], 200, "{body}");
    assert_eq!(body["body"], r#"{"type":"pong","id":1,"connectionId":"abc="}"#, "{body}");

    let arn =
        "/2015-03-31/functions/arn:aws:lambda:us-east-1:000000000000:function:message/invocations";
    let ok = http(addr, "POST", arn, &[], event.to_string().as_bytes()).await;
    assert_eq!(ok.status, 200, "{ok:?}");

    let missing = http(
        addr,
        "POST",
        "/2015-03-31/functions/nope/invocations",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("x-amzn-ErrorType"),
        Some("ResourceNotFoundException")
    );
    assert!(
        missing.json()["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope")
    );

    let bad = http(addr, "POST", path, &[], br#"{"requestContext": 5}"#).await;
    assert_eq!(bad.status, 200);
    assert_eq!(bad.header("X-Amz-Function-Error"), Some("Unhandled"));
    let body = bad.json();
    assert!(
        body["errorType"].is_string() && body["errorMessage"].is_string(),
        "{body}"
    );

    let not_json = http(addr, "POST", path, &[], b"{").await;
    assert_eq!(not_json.status, 400);
    assert_eq!(
        not_json.header("x-amzn-ErrorType"),
        Some("InvalidRequestContentException")
    );

    let dry = http(
        addr,
        "POST",
        path,
        &[("X-Amz-Invocation-Type", "DryRun")],
        b"{}",
    )
    .await;
    assert_eq!(dry.status, 204);
    gateway.shutdown().await.expect("clean shutdown");
}
}

in_both_deliveries! {
async fn lambda_sdk_invokes_the_functions(delivery: Delivery) {
    use aws_sdk_lambda::operation::invoke::InvokeError;
    let gateway = start(options_for(delivery)).await;
    let config = aws_sdk_lambda::config::Builder::from(&support::sdk().await)
        .endpoint_url(gateway.lambda_endpoint())
        .build();
    let lambda = aws_sdk_lambda::Client::from_conf(config);
    let event = json!({
        "requestContext": {
            "routeKey": "$default", "eventType": "MESSAGE", "connectionId": "abc=",
            "connectedAt": 1, "requestTimeEpoch": 1, "stage": "local"
        },
        "body": "not json",
        "isBase64Encoded": false
    });
    let out = lambda
        .invoke()
        .function_name("message")
        .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
        .send()
        .await
        .expect("invoke succeeds");
    assert_eq!(out.status_code(), 200);
    assert_eq!(out.function_error(), None);
    let response: serde_json::Value =
        serde_json::from_slice(out.payload().expect("payload").as_ref()).expect("JSON payload");
    assert_eq!(response["statusCode"], 200, "{response}");
    assert!(
        response["body"]
            .as_str()
            .unwrap_or_default()
            .contains("bad_request")
    );

    let out = lambda
        .invoke()
        .function_name("message")
        .payload(aws_sdk_lambda::primitives::Blob::new(
            r#"{"requestContext":[]}"#,
        ))
        .send()
        .await
        .expect("a function error is still a 200");
    assert_eq!(out.function_error(), Some("Unhandled"));

    let err = lambda
        .invoke()
        .function_name("no-such-function")
        .send()
        .await
        .expect_err("no such function");
    assert!(matches!(
        err.into_service_error(),
        InvokeError::ResourceNotFoundException(_)
    ));
    gateway.shutdown().await.expect("clean shutdown");
}
}

in_both_deliveries! {
    /// The handlers' management client answers as the `@connections` endpoint does:
    /// 200 and one frame for an open connection, 413 over 128 KB, 410 for an unknown
    /// id, and 429 once a client that reads nothing has a full outbound queue (256
    /// frames; the byte budget, which closes it instead, is lifted: tests/tests/stuck.rs).
    async fn handler_posts_answer_as_the_endpoint_does(delivery: Delivery) {
        use roomcast_core::management::PostError;
        let options = roomcast_local::GatewayOptions {
            max_outbound_bytes: usize::MAX,
            ..options_for(delivery)
        };
        let gateway = start(options).await;
        let app = gateway.gateway().app();
        let endpoint = gateway.management_endpoint();
        let mut reader = Client::connect(&gateway.websocket_url()).await;
        let mut witness = Client::connect(&gateway.websocket_url()).await;
        let reader_id = support::connection_id(&mut reader, &mut witness, "r").await;
        app.management
            .post(&endpoint, &reader_id, r#"{"n":1}"#.into())
            .await
            .expect("posted");
        assert_eq!(reader.next_text().await, r#"{"n":1}"#);
        let too_large = axum::body::Bytes::from(vec![b'x'; 128 * 1024 + 1]);
        assert_eq!(
            app.management.post(&endpoint, &reader_id, too_large).await,
            Err(PostError::PayloadTooLarge)
        );
        assert_eq!(
            app.management.post(&endpoint, "nobody=", "x".into()).await,
            Err(PostError::Gone)
        );

        // A client that stops reading: the socket's buffers fill, then its queue.
        let mut stalled = Client::connect(&gateway.websocket_url()).await;
        let stalled_id = support::connection_id(&mut stalled, &mut witness, "s").await;
        let big = axum::body::Bytes::from(vec![b'y'; 100 * 1024]);
        let mut outcome = Ok(());
        for _ in 0..5_000 {
            outcome = app.management.post(&endpoint, &stalled_id, big.clone()).await;
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome, Err(PostError::Throttled));
        // Its task waits on a socket nobody reads: closing the client ends it.
        drop(stalled);
        gateway.shutdown().await.unwrap();
    }
}
