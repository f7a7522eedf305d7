//! How the generation bench words its report: run lines, targets, ratios, the summary.

use crate::common::*;
use crate::config::Cfg;
use crate::cpu::foreign_cpu_max;
use crate::phases::lapin::CONFIRM_WINDOW;
use crate::phases::Measured;

/// Run lines as this bench has always printed them.
pub const RUN_STYLE: RunStyle = RunStyle {
    elapsed_decimals: 2,
    grouped_rate: true,
    refused_label: "other status",
};

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The ratios the targets are about, printed and added to the summary.
pub fn ratios(cfg: &Cfg, m: &Measured, summary: &mut Summary) {
    heading("Ratios");
    let create_rate = m.created.run.ops_per_s();
    if let Some((pg_run, settings)) = &m.pg {
        summary.row(
            format!(
                "PostgreSQL deduct + ledger insert ({} clients, 1 txn each, {settings})",
                cfg.pg_clients
            ),
            format!(
                "{} ops/s; p50 {:.2} ms, p99 {:.2} ms",
                rate(pg_run.ops_per_s()),
                pg_run.p50_ms,
                pg_run.p99_ms
            ),
        );
        let r = create_rate / pg_run.ops_per_s().max(1e-9);
        println!(
            "  RATIO accepted creates / PostgreSQL deduct: {r:.2}x (target >= 3x: {})",
            verdict(r >= 3.0)
        );
        summary.row(
            "**Ratio accepted creates (HTTP, full request) / PostgreSQL deduct** (target >= 3x)",
            format!("**{r:.2}x** ({})", verdict(r >= 3.0)),
        );
    }
    let Some(raw) = &m.raw else {
        return;
    };
    let job_len = m.job_len;
    summary.row(
        format!(
            "Raw lapin: persistent {job_len}-byte publishes with confirms (window {CONFIRM_WINDOW}), durable queue, drained"
        ),
        format!(
            "{} msg/s; confirm p50 {:.1} ms, p99 {:.1} ms",
            rate(raw.per_s()),
            raw.window.p50_ms,
            raw.window.p99_ms
        ),
    );
    let r = m.created.confirmed_per_s / raw.per_s().max(1e-9);
    println!(
        "  RATIO end-to-end confirmed (during the create window) / raw lapin: {:.1}% (target >= 80%: {})",
        r * 100.0,
        verdict(r >= 0.8)
    );
    summary.row(
        "**Ratio end-to-end accepted-and-confirmed / raw lapin** (target >= 80%)",
        format!(
            "**{:.1}%** ({}); bounded by the HTTP accept rate, see the backlog drain",
            r * 100.0,
            verdict(r >= 0.8)
        ),
    );
    if let Some(b) = &m.backlog {
        let r = b.drain_per_s / raw.per_s().max(1e-9);
        println!(
            "  RATIO publisher drain of a backlog / raw lapin: {:.1}% (target >= 80%: {})",
            r * 100.0,
            verdict(r >= 0.8)
        );
        summary.row(
            "Ratio publisher backlog drain (relay alone, through the gate relay) / raw lapin",
            format!("{:.1}% ({})", r * 100.0, verdict(r >= 0.8)),
        );
    }
}

/// How much foreign processes used, so that a reader can tell whether to trust the figures.
pub fn foreign_cpu_note(summary: &mut Summary) {
    let foreign = foreign_cpu_max();
    summary.notes.push(format!(
        "Processes foreign to the benchmark (not this process, RabbitMQ or PostgreSQL; kernel threads included) used at most {foreign:.0}% of a core in any measured phase{}.",
        if foreign > 10.0 {
            ": the figures are skewed by other work on the machine"
        } else {
            ""
        }
    ));
}

pub fn print_summary(summary: &Summary, cfg: &Cfg) {
    let setting = format!(
        "; server, load generator, RabbitMQ and PostgreSQL share the machine. {} keep-alive HTTP/1.1 \
         connections, {} users, {} s per window after {} s warm-up.",
        cfg.connections,
        thousands(cfg.users as u64),
        cfg.seconds,
        cfg.warmup
    );
    summary.print("generation", &setting, &cfg.skip);
}
