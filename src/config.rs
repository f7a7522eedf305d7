//! Configuration: the SPEC's environment variables plus an optional TOML file. A bad value
//! stops start-up with one line naming the variable and why.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// A secret value: usable, never printable by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {variable}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

fn bad(variable: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable: variable.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    pub enable_paypal_payments: bool,
    pub enable_live_chat_support: bool,
    pub enable_user_template_saving: bool,
    pub enable_progressive_profiling: bool,
}

/// The `[credits]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditsConfig {
    /// Credits granted at signup (SPEC §4: default 10).
    pub signup_grant: u64,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        CreditsConfig { signup_grant: 10 }
    }
}

/// `[quotas.<tier>]`: workbenches, projects, brand kits and assets together, and asset bytes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub records_max: u64,
    pub asset_bytes_max: u64,
}

pub fn default_quotas() -> std::collections::BTreeMap<String, QuotaConfig> {
    let d = actors::workspace::Quotas::default();
    [
        ("free", d.free),
        ("pro", d.pro),
        ("team", d.team),
        ("enterprise", d.enterprise),
    ]
    .into_iter()
    .map(|(t, q)| {
        (
            t.to_string(),
            QuotaConfig {
                records_max: q.records_max,
                asset_bytes_max: q.asset_bytes_max,
            },
        )
    })
    .collect()
}

impl Config {
    /// The quotas as the workspace actors take them (validated: every tier is present).
    pub fn quotas(&self) -> actors::workspace::Quotas {
        let q = |tier: &str| {
            let c = self.file.quotas.get(tier).copied().unwrap_or(QuotaConfig {
                records_max: 0,
                asset_bytes_max: 0,
            });
            actors::workspace::Quota {
                records_max: c.records_max,
                asset_bytes_max: c.asset_bytes_max,
            }
        };
        actors::workspace::Quotas {
            free: q("free"),
            pro: q("pro"),
            team: q("team"),
            enterprise: q("enterprise"),
        }
    }
}

/// `[profiling]`: the progressive profile questions, asked one at a time in this order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilingConfig {
    pub questions: Vec<ProfileQuestion>,
}

/// One question: `choices` are the accepted answers; with `free_text` any short text is too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuestion {
    pub key: String,
    pub text: String,
    #[serde(default)]
    pub choices: Vec<String>,
    #[serde(default)]
    pub free_text: bool,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        let q = |key: &str, text: &str, choices: &[&str], free_text: bool| ProfileQuestion {
            key: key.into(),
            text: text.into(),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            free_text,
        };
        ProfilingConfig {
            questions: vec![
                q(
                    "role",
                    "What is your role?",
                    &[
                        "marketer",
                        "designer",
                        "founder",
                        "agency",
                        "developer",
                        "other",
                    ],
                    true,
                ),
                q(
                    "company_size",
                    "How large is your company?",
                    &["1", "2-10", "11-50", "51-200", "201-1000", "1000+"],
                    false,
                ),
                q(
                    "use_case",
                    "What will you create first?",
                    &[
                        "social_posts",
                        "ads",
                        "stories",
                        "banners",
                        "videos",
                        "other",
                    ],
                    true,
                ),
                q(
                    "industry",
                    "Which industry are you in?",
                    &[
                        "retail",
                        "saas",
                        "media",
                        "education",
                        "health",
                        "finance",
                        "other",
                    ],
                    true,
                ),
            ],
        }
    }
}

/// The `[http]` section: what one client may hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request body must arrive within this; past it, 408 and the connection closes (a client
    /// that stops sending cannot hold a connection and a descriptor forever).
    pub body_timeout_seconds: u64,
    /// Requests in flight at once from one client IP; beyond, 429.
    pub requests_in_flight_per_ip_max: u32,
    /// Open connections of one client IP; a connection beyond is answered 429 and closed at
    /// its first request (one that never sends a request is closed after actix's 5 s).
    pub connections_per_ip_max: u32,
    /// Back-office cookies always `Secure` (set it behind a TLS proxy that does not send
    /// `X-Forwarded-Proto`); otherwise `Secure` when the request came over HTTPS.
    pub secure_cookies: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            body_timeout_seconds: 5,
            requests_in_flight_per_ip_max: 256,
            connections_per_ip_max: 256,
            secure_cookies: false,
        }
    }
}

