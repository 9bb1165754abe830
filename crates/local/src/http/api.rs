//! The APIs behind the guard ([`crate::http::guard`]): which one a request is for,
//! the service its signature names, its body limit and its errors' shapes. Kept
//! apart so the guard, the signature check and the routes name it without
//! importing each other.

use axum::http::StatusCode;
use roomcast_core::limits::GATEWAY_MAX_PAYLOAD;

use crate::aws::AwsError;
use crate::queue::MAX_MESSAGE_BYTES;

/// Where the Prometheus metrics are served.
pub const METRICS_PATH: &str = "/metrics";

/// Where the simulated members' figures are served (`http::simulated`); no
/// stage can be named so (`@` is not allowed in one).
pub const SIMULATED_PATH: &str = "/@simulated";

/// Which API a guarded request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// `@connections`.
    Connections,
    /// The Lambda Invoke API.
    Lambda,
    /// The broadcast queue's SQS API.
    Sqs,
    /// `GET /metrics`.
    Metrics,
    /// `GET /@simulated`.
    Simulated,
}

/// Lambda's limit on a synchronous invocation's payload (6 MB).
pub const INVOKE_MAX_BODY: usize = 6 * 1024 * 1024;
/// An SQS request: a message of up to [`MAX_MESSAGE_BYTES`], JSON-escaped, with
/// its attributes and envelope.
pub const SQS_MAX_BODY: usize = 2 * MAX_MESSAGE_BYTES + 64 * 1024;

impl Api {
    pub(crate) fn of(path: &str) -> Self {
        if path.starts_with("/2015-03-31/") {
            Self::Lambda
        } else if path == "/" {
            Self::Sqs
        } else if path == METRICS_PATH {
            Self::Metrics
        } else if path == SIMULATED_PATH {
            Self::Simulated
        } else {
            Self::Connections
        }
    }

    /// The service name requests are signed for.
    pub(crate) fn signing_service(self) -> &'static str {
        match self {
            Self::Lambda => "lambda",
            Self::Sqs => "sqs",
            Self::Connections | Self::Metrics | Self::Simulated => "execute-api",
        }
    }

    /// The largest body read: API Gateway's message limit for `@connections`,
    /// Lambda's for Invoke, SQS's for the queue; none for `/metrics` and `/@simulated`.
    pub(crate) fn body_limit(self) -> usize {
        match self {
            Self::Connections => GATEWAY_MAX_PAYLOAD,
            Self::Lambda => INVOKE_MAX_BODY,
            Self::Sqs => SQS_MAX_BODY,
            Self::Metrics | Self::Simulated => 0,
        }
    }

    pub(crate) fn forbidden(self, message: &str) -> AwsError {
        match self {
            Self::Lambda => {
                AwsError::lambda(StatusCode::FORBIDDEN, "AccessDeniedException", message)
            }
            _ => AwsError::forbidden_because(message),
        }
    }

    pub(crate) fn too_large(self, len: Option<usize>) -> AwsError {
        let limit = self.body_limit();
        match self {
            Self::Lambda => AwsError::lambda(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                format!(
                    "Request must be smaller than {limit} bytes for the InvokeFunction operation"
                ),
            ),
            _ => AwsError::payload_too_large(len.unwrap_or(limit + 1), limit),
        }
    }
}
