//! Reads the WebSocket API and its functions out of a SAM template (`roomcast dev
//! --template template.yaml`), so the emulator serves the routes that would be
//! deployed rather than a built-in copy of them.
//!
//! What is read: the `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET` (its
//! `RouteSelectionExpression`), its `Route`s (key, `Target: integrations/${X}`,
//! authorizer), `RouteResponse`s (which routes are two-way), `Integration`s
//! (`AWS_PROXY` to a function of the template), the REQUEST `Authorizer`, and the
//! `AWS::Serverless::Function`s (environment merged over `Globals`, `Timeout`, the
//! cargo-lambda `Binary` build property).
//!
//! Nothing is deployed, so some values cannot be known (`!Ref Table` is a physical
//! name, `!GetAtt X.Arn` an ARN): whatever cannot be mapped is left out and reported
//! as a [`Diagnostic`] naming the resource, never guessed. Only a template without a
//! WebSocket API, or with a route selection expression the emulator cannot evaluate,
//! is an error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use roomcast_core::names::route;

use crate::auth::LOCAL_ACCOUNT;

/// Why a template cannot be served at all.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the template is not valid YAML: {0}")]
    Yaml(String),
    #[error("the template has no AWS::ApiGatewayV2::Api with ProtocolType WEBSOCKET")]
    NoWebSocketApi,
    #[error("the template has several WebSocket APIs ({0}); roomcast dev serves one")]
    SeveralApis(String),
    #[error(
        "{api}: RouteSelectionExpression {expression:?} is not supported: \
         use $request.body.<field> (dotted paths allowed)"
    )]
    Selection { api: String, expression: String },
    #[error("the env file {path} is not valid: {source}")]
    EnvFile { path: String, source: EnvFileError },
}

/// Why an env file (`sam local --env-vars` format) was refused. Messages name
/// sections and variables, never values (they may be secrets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    #[error("not a JSON object of sections: {0}")]
    Json(String),
    #[error("{0:?} must be an object of variables")]
    Section(String),
    #[error("{section}.{name} must be a string, number or boolean")]
    Value { section: String, name: String },
}

/// Something in the template that the emulator leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The logical id of the resource concerned.
    pub logical_id: String,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.logical_id, self.message)
    }
}

fn diagnostic(logical_id: &str, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        logical_id: logical_id.to_owned(),
        message: message.into(),
    }
}

/// `$request.body.a.b`: the JSON path in a frame whose string value is the route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSelection {
    pub path: Vec<String>,
}

impl RouteSelection {
    /// Parses `$request.body.<field>[.<field>...]`; `None` for anything else.
    pub fn parse(expression: &str) -> Option<Self> {
        let fields = expression.trim().strip_prefix("$request.body.")?;
        let path: Vec<String> = fields.split('.').map(str::to_owned).collect();
        path.iter()
            .all(|f| !f.is_empty() && !f.contains(['$', '{', '}', ' ']))
            .then_some(Self { path })
    }

    /// `$request.body.action`, the expression of roomcast's template.
    pub fn action() -> Self {
        Self {
            path: vec!["action".to_owned()],
        }
    }

    /// The string at the path of a JSON frame; `None` when the frame is not JSON or
    /// the value is missing or not a string (the frame then goes to `$default`).
    pub fn key_of(&self, body: &str) -> Option<String> {
        let mut value: Value = serde_json::from_str(body).ok()?;
        for field in &self.path {
            value = match value {
                Value::Object(mut map) => map.remove(field)?,
                _ => return None,
            };
        }
        match value {
            Value::String(key) => Some(key),
            _ => None,
        }
    }
}

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
    /// `Metadata.BuildProperties.Binary` (cargo-lambda's binary name).
    pub binary: Option<String>,
    pub timeout: Option<Duration>,
    /// `Environment.Variables`, the function's own over `Globals.Function`'s, unresolved.
    pub environment: BTreeMap<String, Value>,
}

/// The WebSocket API and functions of a template.
#[derive(Debug, Clone)]
pub struct Template {
    pub api_logical_id: String,
    pub selection: RouteSelection,
    /// By route key.
    pub routes: BTreeMap<String, Route>,
    pub authorizer: Option<ConnectAuthorizer>,
    /// By logical id.
    pub functions: BTreeMap<String, Function>,
    /// Template parameters and their defaults.
    pub parameters: BTreeMap<String, Option<String>>,
    /// What could not be mapped.
    pub diagnostics: Vec<Diagnostic>,
}

impl Template {
    pub fn from_file(path: &str) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(yaml: &str) -> Result<Self, TemplateError> {
        let raw: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(yaml).map_err(|e| TemplateError::Yaml(e.to_string()))?;
        let doc = to_json(raw);
        let parameters: BTreeMap<String, Option<String>> = doc
            .get("Parameters")
            .and_then(Value::as_object)
            .map(|params| {
                params
                    .iter()
                    .map(|(name, p)| (name.clone(), p.get("Default").and_then(scalar)))
                    .collect()
            })
            .unwrap_or_default();
        let mut diagnostics = Vec::new();
        let resources = deployed_resources(&doc, &parameters, &mut diagnostics);
        let resources = &resources;

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
        let selection =
            RouteSelection::parse(expression).ok_or_else(|| TemplateError::Selection {
                api: api_id.clone(),
                expression: expression.to_owned(),
            })?;

        let functions = functions(&doc, resources);
        // The API a route, integration, authorizer or route response belongs to, by
        // `!Ref Api` or `!GetAtt Api.ApiId`. One that names no API of the template
        // (an import, a literal id, a condition) cannot be placed: reported.
        fn api_of(r: &Value) -> Option<&str> {
            props(r).get("ApiId").and_then(|v| named(v, "ApiId"))
        }
        for (id, resource) in resources {
            if API_PARTS.contains(&kind(resource))
                && api_of(resource).is_none_or(|a| kind_of(resources, a) != API)
            {
                diagnostics.push(diagnostic(
                    id,
                    "ApiId does not name an AWS::ApiGatewayV2::Api of this template \
                     (use !Ref or !GetAtt …ApiId): not served",
                ));
            }
        }
        let by_kind = move |wanted: &'static str| {
            resources
                .iter()
                .filter(move |(_, r)| kind(r) == wanted && api_of(r) == Some(api_id.as_str()))
        };

