//! `roomcast dev`: a local emulator of an API Gateway WebSocket API, running roomcast's
//! route handlers in-process, with the `@connections` and Lambda Invoke APIs on the
//! same port. docs/local.md lists what is emulated and how it differs from AWS.
//!
//! # Layout
//!
//! - [`websocket`]: the WebSocket side: `$connect` during the handshake, one task
//!   per connection, route selection, replies, limits, timeouts and `$disconnect`.
//!   (The [`Gateway`] type, the state all of these share, is in this file.)
//! - [`connections`]: the registry of open connections and their command queues.
//! - [`management`]: the `@connections` API (POST, GET, DELETE).
//! - [`inprocess`]: the in-process `@connections` adapter of the handlers it runs.
//! - [`invoke`]: the Lambda Invoke API over a registry of in-process functions.
//! - [`broadcast`]: the broadcast function (its `App` and timeout), registered on the
//!   Invoke API.
//! - [`queue`]: the broadcast queue (SQS API on `POST /`), its dead-letter queue
//!   and the event source mapping that feeds the broadcast function.
//! - [`static_files`]: `--static DIR`, web pages served beside the API.
//! - [`metrics`]: `GET /metrics`, the counters and gauges in the Prometheus text format.
//! - [`sigv4`]: SigV4 checks on `@connections`, the Invoke API and the queue off loopback.
//! - [`faults`]: optional fault injection for `@connections` POSTs.
//! - [`auth`]: the `$connect` REQUEST authorizer, run before `$connect` as API Gateway does.
//! - [`routes`]: the routes served (built-in, or the template's) and the [`routes::Runner`]
//!   behind each.
//! - [`selection`]: the route selection expression (`$request.body.…`) and its evaluation.
//! - [`template`]: reading a SAM template: [`template::model`] (one reader per resource
//!   kind), [`template::cfn`] (intrinsics, conditions, pseudo parameters),
//!   [`template::env`] (env files and the functions' resolved environments).
//! - [`remote`]: invoking functions through a Lambda Invoke endpoint.
//! - [`handlers`]: running roomcast's route handlers (core's `Integration` table), one
//!   task per invocation.
//! - [`events`]: building API Gateway events, ids and timestamps.
//! - [`aws`]: the local account id and [`AwsError`], which renders every AWS-shaped
//!   error response (`@connections`, Lambda Invoke, refused handshakes).
//! - [`error`]: the library's error type.
//!
//! Imports run one way: `template` reads `selection` and `aws`; `routes` reads
//! `template` and `selection`; `auth` reads `routes` and `aws`.
//!
//! [`serve`] binds, starts everything and returns a [`RunningGateway`]; the CLI and
//! the end-to-end tests both use it. [`router`] builds the HTTP routes alone.

pub mod auth;
pub mod aws;
pub mod broadcast;
pub mod connections;
pub mod error;
pub mod events;
pub mod faults;
pub mod handlers;
pub mod inprocess;
pub mod invoke;
pub mod management;
pub mod metrics;
pub mod queue;
pub mod remote;
pub mod routes;
pub mod selection;
pub mod sigv4;
pub mod static_files;
pub mod template;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use axum::Router;
use axum::routing::{get, post};
use roomcast_core::App;
use roomcast_core::auth::Authorizer;
use roomcast_core::auth::origin::Origins;
use roomcast_core::auth::policy::Policies;
use roomcast_core::config::{CONNECTION_CAP, Config, GATEWAY_MAX_PAYLOAD};
use roomcast_core::management::apigw::ApiGatewayManagement;
use roomcast_core::metrics::Metrics;
use roomcast_core::store::Store;
use roomcast_core::store::dynamo::DynamoStore;
use roomcast_core::store::memory::MemoryStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use aws::{AwsError, LOCAL_ACCOUNT};
pub use connections::Registry;
pub use error::LocalError;
pub use faults::{FaultKind, Faults};
pub use handlers::{Integration, InvokeError};
pub use invoke::{FunctionError, FunctionRegistry, LambdaFunction};
pub use routes::{FunctionMode, SamOptions};
pub use sigv4::ManagementCredentials;

