//! Where the PostgreSQL store is and how to reach it. The binary fills this from `ODOO_DB_*`
//! or `CREATIVEFLOW_DATABASE_URL`; nothing here reads the environment.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::StorageError;

/// TLS to the database, with libpq's `sslmode` meanings: `prefer` and `require` encrypt
/// without checking the server's certificate (as libpq does), `verify-ca` checks its chain,
/// `verify-full` its chain and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s {
            "disable" => Some(TlsMode::Disable),
            "prefer" => Some(TlsMode::Prefer),
            "require" => Some(TlsMode::Require),
            "verify-ca" => Some(TlsMode::VerifyCa),
            "verify-full" => Some(TlsMode::VerifyFull),
            _ => None,
        }
    }
}

/// The database's address and credentials. `Debug` never shows the password.
#[derive(Clone)]
pub struct PgSettings {
    pub host: String,
    pub port: u16,
    pub user: String,
    password: Option<String>,
    pub dbname: String,
    pub tls: TlsMode,
    /// Extra roots for the server's certificate besides the system's.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    /// Connections the reads are spread over (each on a thread of its own).
    pub read_connections: usize,
    /// Writer threads of this node, each with a connection and its own group commit.
    pub writer_connections: usize,
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// Bounds of the connections.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 5_000;
pub const READ_CONNECTIONS_DEFAULT: usize = 4;
pub const READ_CONNECTIONS_MAX: usize = 64;
pub const WRITER_CONNECTIONS_DEFAULT: usize = 4;
pub const WRITER_CONNECTIONS_MAX: usize = 32;

impl PgSettings {
    pub fn new(host: &str, port: u16, user: &str, dbname: &str) -> PgSettings {
        PgSettings {
            host: host.to_string(),
            port,
            user: user.to_string(),
            password: None,
            dbname: dbname.to_string(),
            tls: TlsMode::Prefer,
            ca_file: None,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            read_connections: READ_CONNECTIONS_DEFAULT,
            writer_connections: WRITER_CONNECTIONS_DEFAULT,
        }
    }

    pub fn with_password(mut self, password: Option<String>) -> PgSettings {
        self.password = password.filter(|p| !p.is_empty());
        self
    }

    /// Parses a `postgres://user:password@host:port/dbname?sslmode=…` URL or a libpq
    /// `key=value` string.
    pub fn from_url(url: &str) -> Result<PgSettings, StorageError> {
        let config: postgres::Config = url.parse().map_err(|e| {
            StorageError::Unavailable(format!("the database URL is not valid: {e}"))
        })?;
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let mut s = PgSettings::new(
            &host,
            config.get_ports().first().copied().unwrap_or(5432),
            config.get_user().unwrap_or("postgres"),
            config.get_dbname().unwrap_or("postgres"),
        )
        .with_password(
            config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
        );
        s.tls = match config.get_ssl_mode() {
            postgres::config::SslMode::Disable => TlsMode::Disable,
            postgres::config::SslMode::Require => TlsMode::Require,
            _ => TlsMode::Prefer,
        };
        Ok(s)
    }

    /// Where the database is, for log lines and errors (no password).
    pub fn describe(&self) -> String {
        format!(
            "postgresql://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }

    pub(crate) fn config(&self) -> postgres::Config {
        let mut c = postgres::Config::new();
        c.host(&self.host)
            .port(self.port)
            .user(&self.user)
            .dbname(&self.dbname)
            .application_name("creativeflow")
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            // A half-open connection (a peer that vanished without closing) is found in about
            // a minute instead of the kernel's two hours: a listener or writer waiting on it
            // would otherwise never learn its session is gone.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3)
            .ssl_mode(match self.tls {
                TlsMode::Disable => postgres::config::SslMode::Disable,
                TlsMode::Prefer => postgres::config::SslMode::Prefer,
                TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => {
                    postgres::config::SslMode::Require
                }
            });
        if let Some(p) = &self.password {
            c.password(p);
        }
        c
    }

    /// One connection; the error is one line saying where and why.
    pub(crate) fn connect(&self) -> Result<postgres::Client, StorageError> {
        let tls = self.tls_connector()?;
        self.config().connect(tls).map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot connect to {}: {}",
                self.describe(),
                super::batch::describe(&e)
            ))
        })
    }

    fn tls_connector(&self) -> Result<postgres_native_tls::MakeTlsConnector, StorageError> {
        let mut builder = native_tls::TlsConnector::builder();
        match self.tls {
            TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => {
                builder.danger_accept_invalid_certs(true);
            }
            TlsMode::VerifyCa => {
                builder.danger_accept_invalid_hostnames(true);
            }
            TlsMode::VerifyFull => {}
        }
        if let Some(path) = &self.ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                StorageError::Unavailable(format!("cannot read {}: {e}", path.display()))
            })?;
            let cert = native_tls::Certificate::from_pem(&pem).map_err(|e| {
                StorageError::Unavailable(format!(
                    "{} is not a PEM certificate: {e}",
                    path.display()
                ))
            })?;
            builder.add_root_certificate(cert);
        }
        let connector = builder
            .build()
            .map_err(|e| StorageError::Unavailable(format!("cannot set up TLS: {e}")))?;
        Ok(postgres_native_tls::MakeTlsConnector::new(connector))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let s = PgSettings::new("db", 5432, "app", "cf").with_password(Some("hunter2".into()));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!s.describe().contains("hunter2"));
    }

    #[test]
    fn a_url_gives_host_port_user_database_and_tls() {
        let s =
            PgSettings::from_url("postgres://app:pw@db.internal:6432/cf?sslmode=require").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.user.as_str(), s.dbname.as_str()),
            ("db.internal", 6432, "app", "cf")
        );
        assert_eq!(s.tls, TlsMode::Require);
        assert!(PgSettings::from_url("postgres://[broken").is_err());
    }
}
