//! 4. The PostgreSQL baseline (the same as the credits bench's, on tables of its own).

use std::time::Duration;

use crate::api::USER_FLOAT;
use crate::common::*;
use crate::config::Cfg;
use crate::cpu::{CpuReport, CpuSnap};
use crate::report::RUN_STYLE;

pub async fn postgres_phase(cfg: &Cfg) -> Res<(Run, String)> {
    heading(format_args!(
        "4. PostgreSQL baseline: {} accounts, {} clients, guarded UPDATE + ledger INSERT per transaction",
        thousands(cfg.users as u64),
        cfg.pg_clients
    ));
    let admin = pg_connect(&cfg.pg).await?;
    let settings = PgServer::read(&admin).await.settings();
    println!("  server: {settings}");
    let tables = PgTables {
        prefix: "bench_gen",
        accounts: cfg.users,
        balance: USER_FLOAT,
    };
    let run = tables
        .with(&admin, &cfg.pg, cfg.pg_clients, |mut load| async move {
            load.warm_up(Duration::from_secs(cfg.warmup.max(1)), &RUN_STYLE)
                .await?;
            let a = CpuSnap::take();
            let run = load.window(Duration::from_secs(cfg.seconds), 2).await?;
            let b = CpuSnap::take();
            run.print("PostgreSQL", &RUN_STYLE);
            CpuReport::between(&a, &b).print();
            Ok(run)
        })
        .await?;
    Ok((run, settings))
}