/// The `[auth]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub token_ttl_hours: u64,
    pub reset_token_ttl_minutes: u64,
    /// Failed logins allowed per account within the window before 429.
    pub failed_logins_per_account_max: u32,
    /// Failed logins allowed per client IP within the window before 429.
    pub failed_logins_per_ip_max: u32,
    pub failed_login_window_seconds: u64,
    /// Live sessions per user; a new login revokes the oldest beyond it.
    pub sessions_per_user_max: usize,
    /// Password hashes running at once (0: one per core) and running or waiting; past the
    /// second, 503 `overloaded`.
    pub password_hashes_running_max: usize,
    pub password_hashes_admitted_max: usize,
    /// Signups per client IP within the window (credit farming, enumeration by `email_taken`).
    pub signups_per_ip_max: u32,
    pub signup_window_seconds: u64,
    /// Password-reset requests per email and per client IP within the window.
    pub reset_requests_per_email_max: u32,
    pub reset_requests_per_ip_max: u32,
    pub reset_request_window_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_ttl_hours: 24 * 7,
            reset_token_ttl_minutes: 60,
            failed_logins_per_account_max: 5,
            failed_logins_per_ip_max: 50,
            failed_login_window_seconds: 15 * 60,
            sessions_per_user_max: 50,
            password_hashes_running_max: 0,
            password_hashes_admitted_max: 32,
            signups_per_ip_max: 20,
            signup_window_seconds: 3600,
            reset_requests_per_email_max: 3,
            reset_requests_per_ip_max: 20,
            reset_request_window_seconds: 3600,
        }
    }
}

/// The `[store]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub cache_size_mib: usize,
    pub writer_queue_capacity: usize,
    pub writer_batch_size_max: usize,
    pub account_journal_fold_entries: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let d = storage::StoreOptions::default();
        StoreConfig {
            cache_size_mib: d.cache_size_bytes / (1024 * 1024),
            writer_queue_capacity: d.writer_queue_capacity,
            writer_batch_size_max: d.writer_batch_size_max,
            account_journal_fold_entries: d.account_journal_fold_entries,
        }
    }
}

/// The `[accounts]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    pub idle_after_seconds: u64,
    pub live_accounts_max: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            idle_after_seconds: 60,
            live_accounts_max: 100_000,
        }
    }
}

/// The `[queues]` section: RabbitMQ names (SPEC §7 defaults).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueuesConfig {
    pub exchange: String,
    pub jobs: String,
    pub routing_key: String,
    pub results: String,
    pub results_dlq: String,
    /// Prefix of our connection names as the broker lists them.
    pub connection_name: String,
}

impl Default for QueuesConfig {
    fn default() -> Self {
        let d = actors::broker::BrokerConfig::default();
        QueuesConfig {
            exchange: d.exchange,
            jobs: d.jobs_queue,
            routing_key: d.routing_key,
            results: d.results_queue,
            results_dlq: d.results_dlq,
            connection_name: d.connection_name,
        }
    }
}

/// The `[generation]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerationConfig {
    /// A request with no result within this fails with `generation_timeout` and is refunded.
    pub deadline_seconds: u64,
    pub timeout_check_seconds: u64,
    /// Unconfirmed publishes in flight at most.
    pub confirm_window: usize,
    /// Unacked result deliveries at most.
    pub prefetch: u16,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            deadline_seconds: 30 * 60,
            timeout_check_seconds: 30,
            confirm_window: 1000,
            prefetch: 64,
        }
    }
}

