//! Client frames: the frames clients send, parsed in two steps (raw fields, then
//! each field checked) into a [`Request`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    ErrorCode, MAX_CURSOR_BYTES, MAX_DEPTH, MAX_EPOCH_BYTES, MAX_EVENT_BYTES, MAX_HISTORY_LIMIT,
    MAX_ID_BYTES, ProtocolError, validate_room,
};
use crate::names::route;

/// A parsed, validated client frame. Borrowed from the frame's text.
#[derive(Debug, Clone)]
pub enum ClientFrame<'a> {
    Join {
        room: Cow<'a, str>,
        /// Where the client's copy of the room's stream ends, for recovery.
        since: Option<Since>,
        /// Whether the client takes replayed events packed into `replay` frames.
        pack: bool,
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
    /// The room's members: from the first, or after the page token `after` that
    /// a cut reply gave.
    Presence {
        room: Cow<'a, str>,
        after: Option<Cow<'a, str>>,
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
    #[serde(borrow, default)]
    after: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pack: Option<&'a RawValue>,
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
            pack: bool_field("pack", raw.pack)?.unwrap_or(false),
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
            after: after_field(raw.after)?,
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

/// `after`: a `presence` page token, a string of 1 to [`MAX_CURSOR_BYTES`] bytes;
/// `null` is absent.
fn after_field(raw: Option<&RawValue>) -> Result<Option<Cow<'_, str>>, ProtocolError> {
    if raw.is_some_and(|r| r.get() == "null") {
        return Ok(None);
    }
    let after = string_field("after", raw)?;
    if after
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.len() > MAX_CURSOR_BYTES)
    {
        return Err(ProtocolError::bad_request(format!(
            "\"after\" must be a page token of 1 to {MAX_CURSOR_BYTES} bytes"
        )));
    }
    Ok(after)
}

/// A boolean field; `null` is absent.
fn bool_field(name: &str, raw: Option<&RawValue>) -> Result<Option<bool>, ProtocolError> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ProtocolError::bad_request(format!(
            "\"{name}\" must be true or false"
        ))),
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

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ClientFrame::Join { room, since: None, pack: false } if room == "chat:1"
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
    fn join_takes_pack_as_a_boolean() {
        assert!(matches!(
            ok(r#"{"action":"join","room":"r","pack":true}"#),
            ClientFrame::Join { pack: true, .. }
        ));
        assert!(matches!(
            ok(r#"{"action":"join","room":"r","pack":null}"#),
            ClientFrame::Join { pack: false, .. }
        ));
        assert_eq!(
            err(r#"{"action":"join","room":"r","pack":"yes"}"#).1,
            ErrorCode::BadRequest
        );
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
            ClientFrame::Presence { room, after: None } if room == "r"
        ));
    }

    #[test]
    fn presence_takes_a_page_token() {
        assert!(matches!(
            ok(r#"{"action":"presence","room":"r","after":"c#x=","id":1}"#),
            ClientFrame::Presence { after: Some(a), .. } if a == "c#x="
        ));
        assert!(matches!(
            ok(r#"{"action":"presence","room":"r","after":null}"#),
            ClientFrame::Presence { after: None, .. }
        ));
        let long = format!(
            r#"{{"action":"presence","room":"r","after":"{}"}}"#,
            "a".repeat(257)
        );
        for bad in [
            r#"{"action":"presence","room":"r","after":""}"#,
            r#"{"action":"presence","room":"r","after":5}"#,
            long.as_str(),
        ] {
            let request = parse(bad, 4096);
            assert_eq!(
                request.frame.unwrap_err().code,
                ErrorCode::BadRequest,
                "{bad}"
            );
        }
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
}
