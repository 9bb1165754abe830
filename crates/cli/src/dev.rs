//! `roomcast dev`: runs the local API Gateway WebSocket emulator (crates/local) until
//! Ctrl-C, with roomcast's built-in routes and the auth flags, or with a SAM
//! template's routes and functions (in-process or behind an Invoke endpoint).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use roomcast_core::auth::origin::Origins;
use roomcast_core::auth::{AuthConfig, Authorizer};
use roomcast_core::metrics::Metrics;
use roomcast_core::policy::Policies;
use roomcast_local::simulated::SimulatedRoom;
use roomcast_local::{
    Backend, FaultKind, Faults, FunctionMode, GatewayOptions, ManagementCredentials,
    RunningGateway, SamOptions,
};

use crate::env::sam_environment;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 3001)]
    port: u16,
    /// Stage name: the WebSocket URL's path and the @connections base path.
    #[arg(long, default_value = "local")]
    stage: String,
    /// Use DynamoDB (or dynalite) at this endpoint instead of the in-memory store.
    #[arg(long, value_name = "URL", requires = "table")]
    dynamodb_endpoint: Option<String>,
    /// The DynamoDB table; created (with its index) if missing.
    #[arg(long, value_name = "NAME", requires = "dynamodb_endpoint")]
    table: Option<String>,
    /// Close connections idle for this many seconds (API Gateway: 600).
    #[arg(long, value_name = "SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout_secs: u64,
    /// Close connections open for this many seconds (API Gateway: 7200).
    #[arg(long, value_name = "SECS", default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..))]
    max_connection_secs: u64,
    /// Close (1008) a connection whose socket write takes longer: a client that stopped reading.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_secs: u64,
    /// Close (1008) a connection with more bytes queued and unsent; its later posts get 410.
    #[arg(long, value_name = "BYTES", default_value_t = roomcast_local::MAX_OUTBOUND_BYTES)]
    max_outbound_bytes: usize,
    /// Region for the SDK clients and ARNs.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Answer this share (0 to 1) of @connections POSTs with an injected fault.
    #[arg(long, value_name = "RATE", default_value_t = 0.0)]
    fault_rate: f64,
    /// The injected faults, chosen uniformly: 410 (also closes the connection), 429, 500.
    #[arg(
        long,
        value_name = "CODES",
        value_delimiter = ',',
        default_value = "410,429,500"
    )]
    fault_kinds: Vec<FaultKind>,
    /// Seed of the fault injector's RNG, for repeatable runs.
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    fault_seed: u64,
    /// Delay every @connections answer by this many milliseconds, as a call to
    /// API Gateway in a region takes (about 10-30 ms) and loopback does not.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    management_latency_ms: u64,
    /// Throttle @connections calls (POST, GET, DELETE) to this many per second
    /// (a fraction allowed), with a burst of half that, as API Gateway's
    /// account-level quota does (429 past it); 0: no quota.
    #[arg(long, value_name = "N", default_value_t = 0.0, value_parser = non_negative)]
    management_rps: f64,
    /// The quota's burst: the calls its bucket holds (default: half of --management-rps).
    #[arg(long, value_name = "N", requires = "management_rps", value_parser = clap::value_parser!(u32).range(1..))]
    management_burst: Option<u32>,
    /// Big rooms' fan-out jobs run at once, as the template's FanoutWorkers; each
    /// is paced to --management-rps (or 10,000) divided by this or by the room's
    /// shards, whichever is fewer.
    #[arg(long, value_name = "N", default_value_t = roomcast_core::config::DEFAULT_FANOUT_WORKERS as u16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    fanout_workers: u16,
    /// Register N simulated members of ROOM at start-up: store records and a
    /// counter each, no socket; @connections posts to them are counted and
    /// dropped (GET /@simulated, /metrics). Repeatable.
    #[arg(long, value_name = "ROOM=N", value_parser = parse_simulated)]
    simulated_members: Vec<SimulatedRoom>,
    /// Handlers running in-process post to the @connections endpoint over HTTP
    /// (the real adapter) instead of straight to the connections.
    #[arg(long)]
    management_http: bool,
    /// HS256 secret (at least 32 bytes) that tokens are signed with. Prefer the
    /// environment variable: command lines are visible to other local users.
    #[arg(
        long,
        env = "ROOMCAST_JWT_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    jwt_secret: Option<String>,
    /// JWKS URL for RS256/ES256 tokens.
    #[arg(long, env = "ROOMCAST_JWKS_URL", value_name = "URL")]
    jwks_url: Option<String>,
    /// Required token issuer (`iss`); needed with --jwt-secret or --jwks-url.
    #[arg(long, env = "ROOMCAST_JWT_ISSUER", value_name = "ISS")]
    jwt_issuer: Option<String>,
    /// Required token audience (`aud`); needed with --jwt-secret or --jwks-url.
    #[arg(long, env = "ROOMCAST_JWT_AUDIENCE", value_name = "AUD")]
    jwt_audience: Option<String>,
    /// Clock skew allowed on exp and nbf, in seconds (default 30).
    #[arg(long, env = "ROOMCAST_JWT_LEEWAY_SECS", value_name = "SECS")]
    jwt_leeway_secs: Option<u64>,
    /// Let clients without a token connect anonymously. Always on when neither
    /// --jwt-secret nor --jwks-url is given.
    #[arg(long, env = "ROOMCAST_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,
    /// Namespace policies: a JSON document, or the path of a file holding one
    /// (docs/auth.md). Default: anyone may join and send everywhere.
    #[arg(long, env = "ROOMCAST_POLICIES", value_name = "JSON|PATH")]
    policies: Option<String>,
    /// Serve the WebSocket API of this SAM template (its routes, route responses,
    /// authorizer and functions) instead of the built-in routes. The auth and policy
    /// flags are then ignored: the template's functions and their environment decide.
    #[arg(long, value_name = "PATH")]
    template: Option<String>,
    /// Invoke the template's functions through this Lambda Invoke endpoint
    /// (`cargo lambda watch`, `sam local start-lambda`, or Lambda) instead of
    /// running them in-process.
    #[arg(long, value_name = "URL", requires = "template")]
    invoke_endpoint: Option<String>,
    /// How functions are named on the Invoke endpoint.
    #[arg(
        long,
        value_enum,
        default_value = "logical-id",
        requires = "invoke_endpoint"
    )]
    function_names: FunctionNames,
    /// Invoke this template function under another name (repeatable), e.g.
    /// MessageFunction=my-stack-MessageFunction-AbC123.
    #[arg(long = "function-name", value_name = "LOGICAL=NAME", value_parser = parse_pair, requires = "invoke_endpoint")]
    function_name: Vec<(String, String)>,
    /// Environment overrides for the template's functions, in the `sam local
    /// --env-vars` JSON format (used by in-process functions; pass the same file
    /// to `sam local start-lambda --env-vars`, or `roomcast env` to cargo lambda).
    #[arg(long, value_name = "PATH", requires = "template")]
    env_file: Option<String>,
    /// Serve this directory's files to plain GET requests (`/` is index.html).
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<std::path::PathBuf>,
    /// The broadcast queue's visibility timeout: how long a failed message waits
    /// before it is retried (template.yaml: 720).
    #[arg(long, value_name = "SECS", default_value_t = 720)]
    queue_visibility_timeout_secs: u64,
    /// Print a summary line (connections, frames/s, deliveries/s, p99 fan-out)
    /// every few seconds; `GET /metrics` serves the counters either way.
    #[arg(long)]
    stats: bool,
    /// Origins allowed to open connections, comma-separated exact origins
    /// (https://app.example.com), or `*` alone for any. A handshake from another
    /// origin is refused with 403 before its token is read. Default: not checked.
    #[arg(long, env = "ROOMCAST_ALLOWED_ORIGINS", value_name = "ORIGINS")]
    allowed_origins: Option<String>,
    /// Refuse handshakes without an Origin header too (servers and CLIs send none).
    #[arg(long, env = "ROOMCAST_REQUIRE_ORIGIN")]
    require_origin: bool,
    /// Access key id that @connections and Invoke calls must be signed with when
    /// listening on a non-loopback address.
    #[arg(
        long,
        env = "ROOMCAST_MANAGEMENT_ACCESS_KEY_ID",
        value_name = "ID",
        requires = "management_secret_access_key"
    )]
    management_access_key_id: Option<String>,
    /// Its secret. Prefer the environment variable: command lines are visible to
    /// other local users.
    #[arg(
        long,
        env = "ROOMCAST_MANAGEMENT_SECRET_ACCESS_KEY",
        value_name = "SECRET",
        hide_env_values = true,
        requires = "management_access_key_id"
    )]
    management_secret_access_key: Option<Redacted>,
    /// Accept unsigned @connections and Invoke calls on a non-loopback address.
    #[arg(long)]
    insecure_management: bool,
    /// Close a connection that takes longer than this to send a request's headers.
    #[arg(
        long,
        default_value_t = roomcast_local::HEADER_READ_TIMEOUT.as_secs(),
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    header_read_timeout_secs: u64,
    /// Answer 408 to a management request whose body takes longer than this.
    #[arg(
        long,
        default_value_t = roomcast_local::BODY_READ_TIMEOUT.as_secs(),
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    body_read_timeout_secs: u64,
    /// Most sockets one non-loopback address may hold open at once (0: no cap).
    #[arg(long, default_value_t = roomcast_local::MAX_CONNECTIONS_PER_ADDRESS, value_name = "N")]
    max_connections_per_address: usize,
    /// Log no line per connection (connected, disconnected, handshake refused).
    #[arg(long, short)]
    quiet: bool,
}

