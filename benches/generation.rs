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
//! 2. `status`: `GET /api/v1/generation/{id}/status` at the same concurrency, beside a bare
//!    actix-web JSON route served by a second `HttpServer` in this process, measured the same way.
//! 3. `lapin`: raw lapin publishes with publisher confirms (window 1000), persistent, of a job
//!    message's size, to a durable queue through a direct exchange (drained the same way).
//! 4. `postgres`: the equivalent money movement in PostgreSQL (guarded `UPDATE` + ledger
//!    `INSERT`, one transaction each, `BENCH_PG_CLIENTS` (16) clients), as `benches/credits.rs`.
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
//! `BENCH_PROMPT_CHARS` (120), `BENCH_SKIP` (comma list of status,lapin,postgres,backlog).
#![forbid(unsafe_code)]

#[path = "common/mod.rs"]
mod common;
use common::*;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use actors::broker::BrokerStatus;
use creativeflow::config::Config as AppConfig;
use creativeflow::domain::{Email, Name};
use creativeflow::mailer::LogMailer;
use creativeflow::services::users::{create_user, NewUser};
use creativeflow::startup::Application;
use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use serde_json::{json, Value};
use storage::records::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

const PASSWORD: &str = "bench password, long enough";
/// Credits each benchmark user gets: far more than any run spends (a create costs 1).
const USER_FLOAT: i64 = 1_000_000;
/// Concurrent connections used to create the users (each signup hashes with Argon2id).
const SETUP_CONNECTIONS: usize = 8;
/// Publisher-confirm window of the raw lapin baseline (the server's default too).
const CONFIRM_WINDOW: usize = 1000;
const ROUTING_KEY: &str = "generation.create";
const PROMPT_SEED: &str = "A minimalist poster of a red bicycle leaning on a sunlit brick wall, \
     flat colours, soft long shadows, generous margins, bold sans-serif title at the top. ";

