//! Every roomcast Lambda function in one binary, the one `sam build` builds and
//! all five functions deploy. Lambda passes each function's `Handler` setting to
//! the runtime as `_HANDLER`; its value is one of the function names in
//! `roomcast_core::names::binary` (`connect`, `disconnect`, `message`,
//! `authorizer`, `broadcast`).
//!
//! Why one binary: SAM builds functions with identical build metadata once, so
//! the release build (LTO over the AWS SDK stack) runs once instead of five times
//! (docs/performance.md, "sam build"). The functions/NAME packages stay for
//! `cargo lambda watch`, which serves each function under its binary name.

use roomcast_core::handlers::Integration;
use roomcast_core::lambda;
use roomcast_core::names::binary;

/// Lambda's reserved variable holding the function's `Handler` setting.
const HANDLER_VAR: &str = "_HANDLER";

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let handler = std::env::var(HANDLER_VAR).unwrap_or_default();
    if let Some(integration) = Integration::from_binary(&handler) {
        return lambda::run(lambda::WebSocket::from_env(integration)).await;
    }
    match handler.as_str() {
        binary::AUTHORIZER => lambda::run(lambda::Authorizer::from_env()).await,
        binary::BROADCAST => lambda::run(lambda::Broadcast::from_env()).await,
        other => Err(format!(
            "{HANDLER_VAR} is {other:?}: set the function's Handler to one of {}",
            binary::ALL.join(", ")
        )
        .into()),
    }
}
