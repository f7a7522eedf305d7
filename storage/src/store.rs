use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::cache::{ReadCache, Ticket};
use crate::codec::{decode, encode, Record};
use crate::interface::{Direction, Reader, StoreOptions};
use crate::journal::{self, AccountsView, JournalWriter, Overlay};
use crate::keys::prefix_end;
use crate::pg::{PgSettings, PgStore};
use crate::records::{MetaRecord, META_KEY, SCHEMA_VERSION};
use crate::writer::{RedbBatch, WriterHandle};
use crate::{now_us, StorageError, Table, WriteOutcome, WriteSet, WriterStats};

/// The file inside the data folder.
pub const DB_FILE: &str = "creativeflow.redb";

/// The store: the embedded engine (redb: reads straight from its snapshots, writes through the
/// one writer thread) or, for several nodes, PostgreSQL ([`crate::pg`]) behind the same calls.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Engine>,
}

enum Engine {
    Redb {
        db: Arc<Database>,
        writer: WriterHandle,
        path: PathBuf,
        /// The account versions the journal holds, for readers ([`crate::journal`]).
        overlay: Arc<Overlay>,
        /// Sessions, users and workspace records every request reads ([`crate::cache`]).
        cache: Arc<ReadCache>,
    },
    Pg(PgStore),
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Engine::Redb { writer, .. } = self {
            writer.shutdown();
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `data_dir`, creating every table, and starts the writer.
    pub fn open(data_dir: &Path, options: &StoreOptions) -> Result<Store, StorageError> {
        private_dir(data_dir).map_err(|e| StorageError::Open {
            path: data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let path = data_dir.join(DB_FILE);
        private_file(&path).map_err(|e| StorageError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let db = open_database(&path, options.cache_size_bytes)?;
        ensure_tables(&db)?;
        journal::fold_at_open(&db)?;
        let db = Arc::new(db);
        let overlay = Arc::new(Overlay::default());
        let cache = ReadCache::local();
        let writer = WriterHandle::start(
            RedbBatch::new(
                db.clone(),
                JournalWriter::new(overlay.clone(), options.account_journal_fold_entries),
                cache.clone(),
            ),
            options.writer_queue_capacity,
            options.writer_batch_size_max,
        )?;
        Ok(Store {
            inner: Arc::new(Engine::Redb {
                db,
                writer,
                path,
                overlay,
                cache,
            }),
        })
    }

    /// The store on PostgreSQL: connects, migrates, starts this node's writer.
    pub fn connect_postgres(
        settings: &PgSettings,
        options: &StoreOptions,
    ) -> Result<Store, StorageError> {
        Ok(Store {
            inner: Arc::new(Engine::Pg(PgStore::connect(settings, options)?)),
        })
    }

    /// The PostgreSQL store behind this one, if it is one.
    pub fn postgres(&self) -> Option<&PgStore> {
        match &*self.inner {
            Engine::Pg(pg) => Some(pg),
            Engine::Redb { .. } => None,
        }
    }

    /// Where the store is: its file, or the database (no password).
    pub fn describe(&self) -> String {
        match &*self.inner {
            Engine::Redb { path, .. } => path.display().to_string(),
            Engine::Pg(pg) => pg.describe(),
        }
    }

    pub fn stats(&self) -> &WriterStats {
        match &*self.inner {
            Engine::Redb { writer, .. } => &writer.stats,
            Engine::Pg(pg) => pg.stats(),
        }
    }

    /// Submits a write set and waits until it is durable (or refused by a condition).
    pub async fn write(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        match &*self.inner {
            Engine::Redb { writer, .. } => writer.write(set).await,
            Engine::Pg(pg) => pg.write(set).await,
        }
    }

    /// The same, for callers outside an async runtime (CLI commands).
    pub fn write_blocking(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        match &*self.inner {
            Engine::Redb { writer, .. } => writer.write_blocking(set),
            Engine::Pg(pg) => pg.write_blocking(set),
        }
    }

    /// Commits everything queued and stops the writer; later writes answer `Closed`.
    pub fn shutdown(&self) {
        match &*self.inner {
            Engine::Redb { writer, .. } => writer.shutdown(),
            Engine::Pg(pg) => pg.shutdown(),
        }
    }

    pub fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        self.read()?.get(key)
    }

    /// Records whose key starts with `prefix`, strictly after `after` in `direction`, at most
    /// `limit` of them, from one consistent snapshot.
    pub fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        self.read()?.scan(prefix, after, direction, limit)
    }

    /// Visits the records under `prefix` in key order (read in bounded steps, each step its own
    /// snapshot) until `visit` answers false.
    pub fn visit<R: Record>(
        &self,
        prefix: &[u8],
        mut visit: impl FnMut(Vec<u8>, R) -> bool,
    ) -> Result<(), StorageError> {
        const STEP: usize = 1000;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let rows = self.scan::<R>(prefix, after.as_deref(), Direction::Forward, STEP)?;
            let done = rows.len() < STEP;
            after = rows.last().map(|(k, _)| k.clone());
            for (k, r) in rows {
                if !visit(k, r) {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
        }
    }

    /// Number of records in a table (for metrics and benchmarks).
    pub fn count(&self, table: Table) -> Result<u64, StorageError> {
        use redb::ReadableTableMetadata;
        match &*self.inner {
            Engine::Redb { db, .. } => {
                let txn = db.begin_read()?;
                let t = txn.open_table(table.def())?;
                Ok(t.len()?)
            }
            Engine::Pg(pg) => pg.count(table),
        }
    }

    /// Whether the store answers reads now (for `/readyz`).
    pub fn ping(&self) -> Result<(), StorageError> {
        match &*self.inner {
            Engine::Redb { db, .. } => db.begin_read().map(drop).map_err(Into::into),
            Engine::Pg(pg) => pg.ping(),
        }
    }

    /// A consistent read snapshot, for `verify` and `backup` while writes go on. A PostgreSQL
    /// store is first exported, as of one moment, into a temporary store file
    /// ([`crate::pg::export`]) that is gone once the snapshot is dropped.
    pub fn snapshot(&self) -> Result<WholeSnapshot, StorageError> {
        match &*self.inner {
            Engine::Redb { db, writer, .. } => Ok(WholeSnapshot {
                txn: settled_snapshot(db, writer)?,
                _export: None,
            }),
            Engine::Pg(pg) => pg_snapshot(pg),
        }
    }

    /// Reads this node answered from its cache so far ([`crate::cache`], for `/metrics`).
    pub fn cache_hits(&self) -> u64 {
        match &*self.inner {
            Engine::Redb { cache, .. } => cache.hits.load(std::sync::atomic::Ordering::Relaxed),
            Engine::Pg(pg) => pg.cache_hits(),
        }
    }

    /// The account versions held in memory for the account journal (embedded store only).
    pub fn account_overlay(&self) -> Option<&Overlay> {
        match &*self.inner {
            Engine::Redb { overlay, .. } => Some(overlay),
            Engine::Pg(_) => None,
        }
    }

    /// One view for several reads: what a request reads (its caller, then the records it
    /// shows) opens one read transaction and comes from one point in time, except the records
    /// the node caches ([`crate::cache`]), which may be a commit apart from it. On PostgreSQL
    /// each read sees the latest commit (see [`crate::pg`]).
    pub fn read(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot {
            view: match &*self.inner {
                Engine::Redb {
                    db, overlay, cache, ..
                } => View::Redb(RedbView::new(db, overlay, cache)?),
                Engine::Pg(pg) => View::Pg(pg.clone()),
            },
        })
    }
}

/// Who relays the outbox to the broker. On the embedded store this node is the only one; on
/// PostgreSQL it is the node holding the cluster lease, and every other node waits, ready to
/// take over when that node's session ends.
#[derive(Debug)]
pub enum RelayLease {
    Alone,
    Cluster(crate::pg::lease::PgLease),
}

/// The advisory lock key of the outbox relay ("cf-relay" in ASCII).
const RELAY_LEASE_KEY: i64 = 0x0063_662d_7265_6c61;

impl RelayLease {
    /// Whether this node relays now.
    pub fn is_held(&self) -> bool {
        match self {
            RelayLease::Alone => true,
            RelayLease::Cluster(lease) => lease.is_held(),
        }
    }

    /// Whether other nodes write to the outbox too: their entries do not wake this node's
    /// publisher, so it also looks on a timer.
    pub fn shared(&self) -> bool {
        matches!(self, RelayLease::Cluster(_))
    }
}

impl Store {
    /// This node's place in relaying the outbox.
    pub fn relay_lease(&self) -> Result<RelayLease, StorageError> {
        match &*self.inner {
            Engine::Redb { .. } => Ok(RelayLease::Alone),
            Engine::Pg(pg) => Ok(RelayLease::Cluster(crate::pg::lease::PgLease::start(
                pg.settings(),
                RELAY_LEASE_KEY,
            )?)),
        }
    }
}

/// A mutex over every node on one store: on the embedded store this node's own; on
/// PostgreSQL also a session advisory lock (see [`crate::pg::mutex`]). For writes that every
/// node decides from one record, so they take turns instead of meeting on it.
#[derive(Debug)]
pub struct ClusterMutex {
    local: tokio::sync::Mutex<()>,
    cluster: Option<crate::pg::mutex::PgMutex>,
}

/// A held [`ClusterMutex`]. The cluster lock is released before the local one, so the next
/// caller on this node queues its request after the release.
pub struct ClusterGuard<'a> {
    _cluster: Option<crate::pg::mutex::PgMutexGuard<'a>>,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

impl ClusterMutex {
    /// Waits for this node's turn, then the cluster's. Unavailable when the database is.
    pub async fn lock(&self) -> Result<ClusterGuard<'_>, StorageError> {
        let local = self.local.lock().await;
        let cluster = match &self.cluster {
            Some(m) => Some(m.lock().await?),
            None => None,
        };
        Ok(ClusterGuard {
            _cluster: cluster,
            _local: local,
        })
    }
}

impl Store {
    /// The cluster mutex named `name` (eight ASCII bytes, the advisory lock key on
    /// PostgreSQL). Each call starts a new one: hold it for the node's life.
    pub fn cluster_mutex(&self, name: &[u8; 8]) -> Result<ClusterMutex, StorageError> {
        let cluster = match &*self.inner {
            Engine::Redb { .. } => None,
            Engine::Pg(pg) => Some(crate::pg::mutex::PgMutex::start(
                pg.settings(),
                i64::from_be_bytes(*name),
            )?),
        };
        Ok(ClusterMutex {
            local: tokio::sync::Mutex::new(()),
            cluster,
        })
    }
}

/// The whole PostgreSQL store as one redb snapshot: exported into a temporary file, opened,
/// and unlinked at once (the open file lives as long as the read transaction).
fn pg_snapshot(pg: &PgStore) -> Result<WholeSnapshot, StorageError> {
    let path = std::env::temp_dir().join(format!(
        "creativeflow-export-{}.redb",
        uuid::Uuid::new_v4().simple()
    ));
    crate::pg::export::export(pg.settings(), &path, &mut |_, _| {})?;
    let opened = open_database(&path, 64 * 1024 * 1024).and_then(|db| {
        Ok(WholeSnapshot {
            txn: db.begin_read()?,
            _export: Some(db),
        })
    });
    let _ = std::fs::remove_file(&path);
    opened
}

/// One consistent view of the whole store (a redb read transaction), for `verify` and
/// `backup`. Reads through `Deref`.
pub struct WholeSnapshot {
    // Declared first, so dropped before the exported database it reads.
    txn: redb::ReadTransaction,
    /// The temporary store a PostgreSQL store was exported into.
    _export: Option<Database>,
}

impl std::ops::Deref for WholeSnapshot {
    type Target = redb::ReadTransaction;

