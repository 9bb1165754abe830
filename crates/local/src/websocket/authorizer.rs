//! The `$connect` REQUEST authorizer, run as API Gateway runs it: before the
//! `$connect` integration, with the handshake's headers and query string. A Deny
//! policy refuses the handshake with 403, the error `Unauthorized` with 401, and an
//! authorizer that fails or times out with 500; an Allow policy's context (plus
//! `principalId`) becomes `requestContext.authorizer` on every event of the
//! connection, each value a string as API Gateway passes it ("The stringified
//! value": AWS, "Output from an API Gateway Lambda authorizer"). Tokens and
//! contexts are never logged.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayRequestAuthorizer,
};
use aws_lambda_events::iam::IamPolicyEffect;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use roomcast_core::auth::{Authorizer, Decision};
use roomcast_core::names::{authorizer as ctx, route};
use serde_json::{Value, json};

use super::log::CONNECTION_LOG;
use crate::aws::{AwsError, LOCAL_ACCOUNT};
use crate::events::{ConnectionContext, Handshake, header_maps, query_maps};
use crate::functions::remote::{RemoteError, RemoteInvoker};
use crate::functions::run::run_with_timeout;
use crate::gateway::Gateway;
use crate::routes::AuthorizerTarget;

pub use roomcast_core::limits::MAX_AUTHORIZER_RESPONSE_BYTES;

/// Runs the gateway's authorizer, if it has one, for a handshake. `Ok` carries the
/// authorizer context for the connection (empty without an authorizer); `Err` the
/// response refusing the handshake.
pub(crate) async fn authorize(
    gateway: &Gateway,
    context: &ConnectionContext,
    handshake: &Handshake<'_>,
) -> Result<ApiGatewayRequestAuthorizer, Response> {
    let Handshake {
        headers,
        query,
        now_ms,
    } = *handshake;
    let Some(target) = gateway.authorizer().cloned() else {
        return Ok(ApiGatewayRequestAuthorizer::default());
    };
    // The event as API Gateway sends it, and the same event typed for the
    // in-process authorizer (the typed request leaves out some requestContext
    // fields, so a remote authorizer gets the JSON itself).
    let event = request(gateway, context, headers, query, now_ms);
    let method_arn = event["methodArn"].as_str().unwrap_or_default().to_owned();
    // API Gateway answers 401 without invoking the authorizer when the handshake
    // lacks one of its identity sources, whichever way the authorizer runs.
    if let Some(missing) = target
        .identity_sources()
        .iter()
        .find(|source| !has_identity_source(source, headers, query))
    {
        tracing::info!(target: CONNECTION_LOG, connection_id = %context.connection_id, status = 401, %missing, "handshake refused: identity source missing");
        return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    // In-process or remote, the answer is evaluated below by the same code.
    let connection_id = context.connection_id.as_str();
    let decision = match target {
        AuthorizerTarget::InProcess { authorizer, .. } => {
            let limit = gateway.options().integration_timeout;
            in_process_decision(authorizer, event, limit, connection_id).await?
        }
        AuthorizerTarget::Remote {
            invoker,
            function,
            timeout,
            ..
        } => match remote_decision(&invoker, &function, &event, &method_arn, timeout).await {
            Ok(decision) => decision,
            Err(error) => {
                tracing::warn!(%connection_id, %function, %error, "the authorizer failed");
                return Err(failed());
            }
        },
    };
    match decision {
        Decision::Allow(response) => allowed(response, connection_id).ok_or_else(failed),
        Decision::Deny(_) => {
            tracing::info!(target: CONNECTION_LOG, %connection_id, status = 403, "handshake refused by the authorizer");
            Err(message(StatusCode::FORBIDDEN, "Forbidden"))
        }
        Decision::Unauthorized => {
            tracing::info!(target: CONNECTION_LOG, %connection_id, status = 401, "handshake refused by the authorizer");
            Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
    }
}

/// API Gateway's answer to an authorizer that failed or timed out.
fn failed() -> Response {
    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
}

/// roomcast's own authorizer's decision, run as a Lambda invocation is
/// ([`run_with_timeout`]): a panic fails this handshake only.
async fn in_process_decision(
    authorizer: Arc<Authorizer>,
    event: Value,
    limit: Duration,
    connection_id: &str,
) -> Result<Decision, Response> {
    let request: ApiGatewayCustomAuthorizerRequestTypeRequest = match serde_json::from_value(event)
    {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, "could not build the authorizer request");
            return Err(failed());
        }
    };
    match run_with_timeout(limit, async move { authorizer.authorize(&request).await }).await {
        Some(Ok(decision)) => Ok(decision),
        None => {
            tracing::warn!(%connection_id, "the authorizer timed out");
            Err(failed())
        }
        Some(Err(_panicked)) => {
            tracing::warn!(%connection_id, "the authorizer failed");
            Err(failed())
        }
    }
}

