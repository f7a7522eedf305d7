//! Load driver for the generation pipeline of CreativeFlow Core: `cargo bench --bench generation`.
//!
//! It prints figures and never asserts on them. One run does, against the real server started
//! in-process on port 0 (its publisher talking to the real RabbitMQ on queue names of its own):
//!
//! 1. `create`: `BENCH_USERS` (1,000) users, each with a workbench, a project and a large
//!    balance; `BENCH_CONNECTIONS` (64) keep-alive HTTP/1.1 connections send
//!    `POST /api/v1/generation/create` for `BENCH_SECONDS` (10) after `BENCH_WARMUP_SECONDS` (2):
//!    accepted creates/s, latency p50/p99, jobs confirmed by the broker during the window (from
//!    `/metrics`), publish lag p99 (`/metrics` and `/readyz`), time for the outbox to drain after.
//!    A lapin consumer with auto-ack drains the jobs queue meanwhile, as workers would.
//!
//! Then `pgstore`: the same creates on the PostgreSQL store (a database of the run's own on
//! `BENCH_PG`'s server), one node and then two nodes on it, against the conventional baseline.
//!
//! 2. `status`: `GET /api/v1/generation/{id}/status` at the same concurrency, beside a bare
//!    actix-web JSON route served by a second `HttpServer` in this process, measured the same way.
//! 3. `lapin`: raw lapin publishes with publisher confirms (window 1000), persistent, of a job
//!    message's size, to a durable queue through a direct exchange (drained the same way).
//! 4. `postgres`: the equivalent money movement in PostgreSQL (guarded `UPDATE` + ledger
//!    `INSERT`, one transaction each, `BENCH_PG_CLIENTS` (16) clients), as the credits bench
//!    (`benches/common/pg.rs` serves both).
//! 5. `backlog`: a second server whose broker connection is held at a gate (a local TCP port
//!    that does not accept yet) while `BENCH_BACKLOG` (30,000) creates fill its outbox; then the
//!    gate opens (a small in-process TCP relay to the broker) and the publisher's drain rate is
//!    timed: what the relay can do when it is not bounded by the HTTP accept rate.
//!
//! Every phase also reports who used the CPU (per thread of this process from
//! `/proc/self/task`, plus the RabbitMQ and PostgreSQL processes), so a load generator that eats
//! the 2 cores shows. The HTTP load generator is a minimal keep-alive HTTP/1.1 client over
//! tokio `TcpStream` on its own runtime (`BENCH_CLIENT_THREADS`, default 1 thread).
//!
//! Environment: `BENCH_SECONDS`, `BENCH_WARMUP_SECONDS`, `BENCH_CONNECTIONS`, `BENCH_USERS`,
//! `BENCH_PG_CLIENTS`, `BENCH_PG` (`host=127.0.0.1 user=postgres dbname=test`), `BENCH_AMQP`
//! (`amqp://guest:guest@127.0.0.1:5672/%2f`), `BENCH_BACKLOG`, `BENCH_CLIENT_THREADS`,
//! `BENCH_PROMPT_CHARS` (120), `BENCH_SKIP` (comma list of conventional,pgstore,status,lapin,postgres,backlog).
#![forbid(unsafe_code)]

#[path = "../common/mod.rs"]
mod common;

/// The server binary's allocator (see `src/main.rs`), so the in-process server runs as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod broker;
mod config;
mod conventional;
mod cpu;
mod drain;
mod http;
mod load;
mod phases;
mod report;
mod servers;

use std::time::{Duration, Instant};

use common::*;
use config::Cfg;

use crate::broker::{delete_broker_objects, split_amqp};
use crate::phases::Rig;
use crate::servers::{AppScratch, Servers};

fn main() {
    if let Err(e) = run() {
        eprintln!("generation bench failed: {e}");
        std::process::exit(1);
    }
}

