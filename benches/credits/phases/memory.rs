//! 3. Memory per live account actor, measured in a fresh child process.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::{AccountRegistry, Outcome};
use futures_util::future::join_all;
use storage::keys;
use storage::records::{AccountRecord, LedgerEntry};
use storage::{Store, StoreOptions};
use uuid::Uuid;

use crate::child::{report, run_child, value};
use crate::common::*;
use crate::config::Config;
use crate::data::{charge_message, deduct_message, USER_BALANCE};
use crate::store::{long_lived_registry, on_system, open_store, wait_until_closed};

/// File in the memory/startup data dir listing the accounts the memory child touches.
pub const TOUCH_FILE: &str = "touch-ids.bin";

/// What the memory child measures, and reports to the parent under the field names.
struct MemoryFigures {
    rss_before: u64,
    rss_actors: u64,
    rss_after: u64,
    rss_again: u64,
    live: u64,
    touched: u64,
    touch_ms: f64,
}

impl MemoryFigures {
    fn report(&self) {
        report("rss_before", self.rss_before);
        report("rss_actors", self.rss_actors);
        report("rss_after", self.rss_after);
        report("rss_again", self.rss_again);
        report("live", self.live);
        report("touched", self.touched);
        report("touch_ms", format!("{:.1}", self.touch_ms));
    }