fn main() {
    if let Err(e) = run() {
        eprintln!("generation bench failed: {e}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration and small helpers

struct Cfg {
    seconds: u64,
    warmup: u64,
    connections: usize,
    users: usize,
    pg_clients: usize,
    pg: String,
    amqp: String,
    backlog: u64,
    client_threads: usize,
    prompt_chars: usize,
    skip: Vec<String>,
}

const PARTS: [&str; 4] = ["status", "lapin", "postgres", "backlog"];

impl Cfg {
    fn from_env() -> Res<Cfg> {
        let skip = std::env::var("BENCH_SKIP")
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        if let Some(s) = skip.iter().find(|s| !PARTS.contains(&s.as_str())) {
            return Err(format!(
                "BENCH_SKIP: unknown part {s:?} (known: {})",
                PARTS.join(",")
            ));
        }
        Ok(Cfg {
            seconds: env_num("BENCH_SECONDS", 10u64)?.max(1),
            warmup: env_num("BENCH_WARMUP_SECONDS", 2)?,
            connections: env_num("BENCH_CONNECTIONS", 64usize)?.max(1),
            users: env_num("BENCH_USERS", 1000usize)?.max(1),
            pg_clients: env_num("BENCH_PG_CLIENTS", 16usize)?.max(1),
            pg: std::env::var("BENCH_PG")
                .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=test".into()),
            amqp: std::env::var("BENCH_AMQP")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            backlog: env_num("BENCH_BACKLOG", 30_000u64)?.max(1),
            client_threads: env_num("BENCH_CLIENT_THREADS", 1usize)?.max(1),
            prompt_chars: env_num("BENCH_PROMPT_CHARS", 120usize)?.clamp(1, 4000),
            skip,
        })
    }

    fn runs(&self, part: &str) -> bool {
        !self.skip.iter().any(|s| s == part)
    }
}

fn rate(n: f64) -> String {
    thousands(n.max(0.0).round() as u64)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

impl Run {
    fn print(&self, label: &str) {
        println!(
            "  {label}: {} ops in {:.2} s = {} ops/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             other status {}, errors {}",
            thousands(self.ops),
            self.elapsed.as_secs_f64(),
            rate(self.ops_per_s()),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.refused,
            self.errors
        );
    }
}

/// The rows of the final Markdown table.
#[derive(Default)]
struct Summary {
    rows: Vec<(String, String)>,
    notes: Vec<String>,
}

impl Summary {
    fn row(&mut self, measure: impl Into<String>, value: impl Into<String>) {
        self.rows.push((measure.into(), value.into()));
    }

    fn print(&self, cfg: &Cfg) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!("## CreativeFlow generation benchmark");
        println!();
        println!(
            "Machine: {cores} cores, {}. `cargo bench --bench generation` (release); server, load \
             generator, RabbitMQ and PostgreSQL share the machine. {} keep-alive HTTP/1.1 \
             connections, {} users, {} s per window after {} s warm-up.",
            std::env::consts::ARCH,
            cfg.connections,
            thousands(cfg.users as u64),
            cfg.seconds,
            cfg.warmup
        );
        println!();
        println!("| Measure | Value |");
        println!("|---|---|");
        for (m, v) in &self.rows {
            println!("| {m} | {v} |");
        }
        if !self.notes.is_empty() {
            println!();
            for n in &self.notes {
                println!("- {n}");
            }
        }
        if !cfg.skip.is_empty() {
            println!();
            println!("Skipped: {}.", cfg.skip.join(", "));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Who used the CPU: threads of this process (by name) and every other process

/// Lapin I/O threads opened by the benchmark itself (the server's are the others).
static BENCH_LAPIN_THREADS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The servers' HTTP worker threads. Inside an actix System they are arbiters, named like the
/// account and workspace arbiters, so they are found by what they do (see `find_http_workers`).
static HTTP_WORKER_THREADS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The most CPU (% of a core) that processes foreign to the benchmark used in any phase.
static FOREIGN_CPU_MAX: Mutex<f64> = Mutex::new(0.0);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Client,
    BenchAmqp,
    Proxy,
    HttpWorkers,
    Arbiters,
    Writer,
    ServerAmqp,
    Other,
    RabbitMq,
    Postgres,
    OtherProcs,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Client => "load generator (bench-client)",
            Who::BenchAmqp => "bench AMQP (drain consumers, raw publisher)",
            Who::Proxy => "bench gate relay",
            Who::HttpWorkers => "server HTTP workers",
            Who::Arbiters => "server actors + bus (actix arbiters)",
            Who::Writer => "server storage-writer",
            Who::ServerAmqp => "server lapin I/O",
            Who::Other => "other threads of this process",
            Who::RabbitMq => "RabbitMQ (beam.smp)",
            Who::Postgres => "PostgreSQL",
            Who::OtherProcs => "other processes and kernel threads",
        }
    }

    fn of_thread(comm: &str, tid: u32, bench_lapin: &[u32], http: &[u32]) -> Who {
        match comm {
            c if c.starts_with("bench-client") => Who::Client,
            c if c.starts_with("bench-amqp") => Who::BenchAmqp,
            c if c.starts_with("bench-proxy") => Who::Proxy,
            "lapin-io-loop" if bench_lapin.contains(&tid) => Who::BenchAmqp,
            "lapin-io-loop" => Who::ServerAmqp,
            _ if http.contains(&tid) => Who::HttpWorkers,
            c if c.starts_with("actix-server") => Who::HttpWorkers,
            c if c.starts_with("actix-rt") => Who::Arbiters,
            "storage-writer" => Who::Writer,
            _ => Who::Other,
        }
    }
}

/// utime + stime (clock ticks) from a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// tid → (name, CPU ticks) of every thread of this process.
fn own_threads() -> HashMap<u32, (String, u64)> {
    let mut threads = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for e in dir.flatten() {
            let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if let Some(t) = stat_ticks(&stat) {
                threads.insert(tid, (comm.trim_end().to_string(), t));
            }
        }
    }
    threads
}

fn lapin_threads() -> HashSet<u32> {
    own_threads()
        .into_iter()
        .filter(|(_, (comm, _))| comm == "lapin-io-loop")
        .map(|(tid, _)| tid)
        .collect()
}

/// Marks the lapin threads that appeared since `before` as the benchmark's own.
fn claim_lapin_threads(before: &HashSet<u32>) {
    let new: Vec<u32> = lapin_threads().difference(before).copied().collect();
    if let Ok(mut mine) = BENCH_LAPIN_THREADS.lock() {
        mine.extend(new);
    }
}

/// Finds a server's HTTP workers: the actix arbiter threads that burn CPU while `path` (a
/// route that touches no actor) is hammered for half a second. Returns how many.
async fn find_http_workers(addr: SocketAddr, path: &str) -> Res<usize> {
    let before = own_threads();
    let spec = LoadSpec {
        requests: Arc::new(vec![http_request(
            &addr.to_string(),
            "GET",
            path,
            None,
            None,
        )]),
        expect: 200,
        collect_ids: false,
        limit: None,
        limit_max: 0,
    };
    let conns = open_conns(addr, 8).await?;
    http_load(addr, conns, &spec, Duration::from_millis(500), 9).await?;
    let found: Vec<u32> = own_threads()
        .into_iter()
        .filter(|(tid, (comm, t))| {
            comm.starts_with("actix-rt")
                && t.saturating_sub(before.get(tid).map_or(0, |b| b.1)) >= 3
        })
        .map(|(tid, _)| tid)
        .collect();
    let n = found.len();
    if let Ok(mut workers) = HTTP_WORKER_THREADS.lock() {
        workers.extend(found);
    }
    Ok(n)
}

struct CpuSnap {
    at: Instant,
    /// user nice system idle iowait irq softirq steal
    machine: [u64; 8],
    threads: HashMap<u32, (String, u64)>,
    procs: HashMap<u32, (Who, u64)>,
}

impl CpuSnap {
    fn take() -> CpuSnap {
        let at = Instant::now();
        let mut machine = [0u64; 8];
        if let Ok(s) = std::fs::read_to_string("/proc/stat") {
            if let Some(line) = s.lines().next() {
                for (slot, v) in machine.iter_mut().zip(line.split_whitespace().skip(1)) {
                    *slot = v.parse().unwrap_or(0);
                }
            }
        }
        let me = std::process::id();
        let mut procs = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if pid == me {
                    continue;
                }
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                let who = match comm.trim_end() {
                    "beam.smp" => Who::RabbitMq,
                    "postgres" => Who::Postgres,
                    _ => Who::OtherProcs,
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                if let Some(t) = stat_ticks(&stat) {
                    procs.insert(pid, (who, t));
                }
            }
        }
        CpuSnap {
            at,
            machine,
            threads: own_threads(),
            procs,
        }
    }
}

/// CPU used between two snapshots, in % of one core.
struct CpuReport {
    machine_busy: f64,
    irq: f64,
    steal: f64,
    cores: f64,
    by: BTreeMap<Who, f64>,
    wall: Duration,
}

impl CpuReport {
    fn between(a: &CpuSnap, b: &CpuSnap) -> CpuReport {
        let wall = b.at.duration_since(a.at);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        let d: Vec<f64> = a
            .machine
            .iter()
            .zip(b.machine.iter())
            .map(|(x, y)| y.saturating_sub(*x) as f64)
            .collect();
        let total: f64 = d.iter().sum();
        let idle = d[3] + d[4];
        // /proc/stat counts every core in USER_HZ ticks: derive the tick rate from it.
        let hz = if wall.as_secs_f64() > 0.0 && total > 0.0 {
            total / (wall.as_secs_f64() * cores)
        } else {
            100.0
        };
        let to_pct = |ticks: f64| ticks / hz / wall.as_secs_f64().max(1e-9) * 100.0;
        let bench_lapin = BENCH_LAPIN_THREADS
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let http = HTTP_WORKER_THREADS
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let mut by: BTreeMap<Who, f64> = BTreeMap::new();
        for (tid, (comm, t)) in &b.threads {
            let before = a.threads.get(tid).map_or(0, |x| x.1);
            let who = Who::of_thread(comm, *tid, &bench_lapin, &http);
            *by.entry(who).or_default() += to_pct(t.saturating_sub(before) as f64);
        }
        for (pid, (who, t)) in &b.procs {
            let before = a.procs.get(pid).map_or(0, |x| x.1);
            *by.entry(*who).or_default() += to_pct(t.saturating_sub(before) as f64);
        }
        CpuReport {
            machine_busy: to_pct(total - idle),
            irq: to_pct(d[5] + d[6]),
            steal: to_pct(d[7]),
            cores,
            by,
            wall,
        }
    }

    fn of(&self, who: Who) -> f64 {
        self.by.get(&who).copied().unwrap_or(0.0)
    }

    /// Core-seconds a group used.
    fn core_seconds(&self, who: Who) -> f64 {
        self.of(who) / 100.0 * self.wall.as_secs_f64()
    }

    fn server(&self) -> f64 {
        self.of(Who::HttpWorkers)
            + self.of(Who::Arbiters)
            + self.of(Who::Writer)
            + self.of(Who::ServerAmqp)
    }

    fn print(&self) {
        if let Ok(mut worst) = FOREIGN_CPU_MAX.lock() {
            *worst = worst.max(self.of(Who::OtherProcs));
        }
        let mut parts: Vec<String> = self
            .by
            .iter()
            .filter(|(_, p)| **p >= 0.5)
            .map(|(w, p)| format!("{} {p:.0}%", w.label()))
            .collect();
        if parts.is_empty() {
            parts.push("nothing measurable".into());
        }
        println!(
            "  CPU (% of one core; {:.0}% = all {} cores): machine busy {:.0}% (irq+softirq {:.0}%, steal {:.0}%); {}",
            self.cores * 100.0,
            self.cores,
            self.machine_busy,
            self.irq,
            self.steal,
            parts.join(", ")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal keep-alive HTTP/1.1 client (Content-Length bodies only: what actix-web sends here)

struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    consumed: usize,
}

struct Head {
    len: usize,
    status: u16,
    content_length: usize,
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

fn parse_head(buf: &[u8]) -> std::io::Result<Option<Head>> {
    let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err(invalid("a response head over 64 KiB"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..pos]).map_err(|_| invalid("a non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("a response without a status line"))?;
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.trim().parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(invalid(
                "chunked responses are not supported by this client",
            ));
        }
    }
    let content_length = match (content_length, status) {
        (Some(n), _) => n,
        (None, 204 | 304) => 0,
        (None, _) => return Err(invalid("a response without Content-Length")),
    };
    Ok(Some(Head {
        len: pos + 4,
        status,
        content_length,
    }))
}

impl HttpConn {
    async fn open(addr: SocketAddr) -> Res<HttpConn> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("TCP_NODELAY: {e}"))?;
        Ok(HttpConn {
            stream,
            buf: Vec::with_capacity(16 * 1024),
            consumed: 0,
        })
    }

    /// Sends one request and reads its response: the status and the body's range in the buffer.
    async fn call(&mut self, req: &[u8]) -> std::io::Result<(u16, Range<usize>)> {
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.stream.write_all(req).await?;
        loop {
            if let Some(head) = parse_head(&self.buf)? {
                let end = head.len + head.content_length;
                while self.buf.len() < end {
                    self.fill().await?;
                }
                self.consumed = end;
                return Ok((head.status, head.len..end));
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }

    fn body(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    async fn json(
        &mut self,
        host: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        let text = body.map(Value::to_string);
        let req = http_request(host, method, path, token, text.as_deref());
        let (status, range) = self
            .call(&req)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let bytes = self.body(range);
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
        };
        Ok((status, value))
    }

    async fn text(&mut self, host: &str, path: &str) -> Res<String> {
        let req = http_request(host, "GET", path, None, None);
        let (status, range) = self
            .call(&req)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if status != 200 {
            return Err(format!("GET {path}: status {status}"));
        }
        Ok(String::from_utf8_lossy(self.body(range)).into_owned())
    }
}

fn http_request(
    host: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(t) = token {
        let _ = write!(r, "Authorization: Bearer {t}\r\n");
    }
    match body {
        Some(b) => {
            let _ = write!(
                r,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
        }
        None => r.push_str("\r\n"),
    }
    r.into_bytes()
}

async fn open_conns(addr: SocketAddr, n: usize) -> Res<Vec<HttpConn>> {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(HttpConn::open(addr).await?);
    }
    Ok(conns)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// The generation id in a create answer (`{"id":"…",…}`).
fn created_id(body: &[u8]) -> Option<String> {
    let key = b"\"id\":\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let id = body.get(at..at + 36)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

/// What a load phase sends: prebuilt requests (one per user), the expected status.
struct LoadSpec {
    requests: Arc<Vec<Vec<u8>>>,
    expect: u16,
    collect_ids: bool,
    /// Stop after this many successes in all (shared), if set.
    limit: Option<Arc<AtomicU64>>,
    limit_max: u64,
}

/// Every connection loops for `duration`: a random request, its response, its latency.
/// Returns the connections (for the next window), the figures and, with `collect_ids`, the
/// (request index, generation id) of each success.
async fn http_load(
    addr: SocketAddr,
    conns: Vec<HttpConn>,
    spec: &LoadSpec,
    duration: Duration,
    seed: u64,
) -> Res<(Vec<HttpConn>, Run, Vec<(usize, String)>)> {
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(c, mut conn)| {
            let requests = spec.requests.clone();
            let (expect, collect) = (spec.expect, spec.collect_ids);
            let limit = spec.limit.clone();
            let limit_max = spec.limit_max;
            tokio::spawn(async move {
                let mut rng = Rng::new(seed * 1_000_003 + c as u64 + 1);
                let mut tally = Tally::default();
                let mut ids = Vec::new();
                while Instant::now() < deadline {
                    if let Some(l) = &limit {
                        if l.fetch_add(1, Ordering::Relaxed) >= limit_max {
                            break;
                        }
                    }
                    let i = rng.below(requests.len());
                    let t = Instant::now();
                    match conn.call(&requests[i]).await {
                        Ok((status, body)) if status == expect => {
                            tally.record(t);
                            if collect {
                                if let Some(id) = created_id(conn.body(body)) {
                                    ids.push((i, id));
                                }
                            }
                        }
                        Ok((status, body)) => {
                            tally.refused += 1;
                            if tally.refused <= 2 {
                                eprintln!(
                                    "  unexpected status {status}: {}",
                                    String::from_utf8_lossy(conn.body(body))
                                );
                            }
                        }
                        Err(e) => {
                            tally.errors += 1;
                            if tally.errors <= 2 {
                                eprintln!("  request failed: {e}; reconnecting");
                            }
                            loop {
                                match HttpConn::open(addr).await {
                                    Ok(c) => {
                                        conn = c;
                                        break;
                                    }
                                    Err(_) if Instant::now() < deadline => {
                                        tokio::time::sleep(Duration::from_millis(10)).await;
                                    }
                                    Err(e) => return Err(e),
                                }
                            }
                        }
                    }
                }
                Ok::<_, String>((conn, tally, ids))
            })
        })
        .collect();
    let mut conns = Vec::with_capacity(handles.len());
    let mut tallies = Vec::with_capacity(handles.len());
    let mut all_ids = Vec::new();
    for h in handles {
        let (conn, tally, ids) = h
            .await
            .map_err(|e| format!("a client task failed: {e}"))??;
        conns.push(conn);
        tallies.push(tally);
        all_ids.extend(ids);
    }
    Ok((
        conns,
        Run::from(Tally::merge(tallies), started.elapsed()),
        all_ids,
    ))
}

// ---------------------------------------------------------------------------------------------
// The servers: one actix System on a thread of its own, building apps on request

struct AppInfo {
    port: u16,
    status: Arc<BrokerStatus>,
    admin_email: String,
}

enum Cmd {
    Build {
        vars: Vec<(String, String)>,
        reply: oneshot::Sender<Res<AppInfo>>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

struct Servers {
    commands: mpsc::UnboundedSender<Cmd>,
    bare_port: u16,
    thread: std::thread::JoinHandle<()>,
}

impl Servers {
    fn start() -> Res<Servers> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Res<u16>>();
        let thread = std::thread::Builder::new()
            .name("cf-server".into())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(server_main(rx, ready_tx));
            })
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        let bare_port = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("the server thread did not start: {e}"))??;
        Ok(Servers {
            commands: tx,
            bare_port,
            thread,
        })
    }

    async fn build(&self, vars: Vec<(String, String)>) -> Res<AppInfo> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Cmd::Build { vars, reply })
            .map_err(|_| "the server thread is gone".to_string())?;
        rx.await
            .map_err(|_| "the server thread is gone".to_string())?
    }

    async fn stop(self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Cmd::Stop { reply }).is_ok()
            && tokio::time::timeout(Duration::from_secs(40), rx)
                .await
                .is_err()
        {
            eprintln!("the servers did not stop within 40 s");
            return;
        }
        let _ = self.thread.join();
    }
}

