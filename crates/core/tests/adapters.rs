//! The real adapters over the wire: the management adapter against a local HTTP
//! server answering as API Gateway does (its SigV4 signatures checked against the
//! AWS SDK client's), and the route handlers over the DynamoDB store against
//! dynalite.

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
async fn management_adapter_maps_api_gateway_errors() {
    let (endpoint, seen) = http_sink::serve().await;
    let management = ApiGatewayManagement::new(&sdk_config(None));
    let data = Bytes::from_static(b"{}");
    for (connection_id, answer) in [
        ("ok+/=", Ok(())),
        ("gone=", Err(PostError::Gone)),
        ("big", Err(PostError::PayloadTooLarge)),
        ("busy", Err(PostError::Throttled)),
        ("nope", Err(PostError::Forbidden)),
    ] {
        let posted = management
            .post(&endpoint, connection_id, data.clone())
            .await;
        assert_eq!(posted, answer, "{connection_id}");
    }
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
    assert_eq!(seen[0].line, "POST /test/@connections/ok%2B%2F%3D HTTP/1.1");
    assert_eq!(seen[0].body, b"{}");
    assert!(seen[7].line.starts_with("DELETE /test/@connections/ok "));
    for request in &seen {
        verify_signature(request);
    }

    // Nobody listening: no answer, which the fan-out retries like a 5xx.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let result = management
        .post(&format!("http://{closed}/x"), "a", data)
        .await;
    assert!(
        matches!(&result, Err(e @ PostError::Unreachable(_)) if e.is_retryable()),
        "{result:?}"
    );
}

