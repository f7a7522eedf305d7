//! The one storage writer: a plain thread (it blocks on fsync, so it must never run on an actix
//! arbiter) that takes every write set waiting in its bounded queue, applies them in one
//! durable transaction of its engine (redb here, PostgreSQL in [`crate::pg`]), and completes
//! them all: group commit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};
use tokio::sync::oneshot;

use crate::cache::{self, ReadCache};
use crate::codec::{encode, Record};
use crate::journal::{BatchJournal, JournalWriter, Known, RawTable, JOURNAL};
use crate::{StorageError, Table};

/// A condition checked inside the write transaction, after every earlier set of the batch was
/// applied. A failed condition skips this set alone: it is how callers get compare-and-set
/// without locks (unique emails, single-use tokens, one writer per account).
#[derive(Debug, Clone)]
pub(crate) enum Condition {
    Absent {
        table: Table,
        key: Vec<u8>,
    },
    Present {
        table: Table,
        key: Vec<u8>,
    },
    Equals {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Put {
        table: Table,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        table: Table,
        key: Vec<u8>,
    },
    /// Put under the next key of the table's commit sequence (see [`WriteSet::append`]).
    Append {
        table: Table,
        value: Vec<u8>,
    },
}

impl Condition {
    /// The table and key the condition is about.
    pub(crate) fn key(&self) -> (Table, &[u8]) {
        match self {
            Condition::Absent { table, key }
            | Condition::Present { table, key }
            | Condition::Equals { table, key, .. } => (*table, key),
        }
    }
}

impl Op {
    /// The table and key the op writes; `None` for an append, whose key the writer picks.
    pub(crate) fn key(&self) -> Option<(Table, &[u8])> {
        match self {
            Op::Put { table, key, .. } | Op::Delete { table, key } => Some((*table, key)),
            Op::Append { .. } => None,
        }
    }
}

/// Records to write together: all or nothing, and durable before the caller hears back.
#[derive(Debug, Clone, Default)]
pub struct WriteSet {
    pub(crate) conditions: Vec<Condition>,
    pub(crate) ops: Vec<Op>,
}

/// What became of a write set that reached the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Applied and durable.
    Committed,
    /// The condition at this index (in the order they were added) did not hold; nothing written.
    ConditionFailed(usize),
}

impl WriteSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put<R: Record>(&mut self, key: Vec<u8>, record: &R) -> &mut Self {
        self.ops.push(Op::Put {
            table: R::TABLE,
            key,
            value: encode(record),
        });
        self
    }

    pub fn delete<R: Record>(&mut self, key: Vec<u8>) -> &mut Self {
        self.ops.push(Op::Delete {
            table: R::TABLE,
            key,
        });
        self
    }

    /// Puts `record` under a key the writer assigns when it applies the set: the next number of
    /// the table's sequence ([`crate::keys::sequence`]). Sets apply in commit order, so these
    /// keys grow in commit order: a reader that remembers the last key it saw can never miss an
    /// entry committed later (an id taken before the commit cannot promise that).
    pub fn append<R: Record>(&mut self, record: &R) -> &mut Self {
        self.ops.push(Op::Append {
            table: R::TABLE,
            value: encode(record),
        });
        self
    }

    /// Fails the set if a record of this type exists at `key`.
    pub fn require_absent<R: Record>(&mut self, key: Vec<u8>) -> &mut Self {
        self.conditions.push(Condition::Absent {
            table: R::TABLE,
            key,
        });
        self
    }

    /// Fails the set unless a record of this type exists at `key`.
    pub fn require_present<R: Record>(&mut self, key: Vec<u8>) -> &mut Self {
        self.conditions.push(Condition::Present {
            table: R::TABLE,
            key,
        });
        self
    }

    /// Fails the set unless the stored record at `key` is exactly `expected`.
    pub fn require_equal<R: Record>(&mut self, key: Vec<u8>, expected: &R) -> &mut Self {
        self.conditions.push(Condition::Equals {
            table: R::TABLE,
            key,
            value: encode(expected),
        });
        self
    }

    /// Adds every condition and op of `other` after this set's own.
    pub fn extend(&mut self, other: WriteSet) -> &mut Self {
        self.conditions.extend(other.conditions);
        self.ops.extend(other.ops);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The keys this set puts (with the encoded value) or deletes (`None`) in `table`, in order.
    pub fn ops_on(&self, table: Table) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
        self.ops.iter().filter_map(move |op| match op {
            Op::Put {
                table: t,
                key,
                value,
            } if *t == table => Some((key.as_slice(), Some(value.as_slice()))),
            Op::Delete { table: t, key } if *t == table => Some((key.as_slice(), None)),
            _ => None,
        })
    }

    pub(crate) fn op_count(&self) -> usize {
        self.ops.len()
    }
}