        // Integration logical id -> (function logical id, timeout).
        let mut integrations = BTreeMap::new();
        for (id, resource) in by_kind(INTEGRATION) {
            match integration_function(props(resource), &functions) {
                Ok(function) => {
                    let timeout = props(resource)
                        .get("TimeoutInMillis")
                        .and_then(number)
                        .map(Duration::from_millis);
                    integrations.insert(id.clone(), (function, timeout));
                }
                Err(why) => diagnostics.push(diagnostic(id, why)),
            }
        }
        let mut authorizers = BTreeMap::new();
        for (id, resource) in by_kind(AUTHORIZER) {
            let p = props(resource);
            if p.get("AuthorizerType").and_then(Value::as_str) != Some("REQUEST") {
                diagnostics.push(diagnostic(id, "only REQUEST authorizers are emulated"));
                continue;
            }
            match lambda_function(p.get("AuthorizerUri"), &functions) {
                Ok(function) => {
                    let identity_sources = match p.get("IdentitySource") {
                        Some(Value::Array(items)) => items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect(),
                        Some(Value::String(one)) => vec![one.clone()],
                        _ => Vec::new(),
                    };
                    authorizers.insert(
                        id.clone(),
                        ConnectAuthorizer {
                            logical_id: id.clone(),
                            function,
                            identity_sources,
                        },
                    );
                }
                Err(why) => diagnostics.push(diagnostic(id, format!("AuthorizerUri: {why}"))),
            }
        }
        let mut two_way: Vec<String> = Vec::new();
        for (id, resource) in by_kind(ROUTE_RESPONSE) {
            let p = props(resource);
            let key = p.get("RouteResponseKey").and_then(Value::as_str);
            let route = p.get("RouteId").and_then(|v| named(v, "RouteId"));
            match (key, route) {
                (Some("$default"), Some(route)) if kind_of(resources, route) == ROUTE => {
                    two_way.push(route.to_owned());
                }
                (Some("$default"), _) => diagnostics.push(diagnostic(
                    id,
                    "RouteId does not name an AWS::ApiGatewayV2::Route of this template: \
                     ignored, the route stays one-way",
                )),
                (other, _) => diagnostics.push(diagnostic(
                    id,
                    format!(
                        "RouteResponseKey {}: WebSocket APIs take only $default: \
                         ignored, the route stays one-way",
                        other.unwrap_or("(none)")
                    ),
                )),
            }
        }

        let mut routes = BTreeMap::new();
        let mut authorizer = None;
        for (id, resource) in by_kind(ROUTE) {
            let p = props(resource);
            let Some(key) = p.get("RouteKey").and_then(Value::as_str) else {
                diagnostics.push(diagnostic(id, "RouteKey is not a plain string"));
                continue;
            };
            // Why the route cannot run as deployed, if it cannot.
            let mut unmapped = None;
            let integration = match p.get("Target").map(symbolic) {
                Some(Ok(target)) => {
                    let found = target
                        .strip_prefix("integrations/${")
                        .and_then(|rest| rest.strip_suffix('}'))
                        .and_then(|i| integrations.get(i));
                    if found.is_none() {
                        unmapped = Some(format!(
                            "Target {target:?} names no mapped integration of {api_id}"
                        ));
                    }
                    found
                }
                Some(Err(why)) => {
                    unmapped = Some(format!("Target: {why}"));
                    None
                }
                None => {
                    unmapped = Some("no Target".to_owned());
                    None
                }
            };
            match p.get("AuthorizationType").and_then(Value::as_str) {
                None | Some("NONE") => {}
                Some("CUSTOM") => {
                    let authorizer_id =
                        p.get("AuthorizerId").and_then(|v| named(v, "AuthorizerId"));
                    match authorizer_id.and_then(|a| authorizers.get(a)) {
                        None => {
                            unmapped.get_or_insert_with(|| {
                                "AuthorizerId names no mapped authorizer".to_owned()
                            });
                        }
                        Some(found) if key == route::CONNECT => authorizer = Some(found.clone()),
                        Some(_) => diagnostics.push(diagnostic(
                            id,
                            "an authorizer on a route other than $connect is ignored \
                             (API Gateway allows them on $connect only)",
                        )),
                    }
                }
                Some(other) => {
                    unmapped.get_or_insert_with(|| {
                        format!("AuthorizationType {other} is not emulated")
                    });
                }
            }
            if let Some(why) = &unmapped {
                let effect = if key == route::CONNECT {
                    "roomcast dev will not start (serving $connect without it would accept \
                     handshakes AWS refuses)"
                } else {
                    "the route answers \"Internal server error\""
                };
                diagnostics.push(diagnostic(id, format!("{why}: {effect}")));
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
                diagnostics.push(diagnostic(
                    id,
                    format!(
                        "RouteKey {key:?} is also the key of {}: API Gateway refuses \
                         duplicate route keys; {id} is served",
                        first.logical_id
                    ),
                ));
            }
        }

        Ok(Self {
            api_logical_id: api_id.clone(),
            selection,
            routes,
            authorizer,
            functions,
            parameters,
            diagnostics,
        })
    }

    /// Logical id → `Binary` build property, the names `cargo lambda watch` serves
    /// the functions under.
    pub fn binary_names(&self) -> BTreeMap<String, String> {
        self.functions
            .iter()
            .filter_map(|(id, f)| Some((id.clone(), f.binary.clone()?)))
            .collect()
    }

    /// The logical ids of the functions some route or the authorizer invokes.
    pub fn routed_functions(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .routes
            .values()
            .filter_map(|r| r.function.clone())
            .chain(self.authorizer.iter().map(|a| a.function.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Each function's environment variables, by logical id.
pub type Environments = BTreeMap<String, BTreeMap<String, String>>;

/// Local overrides of the functions' environment, in the format of `sam local
/// --env-vars`: `{"Parameters": {..every function..}, "LogicalId": {..one..}}`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub global: BTreeMap<String, String>,
    pub functions: BTreeMap<String, BTreeMap<String, String>>,
}

/// Names only: the values include secrets such as `ROOMCAST_JWT_SECRET`.
impl std::fmt::Debug for EnvFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvFile")
            .field("global", &self.global.keys().collect::<Vec<_>>())
            .field("functions", &names_only(&self.functions))
            .finish()
    }
}

