//! 1c. Creates on the PostgreSQL store (issue 13): the same load on one node, then on two
//! nodes on one database (connections split between them, no sticky routing), each window
//! from a drained outbox until it is drained again, against the conventional baseline of 1b
//! (one PostgreSQL transaction per create, same work) measured earlier in the same run.

use std::net::SocketAddr;

use crate::api::{login, setup_users};
use crate::common::*;
use crate::config::Cfg;
use crate::cpu::Who;
use crate::phases::conventional::{measure, Fig, Target};
use crate::phases::Rig;
use crate::servers::{app_vars, AppScratch};

/// Windows per node count.
const ROUNDS: usize = 2;

/// The database of the part: created at its start, dropped by the run's cleanup once the
/// servers are stopped.
pub fn database_name(tag: &str) -> String {
    format!("cf_bench_{}", tag.replace(['-', '.'], "_"))
}

pub async fn pgstore_phase(
    rig: &Rig<'_>,
    scratch: &AppScratch,
    database: &str,
    baseline: Option<f64>,
    summary: &mut Summary,
) -> Res<()> {
    let cfg = rig.cfg;
    heading(format_args!(
        "1c. Creates on the PostgreSQL store: 1 node, then 2 nodes on one database, {} connections, {} users",
        cfg.connections,
        thousands(cfg.users as u64)
    ));
    create_database(&cfg.pg, database)?;
    let (first, admin_email, _dir_a) = node(rig, scratch, database, "a").await?;
    let admin = login(first, &admin_email).await?;
    let users = setup_users(first, &admin, &scratch.names.tag, cfg.users).await?;
    let (second, _, _dir_b) = node(rig, scratch, database, "b").await?;
    let mut results = Vec::new();
    for nodes in [vec![first], vec![first, second]] {
        let mut figs = Vec::new();
        for round in 0..ROUNDS {
            let f = measure(
                cfg,
                Target::Service(&nodes),
                &users,
                cfg.seconds,
                300 + round as u64,
            )
            .await?;
            print_fig(nodes.len(), &f);
            figs.push(f);
        }
        results.push((nodes.len(), figs));
    }
    rows(cfg, &results, baseline, summary);
    Ok(())
}

fn create_database(admin: &str, name: &str) -> Res<()> {
    pg_admin_sql(admin, format!("CREATE DATABASE {name}"))
        .map_err(|e| format!("cannot create {name}: {e}"))
}

/// Drops the part's database (the run's cleanup; nothing when it was never created).
pub fn drop_database(admin: &str, name: &str) {
    if let Err(e) = pg_admin_sql(
        admin,
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    ) {
        eprintln!("cannot drop {name}: {e}");
    }
}

/// The variables of a node on `database` (the machine's server, as `BENCH_PG` names it).
fn database_vars(cfg: &Cfg, database: &str) -> Res<Vec<(String, String)>> {
    let settings = storage::pg::PgSettings::from_url(&cfg.pg).map_err(|e| e.to_string())?;
    Ok(vec![
        ("ODOO_DB_HOST".into(), settings.host.clone()),
        ("ODOO_DB_PORT".into(), settings.port.to_string()),
        ("ODOO_DB_USER".into(), settings.user.clone()),
        ("ODOO_DB_NAME".into(), database.into()),
        ("CREATIVEFLOW_DATABASE_SSLMODE".into(), "disable".into()),
    ])
}

/// One more node: the main app's queues (its drain empties them), a data dir of its own
/// (on PostgreSQL it holds only the control socket; kept for the part). Returns its address,
/// the admin its build created, and the dir.
async fn node(
    rig: &Rig<'_>,
    main: &AppScratch,
    database: &str,
    which: &str,
) -> Res<(SocketAddr, String, AppScratch)> {
    let own = AppScratch {
        names: main.names.clone(),
        dir: temp_dir(&format!("gen-pg-{which}"), None)?,
    };
    let mut vars = app_vars(&own, &rig.cfg.amqp)?;
    vars.extend(database_vars(rig.cfg, database)?);
    let app = rig.servers.build(vars).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    Ok((addr, app.admin_email, own))
}

fn print_fig(nodes: usize, f: &Fig) {
    f.run.print(
        &format!("PostgreSQL store, {nodes} node(s), POST /generation/create"),
        &crate::report::RUN_STYLE,
    );
    println!(
        "    CPU per create (window start → drained): server {:.0} µs, PostgreSQL {:.0} µs",
        f.server_us(),
        f.of_us(Who::Postgres)
    );
}

fn rows(cfg: &Cfg, results: &[(usize, Vec<Fig>)], baseline: Option<f64>, summary: &mut Summary) {
    for (nodes, figs) in results {
        let n = figs.len().max(1) as f64;
        let rate_now = figs.iter().map(|f| f.run.ops_per_s()).sum::<f64>() / n;
        let p99 = figs.iter().map(|f| f.run.p99_ms).sum::<f64>() / n;
        let pg_us = figs.iter().map(|f| f.of_us(Who::Postgres)).sum::<f64>() / n;
        summary.row(
            format!(
                "Creates/s on the PostgreSQL store, {nodes} node(s) ({} connections split between them)",
                cfg.connections
            ),
            format!("{} req/s, p99 {p99:.2} ms, PostgreSQL CPU {pg_us:.0} µs per create", rate(rate_now)),
        );
        if let Some(b) = baseline {
            let ratio = rate_now / b.max(1e-9);
            println!("  RATIO PostgreSQL store creates ({nodes} node(s)) / conventional baseline: {ratio:.2}x");
            summary.row(
                format!(
                    "**Ratio PostgreSQL store creates, {nodes} node(s) / conventional baseline**"
                ),
                format!("**{ratio:.2}×**"),
            );
        }
    }
}