    fn deref(&self) -> &redb::ReadTransaction {
        &self.txn
    }
}

impl Reader for Store {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        Store::get(self, key)
    }

    fn get_many<R: Record>(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<R>>, StorageError> {
        self.read()?.get_many(keys)
    }

    fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        Store::scan(self, prefix, after, direction, limit)
    }
}

/// A read transaction held for a short while (one request).
pub struct Snapshot {
    view: View,
}

enum View {
    Redb(RedbView),
    Pg(PgStore),
}

/// One redb read transaction, the only way reads reach the embedded store: accounts are read
/// as of it through the journal ([`AccountsView`]), the records the node caches through
/// [`ReadCache`], every other table straight.
struct RedbView {
    txn: redb::ReadTransaction,
    overlay: Arc<Overlay>,
    cache: Arc<ReadCache>,
    /// Taken before `txn` began, so that this snapshot fills the cache only while nothing
    /// was evicted since it began (what it reads may be older than an eviction).
    ticket: Ticket,
    /// Opened at the first account read, for every later one (boxed: most snapshots read
    /// no account, and a view holds two table handles).
    accounts: std::cell::OnceCell<Box<AccountsView>>,
}

impl RedbView {
    fn new(
        db: &Database,
        overlay: &Arc<Overlay>,
        cache: &Arc<ReadCache>,
    ) -> Result<RedbView, StorageError> {
        let ticket = cache.epoch_ticket();
        Ok(RedbView {
            txn: db.begin_read()?,
            overlay: overlay.clone(),
            cache: cache.clone(),
            ticket,
            accounts: std::cell::OnceCell::new(),
        })
    }