/// API Gateway's WebSocket frame limit; larger frames close the connection with 1009.
pub const GATEWAY_MAX_FRAME: usize = 32 * 1024;
/// API Gateway's idle timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// API Gateway's maximum integration time.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
/// The table name used with the in-memory store (it names nothing real).
pub const MEMORY_TABLE: &str = "roomcast-local";

/// How the gateway behaves; [`Default`] matches API Gateway on 127.0.0.1:3001.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub host: String,
    /// 0 picks a free port.
    pub port: u16,
    pub stage: String,
    /// `requestContext.apiId` in events.
    pub api_id: String,
    /// The region reported in ARNs and used for the SDK clients.
    pub region: String,
    pub idle_timeout: Duration,
    pub max_connection_duration: Duration,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub integration_timeout: Duration,
    /// Answer a share of `@connections` POSTs with injected faults (tests, demos).
    pub faults: Option<Faults>,
    /// Added to every `@connections` call before it is answered: a loopback call
    /// takes well under a millisecond, one to API Gateway in a region about
    /// 10–30 ms, and a fan-out's throughput depends on it (docs/performance.md).
    pub management_latency: Duration,
    /// In-process handlers post through HTTP to the `@connections` endpoint, as
    /// functions elsewhere do, instead of in-process ([`inprocess`]).
    pub management_http: bool,
    /// The `$connect` REQUEST authorizer. `None`: no authorizer (`AuthorizationType:
    /// NONE`), every handshake reaches `$connect` anonymously.
    pub authorizer: Option<Arc<Authorizer>>,
    /// The namespace policies. `None`: [`Policies::open`] (anyone may join and send),
    /// so the emulator works without configuration; deployed stacks default to
    /// authenticated-only instead.
    pub policies: Option<Policies>,
    /// Serve a SAM template's routes and functions instead of the built-in ones;
    /// `authorizer` and `policies` are then ignored (the template's functions and
    /// their environment decide).
    pub sam: Option<SamOptions>,
    /// The broadcast queue and its event source mapping (template.yaml's settings).
    pub queue: queue::QueueOptions,
    /// Files served to plain GET requests (`--static DIR`).
    pub static_dir: Option<static_files::StaticDir>,
    /// What every handler and authorizer of the gateway counts into (`GET /metrics`).
    pub metrics: Arc<Metrics>,
    /// Which `Origin`s may open a connection, checked before the authorizer runs.
    pub origins: Origins,
    /// What `@connections` and Invoke calls must be signed with when the gateway
    /// listens on a non-loopback address (on loopback nothing is checked). The
    /// in-process functions sign their own calls with them.
    pub management_credentials: Option<ManagementCredentials>,
    /// Accept unsigned management calls on a non-loopback address too.
    pub insecure_management: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 3001,
            stage: "local".to_owned(),
            api_id: "local".to_owned(),
            region: "us-east-1".to_owned(),
            idle_timeout: IDLE_TIMEOUT,
            max_connection_duration: CONNECTION_CAP,
            max_message_bytes: GATEWAY_MAX_PAYLOAD,
            max_frame_bytes: GATEWAY_MAX_FRAME,
            integration_timeout: INTEGRATION_TIMEOUT,
            faults: None,
            management_latency: Duration::ZERO,
            management_http: false,
            authorizer: None,
            policies: None,
            sam: None,
            queue: queue::QueueOptions::default(),
            static_dir: None,
            metrics: Arc::default(),
            origins: Origins::default(),
            management_credentials: None,
            insecure_management: false,
        }
    }
}

fn valid_stage(stage: &str) -> bool {
    !stage.is_empty()
        && stage.len() <= 128
        && stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The gateway's shared state: handed to every route and connection task.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    app: Arc<App>,
    options: GatewayOptions,
    local_addr: SocketAddr,
    connections: Registry,
    functions: FunctionRegistry,
    routes: routes::RouteTable,
    authorizer: Option<routes::AuthorizerTarget>,
    faults: Option<faults::FaultInjector>,
    queues: Arc<queue::Queues>,
    /// The credentials management calls are checked against; `None`: not checked.
    management_check: Option<ManagementCredentials>,
    shutdown: watch::Sender<bool>,
    /// How many connection tasks (and their `$disconnect`s) are still running.
    tasks: watch::Sender<usize>,
}

