//! The template's model, read one resource kind at a time: the WebSocket
//! `AWS::ApiGatewayV2::Api`, its `Integration`s, `Authorizer`s, `RouteResponse`s
//! and `Route`s, and the `AWS::Serverless::Function`s. Each reader names the
//! resource and property of whatever it cannot map, as a [`Diagnostic`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use roomcast_core::names::route;

use super::cfn::{named, number, symbolic};
use super::resources::{
    API, API_PARTS, AUTHORIZER, FUNCTION, INTEGRATION, ROUTE, ROUTE_RESPONSE, kind,
};
use super::{Diagnostic, TemplateError, diagnostic};
use crate::selection::RouteSelection;

/// A route of the WebSocket API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub logical_id: String,
    pub key: String,
    /// The logical id of the function behind the route's integration. `None`: the
    /// route's integration or authorizer could not be mapped (a [`Diagnostic`] says
    /// why). The route is still served, by an integration that fails, so its frames
    /// get "Internal server error" as a broken route's do on AWS instead of going to
    /// `$default`; a `$connect` route like that stops the gateway from starting.
    pub function: Option<String>,
    /// Whether the route has a route response: only then does the integration's
    /// response body go back to the client.
    pub two_way: bool,
    /// The integration's `TimeoutInMillis`, when set.
    pub timeout: Option<Duration>,
}

/// The `$connect` REQUEST authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAuthorizer {
    pub logical_id: String,
    pub function: String,
    /// `IdentitySource` entries, e.g. `route.request.querystring.token`.
    pub identity_sources: Vec<String>,
}

/// An `AWS::Serverless::Function`.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub logical_id: String,
    /// The function's name among roomcast's binaries: its `Handler` (when not
    /// `bootstrap`), else `Metadata.BuildProperties.Binary` (cargo-lambda's binary name).
    pub binary: Option<String>,
    pub timeout: Option<Duration>,
    /// `Environment.Variables`, the function's own over `Globals.Function`'s, unresolved.
    pub environment: BTreeMap<String, Value>,
}

/// The `IdentitySource` kinds the emulator checks on a handshake.
const IDENTITY_SOURCE_PREFIXES: [&str; 2] = ["route.request.header.", "route.request.querystring."];

fn props(resource: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    resource
        .get("Properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

fn kind_of<'a>(resources: &'a Map<String, Value>, logical_id: &str) -> &'a str {
    resources.get(logical_id).map(kind).unwrap_or("")
}

/// The API a route, integration, authorizer or route response belongs to, by
/// `!Ref Api` or `!GetAtt Api.ApiId`.
fn api_of(resource: &Value) -> Option<&str> {
    props(resource).get("ApiId").and_then(|v| named(v, "ApiId"))
}

