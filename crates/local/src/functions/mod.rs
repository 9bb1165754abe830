//! Running a function the way Lambda does: JSON in, JSON out, within a timeout,
//! on a task of its own, failing with Lambda's error kinds.
//!
//! - [`function`]: the [`LambdaFunction`](function::LambdaFunction) trait, its
//!   [`FunctionError`](function::FunctionError) (Lambda's error kinds), and the
//!   gateway's view of a failed integration ([`InvokeError`](function::InvokeError)).
//! - [`run`]: the one way to run an invocation: its own task, a timeout, and
//!   cancellation when the time is up.
//! - [`builtin`]: roomcast's route handlers (core's `Integration` table) as functions.
//! - [`broadcast`]: the broadcast function.
//! - [`remote`]: functions behind a Lambda Invoke endpoint.
//! - [`route`]: a route's integration, whichever of these runs it.
//! - [`registry`]: the functions by name, which the Invoke API and the queue's
//!   event source mapping invoke.

pub mod broadcast;
pub mod builtin;
pub mod function;
pub mod registry;
pub mod remote;
pub mod route;
pub mod run;
