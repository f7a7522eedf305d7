//! Load driver for the credit path of CreativeFlow Core: `cargo bench --bench credits`.
//!
//! It prints figures and never asserts on them. One run does:
//!
//! 1. `deduct`: 10,000 accounts, 64 concurrent callers deducting 1 credit through the
//!    [`AccountRegistry`] for `BENCH_SECONDS` (default 10): ops/s, p50/p99, writer batching.
//! 2. `postgres`: the same money movement in PostgreSQL (one transaction per op: guarded
//!    `UPDATE` plus ledger `INSERT`, `synchronous_commit` as the server has it) with 16 clients,
//!    and the ratio of the two. Skipped, not failed, when PostgreSQL cannot be reached.
//! 3. `memory`: a store with `BENCH_USERS` (default 1,000,000) accounts; RSS of a fresh process
//!    before and after 10,000 account actors are live, so the bytes one live actor costs.
//! 4. `startup`: the same store grown to `BENCH_LEDGER_ENTRIES` (default 10,000,000) ledger
//!    entries, closed; then a fresh process times `Store::open` + `AccountRegistry::start` + the
//!    first `apply`.
//!
//! 5. `pgstore` (run right after 2): the deducts of step 1 through the
//!    account actors on the PostgreSQL store, one node and two nodes on one database, and their
//!    ratios to step 2.
//!
//! Steps 3 and 4 run their measurement in a child process (this same binary, re-executed) so
//! that the bulk load's freed memory and open handles cannot flatter or disturb the figures.
//!
//! Environment: `BENCH_SECONDS`, `BENCH_WARMUP_SECONDS` (1), `BENCH_CALLERS` (64),
//! `BENCH_PG_CLIENTS` (16), `BENCH_ACCOUNTS` (10000), `BENCH_PG`
//! (`host=127.0.0.1 user=postgres dbname=test`), `BENCH_USERS`, `BENCH_LEDGER_ENTRIES`,
//! `BENCH_TOUCH` (10000), `BENCH_STARTUP_RUNS` (3), `BENCH_DATA_DIR` (where temporary stores go,
//! default the system temp dir), `BENCH_SKIP` (comma list of deduct,postgres,memory,startup,pgstore).
//!
//! [`AccountRegistry`]: actors::AccountRegistry
#![forbid(unsafe_code)]

#[path = "../common/mod.rs"]
mod common;

/// The server binary's allocator (see `src/main.rs`), so what runs in-process runs as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod child;
mod config;
mod data;
mod phases;
mod report;
mod store;

use std::time::Instant;

use common::*;
use config::Config;

fn main() {
    if let Ok(role) = std::env::var(child::CHILD_ENV) {
        if let Err(e) = child::child_main(&role) {
            eprintln!("credits bench child ({role}) failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Err(e) = parent_main() {
        eprintln!("credits bench failed: {e}");
        std::process::exit(1);
    }
}

/// The parent: runs every part and prints the summary.
fn parent_main() -> Res<()> {
    let cfg = Config::from_env()?;
    let mut summary = Summary::default();
    let started = Instant::now();
    println!(
        "credits bench: {} s per load phase (+{} s warm-up), parts: {}",
        cfg.seconds,
        cfg.warmup_seconds,
        cfg.skip.running().join(", ")
    );

    let deduct = if cfg.runs("deduct") {
        Some(phases::deduct::deduct_bench(&cfg, &mut summary)?)
    } else {
        None
    };
    let baseline = if cfg.runs("postgres") {
        phases::postgres::postgres_part(&cfg, deduct.as_ref(), &mut summary)
    } else {
        None
    };
    if cfg.runs("pgstore") {
        phases::pgstore::pgstore_part(&cfg, baseline.as_ref(), &mut summary);
    }
    if cfg.runs("memory") || cfg.runs("startup") {
        phases::big_store::big_store_parts(&cfg, &mut summary)?;
    }
    summary.row("Benchmark wall time", secs(started.elapsed()));
    report::print_summary(&summary, &cfg);
    Ok(())
}
