//! Wakes ticket event streams when a ticket changes, on every worker of this process, and
//! bounds how many streams are open. Only a wake-up: streams read what changed from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::config::HelpdeskConfig;

/// Ticket changes not yet seen by a stream before it re-reads the store instead (no loss: the
/// store is the truth, the notice only wakes the stream).
const NOTICES_BUFFERED_MAX: usize = 1024;

/// Wakes event streams when a ticket changes, on every worker of this process, and bounds how
/// many streams are open.
pub struct TicketHub {
    changed: broadcast::Sender<Uuid>,
    stopping: watch::Sender<bool>,
    per_user: Mutex<HashMap<Uuid, usize>>,
    open: AtomicUsize,
    per_user_max: usize,
    total_max: usize,
}

impl TicketHub {
    pub fn new(cfg: &HelpdeskConfig) -> Arc<TicketHub> {
        Arc::new(TicketHub {
            changed: broadcast::channel(NOTICES_BUFFERED_MAX).0,
            stopping: watch::channel(false).0,
            per_user: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            per_user_max: cfg.streams_per_user_max,
            total_max: cfg.streams_max,
        })
    }

    /// Called after a ticket change is durable.
    pub fn notify(&self, ticket: Uuid) {
        // No receiver is not an error: nobody is watching.
        let _ = self.changed.send(ticket);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Uuid> {
        self.changed.subscribe()
    }

    /// Ends every stream (shutdown), so open streams never hold the server's graceful stop.
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A stream slot for `user`, or `None` past either bound.
    pub fn enter(self: &Arc<Self>, user: Uuid) -> Option<StreamSlot> {
        let mut per_user = self.per_user.lock();
        let mine = per_user.entry(user).or_insert(0);
        if *mine >= self.per_user_max || self.open.load(Ordering::Relaxed) >= self.total_max {
            if *mine == 0 {
                per_user.remove(&user);
            }
            return None;
        }
        *mine += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(StreamSlot {
            hub: self.clone(),
            user,
        })
    }
}

/// One open stream; dropping it frees the slot.
pub struct StreamSlot {
    hub: Arc<TicketHub>,
    user: Uuid,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut per_user = self.hub.per_user.lock();
        if let Some(n) = per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                per_user.remove(&self.user);
            }
        }
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
    }
}
