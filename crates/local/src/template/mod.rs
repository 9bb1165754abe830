//! Reads the WebSocket API and its functions out of a SAM template (`roomcast dev
//! --template template.yaml`), so the emulator serves the routes that would be
//! deployed rather than a built-in copy of them.
//!
//! What is read: the `AWS::ApiGatewayV2::Api` with `ProtocolType: WEBSOCKET` (its
//! `RouteSelectionExpression`), its `Route`s (key, `Target: integrations/${X}`,
//! authorizer), `RouteResponse`s (which routes are two-way), `Integration`s
//! (`AWS_PROXY` to a function of the template), the REQUEST `Authorizer`, and the
//! `AWS::Serverless::Function`s (environment merged over `Globals`, `Timeout`, the
//! `Handler`, or else the cargo-lambda `Binary` build property).
//!
//! Nothing is deployed, so some values cannot be known (`!Ref Table` is a physical
//! name, `!GetAtt X.Arn` an ARN): whatever cannot be mapped is left out and reported
//! as a [`Diagnostic`] naming the resource, never guessed. Only a template without a
//! WebSocket API, or with a route selection expression the emulator cannot evaluate,
//! is an error.
//!
//! Layout: [`model`] reads the resources one kind at a time (`resources`: the types
//! it reads), [`cfn`] evaluates CloudFormation (intrinsics, conditions, pseudo
//! parameters), [`env`](mod@env) reads env files and resolves each function's
//! environment. The route selection expression lives in `crate::selection`, next
//! to the routes that use it.

pub mod cfn;
pub mod env;
pub mod model;
mod resources;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use cfn::{Parameters, Pseudo};
pub use env::{
    EnvFile, EnvFileError, Environments, dotenv, merged_environment, names_only,
    resolve_environment,
};
pub use model::{ConnectAuthorizer, Function, Route};

use crate::selection::RouteSelection;

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
    pub parameters: Parameters,
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
        let doc = cfn::to_json(raw);
        let parameters = cfn::parameters(&doc);
        let mut diagnostics = Vec::new();
        let resources = cfn::deployed_resources(&doc, &parameters, &mut diagnostics);
        let (api_id, selection) = model::read_api(&resources)?;
        let functions = model::read_functions(&doc, &resources, &mut diagnostics);
        let mut api = model::ApiReader {
            resources: &resources,
            api_id,
            functions: &functions,
            diagnostics: &mut diagnostics,
        };
        api.report_unplaced_parts();
        let integrations = api.integrations();
        let authorizers = api.authorizers();
        let two_way = api.two_way_routes();
        let (routes, authorizer) = api.routes(&integrations, &authorizers, &two_way);
        Ok(Self {
            api_logical_id: api_id.to_owned(),
            selection,
            routes,
            authorizer,
            functions,
            parameters,
            diagnostics,
        })
    }

    /// Logical id → binary name (`Handler`, or the `Binary` build property): the
    /// names `cargo lambda watch` serves the functions under.
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
