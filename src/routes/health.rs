use actix_web::http::header;
use actix_web::{get, web, HttpResponse};
use serde_json::json;

use crate::error::AppError;
use crate::metrics::{Sample, CONTENT_TYPE};
use crate::state::AppState;

/// Seconds a load balancer is told to wait when the store does not answer.
const NOT_READY_RETRY_AFTER_S: &str = "5";

/// Process up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready to serve: the store answers a read. Also says how the job bus stands.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503, description = "the store does not answer; `Retry-After`")))]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let store_ok = state.store.ping().is_ok();
    let broker = &state.publisher.status;
    let body = json!({
        "status": if store_ok { "ready" } else { "not_ready" },
        "store": if store_ok { "open" } else { "unavailable" },
        "writer_queue_depth": state.store.stats().queue_depth(),
        "broker": {
            "connected": broker.publisher_connected.load(std::sync::atomic::Ordering::Relaxed),
            "results_consumer_connected": broker.consumer_connected.load(std::sync::atomic::Ordering::Relaxed),
            "last_error": broker.last_error.lock().clone(),
        },
        "outbox_backlog": crate::services::generation::outbox_backlog(&state),
        // An upper bound: the histogram bucket holding the 99th percentile since start.
        "publish_lag_p99_ms": broker.publish_lag.quantile_upper_s(0.99).map(|s| s * 1000.0),
        "uptime_seconds": state.started.elapsed().as_secs(),
    });
    if store_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, NOT_READY_RETRY_AFTER_S))
            .json(body)
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain")))]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    use std::sync::atomic::Ordering::Relaxed;
    let s = state.store.stats();
    let b = &state.publisher.status;
    let batches = s.batches.load(Relaxed);
    let sets = s.completed.load(Relaxed);
    let samples = [
        (
            "creativeflow_store_writer_queue_depth",
            "Write sets waiting for the storage writer.",
            Sample::Gauge(s.queue_depth() as f64),
        ),
        (
            "creativeflow_store_write_sets_total",
            "Write sets committed or refused by the writer.",
            Sample::Counter(sets as f64),
        ),
        (
            "creativeflow_store_batches_total",
            "Durable commits (group commits) made.",
            Sample::Counter(batches as f64),
        ),
        (
            "creativeflow_store_failed_batches_total",
            "Commits that failed.",
            Sample::Counter(s.failed_batches.load(Relaxed) as f64),
        ),
        (
            "creativeflow_store_overloaded_total",
            "Write sets refused because the queue was full.",
            Sample::Counter(s.rejected_overloaded.load(Relaxed) as f64),
        ),
        (
            "creativeflow_store_batch_size_max",
            "Largest group commit seen.",
            Sample::Gauge(s.batch_size_max_seen.load(Relaxed) as f64),
        ),
        (
            "creativeflow_store_commit_seconds_total",
            "Time spent committing.",
            Sample::Counter(s.commit_us_total.load(Relaxed) as f64 / 1e6),
        ),
        (
            "creativeflow_store_cache_hits_total",
            "Reads answered from this node's cache of sessions, users and workspace records.",
            Sample::Counter(state.store.cache_hits() as f64),
        ),
        (
            "creativeflow_store_account_journal_folds_total",
            "Folds of the account journal into the accounts table (embedded store).",
            Sample::Counter(state.store.account_overlay().map_or(0, |o| o.folds()) as f64),
        ),
        (
            "creativeflow_store_account_journal_searches_total",
            "Account reads that searched their snapshot's journal (embedded store).",
            Sample::Counter(
                state
                    .store
                    .account_overlay()
                    .map_or(0, |o| o.journal_searches()) as f64,
            ),
        ),
        (
            "creativeflow_account_actors_live",
            "Credit account actors alive now.",
            Sample::Gauge(state.accounts.live() as f64),
        ),
        (
            "creativeflow_account_actors_started_total",
            "Credit account actors started.",
            Sample::Counter(state.accounts.started_total() as f64),
        ),
        (
            "creativeflow_broker_connected",
            "1 when the job publisher holds a broker connection.",
            Sample::Gauge(f64::from(u8::from(b.publisher_connected.load(Relaxed)))),
        ),
        (
            "creativeflow_results_consumer_connected",
            "1 when the results consumer holds a broker connection.",
            Sample::Gauge(f64::from(u8::from(b.consumer_connected.load(Relaxed)))),
        ),
        (
            "creativeflow_outbox_backlog",
            "Jobs accepted and not yet confirmed by the broker.",
            Sample::Gauge(crate::services::generation::outbox_backlog(&state) as f64),
        ),
        (
            "creativeflow_jobs_published_total",
            "Job publishes (first attempts).",
            Sample::Counter(b.published_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_jobs_republished_total",
            "Job publishes after a nack or return.",
            Sample::Counter(b.republished_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_jobs_confirmed_total",
            "Jobs confirmed by the broker and removed from the outbox.",
            Sample::Counter(b.confirmed_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_broker_reconnects_total",
            "Publisher reconnects.",
            Sample::Counter(b.reconnects_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_results_applied_total",
            "Result messages applied and acked.",
            Sample::Counter(b.results_applied_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_results_dead_lettered_total",
            "Result messages sent to the dead-letter queue.",
            Sample::Counter(b.results_dead_lettered_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_uptime_seconds",
            "Seconds since start.",
            Sample::Gauge(state.started.elapsed().as_secs_f64()),
        ),
        (
            "creativeflow_password_hashes_total",
            "Password hashes and checks run.",
            Sample::Counter(state.hashes.ran_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_password_hashes_refused_total",
            "Password hashes refused because the hashing pool was full (503).",
            Sample::Counter(state.hashes.refused_total.load(Relaxed) as f64),
        ),
        (
            "creativeflow_ticket_streams_open",
            "Ticket event streams open on this node.",
            Sample::Gauge(state.tickets.open_streams() as f64),
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
            Sample::Gauge(state.started_unix_s),
        ),
    ];
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render(&samples, &b.publish_lag)))
}
