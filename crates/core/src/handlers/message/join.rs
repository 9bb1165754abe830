//! `join`: adds the connection to a room. Its policy was checked and the frame
//! counted in [`super::message`]. In a room with history the ack reports the
//! stream's head, and a `since` the history can serve is replayed first; in a room
//! with presence events the other members are told.

use bytes::Bytes;

use super::{AckDetail, Refusal, Reply, Route, internal};
use crate::fanout::{Fanout, Recipients};
use crate::names::route::JOIN;
use crate::protocol::{Change, Since};
use crate::store::{Member, StoredEvent, now_secs};
use crate::{presence, stream};

pub(super) async fn join(route: &Route<'_>, room: &str, since: Option<&Since>) -> Reply {
    let app = route.app;
    let now = now_secs();
    // The membership ends when the token does, so a connection outliving its token
    // stops receiving the room's events even if it never sends again.
    let member = Member {
        connection_id: route.connection_id.to_owned(),
        user_id: route.identity.user_id.clone(),
        expires_at: route
            .identity
            .item_expires_at(now + app.config.item_ttl.as_secs()),
    };
    // The membership is written before the stream is read: see stream::recover.
    app.store.join(room, &member).await.map_err(internal)?;
    let policy = app.config.policies.for_room(room);
    let mut head = None;
    let mut recovered = None;
    if let Some(history) = policy.history {
        let recovery = stream::recover(app.store.as_ref(), history, room, since, now)
            .await
            .map_err(internal)?;
        if since.is_some() {
            let replayed = match recovery.replay {
                Some(events) => replay(route, events, now).await?,
                None => false,
            };
            recovered = Some(replayed);
        }
        head = Some(recovery.head);
    }
    if policy.presence_events {
        let endpoint = route.endpoint()?;
        let fanout = Fanout::for_app(app, &endpoint);
        let policies = &app.config.policies;
        presence::announce(&fanout, policies, room, Change::Join, route.sender(), now).await;
    }
    Ok(route.ack(
        JOIN,
        room,
        AckDetail {
            head: head.as_ref(),
            recovered,
            ..AckDetail::default()
        },
    ))
}

/// Posts the missed events to the joining connection, in offset order, before its
/// ack (the integration response) goes out, each with the fan-out's retries on
/// 429 and 5xx. Stops at the first post that fails for good: the client then sees
/// `recovered: false` and keeps what arrived (deduplicated by offset).
async fn replay(route: &Route<'_>, events: Vec<StoredEvent>, now: u64) -> Result<bool, Refusal> {
    if events.is_empty() {
        return Ok(true);
    }
    let endpoint = route.endpoint()?;
    let fanout = Fanout::for_app(route.app, &endpoint);
    let to = [route.connection_id.to_owned()];
    for event in events {
        let sent = fanout
            .to(
                Recipients::Connections(&to),
                &[],
                Bytes::from(event.frame),
                now,
            )
            .await
            .map_err(internal)?;
        if sent.delivered != 1 {
            tracing::warn!(
                connection_id = route.connection_id,
                "replay stopped: a post failed"
            );
            return Ok(false);
        }
    }
    Ok(true)
}
