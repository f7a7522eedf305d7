//! kill -9 the real server in the middle of concurrent deducts, restart it, and check that every
//! acknowledged deduct is on disk, none is half-applied, and `verify` passes. Five cycles. The
//! deduct test folds the account journal every few entries, so kills land before, during and
//! after folds, and every restart folds what the kill left journaled.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::cli::{run, text, Server};

const CYCLES: usize = 5;
const CALLERS: usize = 32;
const START_BALANCE: i64 = 1_000_000;

async fn token(
    client: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> (String, String) {
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    (
        b["token"].as_str().unwrap().to_string(),
        b["user"]["id"].as_str().unwrap().to_string(),
    )
}

/// Every ledger description of the user, read page by page.
async fn ledger(client: &reqwest::Client, base: &str, token: &str) -> (u64, Vec<(String, i64)>) {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{base}/api/v1/credits?limit=200&cursor={c}"),
            None => format!("{base}/api/v1/credits?limit=200"),
        };
        let page: Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let balance = page["balance"].as_u64().unwrap();
        for t in page["transactions"].as_array().unwrap() {
            all.push((
                t["description"].as_str().unwrap().to_string(),
                t["amount"].as_i64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (balance, all),
        }
    }
}

#[actix_web::test]
async fn kill_9_during_concurrent_deducts_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "admin@example.com",
            "--password",
            "crash admin password",
            "--role",
            "admin",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "victim@example.com",
            "--password",
            "crash user password",
            "--role",
            "user",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("creativeflow.toml");
    std::fs::write(&config, "[store]\naccount_journal_fold_entries = 7\n").unwrap();
    let env = [("CREATIVEFLOW_CONFIG", config.to_str().unwrap())];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let mut victim_id = String::new();
    for cycle in 0..CYCLES {
        let mut server = Server::start_with(dir.path(), &env).await;
        let (admin, _) = token(
            &client,
            &server.base,
            "admin@example.com",
            "crash admin password",
        )
        .await;
        let (_, id) = token(
            &client,
            &server.base,
            "victim@example.com",
            "crash user password",
        )
        .await;
        victim_id = id;
        if cycle == 0 {
            let r = client
                .post(format!(
                    "{}/api/v1/admin/users/{victim_id}/credits",
                    server.base
                ))
                .bearer_auth(&admin)
                .json(&json!({"amount": START_BALANCE, "description": "crash test float"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for caller in 0..CALLERS {
            let (client, base, admin, id, acked, stop) = (
                client.clone(),
                server.base.clone(),
                admin.clone(),
                victim_id.clone(),
                acked.clone(),
                stop.clone(),
            );
            tasks.push(actix_web::rt::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let description = format!("c{cycle}-t{caller}-{n}");
                    n += 1;
                    let r = client
                        .post(format!("{base}/api/v1/admin/users/{id}/credits"))
                        .bearer_auth(&admin)
                        .json(&json!({"amount": -1, "description": description}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            acked.lock().insert(description);
                        }
                        Ok(r) => assert!(r.status().is_server_error(), "unexpected {}", r.status()),
                        Err(_) => break, // the server is gone
                    }
                }
            }));
        }
        // Kill at a moment that varies per cycle, while requests are in flight.
        let after = Duration::from_millis(300 + 137 * cycle as u64);
        kill_while_busy(&mut server, &stop, tasks, after).await;
        assert!(
            !acked.lock().is_empty(),
            "cycle {cycle} acknowledged nothing before the kill"
        );
    }
    let mut server = Server::start_with(dir.path(), &env).await;
    let (victim, _) = token(
        &client,
        &server.base,
        "victim@example.com",
        "crash user password",
    )
    .await;
    let (balance, entries) = ledger(&client, &server.base, &victim).await;
    let mut seen = HashSet::new();
    for (d, amount) in &entries {
        assert!(seen.insert(d.clone()), "entry {d} appears twice");
        if d.starts_with('c') && d.contains("-t") {
            assert_eq!(*amount, -1);
        }
    }
    let acked = acked.lock();
    let missing: Vec<_> = acked.iter().filter(|d| !seen.contains(*d)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged deducts lost, e.g. {:?}",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
    let deducts = entries.iter().filter(|(_, a)| *a == -1).count() as u64;
    assert_eq!(
        balance,
        10 + START_BALANCE as u64 - deducts,
        "balance matches the ledger"
    );
    assert!(deducts >= acked.len() as u64);
    let live = run(dir.path(), &["verify"]);
    assert!(live.status.success(), "{}", text(&live));
    server.terminate();
    let offline = run(dir.path(), &["verify"]);
    assert!(offline.status.success(), "{}", text(&offline));
    let _ = victim_id;
}

/// Every message body of a ticket, read page by page (staff see internal notes too).
async fn ticket_messages(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ticket: &str,
) -> Vec<String> {
    let mut all = Vec::new();
    let mut since: Option<String> = None;
    loop {
        let url = match &since {
            Some(c) => format!("{base}/api/v1/tickets/{ticket}/messages?limit=200&since={c}"),
            None => format!("{base}/api/v1/tickets/{ticket}/messages?limit=200"),
        };
        let page: Value = client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for m in page["items"].as_array().unwrap() {
            all.push(m["body"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => since = Some(c.to_string()),
            None => return all,
        }
    }
}

#[actix_web::test]
async fn kill_9_during_message_posting_loses_no_acknowledged_message() {
    const MESSAGE_CYCLES: usize = 3;
    const POSTERS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    for (email, password, role) in [
        ("agent@example.com", "crash agent password", "agent"),
        ("customer@example.com", "crash user password", "user"),
    ] {
        let o = run(
            dir.path(),
            &[
                "user",
                "create",
                "--email",
                email,
                "--password",
                password,
                "--role",
                role,
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tickets = Vec::new();
    for cycle in 0..MESSAGE_CYCLES {
        let mut server = Server::start(dir.path()).await;
        let (agent, _) = token(
            &client,
            &server.base,
            "agent@example.com",
            "crash agent password",
        )
        .await;
        let (customer, _) = token(
            &client,
            &server.base,
            "customer@example.com",
            "crash user password",
        )
        .await;
        let r = client
            .post(format!("{}/api/v1/tickets", server.base))
            .bearer_auth(&customer)
            .json(&json!({"subject": format!("cycle {cycle}"), "description": "crash"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let ticket = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        tickets.push(ticket.clone());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for poster in 0..POSTERS {
            let (client, base, acked, stop, ticket) = (
                client.clone(),
                server.base.clone(),
                acked.clone(),
                stop.clone(),
                ticket.clone(),
            );
            // Customers and agents both write; every third agent message is an internal note.
            let author = if poster % 2 == 0 {
                customer.clone()
            } else {
                agent.clone()
            };
            tasks.push(actix_web::rt::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body = format!("c{cycle}-p{poster}-{n}");
                    let internal = poster % 2 == 1 && n % 3 == 0;
                    n += 1;
                    let r = client
                        .post(format!("{base}/api/v1/tickets/{ticket}/messages"))
                        .bearer_auth(&author)
                        .json(&json!({"body": body, "internal": internal}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => acked.lock().push((ticket.clone(), body)),
                        Ok(r) if r.status() == 409 => break, // the ticket's message bound
                        Ok(r) => assert!(r.status().is_server_error(), "unexpected {}", r.status()),
                        Err(_) => break,
                    }
                }
            }));
        }
        let after = Duration::from_millis(200 + 150 * cycle as u64);
        kill_while_busy(&mut server, &stop, tasks, after).await;
    }
    assert!(
        !acked.lock().is_empty(),
        "nothing was acknowledged before the kills"
    );
    let mut server = Server::start(dir.path()).await;
    let (agent, _) = token(
        &client,
        &server.base,
        "agent@example.com",
        "crash agent password",
    )
    .await;
    for ticket in &tickets {
        let seen = ticket_messages(&client, &server.base, &agent, ticket).await;
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "a message appears twice");
        let lost: Vec<_> = acked
            .lock()
            .iter()
            .filter(|(t, b)| t == ticket && !unique.contains(b))
            .cloned()
            .collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged messages lost, e.g. {:?}",
            lost.len(),
            lost.first()
        );
    }
    let live = run(dir.path(), &["verify"]);
    assert!(live.status.success(), "{}", text(&live));
    server.terminate();
}

/// Kills the server (kill -9) `after` from now while `tasks` send to it, then stops and waits
/// for them.
async fn kill_while_busy(
    server: &mut Server,
    stop: &std::sync::atomic::AtomicBool,
    tasks: Vec<actix_web::rt::task::JoinHandle<()>>,
    after: Duration,
) {
    tokio::time::sleep(after).await;
    server.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
}
