//! Several nodes on one PostgreSQL database (issue 13): no sticky routing, the database
//! decides. Credits are never spent twice, creates are accepted once and each published,
//! invoice numbers stay gapless, and the outbox is relayed by whichever node holds the lease.
//! These run in the `api_postgres` target only: the embedded store is one node by design.

use std::time::Duration;

use serde_json::json;
use storage::records::Role;

use crate::bus::Bus;
use crate::helpers::{
    assert_error, on_postgres, spawn_app_with, unique_email, PgDatabase, TestApp, FLOOD_CONFIG,
    PASSWORD,
};

/// A node on `db` with `env` besides the database's variables.
async fn node(db: &PgDatabase, env: &[(String, String)]) -> TestApp {
    let mut all = db.vars();
    all.extend(env.iter().cloned());
    let vars: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    spawn_app_with(&vars).await
}

/// Two nodes on `db`, each with `env` besides the database's variables.
async fn two_nodes(db: &PgDatabase, env: &[(String, String)]) -> (TestApp, TestApp) {
    (node(db, env).await, node(db, env).await)
}

/// A configuration file with `toml`, kept as long as the returned folder.
fn config_file(toml: &str) -> (tempfile::TempDir, (String, String)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cf.toml");
    std::fs::write(&file, toml).expect("config written");
    let var = (
        "CREATIVEFLOW_CONFIG".to_string(),
        file.display().to_string(),
    );
    (dir, var)
}

#[actix_web::test]
async fn a_thousand_deducts_split_across_two_nodes_grant_exactly_600() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let (_dir, config) = config_file(FLOOD_CONFIG);
    let (a, b) = two_nodes(&db, &[config]).await;
    let admin = a.staff(Role::Admin).await;
    let (token, id) = a.new_user().await;
    assert_eq!(
        a.admin_adjust(&admin, &id, 590, "to 600").await.status(),
        201
    );
    let results = futures_util::future::join_all((0..1000).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        node.admin_adjust(&admin, &id, -1, "deduct")
    }))
    .await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 600);
    assert!(
        statuses.iter().all(|s| matches!(s, 201 | 402 | 409)),
        "only applied, refused or contended: {statuses:?}"
    );
    assert_eq!(a.balance(&token).await, 0);
    assert_eq!(b.balance(&token).await, 0);
    a.assert_verified();
}

