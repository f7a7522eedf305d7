//! 5. The publisher draining a backlog: creates accepted while the broker is unreachable
//!    behind a gate, then the gate opens and the drain is timed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{create_requests, login, prompt, readyz, setup_users};
use crate::broker::{open_gate, split_amqp};
use crate::common::*;
use crate::config::Cfg;
use crate::cpu::{find_http_workers, CpuReport, CpuSnap, Who};
use crate::drain::Drain;
use crate::http::open_conns;
use crate::load::{http_load, LoadSpec};
use crate::phases::Rig;
use crate::report::RUN_STYLE;
use crate::servers::{app_vars, AppInfo, AppScratch};

pub async fn backlog_phase(
    rig: &Rig<'_>,
    scratch: &AppScratch,
    summary: &mut Summary,
) -> Res<Backlog> {
    heading(format_args!(
        "5. Publisher drain: {} jobs accepted while the broker is unreachable, then the gate opens",
        thousands(rig.cfg.backlog)
    ));
    let drain = Drain::start_on(rig.amqp, &rig.cfg.amqp, scratch.names.jobs.clone()).await?;
    let result = backlog_inner(rig, scratch, &drain, summary).await;
    drain.stop().await;
    result
}

async fn backlog_inner(
    rig: &Rig<'_>,
    scratch: &AppScratch,
    drain: &Drain,
    summary: &mut Summary,
) -> Res<Backlog> {
    let cfg = rig.cfg;
    // The gate: a port that accepts nothing yet (connections wait in the listen backlog).
    let gate = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("gate: {e}"))?;
    gate.set_nonblocking(true)
        .map_err(|e| format!("gate: {e}"))?;
    let gate_port = gate.local_addr().map_err(|e| format!("gate: {e}"))?.port();
    let (prefix, upstream, vhost) = split_amqp(&cfg.amqp)?;
    let gated_url = format!("{prefix}127.0.0.1:{gate_port}{vhost}");
    let filled = fill(rig, scratch, &gated_url).await?;
    let drained = open_gate_and_drain(rig, gate, upstream, &filled).await?;
    rows(cfg, &filled, &drained, summary);
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "  drain consumer received {} job messages",
        thousands(drain.received())
    );
    Ok(Backlog {
        drain_per_s: drained.per_s,
    })
}

/// What the backlog phase hands to the ratios.
pub struct Backlog {
    pub drain_per_s: f64,
}

/// The gated app with its outbox filled.
struct Filled {
    app: AppInfo,
    addr: SocketAddr,
    run: Run,
    cpu: CpuReport,
    /// Jobs waiting in the outbox.
    backlog: u64,
}

/// A second app whose broker is `gated_url`, one user per connection, and `BENCH_BACKLOG`
/// creates accepted into its outbox.
async fn fill(rig: &Rig<'_>, scratch: &AppScratch, gated_url: &str) -> Res<Filled> {
    let cfg = rig.cfg;
    let app = rig.servers.build(app_vars(scratch, gated_url)?).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    find_http_workers(addr, "/healthz").await?;
    let admin = login(addr, &app.admin_email).await?;
    let users = setup_users(addr, &admin, &scratch.names.tag, cfg.connections).await?;
    let spec = LoadSpec {
        limit: Some(Arc::new(AtomicU64::new(0))),
        limit_max: cfg.backlog,
        ..LoadSpec::new(
            create_requests(&addr.to_string(), &users, &prompt(cfg.prompt_chars)),
            202,
        )
    };
    let conns = open_conns(addr, cfg.connections).await?;
    let a = CpuSnap::take();
    let (_conns, run, _) = http_load(addr, conns, &spec, Duration::from_secs(60), 5).await?;
    let b = CpuSnap::take();
    run.print(
        "fill: creates accepted with the broker unreachable",
        &RUN_STYLE,
    );
    let cpu = CpuReport::between(&a, &b);
    cpu.print();
    let r = readyz(addr).await?;
    let backlog = r["outbox_backlog"].as_u64().unwrap_or(0);
    println!(
        "  outbox backlog {} (publisher connected: {})",
        thousands(backlog),
        r["broker"]["connected"]
    );
    if backlog == 0 {
        return Err("no backlog was built".into());
    }
    Ok(Filled {
        app,
        addr,
        run,
        cpu,
        backlog,
    })
}