/// Each function's variable names, without their values.
pub fn names_only(
    per_function: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<&str, Vec<&str>> {
    per_function
        .iter()
        .map(|(id, vars)| (id.as_str(), vars.keys().map(String::as_str).collect()))
        .collect()
}

impl EnvFile {
    pub fn from_file(path: &str) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| TemplateError::EnvFile {
            path: path.to_owned(),
            source,
        })
    }

    pub fn parse(json: &str) -> Result<Self, EnvFileError> {
        // serde_json's messages give a position, not the text there.
        let doc: Map<String, Value> =
            serde_json::from_str(json).map_err(|e| EnvFileError::Json(e.to_string()))?;
        let mut file = Self::default();
        for (section, variables) in doc {
            let Value::Object(variables) = variables else {
                return Err(EnvFileError::Section(section));
            };
            let mut values = BTreeMap::new();
            for (name, value) in variables {
                // SAM passes numbers and booleans on as their text.
                let Some(text) = scalar(&value) else {
                    return Err(EnvFileError::Value { section, name });
                };
                values.insert(name, text);
            }
            if section == "Parameters" {
                file.global = values;
            } else {
                file.functions.insert(section, values);
            }
        }
        Ok(file)
    }
}

/// What the deployed stack would know that a local run must make up.
#[derive(Debug, Clone)]
pub struct Pseudo {
    pub region: String,
    pub stack_name: String,
}

/// The environment of each function: the template's variables resolved where they
/// can be (literals, parameter defaults, pseudo parameters), then the env file's
/// overrides, which, as with `sam local`, apply only to variables the template
/// declares (a function-specific entry wins over `Parameters`). A variable that
/// cannot be resolved and is not overridden is left out and reported.
pub fn resolve_environment(
    template: &Template,
    env_file: &EnvFile,
    pseudo: &Pseudo,
) -> (Environments, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    let mut all = BTreeMap::new();
    for (id, function) in &template.functions {
        let own = env_file.functions.get(id);
        let mut env = BTreeMap::new();
        for (name, value) in &function.environment {
            let overridden = own
                .and_then(|o| o.get(name))
                .or_else(|| env_file.global.get(name));
            if let Some(v) = overridden {
                env.insert(name.clone(), v.clone());
                continue;
            }
            match resolve(value, template, pseudo) {
                Ok(Some(v)) => {
                    env.insert(name.clone(), v);
                }
                Ok(None) => {} // AWS::NoValue
                Err(why) => diagnostics.push(diagnostic(
                    id,
                    format!("{name} is left unset: {why}; set it in the env file"),
                )),
            }
        }
        for name in own.into_iter().flat_map(BTreeMap::keys) {
            if !function.environment.contains_key(name) {
                diagnostics.push(diagnostic(
                    id,
                    format!(
                        "env file variable {name} is ignored: the template does not declare it \
                         for this function (sam local ignores it too)"
                    ),
                ));
            }
        }
        all.insert(id.clone(), env);
    }
    for name in env_file.global.keys() {
        if !template
            .functions
            .values()
            .any(|f| f.environment.contains_key(name))
        {
            diagnostics.push(diagnostic(
                "Parameters",
                format!("env file variable {name} is ignored: no function declares it"),
            ));
        }
    }
    for id in env_file.functions.keys() {
        if !template.functions.contains_key(id) {
            diagnostics.push(diagnostic(
                id,
                "the env file names a function the template does not have",
            ));
        }
    }
    (all, diagnostics)
}

/// One environment for every function, as `cargo lambda watch` gives all functions
/// the same variables: the union, with a diagnostic where functions disagree (the
/// first function in logical-id order wins).
pub fn merged_environment(
    per_function: &BTreeMap<String, BTreeMap<String, String>>,
) -> (BTreeMap<String, String>, Vec<Diagnostic>) {
    let mut merged: BTreeMap<String, (String, &str)> = BTreeMap::new();
    let mut diagnostics = Vec::new();
    for (id, env) in per_function {
        for (name, value) in env {
            match merged.get(name) {
                None => {
                    merged.insert(name.clone(), (value.clone(), id));
                }
                Some((kept, by)) if kept != value => diagnostics.push(diagnostic(
                    id,
                    format!("{name} differs from {by}'s; one environment for all keeps {by}'s"),
                )),
                Some(_) => {}
            }
        }
    }
    (
        merged.into_iter().map(|(k, (v, _))| (k, v)).collect(),
        diagnostics,
    )
}

/// `KEY=value` lines for `cargo lambda watch --env-file`. Its parser
/// (env-file-reader) takes unquoted values without whitespace, quotes, `#` or `=`,
/// and quoted ones (`'…'`, `"…"` or `` `…` ``) without escapes for other quotes, so
/// each value is quoted with a quote it does not contain. A value containing all
/// three cannot be written: its name is returned instead.
pub fn dotenv(env: &BTreeMap<String, String>) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut unwritable = Vec::new();
    for (name, value) in env {
        let plain = !value.is_empty()
            && value
                .chars()
                .all(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '`' | '#' | '='));
        if plain {
            out.push_str(&format!("{name}={value}\n"));
        } else if value.contains("\\n") {
            // The parser turns a literal backslash-n inside quotes into a newline.
            unwritable.push(name.clone());
        } else {
            match ['\'', '"', '`'].into_iter().find(|q| !value.contains(*q)) {
                Some(q) => out.push_str(&format!("{name}={q}{value}{q}\n")),
                None => unwritable.push(name.clone()),
            }
        }
    }
    (out, unwritable)
}