    fn account(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let view = match self.accounts.get() {
            Some(v) => v,
            None => {
                let opened = Box::new(AccountsView::open(&self.txn)?);
                self.accounts.get_or_init(|| opened)
            }
        };
        view.read(&self.overlay, key)
    }

    /// The stored bytes at `key` of `table`: accounts through the journal, cached tables
    /// through the cache (filling it on a miss), others from the transaction.
    fn raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if table == Table::Accounts {
            return self.account(key);
        }
        self.cache.get_through(Some(self.ticket), table, key, || {
            let t = self.txn.open_table(table.def())?;
            let value = t.get(key)?.map(|v| v.value().to_vec());
            Ok(value)
        })
    }
}

impl Reader for RedbView {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        if R::TABLE == Table::Accounts || ReadCache::caches_gets(R::TABLE) {
            return self.raw(R::TABLE, key)?.map(|b| decode(&b)).transpose();
        }
        // Decoded in place: no copy of the bytes for the tables nothing caches.
        let table = self.txn.open_table(R::TABLE.def())?;
        match table.get(key)? {
            Some(v) => Ok(Some(decode(v.value())?)),
            None => Ok(None),
        }
    }

    /// [`scan_table`] on this transaction (or the cache); accounts as of it
    /// ([`AccountsView::read`] each).
    fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        if ReadCache::caches_scans(R::TABLE) {
            let shape = (after, direction, limit);
            let rows =
                self.cache
                    .scan_through(Some(self.ticket), R::TABLE, prefix, shape, || {
                        let t = self.txn.open_table(R::TABLE.def())?;
                        scan_table(&t, prefix, after, direction, limit, |v| Ok(v.to_vec()))
                    })?;
            return rows
                .into_iter()
                .map(|(k, v)| Ok((k, decode(&v)?)))
                .collect();
        }
        let table = self.txn.open_table(R::TABLE.def())?;
        let rows = scan_table(&table, prefix, after, direction, limit, decode::<R>)?;
        if R::TABLE != Table::Accounts {
            return Ok(rows);
        }
        // `accounts` names every account (new ones go there first); its values may be older.
        let mut out = Vec::with_capacity(rows.len());
        for (key, _) in rows {
            if let Some(bytes) = self.account(&key)? {
                out.push((key, decode(&bytes)?));
            }
        }
        Ok(out)
    }
}

