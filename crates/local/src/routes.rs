//! The routes the gateway serves and what runs behind each: roomcast's built-in
//! routes (no template), or the template's (`roomcast dev --template`), with each
//! function run in-process or invoked through a Lambda Invoke endpoint.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use roomcast_core::App;
use roomcast_core::MessageRoute;
use roomcast_core::auth::{AuthConfig, Authorizer};
use roomcast_core::config::Config;
use roomcast_core::names::{binary as binary_name, env, route};

use crate::functions::builtin::Integration;
use crate::functions::remote::RemoteInvoker;
use crate::selection::RouteSelection;
use crate::template::{Diagnostic, Template};

/// What runs a route's function: in-process, behind an Invoke endpoint, or
/// nothing (an unmapped route).
#[derive(Clone)]
pub enum Runner {
    /// One of roomcast's handlers, in-process, with this function's [`App`].
    Handler {
        app: Arc<App>,
        integration: Integration,
    },
    /// A function behind a Lambda Invoke endpoint.
    Remote {
        invoker: RemoteInvoker,
        function: String,
    },
    /// A route whose integration could not be mapped: every invocation fails, as
    /// a route with a broken integration does on AWS (the frame is not rerouted).
    Unmapped,
}

/// A route and its integration.
#[derive(Clone)]
pub struct RouteTarget {
    pub key: String,
    pub runner: Runner,
    /// With a route response, the integration's response body goes back to the client.
    pub two_way: bool,
    /// The integration timeout (API Gateway's: at most 29 s).
    pub timeout: Duration,
    /// The function's own `Timeout`: when it is the shorter, running out of time is
    /// a function error, not an integration timeout.
    pub function_timeout: Option<Duration>,
}

/// The `$connect` authorizer and what runs it. `identity_sources`: the
/// `IdentitySource`s; when one is missing the handshake gets 401 and the
/// authorizer is not invoked.
#[derive(Clone)]
pub enum AuthorizerTarget {
    InProcess {
        authorizer: Arc<Authorizer>,
        identity_sources: Vec<String>,
    },
    Remote {
        invoker: RemoteInvoker,
        function: String,
        identity_sources: Vec<String>,
        timeout: Duration,
    },
}

impl AuthorizerTarget {
    /// roomcast's own authorizer, which reads the token from wherever it finds it.
    pub fn in_process(authorizer: Arc<Authorizer>) -> Self {
        Self::InProcess {
            authorizer,
            identity_sources: Vec::new(),
        }
    }

    pub fn identity_sources(&self) -> &[String] {
        match self {
            Self::InProcess {
                identity_sources, ..
            }
            | Self::Remote {
                identity_sources, ..
            } => identity_sources,
        }
    }
}

/// How the template's functions run.
#[derive(Debug, Clone)]
pub enum FunctionMode {
    /// In-process, chosen by each function's `Binary` build property.
    InProcess,
    /// Through a Lambda Invoke endpoint; `names` maps logical ids to the names to
    /// invoke (the logical id itself when absent).
    Remote {
        endpoint: String,
        names: BTreeMap<String, String>,
    },
}

/// `roomcast dev --template`: the template, each function's resolved
/// environment, and how its functions run.
#[derive(Clone)]
pub struct SamOptions {
    pub template: Arc<Template>,
    pub environment: BTreeMap<String, BTreeMap<String, String>>,
    pub mode: FunctionMode,
}

/// The environment by name only: its values include secrets (`ROOMCAST_JWT_SECRET`).
impl std::fmt::Debug for SamOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamOptions")
            .field("template", &self.template.api_logical_id)
            .field(
                "environment",
                &crate::template::names_only(&self.environment),
            )
            .field("mode", &self.mode)
            .finish()
    }
}

/// The routes the gateway serves.
#[derive(Clone)]
pub struct RouteTable {
    selection: RouteSelection,
    connect: Option<RouteTarget>,
    disconnect: Option<RouteTarget>,
    messages: HashMap<String, RouteTarget>,
    /// The broadcast function's own [`App`], from its environment in the
    /// template (in-process); `None`: it runs on the gateway's.
    broadcast: Option<Arc<App>>,
}

