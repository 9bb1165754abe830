//! `ping`: answered with a `pong`, whether or not the frame has an `id`.

use super::{Reply, Route};
use crate::protocol::ServerFrame;

pub(super) async fn ping(route: &Route<'_>) -> Reply {
    Ok(Some(ServerFrame::Pong { id: route.id }.to_json()))
}
