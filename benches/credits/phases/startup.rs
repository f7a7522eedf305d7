//! 4. Start-up time of a fresh process on a big store.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use actix_web::rt::System;
use actors::{AccountRegistry, Outcome, RegistryOptions};
use storage::{Store, Table};
use uuid::Uuid;

use crate::child::{child_user, report, run_child, value};
use crate::common::*;
use crate::config::Config;
use crate::data::{deduct_message, write_stream, LedgerGenerator, LEDGER_ENTRIES_PER_SET};
use crate::store::{open_store, wait_until_closed};

// ---------------------------------------------------------------------------------------------
// The parent's side

pub fn startup_part(
    cfg: &Config,
    path: &Path,
    ids: &Arc<Vec<Uuid>>,
    summary: &mut Summary,
) -> Res<()> {
    heading(format_args!(
        "4. Start-up with {} users and {} ledger entries",
        thousands(ids.len() as u64),
        thousands(cfg.ledger_entries)
    ));
    let (total_accounts, total_entries) = grow_ledger(cfg, path, ids, summary)?;

    // The store is closed: every start below is a fresh process. The first ones find the file
    // in the OS page cache (as after a restart of the service); the last one runs after the
    // store file alone was dropped from the page cache (as after a reboot), when `dd` can do it.
    let mut totals = Vec::with_capacity(cfg.startup_runs);
    for run in 1..=cfg.startup_runs {
        let user = ids[(run * 7919) % ids.len()];
        totals.push(startup_child(path, user, &format!("start {run}"))?);
    }
    let first = totals[0];
    let mut sorted = totals.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let verdict = if first < 2000.0 { "under" } else { "OVER" };
    println!(
        "  start-up, page cache warm: first {first:.0} ms, median {median:.0} ms ({verdict} the 2 s target)"
    );
    summary.row(
        format!(
            "Start-up: Store::open + AccountRegistry::start + first apply ({} users, {} entries), OS page cache warm",
            thousands(total_accounts),
            thousands(total_entries)
        ),
        format!(
            "{first:.0} ms (median of {} fresh processes {median:.0} ms; target < 2000 ms)",
            totals.len()
        ),
    );
    let file = path.join(storage::backup::store_file_name());
    match drop_from_page_cache(&file) {
        Ok(()) => {
            let user = ids[ids.len() / 3];
            let cold = startup_child(path, user, "start, store file not in page cache")?;
            summary.row(
                "Start-up, same, store file dropped from the OS page cache first",
                format!("{cold:.0} ms"),
            );
        }
        Err(e) => {
            println!("  (no cold start: cannot drop the store file from the page cache: {e})");
        }
    }
    Ok(())
}

/// Grows the ledger to `BENCH_LEDGER_ENTRIES` and closes the store; returns how many accounts
/// and entries it then holds.
fn grow_ledger(
    cfg: &Config,
    path: &Path,
    ids: &Arc<Vec<Uuid>>,
    summary: &mut Summary,
) -> Res<(u64, u64)> {
    let t_open = Instant::now();
    let store = open_store(path)?;
    let reopen = t_open.elapsed();
    let existing = store.count(Table::Ledger).map_err(|e| e.to_string())?;
    println!(
        "  (re)opened the store in {:.0} ms; ledger holds {} entries",
        ms(reopen),
        thousands(existing)
    );
    let extra = cfg.ledger_entries.saturating_sub(existing);
    let t = Instant::now();
    if extra > 0 {
        write_ledger(&store, ids, extra, t)?;
    }
    drop(store);
    let ledger_time = t.elapsed();
    wait_until_closed(path)?;
    let store = open_store(path)?;
    let total_entries = store.count(Table::Ledger).map_err(|e| e.to_string())?;
    let total_accounts = store.count(Table::Accounts).map_err(|e| e.to_string())?;
    drop(store);
    wait_until_closed(path)?;
    let file_size = std::fs::metadata(path.join(storage::backup::store_file_name()))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  wrote {} ledger entries in {} ({:.0} entries/s, ~{} per write set); store now {} accounts, {} entries, file {}",
        thousands(extra),
        secs(ledger_time),
        extra as f64 / ledger_time.as_secs_f64().max(1e-9),
        thousands(LEDGER_ENTRIES_PER_SET),
        thousands(total_accounts),
        thousands(total_entries),
        mib(file_size)
    );
    summary.row(
        format!(
            "Data generation: {} more ledger entries (~{} per write set)",
            thousands(extra),
            thousands(LEDGER_ENTRIES_PER_SET)
        ),
        format!(
            "{} ({:.0} entries/s)",
            secs(ledger_time),
            extra as f64 / ledger_time.as_secs_f64().max(1e-9)
        ),
    );
    summary.row("Store file size", mib(file_size));
    Ok((total_accounts, total_entries))
}

