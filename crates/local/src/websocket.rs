//! The WebSocket side: the `$connect` handshake, one task per connection reading
//! frames and writing replies, route selection, limits and `$disconnect`.
//!
//! Ordering: each connection runs its message events one at a time, in the order
//! the frames arrived, so replies come back in order. Different connections run
//! concurrently. (API Gateway itself promises no order: it invokes the integration
//! once per frame, possibly in parallel.)
//!
//! Binary frames close the connection with 1003 and invoke nothing, as API Gateway
//! does ("API Gateway WebSocket APIs don't currently support binary frames in
//! incoming message payloads": AWS, "Working with binary media types for WebSocket
//! APIs").
//!
//! Logs: one INFO line per connection event (connected, disconnected, handshake
//! refused) under the [`CONNECTION_LOG`] target, so `roomcast dev --quiet` can turn
//! them off; everything else per connection or frame is DEBUG. Tokens, frame bodies
//! and authorizer contexts are never logged.
//!
//! Memory: an idle connection is one task holding its socket, a command queue and
//! one timer. A message event runs as a task of its own, started when its frame is
//! next in line; frames waiting behind it sit in a queue that allocates only when
//! used (docs/performance.md has the measurements).

use std::collections::VecDeque;
use std::error::Error as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use roomcast_core::auth::origin::OriginRefusal;
use roomcast_core::store::now_millis;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite;

use crate::Gateway;
use crate::connections::{Command, CommandSender, ConnectionHandle, command_queue, write_batch};
use crate::events::{ConnectionContext, gateway_id};
use crate::handlers::InvokeError;
use crate::routes::Selected;

/// Initial read buffer of a connection, held for as long as it is open; it grows
/// for larger frames (which are then read this many bytes at a time). Client
/// frames are mostly small JSON documents.
const READ_BUFFER: usize = 1024;

/// Bytes of frames gathered before a write to the socket without a flush.
const WRITE_BUFFER: usize = 16 * 1024;

/// Frames one connection may have waiting behind the message event it is running.
pub const INBOUND_QUEUE: usize = 256;

/// How long a closing handshake may take before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The `tracing` target of the one INFO line per connection event.
pub const CONNECTION_LOG: &str = "roomcast::connection";

/// Close codes (RFC 6455) the gateway reports.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Sent for a binary frame, which API Gateway does not accept.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Reported for a client close frame without a code.
    pub const NO_STATUS: u16 = 1005;
    /// Reported when the client vanished without a close frame.
    pub const ABNORMAL: u16 = 1006;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// `GET /{stage}` (and `GET /`): runs `$connect` while the upgrade is pending and
