//! The broadcast function on the Lambda Invoke API, as `broadcast` and under the
//! template's logical id `BroadcastFunction`: the same handler as on Lambda
//! (`roomcast_core::broadcast::handle`), run against the gateway's store and its
//! own `@connections` endpoint.

use async_trait::async_trait;
use serde_json::Value;

use crate::WeakGateway;
use crate::invoke::{FunctionError, LambdaFunction};

/// The names the broadcast function answers to.
pub const NAMES: [&str; 2] = ["broadcast", "BroadcastFunction"];

/// Holds the gateway weakly: the gateway owns the registry.
pub(crate) struct BroadcastFunction {
    pub(crate) gateway: WeakGateway,
}

#[async_trait]
impl LambdaFunction for BroadcastFunction {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        let gateway = self.gateway.upgrade().ok_or_else(|| FunctionError {
            error_type: "Runtime.ExitError".to_owned(),
            error_message: "the gateway has shut down".to_owned(),
        })?;
        // Run on its own task, as a Lambda invocation is isolated from its caller:
        // a dropped HTTP request does not cut a fan-out short.
        let timeout = gateway.options().integration_timeout;
        let task =
            tokio::spawn(
                async move { roomcast_core::broadcast::handle(gateway.app(), payload).await },
            );
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(e))) => Err(FunctionError {
                error_type: e.error_type().to_owned(),
                error_message: e.to_string(),
            }),
            Ok(Err(join)) => Err(FunctionError {
                error_type: "Runtime.ExitError".to_owned(),
                error_message: format!("the broadcast handler failed: {join}"),
            }),
            Err(_) => Err(FunctionError {
                error_type: "Sandbox.Timedout".to_owned(),
                error_message: format!("Task timed out after {} seconds", timeout.as_secs()),
            }),
        }
    }
}
