//! Every message route (`join`, `leave`, `send`, `ping`, `history`, `presence`
//! and `$default`): the steps
//! all frames share (parse, token expiry, policy, rate limit, reply or close) are
//! here; what each route does is in its own file, a function of the [`Route`] and
//! the frame's fields, called from [`dispatch`].
//!
//! A route is declared once, in [`crate::routes`] (its key, policy action and
//! counter); the note there names every place adding one touches.

mod history;
mod join;
mod leave;
mod ping;
mod presence;
mod replay;
mod send;

use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest,
    ApiGatewayWebsocketProxyRequestContext,
};
use serde_json::value::RawValue;

use super::{reply, status};
use crate::app::App;
use crate::auth::Identity;
use crate::fanout::{Fanout, token_expired};
use crate::metrics::Counter;
use crate::policy::RateLimit;
use crate::policy::ratelimit::{self, Verdict};
use crate::protocol::{self, ClientFrame, ErrorCode, ProtocolError, Sender, ServerFrame};
use crate::routes::MessageRoute;
use crate::store::{StreamHead, now_secs, shard_of};

/// Why a frame was not carried out.
pub(super) enum Refusal {
    /// Reply with this error frame.
    Frame(ProtocolError),
    /// Send this error frame, then close the connection.
    Close(ProtocolError),
}

impl From<ProtocolError> for Refusal {
    fn from(e: ProtocolError) -> Self {
        Self::Frame(e)
    }
}

/// Every message route (`join`, `leave`, `send`, `ping` and `$default`): parses the
/// frame, acts on it and returns the reply as the integration response, which API
/// Gateway sends back to the client through the route response.
///
/// Acks are sent only for frames that carry an `id`; pongs and errors always.
pub async fn message(
    app: &App,
    request: ApiGatewayWebsocketProxyRequest,
) -> ApiGatewayProxyResponse {
    let context = &request.request_context;
    let Some(connection_id) = context.connection_id.as_deref() else {
        tracing::warn!("message event without a connectionId");
        return status(400);
    };
    let body = request.body.as_deref().unwrap_or_default();
    let (id, frame) = if request.is_base64_encoded {
        let err = ProtocolError::bad_request("binary frames are not supported; send JSON text");
        (None, Err(err))
    } else {
        let parsed = protocol::parse(body, app.config.max_message_bytes);
        (parsed.id, parsed.frame)
    };
    app.metrics.incr(frame_counter(&frame));
    let now = now_secs();
    // Authorization holds for every message, not only the handshake: a connection
    // outliving its token is closed on its next frame.
    let identity = Identity::from_context(context);
    if identity.expired(now) {
        return close(app, context, connection_id, id, &token_expired()).await;
    }
    // Policy checks first: they cost no write.
    let frame = frame.and_then(|frame| {
        policy_check(app, &frame, &identity)?;
        Ok(frame)
    });
    let room = match &frame {
        Ok(
            ClientFrame::Join { room, .. }
            | ClientFrame::Leave { room }
            | ClientFrame::Send { room, .. }
            | ClientFrame::History { room, .. }
            | ClientFrame::Presence { room, .. },
        ) => Some(room.as_ref()),
        Ok(ClientFrame::Ping) | Err(_) => None,
    };
    // Every frame is counted, whatever it is: one write.
    let outcome = match limit(app, connection_id, room, now).await {
        Err(refusal) => Err(refusal),
        Ok(()) => match frame {
            Ok(frame) => {
                let route = Route {
                    app,
                    context,
                    identity: &identity,
                    connection_id,
                    id,
                };
                dispatch(&route, frame).await
            }
            Err(e) => Err(Refusal::Frame(e)),
        },
    };
    match outcome {
        Ok(Some(frame)) => reply(frame),
        Ok(None) => status(200),
        Err(Refusal::Frame(e)) => {
            tracing::info!(connection_id, code = e.code.as_str(), "refused frame");
            app.metrics.error(e.code);
            reply(ServerFrame::error(id, &e).to_json())
        }
        Err(Refusal::Close(e)) => close(app, context, connection_id, id, &e).await,
    }
}

