//! Builds the Lambda events API Gateway sends for each route, as JSON first and then
//! decoded into `aws_lambda_events` types: the JSON is the contract Lambda functions
//! see, and decoding it here proves the emulator produces what the real handlers parse.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayWebsocketProxyRequest};
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roomcast_core::civil;
use serde_json::{Map, Value, json};

/// What the authorizer and `$connect` read of a handshake.
pub struct Handshake<'a> {
    pub headers: &'a HeaderMap,
    pub query: &'a [(String, String)],
    /// When it arrived.
    pub now_ms: u64,
}

/// API Gateway ids (connection, request and message ids) are 11 random bytes in
/// standard base64, e.g. `L0SM9cOFvHcCIhw=`: 16 characters ending in `=`, which is
/// why clients must URL-encode them in `@connections` paths. The bytes come from
/// the operating system's CSPRNG: a connection id is all `@connections` asks for,
/// so it must not be guessable from earlier ones (as API Gateway's are not).
pub fn gateway_id() -> String {
    let mut bytes = [0u8; 11];
    // Without the OS's random source no id could be made safely.
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    STANDARD.encode(bytes)
}

/// What API Gateway knows about a connection, repeated in every event of it.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    pub connection_id: String,
    pub connected_at_ms: u64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    pub domain_name: String,
    pub stage: String,
    pub api_id: String,
    /// What the `$connect` authorizer returned (its context, values as strings,
    /// plus `principalId`); passed along with every later event.
    pub authorizer: ApiGatewayRequestAuthorizer,
}

impl ConnectionContext {
    /// The `requestContext` of every event of the connection, the authorizer's
    /// included. `requestId` and `extendedRequestId` are one value, as in API
    /// Gateway's events ("Same as $context.extendedRequestId": AWS, "WebSocket API
    /// mapping template reference").
    pub(crate) fn request_context(
        &self,
        route_key: &str,
        event_type: &str,
        now_ms: u64,
    ) -> Map<String, Value> {
        let mut identity = Map::new();
        identity.insert("sourceIp".into(), json!(self.source_ip));
        if let Some(agent) = &self.user_agent {
            identity.insert("userAgent".into(), json!(agent));
        }
        let request_id = gateway_id();
        let context = json!({
            "routeKey": route_key,
            "eventType": event_type,
            "extendedRequestId": request_id,
            "requestTime": http_request_time(now_ms),
            "messageDirection": "IN",
            "stage": self.stage,
            "connectedAt": self.connected_at_ms,
            "requestTimeEpoch": now_ms,
            "identity": identity,
            "requestId": request_id,
            "domainName": self.domain_name,
            "connectionId": self.connection_id,
            "apiId": self.api_id,
        });
        match context {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn finish(&self, event: Value) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
        let mut event: ApiGatewayWebsocketProxyRequest = serde_json::from_value(event)?;
        event.request_context.authorizer = self.authorizer.clone();
        Ok(event)
    }

    /// The `$connect` event: the only one carrying the handshake's headers and query string.
    pub fn connect(
        &self,
        headers: &HeaderMap,
        query: &[(String, String)],
        now_ms: u64,
    ) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
        let (mut single, mut multi) = header_maps(headers);
        // What API Gateway's load balancer adds to every handshake.
        for (name, value) in [
            ("x-forwarded-for", self.source_ip.clone()),
            ("x-forwarded-proto", "http".to_owned()),
        ] {
            single.insert(name.to_owned(), value.clone());
            multi.insert(name.to_owned(), vec![value]);
        }
        let (query_single, query_multi) = query_maps(query);
        let mut event = json!({
            "headers": single,
            "multiValueHeaders": multi,
            "requestContext": self.request_context(roomcast_core::names::route::CONNECT, "CONNECT", now_ms),
            "isBase64Encoded": false,
        });
        if !query.is_empty() {
            event["queryStringParameters"] = json!(query_single);
            event["multiValueQueryStringParameters"] = json!(query_multi);
        }
        self.finish(event)
    }

    /// A MESSAGE event for one text frame (binary frames never become events: API
    /// Gateway closes the connection with 1003 instead).
    pub fn message(
        &self,
        route_key: &str,
        body: String,
        now_ms: u64,
    ) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
        let mut context = self.request_context(route_key, "MESSAGE", now_ms);
        context.insert("messageId".into(), json!(gateway_id()));
        self.finish(json!({
            "requestContext": context,
            "body": body,
            "isBase64Encoded": false,
        }))
    }

    /// The `$disconnect` event, with the close code and reason API Gateway reports.
    pub fn disconnect(
        &self,
        status_code: u16,
        reason: &str,
        now_ms: u64,
    ) -> Result<ApiGatewayWebsocketProxyRequest, serde_json::Error> {
        let mut context = self.request_context(
            roomcast_core::names::route::DISCONNECT,
            "DISCONNECT",
            now_ms,
        );
        context.insert("disconnectStatusCode".into(), json!(status_code));
        context.insert("disconnectReason".into(), json!(reason));
        self.finish(json!({
            "headers": {
                "Host": self.domain_name,
                "x-api-key": "",
                "X-Forwarded-For": "",
                "x-restapi": "",
            },
            "multiValueHeaders": {
                "Host": [self.domain_name],
                "x-api-key": [""],
                "X-Forwarded-For": [""],
                "x-restapi": [""],
            },
            "requestContext": context,
            "isBase64Encoded": false,
        }))
    }
}

/// Epoch milliseconds as ISO-8601 UTC with milliseconds (`2026-11-26T11:20:50.123Z`),
/// the format `@connections` GET uses for connectedAt and lastActiveAt.
pub fn iso8601(epoch_ms: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil(epoch_ms / 1000);
    format!(
        "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z",
        epoch_ms % 1000
    )
}