#[tokio::test]
#[ignore = "needs dynalite: run scripts/test"]
async fn handlers_over_dynamodb_clean_up_gone_connections() {
    use roomcast_core::handlers::{connect, disconnect, message};
    use support::{event, harness_with};

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
    let reply = support::anonymous_send(&h.app, "a=", "r", 1).await;
    assert_eq!(
        (reply["recipients"].as_u64(), reply["delivered"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(h.management.received("b=").len(), 1);
    // The gone connection's items are gone from DynamoDB, in every room.
    assert_eq!(store.member("r", 0, "dead=", 0).await.unwrap(), None);
    assert_eq!(store.member("s", 0, "dead=", 0).await.unwrap(), None);

    assert_eq!(
        disconnect(&h.app, event("$disconnect", "b=", None, None))
            .await
            .status_code,
        200
    );
    let reply = support::anonymous_send(&h.app, "a=", "s", 2).await;
    assert_eq!(reply["recipients"].as_u64(), Some(0));
    let reply = support::anonymous_send(&h.app, "b=", "s", 3).await;
    assert_eq!(reply["code"], "not_member");
}

/// Recomputes a received request's SigV4 signature from what went over the wire
/// (method, path, the headers it lists as signed, body, x-amz-date) with AWS's
/// signer, and checks it is the one the request carries: what was signed is what
/// was sent.
fn verify_signature(request: &http_sink::Seen) {
    if request.line.starts_with("POST") {
        let authorization = request.header("authorization").expect("authorization");
        assert!(authorization.contains("content-length"), "{authorization}");
    }
    verify_signed(request, "execute-api");
}

/// [`verify_signature`] for any service.
fn verify_signed(request: &http_sink::Seen, service: &str) {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let header = |name: &str| {
        let value = request.header(name);
        value.unwrap_or_else(|| panic!("{name} missing from {request:?}"))
    };
    let authorization = header("authorization");
    let signed: Vec<&str> = authorization
        .split("SignedHeaders=")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .expect("SignedHeaders")
        .split(';')
        .collect();
    for required in ["host", "x-amz-date"] {
        assert!(
            signed.contains(&required),
            "{required} not signed: {authorization}"
        );
    }
    let date = header("x-amz-date");
    let time = chrono_free_parse(date);
    let mut parts = request.line.split(' ');
    let method = parts.next().unwrap();
    let path = parts.next().unwrap();
    let url = format!("http://{}{path}", header("host"));
    let headers: Vec<(&str, &str)> = signed.iter().map(|name| (*name, header(name))).collect();
    let identity =
        aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.into_iter(),
        SignableBody::Bytes(&request.body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let expected = instructions
        .headers()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.to_owned())
        .unwrap();
    assert_eq!(authorization, expected, "{request:?}");
}

/// `20261126T141500Z` as a `SystemTime`.
fn chrono_free_parse(amz_date: &str) -> std::time::SystemTime {
    let num = |range: std::ops::Range<usize>| amz_date[range].parse::<i64>().unwrap();
    let (y, m, d) = (num(0..4), num(4..6), num(6..8));
    let (hh, mm, ss) = (num(9..11), num(11..13), num(13..15));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap())
}

/// The verifier itself, on what the AWS SDK client sends for the same calls: it
/// accepts the SDK's requests, and the SDK signs the same headers and path as the
/// adapter (besides its own `amz-sdk-*`/`x-amz-user-agent` bookkeeping headers).
#[tokio::test]
async fn adapter_signs_requests_as_the_sdk_client_does() {
    let (endpoint, seen) = http_sink::serve().await;
    let sdk = aws_sdk_apigatewaymanagement::Client::from_conf(
        aws_sdk_apigatewaymanagement::config::Builder::from(&sdk_config(Some(&endpoint))).build(),
    );
    sdk.post_to_connection()
        .connection_id("ok+/=")
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(
            b"{}".to_vec(),
        ))
        .send()
        .await
        .unwrap();
    sdk.delete_connection()
        .connection_id("ok+/=")
        .send()
        .await
        .unwrap();
    let adapter = ApiGatewayManagement::new(&sdk_config(None));
    adapter
        .post(&endpoint, "ok+/=", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    adapter.delete(&endpoint, "ok+/=").await.unwrap();
    // As on Lambda: temporary credentials, whose session token is sent and signed.
    let lambda_like = aws_config::SdkConfig::builder()
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new(
                "test",
                "test",
                Some("session/token+=".into()),
                None,
                "static",
            ),
        ))
        .build();
    ApiGatewayManagement::new(&lambda_like)
        .post(&endpoint, "ok", Bytes::from_static(b"x"))
        .await
        .unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    let with_token = &seen[4];
    assert!(
        with_token
            .headers
            .contains(&("x-amz-security-token".into(), "session/token+=".into()))
    );
    verify_signature(with_token);
    let signed_headers = |request: &http_sink::Seen| -> Vec<String> {
        let authorization = request.header("authorization").unwrap();
        authorization
            .split("SignedHeaders=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap()
            .split(';')
            .filter(|h| !h.starts_with("amz-sdk-") && *h != "x-amz-user-agent")
            .map(str::to_owned)
            .collect()
    };
    for (sdk_request, ours) in [(&seen[0], &seen[2]), (&seen[1], &seen[3])] {
        verify_signature(sdk_request);
        verify_signature(ours);
        assert_eq!(sdk_request.line, ours.line);
        assert_eq!(sdk_request.body, ours.body);
        assert_eq!(signed_headers(sdk_request), signed_headers(ours));
    }
}

/// Parameter Store's GetParameter as the service answers it: the value of
/// `/roomcast/policies` and `/roomcast/secret`, `ParameterNotFound` otherwise.
fn parameter_store(request: &http_sink::Seen) -> (&'static str, &'static str, String) {
    let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    let value = match body["Name"].as_str() {
        Some("/roomcast/policies:3") => r#"{"default":{"join":"anyone","send":"anyone"}}"#,
        Some("/roomcast/secret") => "0123456789abcdef0123456789abcdef",
        _ => {
            let error = r#"{"__type":"com.amazonaws.ssm#ParameterNotFound","message":""}"#;
            return ("400 Bad Request", "", error.to_owned());
        }
    };
    let answer = serde_json::json!({"Parameter": {"Name": body["Name"], "Type": "SecureString", "Value": value, "Version": 3}});
    ("200 OK", "", answer.to_string())
}

#[tokio::test]
async fn parameter_store_reads_signed_and_decrypted() {
    use roomcast_core::{ParameterError, ParameterStore};
    let (endpoint, seen) = http_sink::serve_with(parameter_store).await;
    let store = ParameterStore::new(&sdk_config(Some(&endpoint))).unwrap();
    let policies = roomcast_core::config::policies_from(&store, "/roomcast/policies:3")
        .await
        .unwrap();
    assert_eq!(
        policies.for_room("any:room").join,
        roomcast_core::policy::Rule::Anyone
    );
    assert_eq!(
        store.get("/roomcast/secret").await.unwrap(),
        "0123456789abcdef0123456789abcdef"
    );
    let missing = store.get("/nowhere").await.unwrap_err();
    assert_eq!(
        missing,
        ParameterError::Refused {
            status: 400,
            kind: "ParameterNotFound".into()
        }
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for request in &seen {
        assert_eq!(
            request.header("x-amz-target"),
            Some("AmazonSSM.GetParameter")
        );
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["WithDecryption"], true);
        verify_signed(request, "ssm");
    }
    // Nobody listening: an error, never a panic.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let gone = ParameterStore::new(&sdk_config(Some(&format!("http://{closed}")))).unwrap();
    assert!(matches!(
        gone.get("/roomcast/secret").await,
        Err(ParameterError::Unreachable(_))
    ));
}
