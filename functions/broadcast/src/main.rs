//! The `broadcast` Lambda function: wiring only. The handler is
//! `roomcast_core::broadcast::handle` (direct invocations and SQS batches alike);
//! `roomcast_core::lambda::run` builds configuration and AWS clients once at cold start.

use roomcast_core::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(lambda::Broadcast::from_env()).await
}
