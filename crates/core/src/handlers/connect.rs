use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use aws_lambda_events::http::HeaderValue;
use aws_lambda_events::http::header::SEC_WEBSOCKET_PROTOCOL;

use super::status;
use crate::app::App;
use crate::auth::{BEARER_PROTOCOL, Identity, subprotocols};
use crate::metrics::Counter;
use crate::store::{Connection, now_millis};

/// `$connect`: records the connection (one write). A non-2xx answer makes API
/// Gateway refuse the WebSocket handshake.
pub async fn connect(
    app: &App,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &request.request_context;
    let Some(connection_id) = context.connection_id.as_deref() else {
        tracing::warn!("$connect event without a connectionId");
        return status(400);
    };
    let connected_at = u64::try_from(context.connected_at)
        .ok()
        .filter(|&t| t > 0)
        .unwrap_or_else(now_millis);
    let identity = Identity::from_context(context);
    // The record ends when the token does (with the authorizer's leeway).
    let expires_at = identity.item_expires_at(connected_at / 1000 + app.config.item_ttl.as_secs());
    let connection = Connection {
        connection_id: connection_id.to_owned(),
        connected_at,
        user_id: identity.user_id,
        roles: identity.roles,
        token_expires_at: identity.token_expires_at,
        expires_at,
    };
    match app.store.put_connection(&connection).await {
        Ok(()) => {
            tracing::info!(connection_id, "connected");
            app.metrics.incr(Counter::Connects);
            let mut response = status(200);
            // A browser that sent its token as `new WebSocket(url, ["bearer", token])`
            // closes the socket unless the handshake selects one of its subprotocols;
            // `bearer` is the one that carries no secret.
            if subprotocols(&request.headers).any(|p| p == BEARER_PROTOCOL) {
                response.headers.insert(
                    SEC_WEBSOCKET_PROTOCOL,
                    HeaderValue::from_static(BEARER_PROTOCOL),
                );
            }
            response
        }
        Err(e) => {
            tracing::error!(connection_id, error = %crate::error_chain(&e), "could not record connection");
            status(500)
        }
    }
}
