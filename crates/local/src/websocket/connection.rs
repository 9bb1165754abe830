//! One task per connection: it owns the socket, reads frames and starts their
//! message events ([`super::worker`]) one at a time, writes what the command
//! queue brings (posts, replies, a close), enforces the idle timeout and the
//! connection cap, and ends with the closing handshake and `$disconnect`.
//!
//! A client that stops reading cannot hold its task: each write races the write
//! timeout, the connection cap, shutdown and the outbound byte budget, and any of
//! them ends the connection (1008 for the timeout and the budget, 1001 for the
//! cap and shutdown); the closing handshake is bounded too.

use std::collections::VecDeque;
use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use roomcast_core::store::now_millis;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_tungstenite::tungstenite;

use super::log::CONNECTION_LOG;
use super::worker::{Inbound, message_worker, run_disconnect};
use crate::connections::close;
use crate::connections::registry::{
    Command, CommandReceiver, CommandSender, ConnectionHandle, OVER_BUDGET_REASON, command_queue,
    take_batch, write_batch,
};
use crate::events::ConnectionContext;
use crate::gateway::Gateway;

/// Frames one connection may have waiting behind the message event it is running.
pub const INBOUND_QUEUE: usize = 256;

/// How long a closing handshake may take before the socket is dropped anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

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
    /// The client vanished: nothing to send, nothing to read.
    fn vanished() -> Self {
        Self {
            code: close::ABNORMAL,
            reason: String::new(),
            send_close: false,
            readable: false,
        }
    }

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

/// Serves one upgraded connection until it ends, then runs its `$disconnect`.
pub(crate) async fn run_connection(
    gateway: Gateway,
    context: Arc<ConnectionContext>,
    mut socket: WebSocket,
) {
    let connection_id = context.connection_id.as_str();
    let (commands, mut command_rx) = command_queue(gateway.options().max_outbound_bytes);
    let last_active_ms = Arc::new(AtomicU64::new(context.connected_at_ms));
    gateway.connections().insert(ConnectionHandle {
        context: Arc::clone(&context),
        commands: commands.clone(),
        last_active_ms: Arc::clone(&last_active_ms),
    });
    tracing::info!(target: CONNECTION_LOG, %connection_id, "connected");
    let mut messages = Messages::default();
    let ending = {
        let mut open = Open {
            gateway: &gateway,
            context: &context,
            socket: &mut socket,
            commands: &commands,
            command_rx: &mut command_rx,
            messages: &mut messages,
            last_active_ms: &last_active_ms,
        };
        open.serve().await
    };
    // From here on the connection is gone for @connections (410), as on API Gateway,
    // and for its own message events' replies, which no one would write.
    gateway.connections().remove(connection_id);
    drop(command_rx);
    // Frames already accepted still run, in order, while the socket closes.
    let pending = drain(&gateway, &context, messages, &commands);
    drop(commands);
    // Boxed: the closing handshake and `$disconnect` run once, and their futures
    // would otherwise make every idle connection's task as large as they are.
    Box::pin(finish_close(&mut socket, &ending)).await;
    drop(socket);
    // Let frames already accepted finish before $disconnect, so it cleans up after them.
    if let Some(pending) = pending {
        let _ = timeout(gateway.options().integration_timeout, pending).await;
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

/// An open connection's task, while it serves frames and commands.
struct Open<'a> {
    gateway: &'a Gateway,
    context: &'a Arc<ConnectionContext>,
    socket: &'a mut WebSocket,
    commands: &'a CommandSender,
    command_rx: &'a mut CommandReceiver,
    messages: &'a mut Messages,
    last_active_ms: &'a AtomicU64,
}

/// One timer for both the idle timeout and the connection cap: it fires at the
/// earlier of the two and, when activity moved the idle deadline, is set again.
struct Deadlines {
    cap: Instant,
    idle_timeout: Duration,
    last_activity: Instant,
}

impl Deadlines {
    fn next(&self) -> Instant {
        self.cap.min(self.last_activity + self.idle_timeout)
    }

    /// Why the connection ends now, if it does.
    fn expired(&self, now: Instant) -> Option<&'static str> {
        if now >= self.cap {
            Some("maximum connection duration reached")
        } else if now >= self.last_activity + self.idle_timeout {
            Some("idle timeout")
        } else {
            None
        }
    }
}

