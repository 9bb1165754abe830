//! Protocol v1: the JSON text frames between clients and roomcast (docs/protocol.md).
//!
//! Parsing happens in two steps. The frame is first split into its fields as raw
//! JSON, without looking at their types, so that the request `id` can be echoed on
//! any later error; then each field is checked. `data` and `id` stay raw JSON
//! borrowed from the frame, so they are never decoded and re-encoded on the way out.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::names::route;

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
/// Longest epoch a client may send back in `since`, in bytes.
pub const MAX_EPOCH_BYTES: usize = 64;

/// The error codes of `{"type":"error"}` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing field or a field of the wrong type or size.
    BadRequest,
    /// An `action` that no route serves.
    UnknownAction,
    /// `send` to a room the sender has not joined.
    NotMember,
    /// A frame over the configured size limit.
    TooLarge,
    /// Refused by the namespace's policy.
    Forbidden,
    /// Over the namespace's rate limit for this connection.
    RateLimited,
    /// The connection's token has expired; the connection is being closed.
    TokenExpired,
    /// roomcast failed; the request may be retried.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::UnknownAction => "unknown_action",
            Self::NotMember => "not_member",
            Self::TooLarge => "too_large",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::TokenExpired => "token_expired",
            Self::Internal => "internal",
        }
    }
}

/// A refusal that goes back to the client as an error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
}

/// A parsed, validated client frame. Borrowed from the frame's text.
#[derive(Debug, Clone)]
pub enum ClientFrame<'a> {
    Join {
        room: Cow<'a, str>,
        /// Where the client's copy of the room's stream ends, for recovery.
        since: Option<Since>,
    },
    Leave {
        room: Cow<'a, str>,
    },
    Send {
        room: Cow<'a, str>,
        event: Cow<'a, str>,
        data: &'a RawValue,
    },
    Ping,
    /// The room's stored events: the latest `limit`, or those before `before`.
    History {
        room: Cow<'a, str>,
        limit: u64,
        before: Option<u64>,
    },
    /// The room's members.
    Presence {
        room: Cow<'a, str>,
    },
}

/// A position in a room's event stream, as a client sends it back in `join`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

/// A frame and its request id; the id is kept even when the rest is refused.
#[derive(Debug)]
pub struct Request<'a> {
    pub id: Option<&'a RawValue>,
    pub frame: Result<ClientFrame<'a>, ProtocolError>,
}

/// The fields of a frame as raw JSON, before their types are checked.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow, default)]
    action: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    room: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    since: Option<&'a RawValue>,
    #[serde(borrow, default)]
    limit: Option<&'a RawValue>,
    #[serde(borrow, default)]
    before: Option<&'a RawValue>,
}

/// The JSON `null`, for a `send` without `data`.
fn null() -> &'static RawValue {
    // A RawValue can only be built by parsing; this literal always parses.
    static NULL: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    NULL.get_or_init(|| RawValue::from_string("null".to_owned()).expect("null is JSON"))
}

/// Parses and validates one client frame of at most `max_bytes` bytes.
pub fn parse(body: &str, max_bytes: usize) -> Request<'_> {
    if body.len() > max_bytes {
        return Request {
            id: None,
            frame: Err(ProtocolError::new(
                ErrorCode::TooLarge,
                format!("frame is {} bytes; the limit is {max_bytes}", body.len()),
            )),
        };
    }
    if exceeds_depth(body.as_bytes(), MAX_DEPTH) {
        return Request {
            id: None,
            frame: Err(ProtocolError::bad_request(format!(
                "frame nests deeper than {MAX_DEPTH} levels"
            ))),
        };
    }
    // A struct also deserializes from a JSON array; only objects are frames.
    if !body.trim_start().starts_with('{') {
        let message = match serde_json::from_str::<serde::de::IgnoredAny>(body) {
            Ok(_) => "a frame must be a JSON object".to_owned(),
            Err(e) => format!("frame is not valid JSON: {e}"),
        };
        return Request {
            id: None,
            frame: Err(ProtocolError::bad_request(message)),
        };
    }
    let raw: RawFrame<'_> = match serde_json::from_str(body) {
        Ok(raw) => raw,
        Err(e) => {
            let message = if e.is_data() {
                format!("a frame must be a JSON object with unique keys: {e}")
            } else {
                format!("frame is not valid JSON: {e}")
            };
            return Request {
                id: None,
                frame: Err(ProtocolError::bad_request(message)),
            };
        }
    };
    let id = match raw.id.map(check_id).transpose() {
        Ok(id) => id,
        Err(e) => {
            return Request {
                id: None,
                frame: Err(e),
            };
        }
    };
    Request {
        id,
        frame: frame(&raw),
    }
}

