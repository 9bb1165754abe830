//! Namespace policies: who may join a room, who may send to it, and how fast.
//!
//! One JSON document (docs/auth.md) configures every namespace; a namespace it does
//! not name gets the document's `default`, and fields a namespace leaves out come
//! from that default too. The document is parsed and checked once, at cold start.

pub mod ratelimit;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::auth::identity::Identity;
use crate::protocol::{ErrorCode, ProtocolError, namespace};

/// Who a rule lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Any connection, anonymous ones included.
    Anyone,
    /// Any connection with a user id (a verified token).
    Authenticated,
    /// Connections whose token carries this role.
    Role(String),
    /// Only the user the room is named after: `<namespace>:<userId>`.
    Owner,
    /// No client; only backend services (the broadcast function) publish.
    Nobody,
}

impl TryFrom<String> for Rule {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "anyone" => Ok(Self::Anyone),
            "authenticated" => Ok(Self::Authenticated),
            "owner" => Ok(Self::Owner),
            "nobody" => Ok(Self::Nobody),
            other => match other.strip_prefix("role:") {
                Some(role) if valid_role(role) => Ok(Self::Role(role.to_owned())),
                _ => Err(format!(
                    "unknown rule {other:?}: expected \"anyone\", \"authenticated\", \"owner\", \
                     \"nobody\" or \"role:<name>\" (a name without commas or spaces)"
                )),
            },
        }
    }
}

fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= 128
        && !role.contains(',')
        && !role.contains(char::is_whitespace)
}

impl Rule {
    fn allows(&self, identity: &Identity, room: &str) -> bool {
        match self {
            Self::Anyone => true,
            Self::Authenticated => identity.user_id.is_some(),
            Self::Role(role) => identity.roles.iter().any(|r| r == role),
            Self::Owner => match (identity.user_id.as_deref(), room.split_once(':')) {
                (Some(user), Some((_, owner))) => user == owner,
                _ => false,
            },
            Self::Nobody => false,
        }
    }
}

/// A per-connection, per-namespace limit: at most `limit` room frames (join, leave,
/// send) per fixed window of `window_secs`. A connection that reaches `close_after`
/// times the limit within one window is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u64,
    pub window_secs: u64,
    pub close_after: u64,
}

/// Longest window: a day. Counter items live for their window plus a margin.
pub const MAX_WINDOW_SECS: u64 = 86_400;

impl Default for RateLimit {
    /// Modest: 30 room frames per 10 s (3 a second on average, bursts allowed), and
    /// a connection that sends three times that in one window is closed.
    fn default() -> Self {
        Self {
            limit: 30,
            window_secs: 10,
            close_after: 3,
        }
    }
}

/// Largest `history.size`: events kept per room.
pub const MAX_HISTORY_SIZE: u64 = 1000;
/// Longest `history.ttlSecs`: a day.
pub const MAX_HISTORY_TTL_SECS: u64 = 86_400;

/// Most shards (`members.shards`) a namespace's rooms may spread their
/// memberships over.
pub const MAX_SHARDS: u16 = 64;

/// A namespace's event history: the last `size` events of each room, none older
/// than `ttl_secs`, kept for `join` recovery and the `history` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    pub size: u64,
    pub ttl_secs: u64,
}

/// The resolved policy of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePolicy {
    pub join: Rule,
    pub send: Rule,
    pub rate_limit: RateLimit,
    /// Offsets, history and recovery for the namespace's rooms (`None`: off).
    pub history: Option<History>,
    /// Whether members may list a room's members (the `presence` action).
    pub presence: bool,
    /// Whether members are told when others join or leave (needs `presence`).
    pub presence_events: bool,
    /// How many partition keys each room's memberships are spread over
    /// (`members.shards`, 1 to [`MAX_SHARDS`]): see [`crate::store::shard_of`].
    pub shards: u16,
}

impl NamespacePolicy {
    /// The safe default: authenticated users may join and send; modest rate limit.
    pub fn authenticated() -> Self {
        Self {
            join: Rule::Authenticated,
            send: Rule::Authenticated,
            rate_limit: RateLimit::default(),
            history: None,
            presence: false,
            presence_events: false,
            shards: 1,
        }
    }
}

/// What a frame asks to do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Join,
    Send,
    /// Read the room's history (`history` action): needs `history` in the policy.
    History,
    /// List the room's members (`presence` action): needs `presence`.
    Presence,
}

