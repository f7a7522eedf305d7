//! A cluster-wide lease on PostgreSQL: a session advisory lock held on a connection of its
//! own. The node holding it does the work only one node should do at a time (relaying the
//! outbox); when that node dies its session ends, the lock is released, and another node's
//! lease thread takes it within a retry interval.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::settings::PgSettings;

/// How often a lease not held is tried again, and how often a held one checks its connection.
pub const LEASE_RETRY_MS: u64 = 500;

/// A lease held (or wanted) by this node. Dropping it gives it up.
#[derive(Debug)]
pub struct PgLease {
    held: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl PgLease {
    /// Starts wanting the lease named `key` (an advisory lock key).
    pub fn start(settings: &PgSettings, key: i64) -> std::io::Result<PgLease> {
        let held = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s, settings) = (held.clone(), stop.clone(), settings.clone());
        std::thread::Builder::new()
            .name("pg-lease".into())
            .spawn(move || hold(&settings, key, &h, &s))?;
        Ok(PgLease { held, stop })
    }

    /// Whether this node holds the lease now. A lost connection is noticed within
    /// [`LEASE_RETRY_MS`]; until then two nodes may both think they hold it, so the work under
    /// a lease must be safe to do twice (publishing: a duplicate, never a loss).
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for PgLease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// After a failed connect, wait this long times 2^failures, at most [`LEASE_BACKOFF_MS_MAX`].
const LEASE_BACKOFF_MS_MAX: u64 = 10_000;

fn hold(settings: &PgSettings, key: i64, held: &Arc<AtomicBool>, stop: &AtomicBool) {
    let mut client: Option<postgres::Client> = None;
    let mut failures = 0u32;
    // The owner holds the other reference to `held`: alone, the lease is not wanted any more.
    while !stop.load(Ordering::Acquire) && Arc::strong_count(held) > 1 {
        let was = held.load(Ordering::Acquire);
        let holding = match client.as_mut() {
            Some(c) if was => c.simple_query("SELECT 1").is_ok(),
            Some(c) => c
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false),
            None => {
                client = settings.connect().ok();
                failures = if client.is_some() {
                    0
                } else {
                    failures.saturating_add(1)
                };
                false
            }
        };
        if was && !holding {
            // The check failed: drop the session, so the lock cannot linger on it unseen.
            client = None;
        }
        if was != holding {
            held.store(holding, Ordering::Release);
            tracing::info!(key, holding, "cluster lease changed hands");
        }
        let wait_ms = LEASE_RETRY_MS
            .saturating_mul(1u64 << failures.min(8))
            .min(LEASE_BACKOFF_MS_MAX);
        std::thread::sleep(Duration::from_millis(wait_ms));
    }
    held.store(false, Ordering::Release);
}