/// The `requestTime` format of API Gateway events: `26/Nov/2026:11:20:50 +0000`.
fn http_request_time(epoch_ms: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss) = civil(epoch_ms / 1000);
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    format!("{d:02}/{month}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000")
}

/// The single- and multi-value maps API Gateway puts in CONNECT and authorizer
/// events: the single-value map keeps the last value of a repeated name.
fn value_maps<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    let mut single = BTreeMap::new();
    let mut multi = BTreeMap::<String, Vec<String>>::new();
    for (name, value) in pairs {
        single.insert(name.to_owned(), value.to_owned());
        multi
            .entry(name.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    (single, multi)
}

/// Header maps; header names keep the case the client sent (handlers look them up
/// case-insensitively through HeaderMap), values that are not text are left out.
pub(crate) fn header_maps(
    headers: &HeaderMap,
) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    value_maps(
        headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
    )
}

/// An event as API Gateway sends it to a function. aws_lambda_events serializes
/// the single-value `queryStringParameters` of WebSocket events as lists
/// (`{"token": ["a"]}`); API Gateway sends strings, the last value of a repeated
/// name, and functions in other languages read them as strings.
pub(crate) fn to_wire(event: &ApiGatewayWebsocketProxyRequest) -> serde_json::Result<Vec<u8>> {
    let mut value = serde_json::to_value(event)?;
    if let Some(Value::Object(single)) = value.get_mut("queryStringParameters") {
        for v in single.values_mut() {
            if let Value::Array(values) = v {
                *v = values.pop().unwrap_or_else(|| Value::String(String::new()));
            }
        }
    }
    serde_json::to_vec(&value)
}

/// Query-string maps.
pub(crate) fn query_maps(
    query: &[(String, String)],
) -> (BTreeMap<String, String>, BTreeMap<String, Vec<String>>) {
    value_maps(query.iter().map(|(n, v)| (n.as_str(), v.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_do_not_follow_from_a_seeded_generator() {
        // A seeded (non-cryptographic) generator repeats its ids; the OS's does not.
        fastrand::seed(7);
        let first = gateway_id();
        fastrand::seed(7);
        assert_ne!(first, gateway_id());
        assert_eq!(first.len(), 16);
        assert!(first.ends_with('='));
    }

    fn context() -> ConnectionContext {
        ConnectionContext {
            connection_id: "L0SM9cOFvHcCIhw=".into(),
            connected_at_ms: 1_700_000_000_000,
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
            domain_name: "127.0.0.1:3001".into(),
            stage: "local".into(),
            api_id: "local".into(),
            authorizer: ApiGatewayRequestAuthorizer::default(),
        }
    }

    #[test]
    fn ids_look_like_api_gateway_ids() {
        let id = gateway_id();
        assert_eq!(id.len(), 16);
        assert!(id.ends_with('='), "{id}");
    }

    #[test]
    fn formats_times() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            http_request_time(1_700_000_000_123),
            "14/Nov/2023:22:13:20 +0000"
        );
    }

    #[test]
    fn connect_event_carries_handshake_details() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:3001".parse().unwrap());
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        let query = vec![
            ("token".to_owned(), "1".to_owned()),
            ("token".to_owned(), "2".to_owned()),
        ];
        let event = context()
            .connect(&headers, &query, 1_700_000_000_500)
            .unwrap();
        let ctx = &event.request_context;
        assert_eq!(ctx.route_key.as_deref(), Some("$connect"));
        assert_eq!(ctx.event_type.as_deref(), Some("CONNECT"));
        assert_eq!(ctx.connection_id.as_deref(), Some("L0SM9cOFvHcCIhw="));
        assert_eq!(ctx.connected_at, 1_700_000_000_000);
        assert_eq!(ctx.request_time_epoch, 1_700_000_000_500);
        assert_eq!(ctx.apiid.as_deref(), Some("local"));
        assert_eq!(ctx.identity.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(event.headers.get("host").unwrap(), "127.0.0.1:3001");
        assert_eq!(
            event.multi_value_headers.get_all("x-multi").iter().count(),
            2
        );
        assert_eq!(event.query_string_parameters.first("token"), Some("2"));
        let wire: Value = serde_json::from_slice(&to_wire(&event).unwrap()).unwrap();
        assert_eq!(wire["queryStringParameters"], json!({"token": "2"}));
        assert_eq!(
            wire["multiValueQueryStringParameters"],
            json!({"token": ["1", "2"]})
        );
        assert_eq!(wire["requestContext"]["connectionId"], "L0SM9cOFvHcCIhw=");
        assert_eq!(
            event.multi_value_query_string_parameters.all("token"),
            Some(vec!["1", "2"])
        );
    }

    #[test]
    fn message_and_disconnect_events() {
        let event = context()
            .message("send", "{}".into(), 1_700_000_000_500)
            .unwrap();
        assert_eq!(event.request_context.event_type.as_deref(), Some("MESSAGE"));
        assert!(event.request_context.message_id.is_some());
        assert!(event.headers.is_empty());
        assert_eq!(event.body.as_deref(), Some("{}"));
        assert!(event.request_context.request_id.is_some());
        assert_eq!(
            event.request_context.request_id,
            event.request_context.extended_request_id
        );
        let event = context().disconnect(1001, "Going away", 1).unwrap();
        assert_eq!(event.request_context.disconnect_status_code, Some(1001));
        assert_eq!(
            event.request_context.disconnect_reason.as_deref(),
            Some("Going away")
        );
    }
}
