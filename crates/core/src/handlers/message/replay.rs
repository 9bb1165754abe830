//! Recovery's replay: the events a rejoining connection missed, posted to it
//! before its `join` ack, within bounds that keep the ack inside API Gateway's
//! 29 s integration timeout: at most [`MAX_REPLAY_BYTES`] of events and
//! [`REPLAY_BUDGET`](crate::config::REPLAY_BUDGET) of time (`Config::replay_budget`).
//! A client that asked for it (`"pack": true`) gets them packed into `replay`
//! frames of up to [`MAX_PACKED_BYTES`], so a thousand small events take a
//! handful of `@connections` posts instead of a thousand.
//!
//! A replay cut short by a bound or a failed post still tells the client where
//! its copy of the stream now ends (the ack's `replayedTo`). The event bytes it
//! delivered are charged to the connection's rate limit afterwards
//! ([`super::charge_replay`]).

use std::time::Instant;

use bytes::Bytes;

use super::{Refusal, Route, internal};
use crate::config::GATEWAY_MAX_PAYLOAD;
use crate::fanout::{Audience, Fanout};
use crate::store::StoredEvent;
use crate::stream::Replay;

/// Event bytes one `join` replays at most.
pub const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;
/// Largest packed frame: API Gateway's 128 KB message limit less headroom for the
/// frame's own envelope.
pub const MAX_PACKED_BYTES: usize = GATEWAY_MAX_PAYLOAD - 1024;

/// How a replay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replayed {
    /// Every missed event was posted.
    Complete,
    /// Cut short: the connection has the events through this offset.
    Partial { to: u64 },
}

/// Posts `replay`'s events to the joining connection, oldest first. Returns how
/// it ended and the event bytes delivered (packed frames' envelopes aside).
pub(super) async fn replay(
    route: &Route<'_>,
    room: &str,
    mut replay: Replay,
    since: u64,
    pack: bool,
    started: Instant,
    now: u64,
) -> Result<(Replayed, usize), Refusal> {
    let app = route.app;
    let endpoint = route.endpoint()?;
    let mut out = Outbox {
        fanout: Fanout::for_app(app, &endpoint),
        to: [route.connection_id.to_owned()],
        packed: pack.then(|| Packed::new(room)),
        delivered: since,
        bytes: 0,
        sent: 0,
    };
    let mut chunk = Some(std::mem::take(&mut replay.first));
    while let Some(events) = chunk {
        for event in events {
            let within = out.bytes + event.frame.len() <= MAX_REPLAY_BYTES
                && started.elapsed() < app.config.replay_budget;
            if !within || !out.push(event).await? {
                return out.cut_short(route).await;
            }
        }
        chunk = replay
            .next_chunk(app.store.as_ref(), room, now)
            .await
            .map_err(internal)?;
    }
    let ended = match out.flush().await? {
        true => Replayed::Complete,
        false => Replayed::Partial { to: out.delivered },
    };
    Ok((ended, out.sent))
}

/// Where replayed events go: straight to the connection, or into a packed frame
/// first. `delivered`: the last offset the connection is known to have; `bytes`:
/// the event bytes taken, `sent`: those delivered.
struct Outbox<'a> {
    fanout: Fanout<'a>,
    to: [String; 1],
    packed: Option<Packed>,
    delivered: u64,
    bytes: usize,
    sent: usize,
}

