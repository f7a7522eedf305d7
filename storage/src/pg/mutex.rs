//! A cluster-wide mutex on PostgreSQL: a session advisory lock taken on a connection of its
//! own, held while one node decides and writes something every node decides from the same
//! record (the invoice counter, the ticket number sequence).
//!
//! It is for liveness, not safety: the writes under it keep their conditions, so a lock lost
//! with its connection costs a retry, never a wrong number. Without it, two nodes reading one
//! counter meet on every write, and under a burst one of them can lose round after round.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use super::settings::PgSettings;
use crate::StorageError;

/// How long a node waits for another node to release the lock before answering unavailable
/// (the caller's own retry, e.g. a payment provider's, comes later).
pub const MUTEX_WAIT_MS_MAX: u64 = 10_000;
/// Lock requests waiting for the lock's thread. Each caller also queues one unlock, always
/// delivered (the queue is unbounded, and bounded by this through the lock requests).
const LOCKS_QUEUED_MAX: usize = 16;

enum Request {
    Lock(oneshot::Sender<Result<(), StorageError>>),
    Unlock,
}

/// The lock's thread, reached through a queue. Dropping it ends the thread, and with it the
/// session and any lock still held.
pub struct PgMutex {
    requests: mpsc::Sender<Request>,
    locks_queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for PgMutex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgMutex")
    }
}

/// Held lock; dropping it releases the lock (queued: a later lock request is served after it).
/// It exists from the moment the request is queued, so a caller that gives up while waiting
/// still releases what its request takes.
pub struct PgMutexGuard<'a> {
    mutex: &'a PgMutex,
}

impl Drop for PgMutexGuard<'_> {
    fn drop(&mut self) {
        // Fails only when the thread is gone, and its session and lock with it.
        let _ = self.mutex.requests.send(Request::Unlock);
    }
}

impl PgMutex {
    /// Starts the thread for the advisory lock `key`. It connects when first asked to lock.
    pub fn start(settings: &PgSettings, key: i64) -> std::io::Result<PgMutex> {
        let (requests, rx) = mpsc::channel();
        let locks_queued = Arc::new(AtomicUsize::new(0));
        let (settings, queued) = (settings.clone(), locks_queued.clone());
        std::thread::Builder::new()
            .name("pg-mutex".into())
            .spawn(move || serve(&settings, key, &rx, &queued))?;
        Ok(PgMutex {
            requests,
            locks_queued,
        })
    }

    /// Waits until this node's session holds the lock. Callers on one node must not wait
    /// together (the session would hold it for both): [`crate::ClusterMutex`] serializes them.
    pub async fn lock(&self) -> Result<PgMutexGuard<'_>, StorageError> {
        if self.locks_queued.fetch_add(1, Ordering::AcqRel) >= LOCKS_QUEUED_MAX {
            self.locks_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StorageError::Overloaded);
        }
        let (tx, rx) = oneshot::channel();
        if self.requests.send(Request::Lock(tx)).is_err() {
            self.locks_queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StorageError::Closed);
        }
        let guard = PgMutexGuard { mutex: self };
        rx.await.map_err(|_| StorageError::Closed)??;
        Ok(guard)
    }
}

fn serve(
    settings: &PgSettings,
    key: i64,
    requests: &mpsc::Receiver<Request>,
    locks_queued: &AtomicUsize,
) {
    let mut client: Option<postgres::Client> = None;
    let mut held = false;
    while let Ok(request) = requests.recv() {
        match request {
            Request::Lock(reply) => {
                locks_queued.fetch_sub(1, Ordering::AcqRel);
                let taken = take(settings, key, &mut client);
                held = taken.is_ok();
                if !held {
                    client = None; // a broken session must not keep a lock unseen
                }
                let _ = reply.send(taken); // a caller gone still queued its unlock
            }
            Request::Unlock if held => {
                held = false;
                let released = client.as_mut().map(|c| {
                    c.query_one("SELECT pg_advisory_unlock($1)", &[&key])
                        .map(|r| r.get::<_, bool>(0))
                });
                if !matches!(released, Some(Ok(true))) {
                    tracing::warn!(key, "cluster mutex not released cleanly; reconnecting");
                    client = None;
                }
            }
            Request::Unlock => {} // its lock request failed: nothing is held
        }
    }
}

fn take(
    settings: &PgSettings,
    key: i64,
    client: &mut Option<postgres::Client>,
) -> Result<(), StorageError> {
    let unavailable = |e: postgres::Error| StorageError::Unavailable(super::batch::describe(&e));
    let c = match client {
        Some(c) => c,
        None => {
            let mut c = settings.connect()?;
            // lock_timeout bounds advisory lock waits too: a node that never lets go (stuck,
            // not dead) costs the others a 503 after this long, not a hang.
            c.batch_execute(&format!("SET lock_timeout = {MUTEX_WAIT_MS_MAX}"))
                .map_err(unavailable)?;
            client.insert(c)
        }
    };
    c.execute("SELECT pg_advisory_lock($1)", &[&key])
        .map(|_| ())
        .map_err(unavailable)
}
