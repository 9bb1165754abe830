//! A test double: the in-memory store, except for the calls a predicate picks,
//! which fail as a DynamoDB outage would. One type for every test that needs a
//! store to fail, count or refuse one operation, instead of a fake per test that
//! forwards every other method (built with the `test-util` feature).

use async_trait::async_trait;

use super::memory::MemoryStore;
use super::{
    Connection, ConnectionPage, FrameCounts, Member, MemberPage, Removed, Store, StoreError,
    StoredEvent, StreamHead,
};

/// One call to the store, as the predicate sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call<'a> {
    PutConnection,
    Connection,
    Join {
        room: &'a str,
    },
    Leave {
        room: &'a str,
    },
    Member {
        room: &'a str,
    },
    MembersPage {
        room: &'a str,
        shard: u16,
        cursor: Option<&'a str>,
    },
    RemoveConnection,
    CountFrame,
    UserConnectionsPage {
        user_id: &'a str,
        cursor: Option<&'a str>,
    },
    ConnectionsPage {
        cursor: Option<&'a str>,
    },
    NextOffset {
        room: &'a str,
    },
    PutEvent {
        room: &'a str,
    },
    StreamHead {
        room: &'a str,
    },
    Events {
        room: &'a str,
    },
    ClaimBroadcast {
        key: &'a str,
    },
    ReleaseBroadcast {
        key: &'a str,
    },
}

impl Call<'_> {
    /// The DynamoDB operation the call stands for, as the error names it.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::PutConnection
            | Self::Join { .. }
            | Self::PutEvent { .. }
            | Self::ClaimBroadcast { .. } => "PutItem",
            Self::Connection | Self::Member { .. } | Self::StreamHead { .. } => "GetItem",
            Self::Leave { .. } | Self::ReleaseBroadcast { .. } => "DeleteItem",
            Self::MembersPage { .. } | Self::UserConnectionsPage { .. } | Self::Events { .. } => {
                "Query"
            }
            Self::RemoveConnection => "BatchWriteItem",
            Self::CountFrame | Self::NextOffset { .. } => "UpdateItem",
            Self::ConnectionsPage { .. } => "Scan",
        }
    }
}

/// The failure a failing call returns.
#[derive(Debug, thiserror::Error)]
#[error("injected failure (test)")]
pub struct Injected;

type Predicate = Box<dyn Fn(Call<'_>) -> bool + Send + Sync>;

/// [`MemoryStore`] whose calls fail where `fails` says so. The predicate sees every
/// call first, so it can also count them.
pub struct FailingStore {
    pub inner: MemoryStore,
    fails: Predicate,
}

impl FailingStore {
    pub fn new(fails: impl Fn(Call<'_>) -> bool + Send + Sync + 'static) -> Self {
        Self {
            inner: MemoryStore::new(),
            fails: Box::new(fails),
        }
    }

    fn check(&self, call: Call<'_>) -> Result<(), StoreError> {
        if (self.fails)(call) {
            Err(StoreError::Backend {
                operation: call.operation(),
                source: Box::new(Injected),
            })
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for FailingStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.check(Call::PutConnection)?;
        self.inner.put_connection(connection).await
    }

    async fn connection(
        &self,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Connection>, StoreError> {
        self.check(Call::Connection)?;
        self.inner.connection(connection_id, now).await
    }

    async fn join(&self, room: &str, shard: u16, member: &Member) -> Result<(), StoreError> {
        self.check(Call::Join { room })?;
        self.inner.join(room, shard, member).await
    }

    async fn leave(&self, room: &str, shard: u16, connection_id: &str) -> Result<bool, StoreError> {
        self.check(Call::Leave { room })?;
        self.inner.leave(room, shard, connection_id).await
    }

    async fn member(
        &self,
        room: &str,
        shard: u16,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Member>, StoreError> {
        self.check(Call::Member { room })?;
        self.inner.member(room, shard, connection_id, now).await
    }

    async fn members_page(
        &self,
        room: &str,
        shard: u16,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<MemberPage, StoreError> {
        self.check(Call::MembersPage {
            room,
            shard,
            cursor,
        })?;
        self.inner
            .members_page(room, shard, cursor, limit, now)
            .await
    }

    fn member_cursor(&self, connection_id: &str) -> String {
        self.inner.member_cursor(connection_id)
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<Removed, StoreError> {
        self.check(Call::RemoveConnection)?;
        self.inner.remove_connection(connection_id).await
    }

    async fn count_frame(
        &self,
        connection_id: &str,
        bucket: &str,
        key: Option<&str>,
        units: u64,
        expires_at: u64,
        now: u64,
    ) -> Result<FrameCounts, StoreError> {
        self.check(Call::CountFrame)?;
        self.inner
            .count_frame(connection_id, bucket, key, units, expires_at, now)
            .await
    }

    async fn user_connections_page(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError> {
        self.check(Call::UserConnectionsPage { user_id, cursor })?;
        self.inner
            .user_connections_page(user_id, cursor, limit, now)
            .await
    }

    async fn connections_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError> {
        self.check(Call::ConnectionsPage { cursor })?;
        self.inner.connections_page(cursor, limit, now).await
    }

    async fn next_offset(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        self.check(Call::NextOffset { room })?;
        self.inner.next_offset(room, ttl_secs, now).await
    }

    async fn put_event(
        &self,
        room: &str,
        epoch: &str,
        offset: u64,
        frame: &str,
        expires_at: u64,
        keep: u64,
    ) -> Result<(), StoreError> {
        self.check(Call::PutEvent { room })?;
        self.inner
            .put_event(room, epoch, offset, frame, expires_at, keep)
            .await
    }

    async fn stream_head(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        self.check(Call::StreamHead { room })?;
        self.inner.stream_head(room, ttl_secs, now).await
    }

    async fn events(
        &self,
        room: &str,
        epoch: &str,
        from: u64,
        to: u64,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.check(Call::Events { room })?;
        self.inner.events(room, epoch, from, to, now).await
    }

    async fn claim_broadcast(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.check(Call::ClaimBroadcast { key })?;
        self.inner.claim_broadcast(key, expires_at, now).await
    }

    async fn release_broadcast(&self, key: &str) -> Result<(), StoreError> {
        self.check(Call::ReleaseBroadcast { key })?;
        self.inner.release_broadcast(key).await
    }
}
