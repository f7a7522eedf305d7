//! 1. POST /api/v1/generation/create, with the publisher live and a drain consumer emptying
//!    the jobs queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::api::{
    create_requests, metric, metrics_text, prompt, quantile_between, readyz, BenchUser,
};
use crate::common::*;
use crate::config::Cfg;
use crate::cpu::{CpuReport, CpuSnap, Who};
use crate::drain::{unix_ms, Drain};
use crate::http::{open_conns, HttpConn};
use crate::load::{http_load, http_load_paced, LoadSpec};
use crate::report::{verdict, RUN_STYLE};

/// What the create phase hands to the later ones.
pub struct Created {
    pub run: Run,
    pub confirmed_per_s: f64,
    pub ids: Vec<(usize, String)>,
    pub job_bytes: Option<Vec<u8>>,
}

pub async fn create_phase(
    cfg: &Cfg,
    addr: SocketAddr,
    users: &[BenchUser],
    drain: &Drain,
    summary: &mut Summary,
) -> Res<Created> {
    heading(format_args!(
        "1. POST /api/v1/generation/create: {} connections, {} users, format banner (1 credit), prompt {} chars",
        cfg.connections,
        thousands(users.len() as u64),
        cfg.prompt_chars
    ));
    let host = addr.to_string();
    let spec = LoadSpec {
        collect_ids: true,
        ..LoadSpec::new(
            create_requests(&host, users, &prompt(cfg.prompt_chars)),
            202,
        )
    };
    let conns = open_conns(addr, cfg.connections).await?;
    let (conns, warm, mut ids) = http_load(
        addr,
        conns,
        &spec,
        Duration::from_secs(cfg.warmup.max(1)),
        1,
    )
    .await?;
    warm.print("warm-up (not counted)", &RUN_STYLE);

    let spec = LoadSpec {
        collect_ids: false,
        ..spec
    };
    let w = window(cfg, addr, conns, &spec, drain).await?;
    w.print();
    let (drain_time, readyz_lag) = wait_outbox_empty(addr, w.end).await?;
    w.print_cpu();
    let lags = JobLags::of(drain, &w).await;
    lags.print(&w, &drain_time, summary);
    let job_bytes = drain.first();
    if let Some(j) = &job_bytes {
        println!("  a job message on the queue is {} bytes", j.len());
    }

    rows(
        cfg,
        users.len(),
        &w,
        readyz_lag,
        &lags,
        &drain_time,
        summary,
    );
    open_loop(cfg, addr, &spec, w.run.ops_per_s(), summary).await?;
    // One id per user for the status phase: the last one seen.
    ids.sort_by_key(|(i, _)| *i);
    ids.dedup_by_key(|(i, _)| *i);
    Ok(Created {
        run: w.run,
        confirmed_per_s: w.confirmed_per_s,
        ids,
        job_bytes,
    })
}

/// The measured window and what the server and the drain said about it.
struct Window {
    run: Run,
    cpu: CpuReport,
    /// Jobs the broker confirmed during the window (`creativeflow_jobs_confirmed_total`).
    confirmed: f64,
    confirmed_per_s: f64,
    drained: u64,
    /// (publish lag p99 in s of the jobs confirmed in that second, outbox backlog) from
    /// `/metrics` once a second.
    samples: Vec<(f64, f64)>,
    lag_end_ms: f64,
    lag_max_ms: f64,
    backlog_end: f64,
    backlog_max: f64,
    writer: WriterWork,
    start_unix_ms: u64,
    end_unix_ms: u64,
    end: Instant,
}

