//! `join`: adds the connection to a room. Its policy was checked and the frame
//! counted in [`super::message`].

use super::{Reply, Route, internal};
use crate::names::route::JOIN;
use crate::store::{Member, now_secs};

pub(super) async fn join(route: &Route<'_>, room: &str) -> Reply {
    let app = route.app;
    // The membership ends when the token does, so a connection outliving its token
    // stops receiving the room's events even if it never sends again.
    let member = Member {
        connection_id: route.connection_id.to_owned(),
        user_id: route.identity.user_id.clone(),
        expires_at: route
            .identity
            .item_expires_at(now_secs() + app.config.item_ttl.as_secs()),
    };
    app.store.join(room, &member).await.map_err(internal)?;
    Ok(route.ack(JOIN, room, None))
}
