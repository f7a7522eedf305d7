//! The account journal (embedded store, schema 8): how a credit movement avoids dirtying a
//! random B-tree leaf.
//!
//! Every movement rewrites its user's account record. Accounts are keyed by user, so each
//! rewrite lands on a leaf of its own, and each scattered page a commit writes costs its flush
//! (~26 µs here): with the ledger appending to one leaf, the account was the one random page of
//! a deduct and of a create, and the measured limit of the credits benchmark. So an account that
//! exists already is not rewritten in place: its new version is appended to `account_journal`
//! under the writer's sequence (time-ordered, so appends share the last leaf), in the same
//! transaction as the rest of its write set. Once the journal holds
//! `account_journal_fold_entries` ([`FOLD_ENTRIES_DEFAULT`]) entries the writer *folds* it:
//! the newest version of each account goes into `accounts` and the journal is emptied, in the
//! same transaction as the batch that crossed the bound. A fold writes each dirty leaf once for
//! all the accounts on it.
//!
//! Readers must see, for one snapshot, the version of an account as of that snapshot. The
//! [`Overlay`] keeps in memory the newest versions (four at most) of every account the
//! journal touched since the fold before the last one, each with its sequence number; the
//! journal's first and last keys in a snapshot say which versions that snapshot holds. What
//! memory cannot answer exactly (a snapshot older than the versions kept) is answered from the
//! snapshot's own journal, which is exact by construction (see [`AccountsView::read`]).
//!
//! Crash safety is redb's: the journal entries commit atomically with their write sets. At open
//! the journal is folded ([`fold_at_open`]), and so it is on a clean shutdown and before a
//! whole-store snapshot (`verify`, `backup`, `copy`), which therefore read `accounts` alone.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::codec::{decode, encode, Record};
use crate::{StorageError, Table};

/// The journal table: writer sequence → [`JournalEntry`]. Not a [`Table`]: it belongs to the
/// embedded engine only (PostgreSQL updates rows in place) and is never copied or exported.
pub(crate) const JOURNAL: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("account_journal");

/// The default of the entries the journal may hold before the writer folds it. A fold writes each leaf of
/// `accounts` that holds a changed account once; a larger bound means fewer folds (each a
/// longer commit) and a longer scan for a reader that memory cannot answer.
pub const FOLD_ENTRIES_DEFAULT: u64 = 16_384;

/// One account version in the journal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct JournalEntry {
    /// The key in `accounts`.
    pub key: Vec<u8>,
    /// The encoded account record; `None` when the account was deleted.
    pub value: Option<Vec<u8>>,
}

impl Record for JournalEntry {
    // Its entries are account versions: a decode error names the accounts table.
    const TABLE: Table = Table::Accounts;
    const VERSION: u8 = 1;
}

/// A version of one account: the writer sequence of its journal entry and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Version {
    pub seq: u64,
    pub value: Option<Vec<u8>>,
}

/// Versions of one account memory keeps, oldest first: at most [`VERSIONS_KEPT`]. A
/// snapshot whose journal ends before them all reads `accounts` when the list is `complete`
/// (no older version since memory last let go of the account was dropped) and searches its
/// journal otherwise.
#[derive(Debug, Clone)]
pub(crate) struct Versions {
    kept: VecDeque<Version>,
    complete: bool,
}

/// Versions kept per account: a snapshot is rarely more than a few commits old, and one
/// older than that searches its own journal instead.
const VERSIONS_KEPT: usize = 4;

impl Versions {
    fn newest(&self) -> Option<&Version> {
        self.kept.back()
    }
}

/// What memory says of an account for a snapshot whose journal ends at `last_seq`.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// This is the account as of the snapshot (`None`: deleted).
    Value(Option<Vec<u8>>),
    /// Memory holds no version of it that the journal may name: read `accounts`, if the
    /// snapshot's journal starts after everything memory let go.
    NotJournaled,
    /// Memory cannot say: search the snapshot's own journal.
    Unknown,
}

