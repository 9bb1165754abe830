//! The Lambda entry point shared by the functions: tracing, configuration and
//! clients built once at cold start, then every invocation borrows them.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};

use crate::{App, handlers};

/// Which route handler a function binary serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Connect,
    Disconnect,
    Message,
}

/// Runs `function` under the Lambda runtime until the runtime stops.
pub async fn run(function: Function) -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            let request = event.payload;
            Ok::<_, Error>(match function {
                Function::Connect => handlers::connect(app, request).await,
                Function::Disconnect => handlers::disconnect(app, request).await,
                Function::Message => handlers::message(app, request).await,
            })
        },
    ))
    .await
}
