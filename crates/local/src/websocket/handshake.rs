//! The handshake: `GET /{stage}` (and `GET /`). The origin allowlist decides
//! first, then the `$connect` authorizer, then `$connect` itself while the upgrade
//! is pending; only a 2xx answer completes the upgrade, and the connection's task
//! ([`super::connection`]) starts.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roomcast_core::auth::origin::OriginRefusal;
use roomcast_core::metrics::Counter;
use roomcast_core::store::now_millis;

use super::authorizer::authorize;
use super::connection::run_connection;
use super::log::CONNECTION_LOG;
use super::worker::run_disconnect;
use crate::aws::AwsError;
use crate::connections::close;
use crate::events::{ConnectionContext, Handshake, gateway_id};
use crate::functions::route;
use crate::gateway::Gateway;
use crate::listen::LocalAddr;

/// Initial read buffer of a connection, held for as long as it is open; it grows
/// for larger frames (which are then read this many bytes at a time). Client
/// frames are mostly small JSON documents.
const READ_BUFFER: usize = 1024;

/// Bytes of frames gathered before a write to the socket without a flush.
const WRITE_BUFFER: usize = 16 * 1024;

/// `GET /{stage}` (and `GET /`): runs `$connect` while the upgrade is pending and
/// completes it only on a 2xx answer.
pub async fn websocket(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    local: Option<Extension<LocalAddr>>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if gateway.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if let Some(refused) = refused_origin(&gateway, &headers) {
        return refused;
    }
    let request = Handshake {
        headers: &headers,
        query: &query,
        now_ms: now_millis(),
    };
    // The gateway's own address, as API Gateway's domainName is its own domain
    // (with --host 0.0.0.0, the address the client reached); never the client's Host.
    let domain = local.map_or_else(|| gateway.local_addr(), |Extension(LocalAddr(a))| a);
    let mut context = connection_context(&gateway, peer, domain, &headers, request.now_ms);
    // The authorizer runs first, as on API Gateway: a refusal never reaches $connect.
    match authorize(&gateway, &context, &request).await {
        Ok(authorizer) => context.authorizer = authorizer,
        Err(refusal) => return refusal,
    }
    let context = Arc::new(context);
    match run_connect(&gateway, &context, &request).await {
        Ok(answer) => accept(gateway, context, upgrade, &answer),
        Err(refused) => refused,
    }
}

/// The origin allowlist decides before any token is read (and before the
/// authorizer runs); the refusal names the origin, never a token. `Some`: the
/// handshake is refused with this response.
fn refused_origin(gateway: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let options = gateway.options();
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("<not text>"));
    let refusal = options.origins.check(origin).err()?;
    let origin = match &refusal {
        OriginRefusal::Missing => "",
        OriginRefusal::NotAllowed(origin) => origin.as_str(),
    };
    tracing::info!(target: CONNECTION_LOG, status = 403, origin, reason = %refusal, "handshake refused");
    options.metrics.incr(Counter::RefusedOrigin);
    Some(AwsError::handshake(StatusCode::FORBIDDEN, "Forbidden").into_response())
}

/// The new connection's context, before the authorizer has spoken.
fn connection_context(
    gateway: &Gateway,
    peer: SocketAddr,
    domain: SocketAddr,
    headers: &HeaderMap,
    now: u64,
) -> ConnectionContext {
    let options = gateway.options();
    let header_text = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ConnectionContext {
        connection_id: gateway_id(),
        connected_at_ms: now,
        source_ip: peer.ip().to_string(),
        user_agent: header_text(header::USER_AGENT),
        domain_name: domain.to_string(),
        stage: options.stage.clone(),
        api_id: options.api_id.clone(),
        authorizer: Default::default(),
    }
}

