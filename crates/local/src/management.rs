//! The `@connections` API (API Gateway Management API) on the gateway's own port,
//! under `/{stage}/@connections/{id}` and `/@connections/{id}`. On a loopback
//! address any SigV4 signature (or none) is accepted; on any other, [`crate::sigv4`]
//! checks signatures before these handlers run. Errors are [`AwsError`]s,
//! which carry the `x-amzn-ErrorType` header the AWS SDKs key their typed errors on.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::Message;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use roomcast_core::config::GATEWAY_MAX_PAYLOAD;
use serde_json::json;
use tokio::sync::mpsc::error::TrySendError;

use crate::Gateway;
use crate::aws::AwsError;
use crate::connections::Command;
use crate::events::iso8601;
use crate::faults::FaultKind;
use crate::websocket::close;

/// The 429's message when a connection's outbound queue is full.
const OUTBOUND_FULL: &str = "The client's outbound buffer is full";

/// How long DELETE waits for room in a full outbound queue.
const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Waits the configured `management_latency`, if any.
async fn latency(gateway: &Gateway) {
    let latency = gateway.options().management_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// `POST @connections/{id}`: the body goes to the client as one frame (text when
/// it is UTF-8, binary otherwise).
pub async fn post(
    State(gateway): State<Gateway>,
    Path(connection_id): Path<String>,
    body: Bytes,
) -> Response {
    latency(&gateway).await;
    if body.len() > GATEWAY_MAX_PAYLOAD {
        return AwsError::payload_too_large(body.len(), GATEWAY_MAX_PAYLOAD).into_response();
    }
    if let Some(fault) = gateway.injected_fault(&connection_id) {
        return injected(&gateway, &connection_id, fault).into_response();
    }
    let Some(connection) = gateway.connections().get(&connection_id) else {
        return AwsError::gone().into_response();
    };
    let message = match std::str::from_utf8(&body) {
        Ok(text) => Message::text(text),
        Err(_) => Message::Binary(body),
    };
    match connection.commands.try_send(Command::Send(message)) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(TrySendError::Full(_)) => AwsError::limit_exceeded(OUTBOUND_FULL).into_response(),
        Err(TrySendError::Closed(_)) => AwsError::gone().into_response(),
    }
}

/// The answer to a POST that fault injection picked. An injected 410 also closes
/// the connection (1001, then `$disconnect`), so what follows matches a client
/// that went away.
fn injected(gateway: &Gateway, connection_id: &str, fault: FaultKind) -> AwsError {
    match fault {
        FaultKind::Gone => {
            if let Some(connection) = gateway.connections().get(connection_id) {
                let _ = connection.commands.try_send(Command::Close {
                    code: close::GOING_AWAY,
                    reason: "injected fault: gone".to_owned(),
                });
            }
            AwsError::gone()
        }
        FaultKind::Throttled => AwsError::limit_exceeded("injected fault: throttled"),
        FaultKind::ServerError => AwsError::internal("injected fault: internal error"),
    }
}

/// `GET @connections/{id}`: connectedAt, lastActiveAt and identity, as API Gateway returns them.
pub async fn get(State(gateway): State<Gateway>, Path(connection_id): Path<String>) -> Response {
    latency(&gateway).await;
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

/// The `$disconnect` reason after a DELETE, as API Gateway's execution logs show it
/// (boto/boto3#3789, aws/chalice#2060, 2023-07).
pub const DELETED_REASON: &str = "Connection Closed Normally";

/// `DELETE @connections/{id}`: closes the connection and runs `$disconnect` with
/// 1000 and [`DELETED_REASON`].
pub async fn delete(State(gateway): State<Gateway>, Path(connection_id): Path<String>) -> Response {
    latency(&gateway).await;
    let Some(connection) = gateway.connections().get(&connection_id) else {
        return AwsError::gone().into_response();
    };
    let command = Command::Close {
        code: close::NORMAL,
        reason: DELETED_REASON.to_owned(),
    };
    match tokio::time::timeout(DELETE_WAIT, connection.commands.send(command)).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(_)) => AwsError::gone().into_response(),
        Err(_) => AwsError::limit_exceeded(OUTBOUND_FULL).into_response(),
    }
}