/// The `[helpdesk]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HelpdeskConfig {
    /// First-response deadline per tier, in hours, from when a ticket is opened.
    pub first_response_hours: std::collections::BTreeMap<String, u32>,
    /// How often the SLA sweep marks tickets whose deadline passed unanswered.
    pub sla_check_seconds: u64,
    /// Event streams (`/tickets/{id}/events`) one user may hold open at once.
    pub streams_per_user_max: usize,
    /// Event streams open at once on this node.
    pub streams_max: usize,
    /// A stream ends after this; the client reconnects with `Last-Event-ID` (authenticated anew).
    pub stream_lifetime_seconds: u64,
}

impl Default for HelpdeskConfig {
    fn default() -> Self {
        HelpdeskConfig {
            first_response_hours: [("free", 72), ("pro", 24), ("team", 8), ("enterprise", 4)]
                .into_iter()
                .map(|(t, h)| (t.to_string(), h))
                .collect(),
            sla_check_seconds: 30,
            streams_per_user_max: 5,
            streams_max: 10_000,
            stream_lifetime_seconds: 3600,
        }
    }
}

impl HelpdeskConfig {
    /// The first-response promise of a tier, in microseconds.
    pub fn first_response_within_us(&self, tier: storage::records::Tier) -> i64 {
        let hours = self
            .first_response_hours
            .get(tier.as_str())
            .copied()
            .unwrap_or(72);
        i64::from(hours) * 3_600_000_000
    }

    fn validate(&self) -> Result<(), String> {
        let tiers = ["free", "pro", "team", "enterprise"];
        if self.first_response_hours.len() != tiers.len()
            || !tiers.iter().all(|t| {
                self.first_response_hours
                    .get(*t)
                    .is_some_and(|h| (1..=8760).contains(h))
            })
        {
            return Err(
                "helpdesk.first_response_hours: give free, pro, team and enterprise, each 1..8760"
                    .into(),
            );
        }
        if self.sla_check_seconds == 0
            || self.streams_per_user_max == 0
            || self.streams_max == 0
            || self.stream_lifetime_seconds == 0
        {
            return Err("helpdesk: sla_check_seconds, streams_per_user_max, streams_max and stream_lifetime_seconds must be at least 1".into());
        }
        Ok(())
    }
}

/// A subscription plan (`[plans.pro]`, `[plans.team]`, `[plans.enterprise]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Credits granted once per paid invoice (each period).
    pub monthly_credits: u64,
    #[serde(default)]
    pub stripe_price_ids: Vec<String>,
    #[serde(default)]
    pub paypal_plan_ids: Vec<String>,
}

/// A credit pack (`[packs.credits_100]` …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    pub credits: u64,
    pub price_minor: u64,
    /// ISO 4217, lower case (as Stripe sends it).
    pub currency: String,
    #[serde(default)]
    pub stripe_price_ids: Vec<String>,
}

/// SPEC §8 default plans.
pub fn default_plans() -> std::collections::BTreeMap<String, PlanConfig> {
    [("pro", 500), ("team", 2000), ("enterprise", 10_000)]
        .into_iter()
        .map(|(k, c)| {
            (
                k.to_string(),
                PlanConfig {
                    monthly_credits: c,
                    stripe_price_ids: vec![],
                    paypal_plan_ids: vec![],
                },
            )
        })
        .collect()
}

/// SPEC §8 default packs.
pub fn default_packs() -> std::collections::BTreeMap<String, PackConfig> {
    [
        ("credits_100", 100, 999),
        ("credits_500", 500, 3999),
        ("credits_2000", 2000, 12999),
    ]
    .into_iter()
    .map(|(k, credits, price)| {
        (
            k.to_string(),
            PackConfig {
                credits,
                price_minor: price,
                currency: "usd".into(),
                stripe_price_ids: vec![],
            },
        )
    })
    .collect()
}