/// The connection's `requestContext.authorizer` from an Allow: the context's values
/// stringified, plus `principalId`; `None` over API Gateway's 8 KB (the handshake
/// fails).
fn allowed(
    response: ApiGatewayCustomAuthorizerResponse,
    connection_id: &str,
) -> Option<ApiGatewayRequestAuthorizer> {
    let size = response_size(&response);
    if size > MAX_AUTHORIZER_RESPONSE_BYTES {
        tracing::warn!(
            %connection_id,
            size,
            "the authorizer's response is over API Gateway's 8 KB limit"
        );
        return None;
    }
    let mut authorizer = ApiGatewayRequestAuthorizer::default();
    if let Value::Object(fields) = response.context {
        authorizer
            .fields
            .extend(fields.into_iter().map(|(k, v)| (k, stringified(v))));
    }
    if let Some(principal) = response.principal_id {
        authorizer
            .fields
            .insert(ctx::PRINCIPAL_ID.to_owned(), json!(principal));
    }
    Some(authorizer)
}

/// Why a remote authorizer gave no decision; never quotes its response.
#[derive(Debug, thiserror::Error)]
enum RemoteAuthorizerError {
    #[error("{0}")]
    Invoke(#[from] RemoteError),
    #[error("cannot serialise the authorizer request")]
    Request,
    #[error("not an authorizer response: {0:?} error at line {1} column {2}")]
    NotAResponse(serde_json::error::Category, usize, usize),
    #[error("context value {0:?} is not a string, number or boolean")]
    Context(String),
}

/// Invokes a remote authorizer and reads its answer as API Gateway does: the error
/// `Unauthorized` is a 401; a policy is an Allow only when a statement allows
/// `execute-api:Invoke` on the `$connect` method ARN and none denies it (else a
/// 403); a context value that is not a string, number or boolean is a failure.
async fn remote_decision(
    invoker: &RemoteInvoker,
    function: &str,
    event: &Value,
    method_arn: &str,
    limit: std::time::Duration,
) -> Result<Decision, RemoteAuthorizerError> {
    let payload = serde_json::to_vec(event).map_err(|_| RemoteAuthorizerError::Request)?;
    let value = match invoker.invoke(function, payload, limit).await {
        Ok(value) => value,
        Err(RemoteError::Function { message, .. }) if message == ctx::UNAUTHORIZED => {
            return Ok(Decision::Unauthorized);
        }
        Err(e) => return Err(e.into()),
    };
    let response: ApiGatewayCustomAuthorizerResponse = serde_json::from_value(value)
        .map_err(|e| RemoteAuthorizerError::NotAResponse(e.classify(), e.line(), e.column()))?;
    if let Value::Object(fields) = &response.context
        && let Some((name, _)) = fields
            .iter()
            .find(|(_, v)| !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_)))
    {
        return Err(RemoteAuthorizerError::Context(name.clone()));
    }
    let applies = |effect: IamPolicyEffect| {
        response.policy_document.statement.iter().any(|s| {
            s.effect == effect
                && s.action
                    .iter()
                    .any(|a| iam_matches(&a.to_ascii_lowercase(), INVOKE_ACTION))
                && s.resource.iter().any(|r| iam_matches(r, method_arn))
        })
    };
    Ok(
        if applies(IamPolicyEffect::Allow) && !applies(IamPolicyEffect::Deny) {
            Decision::Allow(response)
        } else {
            Decision::Deny(response)
        },
    )
}

