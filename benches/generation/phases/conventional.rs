//! 1b. The conventional design beside the service: its pool size tuned first, then windows
//! alternating baseline / service under the same load (connections, users, requests), each
//! followed by the time its outbox takes to drain. CPU per create counts from the start of a
//! window until its outbox is empty.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::api::{create_requests, prompt, readyz, BenchUser};
use crate::common::*;
use crate::config::Cfg;
use crate::conventional::Conventional;
use crate::cpu::{CpuReport, CpuSnap, Who};
use crate::http::open_conns;
use crate::load::{http_load, LoadSpec};
use crate::report::{verdict, RUN_STYLE};

/// Pool sizes tried for the baseline (2-s windows); the best is used.
const POOL_SIZES: [usize; 4] = [8, 16, 32, 64];
const TUNE_SECONDS: u64 = 2;
const ROUNDS: usize = 2;
/// How long an outbox may take to drain before the window is reported as not drained.
const DRAIN_WAIT_MAX: Duration = Duration::from_secs(60);

/// Which server a window loads.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// The service: one node, or several on one database (connections split between them;
    /// the first node's `/readyz` counts the shared outbox).
    Service(&'a [SocketAddr]),
    Conventional(&'a Conventional),
}

impl Target<'_> {
    fn addrs(&self) -> Vec<SocketAddr> {
        match self {
            Target::Service(a) => a.to_vec(),
            Target::Conventional(c) => vec![c.addr],
        }
    }

    async fn backlog(&self) -> Res<i64> {
        match self {
            Target::Service(a) => {
                let first = a.first().ok_or("no service node")?;
                Ok(readyz(*first).await?["outbox_backlog"]
                    .as_i64()
                    .unwrap_or(-1))
            }
            Target::Conventional(c) => c.outbox_backlog().await,
        }
    }
}

/// One measured window.
pub struct Fig {
    pub run: Run,
    /// From the window's start until its outbox was empty.
    cpu: CpuReport,
    drain: Option<Duration>,
}

impl Fig {
    fn us_per_create(&self, pct: f64) -> f64 {
        pct / 100.0 * self.cpu.wall().as_secs_f64() * 1e6 / self.run.ops.max(1) as f64
    }
    pub fn server_us(&self) -> f64 {
        self.us_per_create(self.cpu.server_all())
    }
    pub fn of_us(&self, who: Who) -> f64 {
        self.us_per_create(self.cpu.of(who))
    }
}

/// A warm-up second, then a window of `seconds` from a drained outbox until it is drained again.
pub async fn measure(
    cfg: &Cfg,
    target: Target<'_>,
    users: &[BenchUser],
    seconds: u64,
    seed: u64,
) -> Res<Fig> {
    let addrs = target.addrs();
    let addr = *addrs.first().ok_or("no address to load")?;
    let spec = LoadSpec::new(
        create_requests(&addr.to_string(), users, &prompt(cfg.prompt_chars)),
        202,
    );
    let mut conns = Vec::with_capacity(cfg.connections);
    for (i, a) in addrs.iter().enumerate() {
        // The remainder goes to the first node; a connection that breaks reopens on it.
        let share =
            cfg.connections / addrs.len() + usize::from(i == 0) * (cfg.connections % addrs.len());
        conns.extend(open_conns(*a, share).await?);
    }
    let (conns, _, _) = http_load(addr, conns, &spec, Duration::from_secs(1), seed).await?;
    wait_drained(target, Instant::now()).await?;
    let a = CpuSnap::take();
    let (_conns, run, _) =
        http_load(addr, conns, &spec, Duration::from_secs(seconds), seed + 1).await?;
    let drain = wait_drained(target, Instant::now()).await?;
    let cpu = CpuReport::between(&a, &CpuSnap::take());
    Ok(Fig { run, cpu, drain })
}

