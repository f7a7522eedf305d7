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
mod bulk;
pub mod export;
pub mod import;
pub mod lease;
pub mod mutex;
pub mod notify;
pub mod projection;
mod reads;
pub mod schema;
mod settings;
mod windows;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::cache::ReadCache;
use crate::codec::{decode, encode, Record};
use crate::interface::{Direction, Reader, StoreOptions};
use crate::records::{MetaRecord, META_KEY, PG_SCHEMA_UPGRADABLE_FROM, SCHEMA_VERSION};
use crate::writer::WriterHandle;
use crate::{now_us, StorageError, Table, WriteOutcome, WriteSet, WriterStats};

use batch::PgBatch;
use reads::{Answer, Query, ReadPool, Row};
pub use settings::{
    PgSettings, TlsMode, READ_CONNECTIONS_DEFAULT, READ_CONNECTIONS_MAX,
    WRITER_CONNECTIONS_DEFAULT, WRITER_CONNECTIONS_MAX,
};
pub use windows::Taken;
use windows::WindowOp;

/// Keys one query of [`PgStore::get_many`] names at most (more go in several).
pub const GET_MANY_KEYS_MAX: usize = 1_024;

/// One more connection, opened on a thread of its own (see [`PgStore::connect`]).
fn connect_on_own_thread(settings: &PgSettings) -> Result<postgres::Client, StorageError> {
    let settings = settings.clone();
    std::thread::Builder::new()
        .name("pg-connect".into())
        .spawn(move || settings.connect())?
        .join()
        .map_err(|_| StorageError::Engine("the connecting thread panicked".into()))?
}

/// Records the record schema this build writes, or checks the one already recorded (the
/// first node to start records it; later ones check it), moving a database from
/// [`PG_SCHEMA_UPGRADABLE_FROM`] on (the versions since only change what is written).
fn ensure_meta(client: &mut postgres::Client, place: &str) -> Result<(), StorageError> {
    let pg = |e: postgres::Error| StorageError::Engine(batch::describe(&e));
    let meta = MetaRecord {
        schema_version: SCHEMA_VERSION,
        created_at_us: now_us(),
    };
    let table = schema::table_name(Table::Meta);
    client
        .execute(
            &format!("INSERT INTO {table} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING"),
            &[&META_KEY, &encode(&meta)],
        )
        .map_err(pg)?;
    let read = |client: &mut postgres::Client| -> Result<(Vec<u8>, MetaRecord), StorageError> {
        let stored: Vec<u8> = client
            .query_one(&format!("SELECT v FROM {table} WHERE k = $1"), &[&META_KEY])
            .map_err(pg)?
            .get(0);
        let m = decode(&stored)?;
        Ok((stored, m))
    };
    let (stored, mut m) = read(client)?;
    if (PG_SCHEMA_UPGRADABLE_FROM..SCHEMA_VERSION).contains(&m.schema_version) {
        // Conditioned on the bytes read: of nodes starting together one moves it, and the
        // others check what it wrote instead of assuming it is what they would have written.
        let from = m.schema_version;
        let upgraded = MetaRecord {
            schema_version: SCHEMA_VERSION,
            ..m
        };
        let moved = client
            .execute(
                &format!("UPDATE {table} SET v = $2 WHERE k = $1 AND v = $3"),
                &[&META_KEY, &encode(&upgraded), &stored],
            )
            .map_err(pg)?;
        if moved == 1 {
            tracing::info!(from, to = SCHEMA_VERSION, "record schema upgraded");
            m = upgraded;
        } else {
            m = read(client)?.1;
        }
    }
    if m.schema_version != SCHEMA_VERSION {
        return Err(StorageError::Open {
            path: place.to_string(),
            reason: format!(
                "record schema version {} is not {SCHEMA_VERSION}",
                m.schema_version
            ),
        });
    }
    Ok(())
}