/// The versions readers need, shared by the writer (which alone changes it) and every reader.
#[derive(Debug, Default)]
pub struct Overlay {
    map: RwLock<HashMap<Vec<u8>, Versions>>,
    /// Versions with a smaller sequence may have left memory (already folded).
    pruned_below: AtomicU64,
    /// Readers that had to search a snapshot's journal (for `/metrics`).
    journal_searches: AtomicU64,
    /// Folds committed (for `/metrics`).
    folds: AtomicU64,
    /// Set when the writer could not tell whether a failed commit landed: memory may then
    /// hold versions that are not the store's, so account reads refuse.
    poisoned: std::sync::atomic::AtomicBool,
}

impl Overlay {
    /// Accounts with versions in memory.
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds committed since open.
    pub fn folds(&self) -> u64 {
        self.folds.load(Ordering::Relaxed)
    }

    /// Reads that memory could not answer and that searched a snapshot's journal.
    pub fn journal_searches(&self) -> u64 {
        self.journal_searches.load(Ordering::Relaxed)
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Vec<u8>, Versions>> {
        // A panic elsewhere while holding the lock cannot leave the map half-changed: every
        // change is one insert, remove or retain.
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Vec<u8>, Versions>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }

    fn answer(&self, key: &[u8], last_seq: u64) -> Answer {
        let map = self.read_map();
        let Some(v) = map.get(key) else {
            return Answer::NotJournaled;
        };
        // Versions later than the snapshot (or not yet committed) are not its; the newest of
        // the others is.
        match v.kept.iter().rev().find(|ver| ver.seq <= last_seq) {
            Some(ver) => Answer::Value(ver.value.clone()),
            None if v.complete => Answer::NotJournaled,
            None => Answer::Unknown,
        }
    }

    /// Whether memory's newest version of the account at `key` is a delete, if it has one.
    pub(crate) fn newest_is_deleted(&self, key: &[u8]) -> Option<bool> {
        let map = self.read_map();
        map.get(key)
            .and_then(Versions::newest)
            .map(|v| v.value.is_none())
    }

    /// The newest version (committed, or of a batch being applied), for the writer.
    pub(crate) fn latest(&self, key: &[u8]) -> Option<Option<Vec<u8>>> {
        let map = self.read_map();
        map.get(key)
            .and_then(Versions::newest)
            .map(|v| v.value.clone())
    }

    /// Makes a batch's versions the newest (just before its commit, so a reader never takes
    /// them for its snapshot's: their sequence is past every committed journal key). Answers
    /// what to restore if the commit fails.
    pub(crate) fn install(&self, versions: Vec<(Vec<u8>, Version)>) -> Rollback {
        let mut map = self.write_map();
        let mut restore = Vec::with_capacity(versions.len());
        for (key, version) in versions {
            restore.push((key.clone(), map.get(&key).cloned()));
            let v = map.entry(key).or_insert_with(|| Versions {
                kept: VecDeque::with_capacity(VERSIONS_KEPT + 1),
                complete: true,
            });
            v.kept.push_back(version);
            if v.kept.len() > VERSIONS_KEPT {
                v.kept.pop_front();
                v.complete = false;
            }
        }
        Rollback { restore }
    }

    /// Undoes [`Overlay::install`] of a batch whose commit failed.
    pub(crate) fn roll_back(&self, rollback: Rollback) {
        let mut map = self.write_map();
        for (key, before) in rollback.restore.into_iter().rev() {
            match before {
                Some(b) => map.insert(key, b),
                None => map.remove(&key),
            };
        }
    }

    /// Lets go of every account whose newest version is at most `through` (folded into
    /// `accounts` by a fold that every snapshot opened since has seen).
    pub(crate) fn prune(&self, through: u64) {
        // Raised before the removal: a reader that misses a removed account then sees the
        // new bound (the lock orders the two) and searches its journal if it must.
        self.pruned_below
            .fetch_max(through.saturating_add(1), Ordering::SeqCst);
        self.write_map()
            .retain(|_, v| v.newest().is_some_and(|n| n.seq > through));
    }
}

/// What [`Overlay::install`] replaced.
#[derive(Debug)]
pub(crate) struct Rollback {
    restore: Vec<(Vec<u8>, Option<Versions>)>,
}

impl Rollback {
    /// The accounts the install changed.
    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.restore.iter().map(|(k, _)| k.as_slice())
    }
}

