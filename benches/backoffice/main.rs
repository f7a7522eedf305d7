//! Render time of back-office pages over a big store: `cargo bench --bench backoffice`.
//!
//! One run builds two stores the same way, a small one (the baseline, `BENCH_SMALL_USERS`
//! users and `BENCH_SMALL_LEDGER_ENTRIES` entries) and a big one (`BENCH_USERS`, default
//! 1,000,000, and `BENCH_LEDGER_ENTRIES`, default 10,000,000, spread over the past year), runs
//! the real server on each, signs in through the login form, rolls up the settled days, and
//! times each page `BENCH_RENDERS` times (default 30) over HTTP. It prints the median and p90
//! per page and store and the big/small ratio: a page that does not grow with the table keeps
//! a ratio near 1. It never asserts on the figures.
//!
//! `BENCH_DATA_DIR` is where the temporary stores go (default the system temp dir).
#![forbid(unsafe_code)]

#[path = "../common/mod.rs"]
mod common;

/// The server binary's allocator (see `src/main.rs`), so what runs in-process runs as deployed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod data;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use creativeflow::config::Config;
use creativeflow::startup::Application;

/// A page and how to reach it once the store exists.
const PAGES: [(&str, &str); 7] = [
    ("users, first page", "/admin/users"),
    ("users, 10th page", "@deep"),
    ("users, email prefix (index)", "/admin/users?q=u00005000%40"),
    ("users, role filter (bounded)", "/admin/users?role=agent"),
    ("credits ledger, first page", "/admin/credits"),
    ("user form (balance, recent ledger)", "@user"),
    ("dashboard (4 charts)", "/admin/"),
];

struct Scale {
    users: usize,
    entries: u64,
    /// Days the entries span: the small store spans fewer, so both have the same entries per
    /// day and differ only in history.
    span_days: i64,
}

/// The big store's entries span a year.
const BIG_SPAN_DAYS: i64 = 365;

/// Per page: the sorted render times of one store, in ms.
type Times = Vec<Vec<f64>>;

