//! The dependencies every handler borrows: configuration and the two ports.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequestContext;

use crate::config::{Config, ConfigError};
use crate::management::apigw::ApiGatewayManagement;
use crate::management::{Management, endpoint_for};
use crate::metrics::Metrics;
use crate::parameters::ParameterStore;
use crate::store::Store;
use crate::store::dynamo::DynamoStore;
use crate::workers::{Dispatch, SqsDispatch};

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub management: Arc<dyn Management>,
    /// What the handlers count; shared by every `App` of a `roomcast dev` process.
    pub metrics: Arc<Metrics>,
    /// Where big rooms' fan-out jobs go (`None`: every fan-out runs in line).
    pub dispatch: Option<Arc<dyn Dispatch>>,
}

impl App {
    pub fn new(config: Config, store: Arc<dyn Store>, management: Arc<dyn Management>) -> Self {
        Self {
            config,
            store,
            management,
            metrics: Arc::default(),
            dispatch: None,
        }
    }

    /// This app, handing big rooms' fan-outs to `dispatch`.
    pub fn with_dispatch(mut self, dispatch: Arc<dyn Dispatch>) -> Self {
        self.dispatch = Some(dispatch);
        self
    }

    /// This app, counting into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// What a Lambda function builds once at cold start: configuration from the
    /// environment, the DynamoDB store and the management client from one `SdkConfig`.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let mut config = Config::from_env()?;
        let sdk = aws_config::load_from_env().await;
        if let Some(name) = &config.policies_parameter {
            let parameters =
                ParameterStore::new(&sdk).map_err(|source| ConfigError::Parameter {
                    name: crate::names::env::POLICIES_PARAMETER,
                    source,
                })?;
            config.policies = crate::config::policies_from(&parameters, name).await?;
        }
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
        let queue = config.fanout_queue_url.clone();
        let app = Self::new(
            config,
            Arc::new(store),
            Arc::new(ApiGatewayManagement::new(&sdk)),
        );
        Ok(match queue {
            Some(url) => app.with_dispatch(Arc::new(SqsDispatch::new(
                aws_sdk_sqs::Client::new(&sdk),
                url,
            ))),
            None => app,
        })
    }

    /// The `@connections` endpoint for an event: the configured one, or else the
    /// event's own domain and stage ([`endpoint_for`]). `None`, logged as the
    /// misconfiguration it is, when there is neither.
    pub fn endpoint(&self, context: &ApiGatewayWebsocketProxyRequestContext) -> Option<String> {
        let endpoint = endpoint_for(self.config.management_endpoint.as_deref(), context);
        if endpoint.is_none() {
            tracing::error!("no management endpoint: set ROOMCAST_MANAGEMENT_ENDPOINT");
        }
        endpoint
    }
}