/// A snapshot's accounts: its `accounts` table and the bounds of its journal, opened once for
/// every account it reads.
pub(crate) struct AccountsView {
    accounts: ReadTable,
    /// The journal and its first and last sequence; `None` when empty or absent (an export or
    /// a backup never has one): then `accounts` holds every version the snapshot committed.
    journal: Option<(ReadTable, u64, u64)>,
}

type ReadTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

impl AccountsView {
    pub fn open(txn: &redb::ReadTransaction) -> Result<AccountsView, StorageError> {
        let accounts = txn.open_table(Table::Accounts.def())?;
        let journal = match open_journal(txn)? {
            Some(t) => seq_bounds(&t)?.map(|(first, last)| (t, first, last)),
            None => None,
        };
        Ok(AccountsView { accounts, journal })
    }

    /// The account at `key` as of the snapshot (raw bytes, version byte and all).
    pub fn read(&self, overlay: &Overlay, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let from_accounts = || -> Result<Option<Vec<u8>>, StorageError> {
            Ok(self.accounts.get(key)?.map(|v| v.value().to_vec()))
        };
        if overlay.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Engine(
                "account versions in memory may differ from the store after a failed commit; restart the process".into(),
            ));
        }
        let Some((journal, first, last)) = &self.journal else {
            return from_accounts();
        };
        match overlay.answer(key, *last) {
            Answer::Value(v) => return Ok(v),
            // Memory names no version this snapshot holds; if it let go of nothing this
            // snapshot's journal holds, the account is as `accounts` shows it.
            Answer::NotJournaled if overlay.pruned_below.load(Ordering::SeqCst) <= *first => {
                return from_accounts()
            }
            Answer::NotJournaled | Answer::Unknown => {}
        }
        overlay.journal_searches.fetch_add(1, Ordering::Relaxed);
        match search(journal, key)? {
            Some(value) => Ok(value),
            None => from_accounts(),
        }
    }
}

