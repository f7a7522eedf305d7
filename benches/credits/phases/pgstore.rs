//! 5. The same deducts through the account actors on the PostgreSQL store (issue 13): one node,
//!    then two nodes (two stores, two writers, two registries on one database, callers split
//!    between them, no sticky routing), against the plain PostgreSQL baseline of part 2.

use storage::pg::{PgSettings, TlsMode};
use storage::{Store, StoreOptions};

use crate::common::*;
use crate::config::Config;
use crate::phases::deduct::{create_accounts, measure_nodes};
use crate::report::RUN_STYLE;
use crate::store::on_system;

/// Runs both and adds their rows; an unreachable server is a note, not a failure.
pub fn pgstore_part(cfg: &Config, baseline: Option<&Run>, summary: &mut Summary) {
    heading(format_args!(
        "5. Deducts on the PostgreSQL store: {} accounts, {} callers, 1 node then 2 nodes, {} s each",
        thousands(cfg.accounts as u64),
        cfg.callers,
        cfg.seconds
    ));
    let name = format!("cf_bench_{}", uuid::Uuid::new_v4().simple());
    let result = with_database(cfg, &name, |settings| nodes_bench(cfg, settings));
    match result {
        Ok(runs) => rows(cfg, &runs, baseline, summary),
        Err(e) => {
            println!("  PostgreSQL store part skipped: {e}");
            summary
                .notes
                .push(format!("PostgreSQL store part skipped: {e}"));
        }
    }
}

/// A fresh database for the part, dropped after it whatever happened.
fn with_database<T>(cfg: &Config, name: &str, work: impl FnOnce(&PgSettings) -> Res<T>) -> Res<T> {
    pg_admin_sql(&cfg.pg, format!("CREATE DATABASE {name}"))
        .map_err(|e| format!("cannot create {name}: {e}"))?;
    let mut settings = PgSettings::from_url(&cfg.pg).map_err(|e| e.to_string())?;
    settings.dbname = name.to_string();
    settings.tls = TlsMode::Disable;
    let out = work(&settings);
    let _ = pg_admin_sql(
        &cfg.pg,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    out
}

/// (nodes, run, write sets per commit of each node, ms per commit of each node).
type NodesRun = (usize, Run, Vec<(f64, f64)>);

fn nodes_bench(cfg: &Config, settings: &PgSettings) -> Res<Vec<NodesRun>> {
    let options = StoreOptions::default();
    let connect = || Store::connect_postgres(settings, &options).map_err(|e| e.to_string());
    let first = connect()?;
    let ids = create_accounts(&first, cfg.accounts)?;
    let mut out = Vec::new();
    for nodes in [1usize, 2] {
        let mut stores = vec![first.clone()];
        for _ in 1..nodes {
            stores.push(connect()?);
        }
        let (run, writers, _) = on_system(measure_nodes(cfg, &stores, &ids));
        run.print(&format!("PostgreSQL store, {nodes} node(s)"), &RUN_STYLE);
        let per_node: Vec<(f64, f64)> = writers
            .iter()
            .map(|w| (w.avg_batch(), w.avg_commit_ms()))
            .collect();
        for (i, (batch, commit_ms)) in per_node.iter().enumerate() {
            println!("  node {i}: {batch:.1} write sets per commit, {commit_ms:.2} ms per commit");
        }
        for s in stores.iter().skip(1) {
            s.shutdown();
        }
        out.push((nodes, run, per_node));
    }
    first.shutdown();
    Ok(out)
}

fn rows(cfg: &Config, runs: &[NodesRun], baseline: Option<&Run>, summary: &mut Summary) {
    for (nodes, run, per_node) in runs {
        let commits = per_node
            .iter()
            .map(|(b, c)| format!("{b:.1} sets/commit, {c:.2} ms"))
            .collect::<Vec<_>>()
            .join("; ");
        summary.row(
            format!(
                "Deducts through the account actors on the PostgreSQL store, {nodes} node(s) ({} callers split between them; group commit)",
                cfg.callers
            ),
            format!(
                "{} ops/s, p50 {:.2} ms, p99 {:.2} ms ({commits})",
                rate(run.ops_per_s()),
                run.p50_ms,
                run.p99_ms
            ),
        );
        if let Some(pg) = baseline {
            let ratio = run.ops_per_s() / pg.ops_per_s().max(1e-9);
            println!("  RATIO PostgreSQL store ({nodes} node(s)) / plain PostgreSQL: {ratio:.2}x");
            summary.row(
                format!(
                    "**Ratio PostgreSQL store, {nodes} node(s) / plain PostgreSQL (1 txn per op)**"
                ),
                format!("**{ratio:.2}x**"),
            );
        }
    }
}
