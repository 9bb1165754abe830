//! The WebSocket side of the gateway.
//!
//! - [`handshake`]: `GET /{stage}`: the origin check, the `$connect` authorizer
//!   ([`authorizer`]) and `$connect` while the upgrade is pending.
//! - [`connection`]: one task per connection: reading frames, the outbound queue,
//!   limits and timeouts, the closing handshake.
//! - [`worker`]: the events a connection runs: a frame's message event (route
//!   selection, the route response, API Gateway's own error frames) and `$disconnect`.
//! - [`log`]: the log target of the one line per connection event.
//!
//! Ordering: each connection runs its message events one at a time, in the order
//! the frames arrived, so replies come back in order. Different connections run
//! concurrently. (API Gateway itself promises no order: it invokes the integration
//! once per frame, possibly in parallel.)
//!
//! Binary frames close the connection with 1003 and invoke nothing, as API Gateway
//! does ("API Gateway WebSocket APIs don't currently support binary frames in
//! incoming message payloads": AWS, "Working with binary media types for WebSocket
//! APIs").
//!
//! Logs: one INFO line per connection event (connected, disconnected, handshake
//! refused) under the [`log::CONNECTION_LOG`] target, so `roomcast dev --quiet` can turn
//! them off; everything else per connection or frame is DEBUG. Tokens, frame bodies
//! and authorizer contexts are never logged.
//!
//! Memory: an idle connection is one task holding its socket, a command queue and
//! one timer. A message event runs as a task of its own, started when its frame is
//! next in line; frames waiting behind it sit in a queue that allocates only when
//! used (docs/performance.md has the measurements). What waits to be written is
//! bounded in frames (256, then 429) and bytes (`--max-outbound-bytes`, then a
//! 1008 close and 410), and each write by `--write-timeout-secs`, so a client that
//! stops reading costs at most that (docs/local.md, "Clients that stop reading").

pub mod authorizer;
pub mod connection;
pub mod handshake;
pub mod log;
pub mod worker;