/// A snapshot's journal; `None` in a store file that never had one (an export, a backup, a
/// store no journaled change has reached yet).
fn open_journal(txn: &redb::ReadTransaction) -> Result<Option<ReadTable>, StorageError> {
    match txn.open_table(JOURNAL) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Entries in a snapshot's journal.
pub(crate) fn entries(txn: &redb::ReadTransaction) -> Result<u64, StorageError> {
    match open_journal(txn)? {
        Some(t) => Ok(t.len()?),
        None => Ok(0),
    }
}

/// The newest entry for `key` in a snapshot's journal: `Some(version)` if it has one.
fn search<T: ReadableTable<&'static [u8], &'static [u8]>>(
    journal: &T,
    key: &[u8],
) -> Result<Option<Option<Vec<u8>>>, StorageError> {
    for item in journal.iter()?.rev() {
        let (_, v) = item?;
        let entry = decode::<JournalEntry>(v.value())?;
        if entry.key == key {
            return Ok(Some(entry.value));
        }
    }
    Ok(None)
}

/// The first and last sequence of a journal; `None` when it is empty.
fn seq_bounds<T: ReadableTable<&'static [u8], &'static [u8]>>(
    journal: &T,
) -> Result<Option<(u64, u64)>, StorageError> {
    let (Some((first, _)), Some((last, _))) = (journal.first()?, journal.last()?) else {
        return Ok(None);
    };
    Ok(Some((parse_seq(first.value())?, parse_seq(last.value())?)))
}

fn parse_seq(key: &[u8]) -> Result<u64, StorageError> {
    crate::keys::parse_sequence(key).ok_or_else(|| {
        StorageError::Engine("account_journal holds a key that is not a sequence".into())
    })
}

/// The writer's side: sequence numbers, the committed journal's size, and when to fold.
#[derive(Debug)]
pub(crate) struct JournalWriter {
    overlay: Arc<Overlay>,
    /// The next entry's sequence number. Only grows within a process (a failed batch leaves a
    /// gap), so a sequence is never given to two versions; the journal is empty at open.
    next_seq: u64,
    /// Entries in the committed journal.
    entries: u64,
    /// The last sequence folded by the latest fold, if any.
    folded_through: Option<u64>,
    /// Entries the latest fold took: memory still holds their accounts.
    folded_entries: u64,
    fold_entries_min: u64,
}

/// What one batch did to the journal, until its commit succeeds or fails.
#[derive(Debug, Default)]
pub(crate) struct BatchJournal {
    /// The batch's newest version of each account it journaled.
    versions: HashMap<Vec<u8>, Version>,
    appended: u64,
    /// The sequence of this batch's first entry.
    first_seq: Option<u64>,
    /// The last sequence this batch's fold took into `accounts`.
    folded_through: Option<u64>,
    /// What the batch's versions replaced in memory (they are memory's newest until then).
    rollback: Option<Rollback>,
}

impl BatchJournal {
    /// The account as this batch left it so far, if it journaled one.
    pub fn get(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.versions.get(key).map(|v| &v.value)
    }
}

impl JournalWriter {
    pub fn new(overlay: Arc<Overlay>, fold_entries_min: u64) -> JournalWriter {
        assert!(fold_entries_min > 0);
        JournalWriter {
            overlay,
            next_seq: 0,
            entries: 0,
            folded_through: None,
            folded_entries: 0,
            fold_entries_min,
        }
    }

    /// The account at `key` as the batch sees it: this batch's version, memory's, `accounts`.
    pub fn current<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &self,
        batch: &BatchJournal,
        accounts: &T,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = batch.get(key) {
            return Ok(v.clone());
        }
        if let Some(v) = self.overlay.latest(key) {
            return Ok(v);
        }
        Ok(accounts.get(key)?.map(|v| v.value().to_vec()))
    }

    /// Appends a version of the account at `key` to the journal.
    pub fn append(
        &mut self,
        batch: &mut BatchJournal,
        journal: &mut RawTable<'_>,
        key: &[u8],
        value: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let seq = self.next_seq;
        self.next_seq = seq
            .checked_add(1)
            .ok_or_else(|| StorageError::Engine("account journal sequence exhausted".into()))?;
        let entry = JournalEntry {
            key: key.to_vec(),
            value,
        };
        journal.insert(
            crate::keys::sequence(seq).as_slice(),
            encode(&entry).as_slice(),
        )?;
        batch.versions.insert(
            entry.key,
            Version {
                seq,
                value: entry.value,
            },
        );
        batch.appended += 1;
        batch.first_seq.get_or_insert(seq);
        Ok(())
    }

    /// Whether the batch must fold: the journal reached its bound, or a fold was asked for.
    pub fn wants_fold(&self, batch: &BatchJournal, forced: bool) -> bool {
        let entries = self.entries + batch.appended;
        entries > 0 && (forced || entries >= self.fold_entries_min)
    }

    /// Folds the journal into `accounts` inside the batch's transaction and empties it.
    pub fn fold(
        &self,
        batch: &mut BatchJournal,
        txn: &redb::WriteTransaction,
        accounts: &mut RawTable<'_>,
    ) -> Result<(), StorageError> {
        let expected = self.entries + batch.appended;
        let found = fold_in(txn, accounts)?;
        if found != expected {
            // The transaction is dropped uncommitted: nothing of this batch is written.
            return Err(StorageError::Engine(format!(
                "account journal held {found} entries, the writer counted {expected}"
            )));
        }
        batch.folded_through = self.next_seq.checked_sub(1);
        Ok(())
    }

    /// Just before the batch commits: its versions become memory's newest.
    pub fn install(&self, batch: &mut BatchJournal) {
        let versions = batch.versions.drain().collect();
        batch.rollback = Some(self.overlay.install(versions));
    }

    /// The batch committed: count its entries, and after a fold let go of what the fold
    /// before it took (every snapshot opened since that fold reads it from `accounts`).
    pub fn committed(&mut self, batch: BatchJournal) {
        match batch.folded_through {
            Some(through) => {
                if let Some(before) = self.folded_through {
                    self.overlay.prune(before);
                }
                self.folded_through = Some(through);
                self.overlay.folds.fetch_add(1, Ordering::Relaxed);
                self.folded_entries = self.entries + batch.appended;
                self.entries = 0;
            }
            None => self.entries += batch.appended,
        }
        // Memory holds the accounts of two journals at most: the one folded last and this one.
        let bound = self.folded_entries + self.entries;
        let held = self.overlay.len() as u64;
        assert!(
            held <= bound,
            "account overlay holds {held} accounts, more than the {bound} journal entries since the fold before last"
        );
    }

    /// The batch failed: nothing of it is visible; memory goes back to what is committed.
    pub fn failed(&mut self, batch: BatchJournal) {
        if let Some(rollback) = batch.rollback {
            self.overlay.roll_back(rollback);
        }
    }

    /// The batch's commit answered an error. redb can fail after its commit point (freeing
    /// pages once the commit is published), so memory follows what a fresh snapshot shows;
    /// if that cannot be told, account reads refuse from then on rather than risk an old
    /// balance.
    pub fn commit_failed(&mut self, db: &Database, batch: BatchJournal) {
        match self.landed(db, &batch) {
            Ok(true) => {
                tracing::error!("a commit answered an error after it was published");
                self.committed(batch);
            }
            Ok(false) => self.failed(batch),
            Err(e) => {
                tracing::error!(error = %e, "cannot tell whether a failed commit landed; account reads refuse until restart");
                self.overlay.poisoned.store(true, Ordering::SeqCst);
                self.failed(batch);
            }
        }
    }

    fn landed(&self, db: &Database, batch: &BatchJournal) -> Result<bool, StorageError> {
        if batch.first_seq.is_none() && batch.folded_through.is_none() {
            // Nothing of the journal's: memory is the same either way.
            return Ok(false);
        }
        let txn = redb::ReadableDatabase::begin_read(db)?;
        let Some(journal) = open_journal(&txn)? else {
            // No journal committed yet: neither this batch's entries nor its fold landed.
            return Ok(false);
        };
        if batch.folded_through.is_some() {
            // Before the batch the journal held `entries`; after its fold, none.
            if !journal.is_empty()? {
                return Ok(false);
            }
            if self.entries > 0 {
                return Ok(true);
            }
            // Empty either way: the fold's accounts tell, against the batch's versions (still
            // memory's newest: nothing is rolled back before this answer).
            let accounts = txn.open_table(Table::Accounts.def())?;
            for key in batch.rollback.iter().flat_map(Rollback::keys) {
                let stored = accounts.get(key)?.map(|v| v.value().to_vec());
                if Some(stored) != self.overlay.latest(key) {
                    return Ok(false);
                }
            }
            return Ok(true);
        }
        match batch.first_seq {
            Some(first) => Ok(seq_bounds(&journal)?.is_some_and(|(_, last)| last >= first)),
            None => Ok(false),
        }
    }

    /// Whether the committed journal is empty (a fold would write nothing).
    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// What the batch knows of the account at `key` before changing it.
    pub fn state<T: ReadableTable<&'static [u8], &'static [u8]>>(
        &self,
        batch: &BatchJournal,
        accounts: &T,
        key: &[u8],
    ) -> Result<Known, StorageError> {
        if let Some(v) = batch.get(key) {
            return Ok(Known::Journaled {
                deleted: v.is_none(),
            });
        }
        if let Some(deleted) = self.overlay.newest_is_deleted(key) {
            return Ok(Known::Journaled { deleted });
        }
        Ok(match accounts.get(key)? {
            Some(_) => Known::InAccounts,
            None => Known::Absent,
        })
    }
}