/// Counts a running connection task until dropped.
pub(crate) struct TaskGuard(watch::Sender<usize>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Gateway {
    /// State for a gateway reachable at `local_addr`, running `app`'s handlers.
    pub fn new(
        options: GatewayOptions,
        app: Arc<App>,
        local_addr: SocketAddr,
    ) -> Result<Self, LocalError> {
        let routes = routes::RouteTable::builtin(&app, options.integration_timeout);
        let authorizer = options
            .authorizer
            .clone()
            .map(routes::AuthorizerTarget::in_process);
        Self::with_routes(options, app, local_addr, routes, authorizer)
    }

    /// State for a gateway serving `routes`, with `authorizer` on `$connect`.
    pub fn with_routes(
        options: GatewayOptions,
        app: Arc<App>,
        local_addr: SocketAddr,
        routes: routes::RouteTable,
        authorizer: Option<routes::AuthorizerTarget>,
    ) -> Result<Self, LocalError> {
        let faults = options.faults.clone().map(faults::FaultInjector::new);
        let queues = Arc::new(queue::Queues::new(options.queue.clone()));
        let management_check = management_check(&options, local_addr)?;
        let gateway = Self {
            inner: Arc::new(Inner {
                app,
                options,
                faults,
                queues,
                management_check,
                local_addr,
                connections: Registry::default(),
                functions: FunctionRegistry::default(),
                routes,
                authorizer,
                shutdown: watch::Sender::new(false),
                tasks: watch::Sender::new(0),
            }),
        };
        let inner = &gateway.inner;
        inner
            .functions
            .register_builtins(&inner.app, inner.options.integration_timeout);
        Ok(gateway)
    }

    /// Runs one of roomcast's handlers within the integration timeout.
    pub async fn invoke(
        &self,
        integration: Integration,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, InvokeError> {
        handlers::invoke(
            Arc::clone(&self.inner.app),
            integration,
            event,
            self.inner.options.integration_timeout,
        )
        .await
    }

    /// Runs a route's integration within its timeout. A function that runs out of
    /// its own (shorter) `Timeout` has failed; running out of the integration
    /// timeout is a timeout.
    pub async fn invoke_route(
        &self,
        route: &routes::RouteTarget,
        event: ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, InvokeError> {
        let (limit, function_limited) = match route.function_timeout {
            Some(own) if own < route.timeout => (own, true),
            _ => (route.timeout, false),
        };
        let result = match &route.runner {
            routes::Runner::Handler { app, integration } => {
                handlers::invoke(Arc::clone(app), *integration, event, limit).await
            }
            routes::Runner::Remote { invoker, function } => {
                // $connect's response decides the handshake even without a route
                // response, so it is always read.
                let one_way = !route.two_way && route.key != roomcast_core::names::route::CONNECT;
                remote::route(invoker, function, &event, limit, one_way).await
            }
            routes::Runner::Unmapped => {
                tracing::warn!(
                    route = %route.key,
                    "the route's integration could not be mapped from the template"
                );
                Err(InvokeError::Failed)
            }
        };
        match result {
            Err(InvokeError::TimedOut) if function_limited => Err(InvokeError::Failed),
            other => other,
        }
    }

    /// The routes this gateway serves.
    pub fn routes(&self) -> &routes::RouteTable {
        &self.inner.routes
    }

    /// The `$connect` authorizer, if there is one.
    pub fn authorizer(&self) -> Option<&routes::AuthorizerTarget> {
        self.inner.authorizer.as_ref()
    }

    pub fn app(&self) -> &App {
        &self.inner.app
    }

    pub fn options(&self) -> &GatewayOptions {
        &self.inner.options
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    pub fn connections(&self) -> &Registry {
        &self.inner.connections
    }

    /// The Invoke API's functions; register more here.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.inner.functions
    }

    /// The broadcast queue and its dead-letter queue.
    pub fn queues(&self) -> &Arc<queue::Queues> {
        &self.inner.queues
    }

    /// The injected fault for a POST to `connection_id`, if fault injection is on.
    pub(crate) fn injected_fault(&self, connection_id: &str) -> Option<FaultKind> {
        self.inner.faults.as_ref()?.decide(connection_id)
    }

    /// The credentials management calls must be signed with, when they are checked.
    pub fn management_check(&self) -> Option<&ManagementCredentials> {
        self.inner.management_check.as_ref()
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    pub(crate) fn track_task(&self) -> TaskGuard {
        self.inner.tasks.send_modify(|n| *n += 1);
        TaskGuard(self.inner.tasks.clone())
    }

    /// Closes every connection with 1001 and waits until their `$disconnect`s ran.
    pub async fn close_all(&self) {
        self.inner.shutdown.send_replace(true);
        let mut tasks = self.inner.tasks.subscribe();
        let _ = tasks.wait_for(|n| *n == 0).await;
    }
}

/// Whether management calls are checked, and against what: only off loopback,
/// unless `insecure_management`; off loopback without credentials, the gateway
/// does not start.
fn management_check(
    options: &GatewayOptions,
    local_addr: SocketAddr,
) -> Result<Option<ManagementCredentials>, LocalError> {
    if local_addr.ip().is_loopback() || options.insecure_management {
        return Ok(None);
    }
    match &options.management_credentials {
        Some(credentials) => Ok(Some(credentials.clone())),
        None => Err(LocalError::ManagementUnprotected {
            addr: local_addr.to_string(),
        }),
    }
}

/// The gateway's HTTP routes: the WebSocket endpoint at `/{stage}` and `/`,
/// `@connections` under both, the Lambda Invoke API, and the SQS API on `POST /`
/// (all three behind [`sigv4::check`]). Anything else is 403, which is what API
/// Gateway answers for a path it does not serve; with `static_dir`, plain GETs of
/// its files are answered first.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// handshake reads the peer address for `identity.sourceIp`.
pub fn router(gateway: Gateway) -> Router {
    let stage = format!("/{}", gateway.options().stage);
    let connections = axum::routing::post(management::post)
        .get(management::get)
        .delete(management::delete);
    let management = Router::new()
        .route(&format!("{stage}/@connections/{{id}}"), connections.clone())
        .route("/@connections/{id}", connections)
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(invoke::invoke),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            sigv4::check,
        ));
    let router = metrics::route(Router::new(), &stage)
        .route(
            "/",
            get(websocket::websocket)
                .post(queue::api::post)
                .route_layer(axum::middleware::from_fn_with_state(
                    gateway.clone(),
                    sigv4::check,
                )),
        )
        .route(&stage, get(websocket::websocket))
        .merge(management)
        .fallback(forbidden)
        .with_state(gateway.clone());
    match gateway.options().static_dir.clone() {
        Some(dir) => router.layer(axum::middleware::from_fn_with_state(
            dir,
            static_files::serve,
        )),
        None => router,
    }
}

async fn forbidden() -> AwsError {
    AwsError::forbidden()
}

/// An `SdkConfig` for local use: the region from `options`, and static dummy
/// credentials unless real ones are in the environment (the emulator and dynalite
/// accept any signature, so no credential lookup should slow start-up down).
pub async fn local_sdk_config(region: &str) -> SdkConfig {
    let loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
    let has_env_credentials = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_PROFILE").is_some();
    let loader = if has_env_credentials {
        loader
    } else {
        loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "roomcast-dev",
        ))
    };
    loader.load().await
}

