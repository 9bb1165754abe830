//! The connection/room store: a port ([`Store`]) and its two adapters,
//! [`memory::MemoryStore`] for unit tests and `roomcast dev`, and
//! [`dynamo::DynamoStore`] for Lambda. Both pass the same conformance suite
//! (crates/core/tests/store_conformance.rs).
//!
//! A room's memberships are spread over the shards its namespace's policy asks
//! for (`members.shards`, K): a connection's membership sits in shard
//! [`shard_of`]`(connection id, K)`, and every membership method names its shard.
//! Shard 0 is the room's only shard when K is 1.
//!
//! Every read takes `now` (epoch seconds) and ignores items whose TTL has passed:
//! a missed `$disconnect` leaves items behind, and DynamoDB deletes expired items
//! only lazily.

pub mod dynamo;
#[cfg(any(test, feature = "test-util"))]
pub mod failing;
pub mod memory;

use async_trait::async_trait;

/// The shard of a room with `shards` shards that holds `connection_id`'s
/// membership: FNV-1a (64 bits) of the id's bytes, mixed by murmur3's `fmix64`
/// so that every bit of the id reaches the low bits, modulo `shards` (0 is taken
/// as 1). Without the mix, a modulo by a power of two would keep only the low
/// bits of each byte. Stable across processes and releases: every function
/// computes it alone, and a membership is found only where it was written.
pub fn shard_of(connection_id: &str, shards: u16) -> u16 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = connection_id
        .bytes()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    // The remainder is below `shards`, so it fits.
    (h % u64::from(shards.max(1))) as u16
}

/// A connection, as stored at `$connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    /// Epoch milliseconds, from the `$connect` event.
    pub connected_at: u64,
    /// The authenticated user, from the authorizer context.
    pub user_id: Option<String>,
    /// The token's roles, from the authorizer context.
    pub roles: Vec<String>,
    /// Epoch seconds at which the connection's token expires (`None`: anonymous).
    pub token_expires_at: Option<u64>,
    /// Epoch seconds after which the record is dead.
    pub expires_at: u64,
}

/// A connection's membership of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub connection_id: String,
    pub user_id: Option<String>,
    /// Epoch seconds after which the membership is dead.
    pub expires_at: u64,
}

/// One page of a room's live members, in connection-id order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberPage {
    pub members: Vec<Member>,
    /// Where the next page starts; `None` on the last page. Opaque to callers.
    pub next: Option<String>,
}

/// One page of live connection ids (a user's connections, or all connections).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionPage {
    pub connection_ids: Vec<String>,
    /// When each of `connection_ids` expires (epoch seconds), in the same order:
    /// read with an earlier `now`, a page also holds connections ended since,
    /// which the fan-out tells apart by these.
    pub expires_at: Vec<u64>,
    /// Where the next page starts; `None` on the last page. Opaque to callers.
    pub next: Option<String>,
}

/// The counts of a rate counter item after one frame was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    /// Every frame of the connection in the window.
    pub all: u64,
    /// The frames counted under the key given, if one was.
    pub key: Option<u64>,
}

/// What [`Store::remove_connection`] removed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Removed {
    /// Items deleted: the connection and its memberships. Its rate counters are
    /// left to TTL (free, where a delete costs 2 write units).
    pub items: usize,
    /// The rooms the connection was a member of, in name order, each once
    /// (whatever shard held the membership).
    pub rooms: Vec<String>,
}

/// Where a room's event stream is: its epoch and the last offset allocated in it
/// (0 before the first event of the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub epoch: String,
    pub offset: u64,
}

/// One retained event of a room's stream: its offset and its frame as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub offset: u64,
    pub frame: String,
}

