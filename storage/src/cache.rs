//! A node's cache of the records every request reads and few change (sessions, users,
//! projects, workbenches, deletion marks, brand kits), for both stores.
//!
//! Why: a status read or a create looks up the caller's session and user, and a create its
//! project, workbench, deletion mark and brand kits, before it writes anything. On PostgreSQL
//! each is a round trip; in redb each is a table-tree and a B-tree descent through redb's page
//! cache, the largest user-space item of the status route's profile. Once warm, these reads
//! are answered from memory.
//!
//! How it stays true:
//! - The store's writer evicts the keys a batch puts or deletes, and the key of every failed
//!   condition, after the batch and before any of its callers hears back: a node always reads
//!   what it wrote. On PostgreSQL other nodes' writes arrive as notifications ([`crate::pg`]).
//! - A read fills the cache only if no eviction happened since its ticket (an epoch counter,
//!   checked under the cache's lock), so a value read before a change is never kept. A redb
//!   snapshot takes its ticket before it begins, so an old snapshot never fills.
//! - A cached record is not as of the reader's snapshot: between a commit and its eviction a
//!   request can see a cached record one commit older than its other reads, and after the
//!   eviction one newer; never one older than a write already answered.
//! - Conditions of write sets are always checked in the database, never against this cache:
//!   a stale read can change what a page shows for an instant, never what is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::interface::Direction;
use crate::Table;

/// A record as stored: key and value bytes.
pub(crate) type Row = (Vec<u8>, Vec<u8>);
/// Records and scan pages kept at most; past it the cache starts over.
const ENTRIES_MAX: usize = 50_000;
/// Variants (position, direction, limit) of one prefix's scan kept at most.
const SCANS_PER_PREFIX_MAX: usize = 8;
/// An entry is read again from the database after this long even if no notification named
/// it: bounds what a writer that does not notify (a node of an older build during a rolling
/// upgrade, an operator's plain SQL) can leave stale.
const ENTRY_AGE_MS_MAX: u64 = 30_000;

/// Tables whose records are cached by key.
const GET_CACHED: [Table; 6] = [
    Table::Tokens,
    Table::Users,
    Table::Projects,
    Table::Workbenches,
    Table::Deleting,
    Table::BrandKits,
];
/// Tables whose absent keys are cached too: every create asks whether its workbench is being
/// deleted, and the answer is almost always no. (Not tokens or projects: guessed keys would
/// only churn the cache.)
const ABSENCE_CACHED: [Table; 1] = [Table::Deleting];
/// Tables whose prefix scans are cached: a user's brand kits, read by every create.
const SCAN_CACHED: [Table; 1] = [Table::BrandKitsByUser];

/// Tables whose changes are notified for watchers (see [`ReadCache::watch`]) though not
/// cached: a ticket's change wakes its event streams on every node.
pub const WATCHABLE: [Table; 1] = [Table::Tickets];

/// Whether writes to `table` are notified to every node.
pub(crate) fn notified(table: Table) -> bool {
    GET_CACHED.contains(&table) || SCAN_CACHED.contains(&table) || WATCHABLE.contains(&table)
}

fn cached(table: Table) -> bool {
    GET_CACHED.contains(&table) || SCAN_CACHED.contains(&table)
}

/// Called with the key of each change another node (or this one) made to a watched table.
pub type Watcher = Box<dyn Fn(&[u8]) + Send + Sync>;

/// A record read (`None`: known absent) with when it was filled.
type Filled = (u64, Option<Vec<u8>>);

/// Keys are token hashes and ids; foldhash (seeded per process) is several times faster than
/// SipHash on them, and this runs on most requests.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A scan as asked: after which key, which way, how many.
type ScanShape = (Option<Vec<u8>>, Direction, usize);

fn same_shape(kept: &ScanShape, asked: &(Option<&[u8]>, Direction, usize)) -> bool {
    kept.0.as_deref() == asked.0 && kept.1 == asked.1 && kept.2 == asked.2
}
/// The pages of one prefix's scans, by shape, each with when it was filled.
type ScanPages = Vec<(ScanShape, u64, Vec<Row>)>;

#[derive(Default)]
struct Entries {
    /// Each value with when it was filled (ms, see [`ReadCache::now_ms`]), by table then key
    /// (so a lookup borrows the key instead of copying it: this runs on every request).
    gets: Map<Table, Map<Vec<u8>, Filled>>,
    /// Scan pages by table then prefix.
    scans: Map<Table, Map<Vec<u8>, ScanPages>>,
    /// Entries in `gets` and `scans` together (bounded by [`ENTRIES_MAX`]).
    len: usize,
}

impl Entries {
    fn make_room(&mut self) {
        if self.len >= ENTRIES_MAX {
            self.empty();
        }
    }

    fn empty(&mut self) {
        self.gets.clear();
        self.scans.clear();
        self.len = 0;
    }
}

