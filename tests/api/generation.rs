//! The generation pipeline against the real RabbitMQ on 127.0.0.1:5672. Each test has its own
//! exchange and queues and deletes them at the end.

use std::time::Duration;

use serde_json::{json, Value};
use storage::records::Role;
use storage::Table;

use crate::bus::Bus;
use crate::helpers::{assert_error, spawn_app_with, TestApp};

const WAIT: Duration = Duration::from_secs(10);

async fn app_on(bus: &Bus, extra: &str) -> TestApp {
    let env = bus.env(extra);
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    spawn_app_with(&vars).await
}

/// A user with a project; returns (token, user id, project id).
pub async fn user_with_project(app: &TestApp) -> (String, String, String) {
    let (token, id) = app.new_user().await;
    let project = app.project_of(&token).await;
    (token, id, project)
}

pub async fn create(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post_json("/api/v1/generation/create", Some(token), body)
        .await
}

/// A create that must be accepted (202); its answer.
async fn accepted(app: &TestApp, token: &str, body: &Value) -> Value {
    let r = create(app, token, body).await;
    assert_eq!(r.status(), 202, "the create is accepted");
    r.json().await.unwrap()
}

/// Stops the app first, so nothing of it redeclares the queues the bus then deletes.
async fn finish(app: TestApp, bus: Bus) {
    app.shutdown().await;
    bus.cleanup().await;
}

async fn status(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/v1/generation/{id}/status"), Some(token))
        .await
        .json()
        .await
        .unwrap()
}

async fn wait_status(app: &TestApp, token: &str, id: &str, want: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = status(app, token, id).await;
        if s["status"] == want {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status stayed {} (wanted {want})",
            s["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_balance(app: &TestApp, token: &str, want: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.balance(token).await != want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "balance never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_create_publishes_the_job_with_the_spec_fields_and_becomes_queued() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, user_id, project_id) = user_with_project(&app).await;
    let r = create(&app, &token, &json!({"project_id": project_id, "prompt": "A red bicycle", "format": "image_hd", "variations": 2, "params": {"style": "flat"}})).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    assert_eq!(body["cost"], 4);
    assert_eq!(body["credit_balance"], 6);
    let id = body["id"].as_str().unwrap();
    let (job, props) = bus.next_job(WAIT).await.expect("a job on the queue");
    assert_eq!(job["generation_id"], id);
    assert_eq!(job["user_id"], user_id);
    assert_eq!(job["project_id"], project_id);
    assert_eq!(job["prompt"], "A red bicycle");
    assert_eq!(job["format"], "image_hd");
    assert_eq!(job["variations"], 2);
    assert_eq!(job["params"], json!({"style": "flat"}));
    assert_eq!(job["brand_kit"], Value::Null);
    assert_eq!(job["cost"], 4);
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(
        props.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some(id));
    wait_status(&app, &token, id, "queued").await;
    let credits: Value = app
        .get("/api/v1/credits", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credits["transactions"][0]["kind"], "generation_charge");
    assert_eq!(credits["transactions"][0]["generation_request_id"], id);
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn refused_creates_charge_nothing_and_publish_nothing() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let (_, _, other_project) = user_with_project(&app).await;
    let r = create(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "x", "format": "video_short", "variations": 2}),
    )
    .await;
    let e = assert_error(r, 402, "insufficient_credits").await;
    assert_eq!(
        e["error"]["details"],
        json!({"balance": 10, "required": 20})
    );
    let big = "x".repeat(17 * 1024);
    for (body, field) in [
        (
            json!({"project_id": project_id, "prompt": "", "format": "banner"}),
            "prompt",
        ),
        (
            json!({"project_id": project_id, "prompt": "x".repeat(4001), "format": "banner"}),
            "prompt",
        ),
        (
            json!({"project_id": project_id, "prompt": "x", "format": "hologram"}),
            "format",
        ),
        (
            json!({"project_id": project_id, "prompt": "x", "format": "banner", "variations": 5}),
            "variations",
        ),
        (
            json!({"project_id": project_id, "prompt": "x", "format": "banner", "variations": 0}),
            "variations",
        ),
        (
            json!({"project_id": project_id, "prompt": "x", "format": "banner", "params": [1]}),
            "params",
        ),
        (
            json!({"project_id": project_id, "prompt": "x", "format": "banner", "params": {"k": big}}),
            "params",
        ),
        (
            json!({"project_id": project_id, "prompt": "x", "format": "banner", "cost": 0}),
            "cost",
        ),
        (
            json!({"project_id": other_project, "prompt": "x", "format": "banner"}),
            "project_id",
        ),
        (
            json!({"project_id": "nope", "prompt": "x", "format": "banner"}),
            "project_id",
        ),
    ] {
        let e = assert_error(create(&app, &token, &body).await, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["field"], field, "{field}");
    }
    assert_eq!(app.balance(&token).await, 10);
    assert_eq!(app.state.store.count(Table::Generations).unwrap(), 0);
    assert_eq!(app.state.store.count(Table::Outbox).unwrap(), 0);
    assert!(bus.next_job(Duration::from_millis(500)).await.is_none());
    finish(app, bus).await;
}