async fn window(
    cfg: &Cfg,
    addr: SocketAddr,
    conns: Vec<HttpConn>,
    spec: &LoadSpec,
    drain: &Drain,
) -> Res<Window> {
    let before = metrics_text(addr).await?;
    let confirmed_before = metric(&before, "creativeflow_jobs_confirmed_total").unwrap_or(0.0);
    let stop_sampling = Arc::new(Notify::new());
    let sampler = tokio::spawn(sample_metrics(addr, stop_sampling.clone()));
    let cpu_a = CpuSnap::take();
    let written_before = written_bytes()?;
    let start_unix_ms = unix_ms();
    let drained_before = drain.received();
    let (_conns, run, _) =
        http_load(addr, conns, spec, Duration::from_secs(cfg.seconds), 2).await?;
    let cpu_b = CpuSnap::take();
    let written = written_bytes()? - written_before;
    let end = Instant::now();
    let end_unix_ms = unix_ms();
    let after = metrics_text(addr).await?;
    let drained = drain.received() - drained_before;
    stop_sampling.notify_one();
    let samples = sampler.await.map_err(|e| e.to_string())?;
    let confirmed_after = metric(&after, "creativeflow_jobs_confirmed_total").unwrap_or(0.0);
    let lag_end_ms = quantile_between(&before, &after, LAG, 0.99).unwrap_or(0.0) * 1000.0;
    let backlog_end = metric(&after, "creativeflow_outbox_backlog").unwrap_or(0.0);
    let lag_max_ms = samples
        .iter()
        .map(|s| s.0 * 1000.0)
        .fold(lag_end_ms, f64::max);
    let backlog_max = samples.iter().map(|s| s.1).fold(backlog_end, f64::max);
    let confirmed = confirmed_after - confirmed_before;
    let writer = WriterWork::between(&before, &after, written);
    Ok(Window {
        confirmed_per_s: confirmed / run.elapsed.as_secs_f64(),
        run,
        cpu: CpuReport::between(&cpu_a, &cpu_b),
        confirmed,
        drained,
        samples,
        lag_end_ms,
        lag_max_ms,
        backlog_end,
        backlog_max,
        writer,
        start_unix_ms,
        end_unix_ms,
        end,
    })
}

/// What the storage writer did in the window: its commits (from `/metrics`) and the bytes the
/// process sent to the disk (the server's writer is the only thread here that writes).
struct WriterWork {
    commits: f64,
    sets: f64,
    commit_s: f64,
    written_bytes: u64,
}

impl WriterWork {
    fn between(before: &str, after: &str, written_bytes: u64) -> WriterWork {
        let delta = |name| metric(after, name).unwrap_or(0.0) - metric(before, name).unwrap_or(0.0);
        WriterWork {
            commits: delta("creativeflow_store_batches_total"),
            sets: delta("creativeflow_store_write_sets_total"),
            commit_s: delta("creativeflow_store_commit_seconds_total"),
            written_bytes,
        }
    }

    /// "N commits of S sets, T ms each, K KB written each; B KB per create".
    fn describe(&self, creates: u64) -> String {
        let commits = self.commits.max(1.0);
        format!(
            "{} commits of {:.1} write sets, {:.2} ms each, {:.0} KB written each; {:.1} KB written per create",
            thousands(self.commits as u64),
            self.sets / commits,
            self.commit_s * 1000.0 / commits,
            self.written_bytes as f64 / 1000.0 / commits,
            self.written_bytes as f64 / 1000.0 / creates.max(1) as f64
        )
    }
}

/// Share of the closed-loop peak the open-loop window offers.
const OPEN_LOOP_SHARE: f64 = 0.7;

/// The open-loop figure: creates offered at a fixed 70 % of the peak just measured, latency
/// from each request's due time, so the tail is not hidden by the load generator slowing down
/// with the server (coordinated omission).
async fn open_loop(
    cfg: &Cfg,
    addr: SocketAddr,
    spec: &LoadSpec,
    peak_per_s: f64,
    summary: &mut Summary,
) -> Res<()> {
    let offered = peak_per_s * OPEN_LOOP_SHARE;
    let conns = open_conns(addr, cfg.connections).await?;
    let (_conns, run) = http_load_paced(
        addr,
        conns,
        spec,
        Duration::from_secs(cfg.seconds),
        offered,
        3,
    )
    .await?;
    run.print(
        &format!(
            "open loop, {:.0} creates/s offered ({:.0}% of the peak), latency from the due time",
            offered,
            OPEN_LOOP_SHARE * 100.0
        ),
        &RUN_STYLE,
    );
    wait_outbox_empty(addr, Instant::now()).await?;
    summary.row(
        format!(
            "Create latency, open loop at {:.0}% of the peak ({} creates/s offered, {} conns; from the due time) p50 / p99 / max (target p99 < 10 ms)",
            OPEN_LOOP_SHARE * 100.0,
            rate(offered),
            cfg.connections
        ),
        format!(
            "{:.2} / **{:.2}** / {:.2} ms at {} accepted/s ({})",
            run.p50_ms,
            run.p99_ms,
            run.max_ms,
            rate(run.ops_per_s()),
            verdict(run.p99_ms < 10.0)
        ),
    );
    Ok(())
}

/// The server's histogram of accept → broker confirm.
const LAG: &str = "creativeflow_publish_lag_seconds";