    fn read(v: &HashMap<String, String>) -> Res<MemoryFigures> {
        Ok(MemoryFigures {
            rss_before: value(v, "rss_before")?,
            rss_actors: value(v, "rss_actors")?,
            rss_after: value(v, "rss_after")?,
            rss_again: value(v, "rss_again")?,
            live: value(v, "live")?,
            touched: value::<u64>(v, "touched")?.max(1),
            touch_ms: value(v, "touch_ms")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The parent's side

pub fn memory_part(cfg: &Config, path: &Path, touch: usize, summary: &mut Summary) -> Res<()> {
    heading(format_args!(
        "3. Memory: {} live account actors over {} users (fresh process)",
        thousands(touch as u64),
        thousands(cfg.users as u64)
    ));
    let (v, _) = run_child("memory", path, None)?;
    let rss_open: u64 = value(&v, "rss_open")?;
    let m = MemoryFigures::read(&v)?;
    let cache = StoreOptions::default().cache_size_bytes as u64;
    let per_actor = m.rss_after.saturating_sub(m.rss_before) / m.touched;
    let actors_only = m.rss_actors.saturating_sub(m.rss_before) / m.touched;
    print_memory(cfg, rss_open, &m, per_actor, actors_only, cache);
    summary.row(
        format!(
            "RSS with {} users in the store, no live actors",
            thousands(cfg.users as u64)
        ),
        mib(m.rss_before),
    );
    summary.row(
        format!("RSS with {} live account actors", thousands(m.live)),
        mib(m.rss_after),
    );
    summary.row(
        "Memory per live account actor ((RSS after - RSS before) / actors; each applied one deduct)",
        format!(
            "{} bytes ({} of it actor + registry entry, the rest store pages of the first writes)",
            thousands(per_actor),
            thousands(actors_only)
        ),
    );
    summary.row("Store page cache (bound, `cache_size_bytes`)", mib(cache));
    Ok(())
}

fn print_memory(
    cfg: &Config,
    rss_open: u64,
    m: &MemoryFigures,
    per_actor: u64,
    actors_only: u64,
    cache: u64,
) {
    let first_writes = m.rss_after.saturating_sub(m.rss_actors);
    let steady_writes = m.rss_again.saturating_sub(m.rss_after);
    println!(
        "  RSS after Store::open ({} users, no actors): {}",
        thousands(cfg.users as u64),
        mib(rss_open)
    );
    println!(
        "  RSS before (registry started, the touched accounts and ledger heads read once): {}",
        mib(m.rss_before)
    );
    println!(
        "  RSS with {} actors started by a refused over-balance charge (loaded, nothing written): {} \
         = {} bytes per actor for actor + registry entry alone",
        thousands(m.touched),
        mib(m.rss_actors),
        thousands(actors_only)
    );
    println!(
        "  RSS after a 1-credit deduct on each of those {} distinct accounts ({} live actors; both passes {:.0} ms): {} \
         (these first writes added {})",
        thousands(m.touched),
        thousands(m.live),
        m.touch_ms,
        mib(m.rss_after),
        mib(first_writes)
    );
    println!(
        "  bytes per live actor: ({} - {}) / {} = {} bytes",
        thousands(m.rss_after),
        thousands(m.rss_before),
        thousands(m.touched),
        thousands(per_actor)
    );
    println!(
        "  another deduct on each (no new actors) added {} (store side in steady state)",
        mib(steady_writes)
    );
    println!(
        "  store cache size (StoreOptions::cache_size_bytes, default): {}",
        mib(cache)
    );
}

// ---------------------------------------------------------------------------------------------
// The child's side

pub fn child_memory(dir: &Path) -> Res<()> {
    let mut ids = read_touch_file(dir)?;
    let warm_id = ids.remove(0);
    let store = open_store(dir)?;
    report("rss_open", rss_bytes()?);

    let m = on_system(measure(store.clone(), &ids, warm_id))?;
    m.report();
    store.shutdown();
    drop(store);
    // Make sure the file is closed cleanly before the parent opens it again.
    wait_until_closed(dir)?;
    Ok(())
}

fn read_touch_file(dir: &Path) -> Res<Vec<Uuid>> {
    let bytes = std::fs::read(dir.join(TOUCH_FILE)).map_err(|e| e.to_string())?;
    let ids: Vec<Uuid> = bytes
        .chunks_exact(16)
        .map(|c| Uuid::from_slice(c).map_err(|e| e.to_string()))
        .collect::<Res<_>>()?;
    if ids.len() < 2 {
        return Err("the touch list is too short".into());
    }
    Ok(ids)
}

async fn measure(store: Store, ids: &[Uuid], warm_id: Uuid) -> Res<MemoryFigures> {
    let registry = long_lived_registry(store.clone());
    // Read each touched account and its ledger head once, as an actor's start does,
    // so the delta below is what live actors add, not redb pages read the first time.
    for &id in ids {
        let account = store
            .get::<AccountRecord>(&keys::account(id))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("account {id} is missing"))?;
        if let Some(head) = account.head_id {
            store
                .get::<LedgerEntry>(&keys::ledger(head))
                .map_err(|e| e.to_string())?;
        }
    }
    match registry.apply(warm_id, deduct_message()).await {
        Ok(Outcome::Applied { .. }) => {}
        other => return Err(format!("the warm-up deduct failed: {other:?}")),
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = rss_bytes()?;
    let live_before = registry.live();

    // First a charge far beyond the balance: each actor starts and loads its account,
    // the charge is refused, nothing is written. This isolates the actors' own memory.
    let t = Instant::now();
    touch_each(&registry, ids, 64, USER_BALANCE * 1_000, true).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_actors = rss_bytes()?;
    // Then the small deduct the figure is about, on the same (now live) actors.
    let touched = touch_each(&registry, ids, 64, 1, false).await?;
    let touch_ms = ms(t.elapsed());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = rss_bytes()?;
    let live = registry.live() - live_before;

    // Once more on the same accounts: the store side of 10,000 more writes in steady
    // state, with no new actor.
    touch_each(&registry, ids, 64, 1, false).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_again = rss_bytes()?;
    registry.stop();
    Ok(MemoryFigures {
        rss_before,
        rss_actors,
        rss_after,
        rss_again,
        live,
        touched,
        touch_ms,
    })
}

/// One charge of `credits` on each of `ids`, `workers` at a time. With `refused`, every charge
/// must be refused for insufficient credits (the actor starts and loads its account, nothing is
/// written); otherwise every charge must be applied.
async fn touch_each(
    registry: &Arc<AccountRegistry>,
    ids: &[Uuid],
    workers: usize,
    credits: i64,
    refused: bool,
) -> Res<u64> {
    let loops = (0..workers).map(|w| async move {
        let mut done = 0u64;
        for &id in ids.iter().skip(w).step_by(workers) {
            match (registry.apply(id, charge_message(credits)).await, refused) {
                (Ok(Outcome::Applied { .. }), false)
                | (Ok(Outcome::InsufficientCredits { .. }), true) => done += 1,
                (other, _) => return Err(format!("charge of {credits} on {id}: {other:?}")),
            }
        }
        Ok(done)
    });
    join_all(loops).await.into_iter().sum()
}
