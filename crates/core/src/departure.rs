//! A connection's departure: its connection item, memberships and rate counters
//! are removed, and each room it was in whose policy has presence events is told
//! it left. One home for both ways a connection departs: `$disconnect`
//! ([`depart`]) and a 410 found during a fan-out (the fan-out calls
//! [`Departures::depart_gone`], implemented here for the policies, so the fan-out
//! does not depend on presence).

use futures::future::BoxFuture;

use crate::fanout::{Departures, Fanout};
use crate::policy::Policies;
use crate::presence;
use crate::protocol::{Change, Sender};
use crate::store::{Removed, Store, StoreError};

/// Removes `connection_id` and its memberships and, with `announce` (a fan-out
/// and the policies), tells the rooms with presence events that `user_id`'s
/// connection left.
pub async fn depart(
    store: &dyn Store,
    announce: Option<(&Fanout<'_>, &Policies)>,
    connection_id: &str,
    user_id: Option<&str>,
    now: u64,
) -> Result<Removed, StoreError> {
    let removed = store.remove_connection(connection_id).await?;
    if let Some((fanout, policies)) = announce {
        let member = Sender::member(connection_id, user_id);
        announce_leaves(fanout, policies, &removed.rooms, member, now).await;
    }
    Ok(removed)
}

/// Whether any of `rooms` announces leaves.
pub fn announces(policies: &Policies, rooms: &[String]) -> bool {
    rooms
        .iter()
        .any(|room| policies.for_room(room).presence_events)
}

/// Tells the members of each of `rooms` with presence events that the connection
/// left. A boxed future of a named type, not an `async fn`: the fan-out awaits it
/// when it removes a gone connection, and the compiler cannot prove an opaque
/// future `Send` when its type contains itself.
pub fn announce_leaves<'a>(
    fanout: &'a Fanout<'a>,
    policies: &'a Policies,
    rooms: &'a [String],
    member: Sender<'a>,
    now: u64,
) -> BoxFuture<'a, ()> {
    Box::pin(async move {
        for room in rooms {
            presence::announce(fanout, policies, room, Change::Leave, member, now).await;
        }
    })
}

impl Departures for Policies {
    fn depart_gone<'a>(
        &'a self,
        fanout: &'a Fanout<'a>,
        connection_id: &'a str,
        now: u64,
    ) -> BoxFuture<'a, Result<Removed, StoreError>> {
        Box::pin(async move {
            // The user of a leave: read only where presence events can need it.
            let user_id = if self.any_presence_events() {
                fanout
                    .store
                    .connection(connection_id, now)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.user_id)
            } else {
                None
            };
            let announce = Some((fanout, self));
            depart(
                fanout.store,
                announce,
                connection_id,
                user_id.as_deref(),
                now,
            )
            .await
        })
    }
}
