//! Users, workbenches, projects, credits and the server's own figures: through the HTTP API.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::common::*;
use crate::http::{http_request, HttpConn};

pub const PASSWORD: &str = "bench password, long enough";
/// Credits each benchmark user gets: far more than any run spends (a create costs 1).
pub const USER_FLOAT: i64 = 1_000_000;
/// Concurrent connections used to create the users (each signup hashes with Argon2id).
const SETUP_CONNECTIONS: usize = 8;
const PROMPT_SEED: &str = "A minimalist poster of a red bicycle leaning on a sunlit brick wall, \
     flat colours, soft long shadows, generous margins, bold sans-serif title at the top. ";

pub struct BenchUser {
    pub token: String,
    pub project: String,
}

pub async fn login(addr: SocketAddr, email: &str) -> Res<String> {
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

pub fn expect(status: u16, want: u16, what: &str, body: &Value) -> Res<()> {
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
pub async fn setup_users(
    addr: SocketAddr,
    admin: &str,
    prefix: &str,
    n: usize,
) -> Res<Vec<BenchUser>> {
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

pub fn prompt(chars: usize) -> String {
    PROMPT_SEED.chars().cycle().take(chars).collect()
}

/// One create request per user, each in the user's own project.
pub fn create_requests(host: &str, users: &[BenchUser], prompt: &str) -> Vec<Vec<u8>> {
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

pub async fn metrics_text(addr: SocketAddr) -> Res<String> {
    HttpConn::open(addr)
        .await?
        .text(&addr.to_string(), "/metrics")
        .await
}

/// One sample of a Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// The cumulative buckets `(le in s, count)` of histogram `name` in a `/metrics` text.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect()
}

/// The upper bound (s) of the bucket holding quantile `q` of what histogram `name` observed
/// between two `/metrics` texts (as Prometheus' `histogram_quantile` over an increase);
/// `None` when nothing was observed in between.
pub fn quantile_between(before: &str, after: &str, name: &str, q: f64) -> Option<f64> {
    let (a, b) = (buckets(before, name), buckets(after, name));
    let diff: Vec<(f64, f64)> = b
        .iter()
        .map(|(le, n)| {
            let was = a.iter().find(|(l, _)| l == le).map_or(0.0, |(_, n)| *n);
            (*le, n - was)
        })
        .collect();
    let total = diff.last()?.1;
    if total <= 0.0 {
        return None;
    }
    diff.iter()
        .find(|(_, n)| *n >= q * total)
        .map(|(le, _)| *le)
}

pub async fn readyz(addr: SocketAddr) -> Res<Value> {
    let (status, v) = HttpConn::open(addr)
        .await?
        .json(&addr.to_string(), "GET", "/readyz", None, None)
        .await?;
    expect(status, 200, "/readyz", &v)?;
    Ok(v)
}
