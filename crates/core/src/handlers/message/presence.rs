//! `presence`: a member lists a room's members, grouped by user (rooms whose
//! namespace enables presence; the policy check refused the others). A reply
//! holds at most [`MAX_REPLY_BYTES`] and [`crate::presence::MAX_LISTED`]
//! connections; when members were left out it carries `truncated` and the page
//! token `after` that lists them.

use super::{Reply, Route, internal, not_member};
use crate::limits::MAX_REPLY_BYTES;
use crate::presence::{Budget, list};
use crate::protocol::{MAX_CURSOR_BYTES, PresenceBody, ProtocolError, ServerFrame};
use crate::store::{StoreError, now_secs};

pub(super) async fn presence(route: &Route<'_>, room: &str, after: Option<&str>) -> Reply {
    let now = now_secs();
    let reply = |body: PresenceBody<'_>| {
        ServerFrame::Presence {
            id: route.id,
            room,
            body,
        }
        .to_json()
    };
    let empty = |count: usize, after: Option<String>| PresenceBody::List {
        members: Vec::new(),
        count,
        truncated: after.is_some(),
        after,
    };
    // The envelope with a one-digit count and, cut, the longest page token.
    let budget = Budget {
        whole: MAX_REPLY_BYTES - reply(empty(0, None)).len(),
        cut: MAX_REPLY_BYTES - reply(empty(0, Some("x".repeat(MAX_CURSOR_BYTES)))).len(),
    };
    let listing = list(
        route.app.store.as_ref(),
        room,
        route.app.config.policies.shards(room),
        route.connection_id,
        after,
        budget,
        now,
    )
    .await
    .map_err(|e| match e {
        StoreError::BadCursor => {
            ProtocolError::bad_request("\"after\" is not a page token of this room")
        }
        e => internal(e),
    })?;
    // The listing itself shows membership; only a partial one needs a read.
    if !listing.includes {
        if listing.after.is_some() || after.is_some() {
            route.require_member(room, "listing", now).await?;
        } else {
            return Err(not_member(room, "listing").into());
        }
    }
    Ok(Some(reply(PresenceBody::List {
        members: listing.users,
        count: listing.count,
        truncated: listing.after.is_some(),
        after: listing.after,
    })))
}
