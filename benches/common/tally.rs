//! Latency tallies and what one timed window measured.

use std::time::{Duration, Instant};

use super::{rate, thousands};

/// The value at quantile `q` of `sorted`, 0 when there is none.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    f64::from(sorted[i])
}

/// Latencies (µs) of the applied operations of one caller, and what went wrong.
#[derive(Default)]
pub struct Tally {
    pub lat_us: Vec<u32>,
    pub refused: u64,
    pub errors: u64,
}

impl Tally {
    pub fn record(&mut self, started: Instant) {
        self.lat_us
            .push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
    }

    /// Counts an answer other than the one expected; only the first `shown` are told on stderr,
    /// so a failing server cannot flood the report.
    pub fn refuse(&mut self, shown: u64, line: impl FnOnce() -> String) {
        self.refused += 1;
        if self.refused <= shown {
            eprintln!("{}", line());
        }
    }

    /// Counts a failed operation; only the first `shown` are told on stderr.
    pub fn fail(&mut self, shown: u64, line: impl FnOnce() -> String) {
        self.errors += 1;
        if self.errors <= shown {
            eprintln!("{}", line());
        }
    }

    pub fn merge(tallies: Vec<Tally>) -> Tally {
        let mut all = Tally::default();
        for t in tallies {
            all.lat_us.extend(t.lat_us);
            all.refused += t.refused;
            all.errors += t.errors;
        }
        all.lat_us.sort_unstable();
        all
    }
}

/// What one timed load phase measured.
#[derive(Clone, Copy, Default)]
pub struct Run {
    pub ops: u64,
    pub elapsed: Duration,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub refused: u64,
    pub errors: u64,
}

/// How a driver words its one-line run reports: each keeps the wording its readers know.
pub struct RunStyle {
    /// Decimals of the window's length in seconds.
    pub elapsed_decimals: usize,
    /// Ops/s with thousands separators, or as a bare number.
    pub grouped_rate: bool,
    /// What the answers other than the expected one are called.
    pub refused_label: &'static str,
}

impl Run {
    /// The figures of a merged (sorted) tally.
    pub fn from(tally: Tally, elapsed: Duration) -> Run {
        let pct = |q: f64| percentile(&tally.lat_us, q) / 1000.0;
        Run {
            ops: tally.lat_us.len() as u64,
            elapsed,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            max_ms: pct(1.0),
            refused: tally.refused,
            errors: tally.errors,
        }
    }

    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn print(&self, label: &str, style: &RunStyle) {
        let per_s = if style.grouped_rate {
            rate(self.ops_per_s())
        } else {
            format!("{:.0}", self.ops_per_s())
        };
        println!(
            "  {label}: {} ops in {:.*} s = {per_s} ops/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
             {} {}, errors {}",
            thousands(self.ops),
            style.elapsed_decimals,
            self.elapsed.as_secs_f64(),
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            style.refused_label,
            self.refused,
            self.errors
        );
    }
}