fn main() {
    if let Err(e) = run() {
        eprintln!("backoffice bench failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Res<()> {
    let renders: usize = env_num("BENCH_RENDERS", 30)?;
    let (small_users, small_entries): (usize, u64) = (
        env_num("BENCH_SMALL_USERS", 10_000)?,
        env_num("BENCH_SMALL_LEDGER_ENTRIES", 100_000)?,
    );
    let big = Scale {
        users: env_num("BENCH_USERS", 1_000_000)?,
        entries: env_num("BENCH_LEDGER_ENTRIES", 10_000_000)?,
        span_days: BIG_SPAN_DAYS,
    };
    let small = Scale {
        users: small_users,
        entries: small_entries,
        span_days: (BIG_SPAN_DAYS * small_entries as i64 / big.entries.max(1) as i64).max(3),
    };
    let hash = creativeflow::passwords::hash_password_now("bench password 1")
        .map_err(|e| e.to_string())?;
    let mut summary = Summary::default();
    let small_t = measure("baseline", &small, &hash, renders, &mut summary)?;
    let big_t = measure("big", &big, &hash, renders, &mut summary)?;
    for (i, (name, _)) in PAGES.iter().enumerate() {
        let (s, b) = (percentile_f(&small_t[i], 0.5), percentile_f(&big_t[i], 0.5));
        summary.row(
            format!("{name}: median small / big"),
            format!(
                "{s:.2} ms / {b:.2} ms (×{:.2}; p90 big {:.2} ms)",
                b / s,
                percentile_f(&big_t[i], 0.9)
            ),
        );
    }
    let setting = format!(
        ", {} renders per page; small store {} users / {} entries, big {} users / {} entries",
        renders,
        thousands(small.users as u64),
        thousands(small.entries),
        thousands(big.users as u64),
        thousands(big.entries)
    );
    summary.print("backoffice", &setting, &Skip::from_env(&[])?);
    Ok(())
}

fn percentile_f(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Builds a store of `scale`, serves it, and times every page.
fn measure(
    label: &str,
    scale: &Scale,
    hash: &str,
    renders: usize,
    summary: &mut Summary,
) -> Res<Times> {
    heading(format!(
        "{label}: {} users, {} ledger entries over {} days",
        thousands(scale.users as u64),
        thousands(scale.entries),
        scale.span_days
    ));
    let dir = tempfile::Builder::new()
        .prefix("cf-backoffice-bench-")
        .tempdir_in(env_str(
            "BENCH_DATA_DIR",
            &std::env::temp_dir().to_string_lossy(),
        ))
        .map_err(|e| format!("temp dir: {e}"))?;
    let t = Instant::now();
    {
        let store = storage::Store::open(dir.path(), &storage::StoreOptions::default())
            .map_err(|e| e.to_string())?;
        let ids = data::users(&store, scale.users, hash)?;
        data::ledger(&store, &ids, scale.entries, scale.span_days)?;
        store.shutdown();
    }
    summary.row(format!("{label}: data generation"), secs(t.elapsed()));
    let dir_path = dir.path().to_path_buf();
    let times = actix_web::rt::System::new()
        .block_on(async move { serve_and_time(&dir_path, label, renders, summary).await })?;
    drop(dir);
    Ok(times)
}

async fn serve_and_time(
    dir: &std::path::Path,
    label: &str,
    renders: usize,
    summary: &mut Summary,
) -> Res<Times> {
    let vars = [
        ("CREATIVEFLOW_DATA_DIR", dir.to_string_lossy().to_string()),
        ("CREATIVEFLOW_LISTEN", "127.0.0.1:0".to_string()),
        (
            "CREATIVEFLOW_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:1/%2f".to_string(),
        ),
    ];
    let config =
        Config::from_lookup(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())?;
    let app = Application::build(config, Arc::new(creativeflow::mailer::LogMailer))
        .await
        .map_err(|e| e.to_string())?;
    let state = app.state();
    let base = format!("http://127.0.0.1:{}", app.port());
    let handle = app.server_handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let t = Instant::now();
    let days = creativeflow::services::rollups::roll_up(&state.store, storage::now_us())
        .await
        .map_err(|e| e.to_string())?;
    summary.row(
        format!("{label}: rolling up {days} settled days (first run)"),
        secs(t.elapsed()),
    );
    let client = signed_in(&state, &base).await?;
    let mut times = Vec::new();
    for (name, path) in PAGES {
        let url = resolve(&client, &base, path).await?;
        let mut page = Vec::with_capacity(renders);
        for _ in 0..renders {
            page.push(render_ms(&client, &url).await?);
        }
        page.sort_by(f64::total_cmp);
        println!(
            "  {name:<36} median {:>8.2} ms  p90 {:>8.2} ms",
            percentile_f(&page, 0.5),
            percentile_f(&page, 0.9)
        );
        times.push(page);
    }
    handle.stop(true).await;
    state.store.shutdown();
    Ok(times)
}

async fn render_ms(client: &reqwest::Client, url: &str) -> Res<f64> {
    let t = Instant::now();
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    // A page that bounced to the login form would time the wrong thing.
    if !status.is_success()
        || body.is_empty()
        || body.windows(10).any(|w| w == b"main class")
            && String::from_utf8_lossy(&body).contains("<main class=\"login\"")
    {
        return Err(format!("{url}: {status} (or not signed in)"));
    }
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}

/// An admin signed in through the login form.
async fn signed_in(
    state: &actix_web::web::Data<creativeflow::state::AppState>,
    base: &str,
) -> Res<reqwest::Client> {
    use creativeflow::domain::{Email, Name};
    let hash = creativeflow::passwords::hash_password_now("bench admin password")
        .map_err(|e| e.to_string())?;
    creativeflow::services::users::create_user(
        &state.store,
        creativeflow::services::users::NewUser {
            email: Email::parse("bench-admin@bench.example").map_err(|e| e.to_string())?,
            name: Name::parse("Bench Admin", "name").map_err(|e| e.to_string())?,
            password_hash: hash,
            role: storage::records::Role::Admin,
            signup_grant: 0,
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let page = page_text(&client, format!("{base}/admin/login")).await?;
    let marker = "name=\"csrf_token\" value=\"";
    let csrf = page
        .split(marker)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .ok_or("no csrf token on the login page")?;
    let form = [
        ("email", "bench-admin@bench.example"),
        ("password", "bench admin password"),
        ("csrf_token", csrf),
    ];
    let r = client
        .post(format!("{base}/admin/login"))
        .form(&form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("sign-in failed: {}", r.status()));
    }
    Ok(client)
}

async fn page_text(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> Res<String> {
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    r.text().await.map_err(|e| e.to_string())
}

/// The URL of a page; `@deep` is the users list ten pages in, `@user` a user's form.
async fn resolve(client: &reqwest::Client, base: &str, path: &str) -> Res<String> {
    let next_of = |page: &str| {
        page.split("rel=\"next\" href=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .map(|s| s.replace("&amp;", "&"))
    };
    match path {
        "@deep" => {
            let mut url = format!("{base}/admin/users");
            for _ in 0..9 {
                let page = page_text(client, &url).await?;
                url = format!("{base}{}", next_of(&page).ok_or("no next page")?);
            }
            Ok(url)
        }
        "@user" => {
            let page = page_text(client, format!("{base}/admin/users")).await?;
            // The second row: the first is the bench admin, who has no ledger.
            let href = page
                .split("<tr><td><a href=\"")
                .nth(2)
                .and_then(|s| s.split('"').next())
                .ok_or("no user row")?;
            Ok(format!("{base}{href}"))
        }
        p => Ok(format!("{base}{p}")),
    }
}
