//! API Gateway's WebSocket API limits, in one place: the deployed functions size
//! their checks by them and `roomcast dev` enforces them (AWS, "Amazon API Gateway
//! quotas for configuring and running a WebSocket API").

use std::time::Duration;

/// The maximum connection duration; stored items outlive it by a margin
/// ([`crate::config::TTL_MARGIN`]).
pub const CONNECTION_CAP: Duration = Duration::from_secs(2 * 60 * 60);
/// The idle connection timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The maximum integration time.
pub const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(29);
/// The message payload limit, for frames and `@connections` POSTs alike.
pub const GATEWAY_MAX_PAYLOAD: usize = 128 * 1024;
/// The WebSocket frame limit; larger frames close the connection with 1009.
pub const GATEWAY_MAX_FRAME: usize = 32 * 1024;
/// A Lambda authorizer's response (policy plus context), in bytes; a larger one
/// fails the handshake with 500.
pub const MAX_AUTHORIZER_RESPONSE_BYTES: usize = 8 * 1024;
/// Largest reply roomcast builds for a `history` or `presence` request, in bytes:
/// under [`GATEWAY_MAX_PAYLOAD`] whether API Gateway's "128 KB" means 128,000 or
/// 131,072 bytes. What does not fit is left for the next page (docs/protocol.md).
pub const MAX_REPLY_BYTES: usize = 128_000;
