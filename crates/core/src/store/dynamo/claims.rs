//! Broadcast idempotency records: one item per key, `bcast#<key>` / `claim`, with
//! a `ttl` and no `cid` (so no index entry: one write unit). A conditional put
//! records a key unless a live record exists; DynamoDB's TTL removes records
//! lazily, so an expired one that is still stored counts as absent.

use super::{DynamoStore, backend, key, n};
use crate::names::attr;
use crate::store::StoreError;

fn claim_pk(key: &str) -> String {
    format!("{}{key}", attr::BROADCAST_PREFIX)
}

impl DynamoStore {
    /// [`Store::claim_broadcast`](crate::store::Store::claim_broadcast) for this table.
    pub(super) async fn put_claim(
        &self,
        idempotency_key: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut item = key(claim_pk(idempotency_key), attr::CLAIM_SK.to_owned());
        item.insert(attr::TTL.to_owned(), n(expires_at));
        self.put_unless_live(item, now).await
    }

    /// [`Store::release_broadcast`](crate::store::Store::release_broadcast) for this table.
    pub(super) async fn delete_claim(&self, idempotency_key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(
                claim_pk(idempotency_key),
                attr::CLAIM_SK.to_owned(),
            )))
            .send()
            .await
            .map_err(backend("DeleteItem"))?;
        Ok(())
    }
}
