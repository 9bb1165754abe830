//! The API Gateway Management API adapter over `aws-sdk-apigatewaymanagement`.
//!
//! One SDK client per endpoint, built from the cold-start `SdkConfig` and kept for
//! the life of the process, so every post reuses the same pooled keep-alive
//! connections. The SDK's own retries are off: the fan-out engine retries
//! throttling and 5xx itself, with jitter and within a deadline, and must see each
//! 410 to clean up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::config::http::HttpResponse;
use aws_sdk_apigatewaymanagement::error::{DisplayErrorContext, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;

use super::{Management, PostError};

/// Per-attempt timeout of one `@connections` call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct ApiGatewayManagement {
    sdk: SdkConfig,
    clients: Arc<Mutex<HashMap<String, Client>>>,
}

impl ApiGatewayManagement {
    pub fn new(sdk: &SdkConfig) -> Self {
        Self {
            sdk: sdk.clone(),
            clients: Arc::default(),
        }
    }

    fn client(&self, endpoint: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(endpoint.to_owned())
            .or_insert_with(|| {
                let config = aws_sdk_apigatewaymanagement::config::Builder::from(&self.sdk)
                    .endpoint_url(endpoint)
                    .retry_config(RetryConfig::disabled())
                    .timeout_config(
                        TimeoutConfig::builder()
                            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                            .build(),
                    )
                    .build();
                Client::from_conf(config)
            })
            .clone()
    }
}

/// Maps an SDK error by HTTP status, which is what the service's typed errors
/// (GoneException, PayloadTooLargeException, LimitExceededException,
/// ForbiddenException) are keyed on as well.
fn classify<E>(e: SdkError<E, HttpResponse>) -> PostError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(410) => PostError::Gone,
        Some(413) => PostError::PayloadTooLarge,
        Some(429) => PostError::Throttled,
        Some(403) => PostError::Forbidden,
        Some(status) if status >= 500 => PostError::Server {
            status,
            message: DisplayErrorContext(&e).to_string(),
        },
        _ => PostError::Transport(DisplayErrorContext(&e).to_string()),
    }
}

#[async_trait]
impl Management for ApiGatewayManagement {
    async fn post(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), PostError> {
        self.client(endpoint)
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(data))
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn delete(&self, endpoint: &str, connection_id: &str) -> Result<(), PostError> {
        self.client(endpoint)
            .delete_connection()
            .connection_id(connection_id)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }
}
