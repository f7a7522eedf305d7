//! 0. Setup: the main app on the real broker, its users, the drain of its jobs queue.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::api::{login, setup_users, BenchUser, USER_FLOAT};
use crate::common::*;
use crate::cpu::find_http_workers;
use crate::drain::Drain;
use crate::phases::Rig;
use crate::servers::{app_vars, AppInfo, AppScratch};

/// The main app, ready for load.
pub struct MainApp {
    pub addr: SocketAddr,
    pub users: Vec<BenchUser>,
    pub drain: Drain,
}

pub async fn setup_main(
    rig: &Rig<'_>,
    scratch: &AppScratch,
    summary: &mut Summary,
) -> Res<MainApp> {
    let (cfg, names) = (rig.cfg, &scratch.names);
    heading("0. Setup");
    let t = Instant::now();
    let drain = Drain::start_on(rig.amqp, &cfg.amqp, names.jobs.clone()).await?;
    let app = rig.servers.build(app_vars(scratch, &cfg.amqp)?).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port));
    let host = addr.to_string();
    wait_connected(&app, &cfg.amqp).await?;
    let workers = find_http_workers(addr, "/healthz").await?;
    let bare_workers = find_http_workers(
        SocketAddr::from(([127, 0, 0, 1], rig.servers.bare_port)),
        "/bare",
    )
    .await?;
    println!("  HTTP worker threads found by load: server {workers}, bare route {bare_workers}");
    let admin = login(addr, &app.admin_email).await?;
    let users = setup_users(addr, &admin, &names.tag, cfg.users).await?;
    let setup_time = t.elapsed();
    println!(
        "  server on {host}, publisher connected; {} users signed up, each with a workbench, a project \
         and +{} credits, in {:.1} s ({} HTTP requests, signups hash with Argon2id)",
        thousands(users.len() as u64),
        thousands(USER_FLOAT as u64),
        setup_time.as_secs_f64(),
        thousands(users.len() as u64 * 4 + 1)
    );
    summary.row(
        format!(
            "Setup: {} users via signup + workbench + project + admin top-up",
            thousands(users.len() as u64)
        ),
        format!("{:.1} s", setup_time.as_secs_f64()),
    );
    Ok(MainApp { addr, users, drain })
}

/// Waits up to 15 s for the app's publisher and consumer to reach the broker at `amqp`.
async fn wait_connected(app: &AppInfo, amqp: &str) -> Res<()> {
    let connected_by = Instant::now() + Duration::from_secs(15);
    while !(app.status.publisher_connected.load(Ordering::Relaxed)
        && app.status.consumer_connected.load(Ordering::Relaxed))
    {
        if Instant::now() > connected_by {
            return Err(format!(
                "the server's publisher did not connect to {} within 15 s: {:?}",
                amqp,
                app.status.last_error.lock().clone()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
