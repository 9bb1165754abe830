//! Server frames: what roomcast sends to clients, and the typed errors that become
//! `{"type":"error"}` frames.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
        /// For `send` to a sharded room: the event was handed to this many
        /// workers, one per shard, which deliver it after the ack.
        #[serde(skip_serializing_if = "Option::is_none")]
        workers: Option<u16>,
        /// In a room with history: for `join`, where the room's stream is now; for
        /// `send`, the event's place in it.
        #[serde(skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// For a `join` with `since`: whether the missed events were replayed.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// For a `join` whose replay was cut short (`recovered: false`): the offset
        /// through which the missed events did arrive; rejoin with it as `since`.
        #[serde(rename = "replayedTo", skip_serializing_if = "Option::is_none")]
        replayed_to: Option<u64>,
    },
    /// The reply to `history`: stored event frames, oldest first.
    History {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        room: &'a str,
        epoch: &'a str,
        events: &'a [Box<RawValue>],
        /// Whether older events were left out to keep the reply within
        /// [`crate::limits::MAX_REPLY_BYTES`]; `before` is where they end.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
        /// With `truncated`: the `before` that asks for the events left out.
        #[serde(skip_serializing_if = "Option::is_none")]
        before: Option<u64>,
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
    /// The reply to `ping`, with the connection's own API Gateway connection id.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a RawValue>,
        #[serde(rename = "connectionId", skip_serializing_if = "Option::is_none")]
        connection_id: Option<&'a str>,
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
        /// With `truncated`: the page token (`after`) of the members left out.
        #[serde(skip_serializing_if = "Option::is_none")]
        after: Option<String>,
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
            workers: None,
            offset: None,
            epoch: None,
            recovered: None,
            replayed_to: None,
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
                after: None,
            },
        };
        let v: Value = serde_json::from_str(&list.to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"presence","id":9,"room":"r","members":[{"userId":null,"connections":2}],"count":2})
        );
        let pong = ServerFrame::Pong {
            id: None,
            connection_id: Some("c="),
        };
        let v: Value = serde_json::from_str(&pong.to_json()).unwrap();
        assert_eq!(v, json!({"type":"pong","connectionId":"c="}));
        let e = ProtocolError::new(ErrorCode::NotMember, "join first");
        let v: Value = serde_json::from_str(&ServerFrame::error(Some(&id), &e).to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"error","id":9,"code":"not_member","message":"join first"})
        );
    }
}
