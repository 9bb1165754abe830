//! The Lambda entry point every function binary calls: [`run`] sets up tracing,
//! builds the function's [`Handler`] once at cold start (configuration, AWS
//! clients), then lends it to every invocation.
//!
//! The handlers: [`WebSocket`] (`connect`, `disconnect`, `message`, one per
//! [`Integration`]), [`Authorizer`] and [`Broadcast`]. A function binary is one line:
//! `lambda::run(lambda::WebSocket::from_env(Integration::Connect))`.
//!
//! Each invocation runs in a tracing span with its request id and connection id
//! (JSON log lines when the function's log format is JSON), and ends with one
//! CloudWatch EMF line of what it counted ([`invoke`]).

use std::convert::Infallible;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
};
use lambda_runtime::{Context, Diagnostic, Error, LambdaEvent, service_fn};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::auth::Decision;
use crate::broadcast::BroadcastError;
use crate::config::ConfigError;
use crate::handlers::Integration;
use crate::metrics::Metrics;
use crate::metrics::emf::{self, EmfWriter};
use crate::store::now_millis;
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

    /// The accumulator the handler counts into, drained after each invocation.
    fn metrics(&self) -> &Metrics;

    /// The stage the invocation's metrics are reported under.
    fn stage(&self, event: &Self::Event) -> String;

    /// The connection an event is about, for the invocation's log span.
    fn connection_id(_event: &Self::Event) -> Option<String> {
        None
    }
}

/// The stage of metrics no event or setting names.
const UNKNOWN_STAGE: &str = "unknown";

/// Runs one invocation: the handler in a span carrying the request and connection
/// ids, then one EMF line to `emf` with what the invocation counted.
pub async fn invoke<H: Handler>(
    handler: &H,
    event: H::Event,
    context: Context,
    emf: &dyn EmfWriter,
) -> Result<H::Response, H::Error> {
    let stage = handler.stage(&event);
    let connection_id = H::connection_id(&event);
    let span = tracing::info_span!(
        "invocation",
        request_id = %context.request_id,
        connection_id = connection_id.as_deref()
    );
    let result = handler.call(event, context).instrument(span).await;
    if let Some(line) = emf::line(&handler.metrics().drain(), &stage, now_millis()) {
        emf.write_line(&line);
    }
    result
}

/// The stage an event names, else [`UNKNOWN_STAGE`].
fn stage_of(stage: Option<&str>) -> String {
    stage
        .filter(|s| !s.is_empty())
        .unwrap_or(UNKNOWN_STAGE)
        .to_owned()
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
            // Boxed: held inline, each invocation's future would grow the runtime's.
            Box::pin(invoke(handler, event.payload, event.context, &emf::Stdout)).await
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

    fn metrics(&self) -> &Metrics {
        &self.app.metrics
    }

    fn stage(&self, event: &Self::Event) -> String {
        stage_of(event.request_context.stage.as_deref())
    }

    fn connection_id(event: &Self::Event) -> Option<String> {
        event.request_context.connection_id.clone()
    }
}

/// The `$connect` REQUEST authorizer. A Deny policy makes API Gateway refuse the
/// handshake with 403; the error `Unauthorized` (a handshake without a token where
/// anonymous connections are not allowed) with 401.
pub struct Authorizer(pub auth::Authorizer);

impl Authorizer {
    pub async fn from_env() -> Result<Self, ConfigError> {
        auth::authorizer_from_env().await.map(Self)
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

    fn metrics(&self) -> &Metrics {
        self.0.metrics()
    }

    fn stage(&self, event: &Self::Event) -> String {
        stage_of(event.request_context.stage.as_deref())
    }
}

/// The broadcast function ([`crate::broadcast::handle`]): direct invocations and
/// SQS batches alike.
pub struct Broadcast {
    pub app: App,
    /// The stage its metrics are reported under: no API Gateway event names it,
    /// so `ROOMCAST_STAGE` does (set by the template).
    pub stage: String,
}

impl Broadcast {
    /// Unlike the WebSocket functions it has no event to derive the `@connections`
    /// endpoint from, so `ROOMCAST_MANAGEMENT_ENDPOINT` is required at cold start.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let app = App::from_env().await?;
        if app.config.management_endpoint.is_none() {
            return Err(ConfigError::Missing(names::env::MANAGEMENT_ENDPOINT));
        }
        let stage = std::env::var(names::env::STAGE).ok();
        Ok(Self {
            app,
            stage: stage_of(stage.as_deref()),
        })
    }
}

impl Handler for Broadcast {
    type Event = Value;
    type Response = Value;
    type Error = BroadcastError;

    async fn call(&self, event: Value, context: Context) -> Result<Value, BroadcastError> {
        crate::broadcast::handle(&self.app, event, context.deadline).await
    }

    fn metrics(&self) -> &Metrics {
        &self.app.metrics
    }

    fn stage(&self, _event: &Value) -> String {
        self.stage.clone()
    }
}
