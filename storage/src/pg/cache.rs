//! A node's cache of the records every request reads and few change (sessions, users,
//! projects, workbenches, deletion marks, brand kits), kept true across nodes by invalidation.
//!
//! Why: on PostgreSQL each read is a round trip that costs both the node and the database
//! CPU, and a create read six records before it wrote anything. Here those reads are answered
//! from memory once warm.
//!
//! How it stays true:
//! - Every writer that changes a cached table notifies `cf_changes` in the same transaction
//!   (PostgreSQL delivers it at commit), naming the keys; every node listens on a connection
//!   of its own and evicts them. A node also evicts its own writes before answering them, so
//!   it always reads what it wrote.
//! - A read fills the cache only if no eviction happened while it ran (an epoch counter,
//!   checked under the cache's lock), so a value read just before a change is never kept.
//! - The cache answers only while the listener proves its session alive (a ping every
//!   second, after the notifications already received): a lost or silent listener turns the
//!   cache off and empties it, and reads go to the database until it listens again.
//! - Conditions of write sets are always checked in the database, never against this cache:
//!   a stale read can change what a page shows for the instant a notification takes, never
//!   what is written.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use super::reads::Row;
use super::settings::PgSettings;
use crate::interface::Direction;
use crate::Table;

/// The channel writers notify and listeners listen on.
pub(crate) const CHANNEL: &str = "cf_changes";
/// Records and scan pages kept at most; past it the cache starts over.
const ENTRIES_MAX: usize = 50_000;
/// Variants (position, direction, limit) of one prefix's scan kept at most.
const SCANS_PER_PREFIX_MAX: usize = 8;
/// A notification's payload stays under PostgreSQL's limit of 8,000 bytes.
const PAYLOAD_BYTES_MAX: usize = 7_000;
/// How often the listener pings its session (and looks whether its store is gone).
const PING_MS: u64 = 1_000;
/// The cache answers this long after the last ping that succeeded.
const FRESH_MS: u64 = 3 * PING_MS;
/// The wait before the listener connects again after losing its session.
const RECONNECT_MS: u64 = 500;
/// An entry is read again from the database after this long even if no notification named
/// it: bounds what a writer that does not notify (a node of an older build during a rolling
/// upgrade, an operator's plain SQL) can leave stale.
const ENTRY_AGE_MS_MAX: u64 = 30_000;
/// The payload that empties every node's cache (a bulk import, for one).
pub(crate) const EVERYTHING: &str = "*";

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

/// A scan as asked: after which key, which way, how many.
type ScanShape = (Option<Vec<u8>>, Direction, usize);

fn same_shape(kept: &ScanShape, asked: &(Option<&[u8]>, Direction, usize)) -> bool {
    kept.0.as_deref() == asked.0 && kept.1 == asked.1 && kept.2 == asked.2
}
/// The pages of one prefix's scans, by shape, each with when it was filled.
type ScanPages = Vec<(ScanShape, u64, Vec<Row>)>;

#[derive(Default)]
struct Entries {
    /// Bumped by every eviction and clear: a read that began before one does not fill.
    epoch: u64,
    /// Each value with when it was filled (ms, see [`ReadCache::now_ms`]), by table then key
    /// (so a lookup borrows the key instead of copying it: this runs on every request).
    gets: HashMap<Table, HashMap<Vec<u8>, Filled>>,
    /// Scan pages by table then prefix.
    scans: HashMap<Table, HashMap<Vec<u8>, ScanPages>>,
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
    /// Until when (ms since `start`) the cache may answer: renewed by the listener's pings.
    fresh_until_ms: AtomicU64,
    start: Instant,
    pub hits: AtomicU64,
    watchers: Mutex<Vec<(Table, Watcher)>>,
}

/// The epoch a read began at (see [`ReadCache::fill_get`]).
pub(crate) struct Ticket(u64);