/// A secret from the command line: its `Debug` output is redacted, so printing
/// the arguments cannot leak it.
#[derive(Clone, PartialEq, Eq)]
struct Redacted(String);

impl std::str::FromStr for Redacted {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Dependencies whose TRACE and DEBUG output carries frame payloads, request
/// bodies or headers (tokens, signatures): capped whatever RUST_LOG says.
const PAYLOAD_LOGGERS: [&str; 6] = [
    "tungstenite=info",
    "tokio_tungstenite=info",
    "hyper=info",
    "hyper_util=info",
    "aws_smithy_runtime=info",
    "aws_sigv4=info",
];

/// The log filter of `roomcast dev`: RUST_LOG, or by default INFO with the
/// in-process functions' own lines (which repeat the gateway's) at WARN; the
/// per-connection lines off with `--quiet`; payload-logging dependencies capped.
pub fn log_filter(args: &DevArgs, rust_log: Option<&str>) -> String {
    let mut directives = vec![
        rust_log
            .filter(|f| !f.trim().is_empty())
            .unwrap_or("info,roomcast_core=warn,aws_config=warn")
            .to_owned(),
    ];
    directives.extend(PAYLOAD_LOGGERS.iter().map(|d| (*d).to_owned()));
    if args.quiet {
        directives.push(format!("{}=warn", roomcast_local::CONNECTION_LOG));
    }
    directives.join(",")
}

/// The origin allowlist from the flags (and their environment variables).
/// Whether the log may carry ANSI colour codes: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
pub fn use_ansi(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn origins(args: &DevArgs) -> anyhow::Result<Origins> {
    use roomcast_core::names::env;
    Origins::from_lookup(|name| match name {
        env::ALLOWED_ORIGINS => args.allowed_origins.clone(),
        env::REQUIRE_ORIGIN => Some(args.require_origin.to_string()),
        _ => None,
    })
    .context("--allowed-origins")
}

fn origins_banner(origins: &Origins) -> String {
    let without = if origins.require {
        "refused"
    } else {
        "allowed"
    };
    match &origins.allowed {
        None if !origins.require => "  origins: WARNING: NOT CHECKED: any web page may open \
             connections (set --allowed-origins)"
            .to_owned(),
        None => format!("  origins: any; handshakes without Origin {without}"),
        Some(list) => format!(
            "  origins: {}; others refused (403), handshakes without Origin {without}",
            list.join(", ")
        ),
    }
}

/// How template functions are named on the Invoke endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FunctionNames {
    /// The template's logical ids (`sam local start-lambda`).
    LogicalId,
    /// The `Metadata.BuildProperties.Binary` names (`cargo lambda watch`).
    Binary,
}

/// `--management-rps`: a finite number of at least 0.
fn non_negative(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err("expected a number of at least 0".to_owned()),
    }
}

