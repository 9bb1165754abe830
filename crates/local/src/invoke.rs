//! The Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`) over a
//! registry of in-process functions, so scripts and the AWS SDK for Lambda can invoke
//! roomcast's functions as they would on AWS. `connect`, `disconnect` and `message`
//! are registered at start; more (e.g. a broadcast function) can be added by name.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use roomcast_core::App;

use crate::Gateway;
use crate::aws::{AwsError, LOCAL_ACCOUNT};
use crate::events::gateway_id;
use crate::handlers::{self, Integration};

/// A function error, reported as Lambda reports an unhandled error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error_type}: {error_message}")]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

/// A function the Invoke API can run: JSON in, JSON out, as on Lambda.
#[async_trait]
pub trait LambdaFunction: Send + Sync + 'static {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError>;
}

/// Functions by name. Cloning shares the registry.
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    functions: Arc<RwLock<HashMap<String, Arc<dyn LambdaFunction>>>>,
}

impl std::fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("names", &self.names())
            .finish()
    }
}

impl FunctionRegistry {
    /// Adds (or replaces) a function.
    pub fn register(&self, name: impl Into<String>, function: Arc<dyn LambdaFunction>) {
        self.functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.into(), function);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn LambdaFunction>> {
        self.functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .functions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// Registers roomcast's three WebSocket functions (`connect`, `disconnect`,
    /// `message`), each run on `app` within `timeout`, and the broadcast function.
    pub(crate) fn register_builtins(&self, app: &Arc<App>, timeout: Duration) {
        for integration in Integration::ALL {
            self.register(
                integration.binary(),
                Arc::new(RouteFunction {
                    app: Arc::clone(app),
                    integration,
                    timeout,
                }),
            );
        }
        for name in crate::broadcast::NAMES {
            self.register(
                name,
                Arc::new(crate::broadcast::BroadcastFunction::new(Arc::clone(app))),
            );
        }
    }
}

/// One of roomcast's route handlers as a Lambda function.
struct RouteFunction {
    app: Arc<App>,
    integration: Integration,
    /// The integration timeout.
    timeout: Duration,
}

#[async_trait]
impl LambdaFunction for RouteFunction {
    async fn invoke(&self, payload: Value) -> Result<Value, FunctionError> {
        // The same failure lambda_runtime reports when the event does not decode.
        let event: ApiGatewayWebsocketProxyRequest =
            serde_json::from_value(payload).map_err(|e| FunctionError {
                error_type: "Runtime.DeserializationError".to_owned(),
                error_message: format!("payload is not an API Gateway WebSocket event: {e}"),
            })?;
        let response: ApiGatewayProxyResponse =
            handlers::invoke(Arc::clone(&self.app), self.integration, event, self.timeout)
                .await
                .map_err(|e| FunctionError {
                    error_type: "Sandbox.Timedout".to_owned(),
                    error_message: e.to_string(),
                })?;
        serde_json::to_value(response).map_err(|e| FunctionError {
            error_type: "Runtime.SerializationError".to_owned(),
            error_message: e.to_string(),
        })
    }
}

/// The function name from a name, a partial or full ARN, with an optional qualifier:
/// `message`, `message:$LATEST`, `arn:aws:lambda:us-east-1:123:function:message`.
fn function_name(raw: &str) -> &str {
    let rest = raw.rsplit_once(":function:").map_or(raw, |(_, rest)| rest);
    rest.split_once(':').map_or(rest, |(name, _)| name)
}

fn lambda_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    AwsError::lambda(status, error_type, message).into_response()
}

/// `POST /2015-03-31/functions/{name}/invocations`, honouring
/// `X-Amz-Invocation-Type` (RequestResponse, Event, DryRun).
pub async fn invoke(
    State(gateway): State<Gateway>,
    Path(raw_name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = function_name(&raw_name);
    let Some(function) = gateway.functions().get(name) else {
        let region = gateway.options().region.clone();
        return lambda_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &format!("Function not found: arn:aws:lambda:{region}:{LOCAL_ACCOUNT}:function:{name}"),
        );
    };
    let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(payload) => payload,
            Err(_) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    "Could not parse request body into json",
                );
            }
        }
    };
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse");
    let request_id = gateway_id();
    match invocation_type {
        "DryRun" => return StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            tokio::spawn(async move {
                if let Err(e) = function.invoke(payload).await {
                    tracing::warn!(error_type = %e.error_type, "asynchronous invocation failed");
                }
            });
            return (StatusCode::ACCEPTED, [("x-amzn-RequestId", request_id)]).into_response();
        }
        "RequestResponse" => {}
        _ => {
            return lambda_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun",
            );
        }
    }
    let (body, function_error) = match function.invoke(payload).await {
        Ok(result) => (result.to_string(), None),
        Err(e) => (
            json!({ "errorType": e.error_type, "errorMessage": e.error_message }).to_string(),
            Some("Unhandled"),
        ),
    };
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (HeaderName::from_static("x-amz-executed-version"), "$LATEST"),
        ],
        body,
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", value);
    }
    if let Some(kind) = function_error {
        response
            .headers_mut()
            .insert("X-Amz-Function-Error", HeaderValue::from_static(kind));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn names_from_arns_and_qualifiers() {
        assert_eq!(function_name("message"), "message");
        assert_eq!(function_name("message:$LATEST"), "message");
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:message"),
            "message"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:message:live"),
            "message"
        );
    }
}
