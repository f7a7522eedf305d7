//! 2. GET /api/v1/generation/{id}/status beside a bare actix-web route.

use std::net::SocketAddr;
use std::time::Duration;

use crate::api::BenchUser;
use crate::common::*;
use crate::config::Cfg;
use crate::cpu::{CpuReport, CpuSnap, Who};
use crate::http::{http_request, open_conns};
use crate::load::{http_load, LoadSpec};
use crate::report::{verdict, RUN_STYLE};

pub async fn status_phase(
    cfg: &Cfg,
    addr: SocketAddr,
    bare_port: u16,
    users: &[BenchUser],
    ids: &[(usize, String)],
    summary: &mut Summary,
) -> Res<()> {
    heading(format_args!(
        "2. GET /api/v1/generation/{{id}}/status ({} requests known) vs a bare actix-web JSON route, {} connections",
        thousands(ids.len() as u64),
        cfg.connections
    ));
    if ids.is_empty() {
        return Err("no generation id was collected in the create warm-up".into());
    }
    let host = addr.to_string();
    let status_requests: Vec<Vec<u8>> = ids
        .iter()
        .map(|(i, id)| {
            http_request(
                &host,
                "GET",
                &format!("/api/v1/generation/{id}/status"),
                Some(&users[*i].token),
                None,
            )
        })
        .collect();
    let bare_addr = SocketAddr::from(([127, 0, 0, 1], bare_port));
    let bare_requests = vec![http_request(
        &bare_addr.to_string(),
        "GET",
        "/bare",
        None,
        None,
    )];
    let (bare, bare_cpu) = target(cfg, "bare actix-web route", bare_addr, bare_requests).await?;
    let (status, status_cpu) =
        target(cfg, "GET /generation/{id}/status", addr, status_requests).await?;
    let r = status.ops_per_s() / bare.ops_per_s().max(1e-9);
    println!(
        "  RATIO status / bare route: {:.1}% (target >= 60%: {})",
        r * 100.0,
        verdict(r >= 0.6)
    );
    summary.row(
        format!(
            "Bare actix-web JSON route, same client ({} conns)",
            cfg.connections
        ),
        target_figures(&bare, &bare_cpu),
    );
    summary.row(
        "`GET /api/v1/generation/{id}/status`",
        target_figures(&status, &status_cpu),
    );
    summary.row(
        "**Ratio status / bare route** (target >= 60%)",
        format!("**{:.1}%** ({})", r * 100.0, verdict(r >= 0.6)),
    );
    Ok(())
}

/// A warm-up and a measured window of `requests` on `target`, measured the same way for both.
async fn target(
    cfg: &Cfg,
    label: &str,
    target: SocketAddr,
    requests: Vec<Vec<u8>>,
) -> Res<(Run, CpuReport)> {
    let spec = LoadSpec::new(requests, 200);
    let conns = open_conns(target, cfg.connections).await?;
    let (conns, warm, _) = http_load(
        target,
        conns,
        &spec,
        Duration::from_secs(cfg.warmup.max(1)),
        3,
    )
    .await?;
    warm.print(&format!("{label} warm-up (not counted)"), &RUN_STYLE);
    let a = CpuSnap::take();
    let (_conns, run, _) =
        http_load(target, conns, &spec, Duration::from_secs(cfg.seconds), 4).await?;
    let b = CpuSnap::take();
    run.print(label, &RUN_STYLE);
    let cpu = CpuReport::between(&a, &b);
    cpu.print();
    Ok((run, cpu))
}

fn target_figures(run: &Run, cpu: &CpuReport) -> String {
    format!(
        "{} req/s; p50 {:.2} ms, p99 {:.2} ms; load generator {:.0}% of a core ({:.1} µs/req), HTTP workers {:.0}%",
        rate(run.ops_per_s()),
        run.p50_ms,
        run.p99_ms,
        cpu.of(Who::Client),
        cpu.client_us_per_request(run),
        cpu.of(Who::HttpWorkers)
    )
}
