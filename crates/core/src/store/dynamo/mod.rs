//! The DynamoDB adapter: one on-demand table (docs/data-model.md).
//!
//! | item        | pk                | sk                | other attributes                  |
//! |-------------|-------------------|-------------------|-----------------------------------|
//! | connection  | `conn#<id>`       | `meta`            | cid, ttl, connectedAt, userId?    |
//! | membership  | `room#<room>[#s]` | `conn#<id>`       | cid, ttl, userId?                 |
//! | rate counter| `conn#<id>`       | `rate#*#<t>`      | cid, ttl, n, n#<key>...           |
//! | stream head | `hist#<room>`     | `stream`          | epoch, offset, ttl                |
//! | event       | `hist#<room>`     | `e#<epoch>#<off>` | offset, frame, ttl                |
//! | broadcast   | `bcast#<key>`     | `claim`           | ttl                               |
//!
//! A membership's partition is its room's shard ([`room_pk`]): `room#<room>` for
//! shard 0, `room#<room>#<s>` for shard s of a room with more.
//!
//! The `byConnection` index (hash `cid`, range `pk`, keys only) finds every item of
//! one connection, so `$disconnect` is one Query and batched deletes.
//!
//! This file holds the adapter, the keys, the item conversions and the [`Store`]
//! impl; `stream` the history stream (head, offsets, events); `table` the
//! table's creation.

mod claims;
mod stream;
mod table;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, ReturnValue, WriteRequest};
use serde::{Deserialize, Serialize};

use super::{
    Connection, ConnectionPage, FrameCounts, Member, MemberPage, Removed, Store, StoreError,
    StoredEvent, StreamHead,
};
use crate::names::attr;

/// BatchWriteItem takes at most 25 requests.
const BATCH_LIMIT: usize = 25;
/// Attempts at a batch's UnprocessedItems before giving up.
const UNPROCESSED_ATTEMPTS: u32 = 8;

#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

// The serde renames below are attr::USER_ID and attr::CONNECTED_AT (attributes
// must be literals); a unit test checks they agree.
#[derive(Debug, Serialize, Deserialize)]
struct ConnectionItem {
    pk: String,
    sk: String,
    cid: String,
    ttl: u64,
    #[serde(rename = "connectedAt")]
    connected_at: u64,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    /// attr::UID: the user again, under the sparse byUser index's hash key. Only
    /// connection items carry it, so the index holds connections, not memberships.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<String>,
    /// attr::ROLES
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    roles: Vec<String>,
    /// attr::TOKEN_EXP
    #[serde(rename = "tokenExp", default, skip_serializing_if = "Option::is_none")]
    token_exp: Option<u64>,
}

/// What the byUser index and the `all` Scan project: the id and its expiry.
#[derive(Debug, Deserialize)]
struct ConnectionRef {
    cid: String,
    ttl: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct MemberItem {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pk: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sk: String,
    cid: String,
    ttl: u64,
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

impl From<MemberItem> for Member {
    fn from(item: MemberItem) -> Self {
        Self {
            connection_id: item.cid,
            user_id: item.user_id,
            expires_at: item.ttl,
        }
    }
}

/// Where the stored keys are computed (the stream's in `stream.rs`): nowhere else
/// builds a `pk` or `sk`.
pub(crate) fn connection_pk(connection_id: &str) -> String {
    format!("{}{connection_id}", attr::CONN_PREFIX)
}

/// The partition of `shard` of `room`'s memberships: `room#<room>` for shard 0
/// (a room's only shard when it has one), `room#<room>#<shard>` after.
pub(crate) fn room_pk(room: &str, shard: u16) -> String {
    match shard {
        0 => format!("{}{room}", attr::ROOM_PREFIX),
        _ => format!(
            "{}{room}{}{shard}",
            attr::ROOM_PREFIX,
            attr::SHARD_SEPARATOR
        ),
    }
}

/// The room a membership partition key names, without its shard: the inverse
/// of [`room_pk`].
fn room_of_pk(pk: &str) -> Option<&str> {
    let room = pk.strip_prefix(attr::ROOM_PREFIX)?;
    Some(
        room.split_once(attr::SHARD_SEPARATOR)
            .map_or(room, |(room, _)| room),
    )
}

pub(crate) fn member_sk(connection_id: &str) -> String {
    format!("{}{connection_id}", attr::CONN_PREFIX)
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Whether a call failed only because its condition did not hold.
fn condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn key(pk: String, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([(attr::PK.to_owned(), s(pk)), (attr::SK.to_owned(), s(sk))])
}

fn backend<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    move |e| StoreError::Backend {
        operation,
        source: Box::new(e),
    }
}

fn to_item<T: Serialize>(value: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_item<T: for<'de> Deserialize<'de>>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    async fn put(&self, item: HashMap<String, AttributeValue>) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend("PutItem"))?;
        Ok(())
    }

