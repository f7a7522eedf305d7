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
//! Steps 3 and 4 run their measurement in a child process (this same binary, re-executed) so
//! that the bulk load's freed memory and open handles cannot flatter or disturb the figures.
//!
//! Environment: `BENCH_SECONDS`, `BENCH_WARMUP_SECONDS` (1), `BENCH_CALLERS` (64),
//! `BENCH_PG_CLIENTS` (16), `BENCH_ACCOUNTS` (10000), `BENCH_PG`
//! (`host=127.0.0.1 user=postgres dbname=test`), `BENCH_USERS`, `BENCH_LEDGER_ENTRIES`,
//! `BENCH_TOUCH` (10000), `BENCH_STARTUP_RUNS` (3), `BENCH_DATA_DIR` (where temporary stores go,
//! default the system temp dir), `BENCH_SKIP` (comma list of deduct,postgres,memory,startup).
#![forbid(unsafe_code)]

#[path = "common/mod.rs"]
mod common;
use common::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::rt::System;
use actors::{AccountRegistry, Apply, Outcome, RegistryOptions};
use futures_util::future::join_all;
use storage::keys;
use storage::ledger::Posting;
use storage::records::{AccountRecord, LedgerEntry, LedgerKind};
use storage::{now_us, StorageError, Store, StoreOptions, Table, WriteOutcome, WriteSet};
use uuid::Uuid;

/// Set in the environment of the re-executed child: which measurement it runs.
const CHILD_ENV: &str = "CREDITS_BENCH_CHILD";
const CHILD_DIR_ENV: &str = "CREDITS_BENCH_DIR";
const CHILD_USER_ENV: &str = "CREDITS_BENCH_USER";
/// Lines a child prints for the parent start with this.
const CHILD_PREFIX: &str = "@@credits ";
/// File in the memory/startup data dir listing the accounts the memory child touches.
const TOUCH_FILE: &str = "touch-ids.bin";

/// Balance of every deduct-benchmark account: far more than any run can spend.
const DEDUCT_BALANCE: i64 = 1_000_000_000;
/// Signup grant of every memory/startup user; the generated activity never exhausts it.
const USER_BALANCE: i64 = 1_000_000;
const DEDUCT_ACCOUNTS_PER_SET: usize = 1_000;
const USERS_PER_SET: usize = 5_000;
const LEDGER_ENTRIES_PER_SET: u64 = 10_000;
/// An account actor the benchmark starts must stay alive for the whole measurement.
const IDLE_NEVER_MS: u64 = 24 * 3_600_000;

