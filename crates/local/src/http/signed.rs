//! The SigV4 check in front of the management routes (`@connections`, Invoke,
//! the queue's `POST /`, `GET /metrics`) when the gateway listens off loopback:
//! what the headers tell (key, scope, date, signed `x-amz-*` headers) is checked
//! before the body is read, the signature over the body after
//! ([`crate::sigv4`]); refusals answer as each service does.

use std::time::SystemTime;

use axum::http::request::Parts;

use crate::aws::AwsError;
use crate::gateway::Gateway;
use crate::http::api::Api;
use crate::sigv4::{self, Expected, SignatureError};

/// The refusal as the service answers it.
pub(crate) fn refusal(api: Api, error: &SignatureError) -> AwsError {
    const MISMATCH: &str = "The request signature we calculated does not match the signature you \
        provided. Check your AWS Secret Access Key and signing method. Consult the service \
        documentation for details.";
    const UNKNOWN: &str = "The security token included in the request is invalid.";
    const MISSING: &str = "Missing Authentication Token";
    let status = axum::http::StatusCode::FORBIDDEN;
    match (api == Api::Lambda, error) {
        (false, SignatureError::Missing) => AwsError::forbidden_because(MISSING),
        (false, SignatureError::UnknownKey) => AwsError::forbidden_because(UNKNOWN),
        (false, SignatureError::Mismatch) => AwsError::forbidden_because(MISMATCH),
        (false, other) => AwsError::forbidden_because(other.to_string()),
        (true, SignatureError::Missing) => {
            AwsError::lambda(status, "MissingAuthenticationTokenException", MISSING)
        }
        (true, SignatureError::UnknownKey) => {
            AwsError::lambda(status, "UnrecognizedClientException", UNKNOWN)
        }
        (true, SignatureError::Mismatch) => {
            AwsError::lambda(status, "InvalidSignatureException", MISMATCH)
        }
        (true, other) => AwsError::lambda(status, "InvalidSignatureException", other.to_string()),
    }
}

/// What a request to `api` must be signed for; `None` when the gateway checks
/// no signatures.
fn expected<'a>(gateway: &'a Gateway, api: Api) -> Option<Expected<'a>> {
    Some(Expected {
        credentials: gateway.management_check()?,
        service: api.signing_service(),
        region: &gateway.options().region,
    })
}

fn refused(api: Api, error: &SignatureError) -> AwsError {
    tracing::info!(service = api.signing_service(), %error, "management call refused");
    refusal(api, error)
}

/// Before the body is read: the parts of the signature the headers carry.
pub(crate) fn check_headers(gateway: &Gateway, api: Api, parts: &Parts) -> Result<(), AwsError> {
    let Some(expected) = expected(gateway, api) else {
        return Ok(());
    };
    sigv4::check_headers(&expected, &parts.uri, &parts.headers, SystemTime::now())
        .map(|_| ())
        .map_err(|e| refused(api, &e))
}

/// After the body is read: the signature over the whole request.
pub(crate) fn check(
    gateway: &Gateway,
    api: Api,
    parts: &Parts,
    body: &[u8],
) -> Result<(), AwsError> {
    let Some(expected) = expected(gateway, api) else {
        return Ok(());
    };
    sigv4::verify(
        &expected,
        parts.method.as_str(),
        &parts.uri,
        &parts.headers,
        body,
        SystemTime::now(),
    )
    .map_err(|e| refused(api, &e))
}
