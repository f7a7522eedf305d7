//! How the nodes of one PostgreSQL database keep their read caches ([`crate::cache`]) true:
//! every writer that changes a cached table notifies `cf_changes` in the same transaction
//! (PostgreSQL delivers it at commit), naming the keys; every node listens on a connection of
//! its own and evicts them. The cache answers only while the listener proves its session
//! alive (a ping every second, after the notifications already received): a lost or silent
//! listener turns the cache off and empties it, and reads go to the database until it
//! listens again.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use super::settings::PgSettings;
use crate::cache::ReadCache;
use crate::Table;

/// The channel writers notify and listeners listen on.
pub(crate) const CHANNEL: &str = "cf_changes";
/// A notification's payload stays under PostgreSQL's limit of 8,000 bytes.
const PAYLOAD_BYTES_MAX: usize = 7_000;
/// How often the listener pings its session (and looks whether its store is gone).
const PING_MS: u64 = 1_000;
/// The cache answers this long after the last ping that succeeded.
const FRESH_MS: u64 = 3 * PING_MS;
/// The wait before the listener connects again after losing its session.
const RECONNECT_MS: u64 = 500;
/// The payload that empties every node's cache (a bulk import, for one).
pub(crate) const EVERYTHING: &str = "*";

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
        c.renew(FRESH_MS);
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
