//! `ping`: answered with a `pong`, whether or not the frame has an `id`; the pong
//! tells the connection its own id (API Gateway's `connectionId`).

use super::{Reply, Route};
use crate::protocol::ServerFrame;

pub(super) async fn ping(route: &Route<'_>) -> Reply {
    Ok(Some(
        ServerFrame::Pong {
            id: route.id,
            connection_id: Some(route.connection_id),
        }
        .to_json(),
    ))
}
