//! `roomcast dev`: a local emulator of an API Gateway WebSocket API, running roomcast's
//! route handlers in-process, with the `@connections`, Lambda Invoke and SQS APIs on
//! the same port. docs/local.md lists what is emulated and how it differs from AWS.
//!
//! # Layout
//!
//! - `server`: [`serve`] binds, builds the handlers' `App`, starts everything and
//!   returns a [`RunningGateway`] (the CLI and the end-to-end tests both use it);
//!   [`router`] puts the WebSocket endpoint and the HTTP APIs on one port.
//! - `gateway`: [`Gateway`], the state every route and connection task shares, and
//!   [`GatewayOptions`], API Gateway's limits and the emulator's settings.
//! - `backend`: where connections and rooms are kept ([`Backend`], [`open_store`])
//!   and the AWS SDK configuration for local use.
//! - `websocket`: the WebSocket side: the handshake (origin, the `$connect`
//!   authorizer, `$connect`), one task per connection, and its message events and
//!   `$disconnect`.
//! - `connections`: the registry of open connections and their command queues,
//!   and the rules of `@connections` for them (post, delete, refusals, latency),
//!   with the in-process `@connections` adapter of the handlers it runs.
//! - `functions`: running a function the way Lambda does: one trait, Lambda's
//!   error kinds, one way to run with a timeout; the built-in, broadcast, remote
//!   and route functions, and the registry the Invoke API and the queue invoke.
//! - `http`: the HTTP APIs, each only translating: `@connections`, Lambda Invoke,
//!   the broadcast queue's SQS API, `GET /metrics`, static files, and the guard in
//!   front of the management ones (requests from web pages refused, body limits
//!   and deadlines, the SigV4 check off loopback).
//! - `fanout_queue`: big rooms' fan-out jobs and the workers running them,
//!   in-process (the template's FIFO `FanoutQueue` and its event source mapping).
//! - [`queue`]: the broadcast queue, its dead-letter queue and the event source
//!   mapping that feeds the broadcast function.
//! - `routes`: the routes served (built-in, or the template's) and what runs each.
//! - `selection`: the route selection expression (`$request.body.…`).
//! - [`template`]: reading a SAM template: [`template::model`] (one reader per
//!   resource kind), [`template::cfn`] (intrinsics, conditions, pseudo parameters),
//!   [`template::env`] (env files and the functions' resolved environments).
//! - `events`: building API Gateway events, ids and timestamps.
//! - `listen`: the accept loop: hyper's header-read timeout, a cap on the sockets
//!   one address holds, and the peer's and the socket's own address on each request.
//! - `sigv4`: verifying SigV4 signatures, and the management credentials.
//! - `faults`: optional fault injection for `@connections` POSTs.
//! - [`simulated`]: room members that are not sockets (`--simulated-members`),
//!   their table of counters and their records in the store.
//! - `aws`: the local account id and [`AwsError`], which renders every AWS-shaped
//!   error response (`@connections`, Lambda Invoke, refused handshakes).
//! - `error`: the library's error type.
//!
//! Imports run one way, from the top of this list down: `server` reads everything;
//! the HTTP APIs and the WebSocket side read `gateway`; `gateway` reads the
//! registries (connections, functions, routes, queue) and nothing that reads it.

mod aws;
mod backend;
mod connections;
mod error;
mod events;
mod fanout_queue;
mod faults;
mod functions;
mod gateway;
mod http;
mod listen;
pub mod queue;
mod routes;
mod selection;
mod server;
mod sigv4;
pub mod simulated;
pub mod template;
mod websocket;

pub use aws::{AwsError, LOCAL_ACCOUNT};
pub use backend::{Backend, MEMORY_TABLE, local_sdk_config, open_store};
pub use connections::registry::Registry;
pub use error::LocalError;
pub use faults::{FaultKind, Faults};
pub use functions::builtin::Integration;
pub use functions::function::{FunctionError, InvokeError, LambdaFunction};
pub use functions::registry::FunctionRegistry;
pub use functions::remote::{RemoteError, RemoteInvoker};
pub use gateway::{
    BODY_READ_TIMEOUT, GATEWAY_MAX_FRAME, Gateway, GatewayOptions, HEADER_READ_TIMEOUT,
    IDLE_TIMEOUT, INTEGRATION_TIMEOUT, MAX_CONNECTIONS_PER_ADDRESS, MAX_OUTBOUND_BYTES,
    WRITE_TIMEOUT,
};
pub use http::static_files::StaticDir;
pub use routes::{FunctionMode, SamOptions};
pub use server::{RunningGateway, router, serve};
pub use sigv4::ManagementCredentials;
pub use websocket::log::CONNECTION_LOG;
