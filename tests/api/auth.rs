use crate::helpers::{assert_error, spawn_app, spawn_app_with, unique_email, PASSWORD};
use serde_json::{json, Value};

#[actix_web::test]
async fn signup_creates_a_free_user_with_the_signup_grant_in_the_ledger() {
    let app = spawn_app().await;
    let email = unique_email("ann");
    let r = app.signup(&email.to_uppercase()).await;
    assert_eq!(r.status(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["email"], email);
    assert_eq!(body["user"]["subscription_tier"], "free");
    assert_eq!(body["user"]["role"], "user");
    assert_eq!(body["user"]["credit_balance"], 10);
    let token = body["token"].as_str().unwrap();
    let credits: Value = app
        .get("/api/v1/credits", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(credits["balance"], 10);
    assert_eq!(credits["transactions"][0]["kind"], "signup_grant");
    assert_eq!(credits["transactions"][0]["amount"], 10);
    assert_eq!(credits["transactions"][0]["balance_after"], 10);
    app.assert_verified();
}

#[actix_web::test]
async fn the_signup_grant_follows_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cf.toml");
    std::fs::write(&file, "[credits]\nsignup_grant = 25\n").unwrap();
    let app = spawn_app_with(&[("CREATIVEFLOW_CONFIG", file.to_str().unwrap())]).await;
    let r: Value = app.signup(&unique_email("g")).await.json().await.unwrap();
    assert_eq!(r["user"]["credit_balance"], 25);
}

#[actix_web::test]
async fn signup_with_a_taken_email_in_another_case_is_409_and_changes_nothing() {
    let app = spawn_app().await;
    let email = unique_email("dup");
    assert_eq!(app.signup(&email).await.status(), 201);
    let users_before = app.state.store.count(storage::Table::Users).unwrap();
    assert_error(app.signup(&email.to_uppercase()).await, 409, "email_taken").await;
    assert_eq!(
        app.state.store.count(storage::Table::Users).unwrap(),
        users_before
    );
}

#[actix_web::test]
async fn concurrent_signups_with_one_email_create_exactly_one_user() {
    let app = spawn_app().await;
    let email = unique_email("race");
    let results = futures_util::future::join_all((0..8).map(|_| app.signup(&email))).await;
    let created = results.iter().filter(|r| r.status() == 201).count();
    assert_eq!(created, 1);
    assert!(results
        .iter()
        .all(|r| r.status() == 201 || r.status() == 409));
    app.assert_verified();
}

#[actix_web::test]
async fn bad_signup_bodies_are_refused_with_the_field_named_and_change_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"email": "a@example.com", "password": "short", "name": "A"}),
            "password",
        ),
        (
            json!({"email": "not-an-email", "password": PASSWORD, "name": "A"}),
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "name": "  "}),
            "name",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD}),
            "name",
        ),
        (
            json!({"email": "a@example.com", "password": PASSWORD, "name": "A", "role": "admin"}),
            "role",
        ),
        (
            json!({"email": 5, "password": PASSWORD, "name": "A"}),
            "email",
        ),
    ];
    for (body, field) in cases {
        let r = app.post_json("/api/v1/auth/signup", None, &body).await;
        let e = assert_error(r, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(app.state.store.count(storage::Table::Users).unwrap(), 0);
}

#[actix_web::test]
async fn malformed_json_is_400_wrong_content_type_415_and_a_huge_body_413() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/auth/signup");
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "malformed_json").await;
    let r = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_error(r, 415, "unsupported_media_type").await;
    let huge = format!("{{\"email\":\"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_error(r, 413, "payload_too_large").await;
    assert_eq!(app.state.store.count(storage::Table::Users).unwrap(), 0);
}

#[actix_web::test]
async fn login_gives_a_token_that_authenticates_me() {
    let app = spawn_app().await;
    let email = unique_email("login");
    app.signup(&email).await;
    let r = app.login(&email, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], email);
    assert_eq!(me["credit_balance"], 10);
}