/// `--simulated-members ROOM=N`: a valid room name and 1 to [`MAX_SIMULATED`].
fn parse_simulated(text: &str) -> Result<SimulatedRoom, String> {
    let (room, n) = text.rsplit_once('=').ok_or("expected ROOM=N")?;
    roomcast_core::protocol::validate_room(room).map_err(|e| e.to_string())?;
    match n.parse::<usize>() {
        Ok(members) if (1..=MAX_SIMULATED).contains(&members) => Ok(SimulatedRoom {
            room: room.to_owned(),
            members,
        }),
        _ => Err(format!("N must be 1 to {MAX_SIMULATED}")),
    }
}

/// The most simulated members in all: about 1 KB each with the in-memory store.
const MAX_SIMULATED: usize = 5_000_000;
/// The most simulated members written to DynamoDB: two single-item writes each
/// (64 in flight), not batched.
const MAX_SIMULATED_DYNAMODB: usize = 20_000;

/// The simulated members fit the store: [`MAX_SIMULATED`] in all, and
/// [`MAX_SIMULATED_DYNAMODB`] with DynamoDB.
fn check_simulated(rooms: &[SimulatedRoom], backend: &Backend) -> anyhow::Result<()> {
    let total: usize = rooms.iter().map(|r| r.members).sum();
    if total > MAX_SIMULATED {
        bail!("--simulated-members: {total} in all, more than {MAX_SIMULATED}");
    }
    if matches!(backend, Backend::Dynamo { .. }) && total > MAX_SIMULATED_DYNAMODB {
        bail!(
            "--simulated-members: {total} in all, more than the {MAX_SIMULATED_DYNAMODB} written \
             to DynamoDB (two writes each); use the in-memory store for bigger rooms"
        );
    }
    Ok(())
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err("expected LOGICAL=NAME".to_owned()),
    }
}

