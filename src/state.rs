use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::broker::PublisherHandle;
use actors::workspace::WorkspaceRegistry;
use actors::AccountRegistry;
use storage::Store;

use crate::config::Config;
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::ratelimit::LoginLimiter;

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
    pub started: Instant,
}

impl AppState {
    pub fn new(
        store: Store,
        accounts: Arc<AccountRegistry>,
        workspaces: Arc<WorkspaceRegistry>,
        publisher: PublisherHandle,
        config: Arc<Config>,
        mailer: Arc<dyn Mailer>,
    ) -> Self {
        let a = &config.file.auth;
        let login_limiter = LoginLimiter::new(
            Duration::from_secs(a.failed_login_window_seconds),
            a.failed_logins_per_account_max,
            a.failed_logins_per_ip_max,
        );
        AppState {
            store,
            accounts,
            workspaces,
            publisher,
            config,
            mailer,
            metrics: Arc::new(Metrics::default()),
            login_limiter,
            started: Instant::now(),
        }
    }
}
