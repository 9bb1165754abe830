//! The `connect` Lambda function (the `$connect` route): wiring only. The handler is
//! `roomcast_core::handlers::connect`; `roomcast_core::lambda::run` builds configuration
//! and AWS clients once at cold start.

use roomcast_core::handlers::Integration;
use roomcast_core::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(lambda::WebSocket::from_env(Integration::Connect)).await
}