/// A value of the environment: `Ok(None)` for `AWS::NoValue`.
fn resolve(value: &Value, template: &Template, pseudo: &Pseudo) -> Result<Option<String>, String> {
    if let Some(text) = scalar(value) {
        return Ok(Some(text));
    }
    let Some((function, arg)) = intrinsic(value) else {
        return Err("not a string or a supported intrinsic".into());
    };
    let name = |v: &str| -> Result<Option<String>, String> {
        if v == "AWS::NoValue" {
            return Ok(None);
        }
        if let Some(p) = pseudo_value(v, pseudo) {
            return Ok(Some(p));
        }
        match template.parameters.get(v) {
            Some(Some(default)) => Ok(Some(default.clone())),
            Some(None) => Err(format!("parameter {v} has no Default")),
            None => Err(format!(
                "{v} is a resource, whose name or attributes exist only once deployed"
            )),
        }
    };
    // `${x}` from the variables of `[text, {x: …}]`, else a parameter or pseudo parameter.
    let sub = |text: &str, variables: &Map<String, Value>| {
        substitute(text, &|v| match variables.get(v) {
            Some(value) => resolve(value, template, pseudo).map(Option::unwrap_or_default),
            None if v.contains('.') => {
                Err(format!("${{{v}}} is an attribute known only once deployed"))
            }
            None => name(v).map(Option::unwrap_or_default),
        })
        .map(Some)
    };
    match (function, arg) {
        ("Ref", Value::String(v)) => name(v),
        ("Fn::Sub", Value::String(text)) => sub(text, &Map::new()),
        ("Fn::Sub", Value::Array(parts)) => match parts.as_slice() {
            [Value::String(text), Value::Object(variables)] => sub(text, variables),
            _ => Err("Fn::Sub takes a string or [string, {variables}]".into()),
        },
        ("Fn::Join", Value::Array(parts)) => match parts.as_slice() {
            [Value::String(sep), Value::Array(items)] => {
                let mut out = Vec::new();
                for item in items {
                    out.extend(resolve(item, template, pseudo)?);
                }
                Ok(Some(out.join(sep)))
            }
            _ => Err("Fn::Join needs [separator, [values]]".into()),
        },
        (other, _) => Err(format!("{other} cannot be resolved locally")),
    }
}

fn pseudo_value(name: &str, pseudo: &Pseudo) -> Option<String> {
    Some(match name {
        "AWS::Region" => pseudo.region.clone(),
        "AWS::AccountId" => LOCAL_ACCOUNT.to_owned(),
        "AWS::Partition" => "aws".to_owned(),
        "AWS::URLSuffix" => "amazonaws.com".to_owned(),
        "AWS::StackName" => pseudo.stack_name.clone(),
        "AWS::StackId" => format!(
            "arn:aws:cloudformation:{}:{LOCAL_ACCOUNT}:stack/{}/local",
            pseudo.region, pseudo.stack_name
        ),
        _ => return None,
    })
}

