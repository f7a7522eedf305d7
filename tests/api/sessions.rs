//! Sessions, passwords and the limits around them (issue 9, items 1–5).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};
use storage::records::{TokenOfUser, UserRecord};

use crate::auth::reset_code;
use crate::helpers::{
    assert_error, spawn_app, spawn_app_with_config, unique_email, TestApp, PASSWORD,
};

fn user_record(app: &TestApp, id: &str) -> UserRecord {
    app.state
        .store
        .get::<UserRecord>(&storage::keys::user(uuid::Uuid::parse_str(id).unwrap()))
        .unwrap()
        .unwrap()
}

async fn request_reset(app: &TestApp, email: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset/request",
        None,
        &json!({"email": email}),
    )
    .await
}

async fn confirm_reset(app: &TestApp, code: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/password-reset/confirm",
        None,
        &json!({"token": code, "new_password": password}),
    )
    .await
}

#[actix_web::test]
async fn a_reset_ends_every_session_however_many_there_are() {
    let app = spawn_app().await;
    let email = unique_email("many");
    let body: Value = app.signup(&email).await.json().await.unwrap();
    let id = body["user"]["id"].as_str().unwrap().to_string();
    let user = user_record(&app, &id);
    // 1,100 sessions (issued directly: the point is their number, not 1,100 password checks).
    let issues = (0..1100).map(|_| {
        creativeflow::services::users::issue_token(&app.state.store, &user, 3_600_000_000, 100_000)
    });
    let tokens: Vec<String> = futures_util::future::join_all(issues)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        app.get("/api/v1/me", Some(&tokens[1099])).await.status(),
        200
    );
    request_reset(&app, &email).await;
    let code = reset_code(&app, 1).await;
    assert_eq!(
        confirm_reset(&app, &code, "a brand new password")
            .await
            .status(),
        200
    );
    for t in tokens.iter().step_by(37).chain([&tokens[0], &tokens[1099]]) {
        assert_error(app.get("/api/v1/me", Some(t)).await, 401, "unauthenticated").await;
    }
    app.assert_verified();
}

#[actix_web::test]
async fn a_login_racing_a_reset_gets_a_token_that_never_works() {
    let app = spawn_app().await;
    let email = unique_email("race");
    let body: Value = app.signup(&email).await.json().await.unwrap();
    let id = body["user"]["id"].as_str().unwrap().to_string();
    // The login read the user (and checked the old password) before the reset committed...
    let before_reset = user_record(&app, &id);
    request_reset(&app, &email).await;
    let code = reset_code(&app, 1).await;
    assert_eq!(
        confirm_reset(&app, &code, "a brand new password")
            .await
            .status(),
        200
    );
    // ...and issues its token after.
    let late = creativeflow::services::users::issue_token(
        &app.state.store,
        &before_reset,
        3_600_000_000,
        50,
    )
    .await
    .unwrap();
    assert_error(
        app.get("/api/v1/me", Some(&late)).await,
        401,
        "unauthenticated",
    )
    .await;
}

