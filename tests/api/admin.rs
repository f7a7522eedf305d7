//! The back office over HTTP: sign-in, roles, CSRF, escaping, paging, every menu and action.

use reqwest::redirect::Policy;
use serde_json::{json, Value};
use storage::records::Role;

use crate::helpers::{spawn_app, TestApp, PASSWORD};

/// A browser-like client: keeps cookies, does not follow redirects (tests look at them).
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(Policy::none())
            .build()
            .unwrap();
        Browser { app, client }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self.client.get(self.app.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(self.app.url(path))
            .form(fields)
            .send()
            .await
            .unwrap()
    }

    /// Signs in through the login form; returns the answer to the form post.
    async fn sign_in(&self, email: &str, password: &str) -> reqwest::Response {
        let (status, page) = self.get("/admin/login").await;
        assert_eq!(status, 200);
        let csrf = csrf_of(&page);
        self.post(
            "/admin/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf_token", &csrf),
            ],
        )
        .await
    }

    async fn signed_in(app: &'a TestApp, role: Role) -> Browser<'a> {
        let b = Browser::new(app);
        let email = app.account(role).await;
        let r = b.sign_in(&email, PASSWORD).await;
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/admin/");
        b
    }

    /// Gets `path` (200 expected) and returns the page with its CSRF token.
    async fn page(&self, path: &str) -> (String, String) {
        let (status, page) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let csrf = csrf_of(&page);
        (page, csrf)
    }
}

fn csrf_of(page: &str) -> String {
    value_of(page, "csrf_token")
}

/// The value of the first input named `name` on the page.
fn value_of(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).expect("the input is on the page") + marker.len();
    page[start..].split('"').next().unwrap().to_string()
}

#[actix_web::test]
async fn staff_sign_in_open_every_menu_and_sign_out() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Admin).await;
    let menus = [
        ("/admin/", "Dashboard"),
        ("/admin/workbenches", "Workbenches"),
        ("/admin/projects", "Projects"),
        ("/admin/projects/kanban", "Projects by workbench"),
        ("/admin/brand-kits", "Brand Kits"),
        ("/admin/generations", "Generation Requests"),
        ("/admin/credits", "Credits"),
        ("/admin/users", "Users"),
        ("/admin/invoices", "Invoices"),
        ("/admin/tickets", "Helpdesk"),
        ("/admin/tickets/kanban", "Tickets by stage"),
        ("/admin/settings", "Settings"),
    ];
    for (path, title) in menus {
        let (page, _) = b.page(path).await;
        assert!(page.contains(&format!("<h1>{title}</h1>")), "{path}");
        assert!(page.contains("CreativeFlow AI"));
    }
    let (_, csrf) = b.page("/admin/").await;
    let r = b.post("/admin/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!(r.status(), 303);
    let (status, _) = b.get("/admin/users").await;
    assert_eq!(status, 303, "signed out: back to the login page");
}

#[actix_web::test]
async fn the_session_cookie_is_http_only_strict_and_scoped() {
    let app = spawn_app().await;
    let email = app.account(Role::Agent).await;
    let r = Browser::new(&app).sign_in(&email, PASSWORD).await;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("cf_admin="))
        .expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Strict", "Path=/admin", "Max-Age="] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: no Secure flag");
}

#[actix_web::test]
async fn a_wrong_password_shows_the_form_again_and_a_customer_gets_a_403_page() {
    let app = spawn_app().await;
    let b = Browser::new(&app);
    let email = app.account(Role::Admin).await;
    let r = b.sign_in(&email, "not the password").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Wrong email or password"));
    let customer = app.account(Role::User).await;
    let r = b.sign_in(&customer, PASSWORD).await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .headers()
        .get("set-cookie")
        .is_none_or(|c| !c.to_str().unwrap().starts_with("cf_admin=")));
    let (status, _) = b.get("/admin/users").await;
    assert_eq!(status, 303, "no session was opened");
}