/// What [`RouteTable::select`] found for a frame.
pub enum Selected<'a> {
    Route(&'a RouteTarget),
    /// No route matched and there is no `$default`.
    NoRoute,
}

impl RouteTable {
    /// roomcast's routes, all served by `app`'s handlers: `$connect`,
    /// `$disconnect`, and two-way `$default` and the message routes (`join`,
    /// `leave`, `send`, `ping`, `history`, `presence`) selected by
    /// `$request.body.action`.
    pub fn builtin(app: &Arc<App>, timeout: Duration) -> Self {
        let handler = |key: &str, integration| RouteTarget {
            key: key.to_owned(),
            runner: Runner::Handler {
                app: Arc::clone(app),
                integration,
            },
            two_way: true,
            timeout,
            function_timeout: None,
        };
        let messages = MessageRoute::ALL
            .map(MessageRoute::key)
            .into_iter()
            .chain([route::DEFAULT])
            .map(|key| (key.to_owned(), handler(key, Integration::Message)))
            .collect();
        Self {
            selection: RouteSelection::action(),
            connect: Some(handler(route::CONNECT, Integration::Connect)),
            disconnect: Some(handler(route::DISCONNECT, Integration::Disconnect)),
            messages,
            broadcast: None,
        }
    }

    /// The [`App`] the broadcast function runs on, when not the gateway's.
    pub fn broadcast_app(&self) -> Option<&Arc<App>> {
        self.broadcast.as_ref()
    }

    pub fn connect(&self) -> Option<&RouteTarget> {
        self.connect.as_ref()
    }

    pub fn disconnect(&self) -> Option<&RouteTarget> {
        self.disconnect.as_ref()
    }

    /// The route of a text frame (`None`: a binary frame), by the route selection
    /// expression; a frame whose key names no route goes to `$default`.
    pub fn select(&self, text: Option<&str>) -> Selected<'_> {
        let found = text
            .and_then(|t| self.selection.key_of(t))
            .and_then(|key| self.messages.get(&key))
            .or_else(|| self.messages.get(route::DEFAULT));
        match found {
            Some(route) => Selected::Route(route),
            None => Selected::NoRoute,
        }
    }

    /// The message route keys, sorted (for the start-up banner).
    pub fn message_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.messages.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }
}

/// What the template's in-process functions share with the gateway.
pub struct Shared<'a> {
    pub store: Arc<dyn roomcast_core::store::Store>,
    pub management: Arc<dyn roomcast_core::management::Management>,
    pub table: &'a str,
    pub management_endpoint: &'a str,
    pub integration_timeout: Duration,
    pub sdk: &'a aws_config::SdkConfig,
    pub metrics: Arc<roomcast_core::metrics::Metrics>,
    /// Where big rooms' fan-out jobs go: the in-process fan-out queue.
    pub dispatch: Arc<dyn roomcast_core::workers::Dispatch>,
}

/// Why the template's routes cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("{function}: {message}")]
pub struct FunctionSetupError {
    pub function: String,
    pub message: String,
}

/// The template's routes and authorizer, and what could not be mapped (a route
/// whose function is unknown or cannot run in-process answers "Internal server
/// error"). A `$connect` route or authorizer that cannot be mapped is an error:
/// serving the API without it would accept handshakes the deployed API refuses.
pub fn from_template(
    sam: &SamOptions,
    shared: &Shared<'_>,
) -> Result<(RouteTable, Option<AuthorizerTarget>, Vec<Diagnostic>), FunctionSetupError> {
    let template = &sam.template;
    let mut functions = TemplateFunctions {
        sam,
        shared,
        remote: match &sam.mode {
            FunctionMode::Remote { endpoint, names } => {
                Some((RemoteInvoker::new(shared.sdk, endpoint), names))
            }
            FunctionMode::InProcess => None,
        },
        apps: HashMap::new(),
        diagnostics: Vec::new(),
    };
    let mut messages = HashMap::new();
    let (mut connect, mut disconnect) = (None, None);
    for (key, r) in &template.routes {
        let route = functions.route(key, r)?;
        insert_by_key(key, &mut connect, &mut disconnect, &mut messages, route);
    }
    let authorizer = functions.authorizer()?;
    let broadcast = functions.broadcast()?;
    Ok((
        RouteTable {
            selection: template.selection.clone(),
            connect,
            disconnect,
            messages,
            broadcast,
        },
        authorizer,
        functions.diagnostics,
    ))
}