/// Replaces each `${name}` of a `Fn::Sub` string (`${!x}` stays a literal `${x}`).
fn substitute(
    text: &str,
    lookup: &dyn Fn(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let name = &after[..end];
        match name.strip_prefix('!') {
            Some(literal) => out.push_str(&format!("${{{literal}}}")),
            None => out.push_str(&lookup(name.trim())?),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value as text with references kept as `${Name}` / `${Name.Attr}` markers, to
/// read which resource a `Target` or `IntegrationUri` names.
fn symbolic(value: &Value) -> Result<String, String> {
    if let Some(text) = scalar(value) {
        return Ok(text);
    }
    match intrinsic(value) {
        Some(("Ref", Value::String(name))) => Ok(format!("${{{name}}}")),
        Some(("Fn::GetAtt", Value::Array(parts))) => {
            let parts: Vec<&str> = parts.iter().filter_map(Value::as_str).collect();
            Ok(format!("${{{}}}", parts.join(".")))
        }
        Some(("Fn::Sub", Value::String(text))) => Ok(text.clone()),
        Some(("Fn::Sub", Value::Array(parts))) => match parts.as_slice() {
            [Value::String(text), Value::Object(vars)] => {
                substitute(text, &|name| match vars.get(name) {
                    Some(v) => symbolic(v),
                    None => Ok(format!("${{{name}}}")),
                })
            }
            _ => Err("Fn::Sub needs a string or [string, {variables}]".into()),
        },
        Some(("Fn::Join", Value::Array(parts))) => match parts.as_slice() {
            [Value::String(sep), Value::Array(items)] => Ok(items
                .iter()
                .map(symbolic)
                .collect::<Result<Vec<_>, _>>()?
                .join(sep)),
            _ => Err("Fn::Join needs [separator, [values]]".into()),
        },
        Some((other, _)) => Err(format!("the intrinsic {other} cannot be resolved locally")),
        None => Err("not a string or an intrinsic function".into()),
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

fn functions(doc: &Value, resources: &Map<String, Value>) -> BTreeMap<String, Function> {
    let globals = doc.pointer("/Globals/Function");
    let global_env = globals
        .and_then(|g| g.pointer("/Environment/Variables"))
        .and_then(Value::as_object);
    let global_timeout = globals.and_then(|g| g.get("Timeout")).and_then(number);
    resources
        .iter()
        .filter(|(_, r)| kind(r) == FUNCTION)
        .map(|(id, r)| {
            let p = props(r);
            let mut environment: BTreeMap<String, Value> = global_env
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default();
            if let Some(own) = p
                .get("Environment")
                .and_then(|e| e.pointer("/Variables"))
                .and_then(Value::as_object)
            {
                environment.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let function = Function {
                logical_id: id.clone(),
                binary: r
                    .pointer("/Metadata/BuildProperties/Binary")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                timeout: p
                    .get("Timeout")
                    .and_then(number)
                    .or(global_timeout)
                    .map(Duration::from_secs),
                environment,
            };
            (id.clone(), function)
        })
        .collect()
}

fn kind(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

fn props(resource: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    resource
        .get("Properties")
        .and_then(Value::as_object)
        .unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}

// The resource types the emulator reads.
const API: &str = "AWS::ApiGatewayV2::Api";
const ROUTE: &str = "AWS::ApiGatewayV2::Route";
const INTEGRATION: &str = "AWS::ApiGatewayV2::Integration";
const AUTHORIZER: &str = "AWS::ApiGatewayV2::Authorizer";
const ROUTE_RESPONSE: &str = "AWS::ApiGatewayV2::RouteResponse";
const FUNCTION: &str = "AWS::Serverless::Function";
/// The resources that hang off an API through their `ApiId`.
const API_PARTS: [&str; 4] = [ROUTE, INTEGRATION, AUTHORIZER, ROUTE_RESPONSE];

/// Whether a resource of this type is one whose `Condition` decides what
/// `roomcast dev` serves.
fn served_kind(kind: &str) -> bool {
    kind == API || kind == FUNCTION || API_PARTS.contains(&kind)
}

fn kind_of<'a>(resources: &'a Map<String, Value>, logical_id: &str) -> &'a str {
    resources.get(logical_id).map(kind).unwrap_or("")
}

/// The logical id that `{"Ref": X}` or `{"Fn::GetAtt": [X, attribute]}` (or
/// `"X.attribute"`) names.
fn named<'a>(value: &'a Value, attribute: &str) -> Option<&'a str> {
    match intrinsic(value)? {
        ("Ref", Value::String(id)) => Some(id),
        ("Fn::GetAtt", Value::Array(parts)) => match parts.as_slice() {
            [Value::String(id), Value::String(attr)] if attr == attribute => Some(id),
            _ => None,
        },
        ("Fn::GetAtt", Value::String(dotted)) => dotted
            .strip_suffix(attribute)
            .and_then(|id| id.strip_suffix('.')),
        _ => None,
    }
}

/// The template's resources as a deployment with the parameters' defaults would
/// create them: a resource whose `Condition` is false is left out. A condition
/// that needs what only a deployment knows (a pseudo parameter, a parameter
/// without a default) is reported, and its resources are kept.
fn deployed_resources(
    doc: &Value,
    parameters: &BTreeMap<String, Option<String>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Map<String, Value> {
    let empty = Map::new();
    let resources = doc
        .get("Resources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let conditions = Conditions {
        defined: doc
            .get("Conditions")
            .and_then(Value::as_object)
            .unwrap_or(&empty),
        parameters,
    };
    let mut kept = Map::new();
    for (id, resource) in resources {
        let condition = resource.get("Condition").and_then(Value::as_str);
        if let Some(name) = condition.filter(|_| served_kind(kind(resource))) {
            match conditions.named(name, 0) {
                Ok(true) => {}
                Ok(false) => {
                    diagnostics.push(diagnostic(
                        id,
                        format!(
                            "Condition {name} is false with the parameters' defaults: \
                             left out, as such a deployment would"
                        ),
                    ));
                    continue;
                }
                Err(why) => diagnostics.push(diagnostic(
                    id,
                    format!("Condition {name} cannot be evaluated locally ({why}): served"),
                )),
            }
        }
        kept.insert(id.clone(), resource.clone());
    }
    kept
}

/// The `Conditions` section, evaluated with the parameters' defaults.
struct Conditions<'a> {
    defined: &'a Map<String, Value>,
    parameters: &'a BTreeMap<String, Option<String>>,
}

impl Conditions<'_> {
    /// Conditions may refer to each other; deeper than this is a cycle.
    const MAX_DEPTH: usize = 32;

    fn named(&self, name: &str, depth: usize) -> Result<bool, String> {
        if depth > Self::MAX_DEPTH {
            return Err(format!("condition {name} refers to itself"));
        }
        let value = self
            .defined
            .get(name)
            .ok_or_else(|| format!("no condition {name} in Conditions"))?;
        self.evaluate(value, depth + 1)
    }

    fn evaluate(&self, value: &Value, depth: usize) -> Result<bool, String> {
        let Some((function, arg)) = value
            .as_object()
            .filter(|m| m.len() == 1)
            .and_then(|m| m.iter().next().map(|(k, v)| (k.as_str(), v)))
        else {
            return Err(
                "a condition must be one Fn::Equals, Fn::Not, Fn::And, Fn::Or or Condition".into(),
            );
        };
        let all = |items: &Value| -> Result<Vec<bool>, String> {
            match items {
                Value::Array(items) => items.iter().map(|c| self.evaluate(c, depth + 1)).collect(),
                _ => Err(format!("{function} takes a list of conditions")),
            }
        };
        match (function, arg) {
            ("Condition", Value::String(name)) => self.named(name, depth),
            ("Fn::Equals", Value::Array(pair)) => match pair.as_slice() {
                [a, b] => Ok(self.text(a)? == self.text(b)?),
                _ => Err("Fn::Equals takes two values".into()),
            },
            ("Fn::Not", items) => match all(items)?.as_slice() {
                [one] => Ok(!one),
                _ => Err("Fn::Not takes one condition".into()),
            },
            ("Fn::And", items) => Ok(all(items)?.into_iter().all(|c| c)),
            ("Fn::Or", items) => Ok(all(items)?.into_iter().any(|c| c)),
            (other, _) => Err(format!("{other} is not a condition function")),
        }
    }

    fn text(&self, value: &Value) -> Result<String, String> {
        if let Some(text) = scalar(value) {
            return Ok(text);
        }
        match intrinsic(value) {
            Some(("Ref", Value::String(name))) => match self.parameters.get(name) {
                Some(Some(default)) => Ok(default.clone()),
                Some(None) => Err(format!("parameter {name} has no Default")),
                None => Err(format!("{name} is known only once deployed")),
            },
            Some((other, _)) => Err(format!("{other} inside a condition")),
            None => Err("not a string or a Ref".into()),
        }
    }
}

/// `{"Ref": x}` or `{"Fn::X": args}` (one key).
fn intrinsic(value: &Value) -> Option<(&str, &Value)> {
    match value {
        Value::Object(map) if map.len() == 1 => {
            let (name, arg) = map.iter().next()?;
            (name == "Ref" || name.starts_with("Fn::")).then_some((name.as_str(), arg))
        }
        _ => None,
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// YAML to JSON, with CloudFormation's short-form tags turned into their long
/// forms: `!Ref X` → `{"Ref": X}`, `!GetAtt A.B` → `{"Fn::GetAtt": [A, B]}`,
/// `!Sub …` → `{"Fn::Sub": …}`, and so on for every `!Name`.
fn to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => scalar(&to_json(other)).unwrap_or_default(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            let (name, arg) = match tag {
                "Ref" | "Condition" => (tag.to_owned(), inner),
                "GetAtt" => {
                    let arg = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => serde_json::json!([a, b]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    ("Fn::GetAtt".to_owned(), arg)
                }
                other => (format!("Fn::{other}"), inner),
            };
            let mut map = Map::new();
            map.insert(name, arg);
            Value::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> Template {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../template.yaml");
        Template::from_file(path).expect("template.yaml parses")
    }

    fn pseudo() -> Pseudo {
        Pseudo {
            region: "eu-west-1".into(),
            stack_name: "local".into(),
        }
    }

    #[test]
    fn reads_the_real_template() {
        let t = real();
        assert_eq!(t.api_logical_id, "WebSocketApi");
        assert_eq!(t.selection, RouteSelection::action());
        let keys: Vec<&str> = t.routes.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "$connect",
                "$default",
                "$disconnect",
                "join",
                "leave",
                "ping",
                "send"
            ]
        );
        assert_eq!(
            t.routes["$connect"].function.as_deref(),
            Some("ConnectFunction")
        );
        assert_eq!(
            t.routes["$disconnect"].function.as_deref(),
            Some("DisconnectFunction")
        );
        for key in ["$default", "join", "leave", "send", "ping"] {
            assert_eq!(
                t.routes[key].function.as_deref(),
                Some("MessageFunction"),
                "{key}"
            );
            assert!(t.routes[key].two_way, "{key}");
        }
        assert!(!t.routes["$connect"].two_way);
        let authorizer = t.authorizer.as_ref().expect("the $connect authorizer");
        assert_eq!(authorizer.function, "AuthorizerFunction");
        assert!(authorizer.identity_sources.is_empty());
        assert_eq!(
            t.functions["MessageFunction"].binary.as_deref(),
            Some("message")
        );
        assert_eq!(
            t.functions["MessageFunction"].timeout,
            Some(Duration::from_secs(29))
        );
        assert_eq!(
            t.functions["ConnectFunction"].timeout,
            Some(Duration::from_secs(10))
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        assert_eq!(
            t.routed_functions(),
            [
                "AuthorizerFunction",
                "ConnectFunction",
                "DisconnectFunction",
                "MessageFunction"
            ]
        );
    }

    #[test]
    fn resolves_the_real_environment_with_overrides() {
        let t = real();
        let file = EnvFile::parse(
            r#"{"Parameters": {"ROOMCAST_TABLE": "local-table", "UNDECLARED": "x"},
                "MessageFunction": {"ROOMCAST_POLICIES": "{}", "ROOMCAST_TABLE": "message-table"},
                "GhostFunction": {}}"#,
        )
        .unwrap();
        let (env, diagnostics) = resolve_environment(&t, &file, &pseudo());
        assert_eq!(env["ConnectFunction"]["ROOMCAST_TABLE"], "local-table");
        // Function-specific entries win over Parameters.
        assert_eq!(env["MessageFunction"]["ROOMCAST_TABLE"], "message-table");
        assert_eq!(env["MessageFunction"]["ROOMCAST_POLICIES"], "{}");
        // Parameter defaults.
        assert_eq!(env["ConnectFunction"]["RUST_LOG"], "info");
        assert_eq!(env["AuthorizerFunction"]["ROOMCAST_JWT_LEEWAY_SECS"], "30");
        // The management endpoint !Sub needs the API's id: dropped and reported.
        assert!(!env["BroadcastFunction"].contains_key("ROOMCAST_MANAGEMENT_ENDPOINT"));
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|d| d.contains(needle));
        assert!(
            has("BroadcastFunction: ROOMCAST_MANAGEMENT_ENDPOINT is left unset"),
            "{text:?}"
        );
        assert!(has("UNDECLARED is ignored"), "{text:?}");
        assert!(has("GhostFunction"), "{text:?}");
        // JwtSecret has no default: unset unless the env file gives it.
        assert!(
            has("AuthorizerFunction: ROOMCAST_JWT_SECRET is left unset"),
            "{text:?}"
        );
    }

    #[test]
    fn the_sample_env_file_leaves_nothing_unresolved() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/env.local.json");
        let file = EnvFile::from_file(path).expect("infra/env.local.json parses");
        let (env, diagnostics) = resolve_environment(&real(), &file, &pseudo());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let (merged, conflicts) = merged_environment(&env);
        assert!(conflicts.is_empty(), "{conflicts:?}");
        assert_eq!(
            merged["ROOMCAST_MANAGEMENT_ENDPOINT"],
            "http://127.0.0.1:3001/local"
        );
        // The one for sam local start-lambda: the gateway on the host, not 3001.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/env.sam.json");
        let file = EnvFile::from_file(path).expect("infra/env.sam.json parses");
        let (env, diagnostics) = resolve_environment(&real(), &file, &pseudo());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert_eq!(
            env["BroadcastFunction"]["ROOMCAST_MANAGEMENT_ENDPOINT"],
            "http://host.docker.internal:3002/local"
        );
    }

    #[test]
    fn route_selection_paths() {
        let s = RouteSelection::parse("$request.body.meta.kind").unwrap();
        assert_eq!(
            s.key_of(r#"{"meta":{"kind":"join"}}"#).as_deref(),
            Some("join")
        );
        assert_eq!(s.key_of(r#"{"meta":{"kind":5}}"#), None);
        assert_eq!(s.key_of(r#"{"meta":"join"}"#), None);
        assert_eq!(s.key_of("not json"), None);
        for bad in [
            "$request.header.x",
            "action",
            "$request.body.",
            "${request.body.a}",
        ] {
            assert!(RouteSelection::parse(bad).is_none(), "{bad}");
        }
    }

    const SMALL: &str = r#"
Parameters:
  Stage: {Type: String, Default: dev}
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables: {A: !Ref Stage, B: !Sub "x-${AWS::Region}-${Stage}", C: !GetAtt T.Arn}
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: "$request.body.op"}
  Fn:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: message}}
    Properties:
      Environment: {Variables: {B: own}}
  Lambda:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      TimeoutInMillis: 3000
      IntegrationUri: !Join ["", ["arn:aws:apigateway:r:lambda:path/2015-03-31/functions/", !GetAtt Fn.Arn, "/invocations"]]
  Http:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: HTTP_PROXY, IntegrationUri: "https://example.com"}
  Missing:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !Ref Api
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Other.Arn}/invocations"
  Bare:
    Type: AWS::ApiGatewayV2::Integration
    Properties: {ApiId: !Ref Api, IntegrationType: AWS_PROXY, IntegrationUri: !GetAtt Fn.Arn}
  Default:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: $default, Target: !Join ["/", [integrations, !Ref Lambda]]}
  Echo:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: echo, Target: {"Fn::Sub": "integrations/${Lambda}"}}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref Echo, RouteResponseKey: $default}
  Proxy:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: proxy, Target: !Sub "integrations/${Http}"}
  Lost:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: lost, Target: !Sub "integrations/${Missing}"}
  Weird:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref Api, RouteKey: weird, Target: !If [c, a, b]}
