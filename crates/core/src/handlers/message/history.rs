//! `history`: a member reads back a room's stored events (rooms whose namespace
//! keeps history; the policy check refused the others). A reply holds at most
//! [`MAX_REPLY_BYTES`]: the newest events that fit, and, when older ones were left
//! out, `truncated` and the `before` that asks for them.

use serde_json::value::RawValue;

use super::{Reply, Route, internal};
use crate::limits::MAX_REPLY_BYTES;
use crate::protocol::{ErrorCode, ProtocolError, ServerFrame};
use crate::store::{StoredEvent, now_secs};
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
    let reply = |events: &[Box<RawValue>], before: Option<u64>| {
        ServerFrame::History {
            id: route.id,
            room,
            epoch: &epoch,
            events,
            truncated: before.is_some(),
            before,
        }
        .to_json()
    };
    let whole = reply(&[], None).len();
    // A cut reply's `before` is at most the newest offset: as many digits.
    let newest = events.last().map_or(0, |e| e.offset);
    let cut = reply(&[], Some(newest)).len();
    let (kept, before) = fit(events, whole, cut);
    let kept = kept
        .into_iter()
        .map(stream::raw)
        .collect::<Result<Vec<_>, _>>()
        .map_err(internal)?;
    Ok(Some(reply(&kept, before)))
}

/// The events (oldest first) that fit in a reply of at most [`MAX_REPLY_BYTES`]
/// whose envelope takes `whole` bytes with every event, `cut` bytes when some are
/// left out: all of them, or the newest that fit and the `before` of the rest. An
/// event too large for any reply is passed over (the `before` goes past it).
fn fit(events: Vec<StoredEvent>, whole: usize, cut: usize) -> (Vec<StoredEvent>, Option<u64>) {
    // Events are separated by commas: n events add n - 1 bytes.
    let size = |events: &[StoredEvent]| -> usize {
        events.iter().map(|e| e.frame.len() + 1).sum::<usize>() - usize::from(!events.is_empty())
    };
    if whole + size(&events) <= MAX_REPLY_BYTES {
        return (events, None);
    }
    let mut used = cut;
    let mut first = events.len();
    while first > 0 {
        let comma = usize::from(first < events.len());
        let next = used + events[first - 1].frame.len() + comma;
        if next > MAX_REPLY_BYTES {
            break;
        }
        used = next;
        first -= 1;
    }
    let before = match events.get(first) {
        Some(oldest_kept) => oldest_kept.offset,
        // Not even the newest fits: pass over it.
        None => events[first - 1].offset,
    };
    (events.into_iter().skip(first).collect(), Some(before))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: u64, len: usize) -> StoredEvent {
        StoredEvent {
            offset,
            frame: format!("\"{}\"", "x".repeat(len - 2)),
        }
    }

    #[test]
    fn fit_keeps_the_newest_events_within_the_bound() {
        let half = MAX_REPLY_BYTES / 2;
        // Two events of `half - 100` bytes and one comma: 199 bytes to spare.
        let two = || vec![event(1, half - 100), event(2, half - 100)];
        assert_eq!(fit(two(), 199, 199).1, None, "exactly at the bound");
        let (kept, before) = fit(two(), 200, 200);
        assert_eq!((kept.len(), kept[0].offset, before), (1, 2, Some(2)));
        // An event no reply can hold is passed over, the older ones kept.
        let (kept, before) = fit(
            vec![event(1, 10), event(2, 10), event(3, MAX_REPLY_BYTES)],
            50,
            60,
        );
        assert_eq!((kept.len(), before), (0, Some(3)));
        let (kept, before) = fit(vec![], 50, 60);
        assert_eq!((kept.len(), before), (0, None));
    }
}
