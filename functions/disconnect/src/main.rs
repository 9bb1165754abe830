//! The `disconnect` Lambda function: wiring only. The handler is
//! `roomcast_core::handlers::disconnect`; configuration and AWS clients are built once at
//! cold start by `roomcast_core::lambda::run`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_core::lambda::run(roomcast_core::lambda::Function::Disconnect).await
}
