//! `roomcast dev` at its edges, with roomcast's own handlers in-process: the origin
//! allowlist at `$connect` (before the token is read), SigV4 on `@connections` and
//! the Invoke API when listening off loopback (real SDK clients, right and wrong
//! credentials, and unsigned requests), and authorizer contexts passed on as
//! strings that the handlers still read. The scripted-function side of the same
//! edges is in remote.rs.

mod support;

use std::sync::Arc;

use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use roomcast_core::auth::origin::Origins;
use roomcast_core::store::memory::MemoryStore;
use roomcast_core::store::{Store, now_secs};
use roomcast_local::{GatewayOptions, LocalError, ManagementCredentials, RunningGateway};
use serde_json::json;
use support::{Client, WAIT, http};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const APP: &str = "https://app.example.com";

fn token(sub: &str, exp: u64) -> String {
    support::token(sub, &["member"], exp)
}

/// The status of a handshake: 101 when accepted (the connection is then closed).
async fn handshake(url: &str, origin: Option<&str>) -> u16 {
    let mut request = url.into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time")
    {
        Ok((ws, _)) => {
            Client::from_stream(ws).close().await;
            101
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

/// Each handshake (URL, `Origin`) gets its status.
async fn expect_statuses(cases: &[(&String, Option<&str>, u16)]) {
    for (target, origin, status) in cases {
        let with_token = target.contains("token=");
        assert_eq!(
            handshake(target, *origin).await,
            *status,
            "{origin:?}, token: {with_token}"
        );
    }
}

/// A gateway allowing [`APP`] and a localhost origin; its URL, and the URL with a
/// valid token.
async fn origin_gateway(allow_anonymous: bool, require: bool) -> (RunningGateway, String, String) {
    let gateway = support::start(GatewayOptions {
        authorizer: Some(support::authorizer(allow_anonymous)),
        origins: Origins {
            allowed: Some(vec![APP.to_owned(), "http://localhost:5173".to_owned()]),
            require,
        },
        ..support::options()
    })
    .await;
    let url = gateway.websocket_url();
    let with_token = format!("{url}?token={}", token("alice", now_secs() + 600));
    (gateway, url, with_token)
}

#[tokio::test]
async fn origins_are_checked_before_the_token_with_and_without_one() {
    let (gateway, url, with_token) = origin_gateway(false, false).await;
    let with_bad_token = format!("{url}?token=garbage");
    expect_statuses(&[
        (&with_token, Some(APP), 101),
        (&with_token, Some("http://localhost:5173"), 101),
        // No Origin (a server, a CLI): the token decides.
        (&with_token, None, 101),
        (&url, None, 401),
        (&url, Some(APP), 401),
        (&with_bad_token, Some(APP), 403),
        // Another origin: 403 whatever the token, even a missing one (which would
        // otherwise be a 401): the token is never looked at.
        (&with_token, Some("https://evil.example"), 403),
        (
            &with_token,
            Some("https://app.example.com.evil.example"),
            403,
        ),
        (&url, Some("https://evil.example"), 403),
        (&with_bad_token, Some("null"), 403),
    ])
    .await;
    gateway.shutdown().await.expect("clean shutdown");

    let (strict, url, with_token) = origin_gateway(true, true).await;
    expect_statuses(&[
        (&with_token, None, 403),
        (&url, None, 403),
        (&with_token, Some(APP), 101),
        (&url, Some(APP), 101),
        (&url, Some("https://evil.example"), 403),
    ])
    .await;
    strict.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn string_context_values_still_give_the_handlers_the_tokens_expiry() {
    let store = Arc::new(MemoryStore::new());
    let gateway = support::start_with(
        GatewayOptions {
            authorizer: Some(support::authorizer(true)),
            ..support::options()
        },
        store.clone(),
        "test".into(),
    )
    .await;
    let url = gateway.websocket_url();
    let exp = now_secs() + 600;
    let mut alice = Client::connect(&format!("{url}?token={}", token("alice", exp))).await;
    let mut witness = Client::connect(&url).await;
    let id = support::connection_id(&mut alice, &mut witness, "edges:1").await;
    let record = store
        .connection(&id, now_secs())
        .await
        .unwrap()
        .expect("the connection is stored");
    // The authorizer put exp in its context as a number; the gateway passed it on
    // as "exp": "<digits>", and $connect read it back.
    assert_eq!(record.user_id.as_deref(), Some("alice"));
    assert_eq!(record.token_expires_at, Some(exp));
    gateway.shutdown().await.expect("clean shutdown");
}

const KEY_ID: &str = "AKIDROOMCASTDEV";
const KEY_SECRET: &str = "e2e-management-secret";

/// A gateway on 0.0.0.0 (every interface: not loopback), reached through 127.0.0.1.
async fn exposed(options: GatewayOptions) -> Result<(RunningGateway, String), LocalError> {
    let running = roomcast_local::serve(
        GatewayOptions {
            host: "0.0.0.0".into(),
            ..options
        },
        Arc::new(MemoryStore::new()),
        "test".into(),
        &support::sdk().await,
    )
    .await?;
    let base = format!("127.0.0.1:{}", running.local_addr().port());
    Ok((running, base))
}

fn credentials(id: &str, secret: &str) -> aws_sdk_apigatewaymanagement::config::Credentials {
    aws_sdk_apigatewaymanagement::config::Credentials::new(id, secret, None, None, "e2e")
}

async fn management(base: &str, id: &str, secret: &str) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::config::Builder::from(&support::sdk().await)
        .endpoint_url(format!("http://{base}/local"))
        .credentials_provider(credentials(id, secret))
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

async fn lambda(base: &str, id: &str, secret: &str) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::config::Builder::from(&support::sdk().await)
        .endpoint_url(format!("http://{base}"))
        .credentials_provider(credentials(id, secret))
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// An unsigned POST to a connection that does not exist.
async fn unsigned_post(addr: std::net::SocketAddr) -> support::HttpResponse {
    http(addr, "POST", "/local/@connections/nobody", &[], b"x").await
}

/// An unsigned DryRun invocation of `connect`.
async fn unsigned_dry_run(addr: std::net::SocketAddr) -> support::HttpResponse {
    http(
        addr,
        "POST",
        "/2015-03-31/functions/connect/invocations",
        &[("x-amz-invocation-type", "DryRun")],
        b"{}",
    )
    .await
}

#[tokio::test]
async fn off_loopback_management_calls_must_be_signed_with_the_configured_key() {
    let (running, base) = exposed(GatewayOptions {
        management_credentials: Some(ManagementCredentials::new(KEY_ID, KEY_SECRET)),
        ..support::options()
    })
    .await
    .expect("starts with credentials");
    assert!(running.gateway().management_check().is_some());
    let url = format!("ws://{base}/local");
    let (mut alice, mut bob) = (Client::connect(&url).await, Client::connect(&url).await);
    // The in-process handlers' own @connections calls are signed: delivery works.
    let alice_id = support::connection_id(&mut alice, &mut bob, "edges:sigv4").await;

    // The right key: delivered.
    management(&base, KEY_ID, KEY_SECRET)
        .await
        .post_to_connection()
        .connection_id(&alice_id)
        .data(Blob::new(r#"{"hello":1}"#))
        .send()
        .await
        .expect("a signed POST is accepted");
    assert_eq!(alice.next_json().await, json!({"hello": 1}));
    // A wrong secret, an unknown key id: 403 ForbiddenException, nothing delivered.
    for (id, secret) in [(KEY_ID, "wrong-secret"), ("AKIDSTRANGER", KEY_SECRET)] {
        let err = management(&base, id, secret)
            .await
            .post_to_connection()
            .connection_id(&alice_id)
            .data(Blob::new("nope"))
            .send()
            .await
            .expect_err("refused");
        let service = err.into_service_error();
        assert!(
            matches!(service, PostToConnectionError::ForbiddenException(_)),
            "{id}: {service:?}"
        );
    }
    // Unsigned: 403 with API Gateway's body.
    let path = format!(
        "/local/@connections/{}",
        alice_id
            .replace('=', "%3D")
            .replace('/', "%2F")
            .replace('+', "%2B")
    );
    let addr: std::net::SocketAddr = base.parse().unwrap();
    let unsigned = http(addr, "POST", &path, &[], b"nope").await;
    assert_eq!(unsigned.status, 403, "{unsigned:?}");
    assert_eq!(
        unsigned.header("x-amzn-ErrorType"),
        Some("ForbiddenException")
    );
    assert_eq!(
        unsigned.json(),
        json!({"message": "Missing Authentication Token"})
    );
    alice.assert_nothing_pending().await;

    // The Invoke API: the right key runs, others get Lambda's error codes.
    let dry_run = |client: aws_sdk_lambda::Client| async move {
        client
            .invoke()
            .function_name("connect")
            .invocation_type(aws_sdk_lambda::types::InvocationType::DryRun)
            .send()
            .await
    };
    let ok = dry_run(lambda(&base, KEY_ID, KEY_SECRET).await)
        .await
        .expect("a signed invoke is accepted");
    assert_eq!(ok.status_code(), 204);
    for (id, secret, code) in [
        (KEY_ID, "wrong-secret", "InvalidSignatureException"),
        ("AKIDSTRANGER", KEY_SECRET, "UnrecognizedClientException"),
    ] {
        let err = dry_run(lambda(&base, id, secret).await)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some(code), "{id}: {err:?}");
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(403),
            "{id}"
        );
    }
    let unsigned = unsigned_dry_run(addr).await;
    assert_eq!(unsigned.status, 403, "{unsigned:?}");
    assert_eq!(
        unsigned.header("x-amzn-ErrorType"),
        Some("MissingAuthenticationTokenException")
    );

    // The broadcast queue's POST / is checked too (it reaches every room); the
    // WebSocket on GET / is not.
    let sdk = support::sdk().await;
    let sqs = |id: &str, secret: &str| {
        let config = aws_sdk_sqs::config::Builder::from(&sdk)
            .endpoint_url(format!("http://{base}"))
            .credentials_provider(credentials(id, secret))
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    };
    let queue = sqs(KEY_ID, KEY_SECRET)
        .get_queue_url()
        .queue_name("BroadcastQueue")
        .send()
        .await
        .expect("a signed queue call is accepted");
    assert!(
        queue
            .queue_url()
            .is_some_and(|u| u.ends_with("/BroadcastQueue"))
    );
    let refused = sqs(KEY_ID, "wrong-secret")
        .get_queue_url()
        .queue_name("BroadcastQueue")
        .send()
        .await
        .expect_err("refused");
    assert_eq!(
        refused.raw_response().map(|r| r.status().as_u16()),
        Some(403),
        "{refused:?}"
    );
    let root = Client::connect(&format!("ws://{base}/")).await;
    drop(root);
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn loopback_checks_nothing_and_exposed_needs_keys_or_the_insecure_flag() {
    // On loopback: unsigned calls go through (410 for an unknown connection, 204
    // for a dry run), as with any SigV4 signature.
    let local = support::start(GatewayOptions {
        management_credentials: Some(ManagementCredentials::new(KEY_ID, KEY_SECRET)),
        ..support::options()
    })
    .await;
    assert!(local.gateway().management_check().is_none());
    let unsigned = unsigned_post(local.local_addr()).await;
    assert_eq!(unsigned.status, 410, "{unsigned:?}");
    let invoke = unsigned_dry_run(local.local_addr()).await;
    assert_eq!(invoke.status, 204, "{invoke:?}");
    local.shutdown().await.expect("clean shutdown");

    // Off loopback without credentials: refuses to start, naming the way out.
    let refused = exposed(support::options()).await.err().expect("refused");
    assert!(
        matches!(refused, LocalError::ManagementUnprotected { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("--insecure-management"));
    // With --insecure-management: unsigned calls are accepted there too.
    let (open, base) = exposed(GatewayOptions {
        insecure_management: true,
        ..support::options()
    })
    .await
    .expect("starts");
    let unsigned = unsigned_post(base.parse().unwrap()).await;
    assert_eq!(unsigned.status, 410, "{unsigned:?}");
    open.shutdown().await.expect("clean shutdown");
}
