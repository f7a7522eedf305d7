//! The storage interface on PostgreSQL, for several app nodes on one database: the same reads
//! (get, prefix scans), the same write sets (all or nothing, conditions checked inside the
//! transaction) and the same group commit (one writer thread per node, many sets per
//! transaction, each in a savepoint), durable before the answer (synchronous commit).
//!
//! Every storage table is a `cf_<name>` table of (key, value) holding exactly the bytes the
//! embedded store holds; the money tables also carry typed columns and constraints
//! ([`projection`]) so the database itself guards the invariants and operators can read them
//! with plain SQL. Reads see the latest commit at each call (read committed): unlike the
//! embedded store's snapshots, two reads of one request may see two commits; every write that
//! depends on what was read says so with a condition, which the transaction checks.

mod batch;
pub mod projection;
mod reads;
pub mod schema;
mod settings;

use std::sync::Arc;

use crate::codec::{decode, Record};
use crate::records::{MetaRecord, META_KEY, SCHEMA_VERSION};
use crate::store::{Direction, Reader, StoreOptions};
use crate::writer::WriterHandle;
use crate::{now_us, StorageError, Table, WriteOutcome, WriteSet, WriterStats};

use batch::PgBatch;
use reads::{Answer, Query, ReadPool, Row};
pub use settings::{PgSettings, TlsMode, READ_CONNECTIONS_DEFAULT};

/// The PostgreSQL store of one node.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    reads: ReadPool,
    writer: WriterHandle,
    settings: PgSettings,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.writer.shutdown();
    }
}

impl PgStore {
    /// Connects (a wrong password or an unreachable database is one clear error), applies the
    /// migrations this database lacks under an advisory lock, and starts the writer and the
    /// read connections.
    pub fn connect(settings: &PgSettings, options: &StoreOptions) -> Result<PgStore, StorageError> {
        let mut client = settings.connect()?;
        schema::migrate(&mut client)?;
        let writer = WriterHandle::start(
            PgBatch::new(settings.clone(), client),
            options.writer_queue_capacity,
            options.writer_batch_size_max,
        )?;
        let store = PgStore {
            inner: Arc::new(Inner {
                reads: ReadPool::start(settings)?,
                writer,
                settings: settings.clone(),
            }),
        };
        store.ensure_meta()?;
        Ok(store)
    }

    /// Records the record schema this build writes, or checks the one already recorded.
    fn ensure_meta(&self) -> Result<(), StorageError> {
        let meta = MetaRecord {
            schema_version: SCHEMA_VERSION,
            created_at_us: now_us(),
        };
        let mut set = WriteSet::new();
        set.require_absent::<MetaRecord>(META_KEY.to_vec())
            .put(META_KEY.to_vec(), &meta);
        if self.write_blocking(set)? == WriteOutcome::Committed {
            return Ok(());
        }
        match self.get::<MetaRecord>(META_KEY)? {
            Some(m) if m.schema_version == SCHEMA_VERSION => Ok(()),
            Some(m) => Err(StorageError::Open {
                path: self.describe(),
                reason: format!(
                    "record schema version {} is not {SCHEMA_VERSION}",
                    m.schema_version
                ),
            }),
            None => Err(StorageError::Engine("the meta record vanished".into())),
        }
    }

    /// Where the database is (no password), for logs and `/readyz`.
    pub fn describe(&self) -> String {
        self.inner.settings.describe()
    }

    pub fn stats(&self) -> &WriterStats {
        &self.inner.writer.stats
    }

    /// Submits a write set and waits until it is durable (or refused by a condition).
    pub async fn write(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        self.inner.writer.write(set).await
    }

    /// The same, for callers outside an async runtime.
    pub fn write_blocking(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        self.inner.writer.write_blocking(set)
    }

    /// Commits everything queued and stops the writer; later writes answer `Closed`.
    pub fn shutdown(&self) {
        self.inner.writer.shutdown();
    }

    pub fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        match self.get_raw(R::TABLE, key)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The stored bytes (version byte and all) at `key` of `table`, undecoded.
    pub fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let rows = self.rows(Query::Get {
            table,
            key: key.to_vec(),
        })?;
        Ok(rows.into_iter().next().map(|(_, v)| v))
    }

    /// Records whose key starts with `prefix`, strictly after `after` in `direction`, at most
    /// `limit` of them.
    pub fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        let rows = self.rows(Query::Scan {
            table: R::TABLE,
            prefix: prefix.to_vec(),
            after: after.map(<[u8]>::to_vec),
            direction,
            limit,
        })?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, decode::<R>(&v)?)))
            .collect()
    }

    /// Number of records in a table.
    pub fn count(&self, table: Table) -> Result<u64, StorageError> {
        match self.inner.reads.run(Query::Count { table })? {
            Answer::Count(n) => Ok(n),
            Answer::Rows(_) => Err(StorageError::Engine("a count answered rows".into())),
        }
    }

    /// Whether the database answers now (for `/readyz`).
    pub fn ping(&self) -> Result<(), StorageError> {
        self.get_raw(Table::Meta, META_KEY).map(drop)
    }

    fn rows(&self, query: Query) -> Result<Vec<Row>, StorageError> {
        match self.inner.reads.run(query)? {
            Answer::Rows(rows) => Ok(rows),
            Answer::Count(_) => Err(StorageError::Engine("a read answered a count".into())),
        }
    }
}

impl Reader for PgStore {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        PgStore::get(self, key)
    }

    fn scan<R: Record>(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, R)>, StorageError> {
        PgStore::scan(self, prefix, after, direction, limit)
    }
}
