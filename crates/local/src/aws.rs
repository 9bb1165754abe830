//! What the emulator's AWS-shaped answers share: the account id in the ARNs it
//! reports, and [`AwsError`], the one type that renders every AWS-shaped error
//! response (`@connections`, the Lambda Invoke API, refused handshakes) so that
//! the AWS SDKs raise the same typed errors they raise against AWS.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// The account id in the ARNs the emulator reports (`AWS::AccountId` in templates,
/// authorizer method ARNs, Lambda function ARNs).
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// The header the AWS SDKs read an error's code from.
const ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";

/// Which AWS service's error shape to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// API Gateway (`@connections`, paths it does not serve): `{"message": …}` and
    /// `x-amzn-ErrorType`.
    ApiGateway,
    /// Lambda's Invoke API: `{"Type": "User", "message": …}` and `x-amzn-ErrorType`.
    Lambda,
    /// A refused WebSocket handshake: `{"message": …}` without an error code, as
    /// API Gateway answers before the connection exists.
    Handshake,
}

/// An AWS error response: status, error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    status: StatusCode,
    /// `x-amzn-ErrorType`; `None` only for handshakes.
    code: Option<&'static str>,
    /// `None` is sent as `null`, as API Gateway's 410 does.
    message: Option<String>,
    shape: Shape,
}

impl AwsError {
    fn api_gateway(status: StatusCode, code: &'static str, message: Option<String>) -> Self {
        Self {
            status,
            code: Some(code),
            message,
            shape: Shape::ApiGateway,
        }
    }

    /// 410 `GoneException`, with API Gateway's null message.
    pub fn gone() -> Self {
        Self::api_gateway(StatusCode::GONE, "GoneException", None)
    }

    /// 403 `ForbiddenException`: API Gateway's answer for a path it does not serve.
    pub fn forbidden() -> Self {
        Self::api_gateway(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            Some("Forbidden".to_owned()),
        )
    }

    /// 403 `ForbiddenException` with API Gateway's message for a refused signature.
    pub fn forbidden_because(message: impl Into<String>) -> Self {
        Self::api_gateway(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            Some(message.into()),
        )
    }

    /// 413 `PayloadTooLargeException` for a body of `len` bytes over `limit`.
    pub fn payload_too_large(len: usize, limit: usize) -> Self {
        Self::api_gateway(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            Some(format!(
                "Payload of {len} bytes exceeds the limit of {limit} bytes"
            )),
        )
    }

    /// 429 `LimitExceededException`.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::api_gateway(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            Some(message.into()),
        )
    }

    /// 500 `InternalServerErrorException`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::api_gateway(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerErrorException",
            Some(message.into()),
        )
    }

    /// An error of Lambda's Invoke API, e.g. 404 `ResourceNotFoundException`.
    pub fn lambda(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: Some(code),
            message: Some(message.into()),
            shape: Shape::Lambda,
        }
    }

    /// A refused handshake: 401 `Unauthorized`, 403 `Forbidden`, 500 `Internal
    /// server error`.
    pub fn handshake(status: StatusCode, message: &str) -> Self {
        Self {
            status,
            code: None,
            message: Some(message.to_owned()),
            shape: Shape::Handshake,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `x-amzn-ErrorType` code, if the response carries one.
    pub fn code(&self) -> Option<&'static str> {
        self.code
    }
}

impl IntoResponse for AwsError {
    fn into_response(self) -> Response {
        let body = match self.shape {
            Shape::Lambda => json!({ "Type": "User", "message": self.message }),
            Shape::ApiGateway | Shape::Handshake => json!({ "message": self.message }),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        if let Some(value) = self.code.and_then(|c| HeaderValue::from_str(c).ok()) {
            response.headers_mut().insert(ERROR_TYPE_HEADER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(error: AwsError) -> (StatusCode, Option<String>, String) {
        let response = error.into_response();
        let status = response.status();
        let code = response
            .headers()
            .get(ERROR_TYPE_HEADER)
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        (status, code, body)
    }

    #[tokio::test]
    async fn bodies_and_codes_are_the_services_own() {
        assert_eq!(
            parts(AwsError::gone()).await,
            (
                StatusCode::GONE,
                Some("GoneException".to_owned()),
                r#"{"message":null}"#.to_owned()
            )
        );
        assert_eq!(
            parts(AwsError::lambda(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                "Function not found"
            ))
            .await,
            (
                StatusCode::NOT_FOUND,
                Some("ResourceNotFoundException".to_owned()),
                r#"{"Type":"User","message":"Function not found"}"#.to_owned()
            )
        );
        assert_eq!(
            parts(AwsError::handshake(
                StatusCode::UNAUTHORIZED,
                "Unauthorized"
            ))
            .await,
            (
                StatusCode::UNAUTHORIZED,
                None,
                r#"{"message":"Unauthorized"}"#.to_owned()
            )
        );
        assert_eq!(
            parts(AwsError::payload_too_large(5, 4)).await.2,
            r#"{"message":"Payload of 5 bytes exceeds the limit of 4 bytes"}"#
        );
    }
}