fn frame<'a>(raw: &RawFrame<'a>) -> Result<ClientFrame<'a>, ProtocolError> {
    let action = string_field("action", raw.action)?;
    match action.as_deref() {
        Some(route::JOIN) => Ok(ClientFrame::Join {
            room: room_field(raw.room)?,
            since: since_field(raw.since)?,
        }),
        Some(route::LEAVE) => Ok(ClientFrame::Leave {
            room: room_field(raw.room)?,
        }),
        Some(route::SEND) => Ok(ClientFrame::Send {
            room: room_field(raw.room)?,
            event: event_field(raw.event)?,
            data: match raw.data {
                Some(data) => data,
                None => null(),
            },
        }),
        Some(route::PING) => Ok(ClientFrame::Ping),
        Some(route::HISTORY) => {
            let room = room_field(raw.room)?;
            let limit = number_field("limit", raw.limit)?
                .ok_or_else(|| ProtocolError::bad_request("missing \"limit\""))?;
            if !(1..=MAX_HISTORY_LIMIT).contains(&limit) {
                return Err(ProtocolError::bad_request(format!(
                    "\"limit\" must be 1 to {MAX_HISTORY_LIMIT}"
                )));
            }
            Ok(ClientFrame::History {
                room,
                limit,
                before: number_field("before", raw.before)?,
            })
        }
        Some(route::PRESENCE) => Ok(ClientFrame::Presence {
            room: room_field(raw.room)?,
        }),
        Some(other) => Err(ProtocolError::new(
            ErrorCode::UnknownAction,
            format!(
                "unknown action {:?}; expected one of {ACTIONS}",
                truncate(other, 64)
            ),
        )),
        None => Err(ProtocolError::new(
            ErrorCode::UnknownAction,
            format!("missing \"action\"; expected one of {ACTIONS}"),
        )),
    }
}

/// The actions, as error messages list them.
const ACTIONS: &str = "join, leave, send, ping, history, presence";

/// A non-negative integer field; `null` is absent.
fn number_field(name: &str, raw: Option<&RawValue>) -> Result<Option<u64>, ProtocolError> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => serde_json::from_str::<u64>(text).map(Some).map_err(|_| {
            ProtocolError::bad_request(format!("\"{name}\" must be a non-negative integer"))
        }),
    }
}

/// `since`: `{"offset": <non-negative integer>, "epoch": <string>}`; `null` is absent.
fn since_field(raw: Option<&RawValue>) -> Result<Option<Since>, ProtocolError> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some(text) => {
            let refused = || {
                ProtocolError::bad_request(format!(
                    "\"since\" must be {{\"offset\": <non-negative integer>, \"epoch\": <string of at most {MAX_EPOCH_BYTES} bytes>}}"
                ))
            };
            let since: Since = serde_json::from_str(text).map_err(|_| refused())?;
            if since.epoch.len() > MAX_EPOCH_BYTES {
                return Err(refused());
            }
            Ok(Some(since))
        }
    }
}

