//! The `broadcast` Lambda function: wiring only. The handler is
//! `roomcast_core::broadcast::handle` (direct invocations and SQS batches alike);
//! configuration and AWS clients are built once at cold start by
//! `roomcast_core::broadcast::run`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    roomcast_core::broadcast::run().await
}
