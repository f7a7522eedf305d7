//! The binary's commands: configuration errors, `user create`, `verify` and `backup`, with and
//! without a running server.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use storage::keys;
use storage::records::{AccountRecord, EmailIndex};
use storage::{Store, StoreOptions, WriteSet};

pub const BIN: &str = env!("CARGO_BIN_EXE_creativeflow");

pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("CREATIVEFLOW_DATA_DIR", data_dir)
        .env("CREATIVEFLOW_AMQP_URL", crate::helpers::NO_BROKER)
        .env("RUST_LOG", "warn")
        .output()
        .expect("binary runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server process on a free port; killed (SIGKILL) when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    pub async fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[]).await
    }

    /// With extra environment (e.g. a real broker and a config file).
    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut child = Command::new(BIN)
            .arg("serve")
            .env("CREATIVEFLOW_DATA_DIR", data_dir)
            .env("CREATIVEFLOW_AMQP_URL", crate::helpers::NO_BROKER)
            .envs(env.iter().copied())
            .env("CREATIVEFLOW_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return Server { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("server did not come up on {base}");
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .arg("serve")
        .env("CREATIVEFLOW_DATA_DIR", dir.path())
        .env("CREATIVEFLOW_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("CREATIVEFLOW_LISTEN"), "{err}");
}

#[test]
fn user_create_then_verify_on_a_stopped_store() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "Root@Example.com",
            "--password",
            "a long admin password",
            "--role",
            "admin",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("created admin root@example.com"));
    let again = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "root@example.com",
            "--password",
            "a long admin password",
            "--role",
            "admin",
        ],
    );
    assert!(!again.status.success());
    let bad = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "nope",
            "--password",
            "a long admin password",
            "--role",
            "admin",
        ],
    );
    assert!(!bad.status.success());
    let v = run(dir.path(), &["verify"]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("verify: ok"));
}

#[test]
fn verify_names_a_balance_that_does_not_match_its_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "a@example.com",
            "--password",
            "a long password",
            "--role",
            "user",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    {
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let ix = store
            .get::<EmailIndex>(&keys::email("a@example.com"))
            .unwrap()
            .unwrap();
        let mut account = store
            .get::<AccountRecord>(&keys::account(ix.user_id))
            .unwrap()
            .unwrap();
        account.balance += 1000;
        let mut set = WriteSet::new();
        set.put(keys::account(ix.user_id), &account);
        store.write_blocking(set).unwrap();
        store.shutdown();
    }
    let v = run(dir.path(), &["verify"]);
    assert_eq!(v.status.code(), Some(1));
    let out = text(&v);
    assert!(
        out.contains("VIOLATION") && out.contains("ledger sums to 10"),
        "{out}"
    );
}

#[actix_web::test]
async fn backup_while_the_server_runs_is_consistent_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path()).await;
    // While the server holds the store, the CLI goes through its control socket.
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--password",
            "a long admin password",
            "--role",
            "admin",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let client = reqwest::Client::new();
    for i in 0..20 {
        let r = client
            .post(format!("{}/api/v1/auth/signup", server.base))
            .json(&json!({"email": format!("u{i}@example.com"), "password": "long enough pw", "name": "U"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("cf-backup.redb");
    let b = run(dir.path(), &["backup", "--out", file.to_str().unwrap()]);
    assert!(b.status.success(), "{}", text(&b));
    assert!(file.is_file());
    let again = run(dir.path(), &["backup", "--out", file.to_str().unwrap()]);
    assert!(!again.status.success(), "a backup never overwrites");
    let live = run(dir.path(), &["verify"]);
    assert!(live.status.success(), "{}", text(&live));
    server.terminate();

    let restored = tempfile::tempdir().unwrap();
    std::fs::copy(&file, restored.path().join("creativeflow.redb")).unwrap();
    let v = run(restored.path(), &["verify"]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("users=21"), "{}", text(&v));
    let server = Server::start(restored.path()).await;
    let r = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"email": "u7@example.com", "password": "long enough pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["credit_balance"], 10);
}

/// The data folder is 0700, the store file, the control socket and a backup 0600; a user who
/// could still reach the socket (the folder widened by mistake) is refused by its peer check.
#[actix_web::test]
async fn the_store_is_owner_only_and_the_control_socket_refuses_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _server = Server::start(&data).await;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("creativeflow.redb")), 0o600);
    assert_eq!(mode(&data.join("control.sock")), 0o600);
    let out = dir.path().join("copy.redb");
    let o = run(&data, &["backup", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&out), 0o600);

    // Only root can be another user here; without it the peer check cannot be exercised.
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if !is_root || Command::new("setpriv").arg("--version").output().is_err() {
        eprintln!("not root or no setpriv: the peer check is not exercised");
        return;
    }
    for p in [dir.path(), data.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    std::fs::set_permissions(
        data.join("control.sock"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "verify",
        ])
        .env("CREATIVEFLOW_DATA_DIR", &data)
        .env("CREATIVEFLOW_AMQP_URL", crate::helpers::NO_BROKER)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    // Refused before a byte was read: the connection closes under the client.
    assert!(!o.status.success(), "another user ran verify: {}", text(&o));
    assert!(
        text(&o).contains("cannot talk to the running server"),
        "{}",
        text(&o)
    );
}

/// A batch deletion interrupted by a crash (its mark is on disk, its records not yet deleted)
/// is finished by the next start.
#[actix_web::test]
async fn a_batch_deletion_left_by_a_crash_is_finished_after_restart() {
    use storage::records::*;
    let dir = tempfile::tempdir().unwrap();
    let (user, wb, project) = (
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
        uuid::Uuid::now_v7(),
    );
    {
        let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut set = WriteSet::new();
        set.put(
            storage::keys::id(wb),
            &WorkbenchRecord {
                id: wb,
                user_id: user,
                name: "W".into(),
                default_brand_kit_id: None,
                created_at_us: 0,
                updated_at_us: 0,
            },
        );
        set.put(storage::keys::pair(user, wb), &WorkbenchOfUser);
        set.put(
            storage::keys::id(project),
            &ProjectRecord {
                id: project,
                user_id: user,
                workbench_id: wb,
                name: "P".into(),
                brand_kit_id: None,
                created_at_us: 0,
                updated_at_us: 0,
            },
        );
        set.put(storage::keys::pair(wb, project), &ProjectOfWorkbench);
        set.put(storage::keys::pair(user, project), &ProjectOfUser);
        set.put(
            storage::keys::pair(user, wb),
            &DeletingWorkbench { started_at_us: 0 },
        );
        store.write(set).await.unwrap();
        crate::workspace::bulk_assets(&store, user, project, 2500).await;
        store.shutdown();
    }
    let mut server = Server::start(dir.path()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let o = run(dir.path(), &["verify"]);
        let out = text(&o);
        assert!(o.status.success(), "{out}");
        if !out.contains("workbenches=") && !out.contains("assets=") && !out.contains("deleting=") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never finished: {out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.terminate();
}
