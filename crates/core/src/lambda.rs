//! The Lambda entry point every function binary calls: [`run`] sets up tracing,
//! builds the function's [`Handler`] once at cold start (configuration, AWS
//! clients), then lends it to every invocation.
//!
//! The handlers: [`WebSocket`] (`connect`, `disconnect`, `message`, one per
//! [`Integration`]), [`Authorizer`] and [`Broadcast`]. A function binary is one line:
//! `lambda::run(lambda::WebSocket::from_env(Integration::Connect))`.

use std::convert::Infallible;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use lambda_runtime::{Context, Diagnostic, Error, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Decision;
use crate::broadcast::BroadcastError;
use crate::config::ConfigError;
use crate::handlers::Integration;
use crate::{App, auth, names};

/// A Lambda function's handler: its state is built once, and each invocation
/// borrows it.
pub trait Handler: Send + Sync {
    type Event: DeserializeOwned + Send;
    type Response: Serialize;
    type Error: Into<Diagnostic> + std::fmt::Debug;

    fn call(
        &self,
        event: Self::Event,
        context: Context,
    ) -> impl Future<Output = Result<Self::Response, Self::Error>> + Send;
}

/// Runs a function under the Lambda runtime until the runtime stops. `cold_start`
/// builds its handler; it runs once, after tracing is set up, and its error (a
/// missing setting, say) ends the process before any invocation.
pub fn run<H, E>(
    cold_start: impl Future<Output = Result<H, E>>,
) -> impl Future<Output = Result<(), Error>>
where
    H: Handler,
    E: Into<Error>,
{
    // Boxed: building the AWS clients is a large future, awaited once; unboxed it
    // would sit in the runtime's future for the life of the process.
    let cold_start = Box::pin(cold_start);
    async move {
        lambda_runtime::tracing::init_default_subscriber();
        let handler = cold_start.await.map_err(Into::into)?;
        let handler = &handler;
        lambda_runtime::run(service_fn(move |event: LambdaEvent<H::Event>| async move {
            handler.call(event.payload, event.context).await
        }))
        .await
    }
}

/// `connect`, `disconnect` or `message`: one [`Integration`] with its [`App`].
pub struct WebSocket {
    pub app: App,
    pub integration: Integration,
}

impl WebSocket {
    pub async fn from_env(integration: Integration) -> Result<Self, ConfigError> {
        Ok(Self {
            app: App::from_env().await?,
            integration,
        })
    }
}

impl Handler for WebSocket {
    type Event = ApiGatewayWebsocketProxyRequest;
    type Response = ApiGatewayProxyResponse;
    type Error = Infallible;

    async fn call(
        &self,
        event: Self::Event,
        _context: Context,
    ) -> Result<Self::Response, Self::Error> {
        Ok(self.integration.call(&self.app, event).await)
    }
}

/// The `$connect` REQUEST authorizer. A Deny policy makes API Gateway refuse the
/// handshake with 403; the error `Unauthorized` (a handshake without a token where
/// anonymous connections are not allowed) with 401.
pub struct Authorizer(pub auth::Authorizer);

impl Authorizer {
    pub async fn from_env() -> Result<Self, ConfigError> {
        auth::authorizer_from_env().map(Self)
    }
}

impl Handler for Authorizer {
    type Event = ApiGatewayCustomAuthorizerRequestTypeRequest;
    type Response = ApiGatewayCustomAuthorizerResponse;
    type Error = Error;

    async fn call(
        &self,
        event: Self::Event,
        _context: Context,
    ) -> Result<Self::Response, Self::Error> {
        match self.0.authorize(&event).await {
            Decision::Allow(response) | Decision::Deny(response) => Ok(response),
            // API Gateway matches this exact message to answer 401.
            Decision::Unauthorized => Err(Error::from(names::authorizer::UNAUTHORIZED)),
        }
    }
}

/// The broadcast function ([`crate::broadcast::handle`]): direct invocations and
/// SQS batches alike.
pub struct Broadcast {
    pub app: App,
}

impl Broadcast {
    /// Unlike the WebSocket functions it has no event to derive the `@connections`
    /// endpoint from, so `ROOMCAST_MANAGEMENT_ENDPOINT` is required at cold start.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let app = App::from_env().await?;
        if app.config.management_endpoint.is_none() {
            return Err(ConfigError::Missing(names::env::MANAGEMENT_ENDPOINT));
        }
        Ok(Self { app })
    }
}

impl Handler for Broadcast {
    type Event = Value;
    type Response = Value;
    type Error = BroadcastError;

    async fn call(&self, event: Value, context: Context) -> Result<Value, BroadcastError> {
        crate::broadcast::handle(&self.app, event, context.deadline).await
    }
}