/// completes it only on a 2xx answer.
pub async fn websocket(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if gateway.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let options = gateway.options();
    let header_text = |name: HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    // The origin allowlist decides before any token is read (and before the
    // authorizer runs); the refusal names the origin, never a token.
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("<not text>"));
    if let Err(refusal) = options.origins.check(origin) {
        let origin = match &refusal {
            OriginRefusal::Missing => "",
            OriginRefusal::NotAllowed(origin) => origin.as_str(),
        };
        tracing::info!(target: CONNECTION_LOG, status = 403, origin, reason = %refusal, "handshake refused");
        options
            .metrics
            .incr(roomcast_core::metrics::Counter::RefusedOrigin);
        return crate::aws::AwsError::handshake(StatusCode::FORBIDDEN, "Forbidden").into_response();
    }
    let now = now_millis();
    let mut context = ConnectionContext {
        connection_id: gateway_id(),
        connected_at_ms: now,
        source_ip: peer.ip().to_string(),
        user_agent: header_text(header::USER_AGENT),
        domain_name: header_text(header::HOST).unwrap_or_else(|| gateway.local_addr().to_string()),
        stage: options.stage.clone(),
        api_id: options.api_id.clone(),
        authorizer: Default::default(),
    };
    // The authorizer runs first, as on API Gateway: a refusal never reaches $connect.
    match crate::auth::authorize(&gateway, &context, &headers, &query, now).await {
        Ok(authorizer) => context.authorizer = authorizer,
        Err(refusal) => return refusal,
    }
    let context = Arc::new(context);
    let event = match context.connect(&headers, &query, now) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "could not build the $connect event");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    // Without a $connect route, API Gateway accepts every (authorized) handshake.
    let connected = match gateway.routes().connect() {
        Some(route) => gateway.invoke_route(route, event).await,
        None => {
            let mut accepted = ApiGatewayProxyResponse::default();
            accepted.status_code = 200;
            Ok(accepted)
        }
    };
    let answer = match connected {
        Ok(answer) => answer,
        Err(e) => {
            // API Gateway answers a failed or timed-out integration with a 500.
            tracing::warn!(target: CONNECTION_LOG, connection_id = %context.connection_id, status = 500, error = %e, "handshake refused: $connect failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if !(200..300).contains(&answer.status_code) {
        tracing::info!(
            target: CONNECTION_LOG,
            connection_id = %context.connection_id,
            status = answer.status_code,
            "handshake refused by $connect"
        );
        let status = StatusCode::from_u16(u16::try_from(answer.status_code).unwrap_or(500))
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        copy_headers(&answer, response.headers_mut());
        return response;
    }

    let guard = gateway.track_task();
    let failed = (gateway.clone(), Arc::clone(&context));
    let mut response = upgrade
        // tungstenite reserves 128 KiB read and write buffers per connection by
        // default: 146 KB of RSS per idle connection, measured with `roomcast
        // bench`. Small buffers that grow on demand hold idle sockets cheaply. The
        // write buffer holds nothing until frames are written; frames queued
        // together go out in one write (`write_batch`).
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_frame_size(options.max_frame_bytes)
        .max_message_size(options.max_message_bytes)
        .on_failed_upgrade(move |error| {
            let (gateway, context) = failed;
            tracing::warn!(target: CONNECTION_LOG, connection_id = %context.connection_id, %error, "upgrade failed");
            let guard = gateway.track_task();
            tokio::spawn(async move {
                run_disconnect(&gateway, &context, close::ABNORMAL, "").await;
                drop(guard);
            });
        })
        .on_upgrade(move |socket| async move {
            run_connection(gateway, context, socket).await;
            drop(guard);
        });
    copy_headers(&answer, response.headers_mut());
    response
}

/// The integration's headers go into the handshake response (this is how
/// `Sec-WebSocket-Protocol` is chosen); the ones that frame the HTTP exchange stay ours.
fn copy_headers(answer: &ApiGatewayProxyResponse, into: &mut HeaderMap) {
    let reserved = [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_ACCEPT,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
    ];
    for (name, value) in answer
        .headers
        .iter()
        .chain(answer.multi_value_headers.iter())
    {
        if !reserved.contains(name) {
            into.insert(name.clone(), value.clone());
        }
    }
}

/// A text frame from the client, waiting for its message event.
type Inbound = String;

/// Why a connection ended, and what the client should be told.
struct Ending {
    code: u16,
    reason: String,
    /// The close frame to send, when the gateway closes; `None` when the client
    /// closed (tungstenite echoes its close) or vanished.
    send_close: bool,
    /// Whether the socket can still be read to finish the closing handshake.
    readable: bool,
}

impl Ending {
    fn server(code: u16, reason: &str) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            send_close: true,
            readable: true,
        }
    }
}

/// A connection's message events: the one running (a task of its own, so a slow
/// client's socket never holds up its fan-outs) and the frames waiting behind it,
/// in arrival order. Idle, this is an empty queue and no task.
#[derive(Default)]
struct Messages {
    running: Option<JoinHandle<()>>,
    waiting: VecDeque<Inbound>,
}

impl Messages {
    /// Runs `frame` now if nothing is running, or queues it. Hands it back when
    /// [`INBOUND_QUEUE`] frames are already waiting.
    fn accept(
        &mut self,
        frame: Inbound,
        start: impl FnOnce(Inbound) -> JoinHandle<()>,
    ) -> Result<(), Inbound> {
        if self.running.is_none() {
            self.running = Some(start(frame));
        } else if self.waiting.len() < INBOUND_QUEUE {
            self.waiting.push_back(frame);
        } else {
            return Err(frame);
        }
        Ok(())
    }

    /// Waits for the running event to finish; pending forever when none runs.
    async fn finished(&mut self) {
        match &mut self.running {
            Some(running) => {
                // A panic was already reported by the task; the next frame runs anyway.
                let _ = running.await;
                self.running = None;
            }
            None => std::future::pending().await,
        }
    }

    /// Starts the next waiting frame, if any.
    fn start_next(&mut self, start: impl FnOnce(Inbound) -> JoinHandle<()>) {
        self.running = self.waiting.pop_front().map(start);
        if self.waiting.is_empty() && self.waiting.capacity() > 0 {
            // A burst is over: give its queue back.
            self.waiting = VecDeque::new();
        }
    }
}

