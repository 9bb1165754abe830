//! A broadcast request: parsed and validated from its JSON text (docs/broadcast.md),
//! with the event frame its recipients receive.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fanout;
use crate::limits::GATEWAY_MAX_PAYLOAD;
use crate::metrics::Counter;
use crate::policy::Policies;
use crate::protocol::{MAX_EVENT_BYTES, Sender, ServerFrame, validate_room};
use crate::store::StoreError;
use crate::store::StreamHead;

/// Longest user id accepted as a `user` audience, in bytes.
pub const MAX_USER_BYTES: usize = 256;
/// Most connection ids in a `connections` audience or an `except` list.
pub const MAX_IDS: usize = 10_000;
/// Longest conflation key, in bytes.
pub const MAX_CONFLATE_BYTES: usize = 256;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;
/// Who a broadcast goes to: the one of `room`, `user`, `connections` or `all` a
/// request names. [`fanout::Audience`] is the same, borrowed, as the fan-out reads it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    Room(String),
    User(String),
    Connections(Vec<String>),
    All,
}

impl Audience {
    /// The counter of a broadcast request to this audience, by its kind.
    pub fn counter(&self) -> Counter {
        match self {
            Self::Room(_) => Counter::BroadcastRoom,
            Self::User(_) => Counter::BroadcastUser,
            Self::Connections(_) => Counter::BroadcastConnections,
            Self::All => Counter::BroadcastAll,
        }
    }
}

/// A validated broadcast request.
#[derive(Debug, Clone)]
pub struct Broadcast {
    pub audience: Audience,
    pub event: String,
    /// The event's `data`, verbatim; `null` when absent.
    pub data: Box<RawValue>,
    /// Connections not to post to.
    pub except: Vec<String>,
    /// SQS only: of the messages of one batch with the same key, only the latest is sent.
    pub conflate: Option<String>,
    /// The caller's idempotency key: a second broadcast with the same key within
    /// [`super::IDEMPOTENCY_TTL`] is skipped. Queued messages without one use
    /// their SQS messageId.
    pub idempotency_key: Option<String>,
}

/// The request as sent. Unknown fields are refused, so a typo such as `"rooms"`
/// is an error rather than a broadcast to nobody.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    room: Option<String>,
    user: Option<String>,
    connections: Option<Vec<String>>,
    all: Option<bool>,
    event: Option<String>,
    data: Option<Box<RawValue>>,
    #[serde(default)]
    except: Vec<String>,
    conflate: Option<String>,
    #[serde(rename = "idempotencyKey")]
    idempotency_key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// The request is malformed; resending it unchanged fails again.
    #[error("invalid broadcast: {0}")]
    Invalid(String),
    /// The event frame exceeds what one `@connections` POST carries.
    #[error("event frame is {0} bytes; API Gateway posts at most {GATEWAY_MAX_PAYLOAD} bytes")]
    TooLarge(usize),
    /// Reading recipients failed; the broadcast may have reached some of them.
    #[error("reading recipients failed: {}", crate::error_chain(.0))]
    Store(#[from] StoreError),
    #[error("no @connections endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT")]
    NoEndpoint,
    /// A sharded room's jobs could not be handed to the workers; the event is
    /// published (it has its offset) but may have reached none of its members.
    #[error("handing the fan-out to workers failed: {}", crate::error_chain(.0))]
    Dispatch(#[from] crate::workers::DispatchError),
}

impl BroadcastError {
    /// The `errorType` Lambda reports for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "InvalidBroadcast",
            Self::TooLarge(_) => "PayloadTooLarge",
            Self::Store(_) => "StoreError",
            Self::NoEndpoint => "Misconfigured",
            Self::Dispatch(_) => "DispatchError",
        }
    }
}

impl From<BroadcastError> for lambda_runtime::Diagnostic {
    fn from(e: BroadcastError) -> Self {
        Self {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}

pub(super) fn invalid(message: impl Into<String>) -> BroadcastError {
    BroadcastError::Invalid(message.into())
}

fn check_ids(name: &str, ids: &[String]) -> Result<(), BroadcastError> {
    if ids.len() > MAX_IDS {
        return Err(invalid(format!(
            "\"{name}\" lists {} ids; at most {MAX_IDS}",
            ids.len()
        )));
    }
    if ids
        .iter()
        .any(|id| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "\"{name}\" ids must be 1 to 128 bytes without control characters"
        )));
    }
    Ok(())
}

