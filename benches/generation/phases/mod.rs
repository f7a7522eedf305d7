//! The phases of a run, in the order they run, and what they hand to the ratios.

pub mod backlog;
pub mod conventional;
pub mod create;
pub mod lapin;
pub mod pgstore;
pub mod postgres;
pub mod setup;
pub mod status;

use crate::common::*;
use crate::config::Cfg;
use crate::report;
use crate::servers::Servers;
use crate::Scratch;

use self::backlog::{backlog_phase, Backlog};
use self::create::{create_phase, Created};
use self::lapin::{lapin_phase, RawRun};
use self::postgres::postgres_phase;
use self::setup::setup_main;
use self::status::status_phase;

/// What every phase runs against.
pub struct Rig<'a> {
    pub cfg: &'a Cfg,
    /// The runtime of the bench's own AMQP clients (drain consumers, raw publisher).
    pub amqp: &'a tokio::runtime::Handle,
    /// The runtime of the gate relay.
    pub proxy: &'a tokio::runtime::Handle,
    pub servers: &'a Servers,
}

/// What the phases measured that the ratios compare.
pub struct Measured {
    pub created: Created,
    /// Size of a job message (what the raw lapin publishes carry).
    pub job_len: usize,
    pub raw: Option<RawRun>,
    pub pg: Option<(Run, String)>,
    pub backlog: Option<Backlog>,
}

pub async fn run_phases(rig: &Rig<'_>, scratch: &Scratch, summary: &mut Summary) -> Res<()> {
    let cfg = rig.cfg;
    // ---- the main app, on the real broker
    let main = setup_main(rig, &scratch.main, summary).await?;

    let created = create_phase(cfg, main.addr, &main.users, &main.drain, summary).await?;

    let mut baseline = None;
    if cfg.runs("conventional") {
        baseline = Some(
            self::conventional::conventional_phase(
                cfg,
                main.addr,
                &scratch.main.names.exchange,
                &main.users,
                summary,
            )
            .await?,
        );
    }

    if cfg.runs("pgstore") {
        let database = &scratch.pg_database;
        if let Err(e) =
            self::pgstore::pgstore_phase(rig, &scratch.main, database, baseline, summary).await
        {
            println!("  PostgreSQL store part skipped: {e}");
            summary
                .notes
                .push(format!("PostgreSQL store part skipped: {e}"));
        }
    }

    if cfg.runs("status") {
        status_phase(
            cfg,
            main.addr,
            rig.servers.bare_port,
            &main.users,
            &created.ids,
            summary,
        )
        .await?;
    }

    let job_len = created.job_bytes.as_ref().map_or(400, Vec::len);
    let mut raw: Option<RawRun> = None;
    if cfg.runs("lapin") {
        let payload = created
            .job_bytes
            .clone()
            .unwrap_or_else(|| vec![b'x'; job_len]);
        raw = Some(lapin_phase(rig, &scratch.raw_queue, &scratch.raw_exchange, payload).await?);
    }
    main.drain.stop().await;

    let pg = if cfg.runs("postgres") {
        match postgres_phase(cfg).await {
            Ok((run, settings)) => Some((run, settings)),
            Err(e) => {
                println!("  PostgreSQL unavailable: {e}");
                summary
                    .notes
                    .push(format!("PostgreSQL baseline skipped (unavailable: {e})."));
                None
            }
        }
    } else {
        None
    };

    let backlog = if cfg.runs("backlog") {
        Some(backlog_phase(rig, &scratch.backlog, summary).await?)
    } else {
        None
    };

    let measured = Measured {
        created,
        job_len,
        raw,
        pg,
        backlog,
    };
    report::ratios(cfg, &measured, summary);
    Ok(())
}