/// SPEC §7 default price table (credits per variation).
pub fn default_prices() -> std::collections::BTreeMap<String, u64> {
    [
        ("social_post", 1),
        ("story", 1),
        ("banner", 1),
        ("image_hd", 2),
        ("video_short", 10),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Whether an `amqp://user:pass@host:port/vhost` URL names a loopback host.
fn amqp_host_is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The optional TOML file (`CREATIVEFLOW_CONFIG`). Unknown keys are refused: a typo in a money
/// setting must not be silently ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub http: HttpConfig,
    pub profiling: ProfilingConfig,
    /// `[quotas.<tier>]`: what one user's workspace may hold; replaces the defaults when given.
    #[serde(default = "default_quotas")]
    pub quotas: std::collections::BTreeMap<String, QuotaConfig>,
    pub credits: CreditsConfig,
    pub auth: AuthConfig,
    pub store: StoreConfig,
    pub accounts: AccountsConfig,
    /// `[prices]`: format → credits per variation. Replaces the default table when given.
    #[serde(default = "default_prices")]
    pub prices: std::collections::BTreeMap<String, u64>,
    pub queues: QueuesConfig,
    pub generation: GenerationConfig,
    pub helpdesk: HelpdeskConfig,
    /// `[plans.<tier>]`; replaces the default plans when given.
    #[serde(default = "default_plans")]
    pub plans: std::collections::BTreeMap<String, PlanConfig>,
    /// `[packs.<code>]`; replaces the default packs when given.
    #[serde(default = "default_packs")]
    pub packs: std::collections::BTreeMap<String, PackConfig>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub amqp_url: Secret,
    pub stripe_webhook_secret: Option<Secret>,
    pub paypal_webhook_id: Option<String>,
    pub paypal_cert_url_prefixes: Vec<String>,
    pub paypal_ca_file: Option<PathBuf>,
    pub features: Features,
    pub file: FileConfig,
    /// The PostgreSQL store (`ODOO_DB_*` or `CREATIVEFLOW_DATABASE_URL`); `None`: the embedded
    /// store in `data_dir`.
    pub database: Option<storage::pg::PgSettings>,
}

pub const DEFAULT_PAYPAL_CERT_PREFIXES: [&str; 4] = [
    "https://api.paypal.com/v1/notifications/certs/",
    "https://api-m.paypal.com/v1/notifications/certs/",
    "https://api.sandbox.paypal.com/v1/notifications/certs/",
    "https://api-m.sandbox.paypal.com/v1/notifications/certs/",
];

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `get`, so tests can configure without touching the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let listen = match var("CREATIVEFLOW_LISTEN") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.trim().parse().map_err(|_| {
                bad(
                    "CREATIVEFLOW_LISTEN",
                    format!("'{v}' is not an address like 127.0.0.1:8080"),
                )
            })?,
        };
        let data_dir =
            PathBuf::from(var("CREATIVEFLOW_DATA_DIR").unwrap_or_else(|| "./data".into()));
        if data_dir.exists() && !data_dir.is_dir() {
            return Err(bad(
                "CREATIVEFLOW_DATA_DIR",
                format!("'{}' exists and is not a folder", data_dir.display()),
            ));
        }
        let amqp_url = var("CREATIVEFLOW_AMQP_URL")
            .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        if !(amqp_url.starts_with("amqp://") || amqp_url.starts_with("amqps://")) {
            return Err(bad(
                "CREATIVEFLOW_AMQP_URL",
                "must start with amqps:// (TLS, checked against the system roots) or amqp://",
            ));
        }
        if amqp_url.starts_with("amqp://") && !amqp_host_is_loopback(&amqp_url) {
            tracing::warn!("CREATIVEFLOW_AMQP_URL is plain amqp:// to a host that is not loopback: jobs and credentials cross the network in clear text; use amqps://");
        }
        let stripe_webhook_secret = match var("CREATIVEFLOW_STRIPE_WEBHOOK_SECRET") {
            None => None,
            Some(s) if s.starts_with("whsec_") && s.len() > "whsec_".len() => Some(Secret(s)),
            Some(_) => {
                return Err(bad(
                    "CREATIVEFLOW_STRIPE_WEBHOOK_SECRET",
                    "must be a Stripe endpoint secret starting with whsec_",
                ))
            }
        };
        let paypal_webhook_id = var("CREATIVEFLOW_PAYPAL_WEBHOOK_ID");
        let paypal_cert_url_prefixes = match var("CREATIVEFLOW_PAYPAL_CERT_URL_PREFIXES") {
            None => DEFAULT_PAYPAL_CERT_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(v) => {
                let list: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                if let Some(p) = list.iter().find(|p| !valid_cert_prefix(p)) {
                    return Err(bad(
                        "CREATIVEFLOW_PAYPAL_CERT_URL_PREFIXES",
                        format!("'{p}' is not an http(s) URL prefix ending in '/'"),
                    ));
                }
                list
            }
        };
        let paypal_ca_file = var("CREATIVEFLOW_PAYPAL_CA_FILE").map(PathBuf::from);
        if let Some(f) = &paypal_ca_file {
            if !f.is_file() {
                return Err(bad(
                    "CREATIVEFLOW_PAYPAL_CA_FILE",
                    format!("'{}' is not a readable file", f.display()),
                ));
            }
        }
        let flag = |k: &str| -> Result<bool, ConfigError> {
            match var(k).map(|v| v.trim().to_ascii_lowercase()) {
                None => Ok(false),
                Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
                Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
                Some(v) => Err(bad(k, format!("'{v}' is not true or false"))),
            }
        };
        let features = Features {
            enable_paypal_payments: flag("CREATIVEFLOW_ENABLE_PAYPAL_PAYMENTS")?,
            enable_live_chat_support: flag("CREATIVEFLOW_ENABLE_LIVE_CHAT_SUPPORT")?,
            enable_user_template_saving: flag("CREATIVEFLOW_ENABLE_USER_TEMPLATE_SAVING")?,
            enable_progressive_profiling: flag("CREATIVEFLOW_ENABLE_PROGRESSIVE_PROFILING")?,
        };
        let file = match var("CREATIVEFLOW_CONFIG") {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    bad("CREATIVEFLOW_CONFIG", format!("cannot read '{path}': {e}"))
                })?;
                let file: FileConfig = toml::from_str(&text).map_err(|e| {
                    bad(
                        "CREATIVEFLOW_CONFIG",
                        format!("'{path}': {}", e.to_string().replace('\n', " ")),
                    )
                })?;
                file.validate()
                    .map_err(|r| bad("CREATIVEFLOW_CONFIG", format!("'{path}': {r}")))?;
                file
            }
        };
        let database = database(&var)?;
        Ok(Config {
            database,
            listen,
            data_dir,
            amqp_url: Secret(amqp_url),
            stripe_webhook_secret,
            paypal_webhook_id,
            paypal_cert_url_prefixes,
            paypal_ca_file,
            features,
            file,
        })
    }

    /// Opens the configured store: PostgreSQL when a database is set, else the embedded one.
    pub fn open_store(&self) -> Result<storage::Store, storage::StorageError> {
        match &self.database {
            Some(pg) => storage::Store::connect_postgres(pg, &self.store_options()),
            None => storage::Store::open(&self.data_dir, &self.store_options()),
        }
    }

    pub fn store_options(&self) -> storage::StoreOptions {
        storage::StoreOptions {
            cache_size_bytes: self.file.store.cache_size_mib * 1024 * 1024,
            writer_queue_capacity: self.file.store.writer_queue_capacity,
            writer_batch_size_max: self.file.store.writer_batch_size_max,
            account_journal_fold_entries: self.file.store.account_journal_fold_entries,
        }
    }

    pub fn broker_config(&self) -> actors::broker::BrokerConfig {
        let q = &self.file.queues;
        actors::broker::BrokerConfig {
            amqp_url: self.amqp_url.expose().to_string(),
            exchange: q.exchange.clone(),
            jobs_queue: q.jobs.clone(),
            routing_key: q.routing_key.clone(),
            results_queue: q.results.clone(),
            results_dlq: q.results_dlq.clone(),
            confirm_window: self.file.generation.confirm_window,
            prefetch: self.file.generation.prefetch,
            connection_name: q.connection_name.clone(),
            ..actors::broker::BrokerConfig::default()
        }
    }

    pub fn registry_options(&self) -> actors::RegistryOptions {
        actors::RegistryOptions {
            idle_after_ms: self.file.accounts.idle_after_seconds * 1000,
            live_actors_max: self.file.accounts.live_accounts_max,
            ..actors::RegistryOptions::default()
        }
    }
}