/// Where connections and rooms are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    /// DynamoDB (or dynalite) at `endpoint`; the table is created if missing.
    Dynamo {
        endpoint: String,
        table: String,
    },
}

/// The store for `backend`, with its table ready, and the table name for [`Config`].
pub async fn open_store(
    backend: &Backend,
    sdk: &SdkConfig,
) -> Result<(Arc<dyn Store>, String), LocalError> {
    match backend {
        Backend::Memory => Ok((Arc::new(MemoryStore::new()), MEMORY_TABLE.to_owned())),
        Backend::Dynamo { endpoint, table } => {
            let config = aws_sdk_dynamodb::config::Builder::from(sdk)
                .endpoint_url(endpoint)
                .build();
            let store =
                DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table.clone());
            store
                .ensure_table()
                .await
                .map_err(|source| LocalError::Table {
                    table: table.clone(),
                    source,
                })?;
            Ok((Arc::new(store), table.clone()))
        }
    }
}

/// A gateway serving in the background.
pub struct RunningGateway {
    gateway: Gateway,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
}

impl RunningGateway {
    pub fn local_addr(&self) -> SocketAddr {
        self.gateway.local_addr()
    }

    /// `ws://HOST:PORT/STAGE`.
    pub fn websocket_url(&self) -> String {
        format!(
            "ws://{}/{}",
            self.local_addr(),
            self.gateway.options().stage
        )
    }

