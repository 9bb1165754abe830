//! The simulated members' table: member `i` (over every simulated room, in the
//! order given) has the connection id [`member_id`]`(i)`, looks like one of API
//! Gateway's (16 characters of standard base64 ending in `=`) and starts with
//! [`ID_PREFIX`], so it is told apart from a socket's without a lookup.
//!
//! Per member: the posts accepted and the last `offset` seen (frames of rooms
//! with history carry one). A frame whose offset is the last one again counts as
//! a repeat, a smaller one as out of order. Per room: the posts accepted, those
//! two counts, and when the first and the last post were accepted.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use roomcast_core::store::now_millis;
use serde::{Deserialize, Serialize};

/// What every simulated member's connection id starts with.
pub const ID_PREFIX: &str = "SIM";
/// What it ends with: `A` keeps the last base64 digit's padding bits zero.
const ID_SUFFIX: &str = "A=";
/// Decimal digits of the member number in an id.
const ID_DIGITS: usize = 11;

/// The connection id of simulated member `index`, e.g. `SIM00000000042A=`.
pub fn member_id(index: usize) -> String {
    format!("{ID_PREFIX}{index:0ID_DIGITS$}{ID_SUFFIX}")
}

/// The member number in a simulated member's connection id, if it is one.
fn member_index(connection_id: &str) -> Option<usize> {
    let digits = connection_id
        .strip_prefix(ID_PREFIX)?
        .strip_suffix(ID_SUFFIX)?;
    if digits.len() != ID_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A room with simulated members, as asked for (`ROOM=N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedRoom {
    pub room: String,
    pub members: usize,
}

/// One room's counters.
#[derive(Debug)]
struct RoomCounters {
    room: String,
    /// The index of its first member.
    first: usize,
    members: usize,
    posts: AtomicU64,
    repeats: AtomicU64,
    out_of_order: AtomicU64,
    /// Epoch milliseconds; 0 before the first post.
    first_post_ms: AtomicU64,
    last_post_ms: AtomicU64,
}

/// One room's figures, read now (`GET /@simulated`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomFigures {
    pub room: String,
    pub members: usize,
    pub posts_accepted: u64,
    /// The fewest and the most posts any one member of the room accepted.
    pub min_per_member: u64,
    pub max_per_member: u64,
    /// Frames whose offset was the member's last one again.
    pub repeats: u64,
    /// Frames whose offset was below the member's last one.
    pub out_of_order: u64,
    /// Epoch milliseconds of the first and the last accepted post.
    pub first_post_ms: Option<u64>,
    pub last_post_ms: Option<u64>,
}

/// Every simulated member of the gateway.
#[derive(Debug, Default)]
pub struct Table {
    rooms: Vec<RoomCounters>,
    /// Posts accepted, by member.
    deliveries: Box<[AtomicU32]>,
    /// The last offset seen (0: none yet), by member.
    last_offset: Box<[AtomicU64]>,
}

/// The parts of a frame the counters read.
#[derive(Deserialize)]
struct Frame {
    offset: Option<u64>,
}

impl Table {
    /// The members of `rooms`, numbered in that order from 0.
    pub fn new(rooms: &[SimulatedRoom]) -> Self {
        let mut first = 0;
        let rooms: Vec<RoomCounters> = rooms
            .iter()
            .map(|r| {
                let counters = RoomCounters {
                    room: r.room.clone(),
                    first,
                    members: r.members,
                    posts: AtomicU64::new(0),
                    repeats: AtomicU64::new(0),
                    out_of_order: AtomicU64::new(0),
                    first_post_ms: AtomicU64::new(0),
                    last_post_ms: AtomicU64::new(0),
                };
                first += r.members;
                counters
            })
            .collect();
        Self {
            rooms,
            deliveries: (0..first).map(|_| AtomicU32::new(0)).collect(),
            last_offset: (0..first).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// Each room's name and its members' indexes.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, std::ops::Range<usize>)> {
        self.rooms
            .iter()
            .map(|r| (r.room.as_str(), r.first..r.first + r.members))
    }

    /// Whether `connection_id` is one of the simulated members.
    pub fn contains(&self, connection_id: &str) -> bool {
        member_index(connection_id).is_some_and(|i| i < self.deliveries.len())
    }

    /// Counts an accepted post of `data` to `connection_id`; `false` when it is not
    /// a simulated member.
    pub fn accept(&self, connection_id: &str, data: &Bytes) -> bool {
        let Some(index) = member_index(connection_id).filter(|&i| i < self.deliveries.len()) else {
            return false;
        };
        let Some(room) = self.rooms.iter().find(|r| index < r.first + r.members) else {
            return false;
        };
        let now = now_millis();
        let _ = room
            .first_post_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        room.last_post_ms.fetch_max(now, Ordering::Relaxed);
        room.posts.fetch_add(1, Ordering::Relaxed);
        self.deliveries[index].fetch_add(1, Ordering::Relaxed);
        let offset = serde_json::from_slice::<Frame>(data)
            .ok()
            .and_then(|f| f.offset);
        if let Some(offset) = offset {
            let last = self.last_offset[index].fetch_max(offset, Ordering::Relaxed);
            if last == offset {
                room.repeats.fetch_add(1, Ordering::Relaxed);
            } else if last > offset {
                room.out_of_order.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    /// Every room's figures, read now.
    pub fn figures(&self) -> Vec<RoomFigures> {
        self.rooms.iter().map(|r| self.room_figures(r)).collect()
    }

    fn room_figures(&self, r: &RoomCounters) -> RoomFigures {
        let counts = self.deliveries[r.first..r.first + r.members]
            .iter()
            .map(|d| u64::from(d.load(Ordering::Relaxed)));
        let (min, max) = counts.fold((u64::MAX, 0), |(lo, hi), n| (lo.min(n), hi.max(n)));
        let ms = |a: &AtomicU64| Some(a.load(Ordering::Relaxed)).filter(|&t| t > 0);
        RoomFigures {
            room: r.room.clone(),
            members: r.members,
            posts_accepted: r.posts.load(Ordering::Relaxed),
            min_per_member: if r.members == 0 { 0 } else { min },
            max_per_member: max,
            repeats: r.repeats.load(Ordering::Relaxed),
            out_of_order: r.out_of_order.load(Ordering::Relaxed),
            first_post_ms: ms(&r.first_post_ms),
            last_post_ms: ms(&r.last_post_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table::new(&[
            SimulatedRoom {
                room: "a".into(),
                members: 2,
            },
            SimulatedRoom {
                room: "b".into(),
                members: 3,
            },
        ])
    }

    #[test]
    fn ids_look_like_api_gateways_and_are_told_apart() {
        let id = member_id(42);
        assert_eq!(id, "SIM00000000042A=");
        assert_eq!(id.len(), 16);
        assert_eq!(member_index(&id), Some(42));
        let table = table();
        assert!(table.contains(&member_id(4)));
        assert!(!table.contains(&member_id(5)), "past the last member");
        for other in [
            "L0SM9cOFvHcCIhw=",
            "SIM0000000004A=",
            "SIM0000000000xA=",
            "",
        ] {
            assert!(!table.contains(other), "{other}");
        }
        assert!(!table.accept("L0SM9cOFvHcCIhw=", &Bytes::from_static(b"{}")));
    }

    #[test]
    fn posts_are_counted_by_member_and_offsets_checked() {
        let table = table();
        let frame = |offset: u64| Bytes::from(format!(r#"{{"type":"event","offset":{offset}}}"#));
        for member in 2..5 {
            assert!(table.accept(&member_id(member), &frame(1)));
        }
        assert!(table.accept(&member_id(2), &frame(2)));
        assert!(table.accept(&member_id(2), &frame(2)), "a repeat");
        assert!(table.accept(&member_id(3), &frame(3)));
        assert!(table.accept(&member_id(3), &frame(2)), "out of order");
        assert!(table.accept(&member_id(0), &Bytes::from_static(b"no offset")));
        let figures = table.figures();
        let (a, b) = (&figures[0], &figures[1]);
        assert_eq!((a.room.as_str(), a.members, a.posts_accepted), ("a", 2, 1));
        assert_eq!((a.min_per_member, a.max_per_member), (0, 1));
        assert_eq!((a.repeats, a.out_of_order), (0, 0));
        assert_eq!(
            (b.posts_accepted, b.min_per_member, b.max_per_member),
            (7, 1, 3)
        );
        assert_eq!((b.repeats, b.out_of_order), (1, 1));
        assert!(b.first_post_ms.is_some() && b.first_post_ms <= b.last_post_ms);
    }
}
