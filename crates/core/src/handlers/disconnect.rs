use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::status;
use crate::app::App;
use crate::auth::Identity;
use crate::departure;
use crate::fanout::Fanout;
use crate::management::endpoint_for;
use crate::metrics::Counter;
use crate::store::now_secs;

/// `$disconnect`: removes the connection and its memberships, and tells the rooms
/// with presence events that it left. API Gateway delivers it at most once and
/// sometimes not at all; stored items carry a TTL for that.
pub async fn disconnect(
    app: &App,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &request.request_context;
    let Some(connection_id) = context.connection_id.as_deref() else {
        tracing::warn!("$disconnect event without a connectionId");
        return status(400);
    };
    let policies = &app.config.policies;
    let identity = Identity::from_context(context);
    let now = now_secs();
    // The endpoint is needed only to announce leaves.
    let endpoint = endpoint_for(app.config.management_endpoint.as_deref(), context);
    let fanout = endpoint.as_deref().map(|e| Fanout::for_app(app, e));
    let announce = match &fanout {
        Some(fanout) if policies.any_presence_events() => Some((fanout, policies)),
        _ => None,
    };
    match departure::depart(
        app.store.as_ref(),
        announce,
        connection_id,
        identity.user_id.as_deref(),
        now,
    )
    .await
    {
        Ok(removed) => {
            app.metrics.incr(Counter::Disconnects);
            tracing::info!(
                connection_id,
                items = removed.items,
                code = context.disconnect_status_code,
                "disconnected"
            );
            if fanout.is_none() && departure::announces(policies, &removed.rooms) {
                tracing::error!("no management endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT")
            }
            status(200)
        }
        Err(e) => {
            tracing::error!(connection_id, error = %crate::error_chain(&e), "could not remove connection");
            status(500)
        }
    }
}
