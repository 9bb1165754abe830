//! A room's history stream in the table: the head item (`hist#<room>`, `stream`)
//! holding the epoch and last offset, and one event item per numbered frame.
//! Offsets come from one atomic UpdateItem; an expired stream restarts in a new epoch.

use aws_sdk_dynamodb::types::ReturnValue;
use serde::{Deserialize, Serialize};

use super::{DynamoStore, backend, condition_failed, from_item, key, n, s, to_item};
use crate::names::attr;
use crate::store::{StoreError, StoredEvent, StreamHead, new_epoch};

/// The partition of a room's event stream: its head and its events.
pub(crate) fn stream_pk(room: &str) -> String {
    format!("{}{room}", attr::HIST_PREFIX)
}

/// An event's sort key; the offset is zero-padded so keys sort by offset.
pub(crate) fn event_sk(epoch: &str, offset: u64) -> String {
    format!("{}{epoch}#{offset:020}", attr::EVENT_PREFIX)
}

/// Attempts at allocating an offset: each failed one restarted an expired stream.
const OFFSET_ATTEMPTS: u32 = 4;

#[derive(Debug, Serialize, Deserialize)]
struct HeadItem {
    pk: String,
    sk: String,
    epoch: String,
    offset: u64,
    ttl: u64,
}

impl From<HeadItem> for StreamHead {
    fn from(head: HeadItem) -> Self {
        Self {
            epoch: head.epoch,
            offset: head.offset,
        }
    }
}

/// A stream that every restart attempt found expired again: clocks far apart.
fn still_expired(room: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "the stream of {room:?} stayed expired through {OFFSET_ATTEMPTS} restarts"
    ))
}

#[derive(Debug, Serialize, Deserialize)]
struct EventItem {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pk: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sk: String,
    offset: u64,
    frame: String,
    ttl: u64,
}

impl DynamoStore {
    /// Starts `room`'s stream over in a new epoch at offset 0, only if it has
    /// expired or never was (the condition makes concurrent restarts agree on one
    /// epoch). Returns the new head, or `None` if the stream was live after all.
    async fn restart_stream(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<Option<StreamHead>, StoreError> {
        let head = HeadItem {
            pk: stream_pk(room),
            sk: attr::STREAM_SK.to_owned(),
            epoch: new_epoch(),
            offset: 0,
            ttl: now + ttl_secs,
        };
        let written = self.put_unless_live(to_item(&head)?, now).await?;
        Ok(written.then_some(StreamHead {
            epoch: head.epoch,
            offset: 0,
        }))
    }

    /// [`Store::next_offset`](crate::store::Store::next_offset) for this table.
    pub(super) async fn allocate_offset(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        // One UpdateItem: ADD makes offsets unique and gapless under any
        // concurrency, `if_not_exists` keeps the epoch, and the condition refuses a
        // stream whose TTL has passed (DynamoDB deletes it only lazily), which is
        // then restarted by a conditional put before the next attempt.
        for _ in 0..OFFSET_ATTEMPTS {
            let update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(stream_pk(room), attr::STREAM_SK.to_owned())))
                .update_expression(
                    "SET #ttl = :ttl, #epoch = if_not_exists(#epoch, :epoch) ADD #offset :one",
                )
                .condition_expression("attribute_not_exists(#pk) OR #ttl > :now")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#ttl", attr::TTL)
                .expression_attribute_names("#epoch", attr::EPOCH)
                .expression_attribute_names("#offset", attr::OFFSET)
                .expression_attribute_values(":ttl", n(now + ttl_secs))
                .expression_attribute_values(":now", n(now))
                .expression_attribute_values(":epoch", s(new_epoch()))
                .expression_attribute_values(":one", n(1))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match update {
                Ok(out) => {
                    return Ok(from_item::<HeadItem>(out.attributes.unwrap_or_default())?.into());
                }
                Err(e) if condition_failed(&e) => {
                    self.restart_stream(room, ttl_secs, now).await?;
                }
                Err(e) => return Err(backend("UpdateItem")(e)),
            }
        }
        Err(still_expired(room))
    }

    /// [`Store::put_event`](crate::store::Store::put_event) for this table.
    pub(super) async fn write_event(
        &self,
        room: &str,
        epoch: &str,
        offset: u64,
        frame: &str,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        self.put(to_item(&EventItem {
            pk: stream_pk(room),
            sk: event_sk(epoch, offset),
            offset,
            frame: frame.to_owned(),
            ttl: expires_at,
        })?)
        .await
    }

    /// [`Store::stream_head`](crate::store::Store::stream_head) for this table.
    pub(super) async fn read_head(
        &self,
        room: &str,
        ttl_secs: u64,
        now: u64,
    ) -> Result<StreamHead, StoreError> {
        for _ in 0..OFFSET_ATTEMPTS {
            if let Some(item) = self
                .get(stream_pk(room), attr::STREAM_SK.to_owned())
                .await?
            {
                let head: HeadItem = from_item(item)?;
                if head.ttl > now {
                    return Ok(head.into());
                }
            }
            // Lost the restart to another request: read the head it wrote.
            if let Some(head) = self.restart_stream(room, ttl_secs, now).await? {
                return Ok(head);
            }
        }
        Err(still_expired(room))
    }

    /// [`Store::events`](crate::store::Store::events) for this table.
    pub(super) async fn read_events(
        &self,
        room: &str,
        epoch: &str,
        from: u64,
        to: u64,
        now: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut events = Vec::new();
        if from > to {
            return Ok(events);
        }
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
                .expression_attribute_names("#pk", attr::PK)
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":pk", s(stream_pk(room)))
                .expression_attribute_values(":from", s(event_sk(epoch, from)))
                .expression_attribute_values(":to", s(event_sk(epoch, to)))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend("Query"))?;
            for item in out.items.unwrap_or_default() {
                let item: EventItem = from_item(item)?;
                if item.ttl > now {
                    events.push(StoredEvent {
                        offset: item.offset,
                        frame: item.frame,
                    });
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(events);
            }
        }
    }
}
