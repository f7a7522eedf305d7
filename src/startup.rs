//! Wiring: open the store, start the account actors, build the HTTP server and the control
//! socket. Tests start the same [`Application`] on port 0 with a temporary data folder.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};
use actors::workspace::WorkspaceRegistry;
use actors::AccountRegistry;
use storage::Store;

use crate::config::Config;
use crate::error::AppError;
use crate::mailer::Mailer;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Store(#[from] storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("control socket: {0}")]
    Control(std::io::Error),
}

pub struct Application {
    port: u16,
    bus: actix::Arbiter,
    server: Server,
    state: web::Data<AppState>,
    control: crate::control::ControlServer,
}

impl Application {
    /// Must run inside an actix System (the account actors live on its arbiters).
    pub async fn build(config: Config, mailer: Arc<dyn Mailer>) -> Result<Application, StartError> {
        let started = Instant::now();
        let store = config.open_store()?;
        let accounts = AccountRegistry::start(store.clone(), config.registry_options());
        let workspaces = WorkspaceRegistry::start_with(
            store.clone(),
            config.quotas(),
            config.registry_options(),
        );
        let (publisher, bus) = actors::broker::start_bus(
            store.clone(),
            accounts.clone(),
            workspaces.clone(),
            config.broker_config(),
        );
        let listen = config.listen;
        let state = web::Data::new(AppState::new(
            store,
            accounts,
            workspaces,
            publisher,
            Arc::new(config),
            mailer,
        )?);
        let listener = TcpListener::bind(listen).map_err(|source| StartError::Listen {
            addr: listen.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: listen.to_string(),
                source,
            })?
            .port();
        let data = state.clone();
        let connections =
            crate::ratelimit::ConnectionsPerIp::new(state.config.file.http.connections_per_ip_max);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(
                    web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()),
                )
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| AppError::validation("query", e.to_string()).into()),
                )
                .wrap(from_fn(limit_in_flight))
                .wrap(from_fn(crate::telemetry::observe))
                .configure(crate::routes::configure)
                .configure(crate::admin::configure)
                .service(crate::openapi::serve)
                .default_service(web::to(fallback))
        })
        // Before `listen`: the listener's service factory takes the hook when it is made.
        .on_connect(move |conn, data| {
            let peer = conn
                .downcast_ref::<actix_web::rt::net::TcpStream>()
                .and_then(|tcp| tcp.peer_addr().ok());
            if let Some(peer) = peer {
                data.insert(connections.open(peer.ip()));
            }
        })
        .listen(listener)
        .map_err(|source| StartError::Listen {
            addr: listen.to_string(),
            source,
        })?
        .shutdown_timeout(30)
        // actix-server would stop at once on SIGINT; we stop gracefully on both signals.
        .disable_signals()
        .run();
        spawn_signal_handler(server.handle(), state.clone());
        let control =
            crate::control::ControlServer::start(state.clone()).map_err(StartError::Control)?;
        spawn_token_janitor(state.store.clone());
        spawn_deletion_resumer(state.clone());
        spawn_timeout_sweeper(state.clone());
        spawn_sla_sweeper(state.clone());
        spawn_rollups(state.clone());
        tracing::info!(
            %listen, port, data_dir = %state.config.data_dir.display(),
            startup_ms = started.elapsed().as_millis() as u64,
            "creativeflow serving"
        );
        Ok(Application {
            port,
            bus,
            server,
            state,
            control,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or a stop through the handle): stops accepting, lets
    /// in-flight requests finish (their writes included), then commits what the writer holds.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application {
            server,
            bus,
            state,
            control,
            ..
        } = self;
        let _parts = Parts {
            bus,
            state,
            control,
        };
        let result = server.await;
        tracing::info!("HTTP stopped; flushing the store");
        result
    }
}

/// What outlives the HTTP server until stopped: stopped when [`Application::run_until_stopped`]
/// ends, and also when its future is dropped unfinished (its runtime ended first, as at the
/// end of a test): the bus and account arbiters and the store's threads would otherwise run on,
/// still talking to the broker and the database.
struct Parts {
    bus: actix::Arbiter,
    state: web::Data<AppState>,
    control: crate::control::ControlServer,
}

impl Drop for Parts {
    fn drop(&mut self) {
        self.control.stop();
        self.bus.stop();
        self.state.accounts.stop();
        self.state.workspaces.stop();
        self.state.store.shutdown();
        tracing::info!("shutdown complete");
    }
}

/// Expired sessions, reset codes and idempotency keys are purged every 10 minutes, a bounded number per run.
fn spawn_token_janitor(store: Store) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    const PER_RUN_MAX: usize = 10_000;
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            match crate::services::credits::purge_expired_idempotency(&store, PER_RUN_MAX).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired idempotency keys purged"),
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
            }
            match crate::services::users::purge_expired_tokens(&store, PER_RUN_MAX).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired tokens purged"),
                Err(storage_closed @ AppError::Unavailable(_)) => {
                    tracing::debug!(error = %storage_closed, "token janitor stops");
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "token purge failed"),
            }
        }
    });
}

