//! The `disconnect` Lambda function: wiring only. Configuration and AWS clients are built
//! once at cold start and borrowed by every invocation; the logic lives in
//! `roomcast_core::handlers::disconnect`.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use roomcast_core::{App, handlers};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let app = App::from_env().await?;
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, Error>(handlers::disconnect(app, event.payload).await)
        },
    ))
    .await
}
