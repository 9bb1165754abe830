use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::{status, user_id};
use crate::app::App;
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
    let connection = Connection {
        connection_id: connection_id.to_owned(),
        connected_at,
        user_id: user_id(context).map(str::to_owned),
        expires_at: connected_at / 1000 + app.config.item_ttl.as_secs(),
    };
    match app.store.put_connection(&connection).await {
        Ok(()) => {
            tracing::info!(connection_id, "connected");
            status(200)
        }
        Err(e) => {
            tracing::error!(connection_id, error = %e, "could not record connection");
            status(500)
        }
    }
}
