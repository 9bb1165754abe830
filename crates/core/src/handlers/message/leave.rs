//! `leave`: removes the connection from a room.

use super::{Reply, Route, internal};
use crate::names::route::LEAVE;

/// Leaving is always allowed (no policy), but counted like any frame.
pub(super) async fn leave(route: &Route<'_>, room: &str) -> Reply {
    route
        .app
        .store
        .leave(room, route.connection_id)
        .await
        .map_err(internal)?;
    Ok(route.ack(LEAVE, room, None))
}
