//! Where the gateway keeps connections and rooms ([`Backend`], [`open_store`]) and
//! the AWS SDK configuration for local use ([`local_sdk_config`]).

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use roomcast_core::store::Store;
use roomcast_core::store::dynamo::DynamoStore;
use roomcast_core::store::memory::MemoryStore;

use crate::error::LocalError;

/// The table name used with the in-memory store (it names nothing real).
pub const MEMORY_TABLE: &str = "roomcast-local";

/// An `SdkConfig` for local use: the region from `options`, and static dummy
/// credentials unless real ones are in the environment (the emulator and dynalite
/// accept any signature, so no credential lookup should slow start-up down).
pub async fn local_sdk_config(region: &str) -> SdkConfig {
    let loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_owned()));
    let has_env_credentials = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
        || std::env::var_os("AWS_PROFILE").is_some();
    let loader = if has_env_credentials {
        loader
    } else {
        loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local",
            "local",
            None,
            None,
            "roomcast-dev",
        ))
    };
    loader.load().await
}

/// Where connections and rooms are kept.
#[derive(Debug, Clone)]
pub enum Backend {
    Memory,
    /// DynamoDB (or dynalite) at `endpoint`; the table is created if missing.
    Dynamo {
        endpoint: String,
        table: String,
    },
}

/// The store for `backend`, with its table ready, and the table name for `Config`.
pub async fn open_store(
    backend: &Backend,
    sdk: &SdkConfig,
) -> Result<(Arc<dyn Store>, String), LocalError> {
    match backend {
        Backend::Memory => Ok((Arc::new(MemoryStore::new()), MEMORY_TABLE.to_owned())),
        Backend::Dynamo { endpoint, table } => {
            let config = aws_sdk_dynamodb::config::Builder::from(sdk)
                .endpoint_url(endpoint)
                .build();
            let store =
                DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), table.clone());
            store
                .ensure_table()
                .await
                .map_err(|source| LocalError::Table {
                    table: table.clone(),
                    source,
                })?;
            Ok((Arc::new(store), table.clone()))
        }
    }
}