pub(crate) struct Job {
    pub set: WriteSet,
    pub reply: oneshot::Sender<Result<WriteOutcome, StorageError>>,
}

pub(crate) enum Msg {
    Write(Job),
    /// Commit what is waiting, then [`BatchEngine::settle`].
    Settle(SyncSender<Result<Option<redb::ReadTransaction>, StorageError>>),
    Shutdown,
}

/// Counters of the writer, read by `/metrics`.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub submitted: AtomicU64,
    pub completed: AtomicU64,
    pub rejected_overloaded: AtomicU64,
    pub batches: AtomicU64,
    pub failed_batches: AtomicU64,
    pub batch_size_max_seen: AtomicU64,
    pub commit_us_total: AtomicU64,
}

impl WriterStats {
    pub fn queue_depth(&self) -> u64 {
        self.submitted
            .load(Ordering::Relaxed)
            .saturating_sub(self.completed.load(Ordering::Relaxed))
    }
}

pub(crate) struct WriterHandle {
    tx: SyncSender<Msg>,
    closed: AtomicBool,
    thread: parking_lot_free::Slot<JoinHandle<()>>,
    pub stats: Arc<WriterStats>,
}

/// A tiny take-once slot; std's Mutex is enough since it is touched once at shutdown.
mod parking_lot_free {
    use std::sync::Mutex;
    pub struct Slot<T>(Mutex<Option<T>>);
    impl<T> Slot<T> {
        pub fn new(v: T) -> Self {
            Slot(Mutex::new(Some(v)))
        }
        pub fn take(&self) -> Option<T> {
            match self.0.lock() {
                Ok(mut g) => g.take(),
                Err(p) => p.into_inner().take(),
            }
        }
    }
}

/// What the writer thread drives: one engine's way of applying a batch of write sets in one
/// durable transaction.
pub(crate) trait BatchEngine: Send + 'static {
    /// Applies the batch's sets in order in one transaction and commits it durably. A failed
    /// condition skips its own set; a set the engine itself refuses (a database constraint)
    /// answers its own error and the others still commit. `Err` means nothing was written.
    fn apply(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, StorageError>;

    /// Brings the store to the form a whole-store reader expects (the embedded engine folds
    /// its account journal) and answers a read snapshot of that form, taken before any later
    /// batch. Engines with nothing to settle answer `None`.
    fn settle(&mut self) -> Result<Option<redb::ReadTransaction>, StorageError> {
        Ok(None)
    }
}

/// One set's answer.
pub(crate) type SetResult = Result<WriteOutcome, StorageError>;

impl WriterHandle {
    pub fn start(
        engine: impl BatchEngine,
        queue_capacity: usize,
        batch_size_max: usize,
    ) -> Result<Self, StorageError> {
        Self::start_counted(
            engine,
            queue_capacity,
            batch_size_max,
            Arc::new(WriterStats::default()),
        )
    }