/// Writes `extra` generated ledger entries, telling the progress every million (`t`: when the
/// growth started).
fn write_ledger(store: &Store, ids: &Arc<Vec<Uuid>>, extra: u64, t: Instant) -> Res<()> {
    let generator = LedgerGenerator::new(store.clone(), ids.clone(), extra);
    let mut done = 0u64;
    let mut next_report = 1_000_000u64;
    write_stream(store, generator, |n| {
        done += n;
        if done >= next_report || done == extra {
            let rate = done as f64 / t.elapsed().as_secs_f64();
            eprintln!(
                "  ledger: {:>12} / {} new entries ({:.1} s, {:.0}/s, ~{:.0} s to go)",
                thousands(done),
                thousands(extra),
                t.elapsed().as_secs_f64(),
                rate,
                (extra - done) as f64 / rate.max(1.0)
            );
            next_report = (done / 1_000_000 + 1) * 1_000_000;
        }
    })
}

/// Runs one start-up child and prints its figures; returns its total in ms.
fn startup_child(path: &Path, user: Uuid, label: &str) -> Res<f64> {
    let (v, wall) = run_child("startup", path, Some(user))?;
    let open_ms: f64 = value(&v, "open_ms")?;
    let system_ms: f64 = value(&v, "system_ms")?;
    let registry_ms: f64 = value(&v, "registry_ms")?;
    let apply_ms: f64 = value(&v, "apply_ms")?;
    let total_ms: f64 = value(&v, "total_ms")?;
    let outcome: String = value(&v, "outcome")?;
    println!(
        "  {label}: Store::open {open_ms:.1} ms + actix System {system_ms:.1} ms + AccountRegistry::start {registry_ms:.1} ms \
         + first apply {apply_ms:.1} ms = {total_ms:.1} ms ({outcome}); whole process incl. exec and exit {:.0} ms",
        ms(wall)
    );
    Ok(total_ms)
}

/// Asks the kernel to forget the cached pages of one file (GNU dd's documented idiom; this file
/// only, nothing else on the machine is affected).
fn drop_from_page_cache(file: &Path) -> Res<()> {
    let mut input = std::ffi::OsString::from("if=");
    input.push(file);
    let status = Command::new("dd")
        .arg(input)
        .args(["iflag=nocache", "count=0", "status=none"])
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run dd: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("dd failed ({status})"))
    }
}

// ---------------------------------------------------------------------------------------------
// The child's side

pub fn child_startup(dir: &Path) -> Res<()> {
    let user = child_user()?;

    let t0 = Instant::now();
    let store = open_store(dir)?;
    let open = t0.elapsed();
    let t1 = Instant::now();
    let system = System::new();
    let system_time = t1.elapsed();
    let (registry_time, apply_time, total, outcome) = system.block_on({
        let store = store.clone();
        async move {
            let t2 = Instant::now();
            let registry = AccountRegistry::start(store, RegistryOptions::default());
            let registry_time = t2.elapsed();
            let t3 = Instant::now();
            let outcome = registry.apply(user, deduct_message()).await;
            let apply_time = t3.elapsed();
            let total = t0.elapsed();
            registry.stop();
            (registry_time, apply_time, total, outcome)
        }
    });
    drop(system);
    let outcome = match outcome {
        Ok(Outcome::Applied { entry }) => {
            format!(
                "applied: seq {}, balance after {}",
                entry.seq, entry.balance_after
            )
        }
        other => return Err(format!("the first apply failed: {other:?}")),
    };
    report("open_ms", format!("{:.2}", ms(open)));
    report("system_ms", format!("{:.2}", ms(system_time)));
    report("registry_ms", format!("{:.2}", ms(registry_time)));
    report("apply_ms", format!("{:.2}", ms(apply_time)));
    report("total_ms", format!("{:.2}", ms(total)));
    report("outcome", outcome);
    store.shutdown();
    drop(store);
    wait_until_closed(dir)?;
    Ok(())
}
