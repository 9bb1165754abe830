//! Invoking functions behind a Lambda Invoke endpoint (`roomcast dev
//! --invoke-endpoint URL`): `cargo lambda watch`, `sam local start-lambda`, or
//! Lambda itself. Events go to `POST {URL}/2015-03-31/functions/{name}/invocations`
//! through the AWS SDK for Lambda, which signs requests (AWS needs it; the local
//! emulators ignore it) and reads `X-Amz-Function-Error`.
//!
//! API Gateway neither retries an integration nor tells the client why it failed,
//! so every failure is one [`RemoteError`] the gateway turns into its generic
//! answers; the detail goes to the log.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;

use super::function::{ErrorKind, InvokeError};

/// Lambda's limit on a synchronous invocation's response: a larger one is a
/// function error (`Function.ResponseSizeTooLarge`).
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;

/// Why a remote invocation produced no usable response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    #[error("the function did not answer within {0:?}")]
    TimedOut(Duration),
    /// The function failed (`X-Amz-Function-Error`, or the error document
    /// `cargo lambda watch` answers with a 500). `message` is the function's own
    /// `errorMessage`, which may quote a token or a frame: it is not displayed.
    #[error("function error {error_type}")]
    Function { error_type: String, message: String },
    #[error("the Invoke endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("cannot reach the Invoke endpoint: {0}")]
    Transport(String),
}

/// A Lambda Invoke API client, built once and shared (cloning is cheap).
#[derive(Debug, Clone)]
pub struct RemoteInvoker {
    client: aws_sdk_lambda::Client,
    endpoint: String,
}

