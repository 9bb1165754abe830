//! The registry of open connections: how `@connections` calls and shutdown reach a
//! connection's task. Each connection task owns its socket; everything else talks to
//! it through a bounded command queue, so a slow client fills its own queue (and gets
//! 429 on POST, like API Gateway's "client buffer full") without blocking anyone else.
//!
//! The queue is bounded twice: at [`OUTBOUND_QUEUE`] frames (then POSTs get 429 and
//! are retried) and at the connection's outbound byte budget (`--max-outbound-bytes`),
//! counting the bytes queued and not yet taken by the connection's task. A post that
//! would go over the budget drops what is queued, leaves one close (1008,
//! [`OVER_BUDGET_REASON`]) for the task and gets 410, like every later post: the
//! memory a client that stops reading can hold is bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{Message, WebSocket};
use futures::SinkExt;
use tokio::sync::Notify;
use tokio::sync::mpsc::error::{SendError, TrySendError};

use crate::events::ConnectionContext;

/// Frames queued for one client before POSTs get 429.
pub const OUTBOUND_QUEUE: usize = 256;

/// The close reason of a connection whose queued, unsent bytes went over its budget.
pub const OVER_BUDGET_REASON: &str = "Outbound buffer full";

/// What a connection's task is asked to do.
#[derive(Debug)]
pub enum Command {
    /// Send a frame to the client.
    Send(Message),
    /// Close the connection with this code and reason, then run `$disconnect`.
    Close { code: u16, reason: String },
}

/// A connection as seen from outside its task.
#[derive(Debug, Clone)]
pub struct ConnectionHandle {
    pub context: Arc<ConnectionContext>,
    pub commands: CommandSender,
    pub last_active_ms: Arc<AtomicU64>,
}

impl ConnectionHandle {
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }
}

/// Creates a connection's command queue: bounded at [`OUTBOUND_QUEUE`] like a
/// `tokio::sync::mpsc` channel, with the same `try_send`, `send` and `recv`, but
/// holding no buffer while empty. (A tokio channel allocates a block of 32 slots up
/// front: about 2 KB for every idle connection, measured with heaptrack.)
///
/// `budget`: the bytes of frames that may wait in the queue at once; a frame
/// larger than the budget is still queued when the queue is empty.
pub fn command_queue(budget: usize) -> (CommandSender, CommandReceiver) {
    let shared = Arc::new(Queue {
        state: Mutex::new(QueueState {
            commands: VecDeque::new(),
            senders: 1,
            receiver_alive: true,
            bytes: 0,
            budget,
            over_budget: false,
        }),
        readable: Notify::new(),
        writable: Notify::new(),
        over_budget: Notify::new(),
    });
    (CommandSender(Arc::clone(&shared)), CommandReceiver(shared))
}

#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    /// A command was queued, or the last sender went away.
    readable: Notify,
    /// A command was taken off the queue, or the receiver went away.
    writable: Notify,
    /// The byte budget was exceeded.
    over_budget: Notify,
}

#[derive(Debug)]
struct QueueState {
    commands: VecDeque<Command>,
    senders: usize,
    receiver_alive: bool,
    /// The bytes of the frames queued.
    bytes: usize,
    budget: usize,
    /// The budget was exceeded: only the close is left, and every post is refused.
    over_budget: bool,
}

/// The payload bytes of a command's frame (0 for a close).
fn frame_bytes(command: &Command) -> usize {
    match command {
        Command::Send(message) => message_bytes(message),
        Command::Close { .. } => 0,
    }
}

fn message_bytes(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) => data.len(),
        Message::Ping(data) | Message::Pong(data) => data.len(),
        Message::Close(_) => 0,
    }
}

impl Queue {
    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side of a connection's command queue.
#[derive(Debug)]
pub struct CommandSender(Arc<Queue>);

impl Clone for CommandSender {
    fn clone(&self) -> Self {
        self.0.state().senders += 1;
        Self(Arc::clone(&self.0))
    }
}

impl Drop for CommandSender {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.senders -= 1;
        if state.senders == 0 {
            drop(state);
            self.0.readable.notify_one();
        }
    }
}