    /// `http://HOST:PORT/STAGE`: the endpoint for the management API client.
    pub fn management_endpoint(&self) -> String {
        format!(
            "http://{}/{}",
            self.local_addr(),
            self.gateway.options().stage
        )
    }

    /// The base URL of the Lambda Invoke API (the endpoint for a Lambda SDK client).
    pub fn lambda_endpoint(&self) -> String {
        format!("http://{}", self.local_addr())
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The broadcast queue's URL (the endpoint for an SQS SDK client is
    /// [`RunningGateway::lambda_endpoint`]'s).
    pub fn queue_url(&self) -> String {
        queue::api::queue_url(&self.gateway, queue::QueueKind::Broadcast)
    }

    /// Stops accepting connections, closes the open ones with 1001 "Going away",
    /// runs their `$disconnect`s and waits for the server to finish.
    pub async fn shutdown(self) -> Result<(), LocalError> {
        self.gateway.close_all().await;
        self.stop.send_replace(true);
        match self.server.await {
            Ok(result) => result.map_err(LocalError::Serve),
            Err(join) => Err(LocalError::Serve(std::io::Error::other(join))),
        }
    }
}

/// Binds `options.host:options.port`, builds the [`App`] with `store` and the real
/// management client pointed at this gateway's own `@connections` endpoint, and
/// serves until [`RunningGateway::shutdown`].
pub async fn serve(
    options: GatewayOptions,
    store: Arc<dyn Store>,
    table: String,
    sdk: &SdkConfig,
) -> Result<RunningGateway, LocalError> {
    if !valid_stage(&options.stage) {
        return Err(LocalError::InvalidStage(options.stage));
    }
    let addr = format!("{}:{}", options.host, options.port);
    let listener = TcpListener::bind(&addr)
        .await
        .map_err(|source| LocalError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| LocalError::Bind { addr, source })?;
    let management_endpoint = format!("http://{local_addr}/{}", options.stage);
    // The in-process functions call this gateway's endpoints like any client, so
    // they sign with the credentials it checks.
    let signing = options.management_credentials.as_ref().map(|c| {
        sdk.to_builder()
            .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
                aws_sdk_dynamodb::config::Credentials::new(
                    c.access_key_id.clone(),
                    c.secret_access_key().to_owned(),
                    None,
                    None,
                    "roomcast-dev-management",
                ),
            ))
            .build()
    });
    let sdk = signing.as_ref().unwrap_or(sdk);
    let mut config = Config::new(table.clone());
    config.management_endpoint = Some(management_endpoint.clone());
    config.policies = options.policies.clone().unwrap_or_else(Policies::open);
    let in_process = (!options.management_http).then(|| {
        Arc::new(inprocess::InProcessManagement::new(
            management_endpoint.clone(),
            ApiGatewayManagement::new(sdk),
        ))
    });
    let management: Arc<dyn roomcast_core::management::Management> = match &in_process {
        Some(adapter) => adapter.clone(),
        None => Arc::new(ApiGatewayManagement::new(sdk)),
    };
    let app = Arc::new(
        App::new(config, Arc::clone(&store), Arc::clone(&management))
            .with_metrics(Arc::clone(&options.metrics)),
    );
    let gateway = match &options.sam {
        None => Gateway::new(options, app, local_addr)?,
        Some(sam) => {
            let shared = routes::Shared {
                store,
                management,
                table: &table,
                management_endpoint: &management_endpoint,
                integration_timeout: options.integration_timeout,
                sdk,
                metrics: Arc::clone(&options.metrics),
            };
            let (routes, authorizer, diagnostics) =
                routes::from_template(sam, &shared).map_err(LocalError::Function)?;
            for d in &diagnostics {
                tracing::warn!(logical_id = %d.logical_id, "{}", d.message);
            }
            Gateway::with_routes(options, app, local_addr, routes, authorizer)?
        }
    };
    if let Some(adapter) = &in_process {
        adapter.attach(&gateway);
    }
    let routes = router(gateway.clone());
    let (stop, mut stopped) = watch::channel(false);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            routes.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
    });
    Ok(RunningGateway {
        gateway,
        stop,
        server,
    })
}
