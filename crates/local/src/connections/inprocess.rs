//! The in-process `@connections` adapter: handlers running inside `roomcast dev`
//! post to the gateway's connections through the [`Management`] port without an
//! HTTP request. Every loopback request cost the gateway a request, a response and
//! their system calls on both sides (docs/performance.md); here a post is a push
//! onto the connection's outbound queue.
//!
//! The semantics are the `@connections` route's, from the same code
//! ([`super::rules`]); this adapter only hands each refusal to the fan-out as the
//! [`PostError`] the HTTP adapter would have. The payload's `Bytes` become the
//! frame as they are: every recipient of a fan-out shares one buffer.
//!
//! Posts to any other endpoint (a handler configured for another API) go over
//! HTTP as before; `roomcast dev --management-http` keeps every handler on HTTP.

use std::sync::OnceLock;

use async_trait::async_trait;
use bytes::Bytes;
use roomcast_core::management::apigw::ApiGatewayManagement;
use roomcast_core::management::{Management, PostError};

use super::rules;
use crate::gateway::{Gateway, WeakGateway};

/// The [`Management`] adapter of handlers running inside `roomcast dev`.
pub struct InProcessManagement {
    /// This gateway's own `@connections` endpoint: posts to it stay in-process.
    endpoint: String,
    /// Set once the gateway exists (it is built around the handlers' `App`, which
    /// holds this adapter); held weakly, as the gateway owns the handlers.
    gateway: OnceLock<WeakGateway>,
    /// For any other endpoint.
    http: ApiGatewayManagement,
}

impl InProcessManagement {
    pub fn new(endpoint: String, http: ApiGatewayManagement) -> Self {
        Self {
            endpoint,
            gateway: OnceLock::new(),
            http,
        }
    }

    /// Connects the adapter to its gateway; later calls change nothing.
    pub(crate) fn attach(&self, gateway: &Gateway) {
        let _ = self.gateway.set(gateway.downgrade());
    }

    /// The gateway, when `endpoint` is its own and it is still running.
    fn local(&self, endpoint: &str) -> Option<Result<Gateway, PostError>> {
        if endpoint.trim_end_matches('/') != self.endpoint {
            return None;
        }
        let gateway = self.gateway.get().and_then(WeakGateway::upgrade);
        Some(gateway.ok_or_else(|| PostError::Transport("the gateway has shut down".to_owned())))
    }
}

#[async_trait]
impl Management for InProcessManagement {
    async fn post(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), PostError> {
        match self.local(endpoint) {
            None => self.http.post(endpoint, connection_id, data).await,
            Some(gateway) => {
                let gateway = gateway?;
                Ok(rules::post(&gateway, connection_id, data).await?)
            }
        }
    }

    /// Without injected latency a post never waits: the fan-out takes this
    /// answer instead of starting a future per recipient.
    fn post_now(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: &Bytes,
    ) -> Option<Result<(), PostError>> {
        let gateway = match self.local(endpoint)? {
            Ok(gateway) => gateway,
            Err(e) => return Some(Err(e)),
        };
        if !gateway.options().management_latency.is_zero() {
            return None;
        }
        Some(rules::post_now(&gateway, connection_id, data.clone()).map_err(PostError::from))
    }

    async fn delete(&self, endpoint: &str, connection_id: &str) -> Result<(), PostError> {
        match self.local(endpoint) {
            None => self.http.delete(endpoint, connection_id).await,
            Some(gateway) => {
                let gateway = gateway?;
                Ok(rules::delete(&gateway, connection_id).await?)
            }
        }
    }
}