/// The PostgreSQL store's settings: `CREATIVEFLOW_DATABASE_URL`, or `ODOO_DB_HOST` with
/// `ODOO_DB_PORT` (5432), `ODOO_DB_USER` (postgres), `ODOO_DB_PASSWORD`, `ODOO_DB_NAME`
/// (creativeflow), as the original system named them; TLS from
/// `CREATIVEFLOW_DATABASE_SSLMODE` (disable, prefer, require; default prefer) and
/// `CREATIVEFLOW_DATABASE_CA_FILE`. Neither set: `None`, the embedded store.
fn database(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<storage::pg::PgSettings>, ConfigError> {
    use storage::pg::{PgSettings, TlsMode};
    let mut settings = match (var("CREATIVEFLOW_DATABASE_URL"), var("ODOO_DB_HOST")) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(bad(
                "CREATIVEFLOW_DATABASE_URL",
                "set either it or ODOO_DB_HOST, not both",
            ))
        }
        (Some(url), None) => PgSettings::from_url(url.trim())
            .map_err(|e| bad("CREATIVEFLOW_DATABASE_URL", e.to_string()))?,
        (None, Some(host)) => {
            let port = match var("ODOO_DB_PORT") {
                None => 5432,
                Some(p) => p
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| bad("ODOO_DB_PORT", format!("'{p}' is not a port number")))?,
            };
            let user = var("ODOO_DB_USER").unwrap_or_else(|| "postgres".into());
            let name = var("ODOO_DB_NAME").unwrap_or_else(|| "creativeflow".into());
            PgSettings::new(host.trim(), port, user.trim(), name.trim())
                .with_password(var("ODOO_DB_PASSWORD"))
        }
    };
    if let Some(mode) = var("CREATIVEFLOW_DATABASE_SSLMODE") {
        settings.tls = TlsMode::parse(mode.trim()).ok_or_else(|| {
            bad(
                "CREATIVEFLOW_DATABASE_SSLMODE",
                format!("'{mode}' is not disable, prefer or require"),
            )
        })?;
    }
    let connections = |name: &str, max: usize| -> Result<Option<usize>, ConfigError> {
        var(name)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=max).contains(n))
                    .ok_or_else(|| bad(name, format!("'{v}' is not a number from 1 to {max}")))
            })
            .transpose()
    };
    if let Some(n) = connections(
        "CREATIVEFLOW_DATABASE_WRITER_CONNECTIONS",
        storage::pg::WRITER_CONNECTIONS_MAX,
    )? {
        settings.writer_connections = n;
    }
    if let Some(n) = connections(
        "CREATIVEFLOW_DATABASE_READ_CONNECTIONS",
        storage::pg::READ_CONNECTIONS_MAX,
    )? {
        settings.read_connections = n;
    }
    if let Some(ca) = var("CREATIVEFLOW_DATABASE_CA_FILE") {
        let ca = PathBuf::from(ca);
        if !ca.is_file() {
            return Err(bad(
                "CREATIVEFLOW_DATABASE_CA_FILE",
                format!("'{}' is not a readable file", ca.display()),
            ));
        }
        settings.ca_file = Some(ca);
    }
    Ok(Some(settings))
}

