//! Creating the table and its indexes, for `roomcast dev` and tests.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus,
};

use super::{DynamoStore, backend, invalid};
use crate::names::attr;
use crate::store::StoreError;

impl DynamoStore {
    /// Creates the table with its index if it does not exist, and waits until it is
    /// ACTIVE. For `roomcast dev` and tests: deployed stacks get the table from
    /// template.yaml, which also turns TTL on (dynalite has no UpdateTimeToLive).
    pub async fn ensure_table(&self) -> Result<(), StoreError> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some("ResourceNotFoundException") => false,
            Err(e) => return Err(backend("DescribeTable")(e)),
        };
        if !exists {
            self.create_table().await?;
        }
        self.wait_until_active().await
    }

    /// CreateTable with the keys and both indexes; a table another process created
    /// first is as good.
    async fn create_table(&self) -> Result<(), StoreError> {
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(invalid)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(attr::PK)?)
            .attribute_definitions(attribute(attr::SK)?)
            .attribute_definitions(attribute(attr::CID)?)
            .attribute_definitions(attribute(attr::UID)?)
            .key_schema(key(attr::PK, KeyType::Hash)?)
            .key_schema(key(attr::SK, KeyType::Range)?)
            .global_secondary_indexes(by_connection_index()?)
            .global_secondary_indexes(by_user_index()?)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another process created it first.
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(()),
            Err(e) => Err(backend("CreateTable")(e)),
        }
    }

    /// Polls rather than use the SDK waiter, whose first retry comes after ~20 s;
    /// dynalite and DynamoDB both take well under a second for a new table.
    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let table = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(backend("DescribeTable"))?
                .table;
            if table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::NotActive(self.table.clone()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(invalid)
}

/// The `byConnection` index (a connection's memberships, keys only) and the
/// `byUser` index (a user's connections, with their ids and expiry): both keyed
/// by their attribute and the table's partition key.
fn by_connection_index() -> Result<GlobalSecondaryIndex, StoreError> {
    let keys_only = Projection::builder().projection_type(ProjectionType::KeysOnly);
    index(attr::BY_CONNECTION_INDEX, attr::CID, keys_only)
}

fn by_user_index() -> Result<GlobalSecondaryIndex, StoreError> {
    let projection = Projection::builder()
        .projection_type(ProjectionType::Include)
        .non_key_attributes(attr::CID)
        .non_key_attributes(attr::TTL);
    index(attr::BY_USER_INDEX, attr::UID, projection)
}

fn index(
    name: &str,
    hash: &str,
    projection: aws_sdk_dynamodb::types::builders::ProjectionBuilder,
) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash)?)
        .key_schema(key(attr::PK, KeyType::Range)?)
        .projection(projection.build())
        .build()
        .map_err(invalid)
}
