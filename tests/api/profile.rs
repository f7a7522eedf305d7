//! Progressive profiling (SPEC §10): one unanswered question at a time, answers checked,
//! re-answering replaces, `/me` shows them, gated by its toggle.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with_config, TestApp};

async fn enable(app: &TestApp) {
    app.set_features(&json!({"enable_progressive_profiling": true}))
        .await;
}

async fn answer(app: &TestApp, token: &str, key: &str, value: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/me/profile/answers",
        Some(token),
        &json!({"key": key, "value": value}),
    )
    .await
}

#[actix_web::test]
async fn questions_come_one_at_a_time_until_all_are_answered() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    assert_error(
        app.get("/api/v1/me/profile/next-question", Some(&token))
            .await,
        403,
        "feature_disabled",
    )
    .await;
    enable(&app).await;
    let mut seen = Vec::new();
    loop {
        let r = app
            .get("/api/v1/me/profile/next-question", Some(&token))
            .await;
        if r.status() == 204 {
            break;
        }
        assert_eq!(r.status(), 200);
        let q: Value = r.json().await.unwrap();
        let key = q["key"].as_str().unwrap().to_string();
        assert!(!seen.contains(&key), "{key} asked twice");
        let choice = q["choices"][0].as_str().unwrap().to_string();
        assert_eq!(answer(&app, &token, &key, &choice).await.status(), 200);
        seen.push(key);
    }
    assert_eq!(seen, ["role", "company_size", "use_case", "industry"]);
    // Re-answering replaces; free text where allowed.
    assert_eq!(
        answer(&app, &token, "role", "Head of growth")
            .await
            .status(),
        200
    );
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["profile"]["role"], "Head of growth");
    assert_eq!(me["profile"]["company_size"], "1");
    app.assert_verified();
}

#[actix_web::test]
async fn bad_answers_are_refused_naming_the_field() {
    let app = spawn_app().await;
    enable(&app).await;
    let (token, _) = app.new_user().await;
    let e = assert_error(
        answer(&app, &token, "shoe_size", "42").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "key");
    // company_size takes only its choices.
    let e = assert_error(
        answer(&app, &token, "company_size", "huge").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "value");
    let e = assert_error(
        answer(&app, &token, "role", "\u{202E}boss").await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(e["error"]["details"]["field"], "value");
    let long = "x".repeat(101);
    assert_error(
        answer(&app, &token, "role", &long).await,
        422,
        "validation_failed",
    )
    .await;
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["profile"], json!({}));
}

#[actix_web::test]
async fn the_questions_are_configuration() {
    let (app, _dir) = spawn_app_with_config(
        "[profiling]\nquestions = [{key = \"team\", text = \"Team size?\", choices = [\"solo\", \"team\"]}]\n",
    )
    .await;
    enable(&app).await;
    let (token, _) = app.new_user().await;
    let q: Value = app
        .get("/api/v1/me/profile/next-question", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        q,
        json!({"key": "team", "text": "Team size?", "choices": ["solo", "team"]})
    );
    assert_eq!(answer(&app, &token, "team", "solo").await.status(), 200);
    assert_eq!(
        app.get("/api/v1/me/profile/next-question", Some(&token))
            .await
            .status(),
        204
    );
}