/// Whether brackets outside strings nest deeper than `max`. One pass, no allocation;
/// malformed JSON is left for the parser to report.
fn exceeds_depth(body: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in body {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn check_id(raw: &RawValue) -> Result<&RawValue, ProtocolError> {
    let text = raw.get();
    let ok = text.len() <= MAX_ID_BYTES
        && matches!(text.as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'));
    if ok {
        Ok(raw)
    } else {
        Err(ProtocolError::bad_request(format!(
            "\"id\" must be a string or a number of at most {MAX_ID_BYTES} bytes"
        )))
    }
}

fn string_field<'a>(
    name: &str,
    raw: Option<&'a RawValue>,
) -> Result<Option<Cow<'a, str>>, ProtocolError> {
    raw.map(|raw| {
        serde_json::from_str::<Cow<'a, str>>(raw.get())
            .map_err(|_| ProtocolError::bad_request(format!("\"{name}\" must be a string")))
    })
    .transpose()
}

fn room_field(raw: Option<&RawValue>) -> Result<Cow<'_, str>, ProtocolError> {
    let room =
        string_field("room", raw)?.ok_or_else(|| ProtocolError::bad_request("missing \"room\""))?;
    validate_room(&room)?;
    Ok(room)
}

fn event_field(raw: Option<&RawValue>) -> Result<Cow<'_, str>, ProtocolError> {
    let event = string_field("event", raw)?
        .ok_or_else(|| ProtocolError::bad_request("missing \"event\""))?;
    if event.is_empty() || event.len() > MAX_EVENT_BYTES || event.chars().any(char::is_control) {
        return Err(ProtocolError::bad_request(format!(
            "\"event\" must be 1 to {MAX_EVENT_BYTES} bytes without control characters"
        )));
    }
    Ok(event)
}

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

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Who sent an event: a member (`connectionId`, `userId`) or, for backend
/// broadcasts, the service (both `null`, plus `service: true`, so clients read the
/// same keys on either).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sender<'a> {
    pub connection_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub service: bool,
}

impl<'a> Sender<'a> {
    /// The `from` of a backend broadcast.
    pub const SERVICE: Sender<'static> = Sender {
        connection_id: None,
        user_id: None,
        service: true,
    };

    /// The `from` of an event a member sent.
    pub fn member(connection_id: &'a str, user_id: Option<&'a str>) -> Self {
        Self {
            connection_id: Some(connection_id),
            user_id,
            service: false,
        }
    }
}

/// Frames from roomcast to clients.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame<'a> {
    /// An event; `room` is `null` for backend broadcasts to other than a room.
    Event {
        room: Option<&'a str>,
        event: &'a str,
        data: &'a RawValue,
        from: Sender<'a>,
        ts: u64,
        /// In a room with history: the event's place in the room's stream.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
    },
    Ack {
        id: &'a RawValue,
        ok: bool,
        action: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// For `send`: the members the event was posted to.
        #[serde(skip_serializing_if = "Option::is_none")]
        recipients: Option<usize>,
        /// For `send`: how many of those posts API Gateway accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        delivered: Option<usize>,
        /// In a room with history: for `join`, where the room's stream is now; for
        /// `send`, the event's place in it.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// For a `join` with `since`: whether the missed events were replayed.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// The reply to `history`: stored event frames, oldest first.
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        room: &'a str,
        epoch: &'a str,
        events: &'a [Box<RawValue>],
    },
    /// The reply to `presence` (`members`, `count`), or a member joining or
    /// leaving (`change`, `member`).
    Presence {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        room: &'a str,
        #[serde(flatten)]
        body: PresenceBody<'a>,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        code: ErrorCode,
        message: &'a str,
    },
}

/// One user's connections in a `presence` reply (`user_id` `None`: anonymous).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresentUser {
    pub user_id: Option<String>,
    pub connections: usize,
}

/// Whether a presence change is a join or a leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Join,
    Leave,
}

/// What a `presence` frame says.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PresenceBody<'a> {
    List {
        members: Vec<PresentUser>,
        count: usize,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Change {
        change: Change,
        member: Sender<'a>,
    },
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every field is a string, number or raw JSON.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization failed"}"#.to_owned()
        })
    }
}

