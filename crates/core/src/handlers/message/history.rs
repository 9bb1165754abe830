//! `history`: a member reads back a room's stored events (rooms whose namespace
//! keeps history; the policy check refused the others).

use super::{Reply, Route, internal};
use crate::protocol::{ErrorCode, ProtocolError, ServerFrame};
use crate::store::now_secs;
use crate::stream;

pub(super) async fn history(
    route: &Route<'_>,
    room: &str,
    limit: u64,
    before: Option<u64>,
) -> Reply {
    let app = route.app;
    let now = now_secs();
    let Some(history) = app.config.policies.for_room(room).history else {
        return Err(ProtocolError::new(ErrorCode::Forbidden, "no history here").into());
    };
    route
        .require_member(room, "reading the history of", now)
        .await?;
    let (epoch, events) = stream::read(app.store.as_ref(), history, room, limit, before, now)
        .await
        .map_err(internal)?;
    let events = events
        .into_iter()
        .map(stream::raw)
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    Ok(Some(
        ServerFrame::History {
            id: route.id,
            room,
            epoch: &epoch,
            events: &events,
        }
        .to_json(),
    ))
}