#[actix_web::test]
async fn wrong_password_and_unknown_email_are_the_same_401() {
    let app = spawn_app().await;
    let email = unique_email("pw");
    app.signup(&email).await;
    assert_error(
        app.login(&email, "wrong password!").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_error(
        app.login(&unique_email("nobody"), PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[actix_web::test]
async fn repeated_failed_logins_are_rate_limited_even_for_the_right_password() {
    let app = spawn_app().await;
    let email = unique_email("brute");
    app.signup(&email).await;
    for _ in 0..5 {
        assert_eq!(app.login(&email, "wrong password!").await.status(), 401);
    }
    let r = app.login(&email, PASSWORD).await;
    assert!(r.headers().get("retry-after").is_some());
    assert_error(r, 429, "rate_limited").await;
}

#[actix_web::test]
async fn me_without_a_token_or_with_a_bad_one_is_401() {
    let app = spawn_app().await;
    assert_error(app.get("/api/v1/me", None).await, 401, "unauthenticated").await;
    assert_error(
        app.get("/api/v1/me", Some("nonsense")).await,
        401,
        "unauthenticated",
    )
    .await;
}

#[actix_web::test]
async fn logout_revokes_the_token() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    // Used first, so the node holds the session in its read cache when it is revoked.
    assert_eq!(app.get("/api/v1/me", Some(&token)).await.status(), 200);
    assert_eq!(app.logout(&token).await.status(), 204);
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        401,
        "unauthenticated",
    )
    .await;
    app.assert_verified();
}

/// The code of the `nth` mail (1-based): the mail leaves after the request was answered, so
/// this waits for it.
pub async fn reset_code(app: &crate::helpers::TestApp, nth: usize) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(mail) = app.mailer.sent.lock().get(nth - 1) {
            return mail.body.rsplit(' ').next().unwrap().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mail {nth} was never sent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[actix_web::test]
async fn password_reset_sets_a_new_password_once_and_signs_out_every_session() {
    let app = spawn_app().await;
    let email = unique_email("reset");
    let old_token = app.signup(&email).await.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Used first, so the node holds the session and the user in its read cache.
    assert_eq!(app.get("/api/v1/me", Some(&old_token)).await.status(), 200);
    let r = app
        .post_json(
            "/api/v1/auth/password-reset/request",
            None,
            &json!({"email": email}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let code = reset_code(&app, 1).await;
    let new_password = "a brand new password";
    let confirm = json!({"token": code, "new_password": new_password});
    let r = app
        .post_json("/api/v1/auth/password-reset/confirm", None, &confirm)
        .await;
    assert_eq!(r.status(), 200);
    assert_error(
        app.get("/api/v1/me", Some(&old_token)).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(app.login(&email, PASSWORD).await.status(), 401);
    assert_eq!(app.login(&email, new_password).await.status(), 200);
    let again = json!({"token": code, "new_password": "yet another password"});
    let e = assert_error(
        app.post_json("/api/v1/auth/password-reset/confirm", None, &again)
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "token");
    app.assert_verified();
}

#[actix_web::test]
async fn a_reset_code_issued_before_a_password_change_stops_working() {
    let app = spawn_app().await;
    let email = unique_email("two");
    app.signup(&email).await;
    app.post_json(
        "/api/v1/auth/password-reset/request",
        None,
        &json!({"email": email}),
    )
    .await;
    let first = reset_code(&app, 1).await;
    app.post_json(
        "/api/v1/auth/password-reset/request",
        None,
        &json!({"email": email}),
    )
    .await;
    let second = reset_code(&app, 2).await;
    let ok = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": second, "new_password": "new password one"}),
        )
        .await;
    assert_eq!(ok.status(), 200);
    let stale = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": first, "new_password": "new password two"}),
        )
        .await;
    assert_error(stale, 422, "validation_failed").await;
}

#[actix_web::test]
async fn a_reset_for_an_unknown_email_answers_202_and_sends_nothing() {
    let app = spawn_app().await;
    let r = app
        .post_json(
            "/api/v1/auth/password-reset/request",
            None,
            &json!({"email": unique_email("ghost")}),
        )
        .await;
    assert_eq!(r.status(), 202);
    assert!(app.mailer.sent.lock().is_empty());
}

#[actix_web::test]
async fn a_weak_new_password_is_refused_and_the_code_stays_usable() {
    let app = spawn_app().await;
    let email = unique_email("weak");
    app.signup(&email).await;
    app.post_json(
        "/api/v1/auth/password-reset/request",
        None,
        &json!({"email": email}),
    )
    .await;
    let code = reset_code(&app, 1).await;
    let r = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": code, "new_password": "short"}),
        )
        .await;
    let e = assert_error(r, 422, "validation_failed").await;
    assert_eq!(e["error"]["details"]["field"], "new_password");
    let r = app
        .post_json(
            "/api/v1/auth/password-reset/confirm",
            None,
            &json!({"token": code, "new_password": "long enough now"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn expired_sessions_are_refused_and_purged() {
    use storage::keys;
    use storage::records::{TokenOfUser, TokenRecord};
    let app = spawn_app().await;
    let (token, id) = app.new_user().await;
    let user = uuid::Uuid::parse_str(&id).unwrap();
    let hash = creativeflow::auth::hash_token(&token);
    let mut set = storage::WriteSet::new();
    set.put(
        keys::token(&hash),
        &TokenRecord {
            user_id: user,
            credentials_version: 0,
            created_at_us: 0,
            expires_at_us: 1,
        },
    );
    app.state.store.write(set).await.unwrap();
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        401,
        "unauthenticated",
    )
    .await;
    let purged = creativeflow::services::users::purge_expired_tokens(&app.state.store, 100)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert!(app
        .state
        .store
        .get::<TokenRecord>(&keys::token(&hash))
        .unwrap()
        .is_none());
    assert!(app
        .state
        .store
        .get::<TokenOfUser>(&keys::token_by_user(user, &hash))
        .unwrap()
        .is_none());
    app.assert_verified();
}