"#;

    #[test]
    fn small_template_long_and_short_forms_and_what_is_reported() {
        let t = Template::parse(SMALL).unwrap();
        assert_eq!(t.selection.path, ["op"]);
        let keys: Vec<&str> = t.routes.keys().map(String::as_str).collect();
        // Unmappable routes keep their keys (they fail rather than fall to $default).
        assert_eq!(keys, ["$default", "echo", "lost", "proxy", "weird"]);
        assert_eq!(t.routes["echo"].function.as_deref(), Some("Fn"));
        for key in ["lost", "proxy", "weird"] {
            assert_eq!(t.routes[key].function, None, "{key}");
        }
        assert!(t.routes["echo"].two_way);
        assert!(!t.routes["$default"].two_way);
        assert_eq!(t.routes["echo"].timeout, Some(Duration::from_secs(3)));
        assert!(t.authorizer.is_none());
        let text: Vec<String> = t.diagnostics.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|d| d.contains(needle));
        assert!(
            has("Http: IntegrationType HTTP_PROXY is not emulated"),
            "{text:?}"
        );
        assert!(
            has("Missing: IntegrationUri: Other is not an AWS::Serverless::Function"),
            "{text:?}"
        );
        assert!(has("Proxy: Target"), "{text:?}");
        assert!(
            has("Bare: IntegrationUri: \"${Fn.Arn}\" is not of the form"),
            "{text:?}"
        );
        assert!(has("Lost: Target"), "{text:?}");
        assert!(
            has("Weird: Target: the intrinsic Fn::If cannot be resolved locally"),
            "{text:?}"
        );

        let f = &t.functions["Fn"];
        assert_eq!(f.timeout, Some(Duration::from_secs(5)));
        let (env, diagnostics) = resolve_environment(&t, &EnvFile::default(), &pseudo());
        assert_eq!(env["Fn"]["A"], "dev");
        assert_eq!(env["Fn"]["B"], "own");
        assert!(!env["Fn"].contains_key("C"));
        assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
        assert!(
            diagnostics[0].message.contains("C is left unset"),
            "{diagnostics:?}"
        );
    }

    const CONDITIONS: &str = r#"
