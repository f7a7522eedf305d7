//! The servers: one actix System on a thread of its own, building apps on request, beside a
//! bare actix-web JSON route to compare with.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use actors::broker::BrokerStatus;
use creativeflow::config::Config as AppConfig;
use creativeflow::domain::{Email, Name};
use creativeflow::mailer::LogMailer;
use creativeflow::services::users::{create_user, NewUser};
use creativeflow::startup::Application;
use serde_json::json;
use storage::records::Role;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::api::PASSWORD;
use crate::broker::{QueueNames, ROUTING_KEY};
use crate::common::*;

pub struct AppInfo {
    pub port: u16,
    pub status: Arc<BrokerStatus>,
    pub admin_email: String,
}

enum Cmd {
    Build {
        vars: Vec<(String, String)>,
        reply: oneshot::Sender<Res<AppInfo>>,
    },
    Stop {
        reply: oneshot::Sender<()>,
    },
}

pub struct Servers {
    commands: mpsc::UnboundedSender<Cmd>,
    pub bare_port: u16,
    thread: std::thread::JoinHandle<()>,
}

impl Servers {
    pub fn start() -> Res<Servers> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Res<u16>>();
        let thread = std::thread::Builder::new()
            .name("cf-server".into())
            .spawn(move || {
                let system = actix_web::rt::System::new();
                system.block_on(server_main(rx, ready_tx));
            })
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        let bare_port = ready_rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("the server thread did not start: {e}"))??;
        Ok(Servers {
            commands: tx,
            bare_port,
            thread,
        })
    }

    pub async fn build(&self, vars: Vec<(String, String)>) -> Res<AppInfo> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Cmd::Build { vars, reply })
            .map_err(|_| "the server thread is gone".to_string())?;
        rx.await
            .map_err(|_| "the server thread is gone".to_string())?
    }

    pub async fn stop(self) {
        let (reply, rx) = oneshot::channel();
        if self.commands.send(Cmd::Stop { reply }).is_ok()
            && tokio::time::timeout(Duration::from_secs(40), rx)
                .await
                .is_err()
        {
            eprintln!("the servers did not stop within 40 s");
            return;
        }
        let _ = self.thread.join();
    }
}

/// The bare route: the same actix-web, default worker count, one small JSON object.
fn bare_server() -> Res<(u16, Server)> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| {
            let port = l.local_addr()?.port();
            let server = HttpServer::new(|| {
                App::new().route(
                    "/bare",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(json!({"status": "ok", "service": "bare"}))
                    }),
                )
            })
            .listen(l)?
            .run();
            Ok((port, server))
        })
        .map_err(|e| format!("cannot start the bare server: {e}"))
}

async fn server_main(
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    ready: std::sync::mpsc::Sender<Res<u16>>,
) {
    let (bare_port, bare_server) = match bare_server() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let bare_handle = bare_server.handle();
    let bare_task = actix_web::rt::spawn(bare_server);
    let _ = ready.send(Ok(bare_port));
    let mut apps: Vec<(
        ServerHandle,
        actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    )> = Vec::new();
    while let Some(cmd) = commands.recv().await {
        match cmd {
            Cmd::Build { vars, reply } => match build_app(vars).await {
                Ok((info, app)) => {
                    let handle = app.server_handle();
                    apps.push((handle, actix_web::rt::spawn(app.run_until_stopped())));
                    let _ = reply.send(Ok(info));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Cmd::Stop { reply } => {
                for (handle, _) in &apps {
                    handle.stop(true).await;
                }
                bare_handle.stop(true).await;
                for (_, task) in apps.drain(..) {
                    let _ = task.await;
                }
                let _ = bare_task.await;
                let _ = reply.send(());
                break;
            }
        }
    }
}

async fn build_app(vars: Vec<(String, String)>) -> Res<(AppInfo, Application)> {
    let config =
        AppConfig::from_lookup(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())?;
    let app = Application::build(config, Arc::new(LogMailer))
        .await
        .map_err(|e| format!("the application does not start: {e}"))?;
    let state = app.state();
    let admin_email = format!("admin-{}@example.com", Uuid::new_v4().simple());
    let hash = creativeflow::passwords::hash_password_now(PASSWORD).map_err(|e| e.to_string())?;
    create_user(
        &state.store,
        NewUser {
            email: Email::parse(&admin_email).map_err(|e| e.to_string())?,
            name: Name::parse("Bench admin", "name").map_err(|e| e.to_string())?,
            password_hash: hash,
            role: Role::Admin,
            signup_grant: 0,
        },
    )
    .await
    .map_err(|e| format!("cannot create the admin: {e}"))?;
    let info = AppInfo {
        port: app.port(),
        status: state.publisher.status.clone(),
        admin_email,
    };
    Ok((info, app))
}

/// What one app of the run owns: its queues on the broker and its data dir.
pub struct AppScratch {
    pub names: QueueNames,
    pub dir: tempfile::TempDir,
}

impl AppScratch {
    pub fn new(kind: &str) -> Res<AppScratch> {
        Ok(AppScratch {
            names: QueueNames::new(kind),
            dir: temp_dir(&format!("gen-{kind}"), None)?,
        })
    }
}

/// The environment of one app: its data dir, port 0, the broker URL `amqp` and a config file
/// naming the run's own queues (and lifting the signup limit: every bench user signs up from
/// the loopback address), then `BENCH_SERVER_TOML` if set (more settings to try, such as
/// `[generation] confirm_window`).
pub fn app_vars(app: &AppScratch, amqp: &str) -> Res<Vec<(String, String)>> {
    let (dir, names) = (&app.dir, &app.names);
    let config_path = dir.path().join("creativeflow.toml");
    let mut text = format!(
        "[queues]\nexchange = \"{}\"\njobs = \"{}\"\nrouting_key = \"{ROUTING_KEY}\"\n\
         results = \"{}\"\nresults_dlq = \"{}\"\nconnection_name = \"{}\"\n\
         [auth]\nsignups_per_ip_max = 1000000\npassword_hashes_admitted_max = 1024\n",
        names.exchange, names.jobs, names.results, names.dlq, names.tag
    );
    text.push_str(&env_str("BENCH_SERVER_TOML", ""));
    std::fs::write(&config_path, text).map_err(|e| format!("cannot write the config: {e}"))?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).map_err(|e| format!("cannot create the data dir: {e}"))?;
    Ok(vec![
        (
            "CREATIVEFLOW_DATA_DIR".into(),
            data.to_string_lossy().into_owned(),
        ),
        ("CREATIVEFLOW_LISTEN".into(), "127.0.0.1:0".into()),
        ("CREATIVEFLOW_AMQP_URL".into(), amqp.into()),
        (
            "CREATIVEFLOW_CONFIG".into(),
            config_path.to_string_lossy().into_owned(),
        ),
    ])
}