#[actix_web::test]
async fn a_post_without_the_csrf_token_changes_nothing() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Admin).await;
    let (_, user_id) = app.new_user().await;
    let before = b.page(&format!("/admin/users/{user_id}")).await.0;
    for csrf in [None, Some("forged")] {
        let mut fields = vec![("amount", "500"), ("reason", "gift"), ("form_id", "f-1")];
        if let Some(c) = csrf {
            fields.push(("csrf_token", c));
        }
        let r = b
            .post(&format!("/admin/users/{user_id}/credits"), &fields)
            .await;
        assert_eq!(r.status(), 403);
        let r = b
            .post("/admin/settings", &[("enable_live_chat_support", "on")])
            .await;
        assert_eq!(r.status(), 403);
    }
    let after = b.page(&format!("/admin/users/{user_id}")).await.0;
    assert_eq!(balance_shown(&before), balance_shown(&after));
    // The login form needs its token too.
    let r = Browser::new(&app)
        .post("/admin/login", &[("email", "a@b.co"), ("password", "x")])
        .await;
    assert_eq!(r.status(), 403);
    app.assert_verified();
}

fn balance_shown(page: &str) -> u64 {
    let start = page.find("<span id=\"balance\">").unwrap() + "<span id=\"balance\">".len();
    page[start..].split('<').next().unwrap().parse().unwrap()
}

#[actix_web::test]
async fn a_credit_form_submitted_twice_adjusts_once() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Admin).await;
    let (token, user_id) = app.new_user().await;
    let before = app.balance(&token).await;
    let (page, csrf) = b.page(&format!("/admin/users/{user_id}")).await;
    let form_id = value_of(&page, "form_id");
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("form_id", &form_id),
        ("amount", "250"),
        ("reason", "goodwill <b>"),
    ];
    for _ in 0..2 {
        let r = b
            .post(&format!("/admin/users/{user_id}/credits"), &fields)
            .await;
        assert_eq!(r.status(), 303);
    }
    assert_eq!(app.balance(&token).await, before + 250);
    let (page, _) = b.page(&format!("/admin/users/{user_id}")).await;
    assert_eq!(balance_shown(&page), before + 250);
    assert!(
        page.contains("goodwill &lt;b&gt;"),
        "the reason shows, escaped"
    );
    // A new form (a new id) is a new adjustment; a deduction beyond the balance is refused.
    let (page, csrf) = b.page(&format!("/admin/users/{user_id}")).await;
    let form_id = value_of(&page, "form_id");
    let r = b
        .post(
            &format!("/admin/users/{user_id}/credits"),
            &[
                ("csrf_token", &csrf),
                ("form_id", &form_id),
                ("amount", "-999999"),
                ("reason", "too much"),
            ],
        )
        .await;
    assert_eq!(r.status(), 402, "insufficient_credits, as in the API");
    assert!(
        r.text().await.unwrap().contains("<h1>"),
        "errors render as a page"
    );
    assert_eq!(app.balance(&token).await, before + 250);
    app.assert_verified();
}