async fn wait_drained(target: Target<'_>, from: Instant) -> Res<Option<Duration>> {
    loop {
        if target.backlog().await? == 0 {
            return Ok(Some(from.elapsed()));
        }
        if from.elapsed() > DRAIN_WAIT_MAX {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Returns the baseline's mean accepted creates/s (for the PostgreSQL store's ratios).
pub async fn conventional_phase(
    cfg: &Cfg,
    service: SocketAddr,
    exchange: &str,
    users: &[BenchUser],
    summary: &mut Summary,
) -> Res<f64> {
    heading("1b. The conventional design: actix-web + PostgreSQL pool (tokio-postgres) + lapin outbox relay");
    let conv = Conventional::start(&cfg.pg, &cfg.amqp, exchange, users).await?;
    let result = alternate(cfg, service, &conv, users, summary).await;
    conv.stop().await;
    result
}

async fn alternate(
    cfg: &Cfg,
    service: SocketAddr,
    conv: &Conventional,
    users: &[BenchUser],
    summary: &mut Summary,
) -> Res<f64> {
    let mut best = (POOL_SIZES[0], 0.0);
    for (i, n) in POOL_SIZES.into_iter().enumerate() {
        conv.set_pool_size(n);
        let f = measure(
            cfg,
            Target::Conventional(conv),
            users,
            TUNE_SECONDS,
            100 + i as u64,
        )
        .await?;
        println!(
            "  pool {n:>2}: {} creates/s, p99 {:.2} ms",
            rate(f.run.ops_per_s()),
            f.run.p99_ms
        );
        if f.run.ops_per_s() > best.1 {
            best = (n, f.run.ops_per_s());
        }
    }
    conv.set_pool_size(best.0);
    println!(
        "  baseline pool size: {} (best of {:?})",
        best.0, POOL_SIZES
    );
    let (mut base, mut svc) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let seed = 200 + 10 * round as u64;
        let b = measure(cfg, Target::Conventional(conv), users, cfg.seconds, seed).await?;
        print_fig("baseline", &b);
        base.push(b);
        let s = measure(
            cfg,
            Target::Service(std::slice::from_ref(&service)),
            users,
            cfg.seconds,
            seed + 5,
        )
        .await?;
        print_fig("service ", &s);
        svc.push(s);
    }
    let accepted: u64 = base.iter().map(|f| f.run.ops).sum();
    println!(
        "  baseline relay: {} jobs broker-confirmed in all (every accepted one of the measured windows: {} of them, plus warm-ups and tuning)",
        thousands(conv.confirmed.load(std::sync::atomic::Ordering::Relaxed)),
        thousands(accepted)
    );
    rows(best.0, &base, &svc, summary);
    Ok(mean(&base, |f| f.run.ops_per_s()))
}

fn print_fig(label: &str, f: &Fig) {
    f.run
        .print(&format!("{label} POST /generation/create"), &RUN_STYLE);
    println!(
        "    outbox drained {}; CPU per create (window start → drained): server {:.0} µs, PostgreSQL {:.0} µs, RabbitMQ {:.0} µs",
        f.drain.map_or("NOT within 60 s".into(), |d| format!("{:.0} ms after the window", ms(d))),
        f.server_us(),
        f.of_us(Who::Postgres),
        f.of_us(Who::RabbitMq)
    );
}

fn mean(figs: &[Fig], f: impl Fn(&Fig) -> f64) -> f64 {
    figs.iter().map(f).sum::<f64>() / figs.len().max(1) as f64
}

fn rows(pool: usize, base: &[Fig], svc: &[Fig], summary: &mut Summary) {
    let (b_rate, s_rate) = (
        mean(base, |f| f.run.ops_per_s()),
        mean(svc, |f| f.run.ops_per_s()),
    );
    summary.row(
        format!("Conventional baseline creates/s (actix-web + PG pool {pool} + lapin relay; {ROUNDS} windows alternating with the service)"),
        format!("{} req/s, p99 {:.2} ms", rate(b_rate), mean(base, |f| f.run.p99_ms)),
    );
    summary.row(
        "Service creates/s in the same alternating windows",
        format!(
            "{} req/s, p99 {:.2} ms",
            rate(s_rate),
            mean(svc, |f| f.run.p99_ms)
        ),
    );
    summary.row(
        "**Ratio service / conventional** (target ≥ 4×)",
        format!(
            "**{:.2}×** ({})",
            s_rate / b_rate.max(1e-9),
            verdict(s_rate >= 4.0 * b_rate)
        ),
    );
    let s_cpu = mean(svc, Fig::server_us);
    summary.row(
        "Server CPU per create, window start → outbox drained (target ≤ 60 µs)",
        format!(
            "service **{:.0} µs** ({}); baseline server {:.0} µs, server + PostgreSQL {:.0} µs",
            s_cpu,
            verdict(s_cpu <= 60.0),
            mean(base, Fig::server_us),
            mean(base, |f| f.server_us() + f.of_us(Who::Postgres))
        ),
    );
    summary.row(
        "RabbitMQ CPU per create",
        format!(
            "service {:.0} µs, baseline {:.0} µs",
            mean(svc, |f| f.of_us(Who::RabbitMq)),
            mean(base, |f| f.of_us(Who::RabbitMq))
        ),
    );
    let drains = |figs: &[Fig]| {
        figs.iter()
            .map(|f| {
                f.drain
                    .map_or("not within 60 s".into(), |d| format!("{:.0} ms", ms(d)))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    summary.row(
        "Outbox empty after the load stopped (target ≤ 500 ms)",
        format!("service {}; baseline {}", drains(svc), drains(base)),
    );
}