/// A multi-thread runtime of `threads` workers named `name`, so that the CPU report can tell
/// its threads apart.
fn runtime(name: &str, threads: usize, what: &str) -> Res<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the {what} runtime: {e}"))
}

fn run() -> Res<()> {
    let cfg = Cfg::from_env()?;
    let client = runtime("bench-client", cfg.client_threads, "client")?;
    let amqp = runtime("bench-amqp", 1, "AMQP")?;
    let proxy = runtime("bench-proxy", 1, "relay")?;
    let result = client.block_on(orchestrate(&cfg, amqp.handle(), proxy.handle()));
    proxy.shutdown_timeout(Duration::from_secs(1));
    amqp.shutdown_timeout(Duration::from_secs(1));
    client.shutdown_timeout(Duration::from_secs(1));
    result
}

/// The run's own broker objects and data dirs, cleaned up whatever happened.
pub struct Scratch {
    pub main: AppScratch,
    pub backlog: AppScratch,
    pub raw_queue: String,
    pub raw_exchange: String,
    /// The database of the PostgreSQL store part (dropped once the servers are stopped).
    pub pg_database: String,
}

impl Scratch {
    fn new() -> Res<Scratch> {
        let main = AppScratch::new("main")?;
        let backlog = AppScratch::new("backlog")?;
        let raw_queue = format!("{}.raw", main.names.tag);
        let raw_exchange = format!("{}.raw_exchange", main.names.tag);
        let pg_database = crate::phases::pgstore::database_name(&main.names.tag);
        Ok(Scratch {
            main,
            backlog,
            raw_queue,
            raw_exchange,
            pg_database,
        })
    }

    /// Deletes the run's queues and exchanges from the broker.
    async fn clean_broker(&self, amqp: &tokio::runtime::Handle, url: &str) {
        let mut queues = vec![self.raw_queue.clone()];
        let mut exchanges = vec![self.raw_exchange.clone()];
        for n in [&self.main.names, &self.backlog.names] {
            queues.extend([n.jobs.clone(), n.results.clone(), n.dlq.clone()]);
            exchanges.push(n.exchange.clone());
        }
        let url = url.to_string();
        match amqp
            .spawn(async move { delete_broker_objects(&url, &queues, &exchanges).await })
            .await
        {
            Ok(Ok(())) => println!("\nbroker cleanup: deleted the run's queues and exchanges"),
            Ok(Err(e)) => eprintln!("broker cleanup failed: {e}"),
            Err(e) => eprintln!("broker cleanup task failed: {e}"),
        }
    }
}

async fn orchestrate(
    cfg: &Cfg,
    amqp: &tokio::runtime::Handle,
    proxy: &tokio::runtime::Handle,
) -> Res<()> {
    let wall = Instant::now();
    let mut summary = Summary::default();
    println!(
        "generation bench: {} connections, {} users, {} s windows (+{} s warm-up), client threads {}, broker {}",
        cfg.connections,
        thousands(cfg.users as u64),
        cfg.seconds,
        cfg.warmup,
        cfg.client_threads,
        split_amqp(&cfg.amqp).map(|(_, h, _)| h).unwrap_or_default()
    );
    cpu::machine_before(&mut summary).await;
    let scratch = Scratch::new()?;
    let servers = Servers::start()?;

    let rig = Rig {
        cfg,
        amqp,
        proxy,
        servers: &servers,
    };
    let outcome = phases::run_phases(&rig, &scratch, &mut summary).await;

    // Cleanup whatever happened: stop the servers (their bus first), then delete our queues.
    servers.stop().await;
    scratch.clean_broker(amqp, &cfg.amqp).await;
    if cfg.runs("pgstore") {
        crate::phases::pgstore::drop_database(&cfg.pg, &scratch.pg_database);
    }
    outcome?;
    report::foreign_cpu_note(&mut summary);
    summary.row(
        "Benchmark wall time (setup included)",
        format!("{:.0} s", wall.elapsed().as_secs_f64()),
    );
    report::print_summary(&summary, cfg);
    Ok(())
}
