use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};

use super::status;
use crate::app::App;
use crate::auth::Identity;
use crate::departure;
use crate::fanout::Fanout;
use crate::metrics::Counter;
use crate::protocol::Sender;
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
    let store = app.store.as_ref();
    match departure::depart(store, None, connection_id, None, now_secs()).await {
        Ok(removed) => {
            app.metrics.incr(Counter::Disconnects);
            tracing::info!(
                connection_id,
                items = removed.items,
                code = context.disconnect_status_code,
                "disconnected"
            );
            let policies = &app.config.policies;
            if departure::announces(policies, &removed.rooms)
                && let Some(endpoint) = app.endpoint(context)
            {
                let identity = Identity::from_context(context);
                let member = Sender::member(connection_id, identity.user_id.as_deref());
                let fanout = Fanout::for_app(app, &endpoint);
                departure::announce_leaves(&fanout, policies, &removed.rooms, member, now_secs())
                    .await;
            }
            status(200)
        }
        Err(e) => {
            tracing::error!(connection_id, error = %crate::error_chain(&e), "could not remove connection");
            status(500)
        }
    }
}
