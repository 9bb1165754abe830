//! The in-memory store: `roomcast dev`'s default and the unit tests' fake.
//!
//! One mutex over the whole state keeps the two indexes (room → members,
//! connection → rooms) consistent with each other; no lock is held across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    Connection, ConnectionPage, FrameCounts, Member, MemberPage, Removed, Store, StoreError,
    StoredEvent, StreamHead, new_epoch,
};
use crate::policy::MAX_HISTORY_SIZE;

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

/// A rate counter item: the connection-wide count, the per-key counts, the TTL.
#[derive(Debug, Default)]
struct Counter {
    all: u64,
    keys: HashMap<String, u64>,
    expires_at: u64,
}

/// A room's event stream: the head (epoch, last offset, expiry) and the events
/// of the current epoch by offset, each with its frame and expiry.
#[derive(Debug)]
struct Stream {
    epoch: String,
    offset: u64,
    expires_at: u64,
    events: BTreeMap<u64, (String, u64)>,
}

impl Stream {
    fn fresh(expires_at: u64) -> Self {
        Self {
            epoch: new_epoch(),
            offset: 0,
            expires_at,
            events: BTreeMap::new(),
        }
    }

    fn head(&self) -> StreamHead {
        StreamHead {
            epoch: self.epoch.clone(),
            offset: self.offset,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<String, Connection>,
    /// room → shard → connection id → membership, ordered so pages have stable
    /// cursors.
    rooms: HashMap<String, HashMap<u16, BTreeMap<String, Member>>>,
    /// connection id → (room, shard), the twin of DynamoDB's byConnection index.
    rooms_of: HashMap<String, BTreeSet<(String, u16)>>,
    /// connection id → rate bucket → counter: rate-limit counters.
    rates: HashMap<String, HashMap<String, Counter>>,
    /// room → its event stream, for rooms with history.
    streams: HashMap<String, Stream>,
    /// broadcast idempotency key → when its record expires.
    claims: HashMap<String, u64>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters more than losing the store, so recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Number of stored connections and memberships (live or not), for tests and metrics.
    pub fn len(&self) -> (usize, usize) {
        let s = self.state();
        (
            s.connections.len(),
            s.rooms
                .values()
                .flat_map(HashMap::values)
                .map(BTreeMap::len)
                .sum(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn room_count(&self) -> Option<usize> {
        Some(self.state().rooms.len())
    }

    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.state()
            .connections
            .insert(connection.connection_id.clone(), connection.clone());
        Ok(())
    }

    async fn connection(
        &self,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Connection>, StoreError> {
        Ok(self
            .state()
            .connections
            .get(connection_id)
            .filter(|c| c.expires_at > now)
            .cloned())
    }

    async fn join(&self, room: &str, shard: u16, member: &Member) -> Result<(), StoreError> {
        let mut s = self.state();
        s.rooms
            .entry(room.to_owned())
            .or_default()
            .entry(shard)
            .or_default()
            .insert(member.connection_id.clone(), member.clone());
        s.rooms_of
            .entry(member.connection_id.clone())
            .or_default()
            .insert((room.to_owned(), shard));
        Ok(())
    }

    async fn leave(&self, room: &str, shard: u16, connection_id: &str) -> Result<bool, StoreError> {
        let mut s = self.state();
        Ok(s.remove_membership(room, shard, connection_id))
    }

    async fn member(
        &self,
        room: &str,
        shard: u16,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Member>, StoreError> {
        Ok(self
            .state()
            .rooms
            .get(room)
            .and_then(|shards| shards.get(&shard))
            .and_then(|m| m.get(connection_id))
            .filter(|m| m.expires_at > now)
            .cloned())
    }

    async fn members_page(
        &self,
        room: &str,
        shard: u16,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<MemberPage, StoreError> {
        let s = self.state();
        let Some(members) = s.rooms.get(room).and_then(|shards| shards.get(&shard)) else {
            return Ok(MemberPage::default());
        };
        let start = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        let mut scanned = members.range((start, Bound::Unbounded));
        let mut page = MemberPage::default();
        let mut last = None;
        // Like a DynamoDB Query with a filter, `limit` counts items examined.
        for (id, member) in scanned.by_ref().take(limit.max(1)) {
            last = Some(id);
            if member.expires_at > now {
                page.members.push(member.clone());
            }
        }
        if scanned.next().is_some() {
            page.next = last.cloned();
        }
        Ok(page)
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<Removed, StoreError> {
        let mut s = self.state();
        let mut removed = Removed {
            items: usize::from(s.connections.remove(connection_id).is_some()),
            rooms: Vec::new(),
        };
        for (room, shard) in s.rooms_of.remove(connection_id).unwrap_or_default() {
            if s.remove_membership(&room, shard, connection_id) {
                removed.items += 1;
                removed.rooms.push(room);
            }
        }
        // In name order already; a room appears twice only if the connection
        // joined it under two shard counts.
        removed.rooms.dedup();
        // DynamoDB leaves the counters to TTL; there is no TTL here, so they go
        // now, uncounted like there.
        s.rates.remove(connection_id);
        Ok(removed)
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
        let mut s = self.state();
        let buckets = s.rates.entry(connection_id.to_owned()).or_default();
        // Drop this connection's finished windows, as TTL does in DynamoDB, so a
        // long-lived connection does not grow the map one window at a time.
        buckets.retain(|name, c| c.expires_at > now || name == bucket);
        let counter = buckets.entry(bucket.to_owned()).or_default();
        counter.all = counter.all.saturating_add(units);
        counter.expires_at = expires_at;
        let key = key.map(|k| {
            let n = counter.keys.entry(k.to_owned()).or_default();
            *n = n.saturating_add(units);
            *n
        });
        Ok(FrameCounts {
            all: counter.all,
            key,
        })
    }

    async fn user_connections_page(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError> {
        // The twin of the sparse byUser index: connections with this user only.
        Ok(self.state().connections_page(cursor, limit, now, |c| {
            c.user_id.as_deref() == Some(user_id)
        }))
    }

    async fn connections_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError> {
        Ok(self.state().connections_page(cursor, limit, now, |_| true))
    }

    async fn next_offset(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        let mut s = self.state();
        let stream = s.live_stream(room, now + ttl_secs, now);
        stream.offset += 1;
        stream.expires_at = now + ttl_secs;
        Ok(stream.head())
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
        let mut s = self.state();
        // An event of an epoch that has since ended has no stream to go to, as its
        // item would sit under a key no reader asks for in DynamoDB.
        let Some(stream) = s.streams.get_mut(room).filter(|s| s.epoch == epoch) else {
            return Ok(());
        };
        stream.events.insert(offset, (frame.to_owned(), expires_at));
        // What DynamoDB's TTL and the readers' `offset > head - size` window do
        // there: nothing older than the policy's `size` is ever read, so keep no
        // more (and never more than the largest history).
        let oldest = stream.offset.saturating_sub(keep.min(MAX_HISTORY_SIZE));
        // Events arrive in offset order but for concurrent senders: drop the front.
        while stream
            .events
            .first_key_value()
            .is_some_and(|(&o, _)| o <= oldest)
        {
            stream.events.pop_first();
        }
        Ok(())
    }

    async fn stream_head(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        Ok(self.state().live_stream(room, now + ttl_secs, now).head())
    }

    async fn events(
        &self,
        room: &str,
        epoch: &str,
        from: u64,
        to: u64,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let s = self.state();
        let Some(stream) = s.streams.get(room).filter(|s| s.epoch == epoch) else {
            return Ok(Vec::new());
        };
        if from > to {
            return Ok(Vec::new());
        }
        Ok(stream
            .events
            .range(from..=to)
            .filter(|(_, (_, expires_at))| *expires_at > now)
            .map(|(&offset, (frame, _))| StoredEvent {
                offset,
                frame: frame.clone(),
            })
            .collect())
    }

    async fn claim_broadcast(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut s = self.state();
        // Expired records go, as TTL removes them.
        s.claims.retain(|_, until| *until > now);
        if s.claims.contains_key(key) {
            return Ok(false);
        }
        s.claims.insert(key.to_owned(), expires_at);
        Ok(true)
    }

    async fn release_broadcast(&self, key: &str) -> Result<(), StoreError> {
        self.state().claims.remove(key);
        Ok(())
    }
}

impl State {
    /// Connections matching `select`, in id order after `cursor`. `limit` counts
    /// the matching connections examined, expired ones included, as DynamoDB does.
    /// Sorting per page is fine for the store's uses (tests, `roomcast dev`).
    fn connections_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
        select: impl Fn(&Connection) -> bool,
    ) -> ConnectionPage {
        let mut ids: Vec<&Connection> = self
            .connections
            .values()
            .filter(|c| select(c) && cursor.is_none_or(|after| c.connection_id.as_str() > after))
            .collect();
        ids.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        let limit = limit.max(1);
        let next = (ids.len() > limit).then(|| ids[limit - 1].connection_id.clone());
        let (connection_ids, expires_at) = ids
            .into_iter()
            .take(limit)
            .filter(|c| c.expires_at > now)
            .map(|c| (c.connection_id.clone(), c.expires_at))
            .unzip();
        ConnectionPage {
            connection_ids,
            expires_at,
            next,
        }
    }

    /// `room`'s stream, started over in a new epoch (expiring at `expires_at`) if
    /// it has expired or never was: the DynamoDB adapter's conditional reset.
    fn live_stream(&mut self, room: &str, expires_at: u64, now: u64) -> &mut Stream {
        if !self.streams.contains_key(room) {
            // What TTL does in DynamoDB: a room's stream goes once it expired, so
            // `roomcast dev` does not keep one per room ever used. Only when a new
            // stream is added, so the scan is paid once per room.
            self.streams.retain(|_, s| s.expires_at > now);
        }
        let stream = self
            .streams
            .entry(room.to_owned())
            .or_insert_with(|| Stream::fresh(expires_at));
        if stream.expires_at <= now {
            *stream = Stream::fresh(expires_at);
        }
        stream
    }

    fn remove_membership(&mut self, room: &str, shard: u16, connection_id: &str) -> bool {
        let Some(shards) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(members) = shards.get_mut(&shard) else {
            return false;
        };
        let existed = members.remove(connection_id).is_some();
        if members.is_empty() {
            shards.remove(&shard);
            if shards.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(rooms) = self.rooms_of.get_mut(connection_id) {
            rooms.remove(&(room.to_owned(), shard));
            if rooms.is_empty() {
                self.rooms_of.remove(connection_id);
            }
        }
        existed
    }
}