async fn server_main(
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    ready: std::sync::mpsc::Sender<Res<u16>>,
) {
    // The bare route: the same actix-web, default worker count, one small JSON object.
    let bare = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            let port = l.local_addr()?.port();
            let server = HttpServer::new(|| {
                App::new().route(
                    "/bare",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(json!({"status": "ok", "service": "bare"}))
                    }),
                )
            })
            .listen(l)?
            .run();
            Ok((port, server))
        })
        .map_err(|e| format!("cannot start the bare server: {e}"));
    let (bare_port, bare_server) = match bare {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let bare_handle = bare_server.handle();
    let bare_task = actix_web::rt::spawn(bare_server);
    let _ = ready.send(Ok(bare_port));
    let mut apps: Vec<(
        ServerHandle,
        actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    )> = Vec::new();
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Cmd::Build { vars, reply } => match build_app(vars).await {
                Ok((info, app)) => {
                    let handle = app.server_handle();
                    apps.push((handle, actix_web::rt::spawn(app.run_until_stopped())));
                    let _ = reply.send(Ok(info));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Stop { reply } => {
                for (handle, _) in &apps {
                    handle.stop(true).await;
                }
                bare_handle.stop(true).await;
                for (_, task) in apps.drain(..) {
                    let _ = task.await;
                }
                let _ = bare_task.await;
                let _ = reply.send(());
                break;
            }
        }
    }
}

async fn build_app(vars: Vec<(String, String)>) -> Res<(AppInfo, Application)> {
    let config =
        AppConfig::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())?;
    let app = Application::build(config, Arc::new(LogMailer))
        .await
        .map_err(|e| format!("the application does not start: {e}"))?;
    let state = app.state();
    let admin_email = format!("admin-{}@example.com", Uuid::new_v4().simple());
    let hash = creativeflow::passwords::hash_password_now(PASSWORD).map_err(|e| e.to_string())?;
    create_user(
        &state.store,
        NewUser {
            email: Email::parse(&admin_email).map_err(|e| e.to_string())?,
            name: Name::parse("Bench admin", "name").map_err(|e| e.to_string())?,
            password_hash: hash,
            role: Role::Admin,
            signup_grant: 0,
        },
    )
    .await
    .map_err(|e| format!("cannot create the admin: {e}"))?;
    let info = AppInfo {
        port: app.port(),
        status: state.publisher.status.clone(),
        admin_email,
    };
    Ok((info, app))
}

/// The environment of one app: its data dir, port 0, the broker URL and a config file naming
/// the run's own queues.
fn app_vars(dir: &tempfile::TempDir, amqp: &str, names: &QueueNames) -> Res<Vec<(String, String)>> {
    let config_path = dir.path().join("creativeflow.toml");
    let text = format!(
        "[queues]\nexchange = \"{}\"\njobs = \"{}\"\nrouting_key = \"{ROUTING_KEY}\"\n\
         results = \"{}\"\nresults_dlq = \"{}\"\nconnection_name = \"{}\"\n",
        names.exchange(),
        names.jobs(),
        names.results(),
        names.dlq(),
        names.tag
    );
    std::fs::write(&config_path, text).map_err(|e| format!("cannot write the config: {e}"))?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create the data dir: {e}"))?;
    Ok(vec![
        (
            "CREATIVEFLOW_DATA_DIR".into(),
            data.to_string_lossy().into_owned(),
        ),
        ("CREATIVEFLOW_LISTEN".into(), "127.0.0.1:0".into()),
        ("CREATIVEFLOW_AMQP_URL".into(), amqp.into()),
        (
            "CREATIVEFLOW_CONFIG".into(),
            config_path.to_string_lossy().into_owned(),
        ),
    ])
}