impl ReadCache {
    pub fn new() -> Arc<ReadCache> {
        Arc::new(ReadCache {
            entries: Mutex::new(Entries::default()),
            fresh_until_ms: AtomicU64::new(0),
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
            *e = Entries {
                epoch: e.epoch + 1,
                ..Entries::default()
            };
            e
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn fresh(&self) -> bool {
        self.now_ms() < self.fresh_until_ms.load(Ordering::Acquire)
    }

    /// The cached answer to a read of `key` (`Some(None)`: known absent), if any.
    pub fn get(&self, table: Table, key: &[u8]) -> Option<Option<Vec<u8>>> {
        if !GET_CACHED.contains(&table) || !self.fresh() {
            return None;
        }
        let oldest_ms = self.now_ms().saturating_sub(ENTRY_AGE_MS_MAX);
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
        (cached(table) && self.fresh()).then(|| Ticket(self.lock().epoch))
    }

    /// Keeps what a read found, unless something was evicted since its ticket.
    pub fn fill_get(&self, ticket: Ticket, table: Table, key: &[u8], value: Option<&[u8]>) {
        if value.is_none() && !ABSENCE_CACHED.contains(&table) {
            return;
        }
        let mut e = self.lock();
        if e.epoch != ticket.0 || !self.fresh() {
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
    pub fn scan(
        &self,
        table: Table,
        prefix: &[u8],
        shape: &(Option<&[u8]>, Direction, usize),
    ) -> Option<Vec<Row>> {
        if !SCAN_CACHED.contains(&table) || !self.fresh() {
            return None;
        }
        let oldest_ms = self.now_ms().saturating_sub(ENTRY_AGE_MS_MAX);
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
    pub fn fill_scan(
        &self,
        ticket: Ticket,
        table: Table,
        prefix: &[u8],
        shape: (Option<&[u8]>, Direction, usize),
        rows: &[Row],
    ) {
        let mut e = self.lock();
        if e.epoch != ticket.0 || !self.fresh() {
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

    /// Forgets `keys` and every cached scan whose prefix starts one of them.
    pub fn evict<'a>(&self, keys: impl IntoIterator<Item = (Table, &'a [u8])>) {
        let keys: Vec<(Table, &[u8])> = keys.into_iter().filter(|(t, _)| cached(*t)).collect();
        if keys.is_empty() {
            return; // only watched tables: nothing cached changed, fills go on
        }
        let mut e = self.lock();
        e.epoch += 1;
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
    fn clear(&self, off: bool) {
        let mut e = self.lock();
        if off {
            self.fresh_until_ms.store(0, Ordering::Release);
        }
        e.epoch += 1;
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

    fn tell_watchers(&self, keys: &[(Table, Vec<u8>)]) {
        let Ok(watchers) = self.watchers.lock() else {
            return;
        };
        for (table, key) in keys {
            for (_, w) in watchers.iter().filter(|(t, _)| t == table) {
                w(key);
            }
        }
    }

    fn renew(&self) {
        let until = self.now_ms().saturating_add(FRESH_MS);
        self.fresh_until_ms.store(until, Ordering::Release);
    }
}

/// The notification payloads naming `keys` (each under PostgreSQL's size limit): entries
/// `table:hexkey` separated by `;`, tables by name so that builds which number them
/// differently still agree.
pub(crate) fn payloads<'a>(keys: impl IntoIterator<Item = (Table, &'a [u8])>) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for (table, key) in keys {
        let entry = format!("{}:{}", table.name(), hex::encode(key));
        if !current.is_empty() && current.len() + 1 + entry.len() > PAYLOAD_BYTES_MAX {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(';');
        }
        current.push_str(&entry);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The keys a payload names; `None` when it does not parse (the caller then empties the cache).
fn parse(payload: &str) -> Option<Vec<(Table, Vec<u8>)>> {
    payload
        .split(';')
        .map(|entry| {
            let (name, key) = entry.split_once(':')?;
            let table = Table::ALL.into_iter().find(|t| t.name() == name)?;
            Some((table, hex::decode(key).ok()?))
        })
        .collect()
}

/// Starts the listener thread of `cache`; it ends when the cache is dropped.
pub(crate) fn listen(settings: PgSettings, cache: &Arc<ReadCache>) -> std::io::Result<()> {
    let cache = Arc::downgrade(cache);
    std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || loop {
            match session(&settings, &cache) {
                Ok(()) => return,
                Err(e) => {
                    let Some(c) = cache.upgrade() else { return };
                    c.clear(true);
                    tracing::debug!(error = %e, "cache listener lost its session; reconnecting");
                }
            }
            std::thread::sleep(Duration::from_millis(RECONNECT_MS));
        })
        .map(drop)
}

/// One listening session: `Ok` when the cache is gone, `Err` when the session is.
fn session(settings: &PgSettings, cache: &Weak<ReadCache>) -> Result<(), String> {
    let mut client = settings.connect().map_err(|e| e.to_string())?;
    let pg = |e: postgres::Error| super::batch::describe(&e);
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(pg)?;
    // Whatever changed before the LISTEN took effect was never heard: start empty.
    match cache.upgrade() {
        Some(c) => c.clear(false),
        None => return Ok(()),
    }
    let ping_every = Duration::from_millis(PING_MS);
    loop {
        let Some(c) = cache.upgrade() else {
            return Ok(());
        };
        let since = Instant::now();
        {
            let mut n = client.notifications();
            let mut waiting = n.timeout_iter(ping_every);
            while let Some(note) = waiting.next().map_err(pg)? {
                apply(&c, note.payload());
                if since.elapsed() >= ping_every {
                    break; // a busy cluster must not starve the ping
                }
            }
        }
        client.simple_query("SELECT 1").map_err(pg)?;
        // Notifications that arrived during the ping come before it in the session.
        {
            let mut n = client.notifications();
            let mut buffered = n.iter();
            while let Some(note) = buffered.next().map_err(pg)? {
                apply(&c, note.payload());
            }
        }
        c.renew();
    }
}

fn apply(cache: &ReadCache, payload: &str) {
    if payload == EVERYTHING {
        cache.clear(false);
        return;
    }
    match parse(payload) {
        Some(keys) => {
            cache.evict(keys.iter().map(|(t, k)| (*t, k.as_slice())));
            cache.tell_watchers(&keys);
        }
        None => cache.clear(false),
    }
}