    /// The same, counting into `stats` (shared by the writers of one store).
    pub fn start_counted(
        engine: impl BatchEngine,
        queue_capacity: usize,
        batch_size_max: usize,
        stats: Arc<WriterStats>,
    ) -> Result<Self, StorageError> {
        assert!(queue_capacity > 0 && batch_size_max > 0);
        let (tx, rx) = mpsc::sync_channel(queue_capacity);
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || run(engine, rx, batch_size_max, thread_stats))?;
        Ok(WriterHandle {
            tx,
            closed: AtomicBool::new(false),
            thread: parking_lot_free::Slot::new(thread),
            stats,
        })
    }

    /// Queues a set without blocking; a full queue is `Overloaded` (the caller sheds load).
    pub fn submit(
        &self,
        set: WriteSet,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome, StorageError>>, StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Msg::Write(Job { set, reply })) {
            Ok(()) => {
                self.stats.submitted.fetch_add(1, Ordering::Relaxed);
                Ok(rx)
            }
            Err(TrySendError::Full(_)) => {
                self.stats
                    .rejected_overloaded
                    .fetch_add(1, Ordering::Relaxed);
                Err(StorageError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(StorageError::Closed),
        }
    }

    /// Submits a write set and waits until it is durable (or refused by a condition).
    pub async fn write(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        debug_assert!(set.op_count() > 0, "an empty write set is a caller bug");
        let rx = self.submit(set)?;
        rx.await.map_err(|_| StorageError::Closed)?
    }

    /// The same, for callers outside an async runtime (CLI commands).
    pub fn write_blocking(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        let rx = self.submit(set)?;
        rx.blocking_recv().map_err(|_| StorageError::Closed)?
    }

    /// Commits every set queued before it, settles the engine ([`BatchEngine::settle`]) and
    /// answers its snapshot. Blocks (a plain channel, so callable from blocking code inside an
    /// async runtime) until the writer gets to it.
    pub fn settle(&self) -> Result<Option<redb::ReadTransaction>, StorageError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let (reply, answer) = mpsc::sync_channel(1);
        // A blocking send: a full queue is no reason to refuse a verify or a backup.
        self.tx
            .send(Msg::Settle(reply))
            .map_err(|_| StorageError::Closed)?;
        answer.recv().map_err(|_| StorageError::Closed)?
    }

    /// Refuses new sets, commits every set already queued, and joins the thread.
    pub fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // A blocking send: the writer drains the queue, so room appears.
        let _ = self.tx.send(Msg::Shutdown);
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("storage writer thread panicked");
            }
        }
    }
}

fn run(
    mut engine: impl BatchEngine,
    rx: Receiver<Msg>,
    batch_size_max: usize,
    stats: Arc<WriterStats>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(batch_size_max);
    let mut stopping = false;
    loop {
        let mut settle = None;
        if !stopping {
            match rx.recv() {
                Ok(Msg::Write(job)) => batch.push(job),
                Ok(Msg::Settle(reply)) => settle = Some(reply),
                Ok(Msg::Shutdown) | Err(_) => stopping = true,
            }
        }
        // Take everything already waiting, up to the bound: this is what makes one fsync serve
        // many callers. On shutdown, drain the whole queue so no accepted set is dropped.
        let mut drained = false;
        while settle.is_none() && (stopping || batch.len() < batch_size_max) {
            match rx.try_recv() {
                Ok(Msg::Write(job)) => batch.push(job),
                Ok(Msg::Settle(reply)) => settle = Some(reply),
                Ok(Msg::Shutdown) => stopping = true,
                Err(_) => {
                    drained = true;
                    break;
                }
            }
            if batch.len() >= batch_size_max {
                commit_batch(&mut engine, &mut batch, &stats);
            }
        }
        if !batch.is_empty() {
            commit_batch(&mut engine, &mut batch, &stats);
        }
        if let Some(reply) = settle {
            let _ = reply.send(engine.settle());
        }
        if stopping && drained {
            break;
        }
    }
    // A clean stop leaves the store settled (the account journal folded): an older build, or
    // a tool reading the file, finds every account in its table.
    if let Err(e) = engine.settle() {
        tracing::error!(error = %e, "storage writer could not settle the store at shutdown");
    }
    tracing::info!("storage writer stopped");
}

/// The next key of each sequenced table, read from the table on first use. Only this thread
/// writes, so memory is the truth between batches; a failed batch forgets them (its keys were
/// never visible) and they are read again from what is committed.
#[derive(Default)]
struct Sequences {
    next: Vec<Option<u64>>,
}