/// A duration property: absent is `None`; present but not a whole number is
/// reported and treated as absent.
fn duration_property(
    p: &Map<String, Value>,
    property: &str,
    unit: fn(u64) -> Duration,
    logical_id: &str,
    otherwise: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Duration> {
    let value = p.get(property)?;
    match number(value) {
        Some(n) => Some(unit(n)),
        None => {
            diagnostics.push(diagnostic(
                logical_id,
                format!("{property} is not a whole number: {otherwise}"),
            ));
            None
        }
    }
}

/// The WebSocket API: its logical id and route selection expression. Exactly one
/// `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET` is served.
pub(super) fn read_api(
    resources: &Map<String, Value>,
) -> Result<(&String, RouteSelection), TemplateError> {
    let apis: Vec<(&String, &Value)> = resources
        .iter()
        .filter(|(_, r)| {
            kind(r) == API
                && props(r).get("ProtocolType").and_then(Value::as_str) == Some("WEBSOCKET")
        })
        .collect();
    let (api_id, api) = match apis.as_slice() {
        [] => return Err(TemplateError::NoWebSocketApi),
        [one] => *one,
        many => {
            let ids: Vec<&str> = many.iter().map(|(id, _)| id.as_str()).collect();
            return Err(TemplateError::SeveralApis(ids.join(", ")));
        }
    };
    let expression = props(api)
        .get("RouteSelectionExpression")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let selection = RouteSelection::parse(expression).ok_or_else(|| TemplateError::Selection {
        api: api_id.clone(),
        expression: expression.to_owned(),
    })?;
    Ok((api_id, selection))
}

/// The `AWS::Serverless::Function`s, with `Globals.Function`'s environment and
/// `Timeout` under their own.
pub(super) fn read_functions(
    doc: &Value,
    resources: &Map<String, Value>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Function> {
    let globals = doc.pointer("/Globals/Function").and_then(Value::as_object);
    let empty = Map::new();
    let global_env = globals.map_or(Some(&empty), |g| environment_of(g, "Globals", diagnostics));
    let global_timeout = globals.and_then(|g| {
        duration_property(
            g,
            "Timeout",
            Duration::from_secs,
            "Globals",
            "Lambda's default applies",
            diagnostics,
        )
    });
    resources
        .iter()
        .filter(|(_, r)| kind(r) == FUNCTION)
        .map(|(id, r)| {
            let p = props(r);
            let mut environment: BTreeMap<String, Value> = global_env
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            if let Some(own) = environment_of(p, id, diagnostics) {
                environment.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let timeout = duration_property(
                p,
                "Timeout",
                Duration::from_secs,
                id,
                "the Globals' or Lambda's default applies",
                diagnostics,
            )
            .or(global_timeout);
            let function = Function {
                logical_id: id.clone(),
                // One binary serving every function picks its handler by the
                // Handler setting; otherwise the binary is the function.
                binary: p
                    .get("Handler")
                    .and_then(Value::as_str)
                    .filter(|h| *h != "bootstrap")
                    .or_else(|| {
                        r.pointer("/Metadata/BuildProperties/Binary")
                            .and_then(Value::as_str)
                    })
                    .map(str::to_owned),
                timeout,
                environment,
            };
            (id.clone(), function)
        })
        .collect()
}

/// `Environment.Variables` of a function's (or the Globals') properties; a shape
/// that is not an object of variables is reported and read as none.
fn environment_of<'a>(
    p: &'a Map<String, Value>,
    logical_id: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'a Map<String, Value>> {
    let variables = p.get("Environment")?.get("Variables");
    match variables {
        Some(Value::Object(variables)) => Some(variables),
        _ => {
            diagnostics.push(diagnostic(
                logical_id,
                "Environment.Variables is not a map of variables: no variables are set",
            ));
            None
        }
    }
}

/// The parts of the one WebSocket API, read kind by kind.
pub(super) struct ApiReader<'a> {
    pub resources: &'a Map<String, Value>,
    pub api_id: &'a str,
    pub functions: &'a BTreeMap<String, Function>,
    pub diagnostics: &'a mut Vec<Diagnostic>,
}

impl<'a> ApiReader<'a> {
    /// Reports the parts whose `ApiId` names no API of the template (an import, a
    /// literal id, a condition): they cannot be placed.
    pub fn report_unplaced_parts(&mut self) {
        for (id, resource) in self.resources {
            if API_PARTS.contains(&kind(resource))
                && api_of(resource).is_none_or(|a| kind_of(self.resources, a) != API)
            {
                self.diagnostics.push(diagnostic(
                    id,
                    "ApiId does not name an AWS::ApiGatewayV2::Api of this template \
                     (use !Ref or !GetAtt …ApiId): not served",
                ));
            }
        }
    }

    /// The API's resources of one type.
    fn of_kind(
        &self,
        wanted: &'static str,
    ) -> impl Iterator<Item = (&'a String, &'a Value)> + use<'a> {
        let (resources, api_id): (&'a Map<String, Value>, &'a str) = (self.resources, self.api_id);
        resources
            .iter()
            .filter(move |(_, r)| kind(r) == wanted && api_of(r) == Some(api_id))
    }

    /// Integration logical id → (function logical id, `TimeoutInMillis`).
    pub fn integrations(&mut self) -> BTreeMap<String, (String, Option<Duration>)> {
        let mut integrations = BTreeMap::new();
        for (id, resource) in self.of_kind(INTEGRATION) {
            let p = props(resource);
            match integration_function(p, self.functions) {
                Ok(function) => {
                    let timeout = duration_property(
                        p,
                        "TimeoutInMillis",
                        Duration::from_millis,
                        id,
                        "the integration timeout applies",
                        self.diagnostics,
                    );
                    integrations.insert(id.clone(), (function, timeout));
                }
                Err(why) => self.diagnostics.push(diagnostic(id, why)),
            }
        }
        integrations
    }

    /// The REQUEST authorizers, by logical id.
    pub fn authorizers(&mut self) -> BTreeMap<String, ConnectAuthorizer> {
        let mut authorizers = BTreeMap::new();
        for (id, resource) in self.of_kind(AUTHORIZER) {
            let p = props(resource);
            if p.get("AuthorizerType").and_then(Value::as_str) != Some("REQUEST") {
                self.diagnostics
                    .push(diagnostic(id, "only REQUEST authorizers are emulated"));
                continue;
            }
            match lambda_function(p.get("AuthorizerUri"), self.functions) {
                Ok(function) => {
                    let identity_sources = self.identity_sources(id, p.get("IdentitySource"));
                    authorizers.insert(
                        id.clone(),
                        ConnectAuthorizer {
                            logical_id: id.clone(),
                            function,
                            identity_sources,
                        },
                    );
                }
                Err(why) => self
                    .diagnostics
                    .push(diagnostic(id, format!("AuthorizerUri: {why}"))),
            }
        }
        authorizers
    }

    /// `IdentitySource`: a string or a list of them. Entries that are not strings,
    /// and kinds the handshake check does not read, are reported.
    fn identity_sources(&mut self, id: &str, value: Option<&Value>) -> Vec<String> {
        let items: Vec<&Value> = match value {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::String(_)) => vec![one],
            None => Vec::new(),
            Some(_) => {
                self.diagnostics.push(diagnostic(
                    id,
                    "IdentitySource is not a string or a list of strings: ignored",
                ));
                Vec::new()
            }
        };
        let mut sources = Vec::new();
        for item in items {
            let Some(source) = item.as_str() else {
                self.diagnostics.push(diagnostic(
                    id,
                    "an IdentitySource entry is not a plain string: ignored",
                ));
                continue;
            };
            if !IDENTITY_SOURCE_PREFIXES
                .iter()
                .any(|prefix| source.starts_with(prefix))
            {
                self.diagnostics.push(diagnostic(
                    id,
                    format!(
                        "IdentitySource {source} is not checked locally (only \
                         route.request.header.* and route.request.querystring.* are)"
                    ),
                ));
            }
            sources.push(source.to_owned());
        }
        sources
    }

    /// The logical ids of the routes with a `$default` route response (two-way).
    pub fn two_way_routes(&mut self) -> Vec<String> {
        let mut two_way = Vec::new();
        for (id, resource) in self.of_kind(ROUTE_RESPONSE) {
            let p = props(resource);
            let key = p.get("RouteResponseKey").and_then(Value::as_str);
            let route = p.get("RouteId").and_then(|v| named(v, "RouteId"));
            match (key, route) {
                (Some("$default"), Some(route)) if kind_of(self.resources, route) == ROUTE => {
                    two_way.push(route.to_owned());
                }
                (Some("$default"), _) => self.diagnostics.push(diagnostic(
                    id,
                    "RouteId does not name an AWS::ApiGatewayV2::Route of this template: \
                     ignored, the route stays one-way",
                )),
                (other, _) => self.diagnostics.push(diagnostic(
                    id,
                    format!(
                        "RouteResponseKey {}: WebSocket APIs take only $default: \
                         ignored, the route stays one-way",
                        other.unwrap_or("(none)")
                    ),
                )),
            }
        }
        two_way
    }

    /// The routes by key, and the `$connect` authorizer if a route uses one.
    pub fn routes(
        &mut self,
        integrations: &BTreeMap<String, (String, Option<Duration>)>,
        authorizers: &BTreeMap<String, ConnectAuthorizer>,
        two_way: &[String],
    ) -> (BTreeMap<String, Route>, Option<ConnectAuthorizer>) {
        let mut routes = BTreeMap::new();
        let mut authorizer = None;
        for (id, resource) in self.of_kind(ROUTE) {
            let p = props(resource);
            let Some(key) = p.get("RouteKey").and_then(Value::as_str) else {
                self.diagnostics
                    .push(diagnostic(id, "RouteKey is not a plain string"));
                continue;
            };
            // Why the route cannot run as deployed, if it cannot.
            let (integration, mut unmapped) = self.route_integration(p, integrations);
            match self.route_authorizer(id, key, p, authorizers) {
                Ok(Some(found)) => authorizer = Some(found),
                Ok(None) => {}
                Err(why) => {
                    unmapped.get_or_insert(why);
                }
            }
            if p.get("ApiKeyRequired").and_then(Value::as_bool) == Some(true) {
                self.diagnostics.push(diagnostic(
                    id,
                    "ApiKeyRequired is not emulated: the route is served without an API key",
                ));
            }
            if let Some(why) = &unmapped {
                let effect = if key == route::CONNECT {
                    "roomcast dev will not start (serving $connect without it would accept \
                     handshakes AWS refuses)"
                } else {
                    "the route answers \"Internal server error\""
                };
                self.diagnostics
                    .push(diagnostic(id, format!("{why}: {effect}")));
            }
            let route = Route {
                logical_id: id.clone(),
                key: key.to_owned(),
                function: integration
                    .filter(|_| unmapped.is_none())
                    .map(|(f, _)| f.clone()),
                two_way: two_way.iter().any(|r| r == id),
                timeout: integration.and_then(|(_, t)| *t),
            };
            if let Some(first) = routes.insert(key.to_owned(), route) {
                self.diagnostics.push(diagnostic(
                    id,
                    format!(
                        "RouteKey {key:?} is also the key of {}: API Gateway refuses \
                         duplicate route keys; {id} is served",
                        first.logical_id
                    ),
                ));
            }
        }
        (routes, authorizer)
    }

    /// The integration a route's `Target` names, or why there is none.
    fn route_integration<'i>(
        &self,
        p: &Map<String, Value>,
        integrations: &'i BTreeMap<String, (String, Option<Duration>)>,
    ) -> (Option<&'i (String, Option<Duration>)>, Option<String>) {
        match p.get("Target").map(symbolic) {
            Some(Ok(target)) => {
                let found = target
                    .strip_prefix("integrations/${")
                    .and_then(|rest| rest.strip_suffix('}'))
                    .and_then(|i| integrations.get(i));
                let unmapped = found.is_none().then(|| {
                    format!(
                        "Target {target:?} names no mapped integration of {}",
                        self.api_id
                    )
                });
                (found, unmapped)
            }
            Some(Err(why)) => (None, Some(format!("Target: {why}"))),
            None => (None, Some("no Target".to_owned())),
        }
    }

    /// The route's `$connect` authorizer (`Ok(None)`: none, or one on another route,
    /// which is reported and ignored), or why its authorization cannot be emulated.
    fn route_authorizer(
        &mut self,
        id: &str,
        key: &str,
        p: &Map<String, Value>,
        authorizers: &BTreeMap<String, ConnectAuthorizer>,
    ) -> Result<Option<ConnectAuthorizer>, String> {
        match p.get("AuthorizationType").and_then(Value::as_str) {
            None | Some("NONE") => Ok(None),
            Some("CUSTOM") => {
                let authorizer_id = p.get("AuthorizerId").and_then(|v| named(v, "AuthorizerId"));
                match authorizer_id.and_then(|a| authorizers.get(a)) {
                    None => Err("AuthorizerId names no mapped authorizer".to_owned()),
                    Some(found) if key == route::CONNECT => Ok(Some(found.clone())),
                    Some(_) => {
                        self.diagnostics.push(diagnostic(
                            id,
                            "an authorizer on a route other than $connect is ignored \
                             (API Gateway allows them on $connect only)",
                        ));
                        Ok(None)
                    }
                }
            }
            Some(other) => Err(format!("AuthorizationType {other} is not emulated")),
        }
    }
}

