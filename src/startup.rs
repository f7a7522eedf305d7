//! Wiring: open the store, start the account actors, build the HTTP server and the control
//! socket. Tests start the same [`Application`] on port 0 with a temporary data folder.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{web, App, HttpServer};
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
        let store = Store::open(&config.data_dir, &config.store_options())?;
        let accounts = AccountRegistry::start(store.clone(), config.registry_options());
        let workspaces = WorkspaceRegistry::start(store.clone(), config.registry_options());
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
        ));
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
                .wrap(
                    ErrorHandlers::new()
                        .handler(StatusCode::METHOD_NOT_ALLOWED, method_not_allowed),
                )
                .wrap(from_fn(observe))
                .configure(crate::routes::configure)
                .default_service(web::to(|| async {
                    Err::<actix_web::HttpResponse, _>(AppError::NotFound)
                }))
        })
        .listen(listener)
        .map_err(|source| StartError::Listen {
            addr: listen.to_string(),
            source,
        })?
        .shutdown_timeout(30)
        .run();
        let control =
            crate::control::ControlServer::start(state.clone()).map_err(StartError::Control)?;
        spawn_token_janitor(state.store.clone());
        spawn_timeout_sweeper(state.clone());
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
        let result = self.server.await;
        tracing::info!("HTTP stopped; flushing the store");
        self.control.stop();
        self.bus.stop();
        self.state.accounts.stop();
        self.state.workspaces.stop();
        self.state.store.shutdown();
        tracing::info!("shutdown complete");
        result
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

fn method_not_allowed<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let (req, _) = res.into_parts();
    let resp = actix_web::ResponseError::error_response(&AppError::MethodNotAllowed);
    Ok(ErrorHandlerResponse::Response(
        ServiceResponse::new(req, resp).map_into_right_body(),
    ))
}

/// Counts and times every request, and logs it at debug (server errors are logged where made).
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let pattern = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    tracing::debug!(%method, route = %pattern, status, elapsed_us, "request");
    if let Some(state) = state {
        state
            .metrics
            .observe_request(method, pattern, status, elapsed_us);
    }
    Ok(res)
}
