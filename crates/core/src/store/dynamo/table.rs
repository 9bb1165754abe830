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
            let attribute = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
            };
            let key = |name: &str, kind: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
            };
            let index = GlobalSecondaryIndex::builder()
                .index_name(attr::BY_CONNECTION_INDEX)
                .key_schema(key(attr::CID, KeyType::Hash).map_err(invalid)?)
                .key_schema(key(attr::PK, KeyType::Range).map_err(invalid)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(invalid)?;
            let by_user = GlobalSecondaryIndex::builder()
                .index_name(attr::BY_USER_INDEX)
                .key_schema(key(attr::UID, KeyType::Hash).map_err(invalid)?)
                .key_schema(key(attr::PK, KeyType::Range).map_err(invalid)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .non_key_attributes(attr::CID)
                        .non_key_attributes(attr::TTL)
                        .build(),
                )
                .build()
                .map_err(invalid)?;
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .billing_mode(BillingMode::PayPerRequest)
                .attribute_definitions(attribute(attr::PK).map_err(invalid)?)
                .attribute_definitions(attribute(attr::SK).map_err(invalid)?)
                .attribute_definitions(attribute(attr::CID).map_err(invalid)?)
                .attribute_definitions(attribute(attr::UID).map_err(invalid)?)
                .key_schema(key(attr::PK, KeyType::Hash).map_err(invalid)?)
                .key_schema(key(attr::SK, KeyType::Range).map_err(invalid)?)
                .global_secondary_indexes(index)
                .global_secondary_indexes(by_user)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Another process created it first.
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(backend("CreateTable")(e)),
            }
        }
        // Poll rather than use the SDK waiter, whose first retry comes after ~20 s;
        // dynalite and DynamoDB both take well under a second for a new table.
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
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(StoreError::NotActive(self.table.clone()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}