/// Where the newest version of an account is, as the writer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    /// In the journal (this batch's or memory's); `deleted` if that version is a delete.
    Journaled { deleted: bool },
    /// In `accounts` only.
    InAccounts,
    /// Nowhere: no such account.
    Absent,
}

/// A table of a write transaction (the writer's and the journal's own handles).
pub(crate) type RawTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;

/// Accounts and their newest version (`None`: deleted), in key order: a fold then walks
/// `accounts` from one leaf to the next.
type Newest = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The newest version of each account in a journal.
fn newest_versions<T: ReadableTable<&'static [u8], &'static [u8]>>(
    journal: &T,
) -> Result<Newest, StorageError> {
    let mut newest = Newest::new();
    for item in journal.iter()? {
        let (_, v) = item?;
        let entry = decode::<JournalEntry>(v.value())?;
        newest.insert(entry.key, entry.value);
    }
    Ok(newest)
}

/// Writes the newest version of each journaled account into `accounts` and empties the
/// journal, inside `txn`. Answers the entries folded.
fn fold_in(txn: &redb::WriteTransaction, accounts: &mut RawTable<'_>) -> Result<u64, StorageError> {
    let (count, newest) = {
        let journal = txn.open_table(JOURNAL)?;
        (journal.len()?, newest_versions(&journal)?)
    };
    for (key, value) in &newest {
        match value {
            Some(v) => accounts.insert(key.as_slice(), v.as_slice())?,
            None => accounts.remove(key.as_slice())?,
        };
    }
    // Dropping the table frees its pages at once, instead of rewriting them empty.
    txn.delete_table(JOURNAL)?;
    txn.open_table(JOURNAL)?;
    Ok(count)
}

