//! Logs: one INFO line per connection event (connected, disconnected, handshake
//! refused) under [`CONNECTION_LOG`], so `roomcast dev --quiet` can turn them off;
//! everything else per connection or frame is DEBUG. Tokens, frame bodies and
//! authorizer contexts are never logged.

/// The `tracing` target of the one INFO line per connection event.
pub const CONNECTION_LOG: &str = "roomcast::connection";
