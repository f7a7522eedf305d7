//! Prometheus text metrics, kept by hand: a few counters and one latency histogram do not need a
//! registry crate.

use std::collections::HashMap;

use actix_web::http::Method;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

const LATENCY_BUCKETS_MS: [f64; 12] = [
    0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
];

#[derive(Default)]
pub struct Metrics {
    /// (method, route pattern, status) → count. Route patterns are bounded by the route table.
    requests: Mutex<HashMap<(Method, String, u16), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    pub ledger_applied: AtomicU64,
    pub ledger_insufficient: AtomicU64,
    pub ledger_replayed: AtomicU64,
    pub logins_failed: AtomicU64,
    pub generations_created: AtomicU64,
    pub payment_mismatches: AtomicU64,
    pub payment_events_ignored: AtomicU64,
    pub generations_timed_out: AtomicU64,
    pub logins_rate_limited: AtomicU64,
}

impl Metrics {
    /// Takes the pattern the router already allocated, so counting allocates nothing more.
    pub fn observe_request(&self, method: Method, pattern: String, status: u16, elapsed_us: u64) {
        *self
            .requests
            .lock()
            .entry((method, pattern, status))
            .or_insert(0) += 1;
        let ms = elapsed_us as f64 / 1000.0;
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(elapsed_us, Ordering::Relaxed);
    }

    /// Renders everything, with the gauges the caller reads from the store and registry.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP creativeflow_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE creativeflow_http_requests_total counter");
        let mut rows: Vec<(String, String, u16, u64)> = self
            .requests
            .lock()
            .iter()
            .map(|((m, p, s), n)| (m.to_string(), p.clone(), *s, *n))
            .collect();
        rows.sort_unstable();
        for (m, p, s, n) in rows {
            let _ = writeln!(
                out,
                "creativeflow_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {n}",
                p.replace('"', "")
            );
        }
        let _ = writeln!(
            out,
            "# HELP creativeflow_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(
            out,
            "# TYPE creativeflow_http_request_duration_seconds histogram"
        );
        for (i, b) in LATENCY_BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "creativeflow_http_request_duration_seconds_bucket{{le=\"{}\"}} {}",
                b / 1000.0,
                self.latency_buckets[i].load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "creativeflow_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "creativeflow_http_request_duration_seconds_sum {}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "creativeflow_http_request_duration_seconds_count {count}"
        );
        let counters = [
            (
                "creativeflow_ledger_entries_applied_total",
                "Credit movements written.",
                &self.ledger_applied,
            ),
            (
                "creativeflow_ledger_insufficient_total",
                "Deductions refused for insufficient credits.",
                &self.ledger_insufficient,
            ),
            (
                "creativeflow_ledger_replayed_total",
                "Idempotent replays answered without a write.",
                &self.ledger_replayed,
            ),
            (
                "creativeflow_logins_failed_total",
                "Failed logins.",
                &self.logins_failed,
            ),
            (
                "creativeflow_logins_rate_limited_total",
                "Logins refused by the rate limiter.",
                &self.logins_rate_limited,
            ),
            (
                "creativeflow_generations_created_total",
                "Generation requests accepted.",
                &self.generations_created,
            ),
            (
                "creativeflow_generations_timed_out_total",
                "Generation requests failed by the deadline.",
                &self.generations_timed_out,
            ),
            (
                "creativeflow_payment_mismatches_total",
                "Pack payments whose amount or currency did not match.",
                &self.payment_mismatches,
            ),
            (
                "creativeflow_payment_events_ignored_total",
                "Payment events acknowledged and ignored (unhandled types).",
                &self.payment_events_ignored,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}
