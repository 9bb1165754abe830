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
    pub const HISTORY: &str = "history";
    pub const PRESENCE: &str = "presence";
    // The message routes, with their policy actions and counters, are declared in
    // crate::routes::MessageRoute.
}

/// The function binaries (functions/*), named as cargo-lambda builds them and as
/// template.yaml's `Metadata.BuildProperties.Binary` names them; `cargo lambda
/// watch` serves each under its binary name.
pub mod binary {
    pub const CONNECT: &str = "connect";
    pub const DISCONNECT: &str = "disconnect";
    pub const MESSAGE: &str = "message";
    pub const AUTHORIZER: &str = "authorizer";
    pub const BROADCAST: &str = "broadcast";

    /// Every binary, in the order they are usually listed.
    pub const ALL: [&str; 5] = [CONNECT, DISCONNECT, MESSAGE, AUTHORIZER, BROADCAST];
}

/// The single table's attribute names and key prefixes.
pub mod attr {
    /// Partition key: `conn#<connectionId>`, or `room#<room>` (`room#<room>#<shard>`
    /// for shards after the first).
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
    /// The user of a connection item, set only on connection items (and only when
    /// the user is known): the hash key of the sparse [`BY_USER_INDEX`].
    pub const UID: &str = "uid";
    /// Global secondary index: a user's connection items (hash `uid`, range `pk`,
    /// projecting `cid` and `ttl`), for broadcasts to a user.
    pub const BY_USER_INDEX: &str = "byUser";

    /// The roles from the token, on connection items (a list of strings).
    pub const ROLES: &str = "roles";
    /// Epoch seconds at which the connection's token expires, on connection items.
    pub const TOKEN_EXP: &str = "tokenExp";
    /// The connection-wide frame count of a rate-limit counter item.
    pub const COUNT: &str = "n";
    /// Prefix of a counter item's per-key counts, `n#<key>` (the policy's namespace
    /// name, or `*` for rooms under the default policy).
    pub const KEY_COUNT_PREFIX: &str = "n#";
    /// Sort key prefix of rate-limit counters, `rate#*#<window start>` (one item per
    /// connection and window),
    /// kept in the connection's partition (pk `conn#<id>`); `$disconnect` leaves
    /// them to TTL.
    pub const RATE_PREFIX: &str = "rate#";

    /// A broadcast's idempotency record: pk `bcast#<key>`, sk [`CLAIM_SK`], with
    /// a `ttl` (no `cid`: no index entry).
    pub const BROADCAST_PREFIX: &str = "bcast#";
    /// Sort key of a broadcast's idempotency record.
    pub const CLAIM_SK: &str = "claim";

    /// A room's event stream partition: `hist#<room>`, holding the stream head
    /// (sk [`STREAM_SK`]) and the retained events (sk `e#<epoch>#<offset>`).
    pub const HIST_PREFIX: &str = "hist#";
    /// Sort key of a room's stream head.
    pub const STREAM_SK: &str = "stream";
    /// Sort key prefix of a stored event, `e#<epoch>#<20-digit offset>`.
    pub const EVENT_PREFIX: &str = "e#";
    /// The stream's epoch, on the head.
    pub const EPOCH: &str = "epoch";
    /// The stream's last allocated offset, on the head.
    pub const OFFSET: &str = "offset";
    /// A stored event's frame, as delivered.
    pub const FRAME: &str = "frame";

    pub const CONN_PREFIX: &str = "conn#";
    pub const ROOM_PREFIX: &str = "room#";
    /// Between a room and its shard in a membership partition key,
    /// `room#<room>#<shard>` (shard 0 has no suffix); room names contain no `#`.
    pub const SHARD_SEPARATOR: char = '#';
    pub const META_SK: &str = "meta";
}

