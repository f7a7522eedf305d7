use std::sync::Arc;

use creativeflow::config::Config;
use creativeflow::domain::{Email, Name};
use creativeflow::mailer::{Mail, Mailer};
use creativeflow::services::users::{create_user, NewUser};
use creativeflow::startup::Application;
use creativeflow::state::AppState;
use parking_lot::Mutex;
use serde_json::{json, Value};
use storage::records::Role;

/// Keeps every mail so tests can read reset codes.
#[derive(Default)]
pub struct CapturingMailer {
    pub sent: Mutex<Vec<Mail>>,
}

impl Mailer for CapturingMailer {
    fn send(&self, mail: Mail) {
        self.sent.lock().push(mail);
    }
}

pub struct TestApp {
    pub address: String,
    server: actix_web::dev::ServerHandle,
    running: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
    pub client: reqwest::Client,
    pub mailer: Arc<CapturingMailer>,
    pub state: actix_web::web::Data<AppState>,
    pub _dir: tempfile::TempDir,
    pub _database: Option<PgDatabase>,
}

/// Whether this run of the suite is against the PostgreSQL store: the `api_postgres` test
/// target is this same suite, built a second time.
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME") == "api_postgres"
        || std::env::var("CREATIVEFLOW_TEST_STORE").as_deref() == Ok("postgres")
}

/// The machine's PostgreSQL, as an administrator (libpq form; `CREATIVEFLOW_TEST_PG`).
pub fn pg_admin() -> String {
    std::env::var("CREATIVEFLOW_TEST_PG")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=postgres".into())
}

/// A fresh database for one app, dropped with it. The sync client runs on a thread of its
/// own (it drives its own runtime, which must not start inside the test's).
pub struct PgDatabase {
    pub name: String,
}

impl PgDatabase {
    pub fn create() -> PgDatabase {
        let name = format!("cf_api_{}", uuid::Uuid::new_v4().simple());
        admin_sql(format!("CREATE DATABASE {name}")).expect("database created");
        PgDatabase { name }
    }

    /// The variables that point an app at this database, as an operator would set them.
    pub fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("ODOO_DB_HOST".into(), "127.0.0.1".into()),
            ("ODOO_DB_USER".into(), "postgres".into()),
            ("ODOO_DB_NAME".into(), self.name.clone()),
            ("CREATIVEFLOW_DATABASE_SSLMODE".into(), "disable".into()),
            // The suite runs many apps at once against PostgreSQL's 100 connections.
            (
                "CREATIVEFLOW_DATABASE_WRITER_CONNECTIONS".into(),
                "2".into(),
            ),
            ("CREATIVEFLOW_DATABASE_READ_CONNECTIONS".into(), "2".into()),
        ]
    }

    /// Takes the database away from its apps (refuses new connections and ends the open ones,
    /// as a failover would) or gives it back.
    pub fn set_reachable(&self, reachable: bool) {
        let mut sql = format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {reachable}",
            self.name
        );
        if !reachable {
            sql.push_str(&format!(
                "; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                self.name
            ));
        }
        admin_sql(sql).expect("database reachability changed");
    }
}

