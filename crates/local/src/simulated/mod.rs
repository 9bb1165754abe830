//! Simulated room members (`roomcast dev --simulated-members ROOM=N`): members of
//! a room that are not sockets, so rooms of 100,000 or 1,000,000 members can be
//! measured on one machine.
//!
//! Each has a connection record and a membership in the store, like a connection
//! that joined, and an entry in one compact [`table::Table`] instead of the
//! connection registry: `@connections` posts to it (over HTTP or from the
//! in-process handlers, both through `connections::rules`) wait the injected
//! latency, take a token from the quota, are counted and dropped. No task and no
//! queue exist per member: a member is an index into vectors of atomics.
//!
//! - [`table`]: the ids, the per-member counters and the per-room figures.
//! - [`register`]: writing the members' records to the store at start-up.

pub mod register;
pub mod table;

pub use table::{RoomFigures, SimulatedRoom, Table};