/// The template's functions, as the routes and the authorizer need them.
struct TemplateFunctions<'a> {
    sam: &'a SamOptions,
    shared: &'a Shared<'a>,
    /// With `--invoke-endpoint`: the invoker, and the names to invoke by logical id.
    remote: Option<(RemoteInvoker, &'a BTreeMap<String, String>)>,
    /// In-process: one App per function, configured by its environment, sharing
    /// the gateway's store and @connections.
    apps: HashMap<String, Arc<App>>,
    diagnostics: Vec<Diagnostic>,
}

impl TemplateFunctions<'_> {
    fn environment(&self, id: &str) -> BTreeMap<String, String> {
        self.sam.environment.get(id).cloned().unwrap_or_default()
    }

    /// The name to invoke a function by on the Invoke endpoint.
    fn remote_name(names: &BTreeMap<String, String>, id: &str) -> String {
        names.get(id).cloned().unwrap_or_else(|| id.to_owned())
    }

    /// A route of the template and what runs it.
    fn route(
        &mut self,
        key: &str,
        r: &crate::template::Route,
    ) -> Result<RouteTarget, FunctionSetupError> {
        let integration_timeout = self.shared.integration_timeout;
        let Some(function_id) = r.function.as_deref() else {
            // The template's diagnostics say why.
            if key == route::CONNECT {
                return Err(FunctionSetupError {
                    function: r.logical_id.clone(),
                    message: "the $connect route or its authorizer cannot be mapped (see the \
                              template's warnings); serving it without them would accept \
                              handshakes the deployed API refuses"
                        .to_owned(),
                });
            }
            return Ok(RouteTarget {
                key: key.to_owned(),
                runner: Runner::Unmapped,
                two_way: r.two_way,
                timeout: integration_timeout,
                function_timeout: None,
            });
        };
        let function = self.sam.template.functions.get(function_id);
        let runner = match &self.remote {
            Some((invoker, names)) => Runner::Remote {
                invoker: invoker.clone(),
                function: Self::remote_name(names, function_id),
            },
            None => {
                let binary = function.and_then(|f| f.binary.as_deref());
                self.in_process_runner(key, function_id, binary)?
            }
        };
        Ok(RouteTarget {
            key: key.to_owned(),
            runner,
            two_way: r.two_way,
            timeout: r
                .timeout
                .map_or(integration_timeout, |t| t.min(integration_timeout)),
            function_timeout: function.and_then(|f| f.timeout),
        })
    }

    /// The in-process handler of a route's function, chosen by its binary.
    fn in_process_runner(
        &mut self,
        key: &str,
        function_id: &str,
        binary: Option<&str>,
    ) -> Result<Runner, FunctionSetupError> {
        match binary.and_then(Integration::from_binary) {
            None if key == route::CONNECT => Err(FunctionSetupError {
                function: function_id.to_owned(),
                message: format!(
                    "binary {} has no in-process handler, and $connect cannot \
                     be served without its function: use --invoke-endpoint",
                    binary.unwrap_or("(none)")
                ),
            }),
            None => {
                self.diagnostics.push(Diagnostic {
                    logical_id: function_id.to_owned(),
                    message: format!(
                        "binary {} has no in-process handler: route {key} answers \
                         \"Internal server error\" (use --invoke-endpoint to run the \
                         real functions)",
                        binary.unwrap_or("(none)")
                    ),
                });
                Ok(Runner::Unmapped)
            }
            Some(integration) => Ok(Runner::Handler {
                app: self.app(function_id)?,
                integration,
            }),
        }
    }

    /// The function's [`App`], made on first use.
    fn app(&mut self, function_id: &str) -> Result<Arc<App>, FunctionSetupError> {
        if let Some(app) = self.apps.get(function_id) {
            return Ok(Arc::clone(app));
        }
        let environment = self.environment(function_id);
        let app = Arc::new(in_process_app(function_id, &environment, self.shared)?);
        self.apps.insert(function_id.to_owned(), Arc::clone(&app));
        Ok(app)
    }

    /// In-process, the broadcast function's [`App`] from the environment the
    /// template gives it, as the routes' functions get theirs: the Invoke API and
    /// the queue then run it with its own policies, not the gateway's.
    fn broadcast(&mut self) -> Result<Option<Arc<App>>, FunctionSetupError> {
        if self.remote.is_some() {
            return Ok(None);
        }
        let template = &self.sam.template;
        let Some(id) = template
            .functions
            .iter()
            .find(|(_, f)| f.binary.as_deref() == Some(binary_name::BROADCAST))
            .map(|(id, _)| id.clone())
        else {
            return Ok(None);
        };
        self.app(&id).map(Some)
    }

    /// The template's `$connect` authorizer and what runs it.
    fn authorizer(&self) -> Result<Option<AuthorizerTarget>, FunctionSetupError> {
        let template = &self.sam.template;
        let Some(a) = &template.authorizer else {
            return Ok(None);
        };
        if let Some((invoker, names)) = &self.remote {
            return Ok(Some(AuthorizerTarget::Remote {
                invoker: invoker.clone(),
                function: Self::remote_name(names, &a.function),
                identity_sources: a.identity_sources.clone(),
                timeout: self.shared.integration_timeout,
            }));
        }
        let binary = template
            .functions
            .get(&a.function)
            .and_then(|f| f.binary.as_deref());
        if binary != Some(binary_name::AUTHORIZER) {
            return Err(FunctionSetupError {
                function: a.function.clone(),
                message: format!(
                    "the $connect authorizer's binary {} has no in-process handler: \
                     use --invoke-endpoint",
                    binary.unwrap_or("(none)")
                ),
            });
        }
        let env = self.environment(&a.function);
        let config = AuthConfig::from_lookup(|name| env.get(name).cloned()).map_err(|e| {
            FunctionSetupError {
                function: a.function.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(Some(AuthorizerTarget::InProcess {
            authorizer: Arc::new(
                Authorizer::new(config).with_metrics(Arc::clone(&self.shared.metrics)),
            ),
            identity_sources: a.identity_sources.clone(),
        }))
    }
}

/// Puts `route` in `$connect`, `$disconnect` or the message routes, by its key.
fn insert_by_key(
    key: &str,
    connect: &mut Option<RouteTarget>,
    disconnect: &mut Option<RouteTarget>,
    messages: &mut HashMap<String, RouteTarget>,
    route: RouteTarget,
) {
    match key {
        route::CONNECT => *connect = Some(route),
        route::DISCONNECT => *disconnect = Some(route),
        _ => {
            messages.insert(key.to_owned(), route);
        }
    }
}

/// A function's [`App`] from its environment; the table and management endpoint
/// are the gateway's own (the store is the gateway's, and `@connections` is served
/// by it), whatever the environment says.
fn in_process_app(
    function: &str,
    environment: &BTreeMap<String, String>,
    shared: &Shared<'_>,
) -> Result<App, FunctionSetupError> {
    let config = Config::from_lookup(|name| match name {
        env::TABLE => Some(shared.table.to_owned()),
        env::MANAGEMENT_ENDPOINT => Some(shared.management_endpoint.to_owned()),
        _ => environment.get(name).cloned(),
    })
    .map_err(|e| FunctionSetupError {
        function: function.to_owned(),
        message: e.to_string(),
    })?;
    Ok(App::new(
        config,
        Arc::clone(&shared.store),
        Arc::clone(&shared.management),
    )
    .with_metrics(Arc::clone(&shared.metrics))
    .with_dispatch(Arc::clone(&shared.dispatch)))
}
