//! Writing the simulated members to the store at start-up: for each, a
//! connection record and a membership of its room, as `$connect` and a `join`
//! would leave them (anonymous, no roles). [`join_member`] is the one place a
//! simulated member meets the store.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use roomcast_core::policy::Policies;
use roomcast_core::store::{Connection, Member, Store, StoreError, now_millis, shard_of};

use super::table::{Table, member_id};

/// Store calls in flight at once while registering.
const CONCURRENCY: usize = 64;

/// Writes every member of `table` to `store`, with records living `ttl`, each
/// membership in the shard of its room (`policies`) that `$connect` and `join`
/// would have put it in. Returns how many were written.
pub async fn register(
    store: &dyn Store,
    policies: &Policies,
    table: &Table,
    ttl: Duration,
) -> Result<usize, StoreError> {
    let now_ms = now_millis();
    let expires_at = now_ms / 1000 + ttl.as_secs();
    let members = table
        .rooms()
        .flat_map(|(room, indexes)| indexes.map(move |i| (room, i)));
    futures::stream::iter(members)
        .map(|(room, index)| {
            let shards = policies.shards(room);
            join_member(store, room, shards, member_id(index), now_ms, expires_at)
        })
        .buffer_unordered(CONCURRENCY)
        .try_fold(0, |n, ()| async move { Ok(n + 1) })
        .await
}

/// Records simulated member `connection_id` and its membership of `room`.
async fn join_member(
    store: &dyn Store,
    room: &str,
    shards: u16,
    connection_id: String,
    now_ms: u64,
    expires_at: u64,
) -> Result<(), StoreError> {
    let connection = Connection {
        connection_id,
        connected_at: now_ms,
        user_id: None,
        roles: Vec::new(),
        token_expires_at: None,
        expires_at,
    };
    store.put_connection(&connection).await?;
    let member = Member {
        connection_id: connection.connection_id,
        user_id: None,
        expires_at,
    };
    let shard = shard_of(&member.connection_id, shards);
    store.join(room, shard, &member).await
}
