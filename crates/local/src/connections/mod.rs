//! The gateway's open connections and the rules of `@connections` for them.
//!
//! - [`registry`]: the open connections, each with its context and its bounded
//!   command queue (frames to send, a close; bounded in frames and in bytes),
//!   and the batched socket writes.
//! - [`close`]: the close codes the gateway reports.
//! - [`rules`]: post, delete, refusals, latency and the disconnect reason.
//! - [`quota`]: the account-level `@connections` quota (`--management-rps`).
//! - [`inprocess`]: the `@connections` adapter of the handlers running in-process.

pub mod close;
pub mod inprocess;
pub(crate) mod quota;
pub mod registry;
pub mod rules;
