use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::codec::{decode, encode, Record};
use crate::keys::prefix_end;
use crate::records::{MetaRecord, META_KEY, SCHEMA_VERSION};
use crate::writer::{RedbBatch, WriterHandle};
use crate::{now_us, StorageError, Table, WriteOutcome, WriteSet, WriterStats};

/// The file inside the data folder.
pub const DB_FILE: &str = "creativeflow.redb";

/// Bounds of the store. Every queue has one.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// redb's page cache; idle users cost nothing beyond it.
    pub cache_size_bytes: usize,
    pub writer_queue_capacity: usize,
    pub writer_batch_size_max: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_size_bytes: 256 * 1024 * 1024,
            writer_queue_capacity: 8192,
            writer_batch_size_max: 512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// The store: reads go straight to redb snapshots, writes go through the one writer thread.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    writer: WriterHandle,
    path: PathBuf,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.shutdown();
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
        let db = Arc::new(db);
        let writer = WriterHandle::start(
            RedbBatch::new(db.clone()),
            options.writer_queue_capacity,
            options.writer_batch_size_max,
        )?;
        Ok(Store {
            inner: Arc::new(Inner { db, writer, path }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn stats(&self) -> &WriterStats {
        &self.inner.writer.stats
    }

    /// Submits a write set and waits until it is durable (or refused by a condition).
    pub async fn write(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        self.inner.writer.write(set).await
    }

    /// The same, for callers outside an async runtime (CLI commands).
    pub fn write_blocking(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        self.inner.writer.write_blocking(set)
    }

    /// Commits everything queued and stops the writer; later writes answer `Closed`.
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }

    pub fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        get_in(&self.inner.db.begin_read()?, key)
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
        let txn = self.inner.db.begin_read()?;
        let table = txn.open_table(R::TABLE.def())?;
        scan_table(&table, prefix, after, direction, limit)
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
        let txn = self.inner.db.begin_read()?;
        let t = txn.open_table(table.def())?;
        Ok(t.len()?)
    }

    /// A consistent read snapshot, for `verify` and `backup` while writes go on.
    pub fn snapshot(&self) -> Result<redb::ReadTransaction, StorageError> {
        Ok(self.inner.db.begin_read()?)
    }

    /// One consistent view for several reads: what a request reads (its caller, then the
    /// records it shows) comes from one point in time, and opens one read transaction.
    pub fn read(&self) -> Result<Snapshot, StorageError> {
        Ok(Snapshot {
            txn: self.inner.db.begin_read()?,
        })
    }
}

/// Reads of records: from the latest commit at each call ([`Store`]) or from one fixed point
/// in time ([`Snapshot`]). Read-only code takes `&impl Reader` so callers choose.
pub trait Reader {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError>;

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

impl Reader for Store {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        Store::get(self, key)
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
    txn: redb::ReadTransaction,
}

impl Snapshot {
    /// The stored bytes (version byte and all) at `key` of `table`, undecoded.
    pub fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let t = self.txn.open_table(table.def())?;
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    }
}

impl Reader for Snapshot {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        get_in(&self.txn, key)
    }

    fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        let table = self.txn.open_table(R::TABLE.def())?;
        scan_table(&table, prefix, after, direction, limit)
    }
}

fn get_in<R: Record>(txn: &redb::ReadTransaction, key: &[u8]) -> Result<Option<R>, StorageError> {
    let table = txn.open_table(R::TABLE.def())?;
    match table.get(key)? {
        Some(v) => Ok(Some(decode(v.value())?)),
        None => Ok(None),
    }
}

type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

pub(crate) fn scan_table<R: Record, T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    prefix: &[u8],
    after: Option<&[u8]>,
    direction: Direction,
    limit: usize,
) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
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
        out.push((k.value().to_vec(), decode::<R>(v.value())?));
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
                count_usage(&txn)?;
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
