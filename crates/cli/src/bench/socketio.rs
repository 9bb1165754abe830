//! The Engine.IO v4 / Socket.IO v5 packets the bench speaks to a Socket.io 4
//! server (`--target socketio`), as text frames.

/// Engine.IO ping from the server; answered with [`PONG`].
pub const PING: &str = "2";
pub const PONG: &str = "3";
/// Connect the default namespace; the server answers `40{"sid":...}`.
pub const CONNECT: &str = "40";
pub const CONNECT_ERROR: &str = "44";
/// An event with ack id 1 (`42` + id); its ack comes back as [`JOINED`].
pub const JOIN_ACK_ID: &str = "421";
pub const JOINED: &str = "431";
/// An event frame as the server emits it to the room: `42["event",data]`.
pub const EVENT_PREFIX: &str = "42[\"event\",";