impl Sequences {
    fn take<'t>(
        &mut self,
        table: Table,
        handle: &redb::Table<'t, &'static [u8], &'static [u8]>,
    ) -> Result<u64, StorageError> {
        if self.next.is_empty() {
            self.next = vec![None; Table::ALL.len()];
        }
        let slot = &mut self.next[table.index()];
        let next = match *slot {
            Some(n) => n,
            None => match handle.last()? {
                None => 0,
                Some((k, _)) => crate::keys::parse_sequence(k.value())
                    .and_then(|n| n.checked_add(1))
                    .ok_or_else(|| {
                        StorageError::Engine(format!("{table} holds a key that is not a sequence"))
                    })?,
            },
        };
        *slot = Some(
            next.checked_add(1)
                .ok_or_else(|| StorageError::Engine(format!("{table} sequence exhausted")))?,
        );
        Ok(next)
    }

    fn forget(&mut self) {
        self.next.clear();
    }
}

fn commit_batch(engine: &mut impl BatchEngine, batch: &mut Vec<Job>, stats: &WriterStats) {
    let started = std::time::Instant::now();
    let size = batch.len() as u64;
    let result = engine.apply(batch);
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .commit_us_total
        .fetch_add(elapsed_us, Ordering::Relaxed);
    stats.batch_size_max_seen.fetch_max(size, Ordering::Relaxed);
    match result {
        Ok(outcomes) => {
            for (job, outcome) in batch.drain(..).zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) => {
            stats.failed_batches.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, batch_size = size, "storage batch failed; nothing of it was written");
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(e.for_each_caller()));
            }
        }
    }
    stats.completed.fetch_add(size, Ordering::Relaxed);
}

/// The embedded engine: one redb write transaction per batch, committed with redb's default
/// durability (fsync before `commit` returns). Changes of existing accounts go to the account
/// journal ([`crate::journal`]).
pub(crate) struct RedbBatch {
    pub db: Arc<Database>,
    seqs: Sequences,
    journal: JournalWriter,
    /// The node's read cache: a batch's changes leave it before the batch is answered.
    cache: Arc<ReadCache>,
}

impl RedbBatch {
    pub fn new(db: Arc<Database>, journal: JournalWriter, cache: Arc<ReadCache>) -> RedbBatch {
        RedbBatch {
            db,
            seqs: Sequences::default(),
            journal,
            cache,
        }
    }

    fn run(&mut self, batch: &[Job], fold: bool) -> Result<Vec<WriteOutcome>, StorageError> {
        let result = apply_batch(&self.db, batch, &mut self.seqs, &mut self.journal, fold);
        if result.is_err() {
            self.seqs.forget();
        }
        result
    }
}

impl BatchEngine for RedbBatch {
    fn apply(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, StorageError> {
        let mut evict = EvictOnDrop::new(self.cache.clone(), batch);
        let results: Result<Vec<SetResult>, StorageError> = self
            .run(batch, false)
            .map(|o| o.into_iter().map(Ok).collect());
        evict.failed_conditions(batch, results.as_deref().ok());
        results
    }

    fn settle(&mut self) -> Result<Option<redb::ReadTransaction>, StorageError> {
        if !self.journal.is_empty() {
            self.run(&[], true)?;
        }
        // Taken on the writer thread before any later batch: its journal is empty, so its
        // `accounts` table is exact.
        Ok(Some(self.db.begin_read()?))
    }
}

/// The open handles of one write transaction (redb allows one per table per transaction).
struct Handles<'t> {
    txn: &'t redb::WriteTransaction,
    tables: Vec<Option<RawTable<'t>>>,
    journal: Option<RawTable<'t>>,
}