/// The rate-limit key of rooms under the `default` policy: every namespace the
/// document does not name shares this one counter (namespace names never contain `*`).
pub const DEFAULT_KEY: &str = "*";

/// Every namespace's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policies {
    pub default: NamespacePolicy,
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    /// The per-connection limit on every frame (room frames, pings, unknown actions,
    /// unparsable and refused frames alike). Its window is the default policy's,
    /// which every namespace shares.
    pub connection: RateLimit,
}

impl Default for Policies {
    /// What a deployment without ROOMCAST_POLICIES gets: [`NamespacePolicy::authenticated`]
    /// everywhere.
    fn default() -> Self {
        Self::with(NamespacePolicy::authenticated(), BTreeMap::new(), None)
    }
}

/// The document as written: every field optional, unknown fields refused (a typo
/// must not silently fall back to a default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    default: Option<PartialPolicy>,
    #[serde(default)]
    namespaces: BTreeMap<String, PartialPolicy>,
    /// The per-connection frame limit: `limit` and `closeAfter` (its window is the default's).
    #[serde(default)]
    connection: Option<PartialConnectionLimit>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartialConnectionLimit {
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    close_after: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartialPolicy {
    #[serde(default)]
    join: Option<Rule>,
    #[serde(default)]
    send: Option<Rule>,
    #[serde(default)]
    rate_limit: Option<PartialRateLimit>,
    #[serde(default)]
    history: Option<PartialHistory>,
    #[serde(default)]
    presence: Option<bool>,
    #[serde(default)]
    presence_events: Option<bool>,
    #[serde(default)]
    members: Option<PartialMembers>,
}

/// `members`: how a room's memberships are stored.
#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartialMembers {
    shards: u64,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartialHistory {
    size: u64,
    ttl_secs: u64,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rule::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartialRateLimit {
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    window_secs: Option<u64>,
    #[serde(default)]
    close_after: Option<u64>,
}

/// Why a policy document was refused; each message says what is wrong and where.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not JSON, an unknown field or an unknown rule.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}: rateLimit.limit must be at least 1")]
    LimitZero(String),
    #[error("{0}: rateLimit.windowSecs must be 1 to {MAX_WINDOW_SECS}")]
    Window(String),
    #[error("{0}: rateLimit.closeAfter must be at least 2 (a multiple of the limit)")]
    CloseAfter(String),
    #[error(
        "namespace {0:?}: names are at most 128 bytes of A-Z a-z 0-9 _ . @ - \
         (\"\" is the namespace of rooms without a colon)"
    )]
    NamespaceName(String),
    #[error(
        "namespaces.{name}: rateLimit.windowSecs must equal the default's ({default}): \
         every rate limit of a connection shares one window"
    )]
    SharedWindow { name: String, default: u64 },
    #[error("{0}: history.size must be 1 to {MAX_HISTORY_SIZE}")]
    HistorySize(String),
    #[error("{0}: history.ttlSecs must be 1 to {MAX_HISTORY_TTL_SECS}")]
    HistoryTtl(String),
    #[error("{0}: presenceEvents needs presence")]
    PresenceEvents(String),
    #[error("{0}: members.shards must be 1 to {MAX_SHARDS}")]
    Shards(String),
    #[error(
        "{0}: presenceEvents needs members.shards 1: a join or leave would be announced \
         to the whole sharded room in line, within the message function's 29 s \
         (presence listing stays available)"
    )]
    ShardedPresenceEvents(String),
    #[error("connection: limit must be at least 1")]
    ConnectionLimitZero,
    #[error("connection: closeAfter must be at least 2 (a multiple of the limit)")]
    ConnectionCloseAfter,
}

