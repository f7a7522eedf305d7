use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::broker::PublisherHandle;
use actors::workspace::WorkspaceRegistry;
use actors::AccountRegistry;
use storage::Store;

use crate::config::Config;
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::passwords::HashPool;
use crate::ratelimit::{InFlightPerIp, LoginLimiter, WindowLimiter};

/// The cluster mutex of payment events (an advisory lock key on PostgreSQL).
const BILLING_MUTEX: &[u8; 8] = b"cf-billi";
/// The cluster mutex of numbered records (tickets).
const NUMBERING_MUTEX: &[u8; 8] = b"cf-numbr";

/// What every handler can reach. Cheap to clone (all shared).
pub struct AppState {
    pub store: Store,
    pub accounts: Arc<AccountRegistry>,
    pub workspaces: Arc<WorkspaceRegistry>,
    pub publisher: PublisherHandle,
    pub config: Arc<Config>,
    pub mailer: Arc<dyn Mailer>,
    pub metrics: Arc<Metrics>,
    pub login_limiter: LoginLimiter,
    /// Signups per client IP.
    pub signup_limiter: WindowLimiter,
    /// Password-reset requests per email and per client IP.
    pub reset_limiter: WindowLimiter,
    /// Requests in flight per client IP.
    pub in_flight: InFlightPerIp,
    /// Every password hash and check runs here (bounded).
    pub hashes: HashPool,
    /// PayPal transmission verifier; `None` while `CREATIVEFLOW_PAYPAL_WEBHOOK_ID` is unset.
    pub paypal: Option<crate::paypal_verify::PaypalVerifier>,
    /// Payment events are applied one at a time, across all nodes on one database (each
    /// takes the next invoice number; see `billing`).
    pub billing_lock: storage::ClusterMutex,
    /// Writes tickets with their gapless numbers, one at a time.
    pub numbering: actix::Addr<actors::helpdesk::Numbering>,
    /// Wakes ticket event streams; bounds how many are open.
    pub tickets: Arc<crate::ticket_hub::TicketHub>,
    pub started: Instant,
    /// The same moment as seconds since the Unix epoch (`process_start_time_seconds`).
    pub started_unix_s: f64,
}

impl AppState {
    pub fn new(
        store: Store,
        accounts: Arc<AccountRegistry>,
        workspaces: Arc<WorkspaceRegistry>,
        publisher: PublisherHandle,
        config: Arc<Config>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, storage::StorageError> {
        let paypal = config.paypal_webhook_id.as_ref().and_then(|id| {
            let ca = config.paypal_ca_file.as_ref().and_then(|f| std::fs::read(f).ok());
            match crate::paypal_verify::PaypalVerifier::new(id.clone(), config.paypal_cert_url_prefixes.clone(), ca, 64, 300) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::error!(error = %e, "PayPal verifier unavailable; the PayPal webhook answers 503");
                    None
                }
            }
        });
        let a = &config.file.auth;
        let window =
            |name, seconds| WindowLimiter::for_store(name, Duration::from_secs(seconds), &store);
        let login_limiter = LoginLimiter::new(
            window("login", a.failed_login_window_seconds),
            a.failed_logins_per_account_max,
            a.failed_logins_per_ip_max,
        );
        let signup_limiter = window("signup", a.signup_window_seconds);
        let reset_limiter = window("reset", a.reset_request_window_seconds);
        let in_flight = InFlightPerIp::new(config.file.http.requests_in_flight_per_ip_max);
        let hashes = HashPool::new(
            a.password_hashes_running_max,
            a.password_hashes_admitted_max,
        );
        let numbering = actors::helpdesk::Numbering::start(
            store.clone(),
            store.cluster_mutex(NUMBERING_MUTEX)?,
        );
        let tickets = crate::ticket_hub::TicketHub::new(&config.file.helpdesk);
        if let Some(pg) = store.postgres() {
            // Other nodes' ticket changes wake this node's streams as soon as they are heard.
            let hub = tickets.clone();
            pg.watch(
                storage::Table::Tickets,
                Box::new(move |key| {
                    if let Ok(id) = uuid::Uuid::from_slice(key) {
                        hub.notify(id);
                    }
                }),
            );
        }
        let billing_lock = store.cluster_mutex(BILLING_MUTEX)?;
        Ok(AppState {
            store,
            accounts,
            workspaces,
            publisher,
            config,
            mailer,
            metrics: Arc::new(Metrics::default()),
            login_limiter,
            signup_limiter,
            reset_limiter,
            in_flight,
            hashes,
            paypal,
            billing_lock,
            numbering,
            tickets,
            started: Instant::now(),
            started_unix_s: storage::now_us() as f64 / 1e6,
        })
    }
}