/// Waits up to 120 s after `opened` for `backlog` more confirms than `confirmed_before`:
/// when the first and the last arrived.
async fn wait_drained(
    app: &AppInfo,
    confirmed_before: u64,
    backlog: u64,
    opened: Instant,
) -> Res<(Duration, Duration)> {
    let mut first: Option<Duration> = None;
    let limit = opened + Duration::from_secs(120);
    loop {
        let confirmed = app.status.confirmed_total.load(Ordering::Relaxed) - confirmed_before;
        if confirmed > 0 && first.is_none() {
            first = Some(opened.elapsed());
        }
        if confirmed >= backlog {
            let done = opened.elapsed();
            return Ok((first.unwrap_or(done), done));
        }
        if Instant::now() > limit {
            return Err(format!(
                "the backlog did not drain within 120 s ({} of {} confirmed)",
                app.status.confirmed_total.load(Ordering::Relaxed) - confirmed_before,
                backlog
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The backlog's drain once the gate opened.
struct Drained {
    /// When the first confirm arrived, after the gate opened.
    first: Duration,
    /// When the last one did.
    done: Duration,
    /// Jobs per second from the first confirm to the last.
    per_s: f64,
    cpu: CpuReport,
}

/// Opens the gate (on the relay's runtime) and times the publisher emptying the outbox.
async fn open_gate_and_drain(
    rig: &Rig<'_>,
    gate: std::net::TcpListener,
    upstream: String,
    filled: &Filled,
) -> Res<Drained> {
    let backlog = filled.backlog;
    let confirmed_before = filled.app.status.confirmed_total.load(Ordering::Relaxed);
    let a = CpuSnap::take();
    let opened = Instant::now();
    rig.proxy
        .spawn(async move { open_gate(gate, upstream) })
        .await
        .map_err(|e| e.to_string())??;
    let (first, done) = wait_drained(&filled.app, confirmed_before, backlog, opened).await?;
    let b = CpuSnap::take();
    let per_s = backlog as f64 / (done - first).as_secs_f64().max(1e-9);
    let after = readyz(filled.addr).await?;
    println!(
        "  gate opened: first confirm after {:.0} ms (connect + declare), all {} confirmed after {:.0} ms \
         = {} jobs/s from the first confirm ({} jobs/s including the connect); outbox now {}, \
         /readyz publish_lag_p99_ms {:.0} (a backlog's lag is its age)",
        ms(first),
        thousands(backlog),
        ms(done),
        rate(per_s),
        rate(backlog as f64 / done.as_secs_f64()),
        after["outbox_backlog"],
        after["publish_lag_p99_ms"].as_f64().unwrap_or(0.0)
    );
    let cpu = CpuReport::between(&a, &b);
    cpu.print();
    Ok(Drained {
        first,
        done,
        per_s,
        cpu,
    })
}

fn rows(cfg: &Cfg, filled: &Filled, drained: &Drained, summary: &mut Summary) {
    let (first, done, cpu) = (drained.first, drained.done, &drained.cpu);
    summary.row(
        format!(
            "Accepted creates with the broker unreachable (outbox fills; {} conns, {} users)",
            cfg.connections, cfg.connections
        ),
        format!(
            "{} req/s; p50 {:.2} ms, p99 {:.2} ms; load generator {:.0}% of a core",
            rate(filled.run.ops_per_s()),
            filled.run.p50_ms,
            filled.run.p99_ms,
            filled.cpu.of(Who::Client)
        ),
    );
    summary.row(
        format!(
            "Publisher drain of a {}-job outbox backlog once the broker is reachable (through the gate relay)",
            thousands(filled.backlog)
        ),
        format!(
            "{} jobs/s ({:.2} s from first confirm; first confirm {:.0} ms after the gate opened); relay {:.0}%, server lapin {:.0}%, actors+bus {:.0}%, writer {:.0}%, RabbitMQ {:.0}% of a core",
            rate(drained.per_s),
            (done - first).as_secs_f64(),
            ms(first),
            cpu.of(Who::Proxy),
            cpu.of(Who::ServerAmqp),
            cpu.of(Who::Arbiters),
            cpu.of(Who::Writer),
            cpu.of(Who::RabbitMq)
        ),
    );
}