impl PartialPolicy {
    fn resolve(self, base: &NamespacePolicy, name: &str) -> Result<NamespacePolicy, PolicyError> {
        let r = self.rate_limit.unwrap_or_default();
        let rate_limit = RateLimit {
            limit: r.limit.unwrap_or(base.rate_limit.limit),
            window_secs: r.window_secs.unwrap_or(base.rate_limit.window_secs),
            close_after: r.close_after.unwrap_or(base.rate_limit.close_after),
        };
        if rate_limit.limit == 0 {
            return Err(PolicyError::LimitZero(name.to_owned()));
        }
        if !(1..=MAX_WINDOW_SECS).contains(&rate_limit.window_secs) {
            return Err(PolicyError::Window(name.to_owned()));
        }
        if rate_limit.close_after < 2 {
            return Err(PolicyError::CloseAfter(name.to_owned()));
        }
        let history = match self.history {
            None => base.history,
            Some(h) if !(1..=MAX_HISTORY_SIZE).contains(&h.size) => {
                return Err(PolicyError::HistorySize(name.to_owned()));
            }
            Some(h) if !(1..=MAX_HISTORY_TTL_SECS).contains(&h.ttl_secs) => {
                return Err(PolicyError::HistoryTtl(name.to_owned()));
            }
            Some(h) => Some(History {
                size: h.size,
                ttl_secs: h.ttl_secs,
            }),
        };
        let presence = self.presence.unwrap_or(base.presence);
        let presence_events = self.presence_events.unwrap_or(base.presence_events);
        if presence_events && !presence {
            return Err(PolicyError::PresenceEvents(name.to_owned()));
        }
        let shards = match self.members {
            None => base.shards,
            Some(m) => u16::try_from(m.shards)
                .ok()
                .filter(|k| (1..=MAX_SHARDS).contains(k))
                .ok_or_else(|| PolicyError::Shards(name.to_owned()))?,
        };
        if presence_events && shards > 1 {
            return Err(PolicyError::ShardedPresenceEvents(name.to_owned()));
        }
        Ok(NamespacePolicy {
            join: self.join.unwrap_or_else(|| base.join.clone()),
            send: self.send.unwrap_or_else(|| base.send.clone()),
            rate_limit,
            history,
            presence,
            presence_events,
            shards,
        })
    }
}

impl Policies {
    /// Builds the policies; `connection` overrides the default per-connection limit,
    /// twice the largest namespace limit (room frames to the busiest namespace plus
    /// as many pings and other frames), in the default's window.
    fn with(
        default: NamespacePolicy,
        namespaces: BTreeMap<String, NamespacePolicy>,
        connection: Option<PartialConnectionLimit>,
    ) -> Self {
        let largest = namespaces
            .values()
            .map(|p| p.rate_limit.limit)
            .fold(default.rate_limit.limit, u64::max);
        let c = connection.unwrap_or_default();
        let connection = RateLimit {
            limit: c.limit.unwrap_or_else(|| largest.saturating_mul(2)),
            window_secs: default.rate_limit.window_secs,
            close_after: c.close_after.unwrap_or(default.rate_limit.close_after),
        };
        Self {
            default,
            namespaces,
            connection,
        }
    }

    /// Anyone may join and send everywhere, with the default rate limit: `roomcast
    /// dev` without auth configuration, so the README quick start works.
    pub fn open() -> Self {
        Self::with(
            NamespacePolicy {
                join: Rule::Anyone,
                send: Rule::Anyone,
                rate_limit: RateLimit::default(),
                history: None,
                presence: false,
                presence_events: false,
                shards: 1,
            },
            BTreeMap::new(),
            None,
        )
    }

    /// Parses and checks a policy document; the error says what is wrong and where.
    pub fn parse(json: &str) -> Result<Self, PolicyError> {
        let doc: Document = serde_json::from_str(json)?;
        let default = doc
            .default
            .unwrap_or_default()
            .resolve(&NamespacePolicy::authenticated(), "default")?;
        let mut namespaces = BTreeMap::new();
        for (name, partial) in doc.namespaces {
            let valid_name = name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'));
            if !valid_name {
                return Err(PolicyError::NamespaceName(name));
            }
            let policy = partial.resolve(&default, &format!("namespaces.{name}"))?;
            // All of a connection's counters live in one item per window, so that a
            // frame costs one write: every namespace counts in the default's window.
            if policy.rate_limit.window_secs != default.rate_limit.window_secs {
                return Err(PolicyError::SharedWindow {
                    name,
                    default: default.rate_limit.window_secs,
                });
            }
            namespaces.insert(name, policy);
        }
        if let Some(c) = doc.connection {
            if c.limit == Some(0) {
                return Err(PolicyError::ConnectionLimitZero);
            }
            if c.close_after.is_some_and(|n| n < 2) {
                return Err(PolicyError::ConnectionCloseAfter);
            }
        }
        Ok(Self::with(default, namespaces, doc.connection))
    }

    /// Whether any namespace has presence events: only then does removing a gone
    /// connection read its user first, for the `leave` it announces.
    pub fn any_presence_events(&self) -> bool {
        self.default.presence_events || self.namespaces.values().any(|p| p.presence_events)
    }

    /// The policy of the namespace `room` is in.
    pub fn for_room(&self, room: &str) -> &NamespacePolicy {
        self.resolve(room).1
    }