impl Snapshot {
    /// The stored bytes (version byte and all) at `key` of `table`, undecoded.
    pub fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.view {
            View::Redb(v) => v.raw(table, key),
            View::Pg(pg) => pg.get_raw(table, key),
        }
    }
}

impl Reader for Snapshot {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        match &self.view {
            View::Redb(v) => v.get(key),
            View::Pg(pg) => pg.get(key),
        }
    }

    fn get_many<R: Record>(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<R>>, StorageError> {
        match &self.view {
            View::Redb(v) => v.get_many(keys),
            View::Pg(pg) => pg.get_many(keys),
        }
    }

    fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        match &self.view {
            View::Redb(v) => v.scan(prefix, after, direction, limit),
            View::Pg(pg) => pg.scan(prefix, after, direction, limit),
        }
    }
}

/// A snapshot whose account journal is empty, so that its `accounts` table is exact: the
/// writer folds the journal and takes it before any later batch. A writer that has stopped
/// settled the store as it stopped.
fn settled_snapshot(
    db: &Database,
    writer: &WriterHandle,
) -> Result<redb::ReadTransaction, StorageError> {
    match writer.settle() {
        Ok(Some(txn)) => Ok(txn),
        Ok(None) | Err(StorageError::Closed) => {
            let txn = db.begin_read()?;
            match journal::entries(&txn)? {
                0 => Ok(txn),
                n => Err(StorageError::Engine(format!(
                    "the account journal holds {n} entries and the writer is gone: reopen the store to fold them"
                ))),
            }
        }
        Err(e) => Err(e),
    }
}

