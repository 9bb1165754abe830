//! The in-memory store: `roomcast dev`'s default and the unit tests' fake.
//!
//! One mutex over the whole state keeps the two indexes (room → members,
//! connection → rooms) consistent with each other; no lock is held across an await.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Connection, Member, MemberPage, Store, StoreError};

#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    connections: HashMap<String, Connection>,
    /// room → connection id → membership, ordered so pages have stable cursors.
    rooms: HashMap<String, BTreeMap<String, Member>>,
    /// connection id → rooms, the twin of DynamoDB's byConnection index.
    rooms_of: HashMap<String, BTreeSet<String>>,
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
            s.rooms.values().map(BTreeMap::len).sum(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }
}

#[async_trait]
impl Store for MemoryStore {
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

    async fn join(&self, room: &str, member: &Member) -> Result<(), StoreError> {
        let mut s = self.state();
        s.rooms
            .entry(room.to_owned())
            .or_default()
            .insert(member.connection_id.clone(), member.clone());
        s.rooms_of
            .entry(member.connection_id.clone())
            .or_default()
            .insert(room.to_owned());
        Ok(())
    }

    async fn leave(&self, room: &str, connection_id: &str) -> Result<bool, StoreError> {
        let mut s = self.state();
        Ok(s.remove_membership(room, connection_id))
    }

    async fn member(
        &self,
        room: &str,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Member>, StoreError> {
        Ok(self
            .state()
            .rooms
            .get(room)
            .and_then(|m| m.get(connection_id))
            .filter(|m| m.expires_at > now)
            .cloned())
    }

    async fn members_page(
        &self,
        room: &str,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<MemberPage, StoreError> {
        let s = self.state();
        let Some(members) = s.rooms.get(room) else {
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

    async fn remove_connection(&self, connection_id: &str) -> Result<usize, StoreError> {
        let mut s = self.state();
        let mut removed = usize::from(s.connections.remove(connection_id).is_some());
        for room in s.rooms_of.remove(connection_id).unwrap_or_default() {
            removed += usize::from(s.remove_membership(&room, connection_id));
        }
        Ok(removed)
    }
}

impl State {
    fn remove_membership(&mut self, room: &str, connection_id: &str) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        let existed = members.remove(connection_id).is_some();
        if members.is_empty() {
            self.rooms.remove(room);
        }
        if let Some(rooms) = self.rooms_of.get_mut(connection_id) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.rooms_of.remove(connection_id);
            }
        }
        existed
    }
}