fn apply_batch(
    db: &Database,
    batch: &[Job],
    seqs: &mut Sequences,
    journal: &mut JournalWriter,
    fold: bool,
) -> Result<Vec<WriteOutcome>, StorageError> {
    let txn = db.begin_write()?;
    let mut changes = BatchJournal::default();
    let outcomes = match apply_sets(&txn, batch, seqs, journal, &mut changes, fold) {
        Ok(outcomes) => outcomes,
        Err(e) => {
            journal.failed(changes);
            return Err(e);
        }
    };
    journal.install(&mut changes);
    match txn.commit() {
        Ok(()) => {
            journal.committed(changes);
            Ok(outcomes)
        }
        Err(e) => {
            journal.commit_failed(db, changes);
            Err(e.into())
        }
    }
}

fn apply_sets(
    txn: &redb::WriteTransaction,
    batch: &[Job],
    seqs: &mut Sequences,
    journal: &mut JournalWriter,
    changes: &mut BatchJournal,
    fold: bool,
) -> Result<Vec<WriteOutcome>, StorageError> {
    let mut h = Handles {
        txn,
        tables: (0..Table::ALL.len()).map(|_| None).collect(),
        journal: None,
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        let outcome = check(&mut h, journal, changes, &job.set)?;
        if outcome == WriteOutcome::Committed {
            for op in &job.set.ops {
                apply_op(&mut h, seqs, journal, changes, op)?;
            }
        }
        outcomes.push(outcome);
    }
    // The fold drops and recreates the journal table: no handle of it may be open.
    h.journal = None;
    if journal.wants_fold(changes, fold) {
        let accounts = table_of(h.txn, &mut h.tables, Table::Accounts)?;
        journal.fold(changes, txn, accounts)?;
    }
    Ok(outcomes)
}

fn apply_op(
    h: &mut Handles<'_>,
    seqs: &mut Sequences,
    journal: &mut JournalWriter,
    changes: &mut BatchJournal,
    op: &Op,
) -> Result<(), StorageError> {
    match op {
        Op::Put {
            table: Table::Accounts,
            key,
            value,
        } => account_change(h, journal, changes, key, Some(value)),
        Op::Delete {
            table: Table::Accounts,
            key,
        } => account_change(h, journal, changes, key, None),
        Op::Put { table, key, value } => {
            table_of(h.txn, &mut h.tables, *table)?.insert(key.as_slice(), value.as_slice())?;
            Ok(())
        }
        Op::Delete { table, key } => {
            table_of(h.txn, &mut h.tables, *table)?.remove(key.as_slice())?;
            Ok(())
        }
        Op::Append { table, value } => {
            let handle = table_of(h.txn, &mut h.tables, *table)?;
            let key = crate::keys::sequence(seqs.take(*table, handle)?);
            handle.insert(key.as_slice(), value.as_slice())?;
            Ok(())
        }
    }
}

/// A put (`Some`) or delete of an account: appended to the journal once the account exists,
/// else written to `accounts` (a new account, or the delete of one the journal never had).
fn account_change(
    h: &mut Handles<'_>,
    journal: &mut JournalWriter,
    changes: &mut BatchJournal,
    key: &[u8],
    value: Option<&Vec<u8>>,
) -> Result<(), StorageError> {
    let accounts = table_of(h.txn, &mut h.tables, Table::Accounts)?;
    let known = journal.state(changes, accounts, key)?;
    match (known, value) {
        (Known::Absent, Some(v)) => {
            accounts.insert(key, v.as_slice())?;
            return Ok(());
        }
        (Known::Absent, None) => return Ok(()),
        // `accounts` names exactly the accounts there are: a delete leaves it at once, and
        // a put after a delete enters it again (with the version the journal then holds).
        (_, None) => {
            accounts.remove(key)?;
        }
        (Known::Journaled { deleted: true }, Some(v)) => {
            accounts.insert(key, v.as_slice())?;
        }
        (Known::Journaled { deleted: false } | Known::InAccounts, Some(_)) => {}
    }
    if h.journal.is_none() {
        h.journal = Some(h.txn.open_table(JOURNAL)?);
    }
    let Some(j) = h.journal.as_mut() else {
        return Err(StorageError::Engine(
            "journal handle empty after open".into(),
        ));
    };
    journal.append(changes, j, key, value.cloned())
}

