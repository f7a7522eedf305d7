//! Logs, request ids and per-request observation.
//!
//! Every request runs inside a `request` span carrying its id, so every log line a request
//! causes names it; the id is answered in the `Request-Id` header and inside error envelopes.
//! A client may send its own `Request-Id` (a short token); anything else gets a fresh UUID v7.

use std::io::IsTerminal;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "request-id";
/// A client-sent request id longer than this, or with other characters than `[A-Za-z0-9._-]`,
/// is replaced (it ends up in logs and headers).
const REQUEST_ID_LEN_MAX: usize = 64;

/// Structured logs to stderr; `RUST_LOG` filters (default `info`), `CREATIVEFLOW_LOG_FORMAT=json`
/// switches to one JSON object per line. Colour only when stderr is a terminal, so files and
/// log collectors get no escape codes.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CREATIVEFLOW_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn request_id_of(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= REQUEST_ID_LEN_MAX
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string)
}

/// Gives the request its id and span, counts and times it, and logs it at debug (server errors
/// are logged where they are made, inside the span).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = request_id_of(&req);
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %request_id, method = %method, path = %req.path());
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let mut res =
        crate::request_id::scope(request_id.clone(), next.call(req).instrument(span.clone()))
            .await?;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), v);
    }
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let pattern = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    span.in_scope(|| tracing::debug!(route = %pattern, status, elapsed_us, "request"));
    if let Some(state) = state {
        state
            .metrics
            .observe_request(&method, pattern, status, elapsed_us);
    }
    Ok(res)
}