fn temp_dir(what: &str) -> Res<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("creativeflow-bench-gen-{what}-"))
        .tempdir()
        .map_err(|e| format!("cannot create a temporary dir: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Users, workbenches, projects, credits: through the HTTP API

struct BenchUser {
    token: String,
    project: String,
}

async fn login(addr: SocketAddr, email: &str) -> Res<String> {
    let mut conn = HttpConn::open(addr).await?;
    let (status, v) = conn
        .json(
            &addr.to_string(),
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({"email": email, "password": PASSWORD})),
        )
        .await?;
    if status != 200 {
        return Err(format!("admin login: status {status}: {v}"));
    }
    v["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("admin login: no token in {v}"))
}

fn expect(status: u16, want: u16, what: &str, body: &Value) -> Res<()> {
    if status == want {
        Ok(())
    } else {
        Err(format!("{what}: status {status} (wanted {want}): {body}"))
    }
}

async fn setup_one(conn: &mut HttpConn, host: &str, admin: &str, email: &str) -> Res<BenchUser> {
    let (s, v) = conn
        .json(
            host,
            "POST",
            "/api/v1/auth/signup",
            None,
            Some(&json!({"email": email, "password": PASSWORD, "name": "Bench User"})),
        )
        .await?;
    expect(s, 201, "signup", &v)?;
    let token = v["token"].as_str().ok_or("signup: no token")?.to_string();
    let id = v["user"]["id"].as_str().ok_or("signup: no id")?.to_string();
    let (s, wb) = conn
        .json(
            host,
            "POST",
            "/api/v1/workbenches",
            Some(&token),
            Some(&json!({"name": "Bench workbench"})),
        )
        .await?;
    expect(s, 201, "create workbench", &wb)?;
    let (s, p) = conn
        .json(
            host,
            "POST",
            "/api/v1/projects",
            Some(&token),
            Some(&json!({"name": "Bench project", "workbench_id": wb["id"]})),
        )
        .await?;
    expect(s, 201, "create project", &p)?;
    let project = p["id"].as_str().ok_or("project: no id")?.to_string();
    let (s, v) = conn
        .json(
            host,
            "POST",
            &format!("/api/v1/admin/users/{id}/credits"),
            Some(admin),
            Some(&json!({"amount": USER_FLOAT, "description": "bench float"})),
        )
        .await?;
    expect(s, 201, "admin credit top-up", &v)?;
    Ok(BenchUser { token, project })
}

/// `n` users, each signed up, with a workbench, a project and `USER_FLOAT` more credits.
async fn setup_users(addr: SocketAddr, admin: &str, prefix: &str, n: usize) -> Res<Vec<BenchUser>> {
    let handles: Vec<_> = (0..SETUP_CONNECTIONS.min(n))
        .map(|w| {
            let (admin, prefix) = (admin.to_string(), prefix.to_string());
            tokio::spawn(async move {
                let host = addr.to_string();
                let mut conn = HttpConn::open(addr).await?;
                let mut out = Vec::new();
                for i in (w..n).step_by(SETUP_CONNECTIONS) {
                    let email = format!("{prefix}-{i}@example.com");
                    out.push((i, setup_one(&mut conn, &host, &admin, &email).await?));
                }
                Ok::<_, String>(out)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for h in handles {
        all.extend(h.await.map_err(|e| format!("a setup task failed: {e}"))??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, u)| u).collect())
}

fn prompt(chars: usize) -> String {
    PROMPT_SEED.chars().cycle().take(chars).collect()
}

fn create_requests(host: &str, users: &[BenchUser], prompt: &str) -> Vec<Vec<u8>> {
    users
        .iter()
        .map(|u| {
            let body = json!({"project_id": u.project, "prompt": prompt, "format": "banner"});
            http_request(
                host,
                "POST",
                "/api/v1/generation/create",
                Some(&u.token),
                Some(&body.to_string()),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ: names, drain consumers, the raw publisher, the gate, cleanup

struct QueueNames {
    tag: String,
}

impl QueueNames {
    fn new(kind: &str) -> QueueNames {
        QueueNames {
            tag: format!("bench-gen-{kind}-{}", Uuid::new_v4().simple()),
        }
    }
    fn exchange(&self) -> String {
        format!("{}.jobs_exchange", self.tag)
    }
    fn jobs(&self) -> String {
        format!("{}.jobs", self.tag)
    }
    fn results(&self) -> String {
        format!("{}.results", self.tag)
    }
    fn dlq(&self) -> String {
        format!("{}.results.dlq", self.tag)
    }
}

async fn amqp_connect(url: &str, name: &str) -> Res<Connection> {
    let before = lapin_threads();
    let props = ConnectionProperties::default().with_connection_name(name.to_string().into());
    let conn = tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, props))
        .await
        .map_err(|_| format!("connecting to the broker at {url} timed out"))?
        .map_err(|e| format!("cannot reach the broker at {url}: {e}"))?;
    claim_lapin_threads(&before);
    Ok(conn)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// A consumer with auto-ack emptying a queue as fast as the broker delivers (the workers).
struct Drain {
    conn: Connection,
    received: Arc<AtomicU64>,
    first: Arc<Mutex<Option<Vec<u8>>>>,
    /// (accepted at, delivered after) in ms for each delivery whose message id is a UUID v7:
    /// the server's message id is the generation id, made when the create is accepted.
    lags: Arc<Mutex<Vec<(u64, u32)>>>,
    task: tokio::task::JoinHandle<()>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The creation time (unix ms) in a UUID v7 message id.
fn id_ms(props: &BasicProperties) -> Option<u64> {
    let id = props.message_id().as_ref()?;
    let (secs, nanos) = Uuid::parse_str(id.as_str())
        .ok()?
        .get_timestamp()?
        .to_unix();
    Some(secs * 1000 + u64::from(nanos) / 1_000_000)
}

async fn start_drain(url: String, queue: String) -> Res<Drain> {
    let conn = amqp_connect(&url, &format!("{queue}-drain")).await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("drain channel: {e}"))?;
    // Declared exactly as the server declares its jobs queue (durable, no arguments).
    channel
        .queue_declare(queue.as_str().into(), durable(), FieldTable::default())
        .await
        .map_err(|e| format!("declare {queue}: {e}"))?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "bench-drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consume {queue}: {e}"))?;
    let received = Arc::new(AtomicU64::new(0));
    let first = Arc::new(Mutex::new(None));
    let lags = Arc::new(Mutex::new(Vec::new()));
    let (r, f, l) = (received.clone(), first.clone(), lags.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            if let Some(at) = id_ms(&delivery.properties) {
                let lag = u32::try_from(unix_ms().saturating_sub(at)).unwrap_or(u32::MAX);
                if let Ok(mut lags) = l.lock() {
                    lags.push((at, lag));
                }
            }
            if r.fetch_add(1, Ordering::Relaxed) == 0 {
                if let Ok(mut first) = f.lock() {
                    *first = Some(delivery.data);
                }
            }
        }
    });
    Ok(Drain {
        conn,
        received,
        first,
        lags,
        task,
    })
}

impl Drain {
    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn first(&self) -> Option<Vec<u8>> {
        self.first.lock().ok().and_then(|f| f.clone())
    }

    /// Sorted accept → delivery lags (ms) of the messages accepted within `[from, to)` (unix ms).
    fn lags_between(&self, from: u64, to: u64) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .lags
            .lock()
            .map(|l| {
                l.iter()
                    .filter(|(at, _)| (from..to).contains(at))
                    .map(|(_, lag)| *lag)
                    .collect()
            })
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    async fn stop(self) {
        let _ = self.conn.close(200, "bench done".into()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

struct RawRun {
    confirmed_in_window: u64,
    confirmed_total: u64,
    nacked: u64,
    window: Duration,
    p50_ms: f64,
    p99_ms: f64,
}

impl RawRun {
    fn per_s(&self) -> f64 {
        self.confirmed_in_window as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

async fn tracked(
    confirm: PublisherConfirm,
    sent: Instant,
) -> (Instant, Result<Confirmation, lapin::Error>) {
    (sent, confirm.await)
}

/// Publishes `payload` (persistent, mandatory, a message id each, like the server) with up to
/// `CONFIRM_WINDOW` unconfirmed, for `duration`; counts the confirms that arrive within it.
async fn raw_publish(
    channel: &Channel,
    exchange: &str,
    payload: &[u8],
    duration: Duration,
) -> Res<RawRun> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut inflight = FuturesUnordered::new();
    let (mut in_window, mut total, mut nacked) = (0u64, 0u64, 0u64);
    let mut lat_us: Vec<u32> = Vec::new();
    loop {
        while inflight.len() < CONFIRM_WINDOW && Instant::now() < deadline {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(Uuid::now_v7().to_string().into());
            let confirm = channel
                .basic_publish(
                    exchange.into(),
                    ROUTING_KEY.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    payload,
                    props,
                )
                .await
                .map_err(|e| format!("publish: {e}"))?;
            inflight.push(tracked(confirm, Instant::now()));
        }
        let Some((sent, result)) = inflight.next().await else {
            break;
        };
        match result {
            Ok(Confirmation::Ack(None)) => {
                total += 1;
                if Instant::now() <= deadline {
                    in_window += 1;
                    lat_us.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            Ok(_) => nacked += 1,
            Err(e) => return Err(format!("confirm: {e}")),
        }
    }
    lat_us.sort_unstable();
    let pct = |q: f64| {
        if lat_us.is_empty() {
            0.0
        } else {
            f64::from(lat_us[((lat_us.len() - 1) as f64 * q).round() as usize]) / 1000.0
        }
    };
    Ok(RawRun {
        confirmed_in_window: in_window,
        confirmed_total: total,
        nacked,
        window: duration,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

/// `amqp://user:pass@host:port/vhost` → (`amqp://user:pass@`, `host:port`, `/vhost`).
fn split_amqp(url: &str) -> Res<(String, String, String)> {
    let rest = url
        .strip_prefix("amqp://")
        .ok_or_else(|| format!("{url}: not an amqp:// URL"))?;
    let (auth, hostpart) = match rest.rfind('@') {
        Some(i) => (&rest[..=i], &rest[i + 1..]),
        None => ("", rest),
    };
    let (host, path) = match hostpart.find('/') {
        Some(i) => (&hostpart[..i], &hostpart[i..]),
        None => (hostpart, ""),
    };
    let host = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5672")
    };
    Ok((format!("amqp://{auth}"), host, path.to_string()))
}

/// Opens the gate: accepts what waited in the listen backlog and everything after, relaying
/// each connection to the broker.
fn open_gate(listener: std::net::TcpListener, upstream: String) -> Res<()> {
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("the gate listener: {e}"))?;
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    Ok(())
}

async fn delete_broker_objects(url: &str, queues: &[String], exchanges: &[String]) -> Res<()> {
    let conn = amqp_connect(url, "bench-gen-cleanup").await?;
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| format!("cleanup channel: {e}"))?;
    for q in queues {
        if let Err(e) = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("  could not delete queue {q}: {e}");
        }
    }
    for x in exchanges {
        if let Err(e) = channel
            .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
            .await
        {
            eprintln!("  could not delete exchange {x}: {e}");
        }
    }
    let _ = conn.close(200, "bench done".into()).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run

fn run() -> Res<()> {
    let cfg = Cfg::from_env()?;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    let amqp = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-amqp")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the AMQP runtime: {e}"))?;
    let proxy = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-proxy")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the relay runtime: {e}"))?;
    let result = client.block_on(orchestrate(&cfg, amqp.handle(), proxy.handle()));
    proxy.shutdown_timeout(Duration::from_secs(1));
    amqp.shutdown_timeout(Duration::from_secs(1));
    client.shutdown_timeout(Duration::from_secs(1));
    result
}

/// What the create phase hands to the later ones.
struct Created {
    run: Run,
    confirmed_per_s: f64,
    ids: Vec<(usize, String)>,
    job_bytes: Option<Vec<u8>>,
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
    // What else runs on the machine before we start (a build or a test suite skews everything).
    let idle_a = CpuSnap::take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = CpuReport::between(&idle_a, &CpuSnap::take());
    println!(
        "  machine before the run: busy {:.0}% of {:.0}% ({:.0}% other processes)",
        idle.machine_busy,
        idle.cores * 100.0,
        idle.of(Who::OtherProcs)
    );
    if idle.machine_busy > 20.0 {
        summary.notes.push(format!(
            "The machine was already {:.0}% busy (of {:.0}%) before the run: other work skews these figures.",
            idle.machine_busy,
            idle.cores * 100.0
        ));
    }
    let main_names = QueueNames::new("main");
    let backlog_names = QueueNames::new("backlog");
    let raw_queue = format!("{}.raw", main_names.tag);
    let raw_exchange = format!("{}.raw_exchange", main_names.tag);
    let dir_main = temp_dir("main")?;
    let dir_backlog = temp_dir("backlog")?;
    let servers = Servers::start()?;

    let outcome = phases(
        cfg,
        amqp,
        proxy,
        &servers,
        &main_names,
        &backlog_names,
        (&raw_queue, &raw_exchange),
        (&dir_main, &dir_backlog),
        &mut summary,
    )
    .await;

    // Cleanup whatever happened: stop the servers (their bus first), then delete our queues.
    servers.stop().await;
    let mut queues = vec![raw_queue.clone()];
    let mut exchanges = vec![raw_exchange.clone()];
    for n in [&main_names, &backlog_names] {
        queues.extend([n.jobs(), n.results(), n.dlq()]);
        exchanges.push(n.exchange());
    }
    let url = cfg.amqp.clone();
    match amqp
        .spawn(async move { delete_broker_objects(&url, &queues, &exchanges).await })
        .await
    {
        Ok(Ok(())) => println!("\nbroker cleanup: deleted the run's queues and exchanges"),
        Ok(Err(e)) => eprintln!("broker cleanup failed: {e}"),
        Err(e) => eprintln!("broker cleanup task failed: {e}"),
    }
    outcome?;
    let foreign = FOREIGN_CPU_MAX.lock().map(|v| *v).unwrap_or(0.0);
    summary.notes.push(format!(
        "Processes foreign to the benchmark (not this process, RabbitMQ or PostgreSQL; kernel threads included) used at most {foreign:.0}% of a core in any measured phase{}.",
        if foreign > 10.0 {
            ": the figures are skewed by other work on the machine"
        } else {
            ""
        }
    ));
    summary.row(
        "Benchmark wall time (setup included)",
        format!("{:.0} s", wall.elapsed().as_secs_f64()),
    );
    summary.print(cfg);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn phases(
    cfg: &Cfg,
    amqp: &tokio::runtime::Handle,
    proxy: &tokio::runtime::Handle,
    servers: &Servers,
    main_names: &QueueNames,
    backlog_names: &QueueNames,
    (raw_queue, raw_exchange): (&str, &str),
    (dir_main, dir_backlog): (&tempfile::TempDir, &tempfile::TempDir),
    summary: &mut Summary,
) -> Res<()> {
    // ---- the main app, on the real broker
    println!();
    println!("== 0. Setup");
    let t = Instant::now();
    let drain_main = {
        let (url, q) = (cfg.amqp.clone(), main_names.jobs());
        amqp.spawn(start_drain(url, q))
            .await
            .map_err(|e| e.to_string())??
    };
    let app = servers
        .build(app_vars(dir_main, &cfg.amqp, main_names)?)
        .await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    let host = addr.to_string();
    let connected_by = Instant::now() + Duration::from_secs(15);
    while !(app.status.publisher_connected.load(Ordering::Relaxed)
        && app.status.consumer_connected.load(Ordering::Relaxed))
    {
        if Instant::now() > connected_by {
            return Err(format!(
                "the server's publisher did not connect to {} within 15 s: {:?}",
                cfg.amqp,
                app.status.last_error.lock().clone()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let workers = find_http_workers(addr, "/healthz").await?;
    let bare_workers = find_http_workers(
        SocketAddr::from(([127, 0, 0, 1], servers.bare_port)),
        "/bare",
    )
    .await?;
    println!("  HTTP worker threads found by load: server {workers}, bare route {bare_workers}");
    let admin = login(addr, &app.admin_email).await?;
    let users = setup_users(addr, &admin, &main_names.tag, cfg.users).await?;
    let setup_time = t.elapsed();
    println!(
        "  server on {host}, publisher connected; {} users signed up, each with a workbench, a project \
         and +{} credits, in {:.1} s ({} HTTP requests, signups hash with Argon2id)",
        thousands(users.len() as u64),
        thousands(USER_FLOAT as u64),
        setup_time.as_secs_f64(),
        thousands(users.len() as u64 * 4 + 1)
    );
    summary.row(
        format!(
            "Setup: {} users via signup + workbench + project + admin top-up",
            thousands(users.len() as u64)
        ),
        format!("{:.1} s", setup_time.as_secs_f64()),
    );

    let created = create_phase(cfg, addr, &users, &drain_main, summary).await?;

    if cfg.runs("status") {
        status_phase(cfg, addr, servers.bare_port, &users, &created.ids, summary).await?;
    }

    let job_len = created.job_bytes.as_ref().map_or(400, Vec::len);
    let mut raw: Option<RawRun> = None;
    if cfg.runs("lapin") {
        let payload = created
            .job_bytes
            .clone()
            .unwrap_or_else(|| vec![b'x'; job_len]);
        raw = Some(lapin_phase(cfg, amqp, raw_queue, raw_exchange, payload).await?);
    }
    drain_main.stop().await;

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
        Some(
            backlog_phase(
                cfg,
                amqp,
                proxy,
                servers,
                backlog_names,
                dir_backlog,
                summary,
            )
            .await?,
        )
    } else {
        None
    };

    // ---- ratios
    println!();
    println!("== Ratios");
    let create_rate = created.run.ops_per_s();
    if let Some((pg_run, settings)) = &pg {
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
    if let Some(raw) = &raw {
        summary.row(
            format!(
                "Raw lapin: persistent {job_len}-byte publishes with confirms (window {CONFIRM_WINDOW}), durable queue, drained"
            ),
            format!(
                "{} msg/s; confirm p50 {:.1} ms, p99 {:.1} ms",
                rate(raw.per_s()),
                raw.p50_ms,
                raw.p99_ms
            ),
        );
        let r = created.confirmed_per_s / raw.per_s().max(1e-9);
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
        if let Some(b) = &backlog {
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
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. POST /api/v1/generation/create

async fn metrics_text(addr: SocketAddr) -> Res<String> {
    HttpConn::open(addr)
        .await?
        .text(&addr.to_string(), "/metrics")
        .await
}

async fn readyz(addr: SocketAddr) -> Res<Value> {
    let (status, v) = HttpConn::open(addr)
        .await?
        .json(&addr.to_string(), "GET", "/readyz", None, None)
        .await?;
    expect(status, 200, "/readyz", &v)?;
    Ok(v)
}

async fn create_phase(
    cfg: &Cfg,
    addr: SocketAddr,
    users: &[BenchUser],
    drain: &Drain,
    summary: &mut Summary,
) -> Res<Created> {
    println!();
    println!(
        "== 1. POST /api/v1/generation/create: {} connections, {} users, format banner (1 credit), prompt {} chars",
        cfg.connections,
        thousands(users.len() as u64),
        cfg.prompt_chars
    );
    let host = addr.to_string();
    let spec = LoadSpec {
        requests: Arc::new(create_requests(&host, users, &prompt(cfg.prompt_chars))),
        expect: 202,
        collect_ids: true,
        limit: None,
        limit_max: 0,
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
    warm.print("warm-up (not counted)");

    let spec = LoadSpec {
        collect_ids: false,
        ..spec
    };
    let before = metrics_text(addr).await?;
    let confirmed_before = metric(&before, "creativeflow_jobs_confirmed_total").unwrap_or(0.0);
    // Samples /metrics once a second during the window: lag p99 and the outbox backlog.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut samples: Vec<(f64, f64)> = Vec::new();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if !sampling.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(text) = metrics_text(addr).await {
                    samples.push((
                        metric(&text, "creativeflow_publish_lag_p99_seconds").unwrap_or(0.0),
                        metric(&text, "creativeflow_outbox_backlog").unwrap_or(0.0),
                    ));
                }
            }
            samples
        })
    };
    let cpu_a = CpuSnap::take();
    let window_start_ms = unix_ms();
    let drained_before = drain.received();
    let (_conns, run, _) =
        http_load(addr, conns, &spec, Duration::from_secs(cfg.seconds), 2).await?;
    let cpu_b = CpuSnap::take();
    let window_end = Instant::now();
    let window_end_ms = unix_ms();
    let after = metrics_text(addr).await?;
    let drained_in_window = drain.received() - drained_before;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.map_err(|e| e.to_string())?;
    let confirmed_after = metric(&after, "creativeflow_jobs_confirmed_total").unwrap_or(0.0);
    let lag_end_ms = metric(&after, "creativeflow_publish_lag_p99_seconds").unwrap_or(0.0) * 1000.0;
    let backlog_end = metric(&after, "creativeflow_outbox_backlog").unwrap_or(0.0);
    let lag_max_ms = samples
        .iter()
        .map(|s| s.0 * 1000.0)
        .fold(lag_end_ms, f64::max);
    let backlog_max = samples.iter().map(|s| s.1).fold(backlog_end, f64::max);
    println!(
        "  1-s samples during the window: outbox backlog [{}], publish lag p99 ms [{}]",
        samples
            .iter()
            .map(|s| format!("{}", s.1))
            .collect::<Vec<_>>()
            .join(", "),
        samples
            .iter()
            .map(|s| format!("{:.0}", s.0 * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    run.print("POST /generation/create (202 accepted)");
    let cpu = CpuReport::between(&cpu_a, &cpu_b);
    cpu.print();
    let confirmed = confirmed_after - confirmed_before;
    let confirmed_per_s = confirmed / run.elapsed.as_secs_f64();
    println!(
        "  broker-confirmed jobs during the window (creativeflow_jobs_confirmed_total): {} = {} jobs/s \
         ({:.1}% of accepted); drain consumer received {}",
        thousands(confirmed as u64),
        rate(confirmed_per_s),
        confirmed / run.ops.max(1) as f64 * 100.0,
        thousands(drained_in_window)
    );
    println!(
        "  outbox backlog: {} at the end of the window (max of 1-s samples {}); publish lag p99 \
         (recent 4096 jobs) at the end {:.1} ms, max of 1-s samples {:.1} ms",
        backlog_end, backlog_max, lag_end_ms, lag_max_ms
    );
    // Wait for the outbox to empty: every accepted job confirmed by the broker.
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
    let client_us = cpu.core_seconds(Who::Client) * 1e6 / (run.ops.max(1) as f64);
    println!(
        "  load generator: {:.0}% of one core = {:.1} µs CPU per request; server (HTTP workers + actors + writer + lapin) {:.0}%; RabbitMQ {:.0}%",
        cpu.of(Who::Client),
        client_us,
        cpu.server(),
        cpu.of(Who::RabbitMq)
    );
    // The true lag of every job accepted in the window, from the drain consumer: the message id
    // is the generation id (UUID v7, made at accept), so accept → delivered to a consumer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lags = drain.lags_between(window_start_ms, window_end_ms);
    let lag_pct = |q: f64| {
        if lags.is_empty() {
            0.0
        } else {
            f64::from(lags[((lags.len() - 1) as f64 * q).round() as usize])
        }
    };
    let (true_p50, true_p99, true_max) = (lag_pct(0.5), lag_pct(0.99), lag_pct(1.0));
    let late = lags.iter().filter(|l| **l > 1000).count();
    println!(
        "  accept → delivered to the drain consumer, the {} jobs accepted in the window (message-id \
         timestamps, ms precision): p50 {true_p50:.0} ms, p99 {true_p99:.0} ms, max {true_max:.0} ms; \
         {} jobs ({:.2}%) over 1 s",
        thousands(lags.len() as u64),
        thousands(late as u64),
        late as f64 / lags.len().max(1) as f64 * 100.0
    );
    if true_p99 > 2.0 * lag_max_ms.max(lag_end_ms) && true_p99 > 500.0 {
        let note = format!(
            "Publish lag: `creativeflow_publish_lag_p99_seconds` read {lag_end_ms:.0} ms at the end of the create \
             window (max {lag_max_ms:.0} ms in 1-s samples), but {} jobs accepted in the window ({:.2}%) \
             reached the queue more than 1 s after acceptance (p99 {true_p99:.0} ms, max {true_max:.0} ms): \
             the gauge counts confirmed jobs only, so jobs still waiting in the outbox do not show in it. \
             The outbox held {backlog_end} jobs at the end of the window and emptied {} after the load stopped.",
            thousands(late as u64),
            late as f64 / lags.len().max(1) as f64 * 100.0,
            drain_time.map_or("not within 60 s".to_string(), |d| format!("{:.0} ms", ms(d)))
        );
        println!("  NOTE: {note}");
        summary.notes.push(note);
    }
    let job_bytes = drain.first();
    if let Some(j) = &job_bytes {
        println!("  a job message on the queue is {} bytes", j.len());
    }

    summary.row(
        format!(
            "Accepted creates, `POST /api/v1/generation/create` ({} conns, {} users, publisher live)",
            cfg.connections,
            thousands(users.len() as u64)
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
            rate(confirmed_per_s),
            confirmed / run.ops.max(1) as f64 * 100.0
        ),
    );
    summary.row(
        "Publish lag p99 as the server reports it, accept → broker confirm (target < 500 ms)",
        format!(
            "**{:.1} ms** at window end (`/metrics`), max of 1-s samples {:.1} ms ({}); `/readyz` after the outbox emptied {:.1} ms",
            lag_end_ms,
            lag_max_ms,
            verdict(lag_max_ms.max(lag_end_ms) < 500.0),
            readyz_lag
        ),
    );
    summary.row(
        "Lag of every job accepted in the window, accept → delivered to a consumer (measured by the bench; target < 500 ms at p99)",
        format!(
            "p50 {true_p50:.0} ms, **p99 {true_p99:.0} ms**, max {true_max:.0} ms; {} jobs over 1 s ({})",
            thousands(late as u64),
            verdict(true_p99 < 500.0)
        ),
    );
    summary.row(
        "Outbox backlog during the window (max of 1-s samples) / time to empty after",
        format!(
            "{} / {}",
            backlog_max,
            drain_time.map_or("not within 60 s".to_string(), |d| format!(
                "{:.0} ms",
                ms(d)
            ))
        ),
    );
    summary.row(
        "CPU during the create window (% of one core, 200% = machine)",
        format!(
            "machine {:.0}%: load generator {:.0}% ({:.1} µs/request), HTTP workers {:.0}%, actors+bus {:.0}%, writer {:.0}%, server lapin {:.0}%, drain consumer {:.0}%, RabbitMQ {:.0}%, irq+softirq {:.0}%, other processes {:.0}%",
            cpu.machine_busy,
            cpu.of(Who::Client),
            client_us,
            cpu.of(Who::HttpWorkers),
            cpu.of(Who::Arbiters),
            cpu.of(Who::Writer),
            cpu.of(Who::ServerAmqp),
            cpu.of(Who::BenchAmqp),
            cpu.of(Who::RabbitMq),
            cpu.irq,
            cpu.of(Who::OtherProcs)
        ),
    );
    // One id per user for the status phase: the last one seen.
    ids.sort_by_key(|(i, _)| *i);
    ids.dedup_by_key(|(i, _)| *i);
    Ok(Created {
        run,
        confirmed_per_s,
        ids,
        job_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// 2. GET /api/v1/generation/{id}/status beside a bare actix-web route

async fn status_phase(
    cfg: &Cfg,
    addr: SocketAddr,
    bare_port: u16,
    users: &[BenchUser],
    ids: &[(usize, String)],
    summary: &mut Summary,
) -> Res<()> {
    println!();
    println!(
        "== 2. GET /api/v1/generation/{{id}}/status ({} requests known) vs a bare actix-web JSON route, {} connections",
        thousands(ids.len() as u64),
        cfg.connections
    );
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
    let mut results = Vec::new();
    for (label, target, requests) in [
        ("bare actix-web route", bare_addr, bare_requests),
        ("GET /generation/{id}/status", addr, status_requests),
    ] {
        let spec = LoadSpec {
            requests: Arc::new(requests),
            expect: 200,
            collect_ids: false,
            limit: None,
            limit_max: 0,
        };
        let conns = open_conns(target, cfg.connections).await?;
        let (conns, warm, _) = http_load(
            target,
            conns,
            &spec,
            Duration::from_secs(cfg.warmup.max(1)),
            3,
        )
        .await?;
        warm.print(&format!("{label} warm-up (not counted)"));
        let a = CpuSnap::take();
        let (_conns, run, _) =
            http_load(target, conns, &spec, Duration::from_secs(cfg.seconds), 4).await?;
        let b = CpuSnap::take();
        run.print(label);
        let cpu = CpuReport::between(&a, &b);
        cpu.print();
        results.push((run, cpu));
    }
    let (bare, bare_cpu) = &results[0];
    let (status, status_cpu) = &results[1];
    let r = status.ops_per_s() / bare.ops_per_s().max(1e-9);
    println!(
        "  RATIO status / bare route: {:.1}% (target >= 60%: {})",
        r * 100.0,
        verdict(r >= 0.6)
    );
    let per_req =
        |cpu: &CpuReport, run: &Run| cpu.core_seconds(Who::Client) * 1e6 / (run.ops.max(1) as f64);
    summary.row(
        format!("Bare actix-web JSON route, same client ({} conns)", cfg.connections),
        format!(
            "{} req/s; p50 {:.2} ms, p99 {:.2} ms; load generator {:.0}% of a core ({:.1} µs/req), HTTP workers {:.0}%",
            rate(bare.ops_per_s()),
            bare.p50_ms,
            bare.p99_ms,
            bare_cpu.of(Who::Client),
            per_req(bare_cpu, bare),
            bare_cpu.of(Who::HttpWorkers)
        ),
    );
    summary.row(
        "`GET /api/v1/generation/{id}/status`",
        format!(
            "{} req/s; p50 {:.2} ms, p99 {:.2} ms; load generator {:.0}% of a core ({:.1} µs/req), HTTP workers {:.0}%",
            rate(status.ops_per_s()),
            status.p50_ms,
            status.p99_ms,
            status_cpu.of(Who::Client),
            per_req(status_cpu, status),
            status_cpu.of(Who::HttpWorkers)
        ),
    );
    summary.row(
        "**Ratio status / bare route** (target >= 60%)",
        format!("**{:.1}%** ({})", r * 100.0, verdict(r >= 0.6)),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. Raw lapin publishes with confirms

async fn lapin_phase(
    cfg: &Cfg,
    amqp: &tokio::runtime::Handle,
    queue: &str,
    exchange: &str,
    payload: Vec<u8>,
) -> Res<RawRun> {
    println!();
    println!(
        "== 3. Raw lapin: persistent {}-byte publishes, confirms, window {CONFIRM_WINDOW}, durable queue (drained)",
        payload.len()
    );
    let url = cfg.amqp.clone();
    let drain = amqp
        .spawn(start_drain(url.clone(), queue.to_string()))
        .await
        .map_err(|e| e.to_string())??;
    let (queue, exchange) = (queue.to_string(), exchange.to_string());
    let (warmup, seconds) = (cfg.warmup.max(1), cfg.seconds);
    let task = amqp.spawn(async move {
        let conn = amqp_connect(&url, "bench-gen-raw-publisher").await?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| format!("channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("confirm.select: {e}"))?;
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("exchange: {e}"))?;
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                ROUTING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let warm = raw_publish(&channel, &exchange, &payload, Duration::from_secs(warmup)).await?;
        let a = CpuSnap::take();
        let run = raw_publish(&channel, &exchange, &payload, Duration::from_secs(seconds)).await?;
        let b = CpuSnap::take();
        let _ = conn.close(200, "bench done".into()).await;
        Ok::<_, String>((warm, run, CpuReport::between(&a, &b)))
    });
    let outcome = task.await.map_err(|e| e.to_string());
    let received = drain.received();
    drain.stop().await;
    let (warm, run, cpu) = outcome??;
    println!(
        "  warm-up (not counted): {} confirmed",
        thousands(warm.confirmed_total)
    );
    println!(
        "  raw lapin: {} confirmed within {:.0} s = {} msg/s (confirm latency p50 {:.1} ms, p99 {:.1} ms); \
         {} confirmed in all, {} nacked/returned; drain consumer received {}",
        thousands(run.confirmed_in_window),
        run.window.as_secs_f64(),
        rate(run.per_s()),
        run.p50_ms,
        run.p99_ms,
        thousands(run.confirmed_total),
        run.nacked,
        thousands(received)
    );
    cpu.print();
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// 4. The PostgreSQL baseline (as benches/credits.rs)

async fn postgres_phase(cfg: &Cfg) -> Res<(Run, String)> {
    println!();
    println!(
        "== 4. PostgreSQL baseline: {} accounts, {} clients, guarded UPDATE + ledger INSERT per transaction",
        thousands(cfg.users as u64),
        cfg.pg_clients
    );
    let pg_err = |e: tokio_postgres::Error| e.to_string();
    let admin = pg_connect(&cfg.pg).await?;
    let show = |name: &'static str| {
        let admin = &admin;
        async move {
            admin
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|r| r.get::<_, String>(0))
                .unwrap_or_else(|e| format!("? ({e})"))
        }
    };
    let version = show("server_version").await;
    let sync_commit = show("synchronous_commit").await;
    let fsync = show("fsync").await;
    let settings = format!("PostgreSQL {version}, synchronous_commit={sync_commit}, fsync={fsync}");
    println!("  server: {settings}");
    admin
        .batch_execute(
            "DROP TABLE IF EXISTS bench_gen_ledger; DROP TABLE IF EXISTS bench_gen_accounts;
             CREATE TABLE bench_gen_accounts(id int primary key, balance bigint not null);
             CREATE TABLE bench_gen_ledger(id bigserial primary key, account_id int not null,
                 amount bigint not null, created_at timestamptz default now());",
        )
        .await
        .map_err(pg_err)?;
    let result = async {
        let accounts = i32::try_from(cfg.users).map_err(|_| "too many accounts".to_string())?;
        admin
            .execute(
                "INSERT INTO bench_gen_accounts(id, balance) SELECT g, $1 FROM generate_series(1, $2) g",
                &[&USER_FLOAT, &accounts],
            )
            .await
            .map_err(pg_err)?;
        admin
            .batch_execute("VACUUM ANALYZE bench_gen_accounts")
            .await
            .map_err(pg_err)?;
        let mut clients = Vec::with_capacity(cfg.pg_clients);
        for _ in 0..cfg.pg_clients {
            clients.push(pg_connect(&cfg.pg).await?);
        }
        let (clients, warm) =
            pg_load(clients, "bench_gen", accounts, Duration::from_secs(cfg.warmup.max(1)), 1).await?;
        warm.print("warm-up (not counted)");
        let a = CpuSnap::take();
        let (_clients, run) =
            pg_load(clients, "bench_gen", accounts, Duration::from_secs(cfg.seconds), 2).await?;
        let b = CpuSnap::take();
        run.print("PostgreSQL");
        CpuReport::between(&a, &b).print();
        Ok::<Run, String>(run)
    }
    .await;
    if let Err(e) = admin
        .batch_execute(
            "DROP TABLE IF EXISTS bench_gen_ledger; DROP TABLE IF EXISTS bench_gen_accounts;",
        )
        .await
    {
        eprintln!("could not drop the PostgreSQL bench tables: {e}");
    }
    result.map(|run| (run, settings))
}

// ---------------------------------------------------------------------------------------------
// 5. The publisher draining a backlog

struct Backlog {
    drain_per_s: f64,
}

async fn backlog_phase(
    cfg: &Cfg,
    amqp: &tokio::runtime::Handle,
    proxy: &tokio::runtime::Handle,
    servers: &Servers,
    names: &QueueNames,
    dir: &tempfile::TempDir,
    summary: &mut Summary,
) -> Res<Backlog> {
    println!();
    println!(
        "== 5. Publisher drain: {} jobs accepted while the broker is unreachable, then the gate opens",
        thousands(cfg.backlog)
    );
    let drain = {
        let (url, q) = (cfg.amqp.clone(), names.jobs());
        amqp.spawn(start_drain(url, q))
            .await
            .map_err(|e| e.to_string())??
    };
    let result = backlog_inner(cfg, proxy, servers, names, dir, &drain, summary).await;
    drain.stop().await;
    result
}

async fn backlog_inner(
    cfg: &Cfg,
    proxy: &tokio::runtime::Handle,
    servers: &Servers,
    names: &QueueNames,
    dir: &tempfile::TempDir,
    drain: &Drain,
    summary: &mut Summary,
) -> Res<Backlog> {
    // The gate: a port that accepts nothing yet (connections wait in the listen backlog).
    let gate = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("gate: {e}"))?;
    gate.set_nonblocking(true)
        .map_err(|e| format!("gate: {e}"))?;
    let gate_port = gate.local_addr().map_err(|e| format!("gate: {e}"))?.port();
    let (prefix, upstream, vhost) = split_amqp(&cfg.amqp)?;
    let gated_url = format!("{prefix}127.0.0.1:{gate_port}{vhost}");
    let app = servers.build(app_vars(dir, &gated_url, names)?).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    find_http_workers(addr, "/healthz").await?;
    let admin = login(addr, &app.admin_email).await?;
    let users = setup_users(addr, &admin, &names.tag, cfg.connections).await?;
    let spec = LoadSpec {
        requests: Arc::new(create_requests(
            &addr.to_string(),
            &users,
            &prompt(cfg.prompt_chars),
        )),
        expect: 202,
        collect_ids: false,
        limit: Some(Arc::new(AtomicU64::new(0))),
        limit_max: cfg.backlog,
    };
    let conns = open_conns(addr, cfg.connections).await?;
    let a = CpuSnap::take();
    let (_conns, fill, _) = http_load(addr, conns, &spec, Duration::from_secs(60), 5).await?;
    let b = CpuSnap::take();
    fill.print("fill: creates accepted with the broker unreachable");
    let fill_cpu = CpuReport::between(&a, &b);
    fill_cpu.print();
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
    let confirmed_before = app.status.confirmed_total.load(Ordering::Relaxed);

    let a = CpuSnap::take();
    let opened = Instant::now();
    proxy
        .spawn(async move { open_gate(gate, upstream) })
        .await
        .map_err(|e| e.to_string())??;
    let mut first: Option<Duration> = None;
    let limit = opened + Duration::from_secs(120);
    let done = loop {
        let confirmed = app.status.confirmed_total.load(Ordering::Relaxed) - confirmed_before;
        if confirmed > 0 && first.is_none() {
            first = Some(opened.elapsed());
        }
        if confirmed >= backlog {
            break Some(opened.elapsed());
        }
        if Instant::now() > limit {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let b = CpuSnap::take();
    let Some(done) = done else {
        return Err(format!(
            "the backlog did not drain within 120 s ({} of {} confirmed)",
            app.status.confirmed_total.load(Ordering::Relaxed) - confirmed_before,
            backlog
        ));
    };
    let first = first.unwrap_or(done);
    let drain_per_s = backlog as f64 / (done - first).as_secs_f64().max(1e-9);
    let after = readyz(addr).await?;
    println!(
        "  gate opened: first confirm after {:.0} ms (connect + declare), all {} confirmed after {:.0} ms \
         = {} jobs/s from the first confirm ({} jobs/s including the connect); outbox now {}, \
         /readyz publish_lag_p99_ms {:.0} (a backlog's lag is its age)",
        ms(first),
        thousands(backlog),
        ms(done),
        rate(drain_per_s),
        rate(backlog as f64 / done.as_secs_f64()),
        after["outbox_backlog"],
        after["publish_lag_p99_ms"].as_f64().unwrap_or(0.0)
    );
    let drain_cpu = CpuReport::between(&a, &b);
    drain_cpu.print();
    summary.row(
        format!(
            "Accepted creates with the broker unreachable (outbox fills; {} conns, {} users)",
            cfg.connections, cfg.connections
        ),
        format!(
            "{} req/s; p50 {:.2} ms, p99 {:.2} ms; load generator {:.0}% of a core",
            rate(fill.ops_per_s()),
            fill.p50_ms,
            fill.p99_ms,
            fill_cpu.of(Who::Client)
        ),
    );
    summary.row(
        format!(
            "Publisher drain of a {}-job outbox backlog once the broker is reachable (through the gate relay)",
            thousands(backlog)
        ),
        format!(
            "{} jobs/s ({:.2} s from first confirm; first confirm {:.0} ms after the gate opened); relay {:.0}%, server lapin {:.0}%, actors+bus {:.0}%, writer {:.0}%, RabbitMQ {:.0}% of a core",
            rate(drain_per_s),
            (done - first).as_secs_f64(),
            ms(first),
            drain_cpu.of(Who::Proxy),
            drain_cpu.of(Who::ServerAmqp),
            drain_cpu.of(Who::Arbiters),
            drain_cpu.of(Who::Writer),
            drain_cpu.of(Who::RabbitMq)
        ),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!(
        "  drain consumer received {} job messages",
        thousands(drain.received())
    );
    Ok(Backlog { drain_per_s })
}