impl Broadcast {
    /// Parses and validates one request's JSON text.
    pub fn parse(text: &str) -> Result<Self, BroadcastError> {
        let wire: Wire = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let audience = match (wire.room, wire.user, wire.connections, wire.all) {
            (Some(room), None, None, None) => {
                validate_room(&room).map_err(|e| invalid(e.message))?;
                Audience::Room(room)
            }
            (None, Some(user), None, None) => {
                if user.is_empty() || user.len() > MAX_USER_BYTES {
                    return Err(invalid(format!(
                        "\"user\" must be 1 to {MAX_USER_BYTES} bytes"
                    )));
                }
                Audience::User(user)
            }
            (None, None, Some(ids), None) => {
                if ids.is_empty() {
                    return Err(invalid("\"connections\" must list at least one id"));
                }
                check_ids("connections", &ids)?;
                Audience::Connections(ids)
            }
            (None, None, None, Some(true)) => Audience::All,
            (None, None, None, Some(false)) => {
                return Err(invalid("\"all\" must be true when present"));
            }
            _ => {
                return Err(invalid(
                    "exactly one target is needed: \"room\", \"user\", \"connections\" or \"all\"",
                ));
            }
        };
        let event = wire.event.ok_or_else(|| invalid("missing \"event\""))?;
        if event.is_empty() || event.len() > MAX_EVENT_BYTES || event.chars().any(char::is_control)
        {
            return Err(invalid(format!(
                "\"event\" must be 1 to {MAX_EVENT_BYTES} bytes without control characters"
            )));
        }
        check_ids("except", &wire.except)?;
        if let Some(key) = &wire.conflate
            && (key.is_empty() || key.len() > MAX_CONFLATE_BYTES)
        {
            return Err(invalid(format!(
                "\"conflate\" must be 1 to {MAX_CONFLATE_BYTES} bytes"
            )));
        }
        if let Some(key) = &wire.idempotency_key
            && (key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY_BYTES
                || key.chars().any(char::is_control))
        {
            return Err(invalid(format!(
                "\"idempotencyKey\" must be 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes without control characters"
            )));
        }
        let data = match wire.data {
            Some(data) => data,
            None => RawValue::from_string("null".to_owned()).map_err(|e| invalid(e.to_string()))?,
        };
        Ok(Self {
            audience,
            event,
            data,
            except: wire.except,
            conflate: wire.conflate,
            idempotency_key: wire.idempotency_key,
        })
    }

    /// The event frame members receive, checked against API Gateway's post limit;
    /// `head` is the event's place in a history room's stream.
    pub fn frame(&self, ts: u64, head: Option<&StreamHead>) -> Result<Bytes, BroadcastError> {
        let room = match &self.audience {
            Audience::Room(room) => Some(room.as_str()),
            _ => None,
        };
        let frame = serde_json::to_vec(&ServerFrame::Event {
            room,
            event: &self.event,
            data: &self.data,
            from: Sender::SERVICE,
            ts,
            offset: head.map(|h| h.offset),
            epoch: head.map(|h| h.epoch.as_str()),
        })
        .map_err(|e| invalid(e.to_string()))?;
        if frame.len() > GATEWAY_MAX_PAYLOAD {
            return Err(BroadcastError::TooLarge(frame.len()));
        }
        Ok(Bytes::from(frame))
    }
}

impl Audience {
    /// The audience as the fan-out engine reads it: a room in all the shards its
    /// namespace's policy spreads it over.
    pub fn view(&self, policies: &Policies) -> fanout::Audience<'_> {
        match self {
            Self::Room(room) => fanout::Audience::Room {
                room,
                shards: policies.shards(room),
            },
            Self::User(user) => fanout::Audience::User(user),
            Self::Connections(ids) => fanout::Audience::Connections(ids),
            Self::All => fanout::Audience::All,
        }
    }
}
