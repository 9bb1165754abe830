//! The resource types the emulator reads out of a template, and a resource's type.

use serde_json::Value;

// The resource types the emulator reads.
pub(super) const API: &str = "AWS::ApiGatewayV2::Api";
pub(super) const ROUTE: &str = "AWS::ApiGatewayV2::Route";
pub(super) const INTEGRATION: &str = "AWS::ApiGatewayV2::Integration";
pub(super) const AUTHORIZER: &str = "AWS::ApiGatewayV2::Authorizer";
pub(super) const ROUTE_RESPONSE: &str = "AWS::ApiGatewayV2::RouteResponse";
pub(super) const FUNCTION: &str = "AWS::Serverless::Function";
/// The resources that hang off an API through their `ApiId`.
pub(super) const API_PARTS: [&str; 4] = [ROUTE, INTEGRATION, AUTHORIZER, ROUTE_RESPONSE];

/// Whether a resource of this type is one whose `Condition` decides what
/// `roomcast dev` serves.
pub(super) fn served_kind(kind: &str) -> bool {
    kind == API || kind == FUNCTION || API_PARTS.contains(&kind)
}

pub(super) fn kind(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}
