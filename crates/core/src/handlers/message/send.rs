//! `send`: posts an event to a room's other members through the fan-out engine;
//! in a room with history the event gets the stream's next offset and is stored
//! before it is posted. In a sharded room the fan-out is handed to workers
//! (`crate::workers`) and the sender is acked with the event's offset at once.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::{AckDetail, Reply, Route, internal};
use crate::fanout::Fanout;
use crate::names::route::SEND;
use crate::protocol::ServerFrame;
use crate::store::{StoreError, StreamHead, now_millis, now_secs};
use crate::stream;
use crate::workers;

/// Only members may send to a room; the sender does not receive its own event.
pub(super) async fn send(route: &Route<'_>, room: &str, event: &str, data: &RawValue) -> Reply {
    let app = route.app;
    let connection_id = route.connection_id;
    let now = now_secs();
    route.require_member(room, "sending to", now).await?;
    let endpoint = route.endpoint()?;
    let policy = app.config.policies.for_room(room);
    let history = policy.history;
    let render = |head: Option<&StreamHead>| {
        let frame = ServerFrame::Event {
            room: Some(room),
            event,
            data,
            from: route.sender(),
            ts: now_millis(),
            offset: head.map(|h| h.offset),
            epoch: head.map(|h| h.epoch.as_str()),
        };
        Ok::<_, StoreError>(Bytes::from(frame.to_json()))
    };
    let (payload, head) = stream::publish(app.store.as_ref(), history, room, now, render)
        .await
        .map_err(internal)?;
    // A sharded room's members are reached by workers: the ack goes at once.
    let handed = workers::hand_off(app, room, head.as_ref(), &[connection_id], &payload)
        .await
        .map_err(internal)?;
    if let Some(workers) = handed {
        let detail = AckDetail {
            workers: Some(workers),
            head: head.as_ref(),
            ..AckDetail::default()
        };
        return Ok(route.ack(SEND, room, detail));
    }
    let stats = Fanout::for_app(app, &endpoint)
        .to_room(room, policy.shards, Some(connection_id), payload, now)
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
    let detail = AckDetail {
        sent: Some((stats.recipients, stats.delivered)),
        head: head.as_ref(),
        ..AckDetail::default()
    };
    Ok(route.ack(SEND, room, detail))
}