/// Environment variables read by [`crate::config::Config::from_env`].
pub mod env {
    pub const TABLE: &str = "ROOMCAST_TABLE";
    pub const MANAGEMENT_ENDPOINT: &str = "ROOMCAST_MANAGEMENT_ENDPOINT";
    pub const MAX_MESSAGE_BYTES: &str = "ROOMCAST_MAX_MESSAGE_BYTES";
    pub const FANOUT_CONCURRENCY: &str = "ROOMCAST_FANOUT_CONCURRENCY";
    pub const ITEM_TTL_SECS: &str = "ROOMCAST_ITEM_TTL_SECS";
    /// Namespace policies: a JSON document, or the path of a file holding one (docs/auth.md).
    pub const POLICIES: &str = "ROOMCAST_POLICIES";
    /// Instead of [`POLICIES`]: the Parameter Store name of the document.
    pub const POLICIES_PARAMETER: &str = "ROOMCAST_POLICIES_PARAMETER";
    /// HS256 shared secret for the authorizer (local runs).
    pub const JWT_SECRET: &str = "ROOMCAST_JWT_SECRET";
    /// Instead of [`JWT_SECRET`]: the Parameter Store name of the secret (a
    /// SecureString), as deployed stacks give it.
    pub const JWT_SECRET_PARAMETER: &str = "ROOMCAST_JWT_SECRET_PARAMETER";
    /// JWKS URL for RS256/ES256 tokens.
    pub const JWKS_URL: &str = "ROOMCAST_JWKS_URL";
    pub const JWT_ISSUER: &str = "ROOMCAST_JWT_ISSUER";
    pub const JWT_AUDIENCE: &str = "ROOMCAST_JWT_AUDIENCE";
    /// Clock skew allowed on exp and nbf, in seconds.
    pub const JWT_LEEWAY_SECS: &str = "ROOMCAST_JWT_LEEWAY_SECS";
    /// `true` lets clients without a token connect anonymously.
    pub const ALLOW_ANONYMOUS: &str = "ROOMCAST_ALLOW_ANONYMOUS";
    /// Comma-separated origins allowed to connect (`*` alone: any).
    pub const ALLOWED_ORIGINS: &str = "ROOMCAST_ALLOWED_ORIGINS";
    /// `true` refuses handshakes without an `Origin` header.
    pub const REQUIRE_ORIGIN: &str = "ROOMCAST_REQUIRE_ORIGIN";
    /// The broadcast function's name or ARN, for `roomcast broadcast`.
    pub const BROADCAST_FUNCTION: &str = "ROOMCAST_BROADCAST_FUNCTION";
    /// The account's `@connections` budget in posts per second (`ManagementRps`).
    pub const MANAGEMENT_RPS: &str = "ROOMCAST_MANAGEMENT_RPS";
    /// Workers running big rooms' fan-outs at once (`FanoutWorkers`).
    pub const FANOUT_WORKERS: &str = "ROOMCAST_FANOUT_WORKERS";
    /// The FIFO queue of big rooms' fan-out jobs.
    pub const FANOUT_QUEUE_URL: &str = "ROOMCAST_FANOUT_QUEUE_URL";
    /// The stage metrics are reported under where no event names it (the broadcast function).
    pub const STAGE: &str = "ROOMCAST_STAGE";
}

/// Keys of the authorizer context that API Gateway attaches to every event of a connection.
pub mod authorizer {
    /// The error message a Lambda authorizer fails with to make API Gateway answer
    /// the handshake with 401 (matched exactly).
    pub const UNAUTHORIZED: &str = "Unauthorized";
    pub const USER_ID: &str = "userId";
    pub const PRINCIPAL_ID: &str = "principalId";
    /// The token's roles, comma-joined (context values must be strings, numbers or booleans).
    pub const ROLES: &str = "roles";
    /// The token's expiry, epoch seconds.
    pub const EXP: &str = "exp";
    /// The clock-skew leeway (seconds) the authorizer allowed past `exp`; the
    /// handlers apply the same one.
    pub const LEEWAY: &str = "leeway";
}
