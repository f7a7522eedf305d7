//! A user's ledger read newest first by following its chain (`AccountRecord::head_id`, then each
//! entry's `prev_id`): the one per-user order of the ledger, so no page scans other users'
//! entries.

use storage::keys;
use storage::records::{AccountRecord, LedgerEntry};
use storage::Reader;
use uuid::Uuid;

use crate::error::AppError;

/// The newest entry of `user`'s ledger, if any.
pub fn head(reads: &impl Reader, user: Uuid) -> Result<Option<Uuid>, AppError> {
    Ok(reads
        .get::<AccountRecord>(&keys::account(user))?
        .and_then(|a| a.head_id))
}

/// Entries from `from` back to the first. An id the chain names but the store lacks is damage
/// (`verify` reports it): an error, not a silently shorter list.
pub struct Chain<'a, R> {
    reads: &'a R,
    next: Option<Uuid>,
}

pub fn from<R: Reader>(reads: &R, from: Option<Uuid>) -> Chain<'_, R> {
    Chain { reads, next: from }
}

impl<R> Chain<'_, R> {
    /// The entry the walk would read next: where a later page goes on.
    pub fn pending(&self) -> Option<Uuid> {
        self.next
    }
}

impl<R: Reader> Iterator for Chain<'_, R> {
    type Item = Result<LedgerEntry, AppError>;

    fn next(&mut self) -> Option<Self::Item> {
        let id = self.next.take()?;
        Some(match self.reads.get::<LedgerEntry>(&keys::ledger(id)) {
            Ok(Some(e)) => {
                self.next = e.prev_id;
                Ok(e)
            }
            Ok(None) => Err(AppError::internal(format!(
                "ledger entry {id} missing from its chain"
            ))),
            Err(e) => Err(e.into()),
        })
    }
}
