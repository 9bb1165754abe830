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
/// Events one read of a replay asks for: the replay reads, and posts, as it goes.
pub const REPLAY_CHUNK: u64 = 100;

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
/// be served, what to replay (`None`: not recoverable).
pub struct Recovery {
    pub head: StreamHead,
    pub replay: Option<Replay>,
}

/// The missed events of a recoverable `since`: offsets `from..=to` of the stream's
/// current epoch, of which the first [`REPLAY_CHUNK`] were read (`first`); the
/// rest are read by [`Replay::next_chunk`] as the replay goes.
#[derive(Debug)]
pub struct Replay {
    pub epoch: String,
    pub to: u64,
    /// The next offset to read.
    next: u64,
    pub first: Vec<StoredEvent>,
}

impl Replay {
    /// Nothing missed: `since` is the head.
    fn empty(head: &StreamHead) -> Self {
        Self {
            epoch: head.epoch.clone(),
            to: head.offset,
            next: head.offset + 1,
            first: Vec::new(),
        }
    }

    /// The next chunk of events, oldest first; `None` once every offset was read.
    /// Offsets no longer stored (a sender that failed between taking an offset and
    /// storing its event) are skipped.
    pub async fn next_chunk(
        &mut self,
        store: &dyn Store,
        room: &str,
        now: u64,
    ) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if self.next > self.to {
            return Ok(None);
        }
        let end = self.to.min(self.next + REPLAY_CHUNK - 1);
        let events = store.events(room, &self.epoch, self.next, end, now).await?;
        self.next = end + 1;
        Ok(Some(events))
    }
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
        let replay = Replay::empty(&head);
        return Ok(Recovery {
            head,
            replay: Some(replay),
        });
    }
    let mut replay = Replay {
        epoch: head.epoch.clone(),
        to: head.offset,
        next: since.offset + 1,
        first: Vec::new(),
    };
    let first = replay
        .next_chunk(store, room, now)
        .await?
        .unwrap_or_default();
    // Events expire oldest first, so the first one missed being there means the
    // history no longer reaches back to `since`. A later one missing is still
    // being written by its sender, who posts it to this member live.
    let reaches = first.first().is_some_and(|e| e.offset == since.offset + 1);
    replay.first = first;
    Ok(Recovery {
        head,
        replay: reaches.then_some(replay),
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
