//! The in-process `@connections` adapter: handlers running inside `roomcast dev`
//! post to the gateway's connections through the [`Management`] port without an
//! HTTP request. Every loopback request cost the gateway a request, a response and
//! their system calls on both sides (docs/performance.md); here a post is a push
//! onto the connection's outbound queue.
//!
//! The semantics are the `@connections` route's, from the same code ([`post`]):
//! 410 for a connection that is gone (the fan-out then removes its records), 413
//! over the payload limit, 429 when the connection's outbound queue is full,
//! injected faults, and `--management-latency-ms`. The payload's `Bytes` become
//! the frame as they are: every recipient of a fan-out shares one buffer.
//!
//! Posts to any other endpoint (a handler configured for another API) go over
//! HTTP as before; `roomcast dev --management-http` keeps every handler on HTTP.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use roomcast_core::config::GATEWAY_MAX_PAYLOAD;
use roomcast_core::management::apigw::ApiGatewayManagement;
use roomcast_core::management::{Management, PostError};
use tokio::sync::mpsc::error::TrySendError;

use crate::connections::Command;
use crate::faults::FaultKind;
use crate::websocket::close;
use crate::{Gateway, Inner};

/// How long DELETE waits for room in a full outbound queue.
const DELETE_WAIT: Duration = Duration::from_secs(5);

/// Why a post to one of this gateway's connections was refused. The
/// `@connections` route answers each with its HTTP error; the in-process adapter
/// hands each to the fan-out as the [`PostError`] the HTTP adapter would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Over [`GATEWAY_MAX_PAYLOAD`]; the payload's size.
    TooLarge(usize),
    /// No such connection, or it is closing.
    Gone,
    /// The connection's outbound queue is full.
    Full,
    /// Fault injection picked this answer.
    Injected(FaultKind),
}

impl From<Refusal> for PostError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::TooLarge(_) => Self::PayloadTooLarge,
            Refusal::Gone | Refusal::Injected(FaultKind::Gone) => Self::Gone,
            Refusal::Full | Refusal::Injected(FaultKind::Throttled) => Self::Throttled,
            Refusal::Injected(FaultKind::ServerError) => Self::Server {
                status: 500,
                message: "injected fault: internal error".to_owned(),
            },
        }
    }
}

/// Queues `data` for `connection_id` as one frame: text when it is UTF-8 (the
/// frame shares `data`'s buffer), binary otherwise. An injected 410 also closes
/// the connection (1001, then `$disconnect`), so what follows matches a client
/// that went away.
pub(crate) fn post(gateway: &Gateway, connection_id: &str, data: Bytes) -> Result<(), Refusal> {
    if data.len() > GATEWAY_MAX_PAYLOAD {
        return Err(Refusal::TooLarge(data.len()));
    }
    if let Some(fault) = gateway.injected_fault(connection_id) {
        if fault == FaultKind::Gone {
            let _ = gateway.connections().try_send(
                connection_id,
                Command::Close {
                    code: close::GOING_AWAY,
                    reason: "injected fault: gone".to_owned(),
                },
            );
        }
        return Err(Refusal::Injected(fault));
    }
    let message = match Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(data),
    };
    match gateway
        .connections()
        .try_send(connection_id, Command::Send(message))
    {
        Some(Ok(())) => Ok(()),
        Some(Err(TrySendError::Full(_))) => Err(Refusal::Full),
        Some(Err(TrySendError::Closed(_))) | None => Err(Refusal::Gone),
    }
}

/// Asks `connection_id`'s task to close (1000) and run `$disconnect`, waiting
/// [`DELETE_WAIT`] at most for room in its outbound queue.
pub(crate) async fn delete(gateway: &Gateway, connection_id: &str) -> Result<(), Refusal> {
    let connection = gateway
        .connections()
        .get(connection_id)
        .ok_or(Refusal::Gone)?;
    let command = Command::Close {
        code: close::NORMAL,
        reason: crate::management::DELETED_REASON.to_owned(),
    };
    match tokio::time::timeout(DELETE_WAIT, connection.commands.send(command)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Refusal::Gone),
        Err(_) => Err(Refusal::Full),
    }
}

/// Waits the configured `management_latency`, if any.
pub(crate) async fn latency(gateway: &Gateway) {
    let latency = gateway.options().management_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

/// The [`Management`] adapter of handlers running inside `roomcast dev`.
pub struct InProcessManagement {
    /// This gateway's own `@connections` endpoint: posts to it stay in-process.
    endpoint: String,
    /// Set once the gateway exists (it is built around the handlers' `App`, which
    /// holds this adapter); held weakly, as the gateway owns the handlers.
    gateway: OnceLock<Weak<Inner>>,
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
        let _ = self.gateway.set(Arc::downgrade(&gateway.inner));
    }

    /// The gateway, when `endpoint` is its own and it is still running.
    fn local(&self, endpoint: &str) -> Option<Result<Gateway, PostError>> {
        if endpoint.trim_end_matches('/') != self.endpoint {
            return None;
        }
        let gateway = self
            .gateway
            .get()
            .and_then(Weak::upgrade)
            .map(|inner| Gateway { inner });
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
                latency(&gateway).await;
                Ok(post(&gateway, connection_id, data)?)
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
        Some(post(&gateway, connection_id, data.clone()).map_err(PostError::from))
    }

    async fn delete(&self, endpoint: &str, connection_id: &str) -> Result<(), PostError> {
        match self.local(endpoint) {
            None => self.http.delete(endpoint, connection_id).await,
            Some(gateway) => {
                let gateway = gateway?;
                latency(&gateway).await;
                Ok(delete(&gateway, connection_id).await?)
            }
        }
    }
}