#[actix_web::test]
async fn an_idempotent_retry_returns_the_first_answer_and_charges_once() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let send = |body: Value| {
        app.client
            .post(app.url("/api/v1/generation/create"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "order-7")
            .json(&body)
            .send()
    };
    let body = json!({"project_id": project_id, "prompt": "Logo", "format": "banner"});
    let first = send(body.clone()).await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send(body.clone()).await.unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    // The JSON-RPC form of the same call is the same replay, answered in kind.
    let rpc = send(json!({"jsonrpc": "2.0", "method": "call", "id": 1, "params": body}))
        .await
        .unwrap();
    assert_eq!(rpc.headers()["idempotent-replayed"], "true");
    assert_eq!(rpc.json::<Value>().await.unwrap()["result"], first);
    let other = send(json!({"project_id": project_id, "prompt": "Another", "format": "banner"}))
        .await
        .unwrap();
    assert_error(other, 409, "idempotency_key_reused").await;
    assert_eq!(app.balance(&token).await, 9);
    assert_eq!(bus.drain_jobs(Duration::from_millis(800)).await.len(), 1);
    finish(app, bus).await;
}

#[actix_web::test]
async fn the_odoo_json_rpc_envelope_is_accepted_and_answered_in_kind() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let call = json!({"jsonrpc": "2.0", "method": "call", "id": 7, "params": {"project_id": project_id, "prompt": "Poster", "format": "story"}});
    let r = create(&app, &token, &call).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["jsonrpc"], "2.0");
    assert_eq!(body["id"], 7);
    assert_eq!(body["result"]["status"], "pending");
    assert_eq!(body["result"]["cost"], 1);
    let bad = json!({"jsonrpc": "2.0", "method": "call", "id": 8, "params": {"project_id": project_id, "prompt": "x", "format": "video_short", "variations": 4}});
    let body: Value = create(&app, &token, &bad).await.json().await.unwrap();
    assert_eq!(body["id"], 8);
    assert_eq!(body["error"]["code"], 402);
    assert_eq!(body["error"]["data"]["code"], "insufficient_credits");
    assert_eq!(app.balance(&token).await, 9);
    finish(app, bus).await;
}

fn result(id: &str, status: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"generation_id": id, "status": status})).unwrap()
}

