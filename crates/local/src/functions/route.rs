//! A route's integration, run by whatever the route table says runs it: one of
//! roomcast's handlers in-process, a function behind an Invoke endpoint, or
//! nothing (an unmapped route, which fails as a broken integration does on AWS).

use std::sync::Arc;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use roomcast_core::names::route::CONNECT;

use super::function::InvokeError;
use super::{builtin, remote};
use crate::routes::{RouteTarget, Runner};

/// Runs a route's integration within its timeout. A function that runs out of its
/// own (shorter) `Timeout` has failed; running out of the integration timeout is a
/// timeout.
pub async fn invoke(
    route: &RouteTarget,
    event: ApiGatewayWebsocketProxyRequest,
) -> Result<ApiGatewayProxyResponse, InvokeError> {
    let (limit, function_limited) = match route.function_timeout {
        Some(own) if own < route.timeout => (own, true),
        _ => (route.timeout, false),
    };
    let result = match &route.runner {
        Runner::Handler { app, integration } => {
            builtin::invoke(Arc::clone(app), *integration, event, limit).await
        }
        Runner::Remote { invoker, function } => {
            // $connect's response decides the handshake even without a route
            // response, so it is always read.
            let one_way = !route.two_way && route.key != CONNECT;
            remote::route(invoker, function, &event, limit, one_way).await
        }
        Runner::Unmapped => {
            tracing::warn!(
                route = %route.key,
                "the route's integration could not be mapped from the template"
            );
            Err(InvokeError::Failed)
        }
    };
    match result {
        Err(InvokeError::TimedOut) if function_limited => Err(InvokeError::Failed),
        other => other,
    }
}