/// At open, before any reader or the writer: folds what a crash left in the journal, so the
/// process starts with `accounts` exact and memory empty. Answers the entries folded.
pub(crate) fn fold_at_open(db: &Database) -> Result<u64, StorageError> {
    // A clean stop left nothing to fold: no write transaction (and no fsync) for it.
    if entries(&redb::ReadableDatabase::begin_read(db)?)? == 0 {
        return Ok(0);
    }
    let txn = db.begin_write()?;
    let mut accounts = txn.open_table(Table::Accounts.def())?;
    let folded = fold_in(&txn, &mut accounts)?;
    drop(accounts);
    txn.commit()?;
    if folded > 0 {
        tracing::info!(entries = folded, "account journal folded at open");
    }
    Ok(folded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seq: u64, b: u8) -> Version {
        Version {
            seq,
            value: Some(vec![b]),
        }
    }

    #[test]
    fn a_snapshot_gets_the_newest_version_it_holds_or_is_told_to_search() {
        let o = Overlay::default();
        let k = b"k".to_vec();
        let _ = o.install(vec![(k.clone(), v(3, 1))]);
        let _ = o.install(vec![(k.clone(), v(7, 2))]);
        assert_eq!(o.answer(&k, 9), Answer::Value(Some(vec![2])));
        assert_eq!(o.answer(&k, 7), Answer::Value(Some(vec![2])));
        // Version 7 is later than a snapshot ending at 5: the one before it is its.
        assert_eq!(o.answer(&k, 5), Answer::Value(Some(vec![1])));
        // Neither is in a snapshot ending at 2, and memory dropped no older version: the
        // snapshot's `accounts` has it.
        assert_eq!(o.answer(&k, 2), Answer::NotJournaled);
        assert_eq!(o.answer(b"other", 9), Answer::NotJournaled);
    }

    #[test]
    fn a_snapshot_older_than_every_version_kept_is_told_to_search() {
        let o = Overlay::default();
        let k = b"k".to_vec();
        for seq in 1..=(VERSIONS_KEPT as u64 + 1) {
            let _ = o.install(vec![(k.clone(), v(seq * 10, seq as u8))]);
        }
        // Version 10 was dropped to keep four: a snapshot ending at 15 held it.
        assert_eq!(o.answer(&k, 15), Answer::Unknown);
        assert_eq!(o.answer(&k, 25), Answer::Value(Some(vec![2])));
        assert_eq!(o.answer(&k, 5), Answer::Unknown);
    }

    #[test]
    fn a_rolled_back_batch_leaves_memory_as_it_was() {
        let o = Overlay::default();
        let k = b"k".to_vec();
        let _ = o.install(vec![(k.clone(), v(3, 1))]);
        let rb = o.install(vec![(k.clone(), v(4, 2)), (b"new".to_vec(), v(5, 3))]);
        o.roll_back(rb);
        assert_eq!(o.latest(&k), Some(Some(vec![1])));
        assert_eq!(o.latest(b"new"), None);
    }

    #[test]
    fn pruning_lets_go_of_folded_accounts_and_raises_the_bound() {
        let o = Overlay::default();
        let _ = o.install(vec![(b"a".to_vec(), v(3, 1)), (b"b".to_vec(), v(9, 2))]);
        o.prune(5);
        assert_eq!(o.latest(b"a"), None);
        assert_eq!(o.latest(b"b"), Some(Some(vec![2])));
        assert_eq!(o.pruned_below.load(Ordering::SeqCst), 6);
    }
}