impl Open<'_> {
    /// Serves the connection until something ends it.
    async fn serve(&mut self) -> Ending {
        // Only the durations: a clone of all the options would keep copies of their
        // strings for every connection.
        let options = self.gateway.options();
        let connected = Instant::now();
        let mut deadlines = Deadlines {
            cap: connected + options.max_connection_duration,
            idle_timeout: options.idle_timeout,
            last_activity: connected,
        };
        let mut shutdown = self.gateway.shutdown_signal();
        let timer = sleep_until(deadlines.next());
        tokio::pin!(timer);
        loop {
            let ended = tokio::select! {
                frame = self.socket.recv() => self.on_frame(frame, &mut deadlines).await,
                () = self.messages.finished() => {
                    let start = self.starter();
                    self.messages.start_next(start);
                    None
                }
                command = self.command_rx.recv() => {
                    self.on_command(command, &mut deadlines, &mut shutdown).await
                }
                () = &mut timer => {
                    if let Some(why) = deadlines.expired(Instant::now()) {
                        tracing::debug!(connection_id = %self.context.connection_id, "{why}");
                        Some(Ending::server(close::GOING_AWAY, "Going away"))
                    } else {
                        timer.as_mut().reset(deadlines.next());
                        None
                    }
                }
                () = async { let _ = shutdown.wait_for(|down| *down).await; } => {
                    Some(Ending::server(close::GOING_AWAY, "Going away"))
                }
            };
            if let Some(ending) = ended {
                return ending;
            }
        }
    }

    /// Starts a frame's message event on a task of its own.
    fn starter(&self) -> impl FnOnce(Inbound) -> JoinHandle<()> + use<> {
        let (gateway, context, commands) = (
            self.gateway.clone(),
            Arc::clone(self.context),
            self.commands.clone(),
        );
        move |frame| tokio::spawn(message_worker(gateway, context, frame, commands))
    }

    fn touch(&self, deadlines: &mut Deadlines) {
        deadlines.last_activity = Instant::now();
        self.last_active_ms.store(now_millis(), Ordering::Relaxed);
    }

    /// What a frame from the client does; `Some` when it ends the connection.
    async fn on_frame(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
        deadlines: &mut Deadlines,
    ) -> Option<Ending> {
        match frame {
            Some(Ok(Message::Text(text))) => {
                self.touch(deadlines);
                let start = self.starter();
                if let Some(throttled) =
                    accept(self.messages, text.as_str().to_owned(), start, self.context)
                {
                    let write_timeout = self.gateway.options().write_timeout;
                    let _ = timeout(write_timeout, self.socket.send(throttled)).await;
                }
                None
            }
            // API Gateway rejects binary frames, invoking nothing, and disconnects
            // the client with 1003 (docs/local.md cites the page).
            Some(Ok(Message::Binary(_))) => {
                tracing::debug!(connection_id = %self.context.connection_id, "binary frame: closing with 1003");
                Some(Ending::server(close::UNSUPPORTED_DATA, "Unsupported data"))
            }
            // tungstenite answers pings itself; both count as activity.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                self.touch(deadlines);
                None
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame.map_or((close::NO_STATUS, String::new()), |f| {
                    (f.code, f.reason.as_str().to_owned())
                });
                Some(Ending {
                    code,
                    reason,
                    send_close: false,
                    readable: true,
                })
            }
            Some(Err(error)) => Some(read_error(&error)),
            None => Some(Ending::vanished()),
        }
    }

    /// What a command for the connection does; `Some` when it ends the connection.
    async fn on_command(
        &mut self,
        command: Option<Command>,
        deadlines: &mut Deadlines,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Ending> {
        match command {
            Some(Command::Send(message)) => {
                self.touch(deadlines);
                let (batch, next) = take_batch(message, self.command_rx);
                // Boxed: the race's timers would otherwise make every idle
                // connection's task larger; one allocation per batch written.
                let write = Box::pin(self.write(batch, deadlines.cap, shutdown));
                if let Some(ending) = write.await {
                    return Some(ending);
                }
                match next {
                    None | Some(Command::Send(_)) => None,
                    Some(Command::Close { code, reason }) => Some(Ending::server(code, &reason)),
                }
            }
            Some(Command::Close { code, reason }) => Some(Ending::server(code, &reason)),
            None => Some(Ending::server(close::GOING_AWAY, "Going away")),
        }
    }

    /// Writes a batch, racing what must not wait for a client that stopped
    /// reading: the write timeout, the byte budget, the connection cap and
    /// shutdown. `Some` when the connection ends.
    async fn write(
        &mut self,
        batch: Vec<Message>,
        cap: Instant,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Ending> {
        let write_timeout = self.gateway.options().write_timeout;
        let stuck = |reason: &str| {
            tracing::debug!(connection_id = %self.context.connection_id, "{reason}: closing with 1008");
            Some(Ending {
                readable: false,
                ..Ending::server(close::POLICY_VIOLATION, reason)
            })
        };
        tokio::select! {
            written = timeout(write_timeout, write_batch(self.socket, batch)) => match written {
                Ok(Ok(())) => None,
                Ok(Err(_)) => Some(Ending::vanished()),
                Err(_) => stuck("Write timed out"),
            },
            () = self.command_rx.over_budget() => stuck(OVER_BUDGET_REASON),
            () = sleep_until(cap) => Some(Ending::server(close::GOING_AWAY, "Going away")),
            _ = shutdown.wait_for(|down| *down) => Some(Ending::server(close::GOING_AWAY, "Going away")),
        }
    }
}

/// The frames accepted before the connection ended, run in order on a task of
/// their own; `None` when there are none.
fn drain(
    gateway: &Gateway,
    context: &Arc<ConnectionContext>,
    messages: Messages,
    commands: &CommandSender,
) -> Option<JoinHandle<()>> {
    let Messages { running, waiting } = messages;
    if running.is_none() && waiting.is_empty() {
        return None;
    }
    let (gateway, context, commands) = (gateway.clone(), Arc::clone(context), commands.clone());
    Some(tokio::spawn(async move {
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
    }))
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
        _ => return Ending::vanished(),
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
        // Bounded: a client that stopped reading takes no close frame either.
        match timeout(CLOSE_GRACE, socket.send(Message::Close(Some(frame)))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return,
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
}