impl CommandSender {
    /// Queues `command` unless [`OUTBOUND_QUEUE`] commands are waiting (`Full`),
    /// or the connection's task has ended or its byte budget was exceeded, by
    /// this command or an earlier one (`Closed`).
    pub fn try_send(&self, command: Command) -> Result<(), TrySendError<Command>> {
        let mut state = self.0.state();
        if !state.receiver_alive || state.over_budget {
            return Err(TrySendError::Closed(command));
        }
        if state.commands.len() >= OUTBOUND_QUEUE {
            return Err(TrySendError::Full(command));
        }
        let bytes = frame_bytes(&command);
        if !state.commands.is_empty() && state.bytes + bytes > state.budget {
            state.over_budget = true;
            state.bytes = 0;
            let unsent = std::mem::replace(
                &mut state.commands,
                VecDeque::from([Command::Close {
                    code: super::close::POLICY_VIOLATION,
                    reason: OVER_BUDGET_REASON.to_owned(),
                }]),
            );
            drop(state);
            drop(unsent);
            self.0.readable.notify_one();
            self.0.over_budget.notify_waiters();
            return Err(TrySendError::Closed(command));
        }
        state.bytes += bytes;
        state.commands.push_back(command);
        drop(state);
        self.0.readable.notify_one();
        Ok(())
    }

    /// Queues `command`, waiting for room; fails once the connection's task has ended.
    pub async fn send(&self, mut command: Command) -> Result<(), SendError<Command>> {
        loop {
            let room = self.0.writable.notified();
            tokio::pin!(room);
            // Registered before trying, so room made in between is not missed.
            room.as_mut().enable();
            match self.try_send(command) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => command = back,
            }
            room.await;
        }
    }
}

/// The receiving side of a connection's command queue, owned by its task.
#[derive(Debug)]
pub struct CommandReceiver(Arc<Queue>);

impl CommandReceiver {
    /// The next command; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Command> {
        loop {
            let queued = self.0.readable.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            match self.take() {
                Ok(command) => return Some(command),
                Err(true) => return None,
                Err(false) => {}
            }
            queued.await;
        }
    }

    /// The next command if one is queued now.
    pub fn try_recv(&mut self) -> Option<Command> {
        self.take().ok()
    }

    /// Resolves once the byte budget has been exceeded (at once if it was).
    pub async fn over_budget(&self) {
        loop {
            let exceeded = self.0.over_budget.notified();
            tokio::pin!(exceeded);
            exceeded.as_mut().enable();
            if self.0.state().over_budget {
                return;
            }
            exceeded.await;
        }
    }

    /// Takes the first command; `Err(closed)` when there is none, `closed` telling
    /// whether every sender is gone.
    fn take(&self) -> Result<Command, bool> {
        let mut state = self.0.state();
        let Some(command) = state.commands.pop_front() else {
            return Err(state.senders == 0);
        };
        state.bytes -= frame_bytes(&command).min(state.bytes);
        if state.commands.is_empty() && state.commands.capacity() > 0 {
            // A burst is over: give its buffer back.
            state.commands = VecDeque::new();
        }
        drop(state);
        self.0.writable.notify_one();
        Ok(command)
    }
}

impl Drop for CommandReceiver {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.receiver_alive = false;
        let unsent = std::mem::take(&mut state.commands);
        drop(state);
        drop(unsent);
        self.0.writable.notify_waiters();
    }
}

/// Frames written per flush at most, so a connection with a long queue still
/// reads its socket and minds its timers between batches.
const WRITE_BATCH: usize = 64;

/// Bytes a batch gathers before it stops taking frames, so the frames taken off
/// the queue (no longer counted against its budget) stay few.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// `first` and the frames already queued behind it, for one write with one
/// flush: one `sendmsg` for a burst of posts instead of one per frame. A command
/// other than a frame met on the way (a close) is handed back, to follow them.
pub fn take_batch(
    first: Message,
    commands: &mut CommandReceiver,
) -> (Vec<Message>, Option<Command>) {
    let mut bytes = message_bytes(&first);
    let mut batch = vec![first];
    while batch.len() < WRITE_BATCH && bytes < WRITE_BATCH_BYTES {
        match commands.try_recv() {
            Some(Command::Send(message)) => {
                bytes += message_bytes(&message);
                batch.push(message);
            }
            other => return (batch, other),
        }
    }
    (batch, None)
}

