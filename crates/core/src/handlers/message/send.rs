//! `send`: posts an event to a room's other members through the fan-out engine.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{Reply, Route, internal};
use crate::fanout::Fanout;
use crate::management::endpoint_for;
use crate::names::route::SEND;
use crate::protocol::{ErrorCode, ProtocolError, Sender, ServerFrame};
use crate::store::{now_millis, now_secs};

/// Only members may send to a room; the sender does not receive its own event.
pub(super) async fn send(route: &Route<'_>, room: &str, event: &str, data: &RawValue) -> Reply {
    let app = route.app;
    let connection_id = route.connection_id;
    let now = now_secs();
    if app
        .store
        .member(room, connection_id, now)
        .await
        .map_err(internal)?
        .is_none()
    {
        return Err(ProtocolError::new(
            ErrorCode::NotMember,
            format!("join {room:?} before sending to it"),
        )
        .into());
    }
    let endpoint = endpoint_for(app.config.management_endpoint.as_deref(), route.context)
        .ok_or_else(|| {
            tracing::error!("no management endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT");
            ProtocolError::new(ErrorCode::Internal, "roomcast is misconfigured")
        })?;
    let payload = ServerFrame::Event {
        room: Some(room),
        event,
        data,
        from: Sender::member(connection_id, route.identity.user_id.as_deref()),
        ts: now_millis(),
    }
    .to_json();
    let stats = Fanout::for_app(app, &endpoint)
        .to_room(room, Some(connection_id), Bytes::from(payload), now)
        .await
        .map_err(internal)?;
    app.metrics.fanout(&stats);
    tracing::info!(
        connection_id,
        recipients = stats.recipients,
        delivered = stats.delivered,
        gone = stats.gone,
        failed = stats.failed,
        "sent"
    );
    Ok(route.ack(SEND, room, Some((stats.recipients, stats.delivered))))
}