/// Runs `$connect`: `Ok` with its 2xx answer, `Err` with the response refusing the
/// handshake. Without a `$connect` route, API Gateway accepts every (authorized)
/// handshake.
async fn run_connect(
    gateway: &Gateway,
    context: &ConnectionContext,
    request: &Handshake<'_>,
) -> Result<ApiGatewayProxyResponse, Response> {
    let event = match context.connect(request.headers, request.query, request.now_ms) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "could not build the $connect event");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    let connected = match gateway.routes().connect() {
        Some(connect) => route::invoke(connect, event).await,
        None => {
            let mut accepted = ApiGatewayProxyResponse::default();
            accepted.status_code = 200;
            Ok(accepted)
        }
    };
    let answer = match connected {
        Ok(answer) => answer,
        Err(e) => {
            // API Gateway answers a failed or timed-out integration with a 500.
            tracing::warn!(target: CONNECTION_LOG, connection_id = %context.connection_id, status = 500, error = %e, "handshake refused: $connect failed");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    if !(200..300).contains(&answer.status_code) {
        tracing::info!(
            target: CONNECTION_LOG,
            connection_id = %context.connection_id,
            status = answer.status_code,
            "handshake refused by $connect"
        );
        let status = StatusCode::from_u16(u16::try_from(answer.status_code).unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        copy_headers(&answer, response.headers_mut());
        return Err(response);
    }
    Ok(answer)
}

/// Completes the upgrade, with `$connect`'s headers, and starts the connection's task.
fn accept(
    gateway: Gateway,
    context: Arc<ConnectionContext>,
    upgrade: WebSocketUpgrade,
    answer: &ApiGatewayProxyResponse,
) -> Response {
    let options = gateway.options();
    let (max_frame_bytes, max_message_bytes) = (options.max_frame_bytes, options.max_message_bytes);
    let guard = gateway.track_task();
    let failed = (gateway.clone(), Arc::clone(&context));
    let mut response = upgrade
        // tungstenite reserves 128 KiB read and write buffers per connection by
        // default: 146 KB of RSS per idle connection, measured with `roomcast
        // bench`. Small buffers that grow on demand hold idle sockets cheaply. The
        // write buffer holds nothing until frames are written; frames queued
        // together go out in one write (`write_batch`).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_frame_size(max_frame_bytes)
        .max_message_size(max_message_bytes)
        .on_failed_upgrade(move |error| {
            let (gateway, context) = failed;
            tracing::warn!(target: CONNECTION_LOG, connection_id = %context.connection_id, %error, "upgrade failed");
            let guard = gateway.track_task();
            tokio::spawn(async move {
                run_disconnect(&gateway, &context, close::ABNORMAL, "").await;
                drop(guard);
            });
        })
        .on_upgrade(move |socket| async move {
            run_connection(gateway, context, socket).await;
            drop(guard);
        });
    copy_headers(answer, response.headers_mut());
    response
}

/// The integration's headers go into the handshake response (this is how
/// `Sec-WebSocket-Protocol` is chosen); the ones that frame the HTTP exchange stay ours.
fn copy_headers(answer: &ApiGatewayProxyResponse, into: &mut HeaderMap) {
    let reserved = [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ];
    for (name, value) in answer
        .headers
        .iter()
        .chain(answer.multi_value_headers.iter())
    {
        if !reserved.contains(name) {
            into.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_headers_reach_the_handshake_but_not_framing_ones() {
        let mut answer = ApiGatewayProxyResponse::default();
        answer.status_code = 200;
        answer
            .headers
            .insert(header::SEC_WEBSOCKET_PROTOCOL, "bearer".parse().unwrap());
        answer
            .headers
            .insert(header::CONNECTION, "close".parse().unwrap());
        let mut into = HeaderMap::new();
        into.insert(header::CONNECTION, "upgrade".parse().unwrap());
        copy_headers(&answer, &mut into);
        assert_eq!(into.get(header::SEC_WEBSOCKET_PROTOCOL).unwrap(), "bearer");
        assert_eq!(into.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