/// Writes a batch from [`take_batch`] and flushes once.
pub async fn write_batch(socket: &mut WebSocket, batch: Vec<Message>) -> Result<(), axum::Error> {
    for message in batch {
        socket.feed(message).await?;
    }
    socket.flush().await
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, ConnectionHandle>>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, ConnectionHandle>> {
        // A panic elsewhere while holding the lock leaves the map itself consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, handle: ConnectionHandle) {
        self.map()
            .insert(handle.context.connection_id.clone(), handle);
    }

    pub fn get(&self, connection_id: &str) -> Option<ConnectionHandle> {
        self.map().get(connection_id).cloned()
    }

    /// Queues `command` for `connection_id` without cloning its handle (a post
    /// runs this once per recipient); `None` when no such connection is open.
    pub fn try_send(
        &self,
        connection_id: &str,
        command: Command,
    ) -> Option<Result<(), TrySendError<Command>>> {
        self.map()
            .get(connection_id)
            .map(|handle| handle.commands.try_send(command))
    }

    pub fn remove(&self, connection_id: &str) -> Option<ConnectionHandle> {
        self.map().remove(connection_id)
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(text: &str) -> Command {
        Command::Send(Message::text(text))
    }

    fn text(command: Option<Command>) -> String {
        match command {
            Some(Command::Send(Message::Text(text))) => text.as_str().to_owned(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_command_queue_keeps_order_and_its_bound() {
        let (tx, mut rx) = command_queue(usize::MAX);
        for i in 0..OUTBOUND_QUEUE {
            tx.try_send(send(&i.to_string())).expect("room");
        }
        assert!(matches!(
            tx.try_send(send("over")),
            Err(TrySendError::Full(_))
        ));
        // A waiting send gets the first slot freed.
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(send("late")).await }
        });
        assert_eq!(text(rx.recv().await), "0");
        waiting.await.unwrap().expect("sent once there was room");
        for i in 1..OUTBOUND_QUEUE {
            assert_eq!(text(rx.recv().await), i.to_string());
        }
        assert_eq!(text(rx.recv().await), "late");
        tx.try_send(send("again")).expect("room again");
        assert_eq!(text(rx.recv().await), "again");
    }

    #[tokio::test]
    async fn the_command_queue_closes_from_either_side() {
        let (tx, mut rx) = command_queue(usize::MAX);
        tx.try_send(send("last")).unwrap();
        drop(tx);
        // Queued commands still arrive after the senders are gone, then `None`.
        assert_eq!(text(rx.recv().await), "last");
        assert!(rx.recv().await.is_none());

        let (tx, rx) = command_queue(usize::MAX);
        for i in 0..OUTBOUND_QUEUE {
            tx.try_send(send(&i.to_string())).unwrap();
        }
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(send("never")).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(
            blocked.await.unwrap().is_err(),
            "a waiting send fails when the task ends"
        );
        assert!(matches!(
            tx.try_send(send("x")),
            Err(TrySendError::Closed(_))
        ));
    }

    #[tokio::test]
    async fn going_over_the_byte_budget_leaves_only_a_close_and_refuses_later_posts() {
        let (tx, mut rx) = command_queue(10);
        tx.try_send(send("12345678")).expect("within the budget");
        assert_eq!(text(rx.recv().await), "12345678");
        // A frame larger than the budget still goes into an empty queue.
        tx.try_send(send("a frame over ten bytes"))
            .expect("queue empty");
        assert!(matches!(
            tx.try_send(send("x")),
            Err(TrySendError::Closed(_))
        ));
        rx.over_budget().await;
        match rx.recv().await {
            Some(Command::Close { code, reason }) => {
                assert_eq!((code, reason.as_str()), (1008, OVER_BUDGET_REASON));
            }
            other => panic!("expected the close, got {other:?}"),
        }
        assert!(matches!(
            tx.try_send(send("later")),
            Err(TrySendError::Closed(_))
        ));
    }
}
