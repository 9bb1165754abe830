use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::status;
use crate::app::App;
use crate::metrics::Counter;

/// `$disconnect`: removes the connection and its memberships. API Gateway delivers
/// it at most once and sometimes not at all; stored items carry a TTL for that.
pub async fn disconnect(
    app: &App,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &request.request_context;
    let Some(connection_id) = context.connection_id.as_deref() else {
        tracing::warn!("$disconnect event without a connectionId");
        return status(400);
    };
    match app.store.remove_connection(connection_id).await {
        Ok(items) => {
            app.metrics.incr(Counter::Disconnects);
            tracing::info!(
                connection_id,
                items,
                code = context.disconnect_status_code,
                "disconnected"
            );
            status(200)
        }
        Err(e) => {
            tracing::error!(connection_id, error = %crate::error_chain(&e), "could not remove connection");
            status(500)
        }
    }
}
