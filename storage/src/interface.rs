//! What every engine of the store offers its callers: read directions, the read interface,
//! the bounds. Its own module so the engines ([`crate::store`], [`crate::pg`]) depend on it and
//! not on each other.

use crate::{Record, StorageError};

/// Bounds of the store. Every queue has one.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// redb's page cache; idle users cost nothing beyond it.
    pub cache_size_bytes: usize,
    pub writer_queue_capacity: usize,
    pub writer_batch_size_max: usize,
    /// Account versions the embedded store's journal holds before the writer folds them into
    /// `accounts` ([`crate::journal`]).
    pub account_journal_fold_entries: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_size_bytes: 256 * 1024 * 1024,
            writer_queue_capacity: 8192,
            writer_batch_size_max: 512,
            account_journal_fold_entries: crate::journal::FOLD_ENTRIES_DEFAULT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// Reads of records: from the latest commit at each call ([`crate::Store`]) or from one fixed point
/// in time ([`crate::Snapshot`]). Read-only code takes `&impl Reader` so callers choose.
pub trait Reader {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError>;

    /// The records at `keys` of one table, in the order asked (`None` where absent). Engines
    /// that pay a round trip per read answer them all in one.
    fn get_many<R: Record>(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<R>>, StorageError> {
        keys.iter().map(|k| self.get(k)).collect()
    }

    /// Records whose key starts with `prefix`, strictly after `after` in `direction`, at most
    /// `limit` of them, from one consistent view.
    fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError>;
}