/// `${F.Arn}` in a Lambda integration or authorizer URI, `F` a function of the template.
fn lambda_function(
    uri: Option<&Value>,
    functions: &BTreeMap<String, Function>,
) -> Result<String, String> {
    let uri = symbolic(uri.ok_or("no URI")?)?;
    // WebSocket APIs take Lambda integrations and authorizers only in the
    // API Gateway service-action form; a bare function ARN fails to deploy.
    if !(uri.contains(":apigateway:")
        && uri.contains(":lambda:path/2015-03-31/functions/")
        && uri.ends_with("/invocations"))
    {
        return Err(format!(
            "{uri:?} is not of the form arn:aws:apigateway:REGION:lambda:path/\
             2015-03-31/functions/${{Function.Arn}}/invocations"
        ));
    }
    let arn = uri
        .split("${")
        .skip(1)
        .filter_map(|part| part.split_once('}').map(|(name, _)| name))
        .find_map(|name| name.strip_suffix(".Arn"));
    match arn {
        Some(function) if functions.contains_key(function) => Ok(function.to_owned()),
        Some(other) => Err(format!(
            "{other} is not an AWS::Serverless::Function of the template"
        )),
        None => Err(format!(
            "{uri:?} names no function of the template (expected ${{Function.Arn}})"
        )),
    }
}

fn integration_function(
    p: &Map<String, Value>,
    functions: &BTreeMap<String, Function>,
) -> Result<String, String> {
    match p.get("IntegrationType").and_then(Value::as_str) {
        Some("AWS_PROXY") => {}
        other => {
            return Err(format!(
                "IntegrationType {} is not emulated (only AWS_PROXY to a Lambda function): \
                 routes using it are not served",
                other.unwrap_or("(none)")
            ));
        }
    }
    lambda_function(p.get("IntegrationUri"), functions)
        .map_err(|why| format!("IntegrationUri: {why}: routes using it are not served"))
}
