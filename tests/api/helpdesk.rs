//! The helpdesk (SPEC §9): tickets with gapless numbers, record rules, messages and internal
//! notes, staff changes, the SLA, and the live event stream.

use std::time::Duration;

use serde_json::{json, Value};
use storage::records::{Role, TicketAwaitingResponse, TicketRecord};
use storage::{keys, WriteOutcome, WriteSet};

use crate::helpers::{assert_error, spawn_app, spawn_app_with_config, TestApp, FLOOD_CONFIG};

fn ticket(subject: &str) -> Value {
    json!({"subject": subject, "description": "The export button does nothing.\nSince Monday."})
}

async fn open(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.post_json("/api/v1/tickets", Some(token), body).await
}

pub async fn open_ok(app: &TestApp, token: &str) -> Value {
    let r = open(app, token, &ticket("Export broken")).await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

pub async fn post_message(
    app: &TestApp,
    token: &str,
    ticket_id: &str,
    body: &str,
    internal: bool,
) -> reqwest::Response {
    app.post_json(
        &format!("/api/v1/tickets/{ticket_id}/messages"),
        Some(token),
        &json!({"body": body, "internal": internal}),
    )
    .await
}

async fn patch(app: &TestApp, token: &str, ticket_id: &str, body: &Value) -> reqwest::Response {
    app.patch_json(&format!("/api/v1/tickets/{ticket_id}"), Some(token), body)
        .await
}

async fn get_ticket(app: &TestApp, token: &str, ticket_id: &str) -> Value {
    let r = app
        .get(&format!("/api/v1/tickets/{ticket_id}"), Some(token))
        .await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn bodies(app: &TestApp, token: &str, ticket_id: &str) -> Vec<String> {
    let r = app
        .get(
            &format!("/api/v1/tickets/{ticket_id}/messages?limit=200"),
            Some(token),
        )
        .await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

async fn user_id_of(app: &TestApp, token: &str) -> String {
    let me: Value = app
        .get("/api/v1/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    me["id"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn a_customer_opens_a_ticket_numbered_with_the_first_response_deadline_of_their_tier() {
    let app = spawn_app().await;
    let (token, user_id) = app.new_user().await;
    let t = open_ok(&app, &token).await;
    assert_eq!(t["number"], "HD-000001");
    assert_eq!(t["stage"], "new");
    assert_eq!(t["priority"], "normal");
    assert_eq!(t["channel"], "web");
    assert_eq!(t["user_id"], user_id.as_str());
    assert_eq!(t["assignee_id"], Value::Null);
    assert_eq!(t["sla"]["status"], "pending");
    assert_eq!(t["sla"]["first_responded_at"], Value::Null);
    let parse = |v: &Value| {
        time::OffsetDateTime::parse(
            v.as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let promised = parse(&t["sla"]["first_response_due_at"]) - parse(&t["created_at"]);
    assert_eq!(promised.whole_hours(), 72, "the free tier's promise");
    let second = open_ok(&app, &token).await;
    assert_eq!(second["number"], "HD-000002");
    let id = t["id"].as_str().unwrap();
    assert_eq!(
        get_ticket(&app, &token, id).await["subject"],
        "Export broken"
    );
    let list: Value = app
        .get("/api/v1/tickets", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["number"], "HD-000002", "newest first");
    app.assert_verified();
}

#[actix_web::test]
async fn bad_tickets_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let (other, _) = app.new_user().await;
    let others_project = app.project_of(&other).await;
    let cases = [
        (json!({"subject": " ", "description": "d"}), "subject"),
        (json!({"subject": "s", "description": ""}), "description"),
        (
            json!({"subject": "s", "description": "x".repeat(10_001)}),
            "description",
        ),
        (
            json!({"subject": "s", "description": "d", "channel": "fax"}),
            "channel",
        ),
        (
            json!({"subject": "s", "description": "d", "project_id": others_project}),
            "project_id",
        ),
        (
            json!({"subject": "s", "description": "d", "project_id": uuid::Uuid::now_v7()}),
            "project_id",
        ),
        (
            json!({"subject": "s", "description": "d", "generation_request_id": uuid::Uuid::now_v7()}),
            "generation_request_id",
        ),
    ];
    for (body, field) in cases {
        let r = open(&app, &token, &body).await;
        let e = assert_error(r, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    let r = open(
        &app,
        &token,
        &json!({"subject": "s", "description": "d", "priority": "urgent"}),
    )
    .await;
    assert!(
        r.status() == 400 || r.status() == 422,
        "unknown field refused"
    );
    let list: Value = app
        .get("/api/v1/tickets", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    assert_eq!(
        open_ok(&app, &token).await["number"],
        "HD-000001",
        "refused tickets took no number"
    );
    app.assert_verified();
}

#[actix_web::test]
async fn a_customer_never_reaches_another_customers_ticket() {
    let app = spawn_app().await;
    let (alice, alice_id) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    let t = open_ok(&app, &alice).await;
    let id = t["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/tickets/{id}"),
        format!("/api/v1/tickets/{id}/messages"),
        format!("/api/v1/tickets?user_id={alice_id}"),
    ] {
        assert_error(app.get(&path, Some(&bob)).await, 404, "not_found").await;
    }
    assert_error(
        post_message(&app, &bob, id, "hello", false).await,
        404,
        "not_found",
    )
    .await;
    let list: Value = app
        .get("/api/v1/tickets", Some(&bob))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    assert_error(
        app.get("/api/v1/tickets/not-a-uuid", Some(&bob)).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get("/api/v1/tickets", None).await,
        401,
        "unauthenticated",
    )
    .await;
}

#[actix_web::test]
async fn staff_assign_and_move_tickets_and_a_closed_ticket_is_final() {
    let app = spawn_app().await;
    let (customer, customer_id) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let agent_id = user_id_of(&app, &agent).await;
    let t = open_ok(&app, &customer).await;
    let id = t["id"].as_str().unwrap();
    assert_error(
        patch(&app, &customer, id, &json!({"stage": "closed"})).await,
        403,
        "forbidden",
    )
    .await;
    let e = assert_error(
        patch(&app, &agent, id, &json!({"assignee_id": customer_id})).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "assignee_id");
    for (body, field) in [
        (json!({"stage": "done"}), "stage"),
        (json!({"priority": "asap"}), "priority"),
    ] {
        let e = assert_error(
            patch(&app, &agent, id, &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["error"]["details"]["field"], field);
    }
    let r = patch(
        &app,
        &agent,
        id,
        &json!({"assignee_id": agent_id, "priority": "urgent", "stage": "in_progress"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["assignee_id"], agent_id.as_str());
    assert_eq!(v["priority"], "urgent");
    assert_eq!(v["stage"], "in_progress");
    let same: Value = patch(&app, &agent, id, &json!({"priority": "urgent"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        same["updated_at"], v["updated_at"],
        "a patch that changes nothing writes nothing"
    );
    let filtered: Value = app
        .get(
            &format!("/api/v1/tickets?assignee_id={agent_id}&priority=urgent&stage=in_progress"),
            Some(&agent),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    let none: Value = app
        .get("/api/v1/tickets?stage=resolved", Some(&agent))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    assert_error(
        app.get("/api/v1/tickets?sla_status=late", Some(&agent))
            .await,
        422,
        "validation_failed",
    )
    .await;
    let r = patch(
        &app,
        &agent,
        id,
        &json!({"assignee_id": null, "stage": "closed"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["assignee_id"], Value::Null);
    assert_error(
        patch(&app, &agent, id, &json!({"stage": "in_progress"})).await,
        409,
        "invalid_status",
    )
    .await;
    assert_error(
        post_message(&app, &customer, id, "still broken", false).await,
        409,
        "invalid_status",
    )
    .await;
    assert_eq!(get_ticket(&app, &customer, id).await["stage"], "closed");
    app.assert_verified();
}

#[actix_web::test]
async fn internal_notes_never_reach_the_customer() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let t = open_ok(&app, &customer).await;
    let id = t["id"].as_str().unwrap();
    assert_error(
        post_message(&app, &customer, id, "let me see notes", true).await,
        403,
        "forbidden",
    )
    .await;
    assert_eq!(
        post_message(&app, &agent, id, "customer is on the free tier", true)
            .await
            .status(),
        201
    );
    let r = post_message(&app, &agent, id, "We are on it.", false).await;
    assert_eq!(r.status(), 201);
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["author_role"], "agent");
    assert_eq!(m["internal"], false);
    assert_eq!(m["ticket_id"], id);
    assert_eq!(bodies(&app, &customer, id).await, vec!["We are on it."]);
    assert_eq!(
        bodies(&app, &agent, id).await,
        vec!["customer is on the free tier", "We are on it."]
    );
    let e = assert_error(
        post_message(&app, &customer, id, "", false).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "body");
    let e = assert_error(
        post_message(&app, &customer, id, &"x".repeat(10_001), false).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "body");
    assert_eq!(
        bodies(&app, &agent, id).await.len(),
        2,
        "refused posts changed nothing"
    );
}

#[actix_web::test]
async fn the_first_public_reply_meets_the_sla_and_an_internal_note_does_not() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let id = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    post_message(&app, &agent, &id, "note", true).await;
    post_message(&app, &customer, &id, "any news?", false).await;
    let t = get_ticket(&app, &customer, &id).await;
    assert_eq!(t["sla"]["status"], "pending");
    post_message(&app, &agent, &id, "Fixed in 1.2", false).await;
    let t = get_ticket(&app, &customer, &id).await;
    assert_eq!(t["sla"]["status"], "met");
    assert!(t["sla"]["first_responded_at"].is_string());
    let met: Value = app
        .get("/api/v1/tickets?sla_status=met", Some(&agent))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(met["items"].as_array().unwrap().len(), 1);
    app.assert_verified();
}

/// Moves a ticket's first-response deadline into the past, as time passing would.
async fn make_overdue(app: &TestApp, ticket_id: &str) {
    let id = uuid::Uuid::parse_str(ticket_id).unwrap();
    let old: TicketRecord = app.state.store.get(&keys::id(id)).unwrap().unwrap();
    let new = TicketRecord {
        first_response_due_at_us: old.created_at_us + 1,
        ..old.clone()
    };
    let mut set = WriteSet::new();
    set.require_equal(keys::id(id), &old);
    set.put(keys::id(id), &new);
    set.delete::<TicketAwaitingResponse>(keys::awaiting_response(old.first_response_due_at_us, id));
    set.put(
        keys::awaiting_response(new.first_response_due_at_us, id),
        &TicketAwaitingResponse,
    );
    assert_eq!(
        app.state.store.write(set).await.unwrap(),
        WriteOutcome::Committed
    );
}

async fn breaches_counted(app: &TestApp) -> f64 {
    let text = app.get("/metrics", None).await.text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("creativeflow_helpdesk_sla_breaches_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn an_unanswered_deadline_is_breached_once_and_counted() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let late = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answered_late = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    make_overdue(&app, &late).await;
    make_overdue(&app, &answered_late).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        get_ticket(&app, &customer, &late).await["sla"]["status"],
        "breached",
        "shown at once, before any sweep"
    );
    let before = breaches_counted(&app).await;
    // The reply comes late: the ticket breaches with it.
    post_message(&app, &agent, &answered_late, "Sorry for the wait", false).await;
    let swept = creativeflow::services::helpdesk::sweep_sla(&app.state, 1000)
        .await
        .unwrap();
    assert_eq!(swept, 1, "only the unanswered one is left to the sweep");
    let again = creativeflow::services::helpdesk::sweep_sla(&app.state, 1000)
        .await
        .unwrap();
    assert_eq!(again, 0, "a breach is marked once");
    assert_eq!(breaches_counted(&app).await - before, 2.0);
    for id in [&late, &answered_late] {
        assert_eq!(
            get_ticket(&app, &customer, id).await["sla"]["status"],
            "breached"
        );
    }
    post_message(&app, &agent, &late, "Here now", false).await;
    assert_eq!(
        breaches_counted(&app).await - before,
        2.0,
        "not counted twice"
    );
    let breached: Value = app
        .get("/api/v1/tickets?sla_status=breached", Some(&agent))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(breached["items"].as_array().unwrap().len(), 2);
    app.assert_verified();
}

#[actix_web::test]
async fn a_customer_message_reopens_a_resolved_ticket() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let id = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        patch(&app, &agent, &id, &json!({"stage": "resolved"}))
            .await
            .status(),
        200
    );
    post_message(&app, &agent, &id, "internal: done", true).await;
    assert_eq!(get_ticket(&app, &customer, &id).await["stage"], "resolved");
    post_message(&app, &customer, &id, "It broke again", false).await;
    assert_eq!(
        get_ticket(&app, &customer, &id).await["stage"],
        "in_progress"
    );
    app.assert_verified();
}

#[actix_web::test]
async fn messages_page_oldest_first_and_continue_with_since() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let id = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 0..5 {
        post_message(&app, &customer, &id, &format!("m{n}"), false).await;
    }
    let mut seen = Vec::new();
    let mut since: Option<String> = None;
    loop {
        let path = match &since {
            Some(c) => format!("/api/v1/tickets/{id}/messages?limit=2&since={c}"),
            None => format!("/api/v1/tickets/{id}/messages?limit=2"),
        };
        let page: Value = app.get(&path, Some(&customer)).await.json().await.unwrap();
        for m in page["items"].as_array().unwrap() {
            seen.push(m["body"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => since = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec!["m0", "m1", "m2", "m3", "m4"]);
    assert_error(
        app.get(
            &format!("/api/v1/tickets/{id}/messages?since=%%%"),
            Some(&customer),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
}

#[actix_web::test]
async fn open_tickets_are_bounded_per_customer_and_resolving_one_frees_a_place() {
    let (app, _cfg) = spawn_app_with_config(FLOOD_CONFIG).await;
    let (customer, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let mut first = String::new();
    for n in 0..20 {
        let t = open_ok(&app, &customer).await;
        if n == 0 {
            first = t["id"].as_str().unwrap().to_string();
        }
    }
    let r = open(&app, &customer, &ticket("one more")).await;
    let e = assert_error(r, 409, "limit_reached").await;
    assert_eq!(e["error"]["details"]["limit"], 20);
    patch(&app, &agent, &first, &json!({"stage": "resolved"})).await;
    assert_eq!(open(&app, &customer, &ticket("now")).await.status(), 201);
    app.assert_verified();
}

#[actix_web::test]
async fn a_hundred_simultaneous_tickets_take_numbers_1_to_100_without_a_gap() {
    let (app, _cfg) = spawn_app_with_config(FLOOD_CONFIG).await;
    let mut customers = Vec::new();
    for _ in 0..5 {
        customers.push(app.new_user().await.0);
    }
    let mut calls = Vec::new();
    for n in 0..100 {
        let token = customers[n % customers.len()].clone();
        let (client, url) = (app.client.clone(), app.url("/api/v1/tickets"));
        calls.push(actix_web::rt::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&ticket(&format!("t{n}")))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()["number"]
                .as_str()
                .unwrap()
                .to_string()
        }));
    }
    let mut numbers = Vec::new();
    for c in calls {
        numbers.push(c.await.unwrap());
    }
    numbers.sort();
    let expected: Vec<String> = (1..=100).map(|n| format!("HD-{n:06}")).collect();
    assert_eq!(numbers, expected);
    app.assert_verified();
}

#[actix_web::test]
async fn a_ticket_on_a_generation_shows_its_status_error_and_refund() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let (other, _) = app.new_user().await;
    let project_id = app.project_of(&customer).await;
    let r = app
        .post_json(
            "/api/v1/generation/create",
            Some(&customer),
            &json!({"project_id": project_id, "prompt": "A poster", "format": "banner", "variations": 1}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let g: Value = r.json().await.unwrap();
    let gen_id = g["id"].as_str().unwrap();
    let e = assert_error(
        open(
            &app,
            &other,
            &json!({"subject": "s", "description": "d", "generation_request_id": gen_id}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "generation_request_id");
    let r = app
        .post_json(
            &format!("/api/v1/generation/{gen_id}/cancel"),
            Some(&customer),
            &json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = open(
        &app,
        &customer,
        &json!({"subject": "Refund?", "description": "Cancelled", "project_id": project_id, "generation_request_id": gen_id}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["generation"]["status"], "cancelled");
    assert_eq!(t["generation"]["refunded"], true);
    assert_eq!(t["gone_links"], json!([]));
    app.assert_verified();
}

// --- The event stream ---------------------------------------------------------------------------

pub async fn enable_chat(app: &TestApp, on: bool) {
    app.set_features(&json!({"enable_live_chat_support": on}))
        .await;
}

pub async fn stream(
    app: &TestApp,
    token: &str,
    ticket_id: &str,
    last: Option<u32>,
) -> reqwest::Response {
    let mut r = app
        .client
        .get(app.url(&format!("/api/v1/tickets/{ticket_id}/events")))
        .bearer_auth(token);
    if let Some(n) = last {
        r = r.header("Last-Event-ID", n.to_string());
    }
    r.send().await.unwrap()
}

/// Reads frames until `count` events (not comments) came; returns (id, event, data).
pub async fn events(
    r: &mut reqwest::Response,
    buf: &mut String,
    count: usize,
) -> Vec<(u32, String, Value)> {
    let mut out = Vec::new();
    while out.len() < count {
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::to_string)
            };
            if let (Some(id), Some(event), Some(data)) =
                (field("id: "), field("event: "), field("data: "))
            {
                out.push((
                    id.parse().unwrap(),
                    event,
                    serde_json::from_str(&data).unwrap(),
                ));
            }
        }
        if out.len() >= count {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream is open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    out
}

#[actix_web::test]
async fn chat_tickets_and_event_streams_follow_the_live_chat_toggle() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let chat = json!({"subject": "Live", "description": "Hi", "channel": "chat"});
    assert_error(open(&app, &customer, &chat).await, 403, "feature_disabled").await;
    let web = open_ok(&app, &customer).await;
    let id = web["id"].as_str().unwrap();
    assert_error(
        stream(&app, &customer, id, None).await,
        403,
        "feature_disabled",
    )
    .await;
    enable_chat(&app, true).await;
    let r = open(&app, &customer, &chat).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["channel"], "chat");
    let r = stream(&app, &customer, id, None).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    drop(r);
    enable_chat(&app, false).await;
    assert_error(open(&app, &customer, &chat).await, 403, "feature_disabled").await;
    app.assert_verified();
}

#[actix_web::test]
async fn a_reconnect_with_last_event_id_receives_exactly_what_it_missed_and_no_internal_note() {
    let app = spawn_app().await;
    enable_chat(&app, true).await;
    let (customer, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let id = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut s = stream(&app, &customer, &id, None).await;
    assert_eq!(s.status(), 200);
    let mut buf = String::new();
    post_message(&app, &agent, &id, "first", false).await;
    let got = events(&mut s, &mut buf, 1).await;
    assert_eq!(got[0].0, 1);
    assert_eq!(got[0].1, "message");
    assert_eq!(got[0].2["body"], "first");
    drop(s);
    post_message(&app, &agent, &id, "second", false).await;
    post_message(&app, &agent, &id, "secret note", true).await;
    patch(&app, &agent, &id, &json!({"stage": "waiting_customer"})).await;
    post_message(&app, &agent, &id, "third", false).await;
    let mut s = stream(&app, &customer, &id, Some(1)).await;
    let mut buf = String::new();
    let got = events(&mut s, &mut buf, 3).await;
    let ids: Vec<u32> = got.iter().map(|e| e.0).collect();
    assert_eq!(ids, vec![2, 4, 5], "event 3 is the internal note");
    assert_eq!(got[0].2["body"], "second");
    assert_eq!(got[1].1, "stage");
    assert_eq!(got[1].2["to"], "waiting_customer");
    assert_eq!(got[2].2["body"], "third");
    // Staff streams carry the note; a live stream sees new messages from any worker.
    let mut staff = stream(&app, &agent, &id, Some(2)).await;
    let mut staff_buf = String::new();
    let got = events(&mut staff, &mut staff_buf, 1).await;
    assert_eq!(got[0].2["body"], "secret note");
    post_message(&app, &customer, &id, "fourth", false).await;
    let got = events(&mut s, &mut buf, 2).await;
    assert_eq!(got[0].2["body"], "fourth");
    assert_eq!(
        got[1].2["to"], "in_progress",
        "the customer's answer moves it on"
    );
    let e = assert_error(
        app.client
            .get(app.url(&format!("/api/v1/tickets/{id}/events")))
            .bearer_auth(&customer)
            .header("Last-Event-ID", "yesterday")
            .send()
            .await
            .unwrap(),
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "Last-Event-ID");
}

#[actix_web::test]
async fn event_streams_are_bounded_per_user() {
    let app = spawn_app().await;
    enable_chat(&app, true).await;
    let (customer, _) = app.new_user().await;
    let id = open_ok(&app, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut open_streams = Vec::new();
    for _ in 0..5 {
        let s = stream(&app, &customer, &id, None).await;
        assert_eq!(s.status(), 200);
        open_streams.push(s);
    }
    assert_error(
        stream(&app, &customer, &id, None).await,
        429,
        "rate_limited",
    )
    .await;
    open_streams.pop();
    // The slot frees when the server notices the closed stream, at a write to it.
    let mut freed = false;
    for _ in 0..50 {
        post_message(&app, &customer, &id, "wake the streams", false).await;
        let s = stream(&app, &customer, &id, None).await;
        if s.status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "a closed stream gives its place back");
}

#[actix_web::test]
async fn verify_finds_a_gap_in_ticket_numbers() {
    let app = spawn_app().await;
    let (customer, _) = app.new_user().await;
    let t = open_ok(&app, &customer).await;
    let id = uuid::Uuid::parse_str(t["id"].as_str().unwrap()).unwrap();
    let old: TicketRecord = app.state.store.get(&keys::id(id)).unwrap().unwrap();
    let mut set = WriteSet::new();
    set.put(keys::id(id), &TicketRecord { number: 7, ..old });
    app.state.store.write(set).await.unwrap();
    let report = app.verify();
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.contains("ticket numbers")),
        "{:#?}",
        report.violations
    );
}

/// Reads until the server ends the stream; false if it is still open after 10 s.
async fn ends(r: &mut reqwest::Response) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, r.chunk()).await {
            Err(_) => return false,
            Ok(Ok(None)) | Ok(Err(_)) => return true,
            Ok(Ok(Some(_))) => {}
        }
    }
}

#[actix_web::test]
async fn an_open_stream_ends_with_its_session_and_a_chat_ticket_follows_the_toggle() {
    let app = spawn_app().await;
    enable_chat(&app, true).await;
    let agent = app.staff(Role::Agent).await;
    let (customer, _) = app.new_user().await;
    let chat = json!({"subject": "Live", "description": "Hi", "channel": "chat"});
    let r = open(&app, &customer, &chat).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut s = stream(&app, &customer, &id, None).await;
    assert_eq!(s.status(), 200);
    let r = app
        .post_json("/api/v1/auth/logout", Some(&customer), &json!({}))
        .await;
    assert_eq!(r.status(), 204);
    post_message(&app, &agent, &id, "are you there?", false).await;
    assert!(ends(&mut s).await, "a logged-out caller's stream ends");

    enable_chat(&app, false).await;
    let r = post_message(&app, &agent, &id, "after hours", false).await;
    assert_error(r, 403, "feature_disabled").await;
    let r = patch(&app, &agent, &id, &json!({"priority": "high"})).await;
    assert_error(r, 403, "feature_disabled").await;
    app.assert_verified();
}