#[actix_web::test]
async fn five_hundred_creates_across_two_nodes_with_credits_for_300_accept_300_and_publish_each() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let bus = Bus::new().await;
    let (a, b) = two_nodes(&db, &bus.env(FLOOD_CONFIG)).await;
    let admin = a.staff(Role::Admin).await;
    let (token, id, project_id) = crate::generation::user_with_project(&a).await;
    a.admin_adjust(&admin, &id, 290, "to 300").await;
    let body = json!({"project_id": project_id, "prompt": "two nodes", "format": "banner"});
    let results = futures_util::future::join_all((0..500).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        crate::generation::create(node, &token, &body)
    }))
    .await;
    let accepted = results.iter().filter(|r| r.status() == 202).count();
    assert_eq!(accepted, 300);
    assert!(results
        .iter()
        .all(|r| matches!(r.status().as_u16(), 202 | 402 | 409)));
    assert_eq!(a.balance(&token).await, 0);
    let mut ids = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ids.len() < 300 && tokio::time::Instant::now() < deadline {
        for (job, _) in bus.drain_jobs(Duration::from_millis(500)).await {
            ids.insert(job["generation_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(ids.len(), 300, "every accepted job was published");
    a.assert_verified();
    a.shutdown().await;
    b.shutdown().await;
    bus.cleanup().await;
}

#[actix_web::test]
async fn a_hundred_payments_across_two_nodes_take_invoice_numbers_1_to_100() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let secret = (
        "CREATIVEFLOW_STRIPE_WEBHOOK_SECRET".to_string(),
        crate::billing::SECRET.to_string(),
    );
    let (a, b) = two_nodes(&db, &[secret]).await;
    let mut users = Vec::new();
    for _ in 0..10 {
        users.push(a.new_user().await.1);
    }
    let events: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            crate::billing::pack_checkout(
                &format!("evt_n{i}"),
                &users[i % 10],
                "credits_100",
                999,
                &format!("pi_n{i}"),
            )
        })
        .collect();
    let answers = futures_util::future::join_all(events.iter().enumerate().map(|(i, e)| {
        let node = if i % 2 == 0 { &a } else { &b };
        crate::billing::stripe(node, e)
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let invoices = a
        .state
        .store
        .scan::<storage::records::InvoiceRecord>(&[], None, storage::Direction::Forward, 1000)
        .unwrap();
    let mut seqs: Vec<u64> = invoices.iter().map(|(_, i)| i.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    a.assert_verified();
}

#[actix_web::test]
async fn sixty_tickets_opened_across_two_nodes_take_numbers_1_to_60() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let (a, b) = two_nodes(&db, &[]).await;
    let mut tokens = Vec::new();
    for _ in 0..10 {
        tokens.push(a.new_user().await.0);
    }
    let answers = futures_util::future::join_all((0..60).map(|i| {
        let node = if i % 2 == 0 { &a } else { &b };
        let body = json!({"subject": format!("Ticket {i}"), "description": "Across nodes"});
        let token = tokens[i % 10].clone();
        async move { node.post_json("/api/v1/tickets", Some(&token), &body).await }
    }))
    .await;
    let mut numbers = Vec::new();
    for r in answers {
        assert_eq!(r.status(), 201, "every ticket opens, none contended");
        let t: serde_json::Value = r.json().await.expect("ticket json");
        numbers.push(t["number"].as_str().expect("number").to_string());
    }
    numbers.sort_unstable();
    let expected: Vec<String> = (1..=60).map(|n| format!("HD-{n:06}")).collect();
    assert_eq!(numbers, expected);
    b.assert_verified();
}

#[actix_web::test]
async fn failed_logins_and_signups_spread_over_two_nodes_meet_one_limit() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let (_dir, config) = config_file("[auth]\nsignups_per_ip_max = 3\n");
    let (a, b) = two_nodes(&db, &[config]).await;
    let email = unique_email("spread");
    assert_eq!(a.signup(&email).await.status(), 201);
    // Five failures (the account's limit), alternating nodes: neither node saw five itself.
    for i in 0..5 {
        let node = if i % 2 == 0 { &a } else { &b };
        assert_eq!(node.login(&email, "wrong password!").await.status(), 401);
    }
    for node in [&a, &b] {
        let r = node.login(&email, PASSWORD).await;
        assert!(r.headers().get("retry-after").is_some());
        assert_error(r, 429, "rate_limited").await;
    }
    // Three signups per address: one above, two more across both nodes, then none on either.
    assert_eq!(b.signup(&unique_email("spread")).await.status(), 201);
    assert_eq!(a.signup(&unique_email("spread")).await.status(), 201);
    for node in [&a, &b] {
        assert_error(
            node.signup(&unique_email("spread")).await,
            429,
            "rate_limited",
        )
        .await;
    }
}

#[actix_web::test]
async fn a_session_ended_on_one_node_is_refused_by_the_other_that_had_it_cached() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let (a, b) = two_nodes(&db, &[]).await;
    let (token, _) = a.new_user().await;
    // b reads the session twice: the second answer may come from its cache.
    for _ in 0..2 {
        assert_eq!(b.get("/api/v1/me", Some(&token)).await.status(), 200);
    }
    assert_eq!(a.logout(&token).await.status(), 204);
    // The logout's notification reaches b's cache within moments, never later than a few.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.get("/api/v1/me", Some(&token)).await.status() != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "b kept a revoked session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.get("/api/v1/me", Some(&token)).await.status(), 401);
}

#[actix_web::test]
async fn a_message_posted_on_one_node_reaches_a_stream_open_on_the_other_by_notification() {
    if !on_postgres() {
        return;
    }
    use crate::helpdesk::{enable_chat, events, open_ok, post_message, stream};
    let db = PgDatabase::create();
    let (a, b) = two_nodes(&db, &[]).await;
    enable_chat(&a, true).await;
    let (customer, _) = a.new_user().await;
    let agent = a.staff(Role::Agent).await;
    let id = open_ok(&a, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut r = stream(&b, &customer, &id, None).await;
    assert_eq!(r.status(), 200);
    // The stream is waiting once it has said it is connected and read the ticket.
    let connected = r.chunk().await.unwrap().expect("the stream is open");
    assert!(std::str::from_utf8(&connected)
        .unwrap()
        .starts_with(": connected"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut buf = String::new();
    let posted = tokio::time::Instant::now();
    assert_eq!(
        post_message(&a, &agent, &id, "Answered on node a", false)
            .await
            .status(),
        201
    );
    let got = events(&mut r, &mut buf, 1).await;
    assert_eq!(got[0].2["body"], "Answered on node a");
    // Not the streams' fallback re-read (every 5 s): the notification woke it.
    assert!(
        posted.elapsed() < Duration::from_secs(3),
        "woken by the notification"
    );
}

#[actix_web::test]
async fn a_node_that_loses_its_database_answers_503_and_not_ready_then_recovers_by_itself() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let app = node(&db, &[]).await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    db.set_reachable(false);
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "not_ready");
    let lost = app
        .admin_adjust(&admin, &id, 5, "while the database is gone")
        .await;
    assert_eq!(lost.status(), 503);
    let body: serde_json::Value = lost.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    db.set_reachable(true);
    // The node finds its way back by itself: no restart.
    let mut waited_ms = 0;
    while app.get("/readyz", None).await.status() != 200 {
        assert!(
            waited_ms < 20_000,
            "still not ready 20 s after the database returned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited_ms += 200;
    }
    let mut applied = app.admin_adjust(&admin, &id, 7, "after it returned").await;
    for _ in 0..5 {
        // The first write on each writer connection may still meet its ended session.
        if applied.status() != 503 {
            break;
        }
        applied = app.admin_adjust(&admin, &id, 7, "after it returned").await;
    }
    assert_eq!(applied.status(), 201);
    assert_eq!(
        app.balance(&token).await,
        17,
        "10 to start, the lost write not applied"
    );
    app.assert_verified();
}

/// The binary with `vars` besides the data folder (the CLI's own runs).
fn run_with(data_dir: &std::path::Path, vars: &[(String, String)], args: &[&str]) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_creativeflow"));
    cmd.args(args)
        .env("CREATIVEFLOW_DATA_DIR", data_dir)
        .env("CREATIVEFLOW_AMQP_URL", crate::helpers::NO_BROKER)
        .env("RUST_LOG", "warn");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("binary runs");
    let text = crate::cli::text(&out);
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

/// Every account's balance, by user.
fn balances(store: &storage::Store) -> Vec<(uuid::Uuid, u64)> {
    let mut all = store
        .scan::<storage::records::AccountRecord>(&[], None, storage::Direction::Forward, 1000)
        .unwrap()
        .into_iter()
        .map(|(_, a)| (a.user_id, a.balance))
        .collect::<Vec<_>>();
    all.sort();
    all
}

#[test]
fn a_store_copied_into_postgresql_and_back_verifies_with_the_same_balances() {
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let (embedded, back) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for (i, role) in ["admin", "agent", "user"].iter().enumerate() {
        let email = format!("mover{i}@example.com");
        run_with(
            embedded.path(),
            &[],
            &[
                "user",
                "create",
                "--email",
                &email,
                "--password",
                "correct horse battery",
                "--role",
                role,
            ],
        );
    }
    let to = run_with(embedded.path(), &db.vars(), &["copy", "to-postgres"]);
    assert!(
        to.contains("both sides verify with the same record counts"),
        "{to}"
    );
    // A second copy into the same database is refused: it would merge two stores.
    let mut again = std::process::Command::new(env!("CARGO_BIN_EXE_creativeflow"));
    again
        .args(["copy", "to-postgres"])
        .env("CREATIVEFLOW_DATA_DIR", embedded.path())
        .env("CREATIVEFLOW_AMQP_URL", crate::helpers::NO_BROKER)
        .envs(db.vars());
    let refused = again.output().unwrap();
    assert!(!refused.status.success());
    assert!(crate::cli::text(&refused).contains("copy into an empty database"));
    let verified = run_with(embedded.path(), &db.vars(), &["verify"]);
    assert!(verified.contains("verify: ok"), "{verified}");
    let out = back.path().join("store");
    let from = run_with(
        embedded.path(),
        &db.vars(),
        &["copy", "from-postgres", "--out", out.to_str().unwrap()],
    );
    assert!(
        from.contains("both sides verify with the same record counts"),
        "{from}"
    );
    let options = storage::StoreOptions::default();
    let original = storage::Store::open(embedded.path(), &options).unwrap();
    let returned = storage::Store::open(&out, &options).unwrap();
    let mut pg_settings = storage::pg::PgSettings::new("127.0.0.1", 5432, "postgres", &db.name);
    pg_settings.tls = storage::pg::TlsMode::Disable;
    let on_pg = std::thread::spawn(move || {
        let store = storage::Store::connect_postgres(&pg_settings, &options).unwrap();
        balances(&store)
    })
    .join()
    .unwrap();
    assert_eq!(balances(&original).len(), 3);
    assert_eq!(balances(&original), on_pg);
    assert_eq!(balances(&original), balances(&returned));
}

/// POSTs `body` to a node process; the answer's status and JSON (None when the node is gone).
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> Option<(u16, serde_json::Value)> {
    let r = client
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or_default()))
}

#[actix_web::test]
async fn a_node_killed_under_load_loses_nothing_and_the_other_publishes_its_jobs() {
    use crate::cli::Server;
    if !on_postgres() {
        return;
    }
    let db = PgDatabase::create();
    let bus = Bus::new().await;
    let mut env = db.vars();
    env.extend(bus.env(FLOOD_CONFIG));
    // Set up the customer through an in-process node, then let it go.
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let setup = spawn_app_with(&vars).await;
    let admin = setup.staff(Role::Admin).await;
    let (token, id, project_id) = crate::generation::user_with_project(&setup).await;
    setup.admin_adjust(&admin, &id, 10_000, "float").await;
    setup.shutdown().await;

    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Server::start_with(dir_a.path(), &vars).await;
    let b = Server::start_with(dir_b.path(), &vars).await;
    let client = reqwest::Client::new();
    let body = json!({"project_id": project_id, "prompt": "kill -9", "format": "banner"});
    let mut acknowledged = std::collections::HashSet::new();
    for round in 0..20 {
        let burst = futures_util::future::join_all((0..20).map(|i| {
            let base = if i % 2 == 0 { &a.base } else { &b.base };
            post(&client, base, "/api/v1/generation/create", &token, &body)
        }))
        .await;
        for (status, answer) in burst.into_iter().flatten() {
            if status == 202 {
                acknowledged.insert(answer["id"].as_str().unwrap().to_string());
            }
        }
        if round == 8 {
            a.kill9(); // in the middle of the load: its answers in flight are lost, not its writes
        }
    }
    assert!(acknowledged.len() >= 200, "{} accepted", acknowledged.len());
    let mut published = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !acknowledged.is_subset(&published) && tokio::time::Instant::now() < deadline {
        for (job, _) in bus.drain_jobs(Duration::from_millis(500)).await {
            published.insert(job["generation_id"].as_str().unwrap().to_string());
        }
    }
    let missing = acknowledged.difference(&published).count();
    assert_eq!(missing, 0, "every acknowledged create was published");
    for id in acknowledged.iter().take(50) {
        let r = client
            .get(format!("{}/api/v1/generation/{id}/status", b.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "the surviving node serves {id}");
    }
    drop(b);
    let report = run_with(tempfile::tempdir().unwrap().path(), &db.vars(), &["verify"]);
    assert!(report.contains("verify: ok"), "{report}");
    bus.cleanup().await;
}
