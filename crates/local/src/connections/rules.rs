//! The rules of `@connections` for this gateway's own connections, whoever calls:
//! the HTTP API ([`crate::http::connections`]) and the handlers' in-process adapter
//! ([`super::inprocess`]) both only translate [`post`]'s and [`delete`]'s answers.
//!
//! A post is queued for the connection as one frame: 410 for a connection that is
//! gone (the fan-out then removes its records), 413 over the payload limit, 429
//! when the connection's outbound queue is full, injected faults, and
//! `--management-latency-ms` ([`latency`]) before each answer. Every call (post,
//! get, delete) first takes a token from the `--management-rps` quota ([`admit`];
//! 429 past it). A post to a simulated member (`crate::simulated`) passes the
//! same checks, then is counted and dropped. A delete closes the
//! connection with 1000 and [`DELETED_REASON`], then `$disconnect` runs.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use roomcast_core::limits::GATEWAY_MAX_PAYLOAD;
use roomcast_core::management::PostError;
use tokio::sync::mpsc::error::TrySendError;

use super::close;
use super::registry::Command;
use crate::faults::FaultKind;
use crate::gateway::Gateway;

/// The `$disconnect` reason after a DELETE, as API Gateway's execution logs show it
/// (boto/boto3#3789, aws/chalice#2060, 2023-07).
pub const DELETED_REASON: &str = "Connection Closed Normally";

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
    /// Over the account-level `@connections` quota (`--management-rps`).
    Quota,
}

impl From<Refusal> for PostError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::TooLarge(_) => Self::PayloadTooLarge,
            Refusal::Gone | Refusal::Injected(FaultKind::Gone) => Self::Gone,
            Refusal::Full | Refusal::Quota | Refusal::Injected(FaultKind::Throttled) => {
                Self::Throttled
            }
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
pub(crate) fn post_now(gateway: &Gateway, connection_id: &str, data: Bytes) -> Result<(), Refusal> {
    admit(gateway)?;
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
    if gateway.simulated().accept(connection_id, &data) {
        return Ok(());
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

/// [`post_now`] after the configured latency.
pub(crate) async fn post(
    gateway: &Gateway,
    connection_id: &str,
    data: Bytes,
) -> Result<(), Refusal> {
    latency(gateway).await;
    post_now(gateway, connection_id, data)
}

/// After the configured latency, asks `connection_id`'s task to close (1000) and
/// run `$disconnect`, waiting [`DELETE_WAIT`] at most for room in its outbound queue.
pub(crate) async fn delete(gateway: &Gateway, connection_id: &str) -> Result<(), Refusal> {
    latency(gateway).await;
    admit(gateway)?;
    let connection = gateway
        .connections()
        .get(connection_id)
        .ok_or(Refusal::Gone)?;
    let command = Command::Close {
        code: close::NORMAL,
        reason: DELETED_REASON.to_owned(),
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

/// Takes one call from the `--management-rps` quota: [`Refusal::Quota`] past it.
pub(crate) fn admit(gateway: &Gateway) -> Result<(), Refusal> {
    if gateway.admit_management_call() {
        Ok(())
    } else {
        Err(Refusal::Quota)
    }
}
