//! Presence, for namespaces whose policy enables it: who is in a room (the
//! `presence` action) and, with `presenceEvents`, telling members when a
//! connection joins or leaves: by `leave`, `$disconnect`, or a 410 found during a
//! fan-out.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::fanout::{Audience, Fanout};
use crate::policy::Policies;
use crate::protocol::{Change, PresenceBody, PresentUser, Sender, ServerFrame};
use crate::store::{Member, Store, StoreError};

/// Most members a `presence` reply lists.
pub const MAX_LISTED: usize = 1000;

/// A room's members, grouped by user (anonymous connections under `None`).
pub struct Listing {
    pub users: Vec<PresentUser>,
    /// Connections listed.
    pub count: usize,
    /// Where the members left out begin (the page token `after`), when the room
    /// has more than [`MAX_LISTED`] members or their entries would not fit.
    pub after: Option<String>,
    /// Whether `connection_id` was among those listed.
    pub includes: bool,
}

/// The bytes the `members` of a reply may take with a one-digit `count`: `whole`
/// when every member is listed, `cut` (less: the reply then carries `truncated`
/// and `after`) when not.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub whole: usize,
    pub cut: usize,
}

/// Reads up to [`MAX_LISTED`] live members of `room`, spread over `shards`, after
/// the page token `after` (one Query per 1,000 and per shard reached), and groups
/// those that fit `budget`. The shards are listed one after the other.
pub async fn list(
    store: &dyn Store,
    room: &str,
    shards: u16,
    connection_id: &str,
    after: Option<&str>,
    budget: Budget,
    now: u64,
) -> Result<Listing, StoreError> {
    let shards = shards.max(1);
    let (mut shard, mut cursor) = match after {
        Some(after) => decode_after(after, shards)?,
        None => (0, None),
    };
    let mut members = Vec::new();
    // The shard of each of `members`, for the token that resumes after it.
    let mut shard_of_member = Vec::new();
    while members.len() <= MAX_LISTED && shard < shards {
        let page = store
            .members_page(
                room,
                shard,
                cursor.as_deref(),
                MAX_LISTED + 1 - members.len(),
                now,
            )
            .await?;
        shard_of_member.resize(shard_of_member.len() + page.members.len(), shard);
        members.extend(page.members);
        cursor = page.next;
        if cursor.is_none() {
            shard += 1;
        }
    }
    let more = members.len() > MAX_LISTED;
    members.truncate(MAX_LISTED);
    // A longer `count` takes from the members' bytes.
    let digits = members.len().max(1).ilog10() as usize;
    let (users, count) = match group(&members, budget.whole.saturating_sub(digits)) {
        Some(users) if !more => (users, members.len()),
        _ => group_prefix(&members, budget.cut.saturating_sub(digits)),
    };
    let listed = &members[..count];
    // One entry always fits, so a cut listing has a last member to resume after.
    let after = if count < members.len() || more {
        listed.last().map(|m| {
            let cursor = store.member_cursor(&m.connection_id);
            encode_after(shard_of_member[count - 1], &cursor, shards)
        })
    } else {
        None
    };
    Ok(Listing {
        users: into_users(users),
        count,
        after,
        includes: listed.iter().any(|m| m.connection_id == connection_id),
    })
}

/// Separates the shard, the room's shard count and the store's cursor in the
/// page token of a room with several shards: `<shard>.<shards>.<cursor>`. A room
/// with one shard's token is the store's cursor alone, as before rooms had shards.
const AFTER_SEPARATOR: char = '.';

/// The page token that resumes after `cursor` in `shard`.
fn encode_after(shard: u16, cursor: &str, shards: u16) -> String {
    if shards == 1 {
        cursor.to_owned()
    } else {
        format!("{shard}{AFTER_SEPARATOR}{shards}{AFTER_SEPARATOR}{cursor}")
    }
}