fn valid_cert_prefix(p: &str) -> bool {
    (p.starts_with("https://") || p.starts_with("http://")) && p.ends_with('/')
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            http: HttpConfig::default(),
            profiling: ProfilingConfig::default(),
            quotas: default_quotas(),
            credits: CreditsConfig::default(),
            auth: AuthConfig::default(),
            store: StoreConfig::default(),
            accounts: AccountsConfig::default(),
            prices: default_prices(),
            queues: QueuesConfig::default(),
            generation: GenerationConfig::default(),
            helpdesk: HelpdeskConfig::default(),
            plans: default_plans(),
            packs: default_packs(),
        }
    }
}

impl FileConfig {
    fn validate(&self) -> Result<(), String> {
        let keys: std::collections::BTreeSet<&str> = self
            .profiling
            .questions
            .iter()
            .map(|q| q.key.as_str())
            .collect();
        if keys.len() != self.profiling.questions.len()
            || self.profiling.questions.len() > 50
            || self.profiling.questions.iter().any(|q| {
                q.key.is_empty() || q.text.is_empty() || (q.choices.is_empty() && !q.free_text)
            })
        {
            return Err("profiling.questions: at most 50, unique non-empty keys and texts, each with choices or free_text".into());
        }
        let tiers = ["free", "pro", "team", "enterprise"];
        if self.quotas.len() != tiers.len()
            || !tiers.iter().all(|t| self.quotas.contains_key(*t))
            || self.quotas.values().any(|q| q.records_max == 0)
        {
            return Err("quotas: give [quotas.free], [quotas.pro], [quotas.team] and [quotas.enterprise], each with records_max >= 1 and asset_bytes_max".into());
        }
        for (format, credits) in &self.prices {
            let name_ok = !format.is_empty()
                && format.len() <= 64
                && format
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !name_ok || !(1..=10_000).contains(credits) {
                return Err(format!(
                    "prices.{format} must be a lower_snake name priced 1..10000 credits"
                ));
            }
        }
        for (tier, plan) in &self.plans {
            if !matches!(tier.as_str(), "pro" | "team" | "enterprise")
                || plan.monthly_credits > 10_000_000
            {
                return Err(format!("plans.{tier}: plans are pro, team or enterprise with at most 10000000 monthly credits"));
            }
        }
        for (code, pack) in &self.packs {
            let currency_ok =
                pack.currency.len() == 3 && pack.currency.chars().all(|c| c.is_ascii_lowercase());
            if !currency_ok
                || pack.credits == 0
                || pack.credits > 10_000_000
                || pack.price_minor == 0
            {
                return Err(format!("packs.{code}: credits 1..10000000, price_minor above 0, currency a lower-case ISO 4217 code"));
            }
        }
        if self.prices.is_empty() {
            return Err("prices must list at least one format".into());
        }
        let q = &self.queues;
        for (name, v) in [
            ("exchange", &q.exchange),
            ("jobs", &q.jobs),
            ("routing_key", &q.routing_key),
            ("results", &q.results),
            ("results_dlq", &q.results_dlq),
            ("connection_name", &q.connection_name),
        ] {
            if v.is_empty() || v.len() > 200 {
                return Err(format!("queues.{name} must be 1..200 characters"));
            }
        }
        self.helpdesk.validate()?;
        let g = &self.generation;
        if g.deadline_seconds == 0
            || g.timeout_check_seconds == 0
            || !(1..=10_000).contains(&g.confirm_window)
            || g.prefetch == 0
        {
            return Err("generation: deadline_seconds, timeout_check_seconds and prefetch must be at least 1; confirm_window 1..10000".into());
        }
        let a = &self.auth;
        let s = &self.store;
        let h = &self.http;
        let checks: [(bool, &str); 13] = [
            (
                h.body_timeout_seconds >= 1
                    && h.requests_in_flight_per_ip_max >= 1
                    && h.connections_per_ip_max >= 1,
                "http.body_timeout_seconds, requests_in_flight_per_ip_max and connections_per_ip_max must be at least 1",
            ),
            (
                self.credits.signup_grant <= 1_000_000,
                "credits.signup_grant must be at most 1000000",
            ),
            (
                a.token_ttl_hours >= 1,
                "auth.token_ttl_hours must be at least 1",
            ),
            (
                a.reset_token_ttl_minutes >= 1,
                "auth.reset_token_ttl_minutes must be at least 1",
            ),
            (
                a.failed_logins_per_account_max >= 1 && a.failed_logins_per_ip_max >= 1,
                "auth.failed_logins_*_max must be at least 1",
            ),
            (
                a.failed_login_window_seconds >= 1,
                "auth.failed_login_window_seconds must be at least 1",
            ),
            (
                a.sessions_per_user_max >= 1 && a.password_hashes_admitted_max >= 1,
                "auth.sessions_per_user_max and auth.password_hashes_admitted_max must be at least 1",
            ),
            (
                a.signups_per_ip_max >= 1
                    && a.reset_requests_per_email_max >= 1
                    && a.reset_requests_per_ip_max >= 1
                    && a.signup_window_seconds >= 1
                    && a.reset_request_window_seconds >= 1,
                "auth signup and reset limits and windows must be at least 1",
            ),
            (
                s.cache_size_mib >= 1,
                "store.cache_size_mib must be at least 1",
            ),
            (
                s.writer_queue_capacity >= 1,
                "store.writer_queue_capacity must be at least 1",
            ),
            (
                (1..=10_000).contains(&s.writer_batch_size_max),
                "store.writer_batch_size_max must be 1..10000",
            ),
            (
                (1..=1_000_000).contains(&s.account_journal_fold_entries),
                "store.account_journal_fold_entries must be 1..1000000",
            ),
            (
                self.accounts.live_accounts_max >= 1,
                "accounts.live_accounts_max must be at least 1",
            ),
        ];
        match checks.iter().find(|(ok, _)| !ok) {
            Some((_, why)) => Err(why.to_string()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = with(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.file.credits.signup_grant, 10);
        assert!(c.stripe_webhook_secret.is_none());
        assert_eq!(c.features, Features::default());
    }

    #[test]
    fn a_bad_listen_address_names_the_variable() {
        let e = with(&[("CREATIVEFLOW_LISTEN", "nope")]).unwrap_err();
        assert!(e.to_string().contains("CREATIVEFLOW_LISTEN"), "{e}");
    }

    #[test]
    fn a_bad_flag_and_a_bad_secret_are_refused() {
        assert!(with(&[("CREATIVEFLOW_ENABLE_PAYPAL_PAYMENTS", "maybe")]).is_err());
        assert!(with(&[("CREATIVEFLOW_STRIPE_WEBHOOK_SECRET", "sk_live_x")]).is_err());
    }

    #[test]
    fn amqps_is_accepted_and_other_schemes_are_refused() {
        assert!(with(&[(
            "CREATIVEFLOW_AMQP_URL",
            "amqps://u:p@broker.example:5671/%2f"
        )])
        .is_ok());
        assert!(with(&[("CREATIVEFLOW_AMQP_URL", "http://broker.example/")]).is_err());
        assert!(amqp_host_is_loopback(
            "amqp://guest:guest@127.0.0.1:5672/%2f"
        ));
        assert!(amqp_host_is_loopback("amqp://[::1]:5672/"));
        assert!(amqp_host_is_loopback("amqp://localhost/"));
        assert!(!amqp_host_is_loopback(
            "amqp://guest:guest@10.0.0.5:5672/%2f"
        ));
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let c = with(&[("CREATIVEFLOW_STRIPE_WEBHOOK_SECRET", "whsec_abc")]).unwrap();
        assert!(!format!("{c:?}").contains("whsec_abc"));
    }
}
