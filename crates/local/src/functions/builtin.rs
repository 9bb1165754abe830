//! roomcast's route handlers as functions, through the same table the Lambda
//! functions use ([`roomcast_core::handlers::Integration`]): [`invoke`] for a
//! route's integration, [`RouteFunction`] for the Invoke API.
//!
//! Each invocation runs as [`run_with_timeout`] runs it: a handler that panics
//! fails its invocation (a 500 or an error frame, as a crashed Lambda would)
//! without taking down the connection task that called it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use roomcast_core::App;
pub use roomcast_core::handlers::Integration;
use serde_json::Value;

use super::function::{ErrorKind, FunctionError, InvokeError, LambdaFunction};
use super::run::run_with_timeout;

/// Runs `integration` on `event` within `limit`, on its own task.
pub async fn invoke(
    app: Arc<App>,
    integration: Integration,
    event: ApiGatewayWebsocketProxyRequest,
    limit: Duration,
) -> Result<ApiGatewayProxyResponse, InvokeError> {
    let call = async move { integration.call(&app, event).await };
    match run_with_timeout(limit, call).await {
        Some(Ok(response)) => Ok(response),
        None => Err(InvokeError::TimedOut),
        Some(Err(_panicked)) => Err(InvokeError::Failed),
    }
}

/// One of roomcast's route handlers as a Lambda function.
pub(crate) struct RouteFunction {
    pub(crate) app: Arc<App>,
    pub(crate) integration: Integration,
    /// The integration timeout.
    pub(crate) timeout: Duration,
}

#[async_trait]
impl LambdaFunction for RouteFunction {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        // The same failure lambda_runtime reports when the event does not decode.
        let event: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(payload).map_err(|e| {
                FunctionError::new(
                    ErrorKind::Deserialization.as_str(),
                    format!("payload is not an API Gateway WebSocket event: {e}"),
                )
            })?;
        let response: ApiGatewayProxyResponse =
            invoke(Arc::clone(&self.app), self.integration, event, self.timeout)
                .await
                .map_err(|e| FunctionError::new(ErrorKind::TimedOut.as_str(), e.to_string()))?;
        serde_json::to_value(response)
            .map_err(|e| FunctionError::new(ErrorKind::Serialization.as_str(), e.to_string()))
    }
}