/// The authorizer and policies for `roomcast dev`, and the lines describing them.
struct DevAuth {
    authorizer: std::sync::Arc<Authorizer>,
    policies: Option<Policies>,
    banner: Vec<String>,
}

fn dev_auth(args: &DevArgs, metrics: &Arc<Metrics>) -> anyhow::Result<DevAuth> {
    use roomcast_core::names::env;
    let lookup = |name: &str| match name {
        env::JWT_SECRET => args.jwt_secret.clone(),
        env::JWKS_URL => args.jwks_url.clone(),
        env::JWT_ISSUER => args.jwt_issuer.clone(),
        env::JWT_AUDIENCE => args.jwt_audience.clone(),
        env::JWT_LEEWAY_SECS => args.jwt_leeway_secs.map(|s| s.to_string()),
        env::ALLOW_ANONYMOUS => Some(args.allow_anonymous.to_string()),
        env::ALLOWED_ORIGINS => args.allowed_origins.clone(),
        env::REQUIRE_ORIGIN => Some(args.require_origin.to_string()),
        _ => None,
    };
    let mut config = AuthConfig::from_lookup(lookup)
        .context("auth flags (--jwt-secret, --jwks-url, --jwt-issuer, --jwt-audience)")?;
    let mut banner = Vec::new();
    match &config.jwt {
        None => {
            // No key: nothing could verify a token, so dev stays usable anonymously.
            config.allow_anonymous = true;
            banner.push(
                "  auth: WARNING: NO AUTHENTICATION: no --jwt-secret or --jwks-url, so every \
                 client connects ANONYMOUSLY (tokens are refused)"
                    .to_owned(),
            );
        }
        Some(jwt) => {
            let keys = match (&jwt.secret, &jwt.jwks_url) {
                (Some(_), Some(url)) => format!("HS256 secret and JWKS {url}"),
                (Some(_), None) => "HS256 secret".to_owned(),
                (None, Some(url)) => format!("JWKS {url}"),
                (None, None) => String::new(),
            };
            banner.push(format!(
                "  auth: JWT ({keys}), iss {}, aud {}; anonymous connections {}",
                jwt.issuer,
                jwt.audience,
                if config.allow_anonymous {
                    "ALLOWED"
                } else {
                    "refused"
                }
            ));
        }
    }
    let policies = args
        .policies
        .as_deref()
        .map(roomcast_core::config::policies)
        .transpose()
        .context("--policies")?;
    banner.push(match &policies {
        None => "  policies: WARNING: OPEN: anyone may join and send in every namespace \
                 (set --policies; deployed stacks default to signed-in users only)"
            .to_owned(),
        Some(p) => format!(
            "  policies: {} namespace(s) configured, others follow the default",
            p.namespaces.len()
        ),
    });
    Ok(DevAuth {
        authorizer: Arc::new(Authorizer::new(config).with_metrics(Arc::clone(metrics))),
        policies,
        banner,
    })
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let faults = faults(&args)?;
    let metrics = Arc::<Metrics>::default();
    // With a template its functions and their environment decide auth: the auth
    // flags (and their environment variables) are not read, so a stray
    // ROOMCAST_POLICIES in the shell cannot break `--template`.
    let auth = match args.template {
        None => Some(dev_auth(&args, &metrics)?),
        Some(_) => None,
    };
    let origins = origins(&args)?;
    let (sam, sam_banner) = match &args.template {
        None => (None, Vec::new()),
        Some(path) => {
            let (sam, banner) = sam_options(&args, path)?;
            (Some(sam), banner)
        }
    };
    let mut options = gateway_options(&args, sam, auth.as_ref(), metrics, &origins)?;
    options.faults = faults;
    let backend = match (args.dynamodb_endpoint, args.table) {
        (Some(endpoint), Some(table)) => Backend::Dynamo { endpoint, table },
        _ => Backend::Memory,
    };
    check_simulated(&options.simulated_members, &backend)?;
    let sdk = roomcast_local::local_sdk_config(&args.region).await;
    let (store, table) = roomcast_local::open_store(&backend, &sdk).await?;
    let running = roomcast_local::serve(options, store, table, &sdk).await?;
    print_banner(&running, &origins, &backend);
    match &auth {
        Some(auth) => auth.banner.iter().for_each(|line| println!("{line}")),
        None => {
            sam_banner.iter().for_each(|line| println!("{line}"));
            println!(
                "  routes: {}",
                running.gateway().routes().message_keys().join(" ")
            );
        }
    }
    println!(
        "  metrics:               http://{}/metrics",
        running.local_addr()
    );
    for r in &running.gateway().options().simulated_members {
        println!(
            "  simulated members:     {} in room {} (http://{}/@simulated)",
            r.members,
            r.room,
            running.local_addr()
        );
    }
    println!("Press Ctrl-C to stop.");
    let stats = args
        .stats
        .then(|| crate::stats::spawn(running.gateway().clone(), crate::stats::INTERVAL));
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    println!("roomcast dev: shutting down (closing connections, running $disconnect)");
    if let Some(stats) = stats {
        stats.abort();
    }
    running.shutdown().await?;
    Ok(())
}

