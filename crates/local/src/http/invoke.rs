//! The Lambda Invoke API (`POST /2015-03-31/functions/{name}/invocations`) over the
//! gateway's [`FunctionRegistry`](crate::functions::registry::FunctionRegistry), so
//! scripts and the AWS SDK for Lambda can invoke roomcast's functions as they would
//! on AWS. It only translates: HTTP in, the function's result or Lambda's error
//! document out.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::aws::{AwsError, LOCAL_ACCOUNT};
use crate::events::gateway_id;
use crate::functions::function::FunctionError;
use crate::gateway::Gateway;

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
    let Some(payload) = payload_of(&body) else {
        return lambda_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json",
        );
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
    respond(function.invoke(payload).await, &request_id)
}

/// The request's JSON payload (`{}` for an empty body); `None` when it is not JSON.
fn payload_of(body: &[u8]) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(json!({}));
    }
    serde_json::from_slice(body).ok()
}

/// A RequestResponse invocation's answer: the function's result, or Lambda's error
/// document with `X-Amz-Function-Error: Unhandled`.
fn respond(result: Result<Value, FunctionError>, request_id: &str) -> Response {
    let (body, function_error) = match result {
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
    if let Ok(value) = HeaderValue::from_str(request_id) {
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
