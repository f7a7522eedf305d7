//! Who used the CPU: threads of this process (by name) and every other process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::http::{http_request, open_conns};
use crate::load::{http_load, LoadSpec};

/// Lapin I/O threads opened by the benchmark itself (the server's are the others).
static BENCH_LAPIN_THREADS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The servers' HTTP worker threads. Inside an actix System they are arbiters, named like the
/// account and workspace arbiters, so they are found by what they do (see `find_http_workers`).
static HTTP_WORKER_THREADS: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The most CPU (% of a core) that processes foreign to the benchmark used in any phase.
static FOREIGN_CPU_MAX: Mutex<f64> = Mutex::new(0.0);

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
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

    fn of_process(comm: &str) -> Who {
        match comm {
            "beam.smp" => Who::RabbitMq,
            "postgres" => Who::Postgres,
            _ => Who::OtherProcs,
        }
    }
}

pub fn lapin_threads() -> HashSet<u32> {
    own_threads()
        .into_iter()
        .filter(|(_, (comm, _))| comm == "lapin-io-loop")
        .map(|(tid, _)| tid)
        .collect()
}

/// Marks the lapin threads that appeared since `before` as the benchmark's own.
pub fn claim_lapin_threads(before: &HashSet<u32>) {
    let new: Vec<u32> = lapin_threads().difference(before).copied().collect();
    if let Ok(mut mine) = BENCH_LAPIN_THREADS.lock() {
        mine.extend(new);
    }
}

/// Finds a server's HTTP workers: the actix arbiter threads that burn CPU while `path` (a
/// route that touches no actor) is hammered for half a second. Returns how many.
pub async fn find_http_workers(addr: SocketAddr, path: &str) -> Res<usize> {
    let before = own_threads();
    let spec = LoadSpec::new(
        vec![http_request(&addr.to_string(), "GET", path, None, None)],
        200,
    );
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

/// The most CPU (% of a core) foreign processes used in any phase printed so far.
pub fn foreign_cpu_max() -> f64 {
    FOREIGN_CPU_MAX.lock().map(|v| *v).unwrap_or(0.0)
}

pub struct CpuSnap {
    at: Instant,
    /// user nice system idle iowait irq softirq steal
    machine: [u64; 8],
    threads: HashMap<u32, (String, u64)>,
    procs: HashMap<u32, (Who, u64)>,
}

impl CpuSnap {
    pub fn take() -> CpuSnap {
        let at = Instant::now();
        let machine = machine_ticks();
        let procs = other_processes()
            .into_iter()
            .map(|(pid, (comm, t))| (pid, (Who::of_process(&comm), t)))
            .collect();
        CpuSnap {
            at,
            machine,
            threads: own_threads(),
            procs,
        }
    }
}

/// CPU used between two snapshots, in % of one core.
pub struct CpuReport {
    pub machine_busy: f64,
    pub irq: f64,
    pub steal: f64,
    pub cores: f64,
    by: BTreeMap<Who, f64>,
    wall: Duration,
}

impl CpuReport {
    pub fn between(a: &CpuSnap, b: &CpuSnap) -> CpuReport {
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

    pub fn of(&self, who: Who) -> f64 {
        self.by.get(&who).copied().unwrap_or(0.0)
    }

    /// Core-seconds a group used.
    pub fn core_seconds(&self, who: Who) -> f64 {
        self.of(who) / 100.0 * self.wall.as_secs_f64()
    }

    /// CPU time of the load generator per request of `run`, in µs.
    pub fn client_us_per_request(&self, run: &Run) -> f64 {
        self.core_seconds(Who::Client) * 1e6 / (run.ops.max(1) as f64)
    }

    /// The wall time the report covers.
    pub fn wall(&self) -> Duration {
        self.wall
    }

    /// Every thread of this process that is not the benchmark's own (load generator, drain
    /// consumer, relay gate): either server, whichever one the window loaded.
    pub fn server_all(&self) -> f64 {
        self.server() + self.of(Who::Other)
    }

    pub fn server(&self) -> f64 {
        self.of(Who::HttpWorkers)
            + self.of(Who::Arbiters)
            + self.of(Who::Writer)
            + self.of(Who::ServerAmqp)
    }

    pub fn print(&self) {
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

/// What else runs on the machine before the run starts (a build or a test suite skews
/// everything): one second of CPU, printed, and a note when it was busy.
pub async fn machine_before(summary: &mut Summary) {
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
}
