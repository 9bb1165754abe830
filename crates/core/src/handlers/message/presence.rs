//! `presence`: a member lists a room's members, grouped by user (rooms whose
//! namespace enables presence; the policy check refused the others).

use super::{Reply, Route, internal, not_member};
use crate::presence::list;
use crate::protocol::{PresenceBody, ServerFrame};
use crate::store::now_secs;

pub(super) async fn presence(route: &Route<'_>, room: &str) -> Reply {
    let now = now_secs();
    let listing = list(route.app.store.as_ref(), room, route.connection_id, now)
        .await
        .map_err(internal)?;
    // The listing itself shows membership; only a truncated one needs a read.
    if !listing.includes {
        if listing.truncated {
            route.require_member(room, "listing", now).await?;
        } else {
            return Err(not_member(room, "listing").into());
        }
    }
    Ok(Some(
        ServerFrame::Presence {
            id: route.id,
            room,
            body: PresenceBody::List {
                members: listing.users,
                count: listing.count,
                truncated: listing.truncated,
            },
        }
        .to_json(),
    ))
}