/// A new random epoch: 16 hex digits, so two streams of one room never share one.
pub fn new_epoch() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A DynamoDB call failed; the SDK's error is the source.
    #[error("DynamoDB {operation} failed")]
    Backend {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("table {0} did not become ACTIVE within 60 s")]
    NotActive(String),
    #[error("stored item is malformed: {0}")]
    Corrupt(String),
    #[error("DynamoDB left {0} deletes unprocessed after retries")]
    Unprocessed(usize),
    #[error("invalid page cursor")]
    BadCursor,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// How many rooms have members, where counting them costs nothing (the
    /// in-memory store); `roomcast dev`'s `/metrics` reports it.
    fn room_count(&self) -> Option<usize> {
        None
    }

    /// Records a new connection: one write.
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError>;

    /// The connection's record, if it exists and has not expired.
    async fn connection(
        &self,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Connection>, StoreError>;

    /// Adds (or refreshes) a membership in `shard` of `room`: one write. Joining
    /// twice is not an error.
    async fn join(&self, room: &str, shard: u16, member: &Member) -> Result<(), StoreError>;

    /// Removes a membership from `shard` of `room`: one write. Returns whether it
    /// existed.
    async fn leave(&self, room: &str, shard: u16, connection_id: &str) -> Result<bool, StoreError>;

    /// The live membership of `connection_id` in `shard` of `room`, if any.
    async fn member(
        &self,
        room: &str,
        shard: u16,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Member>, StoreError>;

    /// Up to `limit` live members of `shard` of `room` after `cursor` (a cursor of
    /// that shard). A page may hold fewer than `limit` members (expired ones are
    /// dropped) and still have a `next`.
    async fn members_page(
        &self,
        room: &str,
        shard: u16,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<MemberPage, StoreError>;

    /// The [`Store::members_page`] cursor that resumes right after the member
    /// `connection_id`, for a listing that stops inside a page (`presence`).
    fn member_cursor(&self, connection_id: &str) -> String {
        connection_id.to_owned()
    }

    /// Removes a connection and all its memberships. Returns how many items were
    /// deleted and the rooms it was in; removing an unknown connection deletes
    /// nothing and is not an error.
    async fn remove_connection(&self, connection_id: &str) -> Result<Removed, StoreError>;

    /// Counts `units` (at least one) in the rate counter item `bucket` of
    /// `connection_id`: adds them to its connection-wide count and, if `key` is
    /// given, to its count for that key, and returns the new counts. A frame costs
    /// one unit; a replay's bytes cost more. Exactly one write (one item), atomic
    /// under concurrency. Counter items are removed with the connection
    /// ([`Store::remove_connection`] counts them) and expire at `expires_at` (epoch
    /// seconds). See [`crate::policy::ratelimit`].
    async fn count_frame(
        &self,
        connection_id: &str,
        bucket: &str,
        key: Option<&str>,
        units: u64,
        expires_at: u64,
        now: u64,
    ) -> Result<FrameCounts, StoreError>;

    /// Up to `limit` live connections of `user_id` after `cursor` (the `byUser`
    /// index). Like [`Store::members_page`], a page may be short and still have a `next`.
    async fn user_connections_page(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError>;

    /// Up to `limit` live connections after `cursor`, across the whole store: a
    /// paginated Scan in DynamoDB, so its cost grows with the table, not the result.
    async fn connections_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError>;

    /// Allocates the next offset of `room`'s event stream: exactly one more than
    /// the last, atomic under concurrency, and renews the stream for `ttl_secs`. A
    /// stream that expired (or never was) starts over at offset 1 in a new epoch.
    /// One write while the stream lives; a restart adds one write and a retry.
    async fn next_offset(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError>;

    /// Stores the frame of the event at `offset` in `epoch` until `expires_at`:
    /// one write. Only the last `keep` offsets (the policy's history `size`) are
    /// ever read back: the in-memory store drops older events here, DynamoDB
    /// leaves them to their TTL.
    async fn put_event(
        &self,
        room: &str,
        epoch: &str,
        offset: u64,
        frame: &str,
        expires_at: u64,
        keep: u64,
    ) -> Result<(), StoreError>;

    /// Where `room`'s stream is now; a stream that expired (or never was) is
    /// started at offset 0 in a new epoch that lives `ttl_secs`. One strongly
    /// consistent read while the stream lives.
    async fn stream_head(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError>;

    /// The live stored events of `room` in `epoch` with offsets `from..=to`, in
    /// offset order; missing and expired ones are left out. Strongly consistent.
    async fn events(
        &self,
        room: &str,
        epoch: &str,
        from: u64,
        to: u64,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Records the broadcast idempotency `key` until `expires_at`, unless a live
    /// record of it exists: `true` when this call recorded it (the broadcast is
    /// to be sent), `false` for a repeat. One conditional write.
    async fn claim_broadcast(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    /// Deletes the record of `key`, for a broadcast that could not start: its
    /// retry must not be taken for a repeat.
    async fn release_broadcast(&self, key: &str) -> Result<(), StoreError>;
}

/// The current time in epoch seconds and milliseconds.
pub fn now_secs() -> u64 {
    now_millis() / 1000
}

pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