/// The cache of one node (see the module's text).
pub(crate) struct ReadCache {
    entries: Mutex<Entries>,
    /// Bumped by every eviction and clear, always under `entries`' lock: a read that began
    /// before one does not fill. Read without the lock for a ticket (every snapshot takes
    /// one), compared under it when filling.
    epoch: AtomicU64,
    /// Until when (ms since `start`) the cache may answer: renewed by a PostgreSQL node's
    /// listener; forever for the embedded store, whose one writer evicts everything it changes.
    fresh_until_ms: AtomicU64,
    /// Whether freshness and entry age apply (a PostgreSQL node); the embedded store's cache
    /// skips both, and with them two clock reads per lookup.
    listening: bool,
    start: Instant,
    pub hits: AtomicU64,
    watchers: Mutex<Vec<(Table, Watcher)>>,
}

/// The epoch a read began at (see [`ReadCache::fill_get`]).
#[derive(Clone, Copy)]
pub(crate) struct Ticket(u64);

impl ReadCache {
    /// A cache that answers only while [`ReadCache::renew`] keeps it fresh (a PostgreSQL node,
    /// whose listener proves it hears every other node's changes).
    pub fn listening() -> Arc<ReadCache> {
        Self::fresh_until(0, true)
    }

    /// A cache that always answers: the embedded store's writer is the only one, and it
    /// evicts what it changes.
    pub fn local() -> Arc<ReadCache> {
        Self::fresh_until(u64::MAX, false)
    }

