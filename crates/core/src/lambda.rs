//! The Lambda entry point shared by the functions: tracing, configuration and
//! clients built once at cold start, then every invocation borrows them.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayWebsocketProxyRequest,
};
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

/// Runs the `$connect` REQUEST authorizer under the Lambda runtime. A Deny policy
/// makes API Gateway refuse the handshake with 403; the error `Unauthorized` (a
/// handshake without a token where anonymous connections are not allowed) with 401.
pub async fn run_authorizer() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let authorizer = crate::auth::authorizer_from_env()?;
    let authorizer = &authorizer;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayCustomAuthorizerRequestTypeRequest>| async move {
            match authorizer.authorize(&event.payload).await {
                crate::auth::Decision::Allow(response) | crate::auth::Decision::Deny(response) => {
                    Ok(response)
                }
                // API Gateway matches this exact message to answer 401.
                crate::auth::Decision::Unauthorized => {
                    Err(Error::from(crate::names::authorizer::UNAUTHORIZED))
                }
            }
        },
    ))
    .await
}