#[actix_web::test]
async fn results_move_a_request_to_completed_with_its_assets_and_never_back() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let created: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "p", "format": "banner", "variations": 2}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    bus.next_job(WAIT).await.expect("job");
    bus.send_result(&result(id, "processing")).await;
    wait_status(&app, &token, id, "processing").await;
    let done = json!({"generation_id": id, "status": "completed", "assets": [
        {"path": "out/1.png", "mime": "image/png", "size": 1000},
        {"path": "out/2.png", "mime": "image/png", "size": 2000}]});
    bus.send_result(&serde_json::to_vec(&done).unwrap()).await;
    let s = wait_status(&app, &token, id, "completed").await;
    assert_eq!(s["assets"].as_array().unwrap().len(), 2);
    assert_eq!(s["assets"][0]["generation_request_id"], id);
    // Duplicates and late messages change nothing.
    bus.send_result(&serde_json::to_vec(&done).unwrap()).await;
    bus.send_result(&result(id, "processing")).await;
    bus.send_result(
        &serde_json::to_vec(&json!({"generation_id": id, "status": "failed", "error": "late"}))
            .unwrap(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = status(&app, &token, id).await;
    assert_eq!(s["status"], "completed");
    assert_eq!(s["refunded"], false);
    let project: Value = app
        .get(&format!("/api/v1/projects/{project_id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        project["asset_ids"].as_array().unwrap().len(),
        2,
        "assets created once"
    );
    assert_eq!(app.balance(&token).await, 8);
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn a_failure_delivered_three_times_refunds_once() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let created: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "p", "format": "image_hd"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.balance(&token).await, 8);
    let failed = serde_json::to_vec(
        &json!({"generation_id": id, "status": "failed", "error": "gpu on fire"}),
    )
    .unwrap();
    for _ in 0..3 {
        bus.send_result(&failed).await;
    }
    let s = wait_status(&app, &token, id, "failed").await;
    assert_eq!(s["error"], "gpu on fire");
    assert_eq!(s["refunded"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.balance(&token).await, 10);
    let credits: Value = app
        .get("/api/v1/credits", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let refunds = credits["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "generation_refund")
        .count();
    assert_eq!(refunds, 1);
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn malformed_and_unknown_results_go_to_the_dlq_and_the_consumer_carries_on() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let created: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "p", "format": "banner"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    wait_status(&app, &token, id, "queued").await;
    bus.send_result(b"{not json").await;
    bus.send_result(&result(&uuid::Uuid::now_v7().to_string(), "completed"))
        .await;
    bus.send_result(&result(id, "exploded")).await;
    for _ in 0..3 {
        assert!(bus.next_dead_letter(WAIT).await.is_some(), "a dead letter");
    }
    bus.send_result(&result(id, "processing")).await;
    wait_status(&app, &token, id, "processing").await;
    finish(app, bus).await;
}

#[actix_web::test]
async fn cancel_while_queued_refunds_and_cancel_after_completion_is_409() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let a: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "a", "format": "image_hd"}),
    )
    .await;
    let a_id = a["id"].as_str().unwrap();
    wait_status(&app, &token, a_id, "queued").await;
    let r = app
        .post_json(
            &format!("/api/v1/generation/{a_id}/cancel"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["refunded"], 2);
    assert_eq!(body["credit_balance"], 10);
    let again = app
        .post_json(
            &format!("/api/v1/generation/{a_id}/cancel"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.balance(&token).await, 10, "cancel twice refunds once");
    let b: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "b", "format": "banner"}),
    )
    .await;
    let b_id = b["id"].as_str().unwrap();
    bus.send_result(&result(b_id, "completed")).await;
    wait_status(&app, &token, b_id, "completed").await;
    let r = app
        .post_json(
            &format!("/api/v1/generation/{b_id}/cancel"),
            Some(&token),
            &json!({}),
        )
        .await;
    let e = assert_error(r, 409, "invalid_status").await;
    assert_eq!(e["error"]["details"]["status"], "completed");
    let (stranger, _) = app.new_user().await;
    assert_error(
        app.post_json(
            &format!("/api/v1/generation/{b_id}/cancel"),
            Some(&stranger),
            &json!({}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get(
            &format!("/api/v1/generation/{b_id}/status"),
            Some(&stranger),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn requests_past_their_deadline_fail_with_a_timeout_and_are_refunded_once() {
    let bus = Bus::new().await;
    let app = app_on(
        &bus,
        "[generation]\ndeadline_seconds = 1\ntimeout_check_seconds = 1\n",
    )
    .await;
    let (token, _, project_id) = user_with_project(&app).await;
    let a: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "slow", "format": "image_hd"}),
    )
    .await;
    let s = wait_status(&app, &token, a["id"].as_str().unwrap(), "failed").await;
    assert_eq!(s["error"], "generation_timeout");
    wait_balance(&app, &token, 10).await;
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn listing_filters_by_project_and_status() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    for _ in 0..3 {
        create(
            &app,
            &token,
            &json!({"project_id": project_id, "prompt": "p", "format": "banner"}),
        )
        .await;
    }
    let list = listed(&app, &token, &format!("project_id={project_id}&limit=2")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(list["next_cursor"].is_string());
    let none = listed(&app, &token, "status=completed").await;
    assert_eq!(none["items"], json!([]));
    assert_error(
        list_page(&app, &token, "status=weird").await,
        422,
        "validation_failed",
    )
    .await;
    finish(app, bus).await;
}

async fn list_page(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/generation?{query}"), Some(token))
        .await
}

async fn listed(app: &TestApp, token: &str, query: &str) -> Value {
    let r = list_page(app, token, query).await;
    assert_eq!(r.status(), 200, "the list is answered");
    r.json().await.unwrap()
}

/// A user's requests are listed through the charges of their ledger chain: pages must skip
/// the other entries between them, lose none and repeat none.
#[actix_web::test]
async fn listing_pages_through_every_request_newest_first_past_other_ledger_entries() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let admin = app.staff(Role::Admin).await;
    let (token, user_id, project_id) = user_with_project(&app).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let body = json!({"project_id": project_id, "prompt": format!("p{n}"), "format": "banner"});
        ids.push(accepted(&app, &token, &body).await["id"].clone());
        let r = app.admin_adjust(&admin, &user_id, 1, "between").await;
        assert!(r.status().is_success());
    }
    let cancelled = ids[1].as_str().unwrap().to_string();
    let r = app
        .post_json(
            &format!("/api/v1/generation/{cancelled}/cancel"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200, "the refund is one more entry in the chain");
    ids.reverse();
    let (mut seen, mut query) = (Vec::new(), "limit=2".to_string());
    for _ in 0..ids.len() {
        let page = listed(&app, &token, &query).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every request once, newest first");
    let staff_view = listed(&app, &admin, &format!("user_id={user_id}&status=cancelled")).await;
    assert_eq!(staff_view["items"].as_array().unwrap().len(), 1);
    assert_eq!(staff_view["items"][0]["id"], cancelled.as_str());
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn a_cursor_from_another_users_listing_or_no_listing_is_refused() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (mine, _, _) = user_with_project(&app).await;
    let (theirs, _, their_project) = user_with_project(&app).await;
    let body = json!({"project_id": their_project, "prompt": "p", "format": "banner"});
    accepted(&app, &theirs, &body).await;
    let page = listed(&app, &theirs, "limit=1").await;
    let cursor = page["next_cursor"]
        .as_str()
        .expect("older entries remain")
        .to_string();
    for bad in [cursor.as_str(), "AAAA", "not base64!"] {
        assert_error(
            list_page(&app, &mine, &format!("cursor={bad}")).await,
            422,
            "validation_failed",
        )
        .await;
    }
    assert_eq!(
        listed(&app, &theirs, &format!("cursor={cursor}")).await["items"],
        json!([])
    );
    finish(app, bus).await;
}

#[actix_web::test]
async fn five_hundred_simultaneous_creates_with_credits_for_300_accept_exactly_300() {
    let bus = Bus::new().await;
    let app = app_on(&bus, crate::helpers::FLOOD_CONFIG).await;
    let admin = app.staff(Role::Admin).await;
    let (token, id, project_id) = user_with_project(&app).await;
    app.admin_adjust(&admin, &id, 290, "to 300").await;
    let body = json!({"project_id": project_id, "prompt": "burst", "format": "banner"});
    let results =
        futures_util::future::join_all((0..500).map(|_| create(&app, &token, &body))).await;
    assert_eq!(results.iter().filter(|r| r.status() == 202).count(), 300);
    assert_eq!(results.iter().filter(|r| r.status() == 402).count(), 200);
    assert_eq!(app.balance(&token).await, 0);
    let jobs = bus.drain_jobs(Duration::from_secs(2)).await;
    let ids: std::collections::HashSet<String> = jobs
        .iter()
        .map(|(j, _)| j["generation_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 300);
    app.assert_verified();
    finish(app, bus).await;
}

#[actix_web::test]
async fn every_accepted_job_reaches_the_queue_when_the_broker_cuts_the_connection() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let admin = app.staff(Role::Admin).await;
    let (token, id, project_id) = user_with_project(&app).await;
    app.admin_adjust(&admin, &id, 10_000, "float").await;
    let body = json!({"project_id": project_id, "prompt": "cut", "format": "banner"});
    let mut accepted = std::collections::HashSet::new();
    for round in 0..10 {
        let batch =
            futures_util::future::join_all((0..50).map(|_| create(&app, &token, &body))).await;
        for r in batch {
            assert_eq!(r.status(), 202);
            accepted.insert(
                r.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        if round == 3 || round == 6 {
            assert!(
                bus.cut_server_connections() > 0,
                "found the server's connections"
            );
        }
    }
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < accepted.len() && tokio::time::Instant::now() < deadline {
        for (job, _) in bus.drain_jobs(Duration::from_millis(500)).await {
            seen.insert(job["generation_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        seen, accepted,
        "every accepted job was published (duplicates allowed)"
    );
    finish(app, bus).await;
}

#[actix_web::test]
async fn an_idempotency_key_is_forgotten_after_24_hours_and_purged() {
    use storage::records::IdempotencyRecord;
    let app = crate::helpers::spawn_app().await; // no broker: creates are accepted all the same
    let (token, _, project_id) = user_with_project(&app).await;
    let send = || {
        app.client
            .post(app.url("/api/v1/generation/create"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "daily")
            .json(&json!({"project_id": project_id, "prompt": "p", "format": "banner"}))
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    // Age the remembered key past its window.
    let store = &app.state.store;
    let (k, mut r) = store
        .scan::<IdempotencyRecord>(&[], None, storage::Direction::Forward, 10)
        .unwrap()
        .remove(0);
    r.created_at_us -= 25 * 3600 * 1_000_000;
    let mut set = storage::WriteSet::new();
    set.put(k.clone(), &r);
    store.write(set).await.unwrap();
    assert_eq!(
        creativeflow::services::credits::purge_expired_idempotency(store, 100)
            .await
            .unwrap(),
        1
    );
    let second: Value = send().await.unwrap().json().await.unwrap();
    assert_ne!(second["id"], first["id"], "a new request after the window");
    assert_eq!(app.balance(&token).await, 8);
    app.assert_verified();
}

/// A POST to a server process (the binary, not the in-process app).
async fn post_to(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Response {
    let mut r = client.post(format!("{base}{path}")).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// Signs up `email` on a server process and gives it a workbench and a project: (token, project id).
async fn process_user_with_project(
    client: &reqwest::Client,
    base: &str,
    email: &str,
) -> (String, String) {
    let body = json!({"email": email, "password": "long enough pw", "name": "D"});
    let s: Value = post_to(client, base, "/api/v1/auth/signup", None, body)
        .await
        .json()
        .await
        .unwrap();
    let token = s["token"].as_str().unwrap().to_string();
    let wb: Value = post_to(
        client,
        base,
        "/api/v1/workbenches",
        Some(&token),
        json!({"name": "W"}),
    )
    .await
    .json()
    .await
    .unwrap();
    let body = json!({"name": "P", "workbench_id": wb["id"]});
    let p: Value = post_to(client, base, "/api/v1/projects", Some(&token), body)
        .await
        .json()
        .await
        .unwrap();
    (token, p["id"].as_str().unwrap().to_string())
}

/// A create on a server process; answers the request id.
async fn process_create(client: &reqwest::Client, base: &str, token: &str, body: Value) -> String {
    let r = post_to(client, base, "/api/v1/generation/create", Some(token), body).await;
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn readyz(client: &reqwest::Client, base: &str) -> Value {
    client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until the server process's outbox is empty.
async fn wait_outbox_empty(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ready = readyz(client, base).await;
        if ready["outbox_backlog"] == 0 {
            assert_eq!(ready["broker"]["connected"], true);
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "outbox still {}",
            ready["outbox_backlog"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[actix_web::test]
async fn a_job_accepted_while_the_broker_is_down_is_published_after_a_kill_9_and_restart() {
    use crate::cli::Server;
    let bus = Bus::new().await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut server = Server::start(dir.path()).await; // CREATIVEFLOW_AMQP_URL points nowhere
    let (token, project) =
        process_user_with_project(&client, &server.base, "down@example.com").await;
    let body = json!({"project_id": project, "prompt": "offline", "format": "banner"});
    let id = process_create(&client, &server.base, &token, body).await;
    let ready = readyz(&client, &server.base).await;
    assert_eq!(ready["broker"]["connected"], false);
    assert_eq!(ready["outbox_backlog"], 1);
    server.kill9();

    let env = bus.env("");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_with(dir.path(), &env).await;
    let (job, props) = bus
        .next_job(WAIT)
        .await
        .expect("the job is published after the restart");
    assert_eq!(job["generation_id"], id.as_str());
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        Some(id.as_str())
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s: Value = client
            .get(format!("{}/api/v1/generation/{id}/status", server.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["status"] == "queued" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {}",
            s["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_outbox_empty(&client, &server.base).await;
    drop(server);
    bus.cleanup().await;
}

/// Jobs that waited in the outbox for the broker are handed to it a whole scan at a time: every
/// one is published once it is back, except one cancelled meanwhile, whose leftover order entry
/// is removed with the rest of the outbox.
#[actix_web::test]
async fn jobs_that_waited_for_the_broker_are_all_published_except_one_cancelled_meanwhile() {
    use crate::cli::Server;
    let bus = Bus::new().await;
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let mut server = Server::start(dir.path()).await; // no broker yet
    let (token, project) = process_user_with_project(&client, &server.base, "w@example.com").await;
    let mut ids = Vec::new();
    for i in 0..9 {
        let body = json!({"project_id": project, "prompt": format!("p{i}"), "format": "banner"});
        ids.push(process_create(&client, &server.base, &token, body).await);
    }
    let cancelled = ids.remove(4); // a new user's 10 credits pay for nine banners
    let path = format!("/api/v1/generation/{cancelled}/cancel");
    let r = post_to(&client, &server.base, &path, Some(&token), json!({})).await;
    assert_eq!(r.status(), 200);
    server.terminate();

    let env = bus.env("");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut server = Server::start_with(dir.path(), &env).await;
    wait_outbox_empty(&client, &server.base).await;
    let published: Vec<String> = bus
        .drain_jobs(Duration::from_secs(2))
        .await
        .iter()
        .map(|(job, _)| job["generation_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !published.contains(&cancelled),
        "a cancelled job was published"
    );
    let mut got = published.clone();
    got.sort();
    got.dedup();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want, "every other job published");
    server.terminate();
    let store = storage::Store::open(dir.path(), &storage::StoreOptions::default()).unwrap();
    assert_eq!(store.count(Table::OutboxOrder).unwrap(), 0);
    assert_eq!(store.count(Table::Outbox).unwrap(), 0);
    drop(store);
    let v = crate::cli::run(dir.path(), &["verify"]);
    assert!(v.status.success(), "{}", crate::cli::text(&v));
    bus.cleanup().await;
}

/// The publisher follows the outbox by commit-ordered keys and never rescans: every job of many
/// concurrent creates is published and queued, and once the load stops no entry is left
/// behind its cursor (with no more creates there is nothing left to wake it).
#[actix_web::test]
async fn under_concurrent_creates_every_job_is_published_without_a_rescan() {
    concurrent_creates_are_all_published_and_recorded("").await;
}

/// The relay takes confirms and records them while earlier records wait for their commit, and
/// its window counts every job published and not yet recorded. With a window of two under 80
/// concurrent creates it holds back on that bound all the time: every job is still published
/// exactly once, queued and removed from the outbox.
#[actix_web::test]
async fn a_confirm_window_far_smaller_than_the_load_still_publishes_and_records_every_job() {
    concurrent_creates_are_all_published_and_recorded("[generation]\nconfirm_window = 2\n").await;
}

/// 80 concurrent creates from 8 users: every job reaches the queue once, and the outbox and
/// its order entries empty.
async fn concurrent_creates_are_all_published_and_recorded(extra: &str) {
    let bus = Bus::new().await;
    let owned = app_on(&bus, extra).await;
    let app = &owned;
    let mut users = Vec::new();
    for _ in 0..8 {
        users.push(user_with_project(app).await);
    }
    let creates = users.iter().flat_map(|(token, _, project)| {
        (0..10).map(move |i| {
            let body =
                json!({"project_id": project, "prompt": format!("p{i}"), "format": "social_post"});
            async move { accepted(app, token, &body).await }
        })
    });
    let accepted_ids: Vec<String> = futures_util::future::join_all(creates)
        .await
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accepted_ids.len(), 80);
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.state.store.count(Table::Outbox).unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs stayed in the outbox: {} left",
            app.state.store.count(Table::Outbox).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.store.count(Table::OutboxOrder).unwrap(), 0);
    let mut published = std::collections::HashSet::new();
    let mut messages = 0;
    while published.len() < accepted_ids.len() {
        let (job, _) = bus.next_job(WAIT).await.expect("every job on the queue");
        published.insert(job["generation_id"].as_str().unwrap().to_string());
        messages += 1;
    }
    assert!(accepted_ids.iter().all(|id| published.contains(id)));
    messages += bus.drain_jobs(Duration::from_millis(500)).await.len();
    assert_eq!(messages, accepted_ids.len(), "no job published twice");
    app.assert_verified();
    finish(owned, bus).await;
}

/// A worker is not trusted more than a client: asset paths with a backslash, a control
/// character, a percent-encoded dot, or a scheme; a mime that is not type/subtype; a size past
/// the bound — each message goes to the DLQ whole, and the request is left as it was.
#[actix_web::test]
async fn hostile_result_messages_are_dead_lettered_and_change_nothing() {
    let bus = Bus::new().await;
    let app = app_on(&bus, "").await;
    let (token, _, project_id) = user_with_project(&app).await;
    let created: Value = accepted(
        &app,
        &token,
        &json!({"project_id": project_id, "prompt": "p", "format": "banner"}),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    wait_status(&app, &token, id, "queued").await;
    let hostile = [
        json!({"path": "out\\..\\etc\\passwd", "mime": "image/png", "size": 1}),
        json!({"path": "out/a\u{0007}b.png", "mime": "image/png", "size": 1}),
        json!({"path": "out/%2e%2e/secret.png", "mime": "image/png", "size": 1}),
        json!({"path": "https://evil.example/x.png", "mime": "image/png", "size": 1}),
        json!({"path": "out/ok.png", "mime": "image png", "size": 1}),
        json!({"path": "out/ok.png", "mime": "image/png", "size": 10_737_418_241_u64}),
    ];
    for asset in &hostile {
        let msg = json!({"generation_id": id, "status": "completed", "assets": [asset]});
        bus.send_result(msg.to_string().as_bytes()).await;
    }
    for asset in &hostile {
        assert!(
            bus.next_dead_letter(WAIT).await.is_some(),
            "dead-lettered: {asset}"
        );
    }
    let s = status(&app, &token, id).await;
    assert_eq!(s["status"], "queued");
    assert_eq!(s["assets"].as_array().unwrap().len(), 0);
    app.assert_verified();
    finish(app, bus).await;
}