#[actix_web::test]
async fn admins_edit_tier_role_and_name_and_agents_cannot() {
    let app = spawn_app().await;
    let admin = Browser::signed_in(&app, Role::Admin).await;
    let (_, user_id) = app.new_user().await;
    let path = format!("/admin/users/{user_id}");
    let (_, csrf) = admin.page(&path).await;
    let r = admin
        .post(
            &path,
            &[
                ("csrf_token", &csrf),
                ("name", "Renamed"),
                ("role", "agent"),
                ("tier", "pro"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (page, _) = admin.page(&path).await;
    assert!(
        page.contains("Renamed")
            && page.contains("<dd>agent</dd>")
            && page.contains("<dd>pro</dd>")
    );
    let r = admin
        .post(&path, &[("csrf_token", &csrf), ("tier", "platinum")])
        .await;
    assert_eq!(r.status(), 422);

    let agent = Browser::signed_in(&app, Role::Agent).await;
    let (page, csrf) = agent.page(&path).await;
    assert!(
        !page.contains("Adjust credits"),
        "agents see no admin forms"
    );
    let r = agent
        .post(&path, &[("csrf_token", &csrf), ("tier", "free")])
        .await;
    assert_eq!(r.status(), 403);
    let (status, _) = agent.get("/admin/settings").await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn every_value_is_escaped() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Agent).await;
    let (token, _) = app.new_user().await;
    let r = app
        .post_json(
            "/api/v1/workbenches",
            Some(&token),
            &json!({"name": "<script>alert(1)</script>"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for path in [
        "/admin/workbenches".to_string(),
        format!("/admin/workbenches/{id}"),
        "/admin/projects/kanban".into(),
    ] {
        let (page, _) = b.page(&path).await;
        assert!(!page.contains("<script>alert(1)"), "{path}");
        if path != "/admin/projects/kanban" {
            assert!(
                page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{path}"
            );
        }
    }
    let (status, page) = b.get("/admin/users?q=%3Cimg%20src%3Dx%3E").await;
    assert_eq!(status, 200);
    assert!(!page.contains("<img src=x>"));
}

#[actix_web::test]
async fn lists_page_with_a_cursor_filter_and_search() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Agent).await;
    for _ in 0..55 {
        app.account(Role::User).await;
    }
    let (page, _) = b.page("/admin/users?order=oldest").await;
    assert_eq!(page.matches("<tr><td><a href=\"/admin/users/").count(), 50);
    let next = page
        .split("rel=\"next\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (rest, _) = b.page(&next).await;
    assert_eq!(
        rest.matches("<tr><td><a href=\"/admin/users/").count(),
        6,
        "55 users and the agent"
    );
    assert!(!rest.contains("rel=\"next\""));
    let (page, _) = b.page("/admin/users?role=agent").await;
    assert_eq!(page.matches("<tr><td><a href=\"/admin/users/").count(), 1);
    let (page, _) = b.page("/admin/users?q=agent-").await;
    assert_eq!(
        page.matches("<tr><td><a href=\"/admin/users/").count(),
        1,
        "email search: {page}"
    );
    let (page, _) = b.page("/admin/users?order=email").await;
    let first = page
        .split("<tr><td><a href=\"/admin/users/")
        .nth(1)
        .unwrap();
    assert!(
        first.split("</a>").next().unwrap().contains(">agent-"),
        "email order: the agent first"
    );
    for bad in [
        "/admin/users?role=owner",
        "/admin/users?order=bogus",
        "/admin/workbenches?order=email",
    ] {
        let (status, _) = b.get(bad).await;
        assert_eq!(status, 422, "{bad}");
    }
    let (status, _) = b.get("/admin/users?cursor=%%%").await;
    assert_eq!(status, 422);
}

async fn ticket(app: &TestApp) -> String {
    let (token, _) = app.new_user().await;
    let r = app
        .post_json(
            "/api/v1/tickets",
            Some(&token),
            &json!({"subject": "Broken export", "description": "It fails"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[actix_web::test]
async fn a_kanban_card_moves_a_ticket_through_the_api_rules() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Agent).await;
    let id = ticket(&app).await;
    let (_, csrf) = b.page("/admin/tickets/kanban").await;
    let path = format!("/admin/tickets/{id}");
    let fields = |stage| {
        [
            ("csrf_token", csrf.as_str()),
            ("stage", stage),
            ("back", "kanban"),
        ]
    };
    let r = b.post(&path, &fields("closed")).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/admin/tickets/kanban");
    let (page, _) = b.page("/admin/tickets/kanban").await;
    let closed = page.split("data-stage=\"closed\"").nth(1).unwrap();
    assert!(closed.contains(&id), "the card is in the closed column");
    let r = b.post(&path, &fields("in_progress")).await;
    assert_eq!(r.status(), 409, "closed is final, as in the API");
    app.assert_verified();
}

#[actix_web::test]
async fn the_ticket_form_replies_notes_and_assigns() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Agent).await;
    let id = ticket(&app).await;
    let path = format!("/admin/tickets/{id}");
    let (_, csrf) = b.page(&path).await;
    let r = b
        .post(
            &format!("{path}/messages"),
            &[
                ("csrf_token", &*csrf),
                ("body", "We are on it"),
                ("kind", "reply"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = b
        .post(
            &format!("{path}/messages"),
            &[
                ("csrf_token", &*csrf),
                ("body", "customer is VIP"),
                ("kind", "note"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let r = b
        .post(
            &format!("{path}/messages"),
            &[("csrf_token", &*csrf), ("body", "  "), ("kind", "reply")],
        )
        .await;
    assert_eq!(r.status(), 422);
    let other = app.account(Role::User).await;
    let r = b
        .post(&path, &[("csrf_token", &*csrf), ("assignee", &other)])
        .await;
    assert_eq!(r.status(), 422, "only agents and admins take tickets");
    let agent = app.account(Role::Agent).await;
    let r = b
        .post(
            &path,
            &[
                ("csrf_token", &*csrf),
                ("assignee", &agent),
                ("priority", "urgent"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let (page, _) = b.page(&path).await;
    assert!(page.contains("We are on it"));
    assert!(page.contains("message internal") && page.contains("Internal note"));
    assert!(page.contains(&agent) && page.contains("<dd>urgent</dd>"));
    assert!(page.contains("badge met"), "the public reply met the SLA");
    app.assert_verified();
}

#[actix_web::test]
async fn settings_flip_a_toggle_that_the_next_request_follows() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Admin).await;
    let (_, csrf) = b.page("/admin/settings").await;
    let r = b
        .post(
            "/admin/settings",
            &[("csrf_token", &*csrf), ("enable_live_chat_support", "on")],
        )
        .await;
    assert_eq!(r.status(), 303);
    let features: Value = app
        .get("/api/v1/features", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(features["enable_live_chat_support"], true);
    assert_eq!(features["enable_paypal_payments"], false);
    let (page, _) = b.page("/admin/settings").await;
    assert!(page.contains("<td>enable_live_chat_support</td><td>false</td><td>true</td>"));
}

#[actix_web::test]
async fn the_dashboard_draws_four_charts_with_their_tables() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Agent).await;
    app.new_user().await;
    ticket(&app).await;
    let (page, _) = b.page("/admin/").await;
    assert_eq!(page.matches("<svg").count(), 4);
    assert_eq!(page.matches("<details class=\"sr-table\">").count(), 4);
    assert!(page.contains("Credits granted vs spent per day"));
}

#[actix_web::test]
async fn admin_pages_are_not_in_the_openapi_and_unknown_ones_are_html() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .all(|p| !p.starts_with("/admin")));
    let b = Browser::signed_in(&app, Role::Agent).await;
    let r = b
        .client
        .get(app.url("/admin/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let (status, _) = b
        .get(&format!("/admin/users/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn a_password_reset_ends_the_back_office_session() {
    let app = spawn_app().await;
    let email = app.account(Role::Agent).await;
    let b = Browser::new(&app);
    assert_eq!(b.sign_in(&email, PASSWORD).await.status(), 303);
    b.page("/admin/tickets").await;
    let r = app
        .post_json(
            "/api/v1/auth/password-reset/request",
            None,
            &json!({"email": email}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let code = crate::auth::reset_code(&app, 1).await;
    let confirm = json!({"token": code, "new_password": "a brand new password"});
    let r = app
        .post_json("/api/v1/auth/password-reset/confirm", None, &confirm)
        .await;
    assert_eq!(r.status(), 200);
    let (status, _) = b.get("/admin/tickets").await;
    assert_eq!(status, 303, "the session ended with the old password");
}

#[actix_web::test]
async fn settled_days_are_rolled_up_once_read_by_the_dashboard_and_checked_by_verify() {
    use creativeflow::services::rollups;
    use storage::rollup::{self, DayRollup, DAY_US};
    let app = spawn_app().await;
    app.new_user().await;
    let now = storage::now_us();
    let today = rollup::day_of(now);
    // Three days on, today is settled.
    let later = now + 3 * DAY_US;
    assert!(rollups::roll_up(&app.state.store, later).await.unwrap() >= 1);
    assert_eq!(
        rollups::roll_up(&app.state.store, later).await.unwrap(),
        0,
        "once"
    );
    let r: DayRollup = app.state.store.get(&rollup::key(today)).unwrap().unwrap();
    let grant = app.state.config.file.credits.signup_grant;
    assert_eq!((r.granted, r.spent, r.ledger_entries), (grant, 0, 1));
    app.assert_verified();

    // The dashboard reads stored days; verify holds each against the ledger.
    let mut forged = DayRollup::new(today - 5);
    forged.granted = 424_242;
    let mut set = storage::WriteSet::new();
    set.put(rollup::key(today - 5), &forged);
    app.state.store.write(set).await.unwrap();
    let b = Browser::signed_in(&app, Role::Agent).await;
    let (page, _) = b.page("/admin/").await;
    assert!(
        page.contains("<td>424242</td>"),
        "the chart's table shows the stored day"
    );
    let report = app.verify();
    assert!(
        report.violations.iter().any(|v| v.contains("day rollup")),
        "{:?}",
        report.violations
    );
}

#[actix_web::test]
async fn a_day_with_a_running_request_is_not_rolled_up_until_it_settles() {
    use creativeflow::services::rollups;
    use storage::rollup::{self, DayRollup, DAY_US};
    let app = spawn_app().await;
    let (token, user_id) = app.new_user().await;
    let admin = app.staff(Role::Admin).await;
    assert_eq!(
        app.admin_adjust(&admin, &user_id, 100, "topup")
            .await
            .status(),
        201
    );
    let project_id = app.project_of(&token).await;
    let body = json!({"project_id": project_id, "prompt": "A red bicycle", "format": "image_hd", "variations": 1});
    let r = app
        .post_json("/api/v1/generation/create", Some(&token), &body)
        .await;
    assert_eq!(r.status(), 202);
    // No broker here: the request stays pending, so today is not final.
    let later = storage::now_us() + 3 * DAY_US;
    let today = rollup::day_of(storage::now_us());
    rollups::roll_up(&app.state.store, later).await.unwrap();
    let stored: Option<DayRollup> = app.state.store.get(&rollup::key(today)).unwrap();
    assert!(stored.is_none(), "a day with a running request waits");
    app.assert_verified();
}

#[actix_web::test]
async fn a_stale_form_does_not_undo_a_change_made_meanwhile() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Admin).await;
    let (_, user_id) = app.new_user().await;
    let path = format!("/admin/users/{user_id}");
    let (page, csrf) = b.page(&path).await;
    // Meanwhile the tier changes (billing, another admin).
    let admin = app.staff(Role::Admin).await;
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&admin),
            &json!({"subscription_tier": "team"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let fields = [
        ("csrf_token", csrf.as_str()),
        ("name", "New Name"),
        ("name_was", &value_of(&page, "name_was")),
        ("role", "user"),
        ("role_was", "user"),
        ("tier", "free"),
        ("tier_was", "free"),
    ];
    assert_eq!(b.post(&path, &fields).await.status(), 303);
    let (page, _) = b.page(&path).await;
    assert!(
        page.contains("<dd>New Name</dd>") && page.contains("<dd>team</dd>"),
        "the tier stands"
    );
}

#[actix_web::test]
async fn one_users_ledger_pages_along_their_chain() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Agent).await;
    let admin = app.staff(Role::Admin).await;
    let (_, user_id) = app.new_user().await;
    app.new_user().await;
    for i in 0..60 {
        let r = app
            .admin_adjust(&admin, &user_id, 1, &format!("step {i}"))
            .await;
        assert_eq!(r.status(), 201);
    }
    let rows = |page: &str| {
        page.matches("<td>admin_adjustment</td>").count()
            + page.matches("<td>signup_grant</td>").count()
    };
    let (page, _) = b.page(&format!("/admin/credits?user_id={user_id}")).await;
    assert_eq!(rows(&page), 50);
    assert!(page.contains("step 59"), "newest first");
    let next = page
        .split("rel=\"next\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let (rest, _) = b.page(&next).await;
    assert_eq!(
        rows(&rest),
        11,
        "the other 10 adjustments and the signup grant"
    );
    assert!(!rest.contains("rel=\"next\""));
}

/// Posts `body` to `path` as `token` and returns the created record (201 expected).
async fn created(app: &TestApp, token: &str, path: &str, body: &Value) -> Value {
    let r = app.post_json(path, Some(token), body).await;
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

#[actix_web::test]
async fn every_form_view_shows_its_links_and_a_generation_is_cancelled_with_its_refund() {
    let app = spawn_app().await;
    let b = Browser::signed_in(&app, Role::Admin).await;
    let admin = app.staff(Role::Admin).await;
    let (token, user_id) = app.new_user().await;
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{user_id}"),
            Some(&admin),
            &json!({"subscription_tier": "pro"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.admin_adjust(&admin, &user_id, 100, "topup")
            .await
            .status(),
        201
    );
    let kit = created(
        &app,
        &token,
        "/api/v1/brand-kits",
        &json!({"name": "Acme kit", "colors": ["#ff0000"]}),
    )
    .await;
    let wb = created(
        &app,
        &token,
        "/api/v1/workbenches",
        &json!({"name": "Spring"}),
    )
    .await;
    let p = created(
        &app,
        &token,
        "/api/v1/projects",
        &json!({"name": "Posters", "workbench_id": wb["id"]}),
    )
    .await;
    let body = json!({"project_id": p["id"], "prompt": "A red bicycle", "format": "image_hd", "variations": 1});
    let g = created(&app, &token, "/api/v1/generation/create", &body).await;
    let t = created(&app, &token, "/api/v1/tickets", &json!({"subject": "Slow", "description": "Still pending", "generation_request_id": g["id"]})).await;
    let balance = app.balance(&token).await;

    let id = |v: &Value| v["id"].as_str().unwrap().to_string();
    let (page, _) = b.page(&format!("/admin/workbenches/{}", id(&wb))).await;
    assert!(page.contains("Posters"), "a workbench shows its projects");
    let (page, _) = b.page(&format!("/admin/projects/{}", id(&p))).await;
    assert!(page.contains(&format!("/admin/workbenches/{}", id(&wb))));
    let (page, _) = b.page(&format!("/admin/brand-kits/{}", id(&kit))).await;
    assert!(
        page.to_lowercase().contains("#ff0000"),
        "a kit shows its colors"
    );
    let (page, csrf) = b.page(&format!("/admin/generations/{}", id(&g))).await;
    assert!(
        page.contains("generation_charge")
            && page.contains(&t["number"].as_str().unwrap().to_string())
    );
    let (page, _) = b.page(&format!("/admin/users/{user_id}")).await;
    assert!(
        page.contains("Spring") && page.contains("Slow"),
        "a user shows workbenches and tickets"
    );
    let (page, _) = b
        .page(&format!("/admin/projects/kanban?user_id={user_id}"))
        .await;
    assert!(page.contains("Posters"));

    let r = b
        .post(
            &format!("/admin/generations/{}/cancel", id(&g)),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        app.balance(&token).await,
        balance + g["cost"].as_u64().unwrap(),
        "refunded once"
    );
    let r = b
        .post(
            &format!("/admin/generations/{}/cancel", id(&g)),
            &[("csrf_token", &csrf)],
        )
        .await;
    assert_eq!(r.status(), 303, "a second cancel changes nothing");
    assert_eq!(
        app.balance(&token).await,
        balance + g["cost"].as_u64().unwrap()
    );
    let (page, _) = b.page(&format!("/admin/generations/{}", id(&g))).await;
    assert!(page.contains("<dd>cancelled</dd>") && page.contains("generation_refund"));
    app.assert_verified();
}