type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// Rows of `table` whose key starts with `prefix`, strictly after `after` in `direction`, at
/// most `limit`, each value passed through `value`.
fn scan_table<V, T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    prefix: &[u8],
    after: Option<&[u8]>,
    direction: Direction,
    limit: usize,
    value: impl Fn(&[u8]) -> Result<V, StorageError>,
) -> Result<Vec<(Vec<u8>, V)>, StorageError> {
    use std::ops::Bound;
    let end = prefix_end(prefix);
    let (lower, upper): (Bound<&[u8]>, Bound<&[u8]>) = match (direction, after) {
        (Direction::Forward, Some(a)) => (Bound::Excluded(a), end_bound(&end)),
        (Direction::Backward, Some(a)) => (Bound::Included(prefix), Bound::Excluded(a)),
        (_, None) => (Bound::Included(prefix), end_bound(&end)),
    };
    let range = table.range::<&[u8]>((lower, upper))?;
    let mut out = Vec::with_capacity(limit.min(256));
    let mut push = |item: RangeItem| -> Result<bool, StorageError> {
        let (k, v) = item?;
        if !k.value().starts_with(prefix) {
            return Ok(false);
        }
        out.push((k.value().to_vec(), value(v.value())?));
        Ok(out.len() < limit)
    };
    match direction {
        Direction::Forward => {
            for item in range {
                if !push(item)? {
                    break;
                }
            }
        }
        Direction::Backward => {
            for item in range.rev() {
                if !push(item)? {
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn end_bound(end: &Option<Vec<u8>>) -> std::ops::Bound<&[u8]> {
    match end {
        Some(e) => std::ops::Bound::Excluded(e.as_slice()),
        None => std::ops::Bound::Unbounded,
    }
}

/// Creates `dir` (and its parents) readable by its owner only (0700), or narrows an existing
/// one to that: it holds the store, the control socket and the money.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "data folder narrowed to 0700");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates `file` empty with mode 0600 if it does not exist (redb initializes an empty file),
/// else narrows it to 0600: store files and backups are readable by their owner only.
pub fn private_file(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

pub(crate) fn open_database(
    path: &Path,
    cache_size_bytes: usize,
) -> Result<Database, StorageError> {
    let mut builder = redb::Builder::new();
    builder.set_cache_size(cache_size_bytes);
    builder.create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StorageError::InUse {
            path: path.display().to_string(),
        },
        other => StorageError::Open {
            path: path.display().to_string(),
            reason: other.to_string(),
        },
    })
}

pub(crate) fn ensure_tables(db: &Database) -> Result<(), StorageError> {
    let txn = db.begin_write()?;
    {
        for t in Table::ALL {
            txn.open_table(t.def())?;
        }
        let mut meta = txn.open_table(Table::Meta.def())?;
        let existing = meta.get(META_KEY)?.map(|v| decode::<MetaRecord>(v.value()));
        match existing {
            None => {
                let record = MetaRecord {
                    schema_version: SCHEMA_VERSION,
                    created_at_us: now_us(),
                };
                meta.insert(META_KEY, encode(&record).as_slice())?;
            }
            Some(Ok(m)) if m.schema_version == SCHEMA_VERSION => {}
            Some(Ok(m)) if (2..SCHEMA_VERSION).contains(&m.schema_version) => {
                if m.schema_version <= 2 {
                    order_the_outbox(&txn)?;
                }
                if m.schema_version <= 3 {
                    version_the_sessions(&txn)?;
                }
                if m.schema_version <= 4 {
                    key_subscriptions_by_id(&txn)?;
                }
                if m.schema_version <= 5 {
                    count_usage(&txn)?;
                }
                let upgraded = MetaRecord {
                    schema_version: SCHEMA_VERSION,
                    ..m
                };
                meta.insert(META_KEY, encode(&upgraded).as_slice())?;
                tracing::info!(
                    from = m.schema_version,
                    to = SCHEMA_VERSION,
                    "store schema upgraded"
                );
            }
            Some(Ok(m)) => {
                return Err(StorageError::Open {
                    path: String::new(),
                    reason: format!(
                        "store schema version {} is not {SCHEMA_VERSION}",
                        m.schema_version
                    ),
                })
            }
            Some(Err(e)) => return Err(e),
        }
    }
    txn.commit()?;
    Ok(())
}

/// Schema 2 → 3: every job waiting in the outbox gets its `outbox_order` entry, in the outbox's
/// key order (request ids are time-ordered, the best order a version-2 store knows).
fn order_the_outbox(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    use redb::ReadableTable;
    let outbox = txn.open_table(Table::Outbox.def())?;
    let mut order = txn.open_table(Table::OutboxOrder.def())?;
    for (seq, item) in (0u64..).zip(outbox.iter()?) {
        let (_, v) = item?;
        let record = decode::<crate::records::OutboxRecord>(v.value())?;
        let entry = crate::records::OutboxOrder {
            generation_id: record.generation_id,
        };
        order.insert(
            crate::keys::sequence(seq).as_slice(),
            encode(&entry).as_slice(),
        )?;
    }
    Ok(())
}

/// Schema 3 → 4: every session gets its user's current credentials version (it stays valid);
/// reset codes keyed by code hash are dropped (they live an hour; users ask again).
fn version_the_sessions(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    use crate::records::{TokenRecord, TokenRecordV1, UserRecord};
    use redb::ReadableTable;
    let users = txn.open_table(Table::Users.def())?;
    let mut tokens = txn.open_table(Table::Tokens.def())?;
    let mut upgraded = Vec::new();
    let mut orphans = Vec::new();
    for item in tokens.iter()? {
        let (k, v) = item?;
        let old = decode::<TokenRecordV1>(v.value())?;
        let version = match users.get(crate::keys::user(old.user_id).as_slice())? {
            Some(u) => decode::<UserRecord>(u.value())?.credentials_version,
            None => {
                orphans.push((k.value().to_vec(), old.user_id));
                continue;
            }
        };
        let new = TokenRecord {
            user_id: old.user_id,
            credentials_version: version,
            created_at_us: old.created_at_us,
            expires_at_us: old.expires_at_us,
        };
        upgraded.push((k.value().to_vec(), encode(&new)));
    }
    for (k, v) in upgraded {
        tokens.insert(k.as_slice(), v.as_slice())?;
    }
    // A session of a user who is gone cannot be versioned: it goes, with its index entry.
    let mut by_user = txn.open_table(Table::TokensByUser.def())?;
    for (k, user) in orphans {
        tokens.remove(k.as_slice())?;
        let mut index_key = crate::keys::user(user);
        index_key.extend_from_slice(&k);
        by_user.remove(index_key.as_slice())?;
    }
    drop(by_user);
    drop(tokens);
    let mut resets = txn.open_table(Table::ResetTokens.def())?;
    resets.retain(|_, _| false)?;
    Ok(())
}

/// Schema 4 → 5: each subscription moves from its user's key to (user, provider, id).
fn key_subscriptions_by_id(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    use crate::records::SubscriptionRecord;
    use redb::ReadableTable;
    let mut subs = txn.open_table(Table::Subscriptions.def())?;
    let mut moved = Vec::new();
    for item in subs.iter()? {
        let (k, v) = item?;
        let record = decode::<SubscriptionRecord>(v.value())?;
        let key = crate::keys::subscription(
            record.user_id,
            record.provider.as_str(),
            &record.subscription_id,
        );
        if k.value() != key.as_slice() {
            moved.push((k.value().to_vec(), key, v.value().to_vec()));
        }
    }
    for (old, new, value) in moved {
        subs.remove(old.as_slice())?;
        subs.insert(new.as_slice(), value.as_slice())?;
    }
    Ok(())
}

/// Schema 5 → 6: each user's workspace usage, counted from the records.
fn count_usage(txn: &redb::WriteTransaction) -> Result<(), StorageError> {
    use crate::records::*;
    use redb::ReadableTable;
    let mut usage: std::collections::HashMap<uuid::Uuid, UsageRecord> =
        std::collections::HashMap::new();
    fn add<R: Record + Owned>(
        txn: &redb::WriteTransaction,
        usage: &mut std::collections::HashMap<uuid::Uuid, UsageRecord>,
        bytes: impl Fn(&R) -> u64,
    ) -> Result<(), StorageError> {
        let table = txn.open_table(R::TABLE.def())?;
        for item in table.iter()? {
            let (_, v) = item?;
            let r = decode::<R>(v.value())?;
            let u = usage.entry(r.owner()).or_default();
            u.records += 1;
            u.asset_bytes += bytes(&r);
        }
        Ok(())
    }
    add::<WorkbenchRecord>(txn, &mut usage, |_| 0)?;
    add::<ProjectRecord>(txn, &mut usage, |_| 0)?;
    add::<BrandKitRecord>(txn, &mut usage, |_| 0)?;
    add::<AssetRecord>(txn, &mut usage, |a| a.size)?;
    let mut table = txn.open_table(Table::Usage.def())?;
    for (user, u) in usage {
        table.insert(crate::keys::user(user).as_slice(), encode(&u).as_slice())?;
    }
    Ok(())
}
