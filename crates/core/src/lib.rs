//! roomcast's core: everything the Lambda functions and `roomcast dev` run.
//!
//! # Layout
//!
//! - [`auth`]: the `$connect` JWT authorizer: tokens, origins, identities.
//! - [`policy`]: namespace policies (history, presence, rate limits, permissions)
//!   and the per-connection rate counters behind the limits (`policy/ratelimit.rs`).
//! - `clock`: UTC calendar dates from epoch seconds ([`civil`]).
//! - [`names`]: route keys, table attribute names and environment variables, in one place.
//! - `routes`: the message routes, each declared once (key, policy action, counter),
//!   and the list of places adding a route touches ([`MessageRoute`]).
//! - [`config`]: configuration read once from the environment, checked at start-up.
//! - `parameters`: settings read from Parameter Store at cold start ([`ParameterStore`]).
//! - [`limits`]: API Gateway's WebSocket limits, in one place.
//! - [`protocol`]: protocol v1 frames (docs/protocol.md): limits and room names
//!   (`protocol/mod.rs`), parsing and validation of client frames
//!   (`protocol/client.rs`), replies, errors and the one `event` frame serializer,
//!   for member and backend events alike (`protocol/server.rs`).
//! - [`store`]: the connection/room store port, with DynamoDB and in-memory adapters
//!   (and, with the `test-util` feature, the `FailingStore` test double). The
//!   DynamoDB adapter is `store/dynamo/mod.rs`, its history stream
//!   `store/dynamo/stream.rs` and its table creation `store/dynamo/table.rs`.
//! - [`management`]: the `@connections` port, with the API Gateway Management API adapter.
//! - [`fanout`]: posting one payload to a room's members, a user's connections, a
//!   list of connections or all of them, with retries, handing connections found
//!   gone (410) to their departure; the only reader of recipient pages.
//! - `pace`: spacing a worker's posts to its share of the account's
//!   `@connections` quota, backing off on 429 ([`Pacer`]).
//! - `stream`: room event streams for namespaces with history: offsets,
//!   publishing (one home for `send` and the broadcast function), recovery on
//!   `join` with `since`, and reading back.
//! - `presence`: listing a room's members, and announcing joins and leaves in
//!   namespaces with presence events.
//! - `departure`: a connection's departure (removed, its leaves announced), one
//!   home for `$disconnect` and the fan-out's handling of 410.
//! - [`broadcast`]: the broadcast function's handler (`broadcast/mod.rs`), its
//!   request validation (`broadcast/request.rs`) and its SQS batch policy: grouping,
//!   conflation, the deadline and partial batch failures (`broadcast/sqs.rs`).
//! - [`handlers`]: the route handlers, from an API Gateway event to its response, and
//!   [`handlers::Integration`], the table of them. `handlers/connect.rs`,
//!   `handlers/disconnect.rs`; message routes share their steps (parse, token expiry,
//!   policy, rate limit, reply or close) in `handlers/message/mod.rs` and have one
//!   file each: `join.rs`, `leave.rs`, `send.rs`, `ping.rs`, `history.rs`, `presence.rs`.
//! - [`metrics`]: the counters (declared once, in one table) and fan-out durations
//!   handlers record, written as CloudWatch EMF lines by the Lambda entry point and
//!   as Prometheus text by `roomcast dev` (docs/operations.md).
//! - [`workers`]: big rooms' fan-out split by shard into jobs for parallel,
//!   paced workers: the jobs, the [`workers::Dispatch`] port and its SQS FIFO
//!   adapter (`workers/sqs.rs`), and running a job (`workers/run.rs`).
//! - `claims`: idempotency records, taken before a broadcast or a fan-out job
//!   goes out so a repeat is skipped (one home for both).
//! - `app`: the dependencies the handlers borrow, built once per process, and
//!   the one `@connections` endpoint lookup.
//! - [`lambda`]: the one Lambda entry point, `run`, and the `Handler` of each of the
//!   five function binaries.

mod app;
pub mod auth;
pub mod broadcast;
mod claims;
mod clock;
pub mod config;
mod departure;
pub mod fanout;
pub mod handlers;
pub mod lambda;
pub mod limits;
pub mod management;
pub mod metrics;
pub mod names;
mod pace;
mod parameters;
pub mod policy;
mod presence;
pub mod protocol;
mod routes;
pub mod store;
mod stream;
pub mod workers;

pub use app::App;
pub use clock::civil;
pub use pace::Pacer;
pub use parameters::{ParameterError, ParameterStore};
pub use routes::MessageRoute;

/// An error and its sources, `outer: inner: root`. HTTP and SDK clients' own
/// messages ("error sending request", "dispatch failure") say nothing alone.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
