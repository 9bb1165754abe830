//! `leave`: removes the connection from a room; in a room with presence events
//! the other members are told.

use super::{AckDetail, Reply, Route, internal};
use crate::fanout::Fanout;
use crate::names::route::LEAVE;
use crate::presence;
use crate::protocol::Change;
use crate::store::{now_secs, shard_of};

/// Leaving is always allowed (no policy), but counted like any frame.
pub(super) async fn leave(route: &Route<'_>, room: &str) -> Reply {
    let app = route.app;
    let shard = shard_of(route.connection_id, app.config.policies.shards(room));
    let existed = app
        .store
        .leave(room, shard, route.connection_id)
        .await
        .map_err(internal)?;
    if existed && app.config.policies.for_room(room).presence_events {
        let endpoint = route.endpoint()?;
        let fanout = Fanout::for_app(app, &endpoint);
        let (policies, now) = (&app.config.policies, now_secs());
        presence::announce(&fanout, policies, room, Change::Leave, route.sender(), now).await;
    }
    Ok(route.ack(LEAVE, room, AckDetail::default()))
}
