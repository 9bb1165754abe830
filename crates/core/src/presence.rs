//! Presence, for namespaces whose policy enables it: who is in a room (the
//! `presence` action) and, with `presenceEvents`, telling members when a
//! connection joins or leaves: by `leave`, `$disconnect`, or a 410 found during a
//! fan-out.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::fanout::{Fanout, Recipients};
use crate::policy::Policies;
use crate::protocol::{Change, PresenceBody, PresentUser, Sender, ServerFrame};
use crate::store::{Store, StoreError};

/// Most members a `presence` reply lists.
pub const MAX_LISTED: usize = 1000;

/// A room's members, grouped by user (anonymous connections under `None`).
pub struct Listing {
    pub users: Vec<PresentUser>,
    /// Connections listed.
    pub count: usize,
    /// Whether the room has more than [`MAX_LISTED`] members.
    pub truncated: bool,
    /// Whether `connection_id` was among those listed.
    pub includes: bool,
}

/// Reads up to [`MAX_LISTED`] live members of `room`: one Query per 1,000.
pub async fn list(
    store: &dyn Store,
    room: &str,
    connection_id: &str,
    now: u64,
) -> Result<Listing, StoreError> {
    let mut users: BTreeMap<Option<String>, usize> = BTreeMap::new();
    let (mut count, mut includes, mut truncated) = (0, false, false);
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .members_page(room, cursor.as_deref(), MAX_LISTED + 1 - count, now)
            .await?;
        for member in page.members {
            if count == MAX_LISTED {
                truncated = true;
                break;
            }
            count += 1;
            includes |= member.connection_id == connection_id;
            *users.entry(member.user_id).or_default() += 1;
        }
        match page.next {
            Some(next) if !truncated => cursor = Some(next),
            _ => break,
        }
    }
    Ok(Listing {
        users: users
            .into_iter()
            .map(|(user_id, connections)| PresentUser {
                user_id,
                connections,
            })
            .collect(),
        count,
        truncated,
        includes,
    })
}

/// Tells `room`'s other members that `member` joined or left, if the room's
/// policy asks for presence events. The change goes through a fan-out without
/// presence of its own, so announcing cannot cascade: a connection found gone
/// while a change is posted is removed without a `leave` of its own.
pub async fn announce(
    fanout: &Fanout<'_>,
    policies: &Policies,
    room: &str,
    change: Change,
    member: Sender<'_>,
    now: u64,
) {
    if !policies.for_room(room).presence_events {
        return;
    }
    let frame = ServerFrame::Presence {
        id: None,
        room,
        body: PresenceBody::Change { change, member },
    }
    .to_json();
    let quiet = Fanout {
        presence: None,
        ..*fanout
    };
    let except: Vec<&str> = member.connection_id.into_iter().collect();
    match quiet
        .to(Recipients::Room(room), &except, Bytes::from(frame), now)
        .await
    {
        Ok(stats) => tracing::debug!(recipients = stats.recipients, "presence change posted"),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "could not post a presence change")
        }
    }
}
