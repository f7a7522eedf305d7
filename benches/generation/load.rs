//! The HTTP load loop: every connection sends prebuilt requests as fast as answers come.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::http::HttpConn;

/// What a load phase sends: prebuilt requests (one per user), the expected status.
#[derive(Clone)]
pub struct LoadSpec {
    pub requests: Arc<Vec<Vec<u8>>>,
    pub expect: u16,
    pub collect_ids: bool,
    /// Stop after this many successes in all (shared), if set.
    pub limit: Option<Arc<AtomicU64>>,
    pub limit_max: u64,
}

impl LoadSpec {
    /// `requests`, each expecting `expect`; no ids kept, no limit.
    pub fn new(requests: Vec<Vec<u8>>, expect: u16) -> LoadSpec {
        LoadSpec {
            requests: Arc::new(requests),
            expect,
            collect_ids: false,
            limit: None,
            limit_max: 0,
        }
    }
}

/// The generation id in a create answer (`{"id":"…",…}`).
fn created_id(body: &[u8]) -> Option<String> {
    let key = b"\"id\":\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let id = body.get(at..at + 36)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

/// Every connection loops for `duration`: a random request, its response, its latency.
/// Returns the connections (for the next window), the figures and, with `collect_ids`, the
/// (request index, generation id) of each success.
pub async fn http_load(
    addr: SocketAddr,
    conns: Vec<HttpConn>,
    spec: &LoadSpec,
    duration: Duration,
    seed: u64,
) -> Res<(Vec<HttpConn>, Run, Vec<(usize, String)>)> {
    let (conns, run, ids) = spawn_callers(conns, duration, seed, |conn, rng, deadline| {
        conn_loop(addr, conn, rng, deadline, spec.clone())
    })
    .await?;
    Ok((conns, run, ids.into_iter().flatten().collect()))
}

/// One connection of [`http_load`]; a connection that breaks is opened again.
async fn conn_loop(
    addr: SocketAddr,
    mut conn: HttpConn,
    mut rng: Rng,
    deadline: Instant,
    spec: LoadSpec,
) -> Res<(HttpConn, Tally, Vec<(usize, String)>)> {
    let mut tally = Tally::default();
    let mut ids = Vec::new();
    while Instant::now() < deadline {
        if let Some(l) = &spec.limit {
            if l.fetch_add(1, Ordering::Relaxed) >= spec.limit_max {
                break;
            }
        }
        let i = rng.below(spec.requests.len());
        let t = Instant::now();
        match conn.call(&spec.requests[i]).await {
            Ok((status, body)) if status == spec.expect => {
                tally.record(t);
                if spec.collect_ids {
                    if let Some(id) = created_id(conn.body(body)) {
                        ids.push((i, id));
                    }
                }
            }
            Ok((status, body)) => refused(&mut tally, &conn, status, body),
            Err(e) => {
                tally.fail(2, || format!("  request failed: {e}; reconnecting"));
                conn = reopen(addr, deadline).await?;
            }
        }
    }
    Ok((conn, tally, ids))
}

/// Counts an answer other than the expected one, telling the first two.
fn refused(tally: &mut Tally, conn: &HttpConn, status: u16, body: std::ops::Range<usize>) {
    tally.refuse(2, || {
        format!(
            "  unexpected status {status}: {}",
            String::from_utf8_lossy(conn.body(body))
        )
    })
}

/// Opens a connection again, retrying until `deadline`.
async fn reopen(addr: SocketAddr, deadline: Instant) -> Res<HttpConn> {
    loop {
        match HttpConn::open(addr).await {
            Ok(c) => return Ok(c),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Open-loop load: requests are due at a fixed `rate_per_s` whatever the server does, and each
/// latency counts from when its request was due, not from when a free connection sent it, so a
/// slow answer that holds the next requests back shows in their latency too (no coordinated
/// omission). The connections share one schedule; a request due while all of them are busy
/// waits, and that wait is part of its latency. Tokio's timer adds up to ~1 ms to a send that
/// had to sleep until it was due.
pub async fn http_load_paced(
    addr: SocketAddr,
    conns: Vec<HttpConn>,
    spec: &LoadSpec,
    duration: Duration,
    rate_per_s: f64,
    seed: u64,
) -> Res<(Vec<HttpConn>, Run)> {
    let start = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let interval_s = 1.0 / rate_per_s.max(1.0);
    let (conns, run, _) = spawn_callers(conns, duration, seed, |conn, rng, deadline| {
        let next = next.clone();
        let due = move |i: u64| start + Duration::from_secs_f64(i as f64 * interval_s);
        paced_loop(addr, conn, rng, deadline, spec.clone(), next, due)
    })
    .await?;
    Ok((conns, run))
}

/// One connection of [`http_load_paced`]: takes the next due slot, waits for it, sends.
async fn paced_loop(
    addr: SocketAddr,
    mut conn: HttpConn,
    mut rng: Rng,
    deadline: Instant,
    spec: LoadSpec,
    next: Arc<AtomicU64>,
    due: impl Fn(u64) -> Instant,
) -> Res<(HttpConn, Tally, ())> {
    let mut tally = Tally::default();
    loop {
        let at = due(next.fetch_add(1, Ordering::Relaxed));
        if at >= deadline {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let i = rng.below(spec.requests.len());
        match conn.call(&spec.requests[i]).await {
            Ok((status, _)) if status == spec.expect => tally.record(at),
            Ok((status, body)) => refused(&mut tally, &conn, status, body),
            Err(e) => {
                tally.fail(2, || format!("  request failed: {e}; reconnecting"));
                conn = reopen(addr, deadline).await?;
            }
        }
    }
    Ok((conn, tally, ()))
}
