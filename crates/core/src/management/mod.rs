//! The management port: posting to connections through API Gateway's `@connections`
//! API. [`apigw::ApiGatewayManagement`] is the adapter: signed HTTP requests
//! ([`sigv4`]) over a pooled client.

pub mod apigw;
pub mod sigv4;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext;
use bytes::Bytes;

/// How a post to one connection failed, by the management API's documented errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    /// 410 GoneException: the connection is closed; its records must go.
    #[error("connection is gone (410)")]
    Gone,
    /// 413 PayloadTooLargeException.
    #[error("payload too large (413)")]
    PayloadTooLarge,
    /// 429 LimitExceededException: too many requests, or the client's buffer is full.
    #[error("throttled (429)")]
    Throttled,
    /// 403 ForbiddenException: the caller may not manage this API.
    #[error("forbidden (403)")]
    Forbidden,
    /// A 5xx answer: worth retrying.
    #[error("management API error {status}: {message}")]
    Server { status: u16, message: String },
    /// No answer: the connection could not be made, or the attempt timed out.
    /// Worth retrying like a 5xx (a timed-out post may have been delivered, as a
    /// 5xx's may).
    #[error("management API unreachable: {0}")]
    Unreachable(String),
    /// A request that cannot succeed as it is (no credentials, a bad endpoint) or
    /// an unexpected answer.
    #[error("management API call failed: {0}")]
    Transport(String),
}

impl PostError {
    /// Whether the same post may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::Server { .. } | Self::Unreachable(_)
        )
    }
}

#[async_trait]
pub trait Management: Send + Sync + 'static {
    /// Sends `data` to one connection as a text frame.
    async fn post(&self, endpoint: &str, connection_id: &str, data: Bytes)
    -> Result<(), PostError>;

    /// Posts at once when that needs no waiting (an in-process gateway without
    /// injected latency), so a fan-out can skip a future per recipient; `None`
    /// means "call [`Self::post`]", and is what network adapters answer.
    fn post_now(
        &self,
        _endpoint: &str,
        _connection_id: &str,
        _data: &Bytes,
    ) -> Option<Result<(), PostError>> {
        None
    }

    /// Closes a connection; API Gateway then runs `$disconnect`.
    async fn delete(&self, endpoint: &str, connection_id: &str) -> Result<(), PostError>;
}

/// The `@connections` endpoint for an event: the configured one, or else
/// `https://{domainName}/{stage}` as API Gateway documents for its default domain.
/// A custom domain with a base path needs the configured endpoint.
pub fn endpoint_for(
    configured: Option<&str>,
    context: &ApiGatewayWebsocketProxyRequestContext,
) -> Option<String> {
    if let Some(endpoint) = configured {
        return Some(endpoint.to_owned());
    }
    let domain = context.domain_name.as_deref().filter(|d| !d.is_empty())?;
    let stage = context.stage.as_deref().filter(|s| !s.is_empty())?;
    Some(format!("https://{domain}/{stage}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_from_configuration_or_event() {
        let mut ctx = ApiGatewayWebsocketProxyRequestContext::default();
        assert_eq!(endpoint_for(None, &ctx), None);
        ctx.domain_name = Some("abc.execute-api.eu-west-1.amazonaws.com".into());
        ctx.stage = Some("prod".into());
        assert_eq!(
            endpoint_for(None, &ctx).as_deref(),
            Some("https://abc.execute-api.eu-west-1.amazonaws.com/prod")
        );
        assert_eq!(
            endpoint_for(Some("http://127.0.0.1:3001/local"), &ctx).as_deref(),
            Some("http://127.0.0.1:3001/local")
        );
    }

    #[test]
    fn throttling_server_errors_and_no_answer_are_retried() {
        assert!(PostError::Throttled.is_retryable());
        assert!(PostError::Unreachable("connection refused".into()).is_retryable());
        assert!(!PostError::Transport("no credentials".into()).is_retryable());
        assert!(
            PostError::Server {
                status: 503,
                message: String::new()
            }
            .is_retryable()
        );
        assert!(!PostError::Gone.is_retryable());
        assert!(!PostError::PayloadTooLarge.is_retryable());
    }
}
