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
            Ok((status, body)) => tally.refuse(2, || {
                format!(
                    "  unexpected status {status}: {}",
                    String::from_utf8_lossy(conn.body(body))
                )
            }),
            Err(e) => {
                tally.fail(2, || format!("  request failed: {e}; reconnecting"));
                conn = reopen(addr, deadline).await?;
            }
        }
    }
    Ok((conn, tally, ids))
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