    /// Puts `item` unless a live one (`ttl` after `now`) has its key; an expired
    /// item still stored counts as absent. Whether the item was written.
    async fn put_unless_live(
        &self,
        item: HashMap<String, AttributeValue>,
        now: u64,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #ttl <= :now")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(backend("PutItem")(e)),
        }
    }

    /// A strongly consistent read of one item.
    async fn get(
        &self,
        pk: String,
        sk: String,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend("GetItem"))?;
        Ok(out.item)
    }

    async fn delete_batch(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<WriteRequest> = keys
            .into_iter()
            .map(|key| {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key))
                    .build()
                    .map_err(invalid)?;
                Ok(WriteRequest::builder().delete_request(delete).build())
            })
            .collect::<Result<_, StoreError>>()?;
        for attempt in 0..UNPROCESSED_ATTEMPTS {
            if attempt > 0 {
                // Unprocessed items mean the partition is throttled: back off.
                let base = 20u64 << attempt.min(6);
                tokio::time::sleep(Duration::from_millis(base + fastrand::u64(0..base))).await;
            }
            let out = self
                .client
                .batch_write_item()
                .request_items(&self.table, pending)
                .send()
                .await
                .map_err(backend("BatchWriteItem"))?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError::Unprocessed(pending.len()))
    }
}

