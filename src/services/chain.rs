//! A user's ledger read newest first by following its chain (`AccountRecord::head_id`, then each
//! entry's `prev_id`): the one per-user order of the ledger, so no page scans other users'
//! entries. It is also the index of a user's generation requests: each request has exactly one
//! `generation_charge` entry, written in the same atomic write as the request (`verify` checks
//! both), so a create adds no index entry of its own (that entry landed on a random B-tree leaf
//! per create and was half of what a commit wrote).

use storage::keys;
use storage::records::{AccountRecord, LedgerEntry};
use storage::Reader;
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::encode_cursor;

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

/// One page of a walk: the rows kept, and where the next page starts (the cursor, encoded as
/// lists answer it, of the last entry examined; `None` once the chain has no older entry).
pub struct ChainPage<T> {
    pub rows: Vec<T>,
    pub next: Option<String>,
    /// Whether the examination bound ended the page before it was full.
    pub cut: bool,
}

/// How much one page may do.
#[derive(Debug, Clone, Copy)]
pub struct PageBounds {
    pub rows_max: usize,
    pub examined_max: usize,
}

/// Up to `rows_max` rows made by `take` from `user`'s entries, newest first, from the entry after
/// `cursor` (a `next` this function gave, decoded) or from the head, examining at most
/// `examined_max` entries. A cursor that names no entry of this user is refused.
pub fn page<R: Reader, T>(
    reads: &R,
    user: Uuid,
    cursor: Option<&[u8]>,
    bounds: PageBounds,
    mut take: impl FnMut(&LedgerEntry) -> Result<Option<T>, AppError>,
) -> Result<ChainPage<T>, AppError> {
    let start = match cursor {
        Some(c) => {
            reads
                .get::<LedgerEntry>(c)?
                .filter(|e| e.user_id == user)
                .ok_or_else(|| AppError::validation("cursor", "the cursor is not one we issued"))?
                .prev_id
        }
        None => head(reads, user)?,
    };
    let mut walk = from(reads, start);
    let mut rows = Vec::new();
    let mut examined = None;
    for e in walk.by_ref().take(bounds.examined_max) {
        let e = e?;
        examined = Some(e.id);
        if let Some(row) = take(&e)? {
            rows.push(row);
            if rows.len() >= bounds.rows_max {
                break;
            }
        }
    }
    let next = examined
        .filter(|_| walk.pending().is_some())
        .map(|id| encode_cursor(&keys::ledger(id)));
    Ok(ChainPage {
        cut: next.is_some() && rows.len() < bounds.rows_max,
        next,
        rows,
    })
}
