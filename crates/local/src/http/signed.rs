//! The SigV4 check in front of the management routes (`@connections`, Invoke,
//! the queue's `POST /`) when the gateway listens off loopback: the signature is
//! verified by [`crate::sigv4::verify`], and refusals answer as each service does.

use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::aws::AwsError;
use crate::gateway::Gateway;
use crate::sigv4::{Expected, SignatureError, verify};

/// The largest body read to check its signature: Lambda's 6 MB request limit.
const MAX_BODY: usize = 6 * 1024 * 1024;

/// The refusal as the service answers it.
fn refusal(lambda: bool, error: &SignatureError) -> AwsError {
    const MISMATCH: &str = "The request signature we calculated does not match the signature you \
        provided. Check your AWS Secret Access Key and signing method. Consult the service \
        documentation for details.";
    const UNKNOWN: &str = "The security token included in the request is invalid.";
    const MISSING: &str = "Missing Authentication Token";
    let status = axum::http::StatusCode::FORBIDDEN;
    match (lambda, error) {
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

/// Middleware on the management routes (`@connections`, Invoke, the queue's
/// `POST /`): passes the request on when the gateway
/// checks no signatures or the signature is good, else answers 403.
pub(crate) async fn check(
    State(gateway): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    let Some(credentials) = gateway.management_check() else {
        return next.run(request).await;
    };
    // `/` is also the WebSocket endpoint: only the queue's POSTs are checked there.
    if request.uri().path() == "/" && request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let lambda = request.uri().path().starts_with("/2015-03-31/");
    let sqs = request.uri().path() == "/";
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return refusal(lambda, &SignatureError::Malformed("unreadable body")).into_response();
    };
    let expected = Expected {
        credentials,
        service: if lambda {
            "lambda"
        } else if sqs {
            "sqs"
        } else {
            "execute-api"
        },
        region: &gateway.options().region,
    };
    match verify(
        &expected,
        parts.method.as_str(),
        &parts.uri,
        &parts.headers,
        &body,
        SystemTime::now(),
    ) {
        Ok(()) => next.run(Request::from_parts(parts, Body::from(body))).await,
        Err(error) => {
            tracing::info!(service = expected.service, %error, "management call refused");
            refusal(lambda, &error).into_response()
        }
    }
}