fn main() {
    if let Ok(role) = std::env::var(CHILD_ENV) {
        if let Err(e) = child_main(&role) {
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

// ---------------------------------------------------------------------------------------------
// Configuration and small helpers

struct Config {
    seconds: u64,
    warmup_seconds: u64,
    callers: usize,
    pg_clients: usize,
    accounts: usize,
    pg: String,
    users: usize,
    ledger_entries: u64,
    touch: usize,
    startup_runs: usize,
    data_dir: Option<PathBuf>,
    skip: Vec<String>,
}

impl Config {
    fn from_env() -> Res<Config> {
        let skip = std::env::var("BENCH_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        for s in &skip {
            if !["deduct", "postgres", "memory", "startup"].contains(&s.as_str()) {
                return Err(format!(
                    "BENCH_SKIP: unknown part {s:?} (known: deduct,postgres,memory,startup)"
                ));
            }
        }
        Ok(Config {
            seconds: env_num("BENCH_SECONDS", 10)?,
            warmup_seconds: env_num("BENCH_WARMUP_SECONDS", 1)?,
            callers: env_num("BENCH_CALLERS", 64)?.max(1),
            pg_clients: env_num("BENCH_PG_CLIENTS", 16)?.max(1),
            accounts: env_num("BENCH_ACCOUNTS", 10_000)?.max(1),
            pg: std::env::var("BENCH_PG")
                .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into()),
            users: env_num("BENCH_USERS", 1_000_000)?.max(2),
            ledger_entries: env_num("BENCH_LEDGER_ENTRIES", 10_000_000)?,
            touch: env_num("BENCH_TOUCH", 10_000)?.max(1),
            startup_runs: env_num("BENCH_STARTUP_RUNS", 3)?.max(1),
            data_dir: std::env::var_os("BENCH_DATA_DIR").map(PathBuf::from),
            skip,
        })
    }

    fn runs(&self, part: &str) -> bool {
        !self.skip.iter().any(|s| s == part)
    }

    fn temp_dir(&self, what: &str) -> Res<tempfile::TempDir> {
        let prefix = format!("creativeflow-bench-{what}-");
        let mut b = tempfile::Builder::new();
        b.prefix(&prefix);
        match &self.data_dir {
            Some(base) => b.tempdir_in(base),
            None => b.tempdir(),
        }
        .map_err(|e| format!("cannot create a temporary data dir: {e}"))
    }
}

/// Resident set size of this process, from `/proc/self/status`.
fn rss_bytes() -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS line in /proc/self/status")?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| format!("cannot parse {line:?}"))?;
    Ok(kb * 1024)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Run {
    fn print(&self, label: &str) {
        println!(
            "  {label}: {} ops in {} = {:.0} ops/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; refused {}, errors {}",
            thousands(self.ops),
            secs(self.elapsed),
            self.ops_per_s(),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.refused,
            self.errors
        );
    }
}

/// The rows of the final Markdown table.
#[derive(Default)]
struct Summary {
    rows: Vec<(String, String)>,
    notes: Vec<String>,
}

impl Summary {
    fn row(&mut self, measure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((measure.into(), value.into()));
    }

    fn print(&self, cfg: &Config) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!("## CreativeFlow credits benchmark");
        println!();
        println!(
            "Machine: {cores} cores, {}. `cargo bench --bench credits` (release). \
             Store: redb, default `StoreOptions`; durable commit per writer batch.",
            std::env::consts::ARCH
        );
        println!();
        println!("| Measure | Value |");
        println!("|---|---|");
        for (m, v) in &self.rows {
            println!("| {m} | {v} |");
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
        if !cfg.skip.is_empty() {
            println!();
            println!("Skipped: {}.", cfg.skip.join(", "));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records and bulk writes

fn posting(amount: i64, kind: LedgerKind, description: &str) -> Posting {
    Posting {
        amount,
        kind,
        description: description.into(),
        generation_request_id: None,
        invoice_id: None,
    }
}

/// The operation under test: one credit charged for a generation.
fn deduct_message() -> Apply {
    charge_message(1)
}

/// A generation charge of `credits`.
fn charge_message(credits: i64) -> Apply {
    let mut p = posting(
        -credits,
        LedgerKind::GenerationCharge,
        "bench: image generation",
    );
    p.generation_request_id = Some(Uuid::now_v7());
    Apply {
        posting: p,
        idempotency: None,
        extra: WriteSet::new(),
    }
}

/// Everyday activity for the generated ledger: a purchase now and then, charges otherwise.
fn activity(seq: u64) -> Posting {
    if seq.is_multiple_of(10) {
        let mut p = posting(1_000, LedgerKind::Purchase, "Credit pack");
        p.invoice_id = Some(Uuid::now_v7());
        p
    } else {
        let mut p = posting(-7, LedgerKind::GenerationCharge, "Image generation");
        p.generation_request_id = Some(Uuid::now_v7());
        p
    }
}

/// `n` fresh user ids in key order, so bulk loads append to the trees.
fn new_ids(n: usize) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Accounts with a signup grant of `balance`: the account record and its first ledger entry,
/// as `create_user_set` writes them (without the user and email records: the credit path never
/// reads those).
fn accounts_set(ids: &[Uuid], balance: i64) -> WriteSet {
    let now = now_us();
    let mut set = WriteSet::new();
    for &id in ids {
        let (account, entry) = AccountRecord::empty(id, now)
            .post(
                posting(balance, LedgerKind::SignupGrant, "Signup grant"),
                now,
            )
            .unwrap_or_else(|e| panic!("a signup grant of {balance} must post: {e}"));
        set.put(keys::account(id), &account);
        set.put(keys::ledger(entry.id), &entry);
    }
    set
}

/// Writes what `sets` yields, one durable write each, while the next set is being built on
/// another thread. `progress` hears how many items each committed set held.
fn write_stream<I>(store: &Store, sets: I, mut progress: impl FnMut(u64)) -> Res<()>
where
    I: Iterator<Item = (WriteSet, u64)> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel::<(WriteSet, u64)>(2);
    let producer = std::thread::Builder::new()
        .name("bench-generator".into())
        .spawn(move || {
            for item in sets {
                if tx.send(item).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the generator thread: {e}"))?;
    for (set, items) in rx {
        match store.write_blocking(set) {
            Ok(WriteOutcome::Committed) => progress(items),
            Ok(other) => return Err(format!("a bulk write was refused: {other:?}")),
            Err(e) => return Err(format!("a bulk write failed: {e}")),
        }
    }
    producer
        .join()
        .map_err(|_| "the generator thread panicked".to_string())
}

/// Builds the ledger growth of step 4: `base` (+1 for the first `rem` users) entries per user,
/// each account read from the store and posted to in memory, ~10,000 entries per write set.
struct LedgerGenerator {
    store: Store,
    ids: Arc<Vec<Uuid>>,
    next_user: usize,
    base: u64,
    rem: u64,
}

impl Iterator for LedgerGenerator {
    type Item = (WriteSet, u64);

    fn next(&mut self) -> Option<(WriteSet, u64)> {
        let now = now_us();
        let mut set = WriteSet::new();
        let mut entries = 0u64;
        while self.next_user < self.ids.len() && entries < LEDGER_ENTRIES_PER_SET {
            let i = self.next_user;
            self.next_user += 1;
            let k = self.base + u64::from((i as u64) < self.rem);
            if k == 0 {
                continue;
            }
            let id = self.ids[i];
            let mut account = match self.store.get::<AccountRecord>(&keys::account(id)) {
                Ok(Some(a)) => a,
                Ok(None) => panic!("account {id} is missing"),
                Err(e) => panic!("cannot read account {id}: {e}"),
            };
            for _ in 0..k {
                let (next, entry) = account
                    .post(activity(account.next_seq), now)
                    .unwrap_or_else(|e| panic!("generated activity must post: {e}"));
                set.put(keys::ledger(entry.id), &entry);
                account = next;
            }
            set.put(keys::account(id), &account);
            entries += k;
        }
        (!set.is_empty()).then_some((set, entries))
    }
}

/// Opens the store in `dir` and closes it at once: proves every handle of an earlier user of the
/// file is gone (redb refuses a second open, even in one process), retrying for a while.
fn wait_until_closed(dir: &Path) -> Res<Duration> {
    let started = Instant::now();
    loop {
        match Store::open(dir, &StoreOptions::default()) {
            Ok(store) => {
                drop(store);
                return Ok(started.elapsed());
            }
            Err(StorageError::InUse { .. }) if started.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("the store did not close: {e}")),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct WriterSnap {
    submitted: u64,
    completed: u64,
    batches: u64,
    commit_us: u64,
    rejected: u64,
    failed_batches: u64,
    max_batch: u64,
}

impl WriterSnap {
    fn of(store: &Store) -> WriterSnap {
        use std::sync::atomic::Ordering::Relaxed;
        let s = store.stats();
        WriterSnap {
            submitted: s.submitted.load(Relaxed),
            completed: s.completed.load(Relaxed),
            batches: s.batches.load(Relaxed),
            commit_us: s.commit_us_total.load(Relaxed),
            rejected: s.rejected_overloaded.load(Relaxed),
            failed_batches: s.failed_batches.load(Relaxed),
            max_batch: s.batch_size_max_seen.load(Relaxed),
        }
    }

    fn since(self, before: WriterSnap) -> WriterSnap {
        WriterSnap {
            submitted: self.submitted - before.submitted,
            completed: self.completed - before.completed,
            batches: self.batches - before.batches,
            commit_us: self.commit_us - before.commit_us,
            rejected: self.rejected - before.rejected,
            failed_batches: self.failed_batches - before.failed_batches,
            max_batch: self.max_batch,
        }
    }

    fn avg_batch(&self) -> f64 {
        self.completed as f64 / self.batches.max(1) as f64
    }

    fn avg_commit_ms(&self) -> f64 {
        self.commit_us as f64 / self.batches.max(1) as f64 / 1000.0
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: runs every part and prints the summary

fn parent_main() -> Res<()> {
    let cfg = Config::from_env()?;
    let mut summary = Summary::default();
    let started = Instant::now();
    println!(
        "credits bench: {} s per load phase (+{} s warm-up), parts: {}",
        cfg.seconds,
        cfg.warmup_seconds,
        ["deduct", "postgres", "memory", "startup"]
            .into_iter()
            .filter(|p| cfg.runs(p))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let deduct = if cfg.runs("deduct") {
        Some(deduct_bench(&cfg, &mut summary)?)
    } else {
        None
    };
    if cfg.runs("postgres") {
        match postgres_bench(&cfg) {
            Ok((pg, settings)) => {
                summary.row(
                    format!(
                        "Deduct throughput, PostgreSQL ({} clients, 1 txn per op: UPDATE + ledger INSERT; {settings})",
                        cfg.pg_clients
                    ),
                    format!("{} ops/s", thousands(pg.ops_per_s().round() as u64)),
                );
                summary.row(
                    "Deduct latency p50 / p99, PostgreSQL",
                    format!("{:.2} ms / {:.2} ms", pg.p50_ms, pg.p99_ms),
                );
                if let Some(cf) = &deduct {
                    let ratio = cf.ops_per_s() / pg.ops_per_s().max(1e-9);
                    println!("  RATIO creativeflow/postgres: {ratio:.2}x");
                    summary.row(
                        "**Ratio CreativeFlow / PostgreSQL**",
                        format!("**{ratio:.2}x**"),
                    );
                }
            }
            Err(e) => {
                println!("PostgreSQL unavailable: {e}");
                summary.notes.push(format!(
                    "PostgreSQL baseline skipped (unavailable: {e}); no ratio."
                ));
            }
        }
    }
    if cfg.runs("memory") || cfg.runs("startup") {
        big_store_parts(&cfg, &mut summary)?;
    }
    summary.row("Benchmark wall time", secs(started.elapsed()));
    summary.print(&cfg);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Deduct throughput through the account actors

fn deduct_bench(cfg: &Config, summary: &mut Summary) -> Res<Run> {
    println!();
    println!(
        "== 1. Deduct throughput: {} accounts, {} callers, {} s",
        thousands(cfg.accounts as u64),
        cfg.callers,
        cfg.seconds
    );
    let dir = cfg.temp_dir("deduct")?;
    let store = Store::open(dir.path(), &StoreOptions::default())
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let t = Instant::now();
    let ids = new_ids(cfg.accounts);
    for chunk in ids.chunks(DEDUCT_ACCOUNTS_PER_SET) {
        match store.write_blocking(accounts_set(chunk, DEDUCT_BALANCE)) {
            Ok(WriteOutcome::Committed) => {}
            other => return Err(format!("creating accounts failed: {other:?}")),
        }
    }
    println!(
        "  created {} accounts in {:.0} ms ({} per write set)",
        thousands(ids.len() as u64),
        ms(t.elapsed()),
        DEDUCT_ACCOUNTS_PER_SET
    );

    let system = System::new();
    let (run, writer, live) = system.block_on({
        let store = store.clone();
        let ids = &ids;
        async move {
            let registry = AccountRegistry::start(
                store.clone(),
                RegistryOptions {
                    idle_after_ms: IDLE_NEVER_MS,
                    ..RegistryOptions::default()
                },
            );
            if cfg.warmup_seconds > 0 {
                let w = deduct_load(
                    &registry,
                    ids,
                    cfg.callers,
                    Duration::from_secs(cfg.warmup_seconds),
                    1,
                )
                .await;
                w.print("warm-up (not counted)");
            }
            let before = WriterSnap::of(&store);
            let run = deduct_load(
                &registry,
                ids,
                cfg.callers,
                Duration::from_secs(cfg.seconds),
                2,
            )
            .await;
            let writer = WriterSnap::of(&store).since(before);
            let live = registry.live();
            registry.stop();
            (run, writer, live)
        }
    });
    drop(system);
    store.shutdown();
    drop(store);

    run.print("CreativeFlow");
    println!(
        "  writer during the run: {} write sets in {} batches = {:.1} sets per durable commit \
         (largest batch since open {}); {:.2} ms per commit; overloaded {}, failed batches {}; {} live actors",
        thousands(writer.completed),
        thousands(writer.batches),
        writer.avg_batch(),
        writer.max_batch,
        writer.avg_commit_ms(),
        writer.rejected,
        writer.failed_batches,
        thousands(live)
    );
    summary.row(
        format!(
            "Deduct throughput, CreativeFlow ({} callers, {} accounts, {} s)",
            cfg.callers,
            thousands(cfg.accounts as u64),
            cfg.seconds
        ),
        format!("{} ops/s", thousands(run.ops_per_s().round() as u64)),
    );
    summary.row(
        "Deduct latency p50 / p99, CreativeFlow",
        format!("{:.2} ms / {:.2} ms", run.p50_ms, run.p99_ms),
    );
    summary.row(
        "Writer: write sets per durable commit (avg) / ms per commit",
        format!(
            "{:.1} / {:.2} ms",
            writer.avg_batch(),
            writer.avg_commit_ms()
        ),
    );
    Ok(run)
}

/// `callers` concurrent loops, each deducting 1 from a random account until `duration` is up.
async fn deduct_load(
    registry: &Arc<AccountRegistry>,
    ids: &[Uuid],
    callers: usize,
    duration: Duration,
    seed: u64,
) -> Run {
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..callers).map(|c| async move {
        let mut rng = Rng::new(seed * 1_000_003 + c as u64 + 1);
        let mut tally = Tally::default();
        while Instant::now() < deadline {
            let user = ids[rng.below(ids.len())];
            let t = Instant::now();
            match registry.apply(user, deduct_message()).await {
                Ok(Outcome::Applied { .. }) => tally.record(t),
                Ok(other) => {
                    tally.refused += 1;
                    if tally.refused == 1 {
                        eprintln!("deduct refused: {other:?}");
                    }
                }
                Err(e) => {
                    tally.errors += 1;
                    if tally.errors <= 3 {
                        eprintln!("deduct failed: {e}");
                    }
                }
            }
        }
        tally
    });
    let tally = Tally::merge(join_all(loops).await);
    Run::from(tally, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// 2. The PostgreSQL baseline

fn postgres_bench(cfg: &Config) -> Res<(Run, String)> {
    println!();
    println!(
        "== 2. PostgreSQL baseline: {} accounts, {} clients, {} s",
        thousands(cfg.accounts as u64),
        cfg.pg_clients,
        cfg.seconds
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(postgres_async(cfg))
}

async fn postgres_async(cfg: &Config) -> Res<(Run, String)> {
    let pg_err = |e: tokio_postgres::Error| e.to_string();
    let admin = pg_connect(&cfg.pg).await?;
    let show = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|e| format!("? ({e})"))
        }
    };
    let version = show("server_version").await;
    let sync_commit = show("synchronous_commit").await;
    let fsync = show("fsync").await;
    let wal_sync = show("wal_sync_method").await;
    let commit_delay = show("commit_delay").await;
    let settings = format!("PostgreSQL {version}, synchronous_commit={sync_commit}, fsync={fsync}");
    println!(
        "  server: PostgreSQL {version}; synchronous_commit={sync_commit}, fsync={fsync}, \
         wal_sync_method={wal_sync}, commit_delay={commit_delay}"
    );

    admin
        .batch_execute(
            "DROP TABLE IF EXISTS bench_ledger; DROP TABLE IF EXISTS bench_accounts;
             CREATE TABLE bench_accounts(id int primary key, balance bigint not null);
             CREATE TABLE bench_ledger(id bigserial primary key, account_id int not null,
                 amount bigint not null, created_at timestamptz default now());",
        )
        .await
        .map_err(pg_err)?;
    let result = async {
        let accounts = i32::try_from(cfg.accounts).map_err(|_| "too many accounts".to_string())?;
        admin
            .execute(
                "INSERT INTO bench_accounts(id, balance) SELECT g, $1 FROM generate_series(1, $2) g",
                &[&DEDUCT_BALANCE, &accounts],
            )
            .await
            .map_err(pg_err)?;
        admin
            .batch_execute("VACUUM ANALYZE bench_accounts")
            .await
            .map_err(pg_err)?;
        let mut clients = Vec::with_capacity(cfg.pg_clients);
        for _ in 0..cfg.pg_clients {
            clients.push(pg_connect(&cfg.pg).await?);
        }
        if cfg.warmup_seconds > 0 {
            let (back, warm) = pg_load(
                clients,
                "bench",
                accounts,
                Duration::from_secs(cfg.warmup_seconds),
                1,
            )
            .await?;
            clients = back;
            warm.print("warm-up (not counted)");
        }
        let (_clients, run) =
            pg_load(clients, "bench", accounts, Duration::from_secs(cfg.seconds), 2).await?;
        run.print("PostgreSQL");
        let ledger_rows: i64 = admin
            .query_one("SELECT count(*) FROM bench_ledger", &[])
            .await
            .map_err(pg_err)?
            .get(0);
        println!("  bench_ledger rows after both phases: {}", thousands(ledger_rows.max(0) as u64));
        Ok::<Run, String>(run)
    }
    .await;
    if let Err(e) = admin
        .batch_execute("DROP TABLE IF EXISTS bench_ledger; DROP TABLE IF EXISTS bench_accounts;")
        .await
    {
        eprintln!("could not drop the PostgreSQL bench tables: {e}");
    }
    result.map(|run| (run, settings))
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. A big store: memory per live actor, start-up time

fn big_store_parts(cfg: &Config, summary: &mut Summary) -> Res<()> {
    println!();
    println!(
        "== 3/4. Big store: {} users, {} ledger entries",
        thousands(cfg.users as u64),
        thousands(cfg.ledger_entries)
    );
    let dir = cfg.temp_dir("big")?;
    let path = dir.path().to_path_buf();

    // Users: an account with its signup grant each, ~5,000 per write set.
    let store = Store::open(&path, &StoreOptions::default())
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let t = Instant::now();
    let ids = Arc::new(new_ids(cfg.users));
    let sets = {
        let ids = ids.clone();
        let chunks = ids.len().div_ceil(USERS_PER_SET);
        (0..chunks).map(move |c| {
            let chunk = &ids[c * USERS_PER_SET..((c + 1) * USERS_PER_SET).min(ids.len())];
            (accounts_set(chunk, USER_BALANCE), chunk.len() as u64)
        })
    };
    let mut done = 0u64;
    let mut next_report = 100_000u64;
    write_stream(&store, sets, |n| {
        done += n;
        if done >= next_report || done == ids.len() as u64 {
            eprintln!(
                "  users: {:>10} / {} ({:.1} s)",
                thousands(done),
                thousands(ids.len() as u64),
                t.elapsed().as_secs_f64()
            );
            next_report = (done / 100_000 + 1) * 100_000;
        }
    })?;
    let users_time = t.elapsed();
    let accounts_count = store.count(Table::Accounts).map_err(|e| e.to_string())?;
    println!(
        "  created {} users (account + signup ledger entry) in {} ({:.0} users/s)",
        thousands(accounts_count),
        secs(users_time),
        ids.len() as f64 / users_time.as_secs_f64()
    );
    summary.row(
        format!(
            "Data generation: {} users (account + signup entry, {} per write set)",
            thousands(ids.len() as u64),
            thousands(USERS_PER_SET as u64)
        ),
        secs(users_time),
    );
    store.shutdown();
    drop(store);
    wait_until_closed(&path)?;

    // The accounts the memory child touches: spread evenly over the key space; the first one
    // is touched before measuring (it starts the arbiters' first actor).
    let touch = cfg.touch.min(ids.len() - 1);
    let stride = ids.len() / (touch + 1);
    let mut chosen: Vec<Uuid> = (0..=touch).map(|i| ids[i * stride + stride / 2]).collect();
    chosen.rotate_right(1);
    let bytes: Vec<u8> = chosen.iter().flat_map(|u| *u.as_bytes()).collect();
    std::fs::write(path.join(TOUCH_FILE), bytes).map_err(|e| e.to_string())?;

    if cfg.runs("memory") {
        memory_part(cfg, &path, touch, summary)?;
    }
    if cfg.runs("startup") {
        startup_part(cfg, &path, &ids, summary)?;
    }
    Ok(())
}

fn run_child(
    role: &str,
    dir: &Path,
    user: Option<Uuid>,
) -> Res<(HashMap<String, String>, Duration)> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, role)
        .env(CHILD_DIR_ENV, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(u) = user {
        cmd.env(CHILD_USER_ENV, u.to_string());
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the {role} child: {e}"))?;
    let wall = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut values = HashMap::new();
    for line in stdout.lines() {
        match line.strip_prefix(CHILD_PREFIX) {
            Some(kv) => {
                if let Some((k, v)) = kv.split_once(' ') {
                    values.insert(k.to_string(), v.to_string());
                }
            }
            None => println!("  [{role}] {line}"),
        }
    }
    if !out.status.success() {
        return Err(format!("the {role} child failed ({})", out.status));
    }
    Ok((values, wall))
}

fn value<T: std::str::FromStr>(values: &HashMap<String, String>, key: &str) -> Res<T> {
    values
        .get(key)
        .ok_or_else(|| format!("the child did not report {key}"))?
        .parse()
        .map_err(|_| format!("the child reported an unreadable {key}"))
}

fn memory_part(cfg: &Config, path: &Path, touch: usize, summary: &mut Summary) -> Res<()> {
    println!();
    println!(
        "== 3. Memory: {} live account actors over {} users (fresh process)",
        thousands(touch as u64),
        thousands(cfg.users as u64)
    );
    let (v, _) = run_child("memory", path, None)?;
    let rss_open: u64 = value(&v, "rss_open")?;
    let rss_before: u64 = value(&v, "rss_before")?;
    let rss_actors: u64 = value(&v, "rss_actors")?;
    let rss_after: u64 = value(&v, "rss_after")?;
    let rss_again: u64 = value(&v, "rss_again")?;
    let live: u64 = value(&v, "live")?;
    let touched = value::<u64>(&v, "touched")?.max(1);
    let touch_ms: f64 = value(&v, "touch_ms")?;
    let cache = StoreOptions::default().cache_size_bytes as u64;
    let per_actor = rss_after.saturating_sub(rss_before) / touched;
    let actors_only = rss_actors.saturating_sub(rss_before) / touched;
    let first_writes = rss_after.saturating_sub(rss_actors);
    let steady_writes = rss_again.saturating_sub(rss_after);
    println!(
        "  RSS after Store::open ({} users, no actors): {}",
        thousands(cfg.users as u64),
        mib(rss_open)
    );
    println!(
        "  RSS before (registry started, the touched accounts and ledger heads read once): {}",
        mib(rss_before)
    );
    println!(
        "  RSS with {} actors started by a refused over-balance charge (loaded, nothing written): {} \
         = {} bytes per actor for actor + registry entry alone",
        thousands(touched),
        mib(rss_actors),
        thousands(actors_only)
    );
    println!(
        "  RSS after a 1-credit deduct on each of those {} distinct accounts ({} live actors; both passes {:.0} ms): {} \
         (these first writes added {})",
        thousands(touched),
        thousands(live),
        touch_ms,
        mib(rss_after),
        mib(first_writes)
    );
    println!(
        "  bytes per live actor: ({} - {}) / {} = {} bytes",
        thousands(rss_after),
        thousands(rss_before),
        thousands(touched),
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
    summary.row(
        format!(
            "RSS with {} users in the store, no live actors",
            thousands(cfg.users as u64)
        ),
        mib(rss_before),
    );
    summary.row(
        format!("RSS with {} live account actors", thousands(live)),
        mib(rss_after),
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

fn startup_part(cfg: &Config, path: &Path, ids: &Arc<Vec<Uuid>>, summary: &mut Summary) -> Res<()> {
    println!();
    println!(
        "== 4. Start-up with {} users and {} ledger entries",
        thousands(ids.len() as u64),
        thousands(cfg.ledger_entries)
    );
    let t_open = Instant::now();
    let store = Store::open(path, &StoreOptions::default())
        .map_err(|e| format!("cannot open the store: {e}"))?;
    let reopen = t_open.elapsed();
    let existing = store.count(Table::Ledger).map_err(|e| e.to_string())?;
    println!(
        "  (re)opened the store in {:.0} ms; ledger holds {} entries",
        ms(reopen),
        thousands(existing)
    );
    let extra = cfg.ledger_entries.saturating_sub(existing);
    let users = ids.len() as u64;
    let t = Instant::now();
    if extra > 0 {
        let generator = LedgerGenerator {
            store: store.clone(),
            ids: ids.clone(),
            next_user: 0,
            base: extra / users,
            rem: extra % users,
        };
        let mut done = 0u64;
        let mut next_report = 1_000_000u64;
        write_stream(&store, generator, |n| {
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
        })?;
    }
    drop(store);
    let ledger_time = t.elapsed();
    wait_until_closed(path)?;
    let store = Store::open(path, &StoreOptions::default())
        .map_err(|e| format!("cannot open the store: {e}"))?;
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
// The re-executed child processes

fn child_main(role: &str) -> Res<()> {
    let dir = PathBuf::from(
        std::env::var_os(CHILD_DIR_ENV).ok_or_else(|| format!("{CHILD_DIR_ENV} is not set"))?,
    );
    match role {
        "memory" => child_memory(&dir),
        "startup" => child_startup(&dir),
        other => Err(format!("unknown child role {other:?}")),
    }
}

fn report(key: &str, value: impl std::fmt::Display) {
    println!("{CHILD_PREFIX}{key} {value}");
}

struct MemoryFigures {
    rss_before: u64,
    rss_actors: u64,
    rss_after: u64,
    rss_again: u64,
    live: u64,
    touched: u64,
    touch_ms: f64,
}

fn child_memory(dir: &Path) -> Res<()> {
    let bytes = std::fs::read(dir.join(TOUCH_FILE)).map_err(|e| e.to_string())?;
    let mut ids: Vec<Uuid> = bytes
        .chunks_exact(16)
        .map(|c| Uuid::from_slice(c).map_err(|e| e.to_string()))
        .collect::<Res<_>>()?;
    if ids.len() < 2 {
        return Err("the touch list is too short".into());
    }
    let warm_id = ids.remove(0);
    let store = Store::open(dir, &StoreOptions::default()).map_err(|e| e.to_string())?;
    report("rss_open", rss_bytes()?);

    let system = System::new();
    let result = system.block_on({
        let store = store.clone();
        let ids = &ids;
        async move {
            let registry = AccountRegistry::start(
                store.clone(),
                RegistryOptions {
                    idle_after_ms: IDLE_NEVER_MS,
                    ..RegistryOptions::default()
                },
            );
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
            Ok::<_, String>(MemoryFigures {
                rss_before,
                rss_actors,
                rss_after,
                rss_again,
                live,
                touched,
                touch_ms,
            })
        }
    });
    drop(system);
    let m = result?;
    report("rss_before", m.rss_before);
    report("rss_actors", m.rss_actors);
    report("rss_after", m.rss_after);
    report("rss_again", m.rss_again);
    report("live", m.live);
    report("touched", m.touched);
    report("touch_ms", format!("{:.1}", m.touch_ms));
    store.shutdown();
    drop(store);
    // Make sure the file is closed cleanly before the parent opens it again.
    wait_until_closed(dir)?;
    Ok(())
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

fn child_startup(dir: &Path) -> Res<()> {
    let user: Uuid = std::env::var(CHILD_USER_ENV)
        .map_err(|_| format!("{CHILD_USER_ENV} is not set"))?
        .parse()
        .map_err(|e| format!("{CHILD_USER_ENV}: {e}"))?;

    let t0 = Instant::now();
    let store = Store::open(dir, &StoreOptions::default()).map_err(|e| e.to_string())?;
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