impl<'a> ServerFrame<'a> {
    pub fn error(id: Option<&'a RawValue>, err: &'a ProtocolError) -> Self {
        Self::Error {
            id,
            code: err.code,
            message: &err.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const MAX: usize = 32 * 1024;

    fn ok(body: &str) -> ClientFrame<'_> {
        parse(body, MAX).frame.unwrap()
    }

    fn err(body: &str) -> (Option<String>, ErrorCode) {
        let req = parse(body, MAX);
        (
            req.id.map(|i| i.get().to_owned()),
            req.frame.unwrap_err().code,
        )
    }

    #[test]
    fn parses_every_action() {
        assert!(matches!(
            ok(r#"{"action":"join","room":"chat:1"}"#),
            ClientFrame::Join { room, since: None } if room == "chat:1"
        ));
        assert!(matches!(
            ok(r#"{"action":"leave","room":"a","id":3}"#),
            ClientFrame::Leave { room } if room == "a"
        ));
        assert!(matches!(ok(r#"{"action":"ping"}"#), ClientFrame::Ping));
        match ok(r#"{"action":"send","room":"r","event":"e","data":{"x":[1, 2]},"id":"q"}"#) {
            ClientFrame::Send { room, event, data } => {
                assert_eq!((room.as_ref(), event.as_ref()), ("r", "e"));
                assert_eq!(data.get(), r#"{"x":[1, 2]}"#);
            }
            other => panic!("{other:?}"),
        }
        match ok(r#"{"action":"send","room":"r","event":"e"}"#) {
            ClientFrame::Send { data, .. } => assert_eq!(data.get(), "null"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        assert!(matches!(
            ok(r#"{"action":"jo\u0069n","room":"r\u006fom"}"#),
            ClientFrame::Join { room, .. } if room == "room"
        ));
    }

    #[test]
    fn refusals_carry_codes_and_keep_the_id() {
        assert_eq!(err("not json"), (None, ErrorCode::BadRequest));
        assert_eq!(err("[1,2]"), (None, ErrorCode::BadRequest));
        assert_eq!(
            err(r#"{"action":"join","action":"ping"}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"action":"dance","id":7}"#),
            (Some("7".into()), ErrorCode::UnknownAction)
        );
        assert_eq!(
            err(r#"{"id":"x"}"#),
            (Some("\"x\"".into()), ErrorCode::UnknownAction)
        );
        assert_eq!(err(r#"{"action":5}"#).1, ErrorCode::BadRequest);
        assert_eq!(
            err(r#"{"action":"join","id":"a"}"#),
            (Some("\"a\"".into()), ErrorCode::BadRequest)
        );
        assert_eq!(
            err(r#"{"action":"join","room":7}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"action":"join","room":"a b"}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"action":"join","room":""}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"action":"send","room":"a"}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"action":"send","room":"a","event":""}"#).1,
            ErrorCode::BadRequest
        );
        assert_eq!(
            err(r#"{"action":"ping","id":{"a":1}}"#),
            (None, ErrorCode::BadRequest)
        );
        // A null id is no id.
        let req = parse(r#"{"action":"ping","id":null}"#, MAX);
        assert!(req.id.is_none() && req.frame.is_ok());
        let long = format!(r#"{{"action":"join","room":"{}"}}"#, "a".repeat(129));
        assert_eq!(err(&long).1, ErrorCode::BadRequest);
        let max = format!(r#"{{"action":"join","room":"{}"}}"#, "a".repeat(128));
        assert!(parse(&max, MAX).frame.is_ok());
    }

    #[test]
    fn since_history_and_presence_are_checked() {
        match ok(r#"{"action":"join","room":"r","since":{"offset":5,"epoch":"e1"}}"#) {
            ClientFrame::Join { since, .. } => assert_eq!(
                since,
                Some(Since {
                    offset: 5,
                    epoch: "e1".into()
                })
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ok(r#"{"action":"join","room":"r","since":null}"#),
            ClientFrame::Join { since: None, .. }
        ));
        for bad in [
            r#"{"action":"join","room":"r","since":{"offset":-1,"epoch":"e"}}"#,
            r#"{"action":"join","room":"r","since":{"offset":"1","epoch":"e"}}"#,
            r#"{"action":"join","room":"r","since":{"offset":1.5,"epoch":"e"}}"#,
            r#"{"action":"join","room":"r","since":{"offset":1}}"#,
            r#"{"action":"join","room":"r","since":{"offset":1,"epoch":2}}"#,
            r#"{"action":"join","room":"r","since":7}"#,
            r#"{"action":"history","room":"r"}"#,
            r#"{"action":"history","room":"r","limit":0}"#,
            r#"{"action":"history","room":"r","limit":101}"#,
            r#"{"action":"history","room":"r","limit":5,"before":-2}"#,
            r#"{"action":"history","limit":5}"#,
            r#"{"action":"presence"}"#,
        ] {
            assert_eq!(err(bad).1, ErrorCode::BadRequest, "{bad}");
        }
        assert!(matches!(
            ok(r#"{"action":"history","room":"r","limit":100,"before":3}"#),
            ClientFrame::History {
                limit: 100,
                before: Some(3),
                ..
            }
        ));
        assert!(matches!(
            ok(r#"{"action":"presence","room":"r"}"#),
            ClientFrame::Presence { room } if room == "r"
        ));
    }

    #[test]
    fn size_limit_is_checked_first() {
        let body = format!(r#"{{"action":"ping","pad":"{}"}}"#, "x".repeat(100));
        assert_eq!(
            parse(&body, 50).frame.unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert!(parse(&body, body.len()).frame.is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = format!(
            r#"{{"action":"send","room":"r","event":"e","data":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        let refused = parse(&body, usize::MAX).frame.map(|_| ()).unwrap_err();
        assert_eq!(refused.code, ErrorCode::BadRequest);
        // The limit counts the frame object itself; brackets inside strings do not count.
        let nest = |n: usize| {
            format!(
                r#"{{"action":"send","room":"r","event":"e","data":{}{}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(parse(&nest(MAX_DEPTH - 1), MAX).frame.is_ok());
        assert!(parse(&nest(MAX_DEPTH), MAX).frame.is_err());
        let quoted = format!(
            r#"{{"action":"send","room":"r","event":"e","data":"{}\\\"{}"}}"#,
            "[".repeat(100),
            "{".repeat(100)
        );
        assert!(parse(&quoted, MAX).frame.is_ok());
    }

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

    #[test]
    fn server_frames_match_the_protocol() {
        let data = RawValue::from_string(r#"{"n":1}"#.into()).unwrap();
        let id = RawValue::from_string("9".into()).unwrap();
        let event = ServerFrame::Event {
            room: Some("r"),
            event: "e",
            data: &data,
            from: Sender::member("c=", None),
            ts: 5,
            offset: None,
            epoch: None,
        };
        let v: Value = serde_json::from_str(&event.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"event","room":"r","event":"e","data":{"n":1},"from":{"connectionId":"c=","userId":null},"ts":5})
        );
        let ack = ServerFrame::Ack {
            id: &id,
            ok: true,
            action: "send",
            room: Some("r"),
            recipients: Some(2),
            delivered: Some(1),
            offset: None,
            epoch: None,
            recovered: None,
        };
        let v: Value = serde_json::from_str(&ack.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"ack","id":9,"ok":true,"action":"send","room":"r","recipients":2,"delivered":1})
        );
        let change = ServerFrame::Presence {
            id: None,
            room: "r",
            body: PresenceBody::Change {
                change: Change::Leave,
                member: Sender::member("c=", Some("u")),
            },
        };
        let v: Value = serde_json::from_str(&change.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence","room":"r","change":"leave","member":{"connectionId":"c=","userId":"u"}})
        );
        let list = ServerFrame::Presence {
            id: Some(&id),
            room: "r",
            body: PresenceBody::List {
                members: vec![PresentUser {
                    user_id: None,
                    connections: 2,
                }],
                count: 2,
                truncated: false,
            },
        };
        let v: Value = serde_json::from_str(&list.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence","id":9,"room":"r","members":[{"userId":null,"connections":2}],"count":2})
        );
        let v: Value = serde_json::from_str(&ServerFrame::Pong { id: None }.to_json()).unwrap();
        assert_eq!(v, json!({"type":"pong"}));
        let e = ProtocolError::new(ErrorCode::NotMember, "join first");
        let v: Value = serde_json::from_str(&ServerFrame::error(Some(&id), &e).to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","id":9,"code":"not_member","message":"join first"})
        );
    }
}
