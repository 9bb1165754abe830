//! Room event streams, for namespaces whose policy keeps `history`: every event
//! delivered in such a room gets the next offset of the room's stream and is
//! stored, so a client that reconnects can recover what it missed (`join` with
//! `since`) and members can read back (`history`). Rooms without history cost
//! nothing here: every function returns at once when the policy has none.

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::policy::History;
use crate::protocol::Since;
use crate::store::{Store, StoreError, StoredEvent, StreamHead};

/// Most events one `join` replays; a client further behind gets `recovered: false`.
pub const MAX_REPLAY: u64 = 1000;

/// The offset and epoch of the next event of `room`, if its namespace keeps
/// history: one write.
pub async fn allocate(
    store: &dyn Store,
    history: Option<History>,
    room: &str,
    now: u64,
) -> Result<Option<StreamHead>, StoreError> {
    match history {
        Some(h) => Ok(Some(store.next_offset(room, h.ttl_secs, now).await?)),
        None => Ok(None),
    }
}

/// Stores the frame of the event `head` allocated, until the history's TTL: one
/// write. It is stored before it is posted, so a member joining meanwhile finds
/// it in the history or receives it live (docs/data-model.md).
pub async fn keep(
    store: &dyn Store,
    history: Option<History>,
    room: &str,
    head: Option<&StreamHead>,
    frame: &str,
    now: u64,
) -> Result<(), StoreError> {
    match (history, head) {
        (Some(h), Some(head)) => {
            store
                .put_event(
                    room,
                    &head.epoch,
                    head.offset,
                    frame,
                    now + h.ttl_secs,
                    h.size,
                )
                .await
        }
        _ => Ok(()),
    }
}

/// Publishing to `room`, one home for `send` and the broadcast function: in a
/// namespace with history the event gets the stream's next offset, is rendered
/// with it and stored before the caller posts it; without, it is rendered as it
/// is. `render` makes the frame for the head (`None` without history).
pub async fn publish<E: From<StoreError>>(
    store: &dyn Store,
    history: Option<History>,
    room: &str,
    now: u64,
    render: impl FnOnce(Option<&StreamHead>) -> Result<Bytes, E>,
) -> Result<(Bytes, Option<StreamHead>), E> {
    let head = allocate(store, history, room, now).await?;
    let frame = render(head.as_ref())?;
    if head.is_some() {
        let text = std::str::from_utf8(&frame)
            .map_err(|e| StoreError::Corrupt(format!("a frame is not UTF-8: {e}")))?;
        keep(store, history, room, head.as_ref(), text, now).await?;
    }
    Ok((frame, head))
}

/// What a `join` with history learns: the stream's head and, when `since` could
/// be served, the events after it (`None`: not recoverable).
pub struct Recovery {
    pub head: StreamHead,
    pub replay: Option<Vec<StoredEvent>>,
}

/// Reads the head (and, for `since`, the events after it) of `room`'s stream.
/// Called after the membership is written: an event whose offset the head does
/// not show yet is posted after that write, so it reaches the member live.
pub async fn recover(
    store: &dyn Store,
    history: History,
    room: &str,
    since: Option<&Since>,
    now: u64,
) -> Result<Recovery, StoreError> {
    let head = store.stream_head(room, history.ttl_secs, now).await?;
    let Some(since) = since else {
        return Ok(Recovery { head, replay: None });
    };
    let behind = head.offset.checked_sub(since.offset);
    let servable =
        since.epoch == head.epoch && behind.is_some_and(|b| b <= history.size.min(MAX_REPLAY));
    if !servable {
        return Ok(Recovery { head, replay: None });
    }
    if since.offset == head.offset {
        return Ok(Recovery {
            head,
            replay: Some(Vec::new()),
        });
    }
    let events = store
        .events(room, &head.epoch, since.offset + 1, head.offset, now)
        .await?;
    // Events expire oldest first, so the first one missed being there means the
    // history no longer reaches back to `since`. A later one missing is still
    // being written by its sender, who posts it to this member live.
    let reaches = events.first().is_some_and(|e| e.offset == since.offset + 1);
    Ok(Recovery {
        head,
        replay: reaches.then_some(events),
    })
}

/// The latest `limit` retained events of `room`, or those before `before`, oldest
/// first, and the epoch they are in.
pub async fn read(
    store: &dyn Store,
    history: History,
    room: &str,
    limit: u64,
    before: Option<u64>,
    now: u64,
) -> Result<(String, Vec<StoredEvent>), StoreError> {
    let head = store.stream_head(room, history.ttl_secs, now).await?;
    let to = before.map_or(head.offset, |b| b.saturating_sub(1).min(head.offset));
    // Only the last `size` offsets are history, whatever is still stored.
    let oldest = head.offset.saturating_sub(history.size) + 1;
    let from = to.saturating_sub(limit - 1).max(oldest).max(1);
    let events = if to == 0 || from > to {
        Vec::new()
    } else {
        store.events(room, &head.epoch, from, to, now).await?
    };
    Ok((head.epoch, events))
}

/// A stored frame as raw JSON, to be sent as it was delivered.
pub fn raw(event: StoredEvent) -> Result<Box<RawValue>, StoreError> {
    RawValue::from_string(event.frame)
        .map_err(|e| StoreError::Corrupt(format!("stored event frame: {e}")))
}
