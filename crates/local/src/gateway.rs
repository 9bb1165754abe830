//! The gateway's shared state ([`Gateway`]): its options, the open connections,
//! the routes and functions it runs, the queues, and the shutdown signals every
//! connection task watches. Handed to every HTTP handler and connection task.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use roomcast_core::App;
use roomcast_core::auth::Authorizer;
use roomcast_core::auth::origin::Origins;
use roomcast_core::limits::{CONNECTION_CAP, GATEWAY_MAX_PAYLOAD};
use roomcast_core::metrics::Metrics;
use roomcast_core::policy::Policies;
use tokio::sync::watch;

use crate::connections::quota::Quota;
use crate::connections::registry::Registry;
use crate::error::LocalError;
use crate::faults::{self, FaultKind, Faults};
use crate::functions::registry::FunctionRegistry;
use crate::http::static_files;
use crate::queue;
use crate::routes::{self, SamOptions};
use crate::sigv4::ManagementCredentials;
use crate::simulated::{SimulatedRoom, Table};

pub use roomcast_core::limits::{GATEWAY_MAX_FRAME, IDLE_TIMEOUT, INTEGRATION_TIMEOUT};

/// The default [`GatewayOptions::write_timeout`] (`--write-timeout-secs`).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The default [`GatewayOptions::max_outbound_bytes`] (`--max-outbound-bytes`):
/// 8 MiB, twice the 4 MiB a `join`'s recovery replays at most, so a client that
/// reads at loopback speed is never cut off in the middle of a replay.
pub const MAX_OUTBOUND_BYTES: usize = 8 * 1024 * 1024;

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
    /// How long one write to a client's socket may take before the connection is
    /// closed (1008): a client that stops reading cannot hold its task.
    pub write_timeout: Duration,
    /// The bytes of frames queued for one client and not yet written; a post over
    /// it closes the connection (1008) and gets 410 (`connections::registry`).
    pub max_outbound_bytes: usize,
    /// Answer a share of `@connections` POSTs with injected faults (tests, demos).
    pub faults: Option<Faults>,
    /// Added to every `@connections` call before it is answered: a loopback call
    /// takes well under a millisecond, one to API Gateway in a region about
    /// 10–30 ms, and a fan-out's throughput depends on it (docs/performance.md).
    pub management_latency: Duration,
    /// How many big-room fan-out jobs run at once (the template's
    /// `FanoutWorkers`, the fan-out queue's `MaximumConcurrency`).
    pub fanout_workers: usize,
    /// The account-level `@connections` quota in calls per second (a fraction
    /// allowed), with a burst of [`GatewayOptions::management_burst`]
    /// (`connections::quota`); 0: no quota.
    pub management_rps: f64,
    /// The quota's burst: the calls its bucket holds; `None`: half the rate.
    pub management_burst: Option<u32>,
    /// Rooms with simulated members (`--simulated-members ROOM=N`, `simulated`).
    pub simulated_members: Vec<SimulatedRoom>,
    /// In-process handlers post through HTTP to the `@connections` endpoint, as
    /// functions elsewhere do, instead of in-process (`connections::inprocess`).
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
    /// How long a client may take to send a request's headers before its socket
    /// is closed.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a management request's body.
    pub body_read_timeout: Duration,
    /// Most sockets (HTTP and WebSocket) one non-loopback address may hold open at
    /// once; 0: no cap. Loopback clients are not counted.
    pub max_connections_per_address: usize,
}

/// [`GatewayOptions::header_read_timeout`]'s default.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// [`GatewayOptions::body_read_timeout`]'s default.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// [`GatewayOptions::max_connections_per_address`]'s default.
pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 1000;

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
            write_timeout: WRITE_TIMEOUT,
            max_outbound_bytes: MAX_OUTBOUND_BYTES,
            faults: None,
            management_latency: Duration::ZERO,
            fanout_workers: roomcast_core::config::DEFAULT_FANOUT_WORKERS,
            management_rps: 0.0,
            management_burst: None,
            simulated_members: Vec::new(),
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
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_read_timeout: BODY_READ_TIMEOUT,
            max_connections_per_address: MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
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
    quota: Option<Quota>,
    /// `@connections` calls (POST, GET, DELETE) received, and those refused by the quota.
    management_calls: AtomicU64,
    management_throttled: AtomicU64,
    simulated: Table,
    queues: Arc<queue::Queues>,
    /// The credentials management calls are checked against; `None`: not checked.
    management_check: Option<ManagementCredentials>,
    shutdown: watch::Sender<bool>,
    /// How many connection tasks (and their `$disconnect`s) are still running.
    tasks: watch::Sender<usize>,
}

/// A [`Gateway`] held weakly (by the handlers' `@connections` adapter, which the
/// gateway owns through its `App`).
#[derive(Clone, Default)]
pub(crate) struct WeakGateway(Weak<Inner>);

impl WeakGateway {
    /// The gateway, while it is still running.
    pub(crate) fn upgrade(&self) -> Option<Gateway> {
        self.0.upgrade().map(|inner| Gateway { inner })
    }
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
        let quota = Quota::new(
            options.management_rps,
            options.management_burst,
            Instant::now(),
        );
        let simulated = Table::new(&options.simulated_members);
        let queues = Arc::new(queue::Queues::new(options.queue.clone()));
        let management_check = management_check(&options, local_addr)?;
        let gateway = Self {
            inner: Arc::new(Inner {
                app,
                options,
                faults,
                quota,
                management_calls: AtomicU64::new(0),
                management_throttled: AtomicU64::new(0),
                simulated,
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
        let broadcast = inner.routes.broadcast_app().unwrap_or(&inner.app);
        inner
            .functions
            .register_builtins(&inner.app, broadcast, inner.options.integration_timeout);
        Ok(gateway)
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

    /// Whether the `@connections` quota admits one more call (always, without
    /// one); counts the call, and the refusal.
    pub(crate) fn admit_management_call(&self) -> bool {
        self.inner.management_calls.fetch_add(1, Ordering::Relaxed);
        let admitted = self.inner.quota.as_ref().is_none_or(Quota::admit);
        if !admitted {
            self.inner
                .management_throttled
                .fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// `@connections` calls received, and those the quota refused (429).
    pub fn management_calls(&self) -> (u64, u64) {
        (
            self.inner.management_calls.load(Ordering::Relaxed),
            self.inner.management_throttled.load(Ordering::Relaxed),
        )
    }

    /// The simulated room members (`--simulated-members`).
    pub fn simulated(&self) -> &Table {
        &self.inner.simulated
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

    /// A handle that does not keep the gateway alive.
    pub(crate) fn downgrade(&self) -> WeakGateway {
        WeakGateway(Arc::downgrade(&self.inner))
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