/// `--fault-rate`, `--fault-kinds`, `--fault-seed`.
fn faults(args: &DevArgs) -> anyhow::Result<Option<Faults>> {
    (args.fault_rate > 0.0)
        .then(|| Faults::new(args.fault_rate, args.fault_kinds.clone(), args.fault_seed))
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--fault-rate/--fault-kinds")
}

/// The gateway's options from the flags (fault injection aside).
fn gateway_options(
    args: &DevArgs,
    sam: Option<SamOptions>,
    auth: Option<&DevAuth>,
    metrics: Arc<Metrics>,
    origins: &Origins,
) -> anyhow::Result<GatewayOptions> {
    let management_credentials = args
        .management_access_key_id
        .clone()
        .zip(args.management_secret_access_key.clone())
        .map(|(id, secret)| ManagementCredentials::new(id, secret.0));
    Ok(GatewayOptions {
        sam,
        management_latency: Duration::from_millis(args.management_latency_ms),
        management_rps: args.management_rps,
        management_burst: args.management_burst,
        fanout_workers: usize::from(args.fanout_workers),
        simulated_members: args.simulated_members.clone(),
        management_http: args.management_http,
        authorizer: auth.map(|a| std::sync::Arc::clone(&a.authorizer)),
        policies: auth.and_then(|a| a.policies.clone()),
        host: args.host.clone(),
        port: args.port,
        stage: args.stage.clone(),
        region: args.region.clone(),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs),
        max_connection_duration: Duration::from_secs(args.max_connection_secs),
        write_timeout: Duration::from_secs(args.write_timeout_secs),
        max_outbound_bytes: args.max_outbound_bytes,
        queue: roomcast_local::queue::QueueOptions {
            visibility_timeout: Duration::from_secs(args.queue_visibility_timeout_secs),
            ..Default::default()
        },
        static_dir: (args.static_dir.as_deref())
            .map(roomcast_local::StaticDir::new)
            .transpose()
            .context("--static")?,
        metrics,
        origins: origins.clone(),
        management_credentials,
        insecure_management: args.insecure_management,
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
        max_connections_per_address: args.max_connections_per_address,
        ..GatewayOptions::default()
    })
}

