//! The store and the account actors over it: opening, closing, writer figures.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::rt::System;
use actors::{AccountRegistry, RegistryOptions};
use storage::{StorageError, Store, StoreOptions};

use crate::common::*;

/// An account actor the benchmark starts must stay alive for the whole measurement.
const IDLE_NEVER_MS: u64 = 24 * 3_600_000;

pub fn open_store(dir: &Path) -> Res<Store> {
    Store::open(dir, &StoreOptions::default()).map_err(|e| format!("cannot open the store: {e}"))
}

/// A registry whose actors are never stopped for idleness during a run.
pub fn long_lived_registry(store: Store) -> Arc<AccountRegistry> {
    AccountRegistry::start(
        store,
        RegistryOptions {
            idle_after_ms: IDLE_NEVER_MS,
            ..RegistryOptions::default()
        },
    )
}

/// Runs `work` on a fresh actix System (the actors need one) and drops the System after.
pub fn on_system<F: Future>(work: F) -> F::Output {
    let system = System::new();
    let out = system.block_on(work);
    drop(system);
    out
}

/// Opens the store in `dir` and closes it at once: proves every handle of an earlier user of the
/// file is gone (redb refuses a second open, even in one process), retrying for a while.
pub fn wait_until_closed(dir: &Path) -> Res<Duration> {
    let started = Instant::now();
    loop {
        match Store::open(dir, &StoreOptions::default()) {
            Ok(store) => {
                drop(store);
                return Ok(started.elapsed());
            }
            Err(StorageError::InUse { .. }) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("the store did not close: {e}")),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct WriterSnap {
    pub submitted: u64,
    pub completed: u64,
    pub batches: u64,
    pub commit_us: u64,
    pub rejected: u64,
    pub failed_batches: u64,
    pub max_batch: u64,
}

impl WriterSnap {
    pub fn of(store: &Store) -> WriterSnap {
        use std::sync::atomic::Ordering::Relaxed;
        let s = store.stats();
        WriterSnap {
            submitted: s.submitted.load(Relaxed),
            completed: s.completed.load(Relaxed),
            batches: s.batches.load(Relaxed),
            commit_us: s.commit_us_total.load(Relaxed),
            rejected: s.rejected_overloaded.load(Relaxed),
            failed_batches: s.failed_batches.load(Relaxed),
            max_batch: s.batch_size_max_seen.load(Relaxed),
        }
    }

    pub fn since(self, before: WriterSnap) -> WriterSnap {
        WriterSnap {
            submitted: self.submitted - before.submitted,
            completed: self.completed - before.completed,
            batches: self.batches - before.batches,
            commit_us: self.commit_us - before.commit_us,
            rejected: self.rejected - before.rejected,
            failed_batches: self.failed_batches - before.failed_batches,
            max_batch: self.max_batch,
        }
    }

    pub fn avg_batch(&self) -> f64 {
        self.completed as f64 / self.batches.max(1) as f64
    }

    pub fn avg_commit_ms(&self) -> f64 {
        self.commit_us as f64 / self.batches.max(1) as f64 / 1000.0
    }
}