impl Outbox<'_> {
    /// Takes one event; `false` when a post failed for good.
    async fn push(&mut self, event: StoredEvent) -> Result<bool, Refusal> {
        self.bytes += event.frame.len();
        let Some(packed) = self.packed.as_mut() else {
            let offset = event.offset;
            let len = event.frame.len();
            return self.post(event.frame, offset, len).await;
        };
        if !packed.fits(&event.frame) && !self.flush().await? {
            return Ok(false);
        }
        let packed = self.packed.as_mut().expect("packing stays on");
        if packed.fits(&event.frame) {
            packed.add(event);
            return Ok(true);
        }
        // Too large to pack even alone: it goes as the event frame it is.
        let offset = event.offset;
        let len = event.frame.len();
        self.post(event.frame, offset, len).await
    }

    /// Posts what is packed; `false` when the post failed for good.
    async fn flush(&mut self) -> Result<bool, Refusal> {
        let Some((frame, last, events)) = self.packed.as_mut().and_then(Packed::take) else {
            return Ok(true);
        };
        self.post(frame, last, events).await
    }

    /// Posts `frame`, carrying events through `offset` of `events` bytes.
    async fn post(&mut self, frame: String, offset: u64, events: usize) -> Result<bool, Refusal> {
        let sent = self
            .fanout
            .to(
                Audience::Connections(&self.to),
                &[],
                Bytes::from(frame),
                crate::store::now_secs(),
            )
            .await
            .map_err(internal)?;
        if sent.delivered == 1 {
            self.delivered = offset;
            self.sent += events;
        }
        Ok(sent.delivered == 1)
    }

    /// Stops the replay: posts what is already packed and says how far it got.
    async fn cut_short(mut self, route: &Route<'_>) -> Result<(Replayed, usize), Refusal> {
        self.flush().await?;
        tracing::warn!(
            connection_id = route.connection_id,
            replayed_to = self.delivered,
            bytes = self.bytes,
            "replay cut short"
        );
        Ok((Replayed::Partial { to: self.delivered }, self.sent))
    }
}

/// A `replay` frame being filled: `{"type":"replay","room":…,"events":[…]}`, each
/// event the frame as it was delivered.
struct Packed {
    head: String,
    events: String,
    last: Option<u64>,
    /// The packed events' bytes, without their commas.
    bytes: usize,
}

impl Packed {
    fn new(room: &str) -> Self {
        // A room name is a JSON string; serializing a &str cannot fail.
        let room = serde_json::to_string(room).unwrap_or_default();
        Self {
            head: format!(r#"{{"type":"replay","room":{room},"events":["#),
            events: String::new(),
            last: None,
            bytes: 0,
        }
    }

    /// Whether `frame` still fits, with its comma and the closing `]}`.
    fn fits(&self, frame: &str) -> bool {
        self.head.len() + self.events.len() + 1 + frame.len() + 2 <= MAX_PACKED_BYTES
    }

    fn add(&mut self, event: StoredEvent) {
        if !self.events.is_empty() {
            self.events.push(',');
        }
        self.events.push_str(&event.frame);
        self.bytes += event.frame.len();
        self.last = Some(event.offset);
    }

    /// The frame, its last offset and its events' bytes, leaving the pack empty;
    /// `None` when empty.
    fn take(&mut self) -> Option<(String, u64, usize)> {
        let last = self.last.take()?;
        let frame = format!("{}{}]}}", self.head, std::mem::take(&mut self.events));
        Some((frame, last, std::mem::take(&mut self.bytes)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(offset: u64, len: usize) -> StoredEvent {
        StoredEvent {
            offset,
            frame: format!(r#"{{"o":{offset},"pad":"{}"}}"#, "x".repeat(len)),
        }
    }

    #[test]
    fn packs_valid_json_up_to_the_limit() {
        let mut packed = Packed::new("chat:\"q\"");
        assert!(packed.take().is_none());
        let mut n = 0;
        while packed.fits(&event(n, 1000).frame) {
            packed.add(event(n, 1000));
            n += 1;
        }
        let (frame, last, bytes) = packed.take().unwrap();
        assert_eq!(last, n - 1);
        assert_eq!(
            bytes,
            (0..n).map(|i| event(i, 1000).frame.len()).sum::<usize>()
        );
        assert!(frame.len() <= MAX_PACKED_BYTES, "{}", frame.len());
        assert!(frame.len() > MAX_PACKED_BYTES - 1100, "{}", frame.len());
        let value: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(value["type"], "replay");
        assert_eq!(value["room"], "chat:\"q\"");
        assert_eq!(value["events"].as_array().unwrap().len() as u64, n);
        assert_eq!(value["events"][0]["o"], 0);
        assert!(packed.take().is_none());
        assert!(!packed.fits(&event(0, MAX_PACKED_BYTES).frame));
    }
}