/// `--template`: the template, its functions' environments and how they run, and
/// the banner lines that say so.
fn sam_options(args: &DevArgs, path: &str) -> anyhow::Result<(SamOptions, Vec<String>)> {
    let (template, environment, diagnostics) =
        sam_environment(path, args.env_file.as_deref(), &args.region)?;
    let mode = match &args.invoke_endpoint {
        None => FunctionMode::InProcess,
        Some(endpoint) => {
            let mut names = match args.function_names {
                FunctionNames::Binary => template.binary_names(),
                FunctionNames::LogicalId => BTreeMap::new(),
            };
            names.extend(args.function_name.iter().cloned());
            FunctionMode::Remote {
                endpoint: endpoint.trim_end_matches('/').to_owned(),
                names,
            }
        }
    };
    let mut banner = vec![format!(
        "  template: {path} ({}, routes selected by $request.body.{})",
        template.api_logical_id,
        template.selection.path.join(".")
    )];
    banner.push(match &mode {
        FunctionMode::InProcess => {
            "  functions: in-process (store and @connections are this gateway's)".to_owned()
        }
        FunctionMode::Remote { endpoint, .. } => {
            format!("  functions: invoked at {endpoint}/2015-03-31/functions/NAME/invocations")
        }
    });
    for d in &diagnostics {
        banner.push(format!("  template: WARNING: {d}"));
    }
    let sam = SamOptions {
        template: std::sync::Arc::new(template),
        environment,
        mode,
    };
    Ok((sam, banner))
}

