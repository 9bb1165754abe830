//! Protocol v1: the JSON text frames between clients and roomcast (docs/protocol.md).
//!
//! Parsing happens in two steps. The frame is first split into its fields as raw
//! JSON, without looking at their types, so that the request `id` can be echoed on
//! any later error; then each field is checked. `data` and `id` stay raw JSON
//! borrowed from the frame, so they are never decoded and re-encoded on the way out.
//!
//! `client` parses client frames, `server` builds server frames and errors; this
//! file holds the limits and the room-name rules both use.

mod client;
mod server;

pub use client::{ClientFrame, Request, Since, parse};
pub use server::{
    Change, ErrorCode, PresenceBody, PresentUser, ProtocolError, Sender, ServerFrame,
};

/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 128;
/// Longest event name, in bytes.
pub const MAX_EVENT_BYTES: usize = 128;
/// Deepest nesting of arrays and objects accepted in a frame. `data` is kept as raw
/// JSON, which serde_json does not depth-check, so frames are checked up front.
pub const MAX_DEPTH: usize = 32;
/// Longest request id (a string id, or a number's text), in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Most events one `history` request returns.
pub const MAX_HISTORY_LIMIT: u64 = 100;
/// Longest `presence` page token (`after`) a client may send back, in bytes.
pub const MAX_CURSOR_BYTES: usize = 256;
/// Longest epoch a client may send back in `since`, in bytes.
pub const MAX_EPOCH_BYTES: usize = 64;

/// A room name is 1 to 128 bytes of `[A-Za-z0-9_.:@-]`.
pub fn validate_room(room: &str) -> Result<(), ProtocolError> {
    let ok = !room.is_empty()
        && room.len() <= MAX_ROOM_BYTES
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::bad_request(format!(
            "\"room\" must be 1 to {MAX_ROOM_BYTES} bytes of A-Z a-z 0-9 _ . : @ -"
        )))
    }
}

/// The namespace of a room: the part before its first `:`, or `""` when it has none.
pub fn namespace(room: &str) -> &str {
    room.split_once(':').map_or("", |(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_charset_and_namespace() {
        for good in ["a", "chat:general", "user:alice@example.com", "A-Z_0.9"] {
            assert!(validate_room(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a#b", "é", "a/b", "a\n"] {
            assert!(validate_room(bad).is_err(), "{bad:?}");
        }
        assert_eq!(namespace("chat:general"), "chat");
        assert_eq!(namespace("user:a:b"), "user");
        assert_eq!(namespace("lobby"), "");
    }
}