async fn run_connection(gateway: Gateway, context: Arc<ConnectionContext>, mut socket: WebSocket) {
    // Only the durations: a clone of all the options would keep copies of their
    // strings for every connection.
    let options = gateway.options();
    let (idle_timeout, max_duration, integration_timeout) = (
        options.idle_timeout,
        options.max_connection_duration,
        options.integration_timeout,
    );
    let connection_id = context.connection_id.as_str();
    let (commands, mut command_rx) = command_queue();
    let last_active_ms = Arc::new(AtomicU64::new(context.connected_at_ms));
    gateway.connections().insert(ConnectionHandle {
        context: Arc::clone(&context),
        commands: commands.clone(),
        last_active_ms: Arc::clone(&last_active_ms),
    });
    tracing::info!(target: CONNECTION_LOG, %connection_id, "connected");

    let mut messages = Messages::default();
    let start = |frame: Inbound| {
        tokio::spawn(message_worker(
            gateway.clone(),
            Arc::clone(&context),
            frame,
            commands.clone(),
        ))
    };

    let mut shutdown = gateway.shutdown_signal();
    // One timer for both the idle timeout and the connection cap: it fires at the
    // earlier of the two and, when activity moved the idle deadline, is set again.
    let connected = Instant::now();
    let cap = connected + max_duration;
    let mut last_activity = connected;
    let timer = sleep_until(cap.min(last_activity + idle_timeout));
    tokio::pin!(timer);
    let touch = |last_activity: &mut Instant| {
        *last_activity = Instant::now();
        last_active_ms.store(now_millis(), Ordering::Relaxed);
    };

    let ending = loop {
        tokio::select! {
            frame = socket.recv() => match frame {
                Some(Ok(Message::Text(text))) => {
                    touch(&mut last_activity);
                    if let Some(throttled) = accept(&mut messages, text.as_str().to_owned(), start, &context) {
                        let _ = socket.send(throttled).await;
                    }
                }
                // API Gateway rejects binary frames, invoking nothing, and disconnects
                // the client with 1003 (docs/local.md cites the page).
                Some(Ok(Message::Binary(_))) => {
                    tracing::debug!(%connection_id, "binary frame: closing with 1003");
                    break Ending::server(close::UNSUPPORTED_DATA, "Unsupported data");
                }
                // tungstenite answers pings itself; both count as activity.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => touch(&mut last_activity),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame.map_or((close::NO_STATUS, String::new()), |f| {
                        (f.code, f.reason.as_str().to_owned())
                    });
                    break Ending { code, reason, send_close: false, readable: true };
                }
                Some(Err(error)) => break read_error(&error),
                None => break Ending { code: close::ABNORMAL, reason: String::new(), send_close: false, readable: false },
            },
            () = messages.finished() => messages.start_next(start),
            command = command_rx.recv() => match command {
                Some(Command::Send(message)) => {
                    touch(&mut last_activity);
                    match write_batch(&mut socket, message, &mut command_rx).await {
                        Ok(None | Some(Command::Send(_))) => {}
                        Ok(Some(Command::Close { code, reason })) => break Ending::server(code, &reason),
                        Err(_) => break Ending { code: close::ABNORMAL, reason: String::new(), send_close: false, readable: false },
                    }
                }
                Some(Command::Close { code, reason }) => break Ending::server(code, &reason),
                None => break Ending::server(close::GOING_AWAY, "Going away"),
            },
            () = &mut timer => {
                let now = Instant::now();
                if now >= cap {
                    tracing::debug!(%connection_id, "maximum connection duration reached");
                    break Ending::server(close::GOING_AWAY, "Going away");
                }
                let idle_at = last_activity + idle_timeout;
                if now >= idle_at {
                    tracing::debug!(%connection_id, "idle timeout");
                    break Ending::server(close::GOING_AWAY, "Going away");
                }
                timer.as_mut().reset(cap.min(idle_at));
            }
            () = async { let _ = shutdown.wait_for(|down| *down).await; } => break Ending::server(close::GOING_AWAY, "Going away"),
        }
    };

    // From here on the connection is gone for @connections (410), as on API Gateway.
    gateway.connections().remove(connection_id);
    // Frames already accepted still run, in order, while the socket closes.
    let Messages { running, waiting } = messages;
    let pending = (running.is_some() || !waiting.is_empty()).then(|| {
        let (gateway, context, commands) =
            (gateway.clone(), Arc::clone(&context), commands.clone());
        tokio::spawn(async move {
            if let Some(running) = running {
                let _ = running.await;
            }
            for frame in waiting {
                message_worker(
                    gateway.clone(),
                    Arc::clone(&context),
                    frame,
                    commands.clone(),
                )
                .await;
            }
        })
    });
    drop(commands);
    // Boxed: the closing handshake and `$disconnect` run once, and their futures
    // would otherwise make every idle connection's task as large as they are.
    Box::pin(finish_close(&mut socket, &ending)).await;
    drop(socket);

    // Let frames already accepted finish before $disconnect, so it cleans up after them.
    if let Some(pending) = pending {
        let _ = timeout(integration_timeout, pending).await;
    }
    Box::pin(run_disconnect(
        &gateway,
        &context,
        ending.code,
        &ending.reason,
    ))
    .await;
    tracing::info!(target: CONNECTION_LOG, %connection_id, code = ending.code, reason = %ending.reason, "disconnected");
}