/// Sends the error frame through `@connections`, then closes the connection. The
/// frame cannot be the integration response: API Gateway would send that after the
/// close, to a connection that is gone.
async fn close(
    app: &App,
    context: &ApiGatewayWebsocketProxyRequestContext,
    connection_id: &str,
    id: Option<&RawValue>,
    e: &ProtocolError,
) -> ApiGatewayProxyResponse {
    tracing::info!(connection_id, code = e.code.as_str(), "refused frame");
    app.metrics.error(e.code);
    let frame = ServerFrame::error(id, e).to_json();
    let Some(endpoint) = app.endpoint(context) else {
        return reply(frame);
    };
    // The same close as a fan-out's for a member found expired.
    Fanout::for_app(app, &endpoint)
        .close(connection_id, frame)
        .await;
    status(200)
}

/// Counts one frame (any frame) against the connection-wide limit and, for a room
/// frame that passed its policy, against its policy's limit: one store write.
async fn limit(
    app: &App,
    connection_id: &str,
    room: Option<&str>,
    now: u64,
) -> Result<(), Refusal> {
    let policies = &app.config.policies;
    let resolved = room.map(|room| room_limit(app, room));
    let verdicts = ratelimit::count(
        app.store.as_ref(),
        connection_id,
        &policies.connection,
        resolved,
        1,
        now,
    )
    .await
    .map_err(internal)?;
    let (verdict, message) = match (verdicts.room, resolved) {
        (Some(v), Some((_, rate))) if v > verdicts.connection => (
            v,
            format!(
                "more than {} frames in {} s to rooms of this namespace; slow down",
                rate.limit, rate.window_secs
            ),
        ),
        _ => (
            verdicts.connection,
            format!(
                "more than {} frames in {} s on this connection; slow down",
                policies.connection.limit, policies.connection.window_secs
            ),
        ),
    };
    match verdict {
        Verdict::Allowed => Ok(()),
        Verdict::Limited => Err(Refusal::Frame(ProtocolError::new(
            ErrorCode::RateLimited,
            message,
        ))),
        Verdict::Flooding => Err(Refusal::Close(ProtocolError::new(
            ErrorCode::RateLimited,
            message,
        ))),
    }
}

/// The policy key and limit a frame naming `room` also counts against.
fn room_limit<'a>(app: &'a App, room: &str) -> (&'a str, &'a RateLimit) {
    let (key, policy) = app.config.policies.resolve(room);
    (key, &policy.rate_limit)
}

/// Charges what a `join`'s replay of `bytes` event bytes into `room` cost beyond
/// its frame ([`ratelimit::replay_units`]), against the same counters as the frame,
/// in the window current after the replay: one write, none for a replay of up to
/// 32 KB. The verdicts fall on the connection's next frames; a failed write is
/// logged and the join goes on (its replay is already sent).
pub(super) async fn charge_replay(route: &Route<'_>, room: &str, bytes: usize) {
    let app = route.app;
    let (key, room_rate) = room_limit(app, room);
    let connection_rate = &app.config.policies.connection;
    // At most one window's budget: a replay can use up the window, so the next
    // frames wait for the next one (`rate_limited`), but it never closes the
    // connection as flooding by itself; a client continuing a long recovery
    // would otherwise be closed, reconnect and replay the same bytes again.
    let units = ratelimit::replay_units(bytes).min(connection_rate.limit.min(room_rate.limit));
    if units == 0 {
        return;
    }
    let charged = ratelimit::count(
        app.store.as_ref(),
        route.connection_id,
        connection_rate,
        Some((key, room_rate)),
        units,
        now_secs(),
    )
    .await;
    if let Err(e) = charged {
        tracing::error!(error = %crate::error_chain(&e), "charging a replay failed");
    }
}

/// What every route function gets: the frame's connection and its request id.
pub(super) struct Route<'a> {
    pub app: &'a App,
    pub context: &'a ApiGatewayWebsocketProxyRequestContext,
    pub identity: &'a Identity,
    pub connection_id: &'a str,
    /// The frame's `id`, echoed in its ack, pong or error.
    pub id: Option<&'a RawValue>,
}

/// A route's outcome: the reply frame (if any), or why the frame was refused.
pub(super) type Reply = Result<Option<String>, Refusal>;

/// What an ack reports besides its action and room.
#[derive(Default)]
pub(super) struct AckDetail<'a> {
    /// For `send`: recipients and deliveries.
    sent: Option<(usize, usize)>,
    /// For `send` to a sharded room: the workers it was handed to.
    workers: Option<u16>,
    /// In a room with history: the stream's head after the frame.
    head: Option<&'a StreamHead>,
    /// For a `join` with `since`.
    recovered: Option<bool>,
    /// For a `join` whose replay was cut short: the last offset it delivered.
    replayed_to: Option<u64>,
}

