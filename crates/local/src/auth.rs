//! The `$connect` REQUEST authorizer, run as API Gateway runs it: before the
//! `$connect` integration, with the handshake's headers and query string. A Deny
//! policy refuses the handshake with 403, the error `Unauthorized` with 401, and an
//! authorizer that fails or times out with 500; an Allow policy's context (plus
//! `principalId`) becomes `requestContext.authorizer` on every event of the
//! connection. Tokens are never logged.

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequestTypeRequest, ApiGatewayCustomAuthorizerResponse,
    ApiGatewayRequestAuthorizer,
};
use aws_lambda_events::iam::IamPolicyEffect;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use roomcast_core::auth::Decision;
use roomcast_core::names::{authorizer as ctx, route};
use serde_json::{Value, json};

use crate::Gateway;
use crate::events::{ConnectionContext, gateway_id, header_maps, query_maps};
use crate::remote::{RemoteError, RemoteInvoker};
use crate::routes::AuthorizerTarget;

/// API Gateway's limit on a Lambda authorizer's response (policy plus context), in
/// bytes; a larger one fails the handshake with 500.
pub const MAX_AUTHORIZER_RESPONSE_BYTES: usize = 8 * 1024;

/// The account id in the ARNs the emulator reports.
pub const LOCAL_ACCOUNT: &str = "000000000000";

/// Runs the gateway's authorizer, if it has one, for a handshake. `Ok` carries the
/// authorizer context for the connection (empty without an authorizer); `Err` the
/// response refusing the handshake.
pub(crate) async fn authorize(
    gateway: &Gateway,
    context: &ConnectionContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    now_ms: u64,
) -> Result<ApiGatewayRequestAuthorizer, Response> {
    let Some(target) = gateway.authorizer().cloned() else {
        return Ok(ApiGatewayRequestAuthorizer::default());
    };
    let request = match request(gateway, context, headers, query, now_ms) {
        Ok(request) => request,
        Err(e) => {
            tracing::error!(error = %e, "could not build the authorizer request");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    let failed = || message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
    // In-process or remote, the answer is evaluated below by the same code.
    let decision = match target {
        AuthorizerTarget::InProcess(authorizer) => {
            let limit = gateway.options().integration_timeout;
            // A task of its own, like a Lambda invocation: a panic fails this handshake only.
            let run = tokio::spawn(async move {
                tokio::time::timeout(limit, authorizer.authorize(&request)).await
            });
            match run.await {
                Ok(Ok(decision)) => decision,
                Ok(Err(_elapsed)) => {
                    tracing::warn!(connection_id = %context.connection_id, "the authorizer timed out");
                    return Err(failed());
                }
                Err(_panicked) => {
                    tracing::warn!(connection_id = %context.connection_id, "the authorizer failed");
                    return Err(failed());
                }
            }
        }
        AuthorizerTarget::Remote {
            invoker,
            function,
            identity_sources,
            timeout,
        } => {
            if let Some(missing) = identity_sources
                .iter()
                .find(|source| !has_identity_source(source, headers, query))
            {
                tracing::info!(connection_id = %context.connection_id, %missing, "identity source missing");
                return Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"));
            }
            match remote_decision(&invoker, &function, &request, timeout).await {
                Ok(decision) => decision,
                Err(error) => {
                    tracing::warn!(connection_id = %context.connection_id, %function, %error, "the authorizer failed");
                    return Err(failed());
                }
            }
        }
    };
    match decision {
        Decision::Allow(response) => {
            let size = response_size(&response);
            if size > MAX_AUTHORIZER_RESPONSE_BYTES {
                tracing::warn!(
                    connection_id = %context.connection_id,
                    size,
                    "the authorizer's response is over API Gateway's 8 KB limit"
                );
                return Err(message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error",
                ));
            }
            let mut authorizer = ApiGatewayRequestAuthorizer::default();
            if let Value::Object(fields) = response.context {
                authorizer.fields.extend(fields);
            }
            if let Some(principal) = response.principal_id {
                authorizer
                    .fields
                    .insert(ctx::PRINCIPAL_ID.to_owned(), json!(principal));
            }
            Ok(authorizer)
        }
        Decision::Deny(_) => {
            tracing::info!(connection_id = %context.connection_id, "the authorizer denied the handshake");
            Err(message(StatusCode::FORBIDDEN, "Forbidden"))
        }
        Decision::Unauthorized => {
            tracing::info!(connection_id = %context.connection_id, "the authorizer refused the handshake");
            Err(message(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
    }
}

/// Invokes a remote authorizer and reads its answer as API Gateway does: the error
/// `Unauthorized` is a 401, a policy with a Deny statement (or no Allow) a 403.
async fn remote_decision(
    invoker: &RemoteInvoker,
    function: &str,
    request: &ApiGatewayCustomAuthorizerRequestTypeRequest,
    limit: std::time::Duration,
) -> Result<Decision, String> {
    let payload = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    let value = match invoker.invoke(function, payload, limit).await {
        Ok(value) => value,
        Err(RemoteError::Function { message, .. }) if message == "Unauthorized" => {
            return Ok(Decision::Unauthorized);
        }
        Err(e) => return Err(e.to_string()),
    };
    let response: ApiGatewayCustomAuthorizerResponse =
        serde_json::from_value(value).map_err(|e| format!("not an authorizer response: {e}"))?;
    let effects = || response.policy_document.statement.iter().map(|s| &s.effect);
    let allowed = effects().any(|e| matches!(e, IamPolicyEffect::Allow))
        && !effects().any(|e| matches!(e, IamPolicyEffect::Deny));
    Ok(if allowed {
        Decision::Allow(response)
    } else {
        Decision::Deny(response)
    })
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

/// The size of an authorizer's response as API Gateway receives it (JSON).
fn response_size(response: &ApiGatewayCustomAuthorizerResponse) -> usize {
    serde_json::to_vec(response).map_or(usize::MAX, |r| r.len())
}

/// API Gateway's JSON error body.
fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

/// The REQUEST authorizer event API Gateway sends for a WebSocket `$connect`.
fn request(
    gateway: &Gateway,
    context: &ConnectionContext,
    headers: &HeaderMap,
    query: &[(String, String)],
    now_ms: u64,
) -> Result<ApiGatewayCustomAuthorizerRequestTypeRequest, serde_json::Error> {
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
    serde_json::from_value(json!({
        "type": "REQUEST",
        "methodArn": method_arn,
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query_single,
        "multiValueQueryStringParameters": query_multi,
        "stageVariables": {},
        "requestContext": {
            "routeKey": route::CONNECT,
            "eventType": "CONNECT",
            "extendedRequestId": gateway_id(),
            "messageDirection": "IN",
            "stage": options.stage,
            "connectedAt": context.connected_at_ms,
            "requestTimeEpoch": now_ms,
            "identity": {"sourceIp": context.source_ip, "userAgent": context.user_agent},
            "requestId": gateway_id(),
            "domainName": context.domain_name,
            "connectionId": context.connection_id,
            "apiId": options.api_id,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