/// Runs a frame's message event, or queues it behind the running one. When the
/// connection has more frames waiting than it may, the frame is dropped and the
/// answer for the client returned, as API Gateway does when it throttles a route:
/// memory stays bounded whatever a client sends. (Not async, so the connection's
/// task does not carry a future for this rare case.)
fn accept(
    messages: &mut Messages,
    frame: Inbound,
    start: impl FnOnce(Inbound) -> JoinHandle<()>,
    context: &ConnectionContext,
) -> Option<Message> {
    messages.accept(frame, start).err()?;
    tracing::warn!(connection_id = %context.connection_id, "too many frames queued; dropping one");
    let throttled = serde_json::json!({
        "message": "Too Many Requests",
        "connectionId": context.connection_id,
    });
    Some(Message::text(throttled.to_string()))
}

/// Maps a read error to the close API Gateway sends: 1009 for a frame or message
/// over the limits, 1007 for invalid UTF-8, 1002 for other protocol violations,
/// and 1006 (nothing to send) when the transport failed.
fn read_error(error: &axum::Error) -> Ending {
    let cause = error
        .source()
        .and_then(|s| s.downcast_ref::<tungstenite::Error>());
    let (code, reason) = match cause {
        Some(tungstenite::Error::Capacity(_)) => (close::MESSAGE_TOO_BIG, "Message too big"),
        Some(tungstenite::Error::Utf8(_)) => (close::INVALID_PAYLOAD, "Invalid payload"),
        Some(tungstenite::Error::Protocol(_)) => (close::PROTOCOL_ERROR, "Protocol error"),
        _ => {
            return Ending {
                code: close::ABNORMAL,
                reason: String::new(),
                send_close: false,
                readable: false,
            };
        }
    };
    // tokio-tungstenite ends the read side after an error; the write side still works.
    Ending {
        code,
        reason: reason.to_owned(),
        send_close: true,
        readable: false,
    }
}

/// Sends the gateway's close frame if it is closing, then waits (bounded) for the
/// client's side of the closing handshake, so the client reads our close frame
/// before the TCP connection goes away.
async fn finish_close(socket: &mut WebSocket, ending: &Ending) {
    if ending.send_close {
        let frame = CloseFrame {
            code: ending.code,
            reason: ending.reason.as_str().into(),
        };
        if socket.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
    }
    if ending.readable {
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = socket.recv().await {}
        })
        .await;
    } else if ending.send_close {
        // The read side is gone (after an oversized frame): give the client a moment
        // to read the close frame before the socket closes under it.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one frame's message event and sends the integration response body back to
/// the client (the `$default` route response) through the connection's command queue.
async fn message_worker(
    gateway: Gateway,
    context: Arc<ConnectionContext>,
    frame: Inbound,
    commands: CommandSender,
) {
    let route = match gateway.routes().select(Some(&frame)) {
        Selected::Route(route) => route,
        Selected::NoRoute => {
            // No matching route and no $default: API Gateway answers the client
            // itself, without invoking anything.
            let refusal = gateway_error("Forbidden", &context.connection_id, &gateway_id());
            let _ = commands.send(Command::Send(refusal)).await;
            return;
        }
    };
    let event = match context.message(&route.key, frame, now_millis()) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "could not build a message event");
            return;
        }
    };
    let request_id = event.request_context.request_id.clone().unwrap_or_default();
    let reply = match gateway.invoke_route(route, event).await {
        // Only a route with a route response sends the integration's body back,
        // within the message payload limit that applies to every frame.
        Ok(answer) if route.two_way => match response_frame(answer) {
            Some(frame) if frame_len(&frame) > gateway.options().max_message_bytes => {
                tracing::warn!(
                    connection_id = %context.connection_id,
                    route = %route.key,
                    bytes = frame_len(&frame),
                    "the route response is over the message payload limit"
                );
                Some(gateway_error(
                    "Internal server error",
                    &context.connection_id,
                    &request_id,
                ))
            }
            frame => frame,
        },
        Ok(_) => None,
        Err(e) => {
            tracing::debug!(connection_id = %context.connection_id, route = %route.key, error = %e, "integration failed");
            let message = match e {
                InvokeError::TimedOut => "Endpoint request timed out",
                InvokeError::Failed => "Internal server error",
            };
            Some(gateway_error(message, &context.connection_id, &request_id))
        }
    };
    if let Some(reply) = reply {
        // Behind whatever was queued for the client meanwhile; an error means the
        // connection is gone, and the reply with it.
        let _ = commands.send(Command::Send(reply)).await;
    }
}