Parameters:
  Env: {Type: String, Default: dev}
  Zone: {Type: String}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsDev: !Not [!Condition IsProd]
  Both: {"Fn::And": [{"Condition": IsDev}, {"Fn::Equals": [a, a]}]}
  InRegion: !Equals [!Ref "AWS::Region", us-east-1]
  InZone: !Equals [!Ref Zone, z]
  Loop: !Or [!Condition Loop]
Resources:
  Api:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: WEBSOCKET, RouteSelectionExpression: "$request.body.action"}
  HttpApi:
    Type: AWS::ApiGatewayV2::Api
    Properties: {ProtocolType: HTTP}
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          GREETING: !Sub ["${Hello}-${Env}-${AWS::Region}", {Hello: !Join ["", [h, i]]}]
          ARN: !Sub ["${X}", {X: !GetAtt T.Arn}]
  Lambda:
    Type: AWS::ApiGatewayV2::Integration
    Properties:
      ApiId: !GetAtt Api.ApiId
      IntegrationType: AWS_PROXY
      IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
  Auth:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties:
      ApiId: {"Fn::GetAtt": [Api, ApiId]}
      AuthorizerType: REQUEST
      IdentitySource: [route.request.querystring.token]
      AuthorizerUri: !Sub "arn:aws:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Fn.Arn}/invocations"
  Connect:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !GetAtt Api.ApiId
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !GetAtt Auth.AuthorizerId
      Target: !Sub "integrations/${Lambda}"
  Echo:
    Type: AWS::ApiGatewayV2::Route
    Condition: Both
    Properties: {ApiId: !Ref Api, RouteKey: echo, Target: !Sub "integrations/${Lambda}"}
  EchoResponse:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !GetAtt Echo.RouteId, RouteResponseKey: $default}
  OtherKey:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref Connect, RouteResponseKey: custom}
  Orphan:
    Type: AWS::ApiGatewayV2::RouteResponse
    Properties: {ApiId: !Ref Api, RouteId: !Ref Nothing, RouteResponseKey: $default}
  ProdOnly:
    Type: AWS::ApiGatewayV2::Route
    Condition: IsProd
    Properties: {ApiId: !Ref Api, RouteKey: prod, Target: !Sub "integrations/${Lambda}"}
  RegionRoute:
    Type: AWS::ApiGatewayV2::Route
    Condition: InRegion
    Properties: {ApiId: !Ref Api, RouteKey: region, Target: !Sub "integrations/${Lambda}"}
  ZoneRoute:
    Type: AWS::ApiGatewayV2::Route
    Condition: InZone
    Properties: {ApiId: !Ref Api, RouteKey: zone, Target: !Sub "integrations/${Lambda}"}
  LoopRoute:
    Type: AWS::ApiGatewayV2::Route
    Condition: Loop
    Properties: {ApiId: !Ref Api, RouteKey: loop, Target: !Sub "integrations/${Lambda}"}
  Imported:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !ImportValue shared-api, RouteKey: imported, Target: !Sub "integrations/${Lambda}"}
  HttpRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: {ApiId: !Ref HttpApi, RouteKey: "GET /x"}
