//! 1. Deduct throughput through the account actors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::{AccountRegistry, Outcome};
use futures_util::future::join_all;
use storage::{Store, WriteOutcome};
use uuid::Uuid;

use crate::common::*;
use crate::config::Config;
use crate::data::{accounts_set, deduct_message, new_ids, DEDUCT_BALANCE};
use crate::report::RUN_STYLE;
use crate::store::{long_lived_registry, on_system, open_store, WriterSnap};

const DEDUCT_ACCOUNTS_PER_SET: usize = 1_000;

pub fn deduct_bench(cfg: &Config, summary: &mut Summary) -> Res<Run> {
    heading(format_args!(
        "1. Deduct throughput: {} accounts, {} callers, {} s",
        thousands(cfg.accounts as u64),
        cfg.callers,
        cfg.seconds
    ));
    let dir = cfg.temp_dir("deduct")?;
    let store = open_store(dir.path())?;
    let ids = create_accounts(&store, cfg.accounts)?;
    let (run, writer, live) = on_system(measure(cfg, &store, &ids));
    store.shutdown();
    drop(store);

    run.print("CreativeFlow", &RUN_STYLE);
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
        format!("{} ops/s", rate(run.ops_per_s())),
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

/// `n` accounts holding [`DEDUCT_BALANCE`], written a set at a time.
pub fn create_accounts(store: &Store, n: usize) -> Res<Vec<Uuid>> {
    let t = Instant::now();
    let ids = new_ids(n);
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
    Ok(ids)
}

/// The warm-up and the measured window on one registry: the run, what the writer did during
/// it, and how many actors were live at the end.
async fn measure(cfg: &Config, store: &Store, ids: &[Uuid]) -> (Run, WriterSnap, u64) {
    let (run, writers, live) = measure_nodes(cfg, std::slice::from_ref(store), ids).await;
    (run, writers[0], live)
}

/// The same over several nodes (one store and one registry each, as separate processes on one
/// database would have): callers take turns between the nodes. The writers' figures are per
/// node.
pub async fn measure_nodes(
    cfg: &Config,
    stores: &[Store],
    ids: &[Uuid],
) -> (Run, Vec<WriterSnap>, u64) {
    let registries: Vec<Arc<AccountRegistry>> = stores
        .iter()
        .map(|s| long_lived_registry(s.clone()))
        .collect();
    let window = |seconds: u64, seed: u64| {
        deduct_load(
            &registries,
            ids,
            cfg.callers,
            Duration::from_secs(seconds),
            seed,
        )
    };
    if cfg.warmup_seconds > 0 {
        let w = window(cfg.warmup_seconds, 1).await;
        w.print("warm-up (not counted)", &RUN_STYLE);
    }
    let before: Vec<WriterSnap> = stores.iter().map(WriterSnap::of).collect();
    let run = window(cfg.seconds, 2).await;
    let writers = stores
        .iter()
        .zip(before)
        .map(|(s, b)| WriterSnap::of(s).since(b))
        .collect();
    let live = registries.iter().map(|r| r.live()).sum();
    for r in &registries {
        r.stop();
    }
    (run, writers, live)
}

/// `callers` concurrent loops, each deducting 1 from a random account until `duration` is up,
/// caller `c` through node `c % nodes`.
async fn deduct_load(
    registries: &[Arc<AccountRegistry>],
    ids: &[Uuid],
    callers: usize,
    duration: Duration,
    seed: u64,
) -> Run {
    let started = Instant::now();
    let deadline = started + duration;
    let loops = (0..callers).map(|c| async move {
        let registry = &registries[c % registries.len()];
        let mut rng = Rng::for_caller(seed, c);
        let mut tally = Tally::default();
        while Instant::now() < deadline {
            let user = ids[rng.below(ids.len())];
            let t = Instant::now();
            match registry.apply(user, deduct_message()).await {
                Ok(Outcome::Applied { .. }) => tally.record(t),
                Ok(other) => tally.refuse(1, || format!("deduct refused: {other:?}")),
                Err(e) => tally.fail(3, || format!("deduct failed: {e}")),
            }
        }
        tally
    });
    let tally = Tally::merge(join_all(loops).await);
    Run::from(tally, started.elapsed())
}