    fn fresh_until(ms: u64, listening: bool) -> Arc<ReadCache> {
        Arc::new(ReadCache {
            entries: Mutex::new(Entries::default()),
            epoch: AtomicU64::new(0),
            fresh_until_ms: AtomicU64::new(ms),
            listening,
            start: Instant::now(),
            hits: AtomicU64::new(0),
            watchers: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding it leaves only a cache: start over rather than fail reads.
        self.entries.lock().unwrap_or_else(|poisoned| {
            self.entries.clear_poison();
            let mut e = poisoned.into_inner();
            self.epoch.fetch_add(1, Ordering::SeqCst);
            *e = Entries::default();
            e
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fresh(&self) -> bool {
        !self.listening || self.now_ms() < self.fresh_until_ms.load(Ordering::Acquire)
    }

    /// Entries filled before this are too old to answer (see [`ENTRY_AGE_MS_MAX`]).
    fn oldest_ms(&self) -> u64 {
        match self.listening {
            true => self.now_ms().saturating_sub(ENTRY_AGE_MS_MAX),
            false => 0,
        }
    }

    /// The cached answer to a read of `key` (`Some(None)`: known absent), if any.
    pub fn get(&self, table: Table, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if !GET_CACHED.contains(&table) || !self.fresh() {
            return None;
        }
        let oldest_ms = self.oldest_ms();
        let hit = match self.lock().gets.get(&table).and_then(|t| t.get(key)) {
            Some((filled_ms, value)) if *filled_ms >= oldest_ms => Some(value.clone()),
            _ => None,
        };
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// A ticket for a read of `table` that may fill the cache, taken before the read.
    pub fn ticket(&self, table: Table) -> Option<Ticket> {
        (cached(table) && self.fresh()).then(|| self.epoch_ticket())
    }

    /// A ticket for every read of a snapshot, taken before the snapshot begins: a snapshot
    /// older than an eviction never fills, however late it reads.
    pub fn epoch_ticket(&self) -> Ticket {
        Ticket(self.epoch.load(Ordering::SeqCst))
    }

    /// Whether reads of `table` by key go through the cache.
    pub fn caches_gets(table: Table) -> bool {
        GET_CACHED.contains(&table)
    }

    /// Whether prefix scans of `table` go through the cache.
    pub fn caches_scans(table: Table) -> bool {
        SCAN_CACHED.contains(&table)
    }

    /// Keeps what a read found, unless something was evicted since its ticket.
    pub fn fill_get(&self, ticket: Ticket, table: Table, key: &[u8], value: Option<&[u8]>) {
        if value.is_none() && !ABSENCE_CACHED.contains(&table) {
            return;
        }
        let mut e = self.lock();
        if self.epoch.load(Ordering::SeqCst) != ticket.0 || !self.fresh() {
            return;
        }
        e.make_room();
        let filled_ms = self.now_ms();
        let fresh_entry = e
            .gets
            .entry(table)
            .or_default()
            .insert(key.to_vec(), (filled_ms, value.map(<[u8]>::to_vec)))
            .is_none();
        e.len += usize::from(fresh_entry);
    }

    /// The cached rows of a scan, if any.
    fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        shape: &(Option<&[u8]>, Direction, usize),
    ) -> Option<Vec<Row>> {
        if !SCAN_CACHED.contains(&table) || !self.fresh() {
            return None;
        }
        let oldest_ms = self.oldest_ms();
        let e = self.lock();
        let hit = e
            .scans
            .get(&table)?
            .get(prefix)?
            .iter()
            .find_map(|(s, filled_ms, rows)| {
                (same_shape(s, shape) && *filled_ms >= oldest_ms).then(|| rows.clone())
            });
        if hit.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    /// Keeps a scan's rows, unless something was evicted since its ticket.
    fn fill_scan(
        &self,
        ticket: Ticket,
        table: Table,
        prefix: &[u8],
        shape: (Option<&[u8]>, Direction, usize),
        rows: &[Row],
    ) {
        let mut e = self.lock();
        if self.epoch.load(Ordering::SeqCst) != ticket.0 || !self.fresh() {
            return;
        }
        e.make_room();
        let filled_ms = self.now_ms();
        let pages = e.scans.entry(table).or_default();
        let fresh_entry = !pages.contains_key(prefix);
        let variants = pages.entry(prefix.to_vec()).or_default();
        variants.retain(|(s, _, _)| !same_shape(s, &shape));
        if variants.len() >= SCANS_PER_PREFIX_MAX {
            variants.clear();
        }
        variants.push((
            (shape.0.map(<[u8]>::to_vec), shape.1, shape.2),
            filled_ms,
            rows.to_vec(),
        ));
        e.len += usize::from(fresh_entry);
    }

    /// The record at `key`: from the cache, else from `read`, whose answer fills the cache
    /// unless something was evicted since `ticket` (taken before `read`'s data was).
    pub fn get_through<E>(
        &self,
        ticket: Option<Ticket>,
        table: Table,
        key: &[u8],
        read: impl FnOnce() -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        if let Some(hit) = self.get(table, key) {
            return Ok(hit);
        }
        let value = read()?;
        if let Some(t) = ticket.filter(|_| GET_CACHED.contains(&table)) {
            self.fill_get(t, table, key, value.as_deref());
        }
        Ok(value)
    }

    /// The same for a scan of `prefix` shaped (after, direction, limit).
    pub fn scan_through<E>(
        &self,
        ticket: Option<Ticket>,
        table: Table,
        prefix: &[u8],
        shape: (Option<&[u8]>, Direction, usize),
        read: impl FnOnce() -> Result<Vec<Row>, E>,
    ) -> Result<Vec<Row>, E> {
        if let Some(hit) = self.scan(table, prefix, &shape) {
            return Ok(hit);
        }
        let rows = read()?;
        if let Some(t) = ticket.filter(|_| SCAN_CACHED.contains(&table)) {
            self.fill_scan(t, table, prefix, shape, &rows);
        }
        Ok(rows)
    }

    /// Forgets `keys` and every cached scan whose prefix starts one of them.
    pub fn evict<'a>(&self, keys: impl IntoIterator<Item = (Table, &'a [u8])>) {
        let keys: Vec<(Table, &[u8])> = keys.into_iter().filter(|(t, _)| cached(*t)).collect();
        if keys.is_empty() {
            return; // only watched tables: nothing cached changed, fills go on
        }
        let mut e = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut removed = 0;
        for (table, key) in keys {
            if let Some(t) = e.gets.get_mut(&table) {
                removed += usize::from(t.remove(key).is_some());
            }
            if let Some(t) = e.scans.get_mut(&table) {
                for n in 0..=key.len() {
                    removed += usize::from(t.remove(&key[..n]).is_some());
                }
            }
        }
        e.len -= removed;
    }

    /// Forgets everything; with `off`, stops answering until the next ping succeeds.
    pub(crate) fn clear(&self, off: bool) {
        let mut e = self.lock();
        if off {
            self.fresh_until_ms.store(0, Ordering::Release);
        }
        self.epoch.fetch_add(1, Ordering::SeqCst);
        e.empty();
    }

    /// Calls `watcher` with the key of every change to `table` heard from now on.
    pub fn watch(&self, table: Table, watcher: Watcher) {
        assert!(
            WATCHABLE.contains(&table),
            "{} is not watchable",
            table.name()
        );
        if let Ok(mut w) = self.watchers.lock() {
            w.push((table, watcher));
        }
    }

    pub(crate) fn tell_watchers(&self, keys: &[(Table, Vec<u8>)]) {
        let Ok(watchers) = self.watchers.lock() else {
            return;
        };
        for (table, key) in keys {
            for (_, w) in watchers.iter().filter(|(t, _)| t == table) {
                w(key);
            }
        }
    }

    /// Lets the cache answer for `fresh_ms` more (a listener's ping succeeded).
    pub(crate) fn renew(&self, fresh_ms: u64) {
        let until = self.now_ms().saturating_add(fresh_ms);
        self.fresh_until_ms.store(until, Ordering::Release);
    }
}