    /// How many shards `room`'s memberships are spread over: its namespace's
    /// `members.shards`.
    pub fn shards(&self, room: &str) -> u16 {
        self.for_room(room).shards
    }

    /// The rate-limit key and policy of `room`: the configured namespace's name, or
    /// [`DEFAULT_KEY`] for every room under the default policy. Counting by this key,
    /// not by the namespace text, keeps a client from getting a fresh limit per
    /// made-up namespace.
    pub fn resolve(&self, room: &str) -> (&str, &NamespacePolicy) {
        match self.namespaces.get_key_value(namespace(room)) {
            Some((name, policy)) => (name.as_str(), policy),
            None => (DEFAULT_KEY, &self.default),
        }
    }

    /// Whether `identity` may do `action` in `room`; `forbidden` if not.
    pub fn check(
        &self,
        action: Action,
        room: &str,
        identity: &Identity,
    ) -> Result<(), ProtocolError> {
        let policy = self.for_room(room);
        let (rule, verb) = match action {
            Action::Join => (&policy.join, "join"),
            Action::Send => (&policy.send, "send to"),
            Action::History | Action::Presence => {
                let (enabled, what) = match action {
                    Action::History => (policy.history.is_some(), "history"),
                    _ => (policy.presence, "presence"),
                };
                return if enabled {
                    Ok(())
                } else {
                    Err(ProtocolError::new(
                        ErrorCode::Forbidden,
                        format!(
                            "{room:?} does not keep {what}: its namespace policy does not enable it"
                        ),
                    ))
                };
            }
        };
        if rule.allows(identity, room) {
            Ok(())
        } else {
            let why = match rule {
                Rule::Authenticated => "sign in first",
                Rule::Role(_) => "a role you do not have is required",
                Rule::Owner => "only its owner may",
                Rule::Nobody => "only backend services publish there",
                Rule::Anyone => "",
            };
            Err(ProtocolError::new(
                ErrorCode::Forbidden,
                format!("you may not {verb} {room:?}: {why}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, roles: &[&str]) -> Identity {
        Identity {
            user_id: Some(id.to_owned()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            ..Identity::default()
        }
    }

    #[test]
    fn documents_resolve_with_inheritance() {
        let p = Policies::parse(
            r#"{
              "default": {"join": "anyone", "rateLimit": {"limit": 5}},
              "namespaces": {
                "user": {"join": "owner", "send": "owner"},
                "admin": {"join": "role:admin", "send": "role:admin", "rateLimit": {"closeAfter": 4}},
                "news": {"send": "nobody"},
                "": {"join": "authenticated"}
              }
            }"#,
        )
        .unwrap();
        assert_eq!(p.default.join, Rule::Anyone);
        assert_eq!(p.default.send, Rule::Authenticated);
        assert_eq!(p.default.rate_limit.limit, 5);
        let admin = p.for_room("admin:ops");
        assert_eq!(
            admin.rate_limit,
            RateLimit {
                limit: 5,
                window_secs: 10,
                close_after: 4
            }
        );
        assert_eq!(p.for_room("news:today").join, Rule::Anyone);
        assert_eq!(p.for_room("lobby").join, Rule::Authenticated);
        assert_eq!(p.for_room("other:x"), &p.default);
        // Connection-wide limit: twice the largest namespace limit, default window.
        assert_eq!(
            p.connection,
            RateLimit {
                limit: 10,
                window_secs: 10,
                close_after: 3
            }
        );
    }

    #[test]
    fn rooms_under_the_default_policy_share_one_rate_key() {
        let p = Policies::parse(r#"{"namespaces": {"chat": {}, "": {}}}"#).unwrap();
        assert_eq!(p.resolve("chat:1").0, "chat");
        assert_eq!(p.resolve("lobby").0, "");
        // Every unnamed namespace resolves to the one default key.
        for room in ["a:1", "b:1", "zzz:x", "*:1"] {
            assert_eq!(p.resolve(room).0, DEFAULT_KEY, "{room}");
            assert_eq!(p.resolve(room).1, &p.default);
        }
        let c = Policies::parse(r#"{"connection": {"limit": 7, "closeAfter": 5}}"#).unwrap();
        assert_eq!(
            c.connection,
            RateLimit {
                limit: 7,
                window_secs: 10,
                close_after: 5
            }
        );
    }

    #[test]
    fn rules_decide() {
        let p = Policies::parse(
            r#"{"namespaces": {
                "user": {"join": "owner", "send": "owner"},
                "admin": {"join": "role:admin"},
                "news": {"join": "anyone", "send": "nobody"}
            }}"#,
        )
        .unwrap();
        let anon = Identity::default();
        let alice = user("alice", &[]);
        let root = user("root", &["admin", "ops"]);
        let code = |r: Result<(), ProtocolError>| r.map_err(|e| e.code);
        // Safe default: authenticated only.
        assert_eq!(
            code(p.check(Action::Join, "chat:1", &anon)),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(code(p.check(Action::Join, "chat:1", &alice)), Ok(()));
        assert_eq!(
            code(p.check(Action::Send, "lobby", &anon)),
            Err(ErrorCode::Forbidden)
        );
        // Owner rooms.
        assert_eq!(code(p.check(Action::Join, "user:alice", &alice)), Ok(()));
        assert_eq!(
            code(p.check(Action::Join, "user:alice", &root)),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            code(p.check(Action::Join, "user:alice:x", &alice)),
            Err(ErrorCode::Forbidden)
        );
        // `user` has no colon: it is in the "" namespace, under the default.
        assert_eq!(code(p.check(Action::Join, "user", &alice)), Ok(()));
        assert_eq!(
            code(p.check(Action::Join, "user:", &anon)),
            Err(ErrorCode::Forbidden)
        );
        // Roles.
        assert_eq!(code(p.check(Action::Join, "admin:x", &root)), Ok(()));
        assert_eq!(
            code(p.check(Action::Join, "admin:x", &alice)),
            Err(ErrorCode::Forbidden)
        );
        // Backend-only publishing.
        assert_eq!(code(p.check(Action::Join, "news:1", &anon)), Ok(()));
        assert_eq!(
            code(p.check(Action::Send, "news:1", &root)),
            Err(ErrorCode::Forbidden)
        );
        // Open.
        assert_eq!(
            code(Policies::open().check(Action::Send, "x", &anon)),
            Ok(())
        );
    }

    #[test]
    fn history_and_presence_are_opt_in_per_namespace() {
        let p = Policies::parse(
            r#"{"default": {"join": "anyone", "send": "anyone"}, "namespaces": {
                "chat": {"history": {"size": 100, "ttlSecs": 3600}, "presence": true, "presenceEvents": true},
                "game": {"presence": true}
            }}"#,
        )
        .unwrap();
        let chat = p.for_room("chat:1");
        assert_eq!(
            chat.history,
            Some(History {
                size: 100,
                ttl_secs: 3600
            })
        );
        assert!(chat.presence && chat.presence_events);
        let game = p.for_room("game:1");
        assert_eq!(game.history, None);
        assert!(game.presence && !game.presence_events);
        assert_eq!(p.for_room("lobby").history, None);
        let anon = Identity::default();
        let code = |r: Result<(), ProtocolError>| r.map_err(|e| e.code);
        assert_eq!(code(p.check(Action::History, "chat:1", &anon)), Ok(()));
        assert_eq!(
            code(p.check(Action::History, "game:1", &anon)),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(code(p.check(Action::Presence, "game:1", &anon)), Ok(()));
        assert_eq!(
            code(p.check(Action::Presence, "lobby", &anon)),
            Err(ErrorCode::Forbidden)
        );
    }

    #[test]
    fn shards_default_to_one_and_are_inherited() {
        let p = Policies::parse(
            r#"{"default": {"members": {"shards": 2}}, "namespaces": {
                "big": {"members": {"shards": 64}}, "plain": {}
            }}"#,
        )
        .unwrap();
        assert_eq!(p.shards("big:1"), 64);
        assert_eq!(p.shards("plain:1"), 2);
        assert_eq!(p.shards("elsewhere"), 2);
        assert_eq!(Policies::default().shards("big:1"), 1);
        assert_eq!(Policies::open().shards("big:1"), 1);
    }

    #[test]
    fn sharded_rooms_list_presence_and_one_shard_rooms_keep_events() {
        let p = Policies::parse(
            r#"{"default": {"presence": true, "presenceEvents": true}, "namespaces": {
                "big": {"members": {"shards": 8}, "presenceEvents": false},
                "chat": {"members": {"shards": 1}}
            }}"#,
        )
        .unwrap();
        let big = p.for_room("big:1");
        assert!(big.presence && !big.presence_events && big.shards == 8);
        let chat = p.for_room("chat:1");
        assert!(chat.presence_events && chat.shards == 1);
    }

