//! The HTTP server: [`router`] puts the WebSocket endpoint and the HTTP APIs on
//! one port, [`serve`] binds it, builds the handlers' [`App`] and starts serving,
//! and [`RunningGateway`] stops it.

use std::net::SocketAddr;
use std::sync::Arc;

use aws_config::SdkConfig;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use roomcast_core::App;
use roomcast_core::config::Config;
use roomcast_core::management::Management;
use roomcast_core::management::apigw::ApiGatewayManagement;
use roomcast_core::policy::Policies;
use roomcast_core::store::Store;
use roomcast_core::workers::Dispatch;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::aws::AwsError;
use crate::connections::inprocess::InProcessManagement;
use crate::error::LocalError;
use crate::fanout_queue::FanoutQueue;
use crate::gateway::{Gateway, GatewayOptions};
use crate::http::{self, static_files};
use crate::{listen, queue, routes, simulated, websocket};

fn valid_stage(stage: &str) -> bool {
    !stage.is_empty()
        && stage.len() <= 128
        && stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// The gateway's HTTP routes: the WebSocket endpoint at `/{stage}` and `/`,
/// `@connections` under both, the Lambda Invoke API, and the SQS API on `POST /`
/// (all three, and `GET /metrics`, behind `http::guard::check`). Anything else is 403, which is what API
/// Gateway answers for a path it does not serve; with `static_dir`, plain GETs of
/// its files are answered first.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the
/// handshake reads the peer address for `identity.sourceIp`.
pub fn router(gateway: Gateway) -> Router {
    let stage = format!("/{}", gateway.options().stage);
    let connections = axum::routing::post(http::connections::post)
        .get(http::connections::get)
        .delete(http::connections::delete);
    let management = Router::new()
        .route(&format!("{stage}/@connections/{{id}}"), connections.clone())
        .route("/@connections/{id}", connections)
        .route(
            "/2015-03-31/functions/{name}/invocations",
            post(http::invoke::invoke),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gateway.clone(),
            http::guard::check,
        ))
        .layer(DefaultBodyLimit::disable());
    let router = http::metrics::route(Router::new(), &stage, &gateway)
        .route(
            "/",
            get(websocket::handshake::websocket)
                .post(http::queue::post)
                .route_layer(axum::middleware::from_fn_with_state(
                    gateway.clone(),
                    http::guard::check,
                ))
                .layer(DefaultBodyLimit::disable()),
        )
        .route(&stage, get(websocket::handshake::websocket))
        .merge(http::simulated::route(&gateway))
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

/// API Gateway's 403 for a path it does not serve, marked so that `--static`
/// answers 404 to a read of a missing file instead.
async fn forbidden() -> Response {
    let mut response = AwsError::forbidden().into_response();
    response.extensions_mut().insert(static_files::NotServed);
    response
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
        http::queue::queue_url(&self.gateway, queue::QueueKind::Broadcast)
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
/// management client pointed at this gateway's own `@connections` endpoint, writes
/// the simulated members (`GatewayOptions::simulated_members`) to `store`, and
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
    let (listener, local_addr) = bind(&options).await?;
    let management_endpoint = format!("http://{local_addr}/{}", options.stage);
    let signing = signing_sdk(&options, sdk);
    let sdk = signing.as_ref().unwrap_or(sdk);
    let in_process = (!options.management_http).then(|| {
        Arc::new(InProcessManagement::new(
            management_endpoint.clone(),
            ApiGatewayManagement::new(sdk),
        ))
    });
    let management: Arc<dyn Management> = match &in_process {
        Some(adapter) => adapter.clone(),
        None => Arc::new(ApiGatewayManagement::new(sdk)),
    };
    let mut config = Config::new(table.clone());
    config.management_endpoint = Some(management_endpoint.clone());
    config.policies = options.policies.clone().unwrap_or_else(Policies::open);
    // The workers' budget: the quota `roomcast dev` enforces, or API Gateway's default.
    config.management_rps = if options.management_rps >= 1.0 {
        options.management_rps as usize
    } else {
        roomcast_core::config::DEFAULT_MANAGEMENT_RPS
    };
    config.fanout_workers = options.fanout_workers;
    let fanout_queue = FanoutQueue::new(options.fanout_workers);
    let dispatch: Arc<dyn Dispatch> = Arc::new(fanout_queue.clone());
    let app = Arc::new(
        App::new(config, Arc::clone(&store), Arc::clone(&management))
            .with_metrics(Arc::clone(&options.metrics))
            .with_dispatch(Arc::clone(&dispatch)),
    );
    fanout_queue.attach(&app);
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
                dispatch,
            };
            let (routes, authorizer) = template_routes(sam, &shared)?;
            Gateway::with_routes(options, app, local_addr, routes, authorizer)?
        }
    };
    if let Some(adapter) = &in_process {
        adapter.attach(&gateway);
    }
    let ttl = gateway.app().config.item_ttl;
    simulated::register::register(
        gateway.app().store.as_ref(),
        &gateway.app().config.policies,
        gateway.simulated(),
        ttl,
    )
    .await
    .map_err(LocalError::Simulated)?;
    Ok(start(gateway, listener))
}

/// The listener on `options.host:options.port`, and the address it got.
async fn bind(options: &GatewayOptions) -> Result<(TcpListener, SocketAddr), LocalError> {
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
    Ok((listener, local_addr))
}

/// The in-process functions call this gateway's endpoints like any client, so
/// with management credentials they sign with the ones it checks.
fn signing_sdk(options: &GatewayOptions, sdk: &SdkConfig) -> Option<SdkConfig> {
    options.management_credentials.as_ref().map(|c| {
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
    })
}

/// The template's routes and authorizer; what could not be mapped is logged.
fn template_routes(
    sam: &routes::SamOptions,
    shared: &routes::Shared<'_>,
) -> Result<(routes::RouteTable, Option<routes::AuthorizerTarget>), LocalError> {
    let (routes, authorizer, diagnostics) =
        routes::from_template(sam, shared).map_err(LocalError::Function)?;
    for d in &diagnostics {
        tracing::warn!(logical_id = %d.logical_id, "{}", d.message);
    }
    Ok((routes, authorizer))
}

/// Serves `gateway`'s routes on `listener` in the background.
fn start(gateway: Gateway, listener: TcpListener) -> RunningGateway {
    let routes = router(gateway.clone());
    let (stop, stopped) = watch::channel(false);
    let limits = listen::Limits {
        header_read_timeout: gateway.options().header_read_timeout,
        per_address: gateway.options().max_connections_per_address,
    };
    let server = tokio::spawn(listen::serve(listener, routes, limits, stopped));
    RunningGateway {
        gateway,
        stop,
        server,
    }
}