/// The start-up banner's endpoints, origins, management guard and store.
fn print_banner(running: &RunningGateway, origins: &Origins, backend: &Backend) {
    println!("roomcast dev: listening on {}", running.local_addr());
    println!("  WebSocket URL:         {}", running.websocket_url());
    println!("  @connections endpoint: {}", running.management_endpoint());
    println!("  Lambda endpoint:       {}", running.lambda_endpoint());
    println!("  SQS queue URL:         {}", running.queue_url());
    if let Some(dir) = &running.gateway().options().static_dir {
        let root = dir.root().display();
        println!(
            "  static files:          {root} at http://{}/",
            running.local_addr()
        );
    }
    println!("{}", origins_banner(origins));
    println!(
        "{}",
        match running.gateway().management_check() {
            Some(credentials) => format!(
                "  management: @connections and Invoke calls must be SigV4-signed with access key id {}",
                credentials.access_key_id
            ),
            None if running.local_addr().ip().is_loopback() => {
                "  management: loopback only; signatures not checked; requests from web pages refused"
                    .to_owned()
            }
            None => "  management: WARNING: UNSIGNED calls accepted from anyone who can reach \
                     this address (--insecure-management)"
                .to_owned(),
        }
    );
    match backend {
        Backend::Memory => println!("  store: in memory"),
        Backend::Dynamo { endpoint, table } => {
            println!("  store: DynamoDB table {table} at {endpoint}")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Command};

    #[test]
    fn dev_defaults_and_store_flags() {
        let Command::Dev(args) = Cli::parse_from(["roomcast", "dev"]).command else {
            panic!("expected dev");
        };
        assert_eq!(
            (args.host.as_str(), args.port, args.stage.as_str()),
            ("127.0.0.1", 3001, "local")
        );
        assert_eq!(
            (args.idle_timeout_secs, args.max_connection_secs),
            (600, 7200)
        );
        assert!(args.dynamodb_endpoint.is_none());
        assert!(args.static_dir.is_none());
        assert_eq!(args.queue_visibility_timeout_secs, 720);
        // A table needs an endpoint and the other way round.
        assert!(Cli::try_parse_from(["roomcast", "dev", "--table", "t"]).is_err());
        assert!(Cli::try_parse_from(["roomcast", "dev", "--idle-timeout-secs", "0"]).is_err());
        let Command::Dev(args) = Cli::parse_from([
            "roomcast",
            "dev",
            "--dynamodb-endpoint",
            "http://127.0.0.1:4567",
            "--table",
            "t",
        ])
        .command
        else {
            panic!("expected dev");
        };
        assert_eq!(args.table.as_deref(), Some("t"));
    }

    #[test]
    fn dev_template_flags() {
        let Command::Dev(args) = Cli::parse_from([
            "roomcast",
            "dev",
            "--template",
            "template.yaml",
            "--env-file",
            "infra/env.local.json",
            "--invoke-endpoint",
            "http://127.0.0.1:9000",
            "--function-name",
            "ConnectFunction=connect",
            "--function-name",
            "MessageFunction=my-stack-message",
            "--management-latency-ms",
            "20",
            "--management-rps",
            "100",
        ])
        .command
        else {
            panic!("expected dev");
        };
        assert_eq!(args.template.as_deref(), Some("template.yaml"));
        assert_eq!(args.env_file.as_deref(), Some("infra/env.local.json"));
        assert_eq!(
            args.invoke_endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            args.function_name,
            [
                ("ConnectFunction".to_owned(), "connect".to_owned()),
                ("MessageFunction".to_owned(), "my-stack-message".to_owned())
            ]
        );
        assert_eq!(args.management_latency_ms, 20);
        assert_eq!(args.management_rps, 100.0);
        // The invoke endpoint and the env file only make sense with a template;
        // a name override only with an invoke endpoint; a pair needs its `=`.
        for bad in [
            &["roomcast", "dev", "--invoke-endpoint", "http://x"][..],
            &["roomcast", "dev", "--env-file", "e.json"],
            &[
                "roomcast",
                "dev",
                "--template",
                "t.yaml",
                "--function-name",
                "A=B",
            ],
            &[
                "roomcast",
                "dev",
                "--template",
                "t.yaml",
                "--invoke-endpoint",
                "http://x",
                "--function-name",
                "A",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn dev_fault_flags() {
        let Command::Dev(args) = Cli::parse_from([
            "roomcast",
            "dev",
            "--fault-rate",
            "0.2",
            "--fault-kinds",
            "429,500",
        ])
        .command
        else {
            panic!("expected dev");
        };
        assert_eq!(
            args.fault_kinds,
            [FaultKind::Throttled, FaultKind::ServerError]
        );
        assert!(Cli::try_parse_from(["roomcast", "dev", "--fault-kinds", "418"]).is_err());
    }

    #[test]
    fn dev_simulated_members_and_quota_flags() {
        let args = dev_args(&[
            "--simulated-members",
            "big=1000000",
            "--simulated-members",
            "ns:r=5",
            "--management-rps",
            "0.5",
            "--management-burst",
            "3",
        ]);
        let rooms: Vec<_> = args
            .simulated_members
            .iter()
            .map(|r| (r.room.as_str(), r.members))
            .collect();
        assert_eq!(rooms, [("big", 1_000_000), ("ns:r", 5)]);
        assert_eq!((args.management_rps, args.management_burst), (0.5, Some(3)));
        for bad in [
            &["--simulated-members", "big"][..],
            &["--simulated-members", "big=0"],
            &["--simulated-members", "no spaces=5"],
            &["--simulated-members", "big=5000001"],
            &["--management-rps", "-1"],
            &["--management-burst", "5"],
        ] {
            let argv = ["roomcast", "dev"].iter().chain(bad).copied();
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        let dynamo = Backend::Dynamo {
            endpoint: "http://127.0.0.1:8000".into(),
            table: "t".into(),
        };
        let room = |members| SimulatedRoom {
            room: "big".into(),
            members,
        };
        assert!(check_simulated(&[room(MAX_SIMULATED_DYNAMODB)], &dynamo).is_ok());
        let refused = check_simulated(&[room(MAX_SIMULATED_DYNAMODB), room(1)], &dynamo);
        assert!(refused.unwrap_err().to_string().contains("in-memory store"));
        assert!(check_simulated(&[room(1_000_000)], &Backend::Memory).is_ok());
        assert!(check_simulated(&[room(MAX_SIMULATED), room(1)], &Backend::Memory).is_err());
    }

    fn dev_args(flags: &[&str]) -> DevArgs {
        let argv = ["roomcast", "dev"].iter().chain(flags).copied();
        match Cli::parse_from(argv).command {
            Command::Dev(args) => *args,
            _ => unreachable!("dev parses as dev"),
        }
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_ansi(true, None));
        assert!(use_ansi(true, Some("".as_ref())));
        assert!(!use_ansi(false, None), "a file or a pipe gets plain text");
        assert!(!use_ansi(true, Some("1".as_ref())));
    }

    #[test]
    fn dev_origin_management_and_log_flags() {
        let mut args = dev_args(&[
            "--allowed-origins",
            "https://a.test,http://localhost:5173",
            "--require-origin",
            "--management-access-key-id",
            "AKIDDEV",
            "--management-secret-access-key",
            "dev-secret-value",
            "--quiet",
            "--header-read-timeout-secs",
            "3",
            "--max-connections-per-address",
            "0",
        ]);
        let options =
            gateway_options(&args, None, None, Arc::default(), &Origins::default()).unwrap();
        assert_eq!(options.header_read_timeout, Duration::from_secs(3));
        assert_eq!(options.body_read_timeout, roomcast_local::BODY_READ_TIMEOUT);
        assert_eq!(options.max_connections_per_address, 0);
        let parsed = origins(&args).unwrap();
        assert_eq!(parsed.allowed.as_ref().map(Vec::len), Some(2));
        assert!(parsed.require);
        assert!(origins_banner(&parsed).contains("without Origin refused"));
        assert!(!format!("{args:?}").contains("dev-secret-value"));
        assert!(log_filter(&args, None).ends_with("roomcast::connection=warn"));
        assert!(log_filter(&args, Some("trace")).starts_with("trace,"));
        args.allowed_origins = Some("*,https://a.test".into());
        let err = format!("{:#}", origins(&args).unwrap_err());
        assert!(err.contains("ROOMCAST_ALLOWED_ORIGINS"), "{err}");
        args.allowed_origins = None;
        args.require_origin = false;
        assert!(origins_banner(&origins(&args).unwrap()).contains("NOT CHECKED"));
        // A zero timeout would close every connection at once.
        assert!(
            Cli::try_parse_from(["roomcast", "dev", "--header-read-timeout-secs", "0"]).is_err()
        );
        // An access key id needs its secret and the other way round.
        assert!(
            Cli::try_parse_from(["roomcast", "dev", "--management-access-key-id", "A"]).is_err()
        );
    }

    #[test]
    fn dev_auth_defaults_to_anonymous_and_checks_the_flags() {
        let secret = "0123456789abcdef0123456789abcdef";
        let mut no_keys = dev_args(&[]);
        // Whatever the environment says, this case has no key.
        (no_keys.jwt_secret, no_keys.jwks_url) = (None, None);
        let auth = dev_auth(&no_keys, &Arc::default()).unwrap();
        assert!(auth.authorizer.allows_anonymous());
        assert!(auth.policies.is_none());
        assert!(auth.banner.iter().any(|l| l.contains("ANONYMOUSLY")));
        let mut keyed = dev_args(&["--jwt-issuer", "i", "--jwt-audience", "a"]);
        keyed.jwt_secret = Some(secret.into());
        keyed.allow_anonymous = false;
        let auth = dev_auth(&keyed, &Arc::default()).unwrap();
        assert!(!auth.authorizer.allows_anonymous());
        assert!(auth.banner.iter().all(|l| !l.contains(secret)));
        let mut no_issuer = dev_args(&[]);
        no_issuer.jwt_secret = Some(secret.into());
        no_issuer.jwt_issuer = None;
        let err = format!("{:#}", dev_auth(&no_issuer, &Arc::default()).err().unwrap());
        assert!(err.contains("ROOMCAST_JWT_ISSUER"), "{err}");
        let mut bad_policies = dev_args(&["--policies", r#"{"namespaces":{"a:b":{}}}"#]);
        bad_policies.jwt_secret = None;
        let err = format!(
            "{:#}",
            dev_auth(&bad_policies, &Arc::default()).err().unwrap()
        );
        assert!(err.contains("ROOMCAST_POLICIES"), "{err}");
    }
}