    #[test]
    fn bad_documents_are_refused_with_a_reason() {
        for (doc, needle) in [
            ("not json", "expected"),
            (
                r#"{"namespaces":{"a":{"join":"everyone"}}}"#,
                "unknown rule",
            ),
            (r#"{"namespaces":{"a":{"join":"role:"}}}"#, "unknown rule"),
            (
                r#"{"namespaces":{"a":{"join":"role:a,b"}}}"#,
                "unknown rule",
            ),
            (r#"{"namespaces":{"a":{"jion":"anyone"}}}"#, "unknown field"),
            (r#"{"namespace":{}}"#, "unknown field"),
            (r#"{"namespaces":{"a:b":{}}}"#, "namespace \"a:b\""),
            (
                r#"{"namespaces":{"a":{"rateLimit":{"limit":0}}}}"#,
                "namespaces.a: rateLimit.limit",
            ),
            (
                r#"{"default":{"rateLimit":{"windowSecs":0}}}"#,
                "default: rateLimit.windowSecs",
            ),
            (
                r#"{"default":{"rateLimit":{"closeAfter":1}}}"#,
                "closeAfter",
            ),
            (r#"{"default":{"rateLimit":{"limit":-1}}}"#, "invalid value"),
            (
                r#"{"namespaces":{"a":{"rateLimit":{"windowSecs":60}}}}"#,
                "namespaces.a: rateLimit.windowSecs must equal",
            ),
            (r#"{"connection":{"limit":0}}"#, "connection: limit"),
            (
                r#"{"connection":{"closeAfter":1}}"#,
                "connection: closeAfter",
            ),
            (r#"{"connection":{"window":1}}"#, "unknown field"),
            (
                r#"{"namespaces":{"a":{"members":{"shards":0}}}}"#,
                "namespaces.a: members.shards must be 1 to 64",
            ),
            (
                r#"{"default":{"members":{"shards":65}}}"#,
                "default: members.shards must be 1 to 64",
            ),
            (
                r#"{"namespaces":{"a":{"members":{"shards":70000}}}}"#,
                "members.shards must be 1 to 64",
            ),
            (r#"{"namespaces":{"a":{"members":{}}}}"#, "missing field"),
            (
                r#"{"namespaces":{"a":{"members":{"shard":2}}}}"#,
                "unknown field",
            ),
            (
                r#"{"namespaces":{"a":{"history":{"size":0,"ttlSecs":60}}}}"#,
                "namespaces.a: history.size must be 1 to 1000",
            ),
            (
                r#"{"namespaces":{"a":{"history":{"size":1001,"ttlSecs":60}}}}"#,
                "history.size",
            ),
            (
                r#"{"default":{"history":{"size":10,"ttlSecs":86401}}}"#,
                "default: history.ttlSecs must be 1 to 86400",
            ),
            (
                r#"{"namespaces":{"a":{"history":{"size":10,"ttlSecs":0}}}}"#,
                "history.ttlSecs",
            ),
            (r#"{"namespaces":{"a":{"history":{"size":10}}}}"#, "ttlSecs"),
            (
                r#"{"namespaces":{"a":{"history":{"size":1,"ttlSecs":1,"max":2}}}}"#,
                "unknown field",
            ),
            (
                r#"{"namespaces":{"a":{"presenceEvents":true}}}"#,
                "namespaces.a: presenceEvents needs presence",
            ),
            (r#"{"namespaces":{"a":{"presence":"yes"}}}"#, "invalid type"),
            (
                r#"{"namespaces":{"a":{"members":{"shards":2},"presence":true,"presenceEvents":true}}}"#,
                "namespaces.a: presenceEvents needs members.shards 1",
            ),
            // Inherited either way: the default's events with a namespace's shards,
            // and the default's shards with a namespace's events.
            (
                r#"{"default":{"presence":true,"presenceEvents":true},"namespaces":{"a":{"members":{"shards":4}}}}"#,
                "namespaces.a: presenceEvents needs members.shards 1",
            ),
            (
                r#"{"default":{"members":{"shards":4},"presence":true,"presenceEvents":true}}"#,
                "default: presenceEvents needs members.shards 1",
            ),
            (
                r#"{"default":{"members":{"shards":4}},"namespaces":{"a":{"presence":true,"presenceEvents":true}}}"#,
                "namespaces.a: presenceEvents needs members.shards 1",
            ),
        ] {
            let err = Policies::parse(doc).unwrap_err();
            assert!(err.to_string().contains(needle), "{doc}: {err}");
        }
        assert_eq!(Policies::parse("{}").unwrap(), Policies::default());
    }
}