/// The shard and store cursor a page token stands for. In a room of several
/// shards, a token that names another shard count (`members.shards` changed
/// between pages: the members it covered hash elsewhere now), a shard out of
/// range, or no shard at all is a bad cursor. In a room of one shard the token
/// is the store's cursor, which the store alone judges: a token of several
/// shards reaches it as such.
fn decode_after(after: &str, shards: u16) -> Result<(u16, Option<String>), StoreError> {
    if shards == 1 {
        return Ok((0, Some(after.to_owned())));
    }
    let number = |s: &str| s.parse::<u16>().ok();
    let (shard, rest) = after
        .split_once(AFTER_SEPARATOR)
        .ok_or(StoreError::BadCursor)?;
    let (count, cursor) = rest
        .split_once(AFTER_SEPARATOR)
        .ok_or(StoreError::BadCursor)?;
    let shard = number(shard)
        .filter(|s| *s < shards && number(count) == Some(shards))
        .ok_or(StoreError::BadCursor)?;
    if cursor.is_empty() {
        return Err(StoreError::BadCursor);
    }
    Ok((shard, Some(cursor.to_owned())))
}

type Groups = BTreeMap<Option<String>, usize>;

/// The bytes of one user's entry in `members`, and of the comma before it.
fn entry_bytes(user_id: &Option<String>, connections: usize) -> usize {
    let entry = PresentUser {
        user_id: user_id.clone(),
        connections,
    };
    serde_json::to_string(&entry).map_or(usize::MAX / 4, |s| s.len()) + 1
}

/// `members` grouped by user, if their entries take at most `budget` bytes.
fn group(members: &[Member], budget: usize) -> Option<Groups> {
    let mut users = Groups::new();
    for m in members {
        *users.entry(m.user_id.clone()).or_default() += 1;
    }
    let bytes: usize = users.iter().map(|(u, n)| entry_bytes(u, *n)).sum();
    (bytes.saturating_sub(1) <= budget).then_some(users)
}

/// The longest prefix of `members` whose grouped entries take at most `budget`
/// bytes, grouped, and its length.
fn group_prefix(members: &[Member], budget: usize) -> (Groups, usize) {
    let mut users = Groups::new();
    // Counted with the comma of every entry; the first has none.
    let mut used = 0usize;
    for (i, m) in members.iter().enumerate() {
        let n = users.get(&m.user_id).copied().unwrap_or(0);
        let before = if n == 0 {
            0
        } else {
            entry_bytes(&m.user_id, n)
        };
        let next = used - before + entry_bytes(&m.user_id, n + 1);
        if next.saturating_sub(1) > budget {
            return (users, i);
        }
        used = next;
        users.insert(m.user_id.clone(), n + 1);
    }
    (users, members.len())
}

fn into_users(users: Groups) -> Vec<PresentUser> {
    users
        .into_iter()
        .map(|(user_id, connections)| PresentUser {
            user_id,
            connections,
        })
        .collect()
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
    // Neither cascading nor paced: a worker's 410 cleanup announcing a leave in
    // another room must not spend the worker's share of the quota. The
    // invocation's deadline (`stop_at`) still holds.
    let quiet = Fanout {
        presence: None,
        pacer: None,
        ..*fanout
    };
    let except: Vec<&str> = member.connection_id.into_iter().collect();
    let audience = Audience::Room {
        room,
        shards: policies.shards(room),
    };
    match quiet.to(audience, &except, Bytes::from(frame), now).await {
        Ok(stats) => tracing::debug!(recipients = stats.recipients, "presence change posted"),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), "could not post a presence change")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_token_resumes_only_under_its_own_shard_count() {
        let token = encode_after(3, "conn#a.b=", 4);
        assert_eq!(
            decode_after(&token, 4).unwrap(),
            (3, Some("conn#a.b=".to_owned()))
        );
        // Shard 3 exists under 8 shards too, but its members are not those of
        // shard 3 under 4.
        assert!(matches!(
            decode_after(&token, 8),
            Err(StoreError::BadCursor)
        ));
        for bad in [
            "conn#a=",
            "3.conn#a=",
            "4.4.conn#a=",
            "3.4.",
            "x.4.c",
            "3.x.c",
        ] {
            assert!(
                matches!(decode_after(bad, 4), Err(StoreError::BadCursor)),
                "{bad}"
            );
        }
        assert_eq!(encode_after(0, "conn#a=", 1), "conn#a=");
        assert_eq!(
            decode_after("conn#a=", 1).unwrap(),
            (0, Some("conn#a=".to_owned()))
        );
    }
}
