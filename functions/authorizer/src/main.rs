//! The `authorizer` Lambda function: wiring only. The REQUEST authorizer of `$connect`
//! is `roomcast_core::auth::Authorizer`; its configuration (ROOMCAST_JWT_*,
//! ROOMCAST_JWKS_URL, ROOMCAST_ALLOW_ANONYMOUS) is read once at cold start by
//! `roomcast_core::lambda::run`.

use roomcast_core::lambda;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda::run(lambda::Authorizer::from_env()).await
}