/// The action an authorizer's policy must allow, lower-cased (IAM compares
/// actions case-insensitively).
const INVOKE_ACTION: &str = "execute-api:invoke";

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
fn iam_matches(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    // Greedy matching with backtracking to the last `*`: linear in practice.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < v.len() {
        if i < p.len() && (p[i] == '?' || p[i] == v[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

/// Whether a handshake carries an `IdentitySource` (`route.request.header.X` or
/// `route.request.querystring.X`; other kinds are not checked locally).
fn has_identity_source(source: &str, headers: &HeaderMap, query: &[(String, String)]) -> bool {
    if let Some(name) = source.strip_prefix("route.request.header.") {
        headers.get(name).is_some_and(|v| !v.is_empty())
    } else if let Some(name) = source.strip_prefix("route.request.querystring.") {
        query.iter().any(|(n, v)| n == name && !v.is_empty())
    } else {
        true
    }
}

/// A context value as API Gateway passes it on: `1` as `"1"`, `true` as `"true"`.
fn stringified(value: Value) -> Value {
    match value {
        Value::String(_) => value,
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        // Refused before this for a remote authorizer; kept as JSON text otherwise.
        other => Value::String(other.to_string()),
    }
}

/// The size of an authorizer's response as API Gateway receives it (JSON).
fn response_size(response: &ApiGatewayCustomAuthorizerResponse) -> usize {
    serde_json::to_vec(response).map_or(usize::MAX, |r| r.len())
}

/// API Gateway's answer refusing a handshake.
fn message(status: StatusCode, text: &str) -> Response {
    AwsError::handshake(status, text).into_response()
}

/// The REQUEST authorizer event API Gateway sends for a WebSocket `$connect`.
fn request(
    gateway: &Gateway,
    context: &ConnectionContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    now_ms: u64,
) -> Value {
    let options = gateway.options();
    let (single, multi) = header_maps(headers);
    let (query_single, query_multi) = query_maps(query);
    let method_arn = format!(
        "arn:aws:execute-api:{}:{LOCAL_ACCOUNT}:{}/{}/{}",
        options.region,
        options.api_id,
        options.stage,
        route::CONNECT
    );
    // The same requestContext as the $connect event's, requestTime included (AWS's
    // example input on "Controlling access to WebSocket APIs with AWS Lambda
    // REQUEST authorizers").
    json!({
        "type": "REQUEST",
        "methodArn": method_arn,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single,
        "multiValueQueryStringParameters": query_multi,
        "stageVariables": {},
        "requestContext": context.request_context(route::CONNECT, "CONNECT", now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_wildcards() {
        let arn = "arn:aws:execute-api:us-east-1:000000000000:local/local/$connect";
        assert!(iam_matches(arn, arn));
        assert!(iam_matches("*", arn));
        assert!(iam_matches("arn:aws:execute-api:*:*:local/*", arn));
        assert!(iam_matches("arn:aws:execute-api:us-east-?:*", arn));
        assert!(!iam_matches("arn:aws:execute-api:*:*:other/*", arn));
        assert!(!iam_matches(
            "arn:aws:execute-api:us-east-1:000000000000:local/local/$default",
            arn
        ));
        assert!(iam_matches("execute-api:*", INVOKE_ACTION));
        assert!(!iam_matches("execute-api:managec*", INVOKE_ACTION));
    }

    #[test]
    fn context_values_are_passed_on_as_strings() {
        assert_eq!(stringified(json!(1_700_000_000)), json!("1700000000"));
        assert_eq!(stringified(json!(true)), json!("true"));
        assert_eq!(stringified(json!(1.5)), json!("1.5"));
        assert_eq!(stringified(json!("alice")), json!("alice"));
    }

    #[test]
    fn authorizer_responses_over_8_kb_are_measured_as_too_large() {
        let mut response = ApiGatewayCustomAuthorizerResponse::<Value>::default();
        response.principal_id = Some("alice".into());
        response.context = json!({"userId": "alice", "roles": "a".repeat(100)});
        assert!(response_size(&response) <= MAX_AUTHORIZER_RESPONSE_BYTES);
        response.context = json!({"userId": "alice", "roles": "a".repeat(8 * 1024)});
        assert!(response_size(&response) > MAX_AUTHORIZER_RESPONSE_BYTES);
    }
}