/// Workbenches being deleted in batches (their owner's actor deletes them, and schedules
/// itself until done) are picked up at start — a crash or restart interrupted them — and again
/// every 10 minutes in case an actor was let go mid-way.
fn spawn_deletion_resumer(state: web::Data<AppState>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(600);
    const OWNERS_PER_RUN_MAX: usize = 10_000;
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tick.tick().await;
            let marks = match state.store.scan::<storage::records::DeletingWorkbench>(
                &[],
                None,
                storage::Direction::Forward,
                OWNERS_PER_RUN_MAX,
            ) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list deletions in progress");
                    continue;
                }
            };
            let mut owners: Vec<uuid::Uuid> = marks
                .iter()
                .filter_map(|(k, _)| k.get(..16).and_then(|b| uuid::Uuid::from_slice(b).ok()))
                .collect();
            owners.dedup();
            for owner in owners {
                if let Err(e) = state.workspaces.resume_deletions(owner).await {
                    tracing::warn!(%owner, error = %e, "deletion not resumed; retried next run");
                }
            }
        }
    });
}

/// Requests past their deadline fail and are refunded; the live index is in the store, so
/// deadlines survive restarts.
fn spawn_timeout_sweeper(state: web::Data<AppState>) {
    const PER_RUN_MAX: usize = 1000;
    let every = std::time::Duration::from_secs(state.config.file.generation.timeout_check_seconds);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match crate::services::generation::sweep_timeouts(&state, PER_RUN_MAX).await {
                Ok(_) => {}
                Err(AppError::Unavailable(_)) => break,
                Err(e) => tracing::warn!(error = %e, "timeout sweep failed"),
            }
        }
    });
}

/// Tickets whose first-response deadline passed unanswered are marked and counted; the
/// deadline index is in the store, so deadlines survive restarts.
fn spawn_sla_sweeper(state: web::Data<AppState>) {
    const PER_RUN_MAX: usize = 1000;
    let every = std::time::Duration::from_secs(state.config.file.helpdesk.sla_check_seconds);
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            match crate::services::helpdesk::sweep_sla(&state, PER_RUN_MAX).await {
                Ok(_) => {}
                Err(AppError::Unavailable(_)) => break,
                Err(e) => tracing::warn!(error = %e, "SLA sweep failed"),
            }
        }
    });
}

/// Rolls up the dashboard's settled days: soon after start, then every ten minutes.
fn spawn_rollups(state: web::Data<AppState>) {
    const FIRST_AFTER_S: u64 = 5;
    const EVERY_S: u64 = 600;
    actix_web::rt::spawn(async move {
        let start = tokio::time::Instant::now() + std::time::Duration::from_secs(FIRST_AFTER_S);
        let mut tick = tokio::time::interval_at(start, std::time::Duration::from_secs(EVERY_S));
        loop {
            tick.tick().await;
            match crate::services::rollups::roll_up(&state.store, storage::now_us()).await {
                Ok(0) => {}
                Ok(days) => tracing::info!(days, "dashboard days rolled up"),
                Err(AppError::Unavailable(_)) => break,
                Err(e) => tracing::warn!(error = %e, "dashboard rollup failed"),
            }
        }
    });
}

/// At most `[http] requests_in_flight_per_ip_max` requests of one client IP run at once;
/// beyond, 429 at once (with `Retry-After`), before any body is read.
async fn limit_in_flight(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req
        .conn_data::<crate::ratelimit::ConnectionSlot>()
        .is_some_and(|c| c.over)
    {
        // Too many connections of this IP: answered, and this one closes.
        return Err(AppError::TooManyConnections.into());
    }
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let ip = req.peer_addr().map(|a| a.ip());
    let _slot = match (&state, ip) {
        (Some(state), Some(ip)) => match state.in_flight.enter(ip) {
            Some(slot) => Some(slot),
            None => return Err(AppError::RateLimited { retry_after_s: 1 }.into()),
        },
        _ => None,
    };
    next.call(req).await
}

/// No route matched: 405 with `Allow` when the path is a route under another method (every
/// method, TRACE and PUT included), else 404.
async fn fallback(req: HttpRequest) -> Result<actix_web::HttpResponse, AppError> {
    Err(match crate::openapi::allowed_methods(req.path()) {
        Some(allow) => AppError::MethodNotAllowed { allow },
        None => AppError::NotFound,
    })
}

/// SIGTERM and SIGINT both stop gracefully: stop accepting, finish in-flight requests, then
/// [`Application::run_until_stopped`] flushes the store. A second signal does not force more:
/// the shutdown timeout bounds the wait.
fn spawn_signal_handler(handle: ServerHandle, state: web::Data<AppState>) {
    actix_web::rt::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        let which = tokio::select! {
            _ = term.recv() => "SIGTERM",
            r = tokio::signal::ctrl_c() => match r {
                Ok(()) => "SIGINT",
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGINT");
                    return;
                }
            },
        };
        tracing::info!(signal = which, "stopping gracefully");
        // Event streams never finish by themselves: end them so they do not hold the stop.
        state.tickets.stop();
        handle.stop(true).await;
    });
}
