//! Runs roomcast's route handlers for the gateway and the Invoke API.
//!
//! Each invocation is a task of its own, as each Lambda invocation is isolated: a
//! slow handler blocks nobody else, and a handler that panics fails its invocation
//! (a 500 or an error frame, as a crashed Lambda would) without taking down the
//! connection task that called it.

use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use roomcast_core::names::binary;
use roomcast_core::{App, handlers};
use std::sync::Arc;

/// Which handler an event goes to (the integration of its route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Integration {
    Connect,
    Disconnect,
    Message,
}

impl Integration {
    /// Every integration, each with the function binary that runs it.
    pub const ALL: [Self; 3] = [Self::Connect, Self::Disconnect, Self::Message];

    /// The handler a function binary runs; `None` for binaries without a
    /// WebSocket route handler (the authorizer, broadcast).
    pub fn from_binary(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.binary() == name)
    }

    /// The function binary (functions/*) that runs this handler.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Connect => binary::CONNECT,
            Self::Disconnect => binary::DISCONNECT,
            Self::Message => binary::MESSAGE,
        }
    }
}

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

/// Runs handler invocations as tasks on the gateway's runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct HandlerPool;

impl HandlerPool {
    /// Runs `integration` on `event` within `limit`.
    pub async fn invoke(
        &self,
        app: Arc<App>,
        integration: Integration,
        event: ApiGatewayWebsocketProxyRequest,
        limit: Duration,
    ) -> Result<ApiGatewayProxyResponse, InvokeError> {
        let call = async move {
            match integration {
                Integration::Connect => handlers::connect(&app, event).await,
                Integration::Disconnect => handlers::disconnect(&app, event).await,
                Integration::Message => handlers::message(&app, event).await,
            }
        };
        match tokio::spawn(tokio::time::timeout(limit, call)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_elapsed)) => Err(InvokeError::TimedOut),
            Err(_panicked) => Err(InvokeError::Failed),
        }
    }
}