fn invalid(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[async_trait]
impl Store for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let item = to_item(&ConnectionItem {
            pk: connection_pk(&connection.connection_id),
            sk: attr::META_SK.to_owned(),
            cid: connection.connection_id.clone(),
            ttl: connection.expires_at,
            connected_at: connection.connected_at,
            user_id: connection.user_id.clone(),
            uid: connection.user_id.clone(),
            roles: connection.roles.clone(),
            token_exp: connection.token_expires_at,
        })?;
        self.put(item).await
    }

    async fn connection(
        &self,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Connection>, StoreError> {
        let Some(item) = self
            .get(connection_pk(connection_id), attr::META_SK.to_owned())
            .await?
        else {
            return Ok(None);
        };
        let item: ConnectionItem = from_item(item)?;
        Ok((item.ttl > now).then_some(Connection {
            connection_id: item.cid,
            connected_at: item.connected_at,
            user_id: item.user_id,
            roles: item.roles,
            token_expires_at: item.token_exp,
            expires_at: item.ttl,
        }))
    }

    async fn join(&self, room: &str, shard: u16, member: &Member) -> Result<(), StoreError> {
        let item = to_item(&MemberItem {
            pk: room_pk(room, shard),
            sk: member_sk(&member.connection_id),
            cid: member.connection_id.clone(),
            ttl: member.expires_at,
            user_id: member.user_id.clone(),
        })?;
        self.put(item).await
    }

    async fn leave(&self, room: &str, shard: u16, connection_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(room_pk(room, shard), member_sk(connection_id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend("DeleteItem"))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn member(
        &self,
        room: &str,
        shard: u16,
        connection_id: &str,
        now: u64,
    ) -> Result<Option<Member>, StoreError> {
        // Strongly consistent: a `send` right after `join` may land on another
        // Lambda instance, and must see the membership.
        let Some(item) = self
            .get(room_pk(room, shard), member_sk(connection_id))
            .await?
        else {
            return Ok(None);
        };
        let member = Member::from(from_item::<MemberItem>(item)?);
        Ok((member.expires_at > now).then_some(member))
    }

    async fn members_page(
        &self,
        room: &str,
        shard: u16,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<MemberPage, StoreError> {
        let pk = room_pk(room, shard);
        let start = match cursor {
            Some(c) if c.starts_with(attr::CONN_PREFIX) => Some(key(pk.clone(), c.to_owned())),
            Some(_) => return Err(StoreError::BadCursor),
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_names("#cid", attr::CID)
            .expression_attribute_names("#uid", attr::USER_ID)
            .expression_attribute_values(":pk", s(pk))
            .projection_expression("#cid, #ttl, #uid")
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(backend("Query"))?;
        let members = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|item| from_item::<MemberItem>(item).map(Member::from))
            .filter(|m| m.as_ref().map_or(true, |m| m.expires_at > now))
            .collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key
            .and_then(|mut k| k.remove(attr::SK))
            .and_then(|v| v.as_s().ok().cloned());
        Ok(MemberPage { members, next })
    }

    fn member_cursor(&self, connection_id: &str) -> String {
        member_sk(connection_id)
    }

    async fn remove_connection(&self, connection_id: &str) -> Result<Removed, StoreError> {
        // One query on the index finds the connection item and every membership
        // (and the rate counters, which stay); a membership's `pk` names its room,
        // so the rooms come at no extra cost.
        let mut keys = Vec::new();
        let mut rooms = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(attr::BY_CONNECTION_INDEX)
                .key_condition_expression("#cid = :cid")
                .expression_attribute_names("#cid", attr::CID)
                .expression_attribute_values(":cid", s(connection_id))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("Query"))?;
            for mut item in out.items.unwrap_or_default() {
                match (item.remove(attr::PK), item.remove(attr::SK)) {
                    // Rate counters are left to TTL, which deletes for free: deleting
                    // one here would cost 2 write units (table and index).
                    (Some(_), Some(sk))
                        if sk.as_s().is_ok_and(|sk| sk.starts_with(attr::RATE_PREFIX)) => {}
                    (Some(pk), Some(sk)) => {
                        if let Some(room) = pk.as_s().ok().and_then(|pk| room_of_pk(pk)) {
                            rooms.push(room.to_owned());
                        }
                        keys.push(HashMap::from([
                            (attr::PK.to_owned(), pk),
                            (attr::SK.to_owned(), sk),
                        ]));
                    }
                    _ => return Err(StoreError::Corrupt("index item without keys".into())),
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        let items = keys.len();
        let mut keys = keys.into_iter().peekable();
        while keys.peek().is_some() {
            self.delete_batch(keys.by_ref().take(BATCH_LIMIT).collect())
                .await?;
        }
        rooms.sort();
        // Twice only if the connection joined the room under two shard counts.
        rooms.dedup();
        Ok(Removed { items, rooms })
    }

    async fn count_frame(
        &self,
        connection_id: &str,
        bucket: &str,
        counted: Option<&str>,
        units: u64,
        expires_at: u64,
        _now: u64,
    ) -> Result<FrameCounts, StoreError> {
        // One unconditional UpdateItem: ADD creates the counts at `units` or adds
        // `units` to them atomically, and UPDATED_NEW returns the new counts. The counter sits
        // in the connection's partition and carries `cid`, so the byConnection index
        // finds it at `$disconnect`; `ttl` ends it otherwise.
        let key_attr = counted.map(|k| format!("{}{k}", attr::KEY_COUNT_PREFIX));
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(connection_pk(connection_id), bucket.to_owned())))
            .expression_attribute_names("#cid", attr::CID)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_names("#n", attr::COUNT)
            .expression_attribute_values(":cid", s(connection_id))
            .expression_attribute_values(":ttl", AttributeValue::N(expires_at.to_string()))
            .expression_attribute_values(":units", AttributeValue::N(units.to_string()))
            .return_values(ReturnValue::UpdatedNew);
        update = match &key_attr {
            Some(name) => update
                .update_expression("SET #cid = :cid, #ttl = :ttl ADD #n :units, #k :units")
                .expression_attribute_names("#k", name),
            None => update.update_expression("SET #cid = :cid, #ttl = :ttl ADD #n :units"),
        };
        let mut attributes = update
            .send()
            .await
            .map_err(backend("UpdateItem"))?
            .attributes
            .unwrap_or_default();
        let mut number = |name: &str| {
            attributes
                .remove(name)
                .and_then(|n| n.as_n().ok().and_then(|n| n.parse::<u64>().ok()))
                .ok_or_else(|| StoreError::Corrupt("rate counter without a count".into()))
        };
        let all = number(attr::COUNT)?;
        let counted = key_attr.as_deref().map(&mut number).transpose()?;
        Ok(FrameCounts { all, key: counted })
    }

    async fn user_connections_page(
        &self,
        user_id: &str,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError> {
        // An index page's start key is the index key (uid, pk) plus the table key.
        let start = cursor.map(decode_cursor).transpose()?.map(|mut start| {
            start.insert(attr::UID.to_owned(), s(user_id));
            start
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(attr::BY_USER_INDEX)
            .key_condition_expression("#uid = :uid")
            .expression_attribute_names("#uid", attr::UID)
            .expression_attribute_values(":uid", s(user_id))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(backend("Query"))?;
        connection_page(out.items, out.last_evaluated_key, now)
    }

    async fn connections_page(
        &self,
        cursor: Option<&str>,
        limit: usize,
        now: u64,
    ) -> Result<ConnectionPage, StoreError> {
        // A Scan of the whole table, memberships included, filtered to connection
        // items: read capacity follows the table's size (docs/data-model.md).
        // `Limit` counts items scanned, so a page is often short.
        let start = cursor.map(decode_cursor).transpose()?;
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("#sk = :meta")
            .projection_expression("#cid, #ttl")
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_names("#cid", attr::CID)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":meta", s(attr::META_SK))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(backend("Scan"))?;
        connection_page(out.items, out.last_evaluated_key, now)
    }

    async fn next_offset(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        self.allocate_offset(room, ttl_secs, now).await
    }

    async fn put_event(
        &self,
        room: &str,
        epoch: &str,
        offset: u64,
        frame: &str,
        expires_at: u64,
        _keep: u64,
    ) -> Result<(), StoreError> {
        // Older events stay until their TTL; readers never ask for them.
        self.write_event(room, epoch, offset, frame, expires_at)
            .await
    }

    async fn stream_head(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        self.read_head(room, ttl_secs, now).await
    }

    async fn events(
        &self,
        room: &str,
        epoch: &str,
        from: u64,
        to: u64,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.read_events(room, epoch, from, to, now).await
    }

    async fn claim_broadcast(
        &self,
        key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.put_claim(key, expires_at, now).await
    }

    async fn release_broadcast(&self, key: &str) -> Result<(), StoreError> {
        self.delete_claim(key).await
    }
}

/// Separates `pk` and `sk` in a connection page cursor: neither room names nor
/// connection ids contain a newline.
const CURSOR_SEPARATOR: char = '\n';

/// The table key a connection page cursor stands for. A Scan can stop on any
/// item, a membership included, so the cursor carries both keys.
fn decode_cursor(cursor: &str) -> Result<HashMap<String, AttributeValue>, StoreError> {
    match cursor.split_once(CURSOR_SEPARATOR) {
        Some((pk, sk)) if !pk.is_empty() && !sk.is_empty() => Ok(key(pk.to_owned(), sk.to_owned())),
        _ => Err(StoreError::BadCursor),
    }
}

/// A page of live connection ids (and their expiry) from byUser or Scan items, and the cursor
/// encoding the last evaluated key's `pk` and `sk`.
fn connection_page(
    items: Option<Vec<HashMap<String, AttributeValue>>>,
    last: Option<HashMap<String, AttributeValue>>,
    now: u64,
) -> Result<ConnectionPage, StoreError> {
    let mut connection_ids = Vec::new();
    let mut expires_at = Vec::new();
    for item in items.unwrap_or_default() {
        let item: ConnectionRef = from_item(item)?;
        if item.ttl > now {
            connection_ids.push(item.cid);
            expires_at.push(item.ttl);
        }
    }
    let next = match last {
        None => None,
        Some(mut k) => {
            let mut part = |name: &str| {
                k.remove(name)
                    .and_then(|v| v.as_s().ok().cloned())
                    .ok_or_else(|| StoreError::Corrupt(format!("page key without {name}")))
            };
            let pk = part(attr::PK)?;
            let sk = part(attr::SK)?;
            Some(format!("{pk}{CURSOR_SEPARATOR}{sk}"))
        }
    };
    Ok(ConnectionPage {
        connection_ids,
        expires_at,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_use_the_attribute_names_in_names_rs() {
        let item = to_item(&ConnectionItem {
            pk: connection_pk("c"),
            sk: attr::META_SK.to_owned(),
            cid: "c".into(),
            ttl: 1,
            connected_at: 2,
            user_id: Some("u".into()),
            uid: Some("u".into()),
            roles: vec!["r".into()],
            token_exp: Some(3),
        })
        .unwrap();
        for name in [
            attr::ROLES,
            attr::TOKEN_EXP,
            attr::UID,
            attr::PK,
            attr::SK,
            attr::CID,
            attr::TTL,
            attr::CONNECTED_AT,
            attr::USER_ID,
        ] {
            assert!(item.contains_key(name), "{name}");
        }
        let member = to_item(&MemberItem {
            pk: room_pk("r", 0),
            sk: member_sk("c"),
            cid: "c".into(),
            ttl: 1,
            user_id: Some("u".into()),
        })
        .unwrap();
        for name in [attr::PK, attr::SK, attr::CID, attr::TTL, attr::USER_ID] {
            assert!(member.contains_key(name), "{name}");
        }
        assert_eq!(member[attr::SK], AttributeValue::S("conn#c".into()));
    }

    #[test]
    fn shard_zero_is_the_unsharded_key_and_others_carry_a_suffix() {
        assert_eq!(room_pk("chat:1", 0), "room#chat:1");
        assert_eq!(room_pk("chat:1", 3), "room#chat:1#3");
        assert_eq!(room_of_pk("room#chat:1"), Some("chat:1"));
        assert_eq!(room_of_pk("room#chat:1#3"), Some("chat:1"));
        assert_eq!(room_of_pk("conn#x"), None);
    }
}
