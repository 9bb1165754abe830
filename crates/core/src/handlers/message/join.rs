//! `join`: adds the connection to a room. Its policy was checked and the frame
//! counted in [`super::message`]. In a room with history the ack reports the
//! stream's head, and a `since` the history can serve is replayed first
//! ([`super::replay`]) and its bytes charged to the rate limit
//! ([`super::charge_replay`]); in a room with presence events the other members
//! are told.

use std::time::Instant;

use super::replay::{self, Replayed};
use super::{AckDetail, Reply, Route, charge_replay, internal};
use crate::fanout::Fanout;
use crate::names::route::JOIN;
use crate::protocol::{Change, Since};
use crate::store::{Member, now_secs, shard_of};
use crate::{presence, stream};

pub(super) async fn join(
    route: &Route<'_>,
    room: &str,
    since: Option<&Since>,
    pack: bool,
) -> Reply {
    let started = Instant::now();
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
    let policy = app.config.policies.for_room(room);
    let shard = shard_of(route.connection_id, policy.shards);
    // The membership is written before the stream is read: see stream::recover.
    app.store
        .join(room, shard, &member)
        .await
        .map_err(internal)?;
    let mut head = None;
    let mut recovered = None;
    let mut replayed_to = None;
    if let Some(history) = policy.history {
        let recovery = stream::recover(app.store.as_ref(), history, room, since, now)
            .await
            .map_err(internal)?;
        if let Some(since) = since {
            let outcome = match recovery.replay {
                Some(events) => {
                    let (outcome, bytes) =
                        replay::replay(route, room, events, since.offset, pack, started, now)
                            .await?;
                    // Charged after: what was actually sent, never cutting the replay.
                    charge_replay(route, room, bytes).await;
                    outcome
                }
                None => Replayed::Partial { to: since.offset },
            };
            recovered = Some(outcome == Replayed::Complete);
            // Only a replay that got somewhere says how far.
            if let Replayed::Partial { to } = outcome {
                replayed_to = (to > since.offset).then_some(to);
            }
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
            replayed_to,
            ..AckDetail::default()
        },
    ))
}
