//! The embedded store of CreativeFlow Core.
//!
//! One narrow interface: read a record, scan a key range, submit a [`WriteSet`] and wait until it
//! is durable. The engine behind it (redb) is a detail of [`store`]; nothing here knows HTTP.
#![forbid(unsafe_code)]

pub mod backup;
mod cache;
pub mod codec;
mod error;
mod interface;
pub mod journal;
pub mod keys;
pub mod ledger;
pub mod pg;
pub mod records;
pub mod rollup;
mod store;
mod tables;
pub mod verify;
mod writer;

pub use codec::Record;
pub use error::StorageError;
pub use interface::{Direction, Reader, StoreOptions};
pub use store::{
    private_dir, private_file, ClusterGuard, ClusterMutex, RelayLease, Snapshot, Store,
    WholeSnapshot,
};
pub use tables::Table;
pub use writer::{WriteOutcome, WriteSet, WriterStats};

/// Microseconds since the Unix epoch: every stored time uses this unit.
pub fn now_us() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}
