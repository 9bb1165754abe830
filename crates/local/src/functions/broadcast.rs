//! The broadcast function on the Lambda Invoke API, as `broadcast` and under the
//! template's logical id `BroadcastFunction`: the same handler as on Lambda
//! (`roomcast_core::broadcast::handle`), run against the gateway's [`App`] (its store
//! and its own `@connections` endpoint).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use roomcast_core::App;
use roomcast_core::broadcast::FUNCTION_TIMEOUT;
use roomcast_core::store::now_millis;
use serde_json::Value;

use super::function::{ErrorKind, FunctionError, LambdaFunction};
use super::run::run_with_timeout;

/// The names the broadcast function answers to.
pub const NAMES: [&str; 2] = [roomcast_core::names::binary::BROADCAST, "BroadcastFunction"];

/// The broadcast function with what it runs on.
pub(crate) struct BroadcastFunction {
    pub(crate) app: Arc<App>,
    /// The function's own timeout (template.yaml), not API Gateway's 29 s.
    pub(crate) timeout: Duration,
}

impl BroadcastFunction {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Self {
            app,
            timeout: FUNCTION_TIMEOUT,
        }
    }
}

#[async_trait]
impl LambdaFunction for BroadcastFunction {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        // Run on its own task, as a Lambda invocation is isolated from its caller:
        // a dropped HTTP request does not cut a fan-out short.
        let timeout = self.timeout;
        let deadline_ms = now_millis() + u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let app = Arc::clone(&self.app);
        let result = run_with_timeout(timeout, async move {
            roomcast_core::broadcast::handle(&app, payload, deadline_ms).await
        })
        .await;
        match result {
            Some(Ok(Ok(result))) => Ok(result),
            Some(Ok(Err(e))) => Err(FunctionError::new(e.error_type(), e.to_string())),
            Some(Err(join)) => Err(FunctionError::new(
                ErrorKind::ExitError.as_str(),
                format!("the broadcast handler failed: {join}"),
            )),
            None => Err(FunctionError::new(
                ErrorKind::TimedOut.as_str(),
                format!("Task timed out after {} seconds", timeout.as_secs()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_function_uses_the_template_timeout() {
        assert_eq!(FUNCTION_TIMEOUT, Duration::from_secs(120));
        let template = include_str!("../../../../template.yaml");
        let function = &template[template
            .find("BroadcastFunction:")
            .expect("template has BroadcastFunction")..];
        let timeout = function
            .lines()
            .find_map(|l| l.trim().strip_prefix("Timeout:"))
            .expect("BroadcastFunction has a Timeout");
        assert_eq!(timeout.trim(), FUNCTION_TIMEOUT.as_secs().to_string());
    }
}