/// Runs `sql` as the administrator, on a thread of its own (see [`PgDatabase`]).
fn admin_sql(sql: String) -> Result<(), String> {
    std::thread::spawn(move || {
        let mut admin = postgres::Client::connect(&pg_admin(), postgres::NoTls)
            .map_err(|e| format!("the test PostgreSQL does not answer: {e}"))?;
        admin.batch_execute(&sql).map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the admin thread panicked".to_string())?
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = admin_sql(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

pub const PASSWORD: &str = "correct horse battery";
/// An AMQP address where nothing listens.
pub const NO_BROKER: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_string_lossy().to_string();
    let mut all: Vec<(String, String)> = vec![
        ("CREATIVEFLOW_DATA_DIR".into(), data_dir),
        ("CREATIVEFLOW_LISTEN".into(), "127.0.0.1:0".into()),
        // Tests that do not exercise the job bus keep off the shared broker.
        ("CREATIVEFLOW_AMQP_URL".into(), NO_BROKER.into()),
    ];
    // A caller that names the database (several nodes on one) brings its own.
    let named = vars.iter().any(|(k, _)| *k == "ODOO_DB_NAME");
    let database = (on_postgres() && !named).then(PgDatabase::create);
    if let Some(db) = &database {
        all.extend(db.vars());
    }
    for (k, v) in vars {
        all.retain(|(n, _)| n != k);
        all.push((k.to_string(), v.to_string()));
    }
    let mut config =
        Config::from_lookup(|k| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .expect("config");
    // Fold the account journal every few versions, so every test's reads and writes of
    // accounts also meet folds and the versions memory let go (a file's own setting stays).
    if config.file.store.account_journal_fold_entries == storage::journal::FOLD_ENTRIES_DEFAULT {
        config.file.store.account_journal_fold_entries = 5;
    }
    let mailer = Arc::new(CapturingMailer::default());
    let app = Application::build(config, mailer.clone())
        .await
        .expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let server = app.server_handle();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address,
        server,
        running,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            // Shorter than the server's 5 s keep-alive: a pooled connection is never reused at
            // the instant the server closes it (hyper's IncompleteMessage race).
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .expect("client"),
        mailer,
        state,
        _dir: dir,
        _database: database,
    }
}

/// An app with a configuration file (`CREATIVEFLOW_CONFIG`) holding `toml`; keep the folder
/// alive as long as the app.
pub async fn spawn_app_with_config(toml: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cf.toml");
    std::fs::write(&file, toml).expect("config written");
    let app = spawn_app_with(&[("CREATIVEFLOW_CONFIG", file.to_str().expect("utf-8 path"))]).await;
    (app, dir)
}

/// Lifts the per-IP bound for tests that flood from one address on purpose.
pub const FLOOD_CONFIG: &str =
    "[http]\nrequests_in_flight_per_ip_max = 100000\nconnections_per_ip_max = 100000\n";

pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    /// Stops the app the way SIGTERM does (HTTP, then the job bus, then the store), so nothing
    /// of it touches the broker afterwards.
    pub async fn shutdown(self) {
        self.state.tickets.stop();
        self.server.stop(true).await;
        let _ = self.running.await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut r = self.client.post(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn patch_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut r = self.client.patch(self.url(path)).json(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.expect("request")
    }

    pub async fn signup(&self, email: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/signup",
            None,
            &json!({"email": email, "password": PASSWORD, "name": "Test User"}),
        )
        .await
    }

    /// A signup with the same body, without reading the answer.
    pub fn signup_raw(
        &self,
        email: &str,
    ) -> impl std::future::Future<Output = reqwest::Response> + '_ {
        let body = json!({"email": email, "password": PASSWORD, "name": "Test User"});
        async move { self.post_json("/api/v1/auth/signup", None, &body).await }
    }

    /// Signs a new user up; returns (token, user id).
    pub async fn new_user(&self) -> (String, String) {
        let r = self.signup(&unique_email("user")).await;
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.expect("json");
        (
            body["token"].as_str().expect("token").to_string(),
            body["user"]["id"].as_str().expect("id").to_string(),
        )
    }

    /// A workbench "W" with a project "P" of the user behind `token`; returns the project id.
    pub async fn project_of(&self, token: &str) -> String {
        let wb: Value = self
            .post_json("/api/v1/workbenches", Some(token), &json!({"name": "W"}))
            .await
            .json()
            .await
            .expect("workbench");
        let p: Value = self
            .post_json(
                "/api/v1/projects",
                Some(token),
                &json!({"name": "P", "workbench_id": wb["id"]}),
            )
            .await
            .json()
            .await
            .expect("project");
        p["id"].as_str().expect("project id").to_string()
    }

    /// Ends the session behind `token` (no body, as the route wants).
    pub async fn logout(&self, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/logout"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// A staff account created the way `creativeflow user create` does; returns its token.
    pub async fn staff(&self, role: Role) -> String {
        let email = self.account(role).await;
        let r = self.login(&email, PASSWORD).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("json")["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    /// An account of `role` with [`PASSWORD`], created the way `creativeflow user create`
    /// does; returns its email.
    pub async fn account(&self, role: Role) -> String {
        let email = unique_email(role.as_str());
        let hash = creativeflow::passwords::hash_password_now(PASSWORD).expect("hash");
        create_user(
            &self.state.store,
            NewUser {
                email: Email::parse(&email).expect("email"),
                name: Name::parse("Staff", "name").expect("name"),
                password_hash: hash,
                role,
                signup_grant: 0,
            },
        )
        .await
        .expect("staff created");
        email
    }

    pub async fn admin_adjust(
        &self,
        admin: &str,
        user_id: &str,
        amount: i64,
        description: &str,
    ) -> reqwest::Response {
        self.post_json(
            &format!("/api/v1/admin/users/{user_id}/credits"),
            Some(admin),
            &json!({"amount": amount, "description": description}),
        )
        .await
    }

    /// Sets feature toggles as a fresh admin (`PUT /api/v1/admin/features`).
    pub async fn set_features(&self, toggles: &Value) {
        let admin = self.staff(Role::Admin).await;
        let r = self
            .client
            .put(self.url("/api/v1/admin/features"))
            .bearer_auth(&admin)
            .json(toggles)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
    }

    pub async fn balance(&self, token: &str) -> u64 {
        let r = self.get("/api/v1/credits", Some(token)).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.expect("json")["balance"]
            .as_u64()
            .expect("balance")
    }

    /// Runs `creativeflow verify`'s checks on a snapshot of the live store.
    pub fn verify(&self) -> storage::verify::Report {
        let snap = self.state.store.snapshot().expect("snapshot");
        storage::verify::verify(&snap, &mut |_, _| {}).expect("verify runs")
    }

    pub fn assert_verified(&self) {
        let report = self.verify();
        assert!(
            report.ok(),
            "verify found violations: {:#?}",
            report.violations
        );
    }
}

/// Asserts an error response: status, the envelope, and the code.
pub async fn assert_error(r: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "status for expected {code}");
    let body: Value = r.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
    assert!(body["error"]["details"].is_object(), "body: {body}");
    body
}
