//! The real adapters over the wire: the AWS SDK management client against a local
//! HTTP server answering as API Gateway does, and the route handlers over the
//! DynamoDB store against dynalite.

#[path = "support/http_sink.rs"]
mod http_sink;
mod support;

use std::sync::Arc;

use bytes::Bytes;
use roomcast_core::management::apigw::ApiGatewayManagement;
use roomcast_core::management::{Management, PostError};
use roomcast_core::store::Store;
use roomcast_core::store::dynamo::DynamoStore;
use tokio::net::TcpListener;

fn sdk_config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut builder = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"),
        ));
    if let Some(endpoint) = endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}

#[tokio::test]
async fn sdk_management_adapter_maps_api_gateway_errors() {
    let (endpoint, seen) = http_sink::serve().await;
    let management = ApiGatewayManagement::new(&sdk_config(None));
    let data = Bytes::from_static(b"{}");
    assert_eq!(
        management.post(&endpoint, "ok+/=", data.clone()).await,
        Ok(())
    );
    assert_eq!(
        management.post(&endpoint, "gone=", data.clone()).await,
        Err(PostError::Gone)
    );
    assert_eq!(
        management.post(&endpoint, "big", data.clone()).await,
        Err(PostError::PayloadTooLarge)
    );
    assert_eq!(
        management.post(&endpoint, "busy", data.clone()).await,
        Err(PostError::Throttled)
    );
    assert_eq!(
        management.post(&endpoint, "nope", data.clone()).await,
        Err(PostError::Forbidden)
    );
    assert!(matches!(
        management.post(&endpoint, "boom", data.clone()).await,
        Err(PostError::Server { status: 500, .. })
    ));
    assert_eq!(
        management.delete(&endpoint, "gone=").await,
        Err(PostError::Gone)
    );
    assert_eq!(management.delete(&endpoint, "ok").await, Ok(()));
    // No SDK-level retries: the fan-out engine owns retrying, and each call is one request.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 8, "{seen:?}");
    // The id is URL-encoded in the path, under the endpoint's stage.
    assert_eq!(seen[0], "POST /test/@connections/ok%2B%2F%3D HTTP/1.1");
    assert!(seen[7].starts_with("DELETE /test/@connections/ok "));

    // Nobody listening: a transport error, not a panic.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let result = management
        .post(&format!("http://{closed}/x"), "a", data)
        .await;
    assert!(matches!(result, Err(PostError::Transport(_))), "{result:?}");
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn handlers_over_dynamodb_clean_up_gone_connections() {
    use roomcast_core::handlers::{connect, disconnect, message};
    use support::{body, event, harness_with};

    let endpoint = std::env::var("ROOMCAST_TEST_DYNAMODB_ENDPOINT")
        .expect("ROOMCAST_TEST_DYNAMODB_ENDPOINT must point at dynalite: run scripts/test");
    let sdk = sdk_config(Some(&endpoint));
    let table = format!(
        "handlers-{}-{}",
        std::process::id(),
        roomcast_core::store::now_millis()
    );
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    store.ensure_table().await.unwrap();
    let store: Arc<dyn Store> = Arc::new(store);
    let h = harness_with(store.clone());

    for c in ["a=", "b=", "dead="] {
        assert_eq!(
            connect(&h.app, event("$connect", c, None, None))
                .await
                .status_code,
            200
        );
        for room in ["r", "s"] {
            let frame = format!(r#"{{"action":"join","room":"{room}"}}"#);
            message(&h.app, event("join", c, Some(&frame), None)).await;
        }
    }
    h.management.gone.lock().unwrap().insert("dead=".into());
    let reply = body(
        &message(
            &h.app,
            event(
                "send",
                "a=",
                Some(r#"{"action":"send","room":"r","event":"e","id":1}"#),
                None,
            ),
        )
        .await,
    )
    .unwrap();
    assert_eq!(
        (reply["recipients"].as_u64(), reply["delivered"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(h.management.received("b=").len(), 1);
    // The gone connection's items are gone from DynamoDB, in every room.
    assert_eq!(store.member("r", "dead=", 0).await.unwrap(), None);
    assert_eq!(store.member("s", "dead=", 0).await.unwrap(), None);

    assert_eq!(
        disconnect(&h.app, event("$disconnect", "b=", None, None))
            .await
            .status_code,
        200
    );
    let reply = body(
        &message(
            &h.app,
            event(
                "send",
                "a=",
                Some(r#"{"action":"send","room":"s","event":"e","id":2}"#),
                None,
            ),
        )
        .await,
    )
    .unwrap();
    assert_eq!(reply["recipients"].as_u64(), Some(0));
    let reply = body(
        &message(
            &h.app,
            event(
                "send",
                "b=",
                Some(r#"{"action":"send","room":"s","event":"e","id":3}"#),
                None,
            ),
        )
        .await,
    )
    .unwrap();
    assert_eq!(reply["code"], "not_member");
}
