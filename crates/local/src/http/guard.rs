//! The guard in front of the management routes (`@connections`, the Lambda Invoke
//! API, the queue's `POST /`, `GET /metrics`), on every address:
//!
//! 1. Requests a web page could make are refused (403): ones carrying `Origin`
//!    or a `Sec-Fetch-Site` other than `none` (browsers send them, the AWS SDKs
//!    and CLIs do not), bodies typed `text/plain`,
//!    `application/x-www-form-urlencoded` or `multipart/form-data` (the types a
//!    page may post cross-site without a CORS preflight), and, where signatures
//!    are not checked, a `Host` that is neither a loopback literal, `localhost`
//!    nor the gateway's own address (DNS rebinding).
//! 2. Off loopback, the signature's key, scope, date and signed headers are
//!    checked from the headers ([`signed`]) before any of the body is read.
//! 3. The body is read up to the API's limit ([`Api::body_limit`](crate::http::api::Api::body_limit)) within
//!    `body_read_timeout`, and the signature over it checked.
//!
//! The WebSocket endpoint is not behind it: its handshake has the origin allowlist.

use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::gateway::Gateway;
use crate::http::api::Api;
use crate::http::signed;
use crate::listen::LocalAddr;

/// Middleware on the management routes: the checks above, then the request with
/// its body read goes on.
pub(crate) async fn check(
    State(gateway): State<Gateway>,
    request: Request,
    next: Next,
) -> Response {
    // `/` is also the WebSocket endpoint: only the queue's POSTs are guarded there.
    if request.uri().path() == "/" && request.method() != Method::POST {
        return next.run(request).await;
    }
    let api = Api::of(request.uri().path());
    let (parts, body) = request.into_parts();
    if let Some(reason) = from_a_page(&gateway, &parts) {
        tracing::info!(
            service = api.signing_service(),
            reason,
            "management call refused"
        );
        return api.forbidden(reason).into_response();
    }
    if let Err(refusal) = signed::check_headers(&gateway, api, &parts) {
        return refusal.into_response();
    }
    let body = match read_body(&gateway, api, &parts.headers, body).await {
        Ok(body) => body,
        Err(refusal) => return refusal,
    };
    if let Err(refusal) = signed::check(&gateway, api, &parts, &body) {
        return refusal.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// Why a request looks like one a web page made, if it does.
fn from_a_page(gateway: &Gateway, parts: &Parts) -> Option<&'static str> {
    let headers = &parts.headers;
    if headers.contains_key(header::ORIGIN) {
        return Some("requests with an Origin header (made by web pages) are refused");
    }
    let fetch_site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if fetch_site.is_some_and(|site| site != b"none") {
        return Some("requests made by web pages (Sec-Fetch-Site) are refused");
    }
    if has_body(headers) && is_form_type(headers) {
        return Some(
            "bodies of type text/plain, application/x-www-form-urlencoded or multipart/form-data \
             are refused: web pages post them without a preflight (the queue speaks SQS's JSON \
             protocol, application/x-amz-json-1.0, only)",
        );
    }
    let mut own = vec![gateway.local_addr().ip()];
    own.extend(parts.extensions.get::<LocalAddr>().map(|l| l.0.ip()));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if gateway.management_check().is_none() && !host_allowed(host, &own) {
        return Some("the Host header names neither a loopback address nor the gateway's own");
    }
    None
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || content_length(headers).is_some_and(|n| n > 0)
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether the body's type is one of the CORS-safelisted ones a page can post
/// anywhere without a preflight.
fn is_form_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let essence = String::from_utf8_lossy(value.as_bytes());
    let essence = essence.split(';').next().unwrap_or_default().trim();
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ]
    .iter()
    .any(|t| essence.eq_ignore_ascii_case(t))
}

/// Names that only ever lead to this machine, which a page from elsewhere cannot
/// make a browser send as `Host`: `localhost` and its subdomains (RFC 6761), and
/// Docker's name for the host, which functions in `sam local` containers call
/// back on.
fn local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost") || name == "host.docker.internal"
}

/// Whether `host` (the `Host` header) names this machine: a [`local_name`], a
/// loopback address, or one of `own` (the addresses the gateway and the request's
/// socket listen on); with or without a port.
fn host_allowed(host: Option<&str>, own: &[IpAddr]) -> bool {
    let Some(host) = host else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, _)) => name,
            None => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    if local_name(name) {
        return true;
    }
    name.parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback() || own.contains(&ip))
}

/// The body, up to the API's limit and within the gateway's body timeout.
async fn read_body(
    gateway: &Gateway,
    api: Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, Response> {
    let limit = api.body_limit();
    let declared = content_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(api.too_large(declared).into_response());
    }
    let timeout = gateway.options().body_read_timeout;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(_)) => Err(api.too_large(declared).into_response()),
        Err(_) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "the request body was not received in time",
        )
            .into_response()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_this_machines_names_and_addresses() {
        let own: [IpAddr; 1] = ["192.0.2.2".parse().unwrap()];
        for good in [
            "127.0.0.1",
            "127.0.0.1:3001",
            "[::1]:3001",
            "[::1]",
            "localhost",
            "LOCALHOST:3001",
            "app.localhost:3001",
            "host.docker.internal:3002",
            "192.0.2.2:3001",
        ] {
            assert!(host_allowed(Some(good), &own), "{good}");
        }
        for bad in [
            "evil.example",
            "evil.example:3001",
            "localhost.evil.example",
            "192.0.2.3:3001",
            "[::1",
            "",
        ] {
            assert!(!host_allowed(Some(bad), &own), "{bad}");
        }
        assert!(!host_allowed(None, &own));
    }

    #[test]
    fn form_types_are_the_cors_safelisted_ones() {
        let typed = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, t.parse().unwrap());
            is_form_type(&h)
        };
        assert!(typed("text/plain"));
        assert!(typed("Text/Plain; charset=utf-8"));
        assert!(typed("application/x-www-form-urlencoded"));
        assert!(typed("multipart/form-data; boundary=x"));
        assert!(!typed("application/json"));
        assert!(!typed("application/x-amz-json-1.0"));
        assert!(!typed("application/octet-stream"));
        assert!(!is_form_type(&HeaderMap::new()));
    }
}
