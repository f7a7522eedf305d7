//! Prometheus text metrics (format 0.0.4), kept by hand: a few counters and two latency
//! histograms do not need a registry crate. Every label is bounded: methods outside the standard
//! set are `_OTHER`, routes are the router's patterns (or `unmatched`), statuses are three digits.

use std::collections::HashMap;

use actix_web::http::Method;
use actors::histogram::Histogram;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `method` label: one of the standard methods, or `_OTHER` (so that `curl -X FOO1..FOOn`
/// cannot grow the series).
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

/// A metric line's value as Prometheus reads it.
#[derive(Debug, Clone, Copy)]
pub enum Sample {
    Counter(f64),
    Gauge(f64),
}

#[derive(Default)]
pub struct Metrics {
    /// (method, route pattern, status) → count.
    requests: Mutex<HashMap<(&'static str, String, u16), u64>>,
    latency: Histogram,
    pub ledger_applied: AtomicU64,
    pub ledger_insufficient: AtomicU64,
    pub ledger_replayed: AtomicU64,
    pub logins_failed: AtomicU64,
    pub generations_created: AtomicU64,
    pub payment_mismatches: AtomicU64,
    pub payment_events_ignored: AtomicU64,
    pub generations_timed_out: AtomicU64,
    pub logins_rate_limited: AtomicU64,
    pub sla_breaches: AtomicU64,
    pub tickets_opened: AtomicU64,
}

impl Metrics {
    /// Takes the pattern the router already allocated, so counting allocates nothing more.
    pub fn observe_request(&self, method: &Method, pattern: String, status: u16, elapsed_us: u64) {
        *self
            .requests
            .lock()
            .entry((method_label(method), pattern, status))
            .or_insert(0) += 1;
        self.latency.observe_us(elapsed_us);
    }

    /// Renders everything, with the samples the caller reads from the store, the registries and
    /// the bus, and the publish lag histogram.
    pub fn render(&self, samples: &[(&str, &str, Sample)], publish_lag: &Histogram) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.latency.render(
            &mut out,
            "creativeflow_http_request_duration_seconds",
            "HTTP request latency.",
            "",
        );
        publish_lag.render(
            &mut out,
            "creativeflow_publish_lag_seconds",
            "Job accepted to confirmed by the broker.",
            "",
        );
        let own = self.own_counters();
        let own = own.iter().map(|(name, help, v)| {
            (
                *name,
                *help,
                Sample::Counter(v.load(Ordering::Relaxed) as f64),
            )
        });
        for (name, help, sample) in own.chain(samples.iter().map(|(n, h, s)| (*n, *h, *s))) {
            let (kind, v) = match sample {
                Sample::Counter(v) => ("counter", v),
                Sample::Gauge(v) => ("gauge", v),
            };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
        out
    }

    fn render_requests(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP creativeflow_http_requests_total HTTP requests by route and status.\n\
             # TYPE creativeflow_http_requests_total counter"
        );
        let mut rows: Vec<(&'static str, String, u16, u64)> = self
            .requests
            .lock()
            .iter()
            .map(|((m, p, s), n)| (*m, p.clone(), *s, *n))
            .collect();
        rows.sort_unstable();
        for (m, p, s, n) in rows {
            let _ = writeln!(
                out,
                "creativeflow_http_requests_total{{method=\"{m}\",route=\"{}\",status=\"{s}\"}} {n}",
                p.replace('"', "")
            );
        }
    }

    fn own_counters(&self) -> [(&'static str, &'static str, &AtomicU64); 11] {
        [
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
            (
                "creativeflow_helpdesk_tickets_opened_total",
                "Support tickets opened.",
                &self.tickets_opened,
            ),
            (
                "creativeflow_helpdesk_sla_breaches_total",
                "Tickets whose first-response deadline passed unanswered (each counted once, when marked).",
                &self.sla_breaches,
            ),
        ]
    }
}
