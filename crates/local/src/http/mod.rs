//! The HTTP APIs on the gateway's port, each translating HTTP to what the
//! gateway does and back (AWS-shaped errors from [`crate::aws::AwsError`]).
//!
//! - [`connections`]: the `@connections` API (POST, GET, DELETE) over
//!   [`crate::connections::rules`].
//! - [`invoke`]: the Lambda Invoke API over the [`crate::functions`] registry.
//! - [`queue`]: the broadcast queue's SQS API on `POST /`.
//! - [`metrics`]: `GET /metrics`, the counters and gauges in the Prometheus text format.
//! - [`simulated`]: `GET /@simulated`, the simulated members' figures as JSON.
//! - [`static_files`]: `--static DIR`, web pages served beside the API.
//! - [`guard`]: in front of `@connections`, Invoke, the queue and `/metrics`:
//!   requests from web pages refused, bodies read with limits and a deadline.
//! - [`signed`]: the SigV4 check the guard runs off loopback.
//! - [`api`]: which API a guarded request is for, its body limit and error shapes.

pub mod api;
pub mod connections;
pub mod guard;
pub mod invoke;
pub mod metrics;
pub mod queue;
pub mod signed;
pub mod simulated;
pub mod static_files;