/// A frame API Gateway itself sends the client: `{"message", "connectionId", "requestId"}`.
fn gateway_error(message: &str, connection_id: &str, request_id: &str) -> Message {
    Message::text(
        serde_json::json!({
            "message": message,
            "connectionId": connection_id,
            "requestId": request_id,
        })
        .to_string(),
    )
}

/// A data frame's payload size.
fn frame_len(frame: &Message) -> usize {
    match frame {
        Message::Text(text) => text.len(),
        Message::Binary(data) => data.len(),
        _ => 0,
    }
}

/// The integration response body as the frame the route response sends; no body, no frame.
fn response_frame(answer: ApiGatewayProxyResponse) -> Option<Message> {
    match answer.body? {
        Body::Empty => None,
        Body::Text(text) if answer.is_base64_encoded => STANDARD
            .decode(text.as_bytes())
            .ok()
            .map(|data| Message::Binary(data.into())),
        Body::Text(text) => Some(Message::text(text)),
        Body::Binary(data) => Some(Message::Binary(data.into())),
        _ => None,
    }
}

pub(crate) async fn run_disconnect(
    gateway: &Gateway,
    context: &ConnectionContext,
    code: u16,
    reason: &str,
) {
    let event = match context.disconnect(code, reason, now_millis()) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "could not build the $disconnect event");
            return;
        }
    };
    let connection_id = &context.connection_id;
    let Some(route) = gateway.routes().disconnect() else {
        return;
    };
    match gateway.invoke_route(route, event).await {
        Ok(answer) => {
            tracing::debug!(%connection_id, code, status = answer.status_code, "$disconnect ran")
        }
        Err(e) => tracing::warn!(%connection_id, error = %e, "$disconnect failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_run_in_order_with_at_most_the_inbound_queue_waiting() {
        let started = std::sync::Mutex::new(Vec::new());
        let start = |frame: Inbound| {
            started.lock().unwrap().push(frame);
            tokio::spawn(async {})
        };
        let mut messages = Messages::default();
        for i in 0..=INBOUND_QUEUE {
            assert!(messages.accept(i.to_string(), start).is_ok());
        }
        // One running and INBOUND_QUEUE waiting: the next frame is refused.
        assert!(messages.accept("over".into(), start).is_err());
        assert_eq!(*started.lock().unwrap(), ["0"]);
        for _ in 0..=INBOUND_QUEUE {
            messages.finished().await;
            messages.start_next(start);
        }
        assert!(messages.running.is_none());
        assert_eq!(
            messages.waiting.capacity(),
            0,
            "an empty queue holds no memory"
        );
        let expected: Vec<String> = (0..=INBOUND_QUEUE).map(|i| i.to_string()).collect();
        assert_eq!(*started.lock().unwrap(), expected);
    }

    #[test]
    fn connect_headers_reach_the_handshake_but_not_framing_ones() {
        let mut answer = ApiGatewayProxyResponse::default();
        answer.status_code = 200;
        answer
            .headers
            .insert(header::SEC_WEBSOCKET_PROTOCOL, "bearer".parse().unwrap());
        answer
            .headers
            .insert(header::CONNECTION, "close".parse().unwrap());
        let mut into = HeaderMap::new();
        into.insert(header::CONNECTION, "upgrade".parse().unwrap());
        copy_headers(&answer, &mut into);
        assert_eq!(into.get(header::SEC_WEBSOCKET_PROTOCOL).unwrap(), "bearer");
        assert_eq!(into.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