/// The PostgreSQL store of one node.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    reads: ReadPool,
    /// Records every request reads, kept true across nodes by notifications ([`notify`]).
    cache: Arc<ReadCache>,
    /// Writer threads, each with its connection and its own group commit. Sets go to them in
    /// turn: a set waits for one round trip per statement, so one connection would leave the
    /// database idle between them. Several writers are as safe as several nodes: every
    /// condition is checked under row locks in the database.
    writers: Vec<WriterHandle>,
    next_writer: AtomicUsize,
    stats: Arc<WriterStats>,
    settings: PgSettings,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for w in &self.writers {
            w.shutdown();
        }
    }
}

impl PgStore {
    /// Connects (a wrong password or an unreachable database is one clear error), applies the
    /// migrations this database lacks under an advisory lock, and starts the writer and the
    /// read connections. Callable from async code: the blocking client runs on a thread of
    /// its own (it drives its own runtime, which must not start inside another).
    pub fn connect(settings: &PgSettings, options: &StoreOptions) -> Result<PgStore, StorageError> {
        let prepare = settings.clone();
        let client = std::thread::Builder::new()
            .name("pg-connect".into())
            .spawn(move || -> Result<postgres::Client, StorageError> {
                let mut client = prepare.connect()?;
                schema::migrate(&mut client)?;
                ensure_meta(&mut client, &prepare.describe())?;
                Ok(client)
            })?
            .join()
            .map_err(|_| StorageError::Engine("the connecting thread panicked".into()))??;
        let stats = Arc::new(WriterStats::default());
        let cache = ReadCache::listening();
        notify::listen(settings.clone(), &cache)?;
        let writer_count = settings.writer_connections.clamp(1, WRITER_CONNECTIONS_MAX);
        let mut writers = Vec::with_capacity(writer_count);
        let mut first = Some(client);
        for _ in 0..writer_count {
            let client = match first.take() {
                Some(c) => c,
                None => connect_on_own_thread(settings)?,
            };
            writers.push(WriterHandle::start_counted(
                PgBatch::new(settings.clone(), client, cache.clone()),
                options.writer_queue_capacity.div_ceil(writer_count),
                options.writer_batch_size_max,
                stats.clone(),
            )?);
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                reads: ReadPool::start(settings)?,
                cache,
                writers,
                next_writer: AtomicUsize::new(0),
                stats,
                settings: settings.clone(),
            }),
        })
    }

    /// The settings this store connects with.
    pub fn settings(&self) -> &PgSettings {
        &self.inner.settings
    }

    /// Where the database is (no password), for logs and `/readyz`.
    pub fn describe(&self) -> String {
        self.inner.settings.describe()
    }

    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    fn writer(&self) -> &WriterHandle {
        let i = self.inner.next_writer.fetch_add(1, Ordering::Relaxed);
        &self.inner.writers[i % self.inner.writers.len()]
    }

    /// Submits a write set and waits until it is durable (or refused by a condition).
    pub async fn write(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        self.writer().write(set).await
    }

    /// The same, for callers outside an async runtime.
    pub fn write_blocking(&self, set: WriteSet) -> Result<WriteOutcome, StorageError> {
        self.writer().write_blocking(set)
    }

    /// Commits everything queued and stops the writers; later writes answer `Closed`.
    pub fn shutdown(&self) {
        for w in &self.inner.writers {
            w.shutdown();
        }
    }

    pub fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        match self.get_raw(R::TABLE, key)? {
            Some(v) => Ok(Some(decode(&v)?)),
            None => Ok(None),
        }
    }

    /// The records at `keys` of one table, in the order asked (`None` where absent), in one
    /// query (split past [`GET_MANY_KEYS_MAX`] keys).
    pub fn get_many<R: Record>(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<R>>, StorageError> {
        let mut found: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(GET_MANY_KEYS_MAX) {
            found.extend(self.rows(Query::GetMany {
                table: R::TABLE,
                keys: chunk.to_vec(),
            })?);
        }
        keys.iter()
            .map(|k| found.get(k).map(|v| decode(v)).transpose())
            .collect()
    }

    /// The stored bytes (version byte and all) at `key` of `table`, undecoded.
    pub fn get_raw(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let cache = &self.inner.cache;
        cache.get_through(cache.ticket(table), table, key, || {
            let rows = self.rows(Query::Get {
                table,
                key: key.to_vec(),
            })?;
            Ok(rows.into_iter().next().map(|(_, v)| v))
        })
    }

    /// Calls `watcher` with the key of every change to `table` (one of
    /// [`crate::cache::WATCHABLE`]) made by any node from now on, as it is heard.
    pub fn watch(&self, table: Table, watcher: crate::cache::Watcher) {
        self.inner.cache.watch(table, watcher);
    }

    /// Reads answered from this node's cache so far (for `/metrics`).
    pub fn cache_hits(&self) -> u64 {
        self.inner
            .cache
            .hits
            .load(std::sync::atomic::Ordering::Relaxed)
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
        let rows = self.scan_raw(R::TABLE, prefix, after, direction, limit)?;
        rows.into_iter()
            .map(|(k, v)| Ok((k, decode::<R>(&v)?)))
            .collect()
    }

    fn scan_raw(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Row>, StorageError> {
        let cache = &self.inner.cache;
        let shape = (after, direction, limit);
        cache.scan_through(cache.ticket(table), table, prefix, shape, || {
            self.rows(Query::Scan {
                table,
                prefix: prefix.to_vec(),
                after: after.map(<[u8]>::to_vec),
                direction,
                limit,
            })
        })
    }

    /// Number of records in a table.
    pub fn count(&self, table: Table) -> Result<u64, StorageError> {
        match self.inner.reads.run(Query::Count { table })? {
            Answer::Count(n) => Ok(n),
            _ => Err(StorageError::Engine(
                "a count answered something else".into(),
            )),
        }
    }

    /// Whether the database answers now (for `/readyz`).
    pub fn ping(&self) -> Result<(), StorageError> {
        self.get_raw(Table::Meta, META_KEY).map(drop)
    }

    fn rows(&self, query: Query) -> Result<Vec<Row>, StorageError> {
        match self.inner.reads.run(query)? {
            Answer::Rows(rows) => Ok(rows),
            _ => Err(StorageError::Engine(
                "a read answered something else".into(),
            )),
        }
    }

    /// Takes one attempt from the window of every `(key, max)` at once, or none: shared by
    /// every node on this database (see [`windows`]). A window lasts `window_s` from its
    /// first attempt.
    pub fn take_attempts(
        &self,
        window_s: u32,
        keys: &[(&str, u32)],
    ) -> Result<Taken, StorageError> {
        if keys.is_empty() || keys.len() > windows::TAKE_KEYS_MAX {
            return Err(StorageError::Engine(format!(
                "a take names 1 to {} keys, not {}",
                windows::TAKE_KEYS_MAX,
                keys.len()
            )));
        }
        let keys = keys.iter().map(|(k, m)| ((*k).to_string(), *m)).collect();
        match self.window(WindowOp::Take { window_s, keys })? {
            Some(taken) => Ok(taken),
            None => Err(StorageError::Engine("a take answered nothing".into())),
        }
    }

    /// Returns one attempt taken in `key`'s current window.
    pub fn give_back_attempt(&self, key: &str) -> Result<(), StorageError> {
        self.window(WindowOp::GiveBack {
            key: key.to_string(),
        })
        .map(drop)
    }

    /// Forgets `key`'s window.
    pub fn clear_attempts(&self, key: &str) -> Result<(), StorageError> {
        self.window(WindowOp::Clear {
            key: key.to_string(),
        })
        .map(drop)
    }

    fn window(&self, op: WindowOp) -> Result<Option<Taken>, StorageError> {
        match self.inner.reads.run(Query::Window(op))? {
            Answer::Window(taken) => Ok(taken),
            _ => Err(StorageError::Engine(
                "a window answered something else".into(),
            )),
        }
    }
}

impl Reader for PgStore {
    fn get<R: Record>(&self, key: &[u8]) -> Result<Option<R>, StorageError> {
        PgStore::get(self, key)
    }

    fn get_many<R: Record>(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<R>>, StorageError> {
        PgStore::get_many(self, keys)
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