fn check(
    h: &mut Handles<'_>,
    journal: &JournalWriter,
    changes: &BatchJournal,
    set: &WriteSet,
) -> Result<WriteOutcome, StorageError> {
    for (i, c) in set.conditions.iter().enumerate() {
        let (table, key) = match c {
            Condition::Absent { table, key }
            | Condition::Present { table, key }
            | Condition::Equals { table, key, .. } => (*table, key.as_slice()),
        };
        let handle = table_of(h.txn, &mut h.tables, table)?;
        let holds = if table == Table::Accounts {
            holds(c, journal.current(changes, handle, key)?.as_deref())
        } else {
            holds(c, handle.get(key)?.as_ref().map(|v| v.value()))
        };
        if !holds {
            return Ok(WriteOutcome::ConditionFailed(i));
        }
    }
    Ok(WriteOutcome::Committed)
}

fn holds(condition: &Condition, stored: Option<&[u8]>) -> bool {
    match condition {
        Condition::Absent { .. } => stored.is_none(),
        Condition::Present { .. } => stored.is_some(),
        Condition::Equals { value, .. } => stored == Some(value.as_slice()),
    }
}

fn table_of<'t, 'a>(
    txn: &'t redb::WriteTransaction,
    tables: &'a mut [Option<RawTable<'t>>],
    table: Table,
) -> Result<&'a mut RawTable<'t>, StorageError> {
    let slot = &mut tables[table.index()];
    if slot.is_none() {
        *slot = Some(txn.open_table(table.def())?);
    }
    slot.as_mut()
        .ok_or_else(|| StorageError::Engine("table slot empty after open".into()))
}

/// The keys of notified tables a batch puts or deletes.
pub(crate) fn changed_keys(batch: &[Job]) -> Vec<(Table, &[u8])> {
    batch
        .iter()
        .flat_map(|j| j.set.ops.iter())
        .filter_map(|op| op.key().filter(|(t, _)| cache::notified(*t)))
        .collect()
}

/// Evicts from its node's cache, when dropped, what a batch leaves stale whatever became of
/// it (a failed commit may have landed): every key it changes, and the key of each failed
/// condition, since that caller read something else than the store holds and its retry must
/// read the store. Readers see the batch from the moment its callers hear back, and on drop,
/// so a panic after the commit (an invariant assert; the writer thread then ends) evicts too:
/// the embedded cache has no other way to learn of the change.
pub(crate) struct EvictOnDrop<'a> {
    cache: Arc<ReadCache>,
    keys: Vec<(Table, &'a [u8])>,
}

impl<'a> EvictOnDrop<'a> {
    pub(crate) fn new(cache: Arc<ReadCache>, batch: &'a [Job]) -> Self {
        EvictOnDrop {
            cache,
            keys: changed_keys(batch),
        }
    }

    /// Adds the key of each failed condition among `results` (none when the batch failed).
    pub(crate) fn failed_conditions<E>(
        &mut self,
        batch: &'a [Job],
        results: Option<&[Result<WriteOutcome, E>]>,
    ) {
        for (job, r) in batch.iter().zip(results.unwrap_or_default()) {
            if let Ok(WriteOutcome::ConditionFailed(i)) = r {
                self.keys
                    .extend(job.set.conditions.get(*i).map(Condition::key));
            }
        }
    }
}

impl Drop for EvictOnDrop<'_> {
    fn drop(&mut self) {
        if !self.keys.is_empty() {
            self.cache.evict(self.keys.drain(..));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_panics_after_its_commit_still_evicts_what_it_changed() {
        let cache = ReadCache::local();
        let key = b"token-hash".to_vec();
        let ticket = cache.epoch_ticket();
        cache.fill_get(ticket, Table::Tokens, &key, Some(b"old session"));
        assert!(cache.get(Table::Tokens, &key).is_some());

        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _evict = EvictOnDrop {
                cache: cache.clone(),
                keys: vec![(Table::Tokens, key.as_slice())],
            };
            panic!("an invariant failed after the commit");
        }));
        assert!(unwound.is_err());
        assert_eq!(
            cache.get(Table::Tokens, &key),
            None,
            "evicted while unwinding"
        );
    }
}
