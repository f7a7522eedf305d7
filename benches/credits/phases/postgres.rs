//! 2. The PostgreSQL baseline, and its ratio to the deduct throughput.

use std::time::Duration;

use crate::common::*;
use crate::config::Config;
use crate::data::DEDUCT_BALANCE;
use crate::report::RUN_STYLE;

/// Runs the baseline and adds its rows; an unreachable server is a note, not a failure.
pub fn postgres_part(cfg: &Config, deduct: Option<&Run>, summary: &mut Summary) -> Option<Run> {
    match postgres_bench(cfg) {
        Ok((pg, settings)) => {
            summary.row(
                format!(
                    "Deduct throughput, PostgreSQL ({} clients, 1 txn per op: UPDATE + ledger INSERT; {settings})",
                    cfg.pg_clients
                ),
                format!("{} ops/s", rate(pg.ops_per_s())),
            );
            summary.row(
                "Deduct latency p50 / p99, PostgreSQL",
                format!("{:.2} ms / {:.2} ms", pg.p50_ms, pg.p99_ms),
            );
            if let Some(cf) = deduct {
                let ratio = cf.ops_per_s() / pg.ops_per_s().max(1e-9);
                println!("  RATIO creativeflow/postgres: {ratio:.2}x");
                summary.row(
                    "**Ratio CreativeFlow / PostgreSQL**",
                    format!("**{ratio:.2}x**"),
                );
            }
            Some(pg)
        }
        Err(e) => {
            println!("PostgreSQL unavailable: {e}");
            summary.notes.push(format!(
                "PostgreSQL baseline skipped (unavailable: {e}); no ratio."
            ));
            None
        }
    }
}

fn postgres_bench(cfg: &Config) -> Res<(Run, String)> {
    heading(format_args!(
        "2. PostgreSQL baseline: {} accounts, {} clients, {} s",
        thousands(cfg.accounts as u64),
        cfg.pg_clients,
        cfg.seconds
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a tokio runtime: {e}"))?;
    runtime.block_on(postgres_async(cfg))
}

async fn postgres_async(cfg: &Config) -> Res<(Run, String)> {
    let admin = pg_connect(&cfg.pg).await?;
    let server = PgServer::read(&admin).await;
    let wal_sync = pg_show(&admin, "wal_sync_method").await;
    let commit_delay = pg_show(&admin, "commit_delay").await;
    println!(
        "  server: PostgreSQL {}; synchronous_commit={}, fsync={}, \
         wal_sync_method={wal_sync}, commit_delay={commit_delay}",
        server.version, server.synchronous_commit, server.fsync
    );
    let tables = PgTables {
        prefix: "bench",
        accounts: cfg.accounts,
        balance: DEDUCT_BALANCE,
    };
    let (tables, admin) = (&tables, &admin);
    let run = tables
        .with(admin, &cfg.pg, cfg.pg_clients, |mut load| async move {
            load.warm_up(Duration::from_secs(cfg.warmup_seconds), &RUN_STYLE)
                .await?;
            let run = load.window(Duration::from_secs(cfg.seconds), 2).await?;
            run.print("PostgreSQL", &RUN_STYLE);
            let ledger_rows = tables.ledger_rows(admin).await?;
            println!(
                "  bench_ledger rows after both phases: {}",
                thousands(ledger_rows.max(0) as u64)
            );
            Ok(run)
        })
        .await?;
    Ok((run, server.settings()))
}