impl Route<'_> {
    /// The ack of a room frame, sent only when the frame carried an `id`.
    fn ack(&self, action: &'static str, room: &str, detail: AckDetail<'_>) -> Option<String> {
        self.id.map(|id| {
            ServerFrame::Ack {
                id,
                ok: true,
                action,
                room: Some(room),
                recipients: detail.sent.map(|s| s.0),
                delivered: detail.sent.map(|s| s.1),
                workers: detail.workers,
                offset: detail.head.map(|h| h.offset),
                epoch: detail.head.map(|h| h.epoch.as_str()),
                recovered: detail.recovered,
                replayed_to: detail.replayed_to,
            }
            .to_json()
        })
    }

    /// The `@connections` endpoint, or `internal` if roomcast is misconfigured.
    fn endpoint(&self) -> Result<String, ProtocolError> {
        self.app
            .endpoint(self.context)
            .ok_or_else(|| ProtocolError::new(ErrorCode::Internal, "roomcast is misconfigured"))
    }

    /// `not_member` unless the connection is a live member of `room`: one read, in
    /// the connection's shard of the room.
    async fn require_member(&self, room: &str, verb: &str, now: u64) -> Result<(), Refusal> {
        let shard = shard_of(self.connection_id, self.app.config.policies.shards(room));
        let member = self
            .app
            .store
            .member(room, shard, self.connection_id, now)
            .await
            .map_err(internal)?;
        match member {
            Some(_) => Ok(()),
            None => Err(not_member(room, verb).into()),
        }
    }

    /// The connection as the `from` or `member` of what it causes.
    fn sender(&self) -> Sender<'_> {
        Sender::member(self.connection_id, self.identity.user_id.as_deref())
    }
}

/// The refusal of a room frame from a connection that has not joined the room.
fn not_member(room: &str, verb: &str) -> ProtocolError {
    ProtocolError::new(
        ErrorCode::NotMember,
        format!("join {room:?} before {verb} it"),
    )
}

/// The policy a frame needs, checked before it is counted: a refused room frame is
/// then counted only against the connection-wide limit.
fn policy_check(
    app: &App,
    frame: &ClientFrame<'_>,
    identity: &Identity,
) -> Result<(), ProtocolError> {
    match (MessageRoute::of(frame).action(), room_of(frame)) {
        (Some(action), Some(room)) => app.config.policies.check(action, room, identity),
        _ => Ok(()),
    }
}

/// The room a frame names, if it names one.
fn room_of<'f>(frame: &'f ClientFrame<'_>) -> Option<&'f str> {
    match frame {
        ClientFrame::Join { room, .. }
        | ClientFrame::Leave { room }
        | ClientFrame::Send { room, .. }
        | ClientFrame::History { room, .. }
        | ClientFrame::Presence { room, .. } => Some(room),
        ClientFrame::Ping => None,
    }
}

/// Runs the route of a frame that passed its policy and rate limit.
async fn dispatch(route: &Route<'_>, frame: ClientFrame<'_>) -> Reply {
    match frame {
        ClientFrame::Join { room, since, pack } => {
            join::join(route, &room, since.as_ref(), pack).await
        }
        ClientFrame::History {
            room,
            limit,
            before,
        } => history::history(route, &room, limit, before).await,
        ClientFrame::Presence { room, after } => {
            presence::presence(route, &room, after.as_deref()).await
        }
        ClientFrame::Leave { room } => leave::leave(route, &room).await,
        ClientFrame::Send { room, event, data } => send::send(route, &room, &event, data).await,
        ClientFrame::Ping => ping::ping(route).await,
    }
}

/// The counter of a frame, by its action (`invalid` when it did not parse).
fn frame_counter(frame: &Result<ClientFrame<'_>, ProtocolError>) -> Counter {
    match frame {
        Ok(frame) => MessageRoute::of(frame).counter(),
        Err(_) => Counter::FrameInvalid,
    }
}

/// A failure of what a handler depends on (the store, the fan-out queue):
/// details go to the log (the error chain names the service), the client gets a
/// retryable `internal`.
fn internal(e: impl std::error::Error) -> ProtocolError {
    tracing::error!(error = %crate::error_chain(&e), "a dependency failed");
    ProtocolError::new(ErrorCode::Internal, "temporary failure; try again")
}
