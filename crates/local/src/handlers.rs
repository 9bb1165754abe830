//! Runs roomcast's route handlers for the gateway and the Invoke API, through the
//! same table the Lambda functions use ([`roomcast_core::handlers::Integration`]).
//!
//! Each invocation is a task of its own, as each Lambda invocation is isolated: a
//! slow handler blocks nobody else, and a handler that panics fails its invocation
//! (a 500 or an error frame, as a crashed Lambda would) without taking down the
//! connection task that called it.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use roomcast_core::App;
pub use roomcast_core::handlers::Integration;

/// Why an invocation produced no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    #[error("the integration timed out")]
    TimedOut,
    /// The function failed: it panicked or returned an error, its response could not
    /// be read, or the route has no function that can run (the log says which).
    #[error("the function failed")]
    Failed,
}

/// Runs `integration` on `event` within `limit`, on its own task.
pub async fn invoke(
    app: Arc<App>,
    integration: Integration,
    event: ApiGatewayWebsocketProxyRequest,
    limit: Duration,
) -> Result<ApiGatewayProxyResponse, InvokeError> {
    let call = async move { integration.call(&app, event).await };
    match tokio::spawn(tokio::time::timeout(limit, call)).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(_elapsed)) => Err(InvokeError::TimedOut),
        Err(_panicked) => Err(InvokeError::Failed),
    }
}