#[actix_web::test]
async fn live_sessions_per_user_are_bounded_oldest_revoked_first() {
    let (app, _dir) = spawn_app_with_config("[auth]\nsessions_per_user_max = 3\n").await;
    let email = unique_email("bound");
    app.signup(&email).await;
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let r: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
        tokens.push(r["token"].as_str().unwrap().to_string());
    }
    for t in &tokens[..2] {
        assert_error(app.get("/api/v1/me", Some(t)).await, 401, "unauthenticated").await;
    }
    for t in &tokens[2..] {
        assert_eq!(app.get("/api/v1/me", Some(t)).await.status(), 200);
    }
    let user = uuid::Uuid::parse_str(
        app.get("/api/v1/me", Some(&tokens[4]))
            .await
            .json::<Value>()
            .await
            .unwrap()["id"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let live = app
        .state
        .store
        .scan::<TokenOfUser>(
            &storage::keys::user(user),
            None,
            storage::Direction::Forward,
            100,
        )
        .unwrap();
    assert_eq!(live.len(), 3);
    app.assert_verified();
}

#[actix_web::test]
async fn bogus_reset_confirms_cost_no_password_hash_and_the_money_path_keeps_answering() {
    let (app, _dir) = spawn_app_with_config(crate::helpers::FLOOD_CONFIG).await;
    let admin = app.staff(storage::records::Role::Admin).await;
    let (token, user) = app.new_user().await;
    let ran_before = app.state.hashes.ran_total.load(Relaxed);
    let codes: Vec<String> = (0..300)
        .map(|i| {
            if i % 2 == 0 {
                format!("{}.bogus{i}", uuid::Uuid::now_v7())
            } else {
                format!("nonsense-{i}")
            }
        })
        .collect();
    let flood = codes
        .iter()
        .map(|code| confirm_reset(&app, code, "a long enough password"));
    let deduct = app.admin_adjust(&admin, &user, -3, "during the flood");
    let (answers, deducted) =
        futures_util::future::join(futures_util::future::join_all(flood), deduct).await;
    for r in answers {
        assert_eq!(r.status(), 422);
    }
    assert_eq!(deducted.status(), 201);
    assert_eq!(app.state.hashes.ran_total.load(Relaxed), ran_before);
    assert_eq!(app.balance(&token).await, 7);
}

#[actix_web::test]
async fn parallel_wrong_passwords_get_exactly_the_limit_of_401s() {
    let app = spawn_app().await;
    let email = unique_email("guess");
    app.signup(&email).await;
    let passwords: Vec<String> = (0..60).map(|i| format!("wrong password {i}")).collect();
    let guesses = passwords.iter().map(|p| app.login(&email, p));
    let answers = futures_util::future::join_all(guesses).await;
    let unauthorized = answers.iter().filter(|r| r.status() == 401).count();
    let limited = answers.iter().filter(|r| r.status() == 429).count();
    assert_eq!(unauthorized, 5, "the per-account limit");
    assert_eq!(limited, 55);
    assert!(answers
        .iter()
        .filter(|r| r.status() == 429)
        .all(|r| r.headers().contains_key("retry-after")));
}

#[actix_web::test]
async fn hashing_beyond_the_pool_is_503_with_retry_after_not_unbounded() {
    let (app, _dir) = spawn_app_with_config(
        "[auth]\npassword_hashes_running_max = 1\npassword_hashes_admitted_max = 2\n",
    )
    .await;
    let signups = (0..12).map(|_| app.signup_raw(&unique_email("pool")));
    let answers = futures_util::future::join_all(signups).await;
    let created = answers.iter().filter(|r| r.status() == 201).count();
    let overloaded: Vec<_> = answers.iter().filter(|r| r.status() == 503).collect();
    assert_eq!(created + overloaded.len(), 12);
    assert!(!overloaded.is_empty(), "some were refused");
    assert!(created >= 2, "the pool still served");
    assert!(overloaded
        .iter()
        .all(|r| r.headers().contains_key("retry-after")));
    assert!(app.state.hashes.refused_total.load(Relaxed) >= overloaded.len() as u64);
    app.assert_verified();
}

#[actix_web::test]
async fn a_new_reset_request_replaces_the_live_code() {
    let app = spawn_app().await;
    let email = unique_email("replace");
    app.signup(&email).await;
    request_reset(&app, &email).await;
    let first = reset_code(&app, 1).await;
    request_reset(&app, &email).await;
    let second = reset_code(&app, 2).await;
    assert_ne!(first, second);
    assert_error(
        confirm_reset(&app, &first, "a brand new password").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(
        confirm_reset(&app, &second, "a brand new password")
            .await
            .status(),
        200
    );
    app.assert_verified();
}

#[actix_web::test]
async fn reset_requests_are_limited_alike_for_known_and_unknown_emails() {
    let (app, _dir) = spawn_app_with_config(
        "[auth]\nreset_requests_per_email_max = 2\nreset_requests_per_ip_max = 100\n",
    )
    .await;
    let known = unique_email("known");
    app.signup(&known).await;
    let unknown = unique_email("unknown");
    for email in [&known, &unknown] {
        for _ in 0..2 {
            assert_eq!(request_reset(&app, email).await.status(), 202);
        }
        let r = request_reset(&app, email).await;
        assert!(r.headers().contains_key("retry-after"));
        assert_error(r, 429, "rate_limited").await;
    }
    // Two codes were mailed to the known address, none anywhere else.
    reset_code(&app, 2).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(app.mailer.sent.lock().len(), 2);
}

#[actix_web::test]
async fn signups_per_client_ip_are_limited() {
    let (app, _dir) = spawn_app_with_config("[auth]\nsignups_per_ip_max = 3\n").await;
    for _ in 0..3 {
        assert_eq!(app.signup(&unique_email("farm")).await.status(), 201);
    }
    let r = app.signup(&unique_email("farm")).await;
    assert_error(r, 429, "rate_limited").await;
}