impl RemoteInvoker {
    /// A client for `endpoint` (e.g. `http://127.0.0.1:9000`). No retries: API
    /// Gateway does not retry a failed integration either.
    pub fn new(sdk: &SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_lambda::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .build();
        Self {
            client: aws_sdk_lambda::Client::from_conf(config),
            endpoint: endpoint.to_owned(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Invokes `function` (RequestResponse) with `payload` and returns its result.
    pub async fn invoke(
        &self,
        function: &str,
        payload: Vec<u8>,
        limit: Duration,
    ) -> Result<Value, RemoteError> {
        let call = self
            .client
            .invoke()
            .function_name(function)
            .payload(Blob::new(payload))
            .send();
        let output = match tokio::time::timeout(limit, call).await {
            Err(_elapsed) => return Err(RemoteError::TimedOut(limit)),
            Ok(Ok(output)) => output,
            Ok(Err(SdkError::ServiceError(e))) => {
                let raw = e.raw();
                return Err(
                    error_document(raw.body().bytes().unwrap_or_default()).unwrap_or(
                        RemoteError::Status {
                            status: raw.status().as_u16(),
                        },
                    ),
                );
            }
            Ok(Err(e)) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                return Err(match status {
                    Some(status) if !(200..300).contains(&status) => RemoteError::Status { status },
                    _ => RemoteError::Transport(roomcast_core::error_chain(&e)),
                });
            }
        };
        let body = output.payload().map(Blob::as_ref).unwrap_or_default();
        if let Some(kind) = output.function_error() {
            return Err(error_document(body).unwrap_or(RemoteError::Function {
                error_type: kind.to_owned(),
                message: String::new(),
            }));
        }
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(RemoteError::Function {
                error_type: ErrorKind::ResponseTooLarge.as_str().to_owned(),
                message: String::new(),
            });
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| RemoteError::Function {
            error_type: "Gateway.InvalidResponse".to_owned(),
            message: serde_error(&e),
        })?;
        // cargo lambda watch answers an initialisation error with 200, without
        // X-Amz-Function-Error, and the runtime's error document as the body
        // (its init_error route). Anything else a 200 carries is the function's
        // own result, even with an errorMessage field in it.
        if is_bare_error_document(&value)
            && let Some(error) = error_document(body)
        {
            return Err(error);
        }
        Ok(value)
    }
}

/// Serde's error without its text, which can quote the value it failed on.
fn serde_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// Exactly `{"errorType": "...", "errorMessage": "..."}`: what a runtime reports
/// an initialisation error with, and never a proxy response (no `statusCode`).
fn is_bare_error_document(value: &Value) -> bool {
    value.as_object().is_some_and(|fields| {
        fields.len() == 2
            && fields.get("errorType").is_some_and(Value::is_string)
            && fields.get("errorMessage").is_some_and(Value::is_string)
    })
}

/// Invokes a remote function with a WebSocket event and reads its proxy response.
/// The detail of a failure goes to the log (never the function's response or
/// error message, which may quote tokens or frames); the caller gets API
/// Gateway's generic kinds. With `one_way`, the response is not read at all (API
/// Gateway sends nothing back on a route without a route response, whatever the
/// function returned), so only an invocation that failed fails.
pub async fn route(
    invoker: &RemoteInvoker,
    function: &str,
    event: &ApiGatewayWebsocketProxyRequest,
    limit: Duration,
    one_way: bool,
) -> Result<ApiGatewayProxyResponse, InvokeError> {
    let payload = crate::events::to_wire(event).map_err(|_| InvokeError::Failed)?;
    match invoker.invoke(function, payload, limit).await {
        Ok(_) if one_way => Ok(ApiGatewayProxyResponse::default()),
        Ok(value) => serde_json::from_value(value).map_err(|e| {
            tracing::warn!(
                function,
                error = %serde_error(&e),
                "the function's response is not a proxy response"
            );
            InvokeError::Failed
        }),
        Err(RemoteError::TimedOut(_)) => {
            tracing::warn!(function, "the integration timed out");
            Err(InvokeError::TimedOut)
        }
        Err(error) => {
            tracing::warn!(function, %error, "the integration failed");
            Err(InvokeError::Failed)
        }
    }
}

/// `{"errorType": …, "errorMessage": …}`, the document Lambda runtimes report errors with.
fn error_document(body: &[u8]) -> Option<RemoteError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let message = value.get("errorMessage")?.as_str()?.to_owned();
    let error_type = value
        .get("errorType")
        .and_then(Value::as_str)
        .unwrap_or("Unhandled")
        .to_owned();
    Some(RemoteError::Function {
        error_type,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::post;

    /// A stand-in Invoke endpoint: the function name picks the behaviour.
    async fn endpoint() -> String {
        async fn invoke(
            axum::extract::Path(name): axum::extract::Path<String>,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            match name.as_str() {
                "echo" => (StatusCode::OK, body).into_response(),
                "fails" => (
                    StatusCode::OK,
                    [("X-Amz-Function-Error", "Unhandled")],
                    r#"{"errorType":"Boom","errorMessage":"it broke"}"#,
                )
                    .into_response(),
                // cargo lambda watch's answer to a function error.
                "watch-fails" => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    r#"{"errorType":"&str","errorMessage":"Unauthorized"}"#,
                )
                    .into_response(),
                "crashes" => (StatusCode::INTERNAL_SERVER_ERROR, "oops").into_response(),
                // A function's own result that happens to carry errorMessage.
                "ok-with-error-message" => (
                    StatusCode::OK,
                    r#"{"statusCode":200,"body":"ok","errorMessage":"x"}"#,
                )
                    .into_response(),
                // cargo lambda watch's answer to an initialisation error.
                "init-error" => (
                    StatusCode::OK,
                    r#"{"errorType":"Init","errorMessage":"ROOMCAST_TABLE user secret"}"#,
                )
                    .into_response(),
                "huge" => (
                    StatusCode::OK,
                    format!(
                        r#"{{"statusCode":200,"body":"{}"}}"#,
                        "a".repeat(MAX_RESPONSE_BYTES)
                    ),
                )
                    .into_response(),
                "null" => (StatusCode::OK, "null").into_response(),
                "garbage" => (StatusCode::OK, "not json {").into_response(),
                "slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    (StatusCode::OK, "{}").into_response()
                }
                _ => (StatusCode::NOT_FOUND, "{}").into_response(),
            }
        }
        let app = Router::new().route("/2015-03-31/functions/{name}/invocations", post(invoke));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn maps_every_failure_to_a_remote_error() {
        let sdk = crate::backend::local_sdk_config("us-east-1").await;
        let invoker = RemoteInvoker::new(&sdk, &endpoint().await);
        let limit = Duration::from_secs(10);
        let ok = invoker
            .invoke("echo", br#"{"statusCode":200}"#.to_vec(), limit)
            .await;
        assert_eq!(ok, Ok(serde_json::json!({"statusCode": 200})));
        assert_eq!(
            invoker.invoke("fails", b"{}".to_vec(), limit).await,
            Err(RemoteError::Function {
                error_type: "Boom".into(),
                message: "it broke".into()
            })
        );
        assert_eq!(
            invoker.invoke("watch-fails", b"{}".to_vec(), limit).await,
            Err(RemoteError::Function {
                error_type: "&str".into(),
                message: "Unauthorized".into()
            })
        );
        assert_eq!(
            invoker.invoke("crashes", b"{}".to_vec(), limit).await,
            Err(RemoteError::Status { status: 500 })
        );
        assert_eq!(
            invoker.invoke("missing", b"{}".to_vec(), limit).await,
            Err(RemoteError::Status { status: 404 })
        );
        assert!(matches!(
            invoker.invoke("garbage", b"{}".to_vec(), limit).await,
            Err(RemoteError::Function { .. })
        ));
        let short = Duration::from_millis(200);
        assert_eq!(
            invoker.invoke("slow", b"{}".to_vec(), short).await,
            Err(RemoteError::TimedOut(short))
        );
        assert_eq!(
            invoker
                .invoke("ok-with-error-message", b"{}".to_vec(), limit)
                .await,
            Ok(serde_json::json!({"statusCode": 200, "body": "ok", "errorMessage": "x"}))
        );
        let init = invoker.invoke("init-error", b"{}".to_vec(), limit).await;
        assert_eq!(
            init,
            Err(RemoteError::Function {
                error_type: "Init".into(),
                message: "ROOMCAST_TABLE user secret".into()
            })
        );
        // What gets logged never quotes the function's own message.
        let shown = init.unwrap_err().to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(
            invoker.invoke("huge", b"{}".to_vec(), limit).await,
            Err(RemoteError::Function {
                error_type: "Function.ResponseSizeTooLarge".into(),
                message: String::new()
            })
        );
        let nowhere = RemoteInvoker::new(&sdk, "http://127.0.0.1:9");
        assert!(matches!(
            nowhere.invoke("echo", b"{}".to_vec(), limit).await,
            Err(RemoteError::Transport(_))
        ));
    }

    #[tokio::test]
    async fn one_way_routes_ignore_what_the_function_returned() {
        let sdk = crate::backend::local_sdk_config("us-east-1").await;
        let invoker = RemoteInvoker::new(&sdk, &endpoint().await);
        let event = ApiGatewayWebsocketProxyRequest::default();
        let limit = Duration::from_secs(10);
        assert!(route(&invoker, "null", &event, limit, true).await.is_ok());
        assert_eq!(
            route(&invoker, "null", &event, limit, false).await,
            Err(InvokeError::Failed)
        );
        // A failed invocation fails a one-way route all the same.
        assert_eq!(
            route(&invoker, "fails", &event, limit, true).await,
            Err(InvokeError::Failed)
        );
        let answer = route(&invoker, "ok-with-error-message", &event, limit, false)
            .await
            .expect("the function's own response");
        assert_eq!(answer.status_code, 200);
    }

    #[test]
    fn serde_errors_are_logged_without_the_values() {
        let e = serde_json::from_str::<u32>(r#""user secret text""#).unwrap_err();
        assert!(
            e.to_string().contains("user secret text"),
            "serde quotes it"
        );
        let shown = serde_error(&e);
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("line 1"), "{shown}");
    }
}
