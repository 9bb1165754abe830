//! Every name that crosses a boundary, in one place: route keys (template.yaml and
//! `roomcast dev` must agree with them), DynamoDB key and attribute names (the data
//! model in docs/data-model.md), and environment variables (the functions'
//! configuration in template.yaml).

/// Route keys of the WebSocket API, as API Gateway puts them in `requestContext.routeKey`.
pub mod route {
    pub const CONNECT: &str = "$connect";
    pub const DISCONNECT: &str = "$disconnect";
    pub const DEFAULT: &str = "$default";
    pub const JOIN: &str = "join";
    pub const LEAVE: &str = "leave";
    pub const SEND: &str = "send";
    pub const PING: &str = "ping";

    /// The custom routes served by the message function, besides `$default`.
    pub const MESSAGE_ROUTES: [&str; 4] = [JOIN, LEAVE, SEND, PING];
}

/// The single table's attribute names and key prefixes.
pub mod attr {
    /// Partition key: `conn#<connectionId>` or `room#<room>`.
    pub const PK: &str = "pk";
    /// Sort key: `meta` for a connection item, `conn#<connectionId>` for a membership.
    pub const SK: &str = "sk";
    /// The connection id, on every item: the hash key of [`BY_CONNECTION_INDEX`].
    pub const CID: &str = "cid";
    /// Epoch seconds after which the item is dead (the table's TTL attribute).
    pub const TTL: &str = "ttl";
    /// The authenticated user, on connection and membership items.
    pub const USER_ID: &str = "userId";
    /// Epoch milliseconds of `$connect`, on connection items.
    pub const CONNECTED_AT: &str = "connectedAt";
    /// Global secondary index: all items of one connection (hash `cid`, range `pk`, keys only).
    pub const BY_CONNECTION_INDEX: &str = "byConnection";

    pub const CONN_PREFIX: &str = "conn#";
    pub const ROOM_PREFIX: &str = "room#";
    pub const META_SK: &str = "meta";
}

/// Environment variables read by [`crate::config::Config::from_env`].
pub mod env {
    pub const TABLE: &str = "ROOMCAST_TABLE";
    pub const MANAGEMENT_ENDPOINT: &str = "ROOMCAST_MANAGEMENT_ENDPOINT";
    pub const MAX_MESSAGE_BYTES: &str = "ROOMCAST_MAX_MESSAGE_BYTES";
    pub const FANOUT_CONCURRENCY: &str = "ROOMCAST_FANOUT_CONCURRENCY";
    pub const ITEM_TTL_SECS: &str = "ROOMCAST_ITEM_TTL_SECS";
}

/// Keys of the authorizer context that API Gateway attaches to every event of a connection.
pub mod authorizer {
    pub const USER_ID: &str = "userId";
    pub const PRINCIPAL_ID: &str = "principalId";
}