"#;

    #[test]
    fn api_references_conditions_and_route_responses() {
        let t = Template::parse(CONDITIONS).unwrap();
        let keys: Vec<&str> = t.routes.keys().map(String::as_str).collect();
        // ProdOnly's condition is false; Imported and the HTTP API's route are not this API's.
        assert_eq!(keys, ["$connect", "echo", "loop", "region", "zone"]);
        for route in t.routes.values() {
            assert_eq!(route.function.as_deref(), Some("Fn"), "{}", route.key);
        }
        let authorizer = t
            .authorizer
            .as_ref()
            .expect("the authorizer named by !GetAtt");
        assert_eq!(authorizer.logical_id, "Auth");
        assert!(t.routes["echo"].two_way, "RouteId by !GetAtt Echo.RouteId");
        assert!(
            !t.routes["$connect"].two_way,
            "RouteResponseKey custom is not $default"
        );

        let text: Vec<String> = t.diagnostics.iter().map(ToString::to_string).collect();
        let has = |needle: &str| text.iter().any(|d| d.contains(needle));
        for needle in [
            "ProdOnly: Condition IsProd is false with the parameters' defaults: left out",
            "RegionRoute: Condition InRegion cannot be evaluated locally \
             (AWS::Region is known only once deployed): served",
            "ZoneRoute: Condition InZone cannot be evaluated locally (parameter Zone has no Default)",
            "LoopRoute: Condition Loop cannot be evaluated locally (condition Loop refers to itself)",
            "Imported: ApiId does not name an AWS::ApiGatewayV2::Api of this template",
            "OtherKey: RouteResponseKey custom: WebSocket APIs take only $default",
            "Orphan: RouteId does not name an AWS::ApiGatewayV2::Route",
        ] {
            assert!(has(needle), "{needle:?} not in {text:#?}");
        }
        assert_eq!(text.len(), 7, "nothing else is reported: {text:#?}");

        let (env, diagnostics) = resolve_environment(&t, &EnvFile::default(), &pseudo());
        assert_eq!(
            env["Fn"]["GREETING"],
            format!("hi-dev-{}", pseudo().region),
            "Fn::Sub's list form"
        );
        assert!(!env["Fn"].contains_key("ARN"));
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|d| d.contains("ARN is left unset: Fn::GetAtt cannot be resolved")),
            "{text:?}"
        );
    }

    #[test]
    fn templates_that_cannot_be_served_are_errors() {
        assert!(matches!(
            Template::parse("Resources: {}"),
            Err(TemplateError::NoWebSocketApi)
        ));
        assert!(matches!(
            Template::parse(": : :"),
            Err(TemplateError::Yaml(_))
        ));
        let bad = "Resources:\n  A:\n    Type: AWS::ApiGatewayV2::Api\n    Properties: \
                   {ProtocolType: WEBSOCKET, RouteSelectionExpression: \"$request.header.x\"}\n";
        let err = Template::parse(bad).unwrap_err().to_string();
        assert!(err.contains("$request.header.x"), "{err}");
    }

    #[test]
    fn env_files_debug_without_values() {
        let file = EnvFile::parse(
            r#"{"Parameters": {"ROOMCAST_JWT_SECRET": "hunter2-hunter2"}, "F": {"K": "v-secret"}}"#,
        )
        .unwrap();
        let shown = format!("{file:?}");
        assert!(
            shown.contains("ROOMCAST_JWT_SECRET") && shown.contains('K'),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("v-secret"),
            "{shown}"
        );
    }

    #[test]
    fn env_files_and_dotenv() {
        let file =
            EnvFile::parse(r#"{"Parameters": {"N": 3, "B": true}, "F": {"X": "y"}}"#).unwrap();
        assert_eq!(file.global["N"], "3");
        assert_eq!(file.global["B"], "true");
        assert_eq!(file.functions["F"]["X"], "y");
        assert_eq!(
            EnvFile::parse(r#"{"F": {"X": {"nested": "secret"}}}"#),
            Err(EnvFileError::Value {
                section: "F".into(),
                name: "X".into()
            })
        );
        assert_eq!(
            EnvFile::parse(r#"{"F": 1}"#),
            Err(EnvFileError::Section("F".into()))
        );
        let broken = EnvFile::parse(r#"{"F": {"X": "hunter2""#).unwrap_err();
        assert!(matches!(broken, EnvFileError::Json(_)), "{broken:?}");
        assert!(!broken.to_string().contains("hunter2"), "{broken}");
        let env: BTreeMap<String, String> = [
            ("A", "plain"),
            ("B", "two words"),
            ("C", r#"{"a":"$b"}"#),
            ("D", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (text, unwritable) = dotenv(&env);
        assert_eq!(text, "A=plain\nB='two words'\nC='{\"a\":\"$b\"}'\nD=''\n");
        assert!(unwritable.is_empty());
        let odd = BTreeMap::from([("Q".to_owned(), "'\"`".to_owned())]);
        assert_eq!(dotenv(&odd), (String::new(), vec!["Q".to_owned()]));
    }

    #[test]
    fn merged_environment_reports_disagreements() {
        let per: BTreeMap<String, BTreeMap<String, String>> = [
            ("A", [("X", "1"), ("Y", "same")]),
            ("B", [("X", "2"), ("Y", "same")]),
        ]
        .into_iter()
        .map(|(id, vars)| {
            (
                id.to_owned(),
                vars.into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            )
        })
        .collect();
        let (merged, diagnostics) = merged_environment(&per);
        assert_eq!(merged["X"], "1");
        assert_eq!(diagnostics.len(), 1);
        assert!(
            diagnostics[0]
                .to_string()
                .starts_with("B: X differs from A's")
        );
    }
}
