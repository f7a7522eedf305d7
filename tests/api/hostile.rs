//! Requests as an attacker would send them (issue 9): each answers with the SPEC's envelope and
//! changes nothing it should not.

use serde_json::Value;
use storage::records::Role;

use crate::helpers::{assert_error, spawn_app};

async fn raw_post(
    app: &crate::helpers::TestApp,
    path: &str,
    token: &str,
    body: &'static str,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request")
}

#[actix_web::test]
async fn data_after_the_json_body_is_malformed_and_changes_nothing() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let r = raw_post(
        &app,
        "/api/v1/workbenches",
        &token,
        r#"{"name":"first"}{"name":"second"} <garbage>"#,
    )
    .await;
    assert_error(r, 400, "malformed_json").await;
    let r = raw_post(
        &app,
        "/api/v1/workbenches",
        &token,
        r#"{"name":"first"} xyz"#,
    )
    .await;
    assert_error(r, 400, "malformed_json").await;
    let listed: Value = app
        .get("/api/v1/workbenches", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    // Whitespace after the value is fine.
    let r = raw_post(
        &app,
        "/api/v1/workbenches",
        &token,
        "{\"name\":\"ok\"}\n\t ",
    )
    .await;
    assert_eq!(r.status(), 201);

    let admin = app.staff(Role::Admin).await;
    let (user_token, user) = app.new_user().await;
    let r = app
        .client
        .post(app.url(&format!("/api/v1/admin/users/{user}/credits")))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(r#"{"amount":1,"description":"x"} xyz"#)
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "malformed_json").await;
    assert_eq!(app.balance(&user_token).await, 10);
    app.assert_verified();
}

#[actix_web::test]
async fn a_forged_ledger_cursor_is_422_whether_or_not_the_entry_exists() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    for forged in [
        creativeflow::extract::encode_cursor(uuid::Uuid::now_v7().as_bytes()),
        creativeflow::extract::encode_cursor(b"short"),
        "!!not-base64!!".to_string(),
    ] {
        let r = app
            .get(&format!("/api/v1/credits?cursor={forged}"), Some(&token))
            .await;
        let body = assert_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "cursor", "{forged}");
    }
    // Every paginated route refuses a cursor that is not one of its own.
    for path in [
        "/api/v1/workbenches",
        "/api/v1/projects",
        "/api/v1/brand-kits",
        "/api/v1/generation",
        "/api/v1/invoices",
    ] {
        let forged = creativeflow::extract::encode_cursor(uuid::Uuid::now_v7().as_bytes());
        let r = app
            .get(&format!("{path}?cursor={forged}"), Some(&token))
            .await;
        let body = assert_error(r, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "cursor", "{path}");
    }
}
