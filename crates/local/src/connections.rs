//! The registry of open connections: how `@connections` calls and shutdown reach a
//! connection's task. Each connection task owns its socket; everything else talks to
//! it through a bounded command queue, so a slow client fills its own queue (and gets
//! 429 on POST, like API Gateway's "client buffer full") without blocking anyone else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Message;
use tokio::sync::mpsc;

use crate::events::ConnectionContext;

/// Frames queued for one client before POSTs get 429.
pub const OUTBOUND_QUEUE: usize = 256;

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
    pub commands: mpsc::Sender<Command>,
    pub last_active_ms: Arc<AtomicU64>,
}

impl ConnectionHandle {
    pub fn last_active_ms(&self) -> u64 {
        self.last_active_ms.load(Ordering::Relaxed)
    }
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