/// Samples /metrics once a second until `stop`: the lag p99 of the jobs confirmed
/// since the previous sample (a bucket bound) and the outbox backlog.
async fn sample_metrics(addr: SocketAddr, stop: Arc<Notify>) -> Vec<(f64, f64)> {
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut previous = metrics_text(addr).await.unwrap_or_default();
    loop {
        // Stops at once when told: the window's end waits for this task before it times the
        // outbox's drain (a plain 1-s sleep added up to a second to that figure).
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.notified() => break,
        }
        if let Ok(text) = metrics_text(addr).await {
            samples.push((
                quantile_between(&previous, &text, LAG, 0.99).unwrap_or(0.0),
                metric(&text, "creativeflow_outbox_backlog").unwrap_or(0.0),
            ));
            previous = text;
        }
    }
    samples
}

impl Window {
    fn print(&self) {
        println!(
            "  1-s samples during the window: outbox backlog [{}], publish lag p99 ms [{}]",
            self.samples
                .iter()
                .map(|s| format!("{}", s.1))
                .collect::<Vec<_>>()
                .join(", "),
            self.samples
                .iter()
                .map(|s| format!("{:.0}", s.0 * 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.run
            .print("POST /generation/create (202 accepted)", &RUN_STYLE);
        self.cpu.print();
        println!("  storage writer: {}", self.writer.describe(self.run.ops));
        println!(
            "  broker-confirmed jobs during the window (creativeflow_jobs_confirmed_total): {} = {} jobs/s \
             ({:.1}% of accepted); drain consumer received {}",
            thousands(self.confirmed as u64),
            rate(self.confirmed_per_s),
            self.confirmed / self.run.ops.max(1) as f64 * 100.0,
            thousands(self.drained)
        );
        println!(
            "  outbox backlog: {} at the end of the window (max of 1-s samples {}); publish lag p99 \
             (histogram bucket bound, jobs confirmed in the window) {:.1} ms, max of 1-s samples {:.1} ms",
            self.backlog_end, self.backlog_max, self.lag_end_ms, self.lag_max_ms
        );
    }

    fn print_cpu(&self) {
        let cpu = &self.cpu;
        println!(
            "  load generator: {:.0}% of one core = {:.1} µs CPU per request; server (HTTP workers + actors + writer + lapin) {:.0}%; RabbitMQ {:.0}%",
            cpu.of(Who::Client),
            cpu.client_us_per_request(&self.run),
            cpu.server(),
            cpu.of(Who::RabbitMq)
        );
    }
}

/// Waits for the outbox to empty (every accepted job confirmed by the broker), up to 60 s
/// after `window_end`, and prints how long it took: that time as the summary words it, and
/// `/readyz`'s publish lag p99 then.
async fn wait_outbox_empty(addr: SocketAddr, window_end: Instant) -> Res<(String, f64)> {
    let drained_by = window_end + Duration::from_secs(60);
    let (drain_time, readyz_lag) = loop {
        let r = readyz(addr).await?;
        if r["outbox_backlog"].as_u64() == Some(0) {
            break (
                Some(window_end.elapsed()),
                r["publish_lag_p99_ms"].as_f64().unwrap_or(0.0),
            );
        }
        if Instant::now() > drained_by {
            break (None, r["publish_lag_p99_ms"].as_f64().unwrap_or(0.0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    match drain_time {
        Some(d) => println!(
            "  outbox empty {:.0} ms after the window ended; /readyz publish_lag_p99_ms then {:.1} ms",
            ms(d),
            readyz_lag
        ),
        None => println!("  outbox NOT empty 60 s after the window"),
    }
    let drain_time = drain_time.map_or("not within 60 s".to_string(), |d| {
        format!("{:.0} ms", ms(d))
    });
    Ok((drain_time, readyz_lag))
}

/// The true lag of every job accepted in the window, from the drain consumer: the message id
/// is the generation id (UUID v7, made at accept), so accept → delivered to a consumer.
struct JobLags {
    count: usize,
    /// Jobs delivered more than 1 s after acceptance.
    late: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl JobLags {
    async fn of(drain: &Drain, w: &Window) -> JobLags {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let lags = drain.lags_between(w.start_unix_ms, w.end_unix_ms);
        JobLags {
            count: lags.len(),
            late: lags.iter().filter(|l| **l > 1000).count(),
            p50_ms: percentile(&lags, 0.5),
            p99_ms: percentile(&lags, 0.99),
            max_ms: percentile(&lags, 1.0),
        }
    }

    fn late_pct(&self) -> f64 {
        self.late as f64 / self.count.max(1) as f64 * 100.0
    }

    /// Prints the lags and, when the server's gauge hid them, a note saying so.
    fn print(&self, w: &Window, drain_time: &str, summary: &mut Summary) {
        let (true_p50, true_p99, true_max) = (self.p50_ms, self.p99_ms, self.max_ms);
        println!(
            "  accept → delivered to the drain consumer, the {} jobs accepted in the window (message-id \
             timestamps, ms precision): p50 {true_p50:.0} ms, p99 {true_p99:.0} ms, max {true_max:.0} ms; \
             {} jobs ({:.2}%) over 1 s",
            thousands(self.count as u64),
            thousands(self.late as u64),
            self.late_pct()
        );
        let (lag_end_ms, lag_max_ms, backlog_end) = (w.lag_end_ms, w.lag_max_ms, w.backlog_end);
        if true_p99 > 2.0 * lag_max_ms.max(lag_end_ms) && true_p99 > 500.0 {
            let note = format!(
                "Publish lag: the server's `creativeflow_publish_lag_seconds` histogram gave a p99 of {lag_end_ms:.0} ms over the create \
                 window (max {lag_max_ms:.0} ms in 1-s samples), but {} jobs accepted in the window ({:.2}%) \
                 reached the queue more than 1 s after acceptance (p99 {true_p99:.0} ms, max {true_max:.0} ms): \
                 the gauge counts confirmed jobs only, so jobs still waiting in the outbox do not show in it. \
                 The outbox held {backlog_end} jobs at the end of the window and emptied {drain_time} after the load stopped.",
                thousands(self.late as u64),
                self.late_pct(),
            );
            println!("  NOTE: {note}");
            summary.notes.push(note);
        }
    }
}

fn rows(
    cfg: &Cfg,
    users: usize,
    w: &Window,
    readyz_lag: f64,
    lags: &JobLags,
    drain_time: &str,
    summary: &mut Summary,
) {
    let (run, cpu) = (&w.run, &w.cpu);
    summary.row(
        format!(
            "Accepted creates, `POST /api/v1/generation/create` ({} conns, {} users, publisher live)",
            cfg.connections,
            thousands(users as u64)
        ),
        format!("{} req/s", rate(run.ops_per_s())),
    );
    summary.row(
        "Create latency p50 / p99 / max (target p99 < 10 ms)",
        format!(
            "{:.2} / **{:.2}** / {:.2} ms ({})",
            run.p50_ms,
            run.p99_ms,
            run.max_ms,
            verdict(run.p99_ms < 10.0)
        ),
    );
    summary.row(
        "Jobs broker-confirmed during the create window (`creativeflow_jobs_confirmed_total`)",
        format!(
            "{} jobs/s ({:.1}% of accepted)",
            rate(w.confirmed_per_s),
            w.confirmed / run.ops.max(1) as f64 * 100.0
        ),
    );
    summary.row(
        "Publish lag p99 as the server reports it, accept → broker confirm (target < 500 ms)",
        format!(
            "**{:.1} ms** at window end (`/metrics`), max of 1-s samples {:.1} ms ({}); `/readyz` after the outbox emptied {:.1} ms",
            w.lag_end_ms,
            w.lag_max_ms,
            verdict(w.lag_max_ms.max(w.lag_end_ms) < 500.0),
            readyz_lag
        ),
    );
    summary.row(
        "Lag of every job accepted in the window, accept → delivered to a consumer (measured by the bench; target < 500 ms at p99)",
        format!(
            "p50 {:.0} ms, **p99 {:.0} ms**, max {:.0} ms; {} jobs over 1 s ({})",
            lags.p50_ms,
            lags.p99_ms,
            lags.max_ms,
            thousands(lags.late as u64),
            verdict(lags.p99_ms < 500.0)
        ),
    );
    summary.row(
        "Storage writer during the create window (`/metrics`; bytes from `/proc/self/io` write_bytes)",
        w.writer.describe(run.ops),
    );
    summary.row(
        "Outbox backlog during the window (max of 1-s samples) / time to empty after",
        format!("{} / {drain_time}", w.backlog_max),
    );
    summary.row(
        "CPU during the create window (% of one core, 200% = machine)",
        cpu_figures(cpu, run),
    );
}

fn cpu_figures(cpu: &CpuReport, run: &Run) -> String {
    format!(
            "machine {:.0}%: load generator {:.0}% ({:.1} µs/request), HTTP workers {:.0}%, actors+bus {:.0}%, writer {:.0}%, server lapin {:.0}%, drain consumer {:.0}%, RabbitMQ {:.0}%, irq+softirq {:.0}%, other processes {:.0}%",
            cpu.machine_busy,
            cpu.of(Who::Client),
            cpu.client_us_per_request(run),
            cpu.of(Who::HttpWorkers),
            cpu.of(Who::Arbiters),
            cpu.of(Who::Writer),
            cpu.of(Who::ServerAmqp),
            cpu.of(Who::BenchAmqp),
            cpu.of(Who::RabbitMq),
            cpu.irq,
            cpu.of(Who::OtherProcs)
        )
}
