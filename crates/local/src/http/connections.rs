//! The `@connections` API (API Gateway Management API) on the gateway's own port,
//! under `/{stage}/@connections/{id}` and `/@connections/{id}`. On a loopback
//! address any SigV4 signature (or none) is accepted; on any other, [`crate::sigv4`]
//! checks signatures before these handlers run (the rules are
//! [`crate::connections::rules`]; these handlers translate them to HTTP). Errors are [`AwsError`]s,
//! which carry the `x-amzn-ErrorType` header the AWS SDKs key their typed errors on.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use roomcast_core::limits::GATEWAY_MAX_PAYLOAD;
use serde_json::json;

use crate::aws::AwsError;
use crate::connections::rules::{self, Refusal};
use crate::events::iso8601;
use crate::faults::FaultKind;
use crate::gateway::Gateway;

/// The 429's message when a connection's outbound queue is full.
const OUTBOUND_FULL: &str = "The client's outbound buffer is full";

/// The 429's message past the `--management-rps` quota.
const QUOTA_EXCEEDED: &str = "Rate exceeded";

/// `POST @connections/{id}`: the body goes to the client as one frame (text when
/// it is UTF-8, binary otherwise).
pub async fn post(
    State(gateway): State<Gateway>,
    Path(connection_id): Path<String>,
    body: Bytes,
) -> Response {
    match rules::post(&gateway, &connection_id, body).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(refusal) => refused(refusal).into_response(),
    }
}

/// The AWS error for a refused post or delete.
fn refused(refusal: Refusal) -> AwsError {
    match refusal {
        Refusal::TooLarge(len) => AwsError::payload_too_large(len, GATEWAY_MAX_PAYLOAD),
        Refusal::Gone | Refusal::Injected(FaultKind::Gone) => AwsError::gone(),
        Refusal::Full => AwsError::limit_exceeded(OUTBOUND_FULL),
        Refusal::Quota => AwsError::limit_exceeded(QUOTA_EXCEEDED),
        Refusal::Injected(FaultKind::Throttled) => {
            AwsError::limit_exceeded("injected fault: throttled")
        }
        Refusal::Injected(FaultKind::ServerError) => {
            AwsError::internal("injected fault: internal error")
        }
    }
}

/// `GET @connections/{id}`: connectedAt, lastActiveAt and identity, as API Gateway returns them.
pub async fn get(State(gateway): State<Gateway>, Path(connection_id): Path<String>) -> Response {
    rules::latency(&gateway).await;
    if let Err(refusal) = rules::admit(&gateway) {
        return refused(refusal).into_response();
    }
    let Some(connection) = gateway.connections().get(&connection_id) else {
        return AwsError::gone().into_response();
    };
    let context = &connection.context;
    let mut identity = serde_json::Map::new();
    identity.insert("sourceIp".into(), json!(context.source_ip));
    if let Some(agent) = &context.user_agent {
        identity.insert("userAgent".into(), json!(agent));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({
            "connectedAt": iso8601(context.connected_at_ms),
            "lastActiveAt": iso8601(connection.last_active_ms()),
            "identity": identity,
        })
        .to_string(),
    )
        .into_response()
}

/// `DELETE @connections/{id}`: closes the connection and runs `$disconnect` with
/// 1000 and [`rules::DELETED_REASON`].
pub async fn delete(State(gateway): State<Gateway>, Path(connection_id): Path<String>) -> Response {
    match rules::delete(&gateway, &connection_id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refusal) => refused(refusal).into_response(),
    }
}
