//! Feature toggles (SPEC §10): stored, changed at run time by admins, recorded, and seen by the
//! very next request.

use serde_json::{json, Value};
use storage::records::Role;

use crate::cli::{run, text, Server};
use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};

async fn features(app: &TestApp) -> Value {
    let r = app.get("/api/v1/features", None).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn put(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.client
        .put(app.url("/api/v1/admin/features"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[actix_web::test]
async fn an_admin_flips_a_toggle_and_the_next_request_follows_it() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    assert_eq!(
        features(&app).await,
        json!({"enable_paypal_payments": false, "enable_live_chat_support": false,
               "enable_user_template_saving": false, "enable_progressive_profiling": false})
    );
    let paypal = || {
        app.client
            .post(app.url("/payment/paypal/webhook"))
            .body("{}")
            .send()
    };
    assert_error(paypal().await.unwrap(), 404, "feature_disabled").await;
    let r = put(&app, &admin, &json!({"enable_paypal_payments": true})).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["enable_paypal_payments"], true);
    assert_eq!(body["enable_live_chat_support"], false);
    assert_eq!(features(&app).await["enable_paypal_payments"], true);
    // On now: the route exists, and says it has no webhook id configured.
    assert_error(paypal().await.unwrap(), 503, "webhook_not_configured").await;
    let r = put(&app, &admin, &json!({"enable_paypal_payments": false})).await;
    assert_eq!(r.status(), 200);
    assert_error(paypal().await.unwrap(), 404, "feature_disabled").await;
    app.assert_verified();
}

#[actix_web::test]
async fn every_change_is_recorded_newest_first_and_a_no_op_records_nothing() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    put(&app, &admin, &json!({"enable_live_chat_support": true})).await;
    put(
        &app,
        &admin,
        &json!({"enable_live_chat_support": true, "enable_progressive_profiling": true}),
    )
    .await;
    put(&app, &admin, &json!({"enable_live_chat_support": false})).await;
    let r = app
        .get("/api/v1/admin/features/history?limit=2", Some(&admin))
        .await;
    assert_eq!(r.status(), 200);
    let page: Value = r.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["name"], "enable_live_chat_support");
    assert_eq!(
        (items[0]["old"].clone(), items[0]["new"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(items[1]["name"], "enable_progressive_profiling");
    assert!(items[0]["changed_at"].as_str().unwrap().ends_with('Z'));
    let me: Value = app
        .get("/api/v1/me", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(items[0]["changed_by"], me["id"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest: Value = app
        .get(
            &format!("/api/v1/admin/features/history?cursor={cursor}"),
            Some(&admin),
        )
        .await
        .json()
        .await
        .unwrap();
    let rest = rest["items"].as_array().unwrap();
    assert_eq!(
        rest.len(),
        1,
        "the unchanged live chat toggle was not recorded again"
    );
    assert_eq!(rest[0]["name"], "enable_live_chat_support");
    app.assert_verified();
}

#[actix_web::test]
async fn only_admins_change_toggles_and_unknown_names_change_nothing() {
    let app = spawn_app().await;
    let (user, _) = app.new_user().await;
    let agent = app.staff(Role::Agent).await;
    let admin = app.staff(Role::Admin).await;
    for t in [&user, &agent] {
        assert_error(
            put(&app, t, &json!({"enable_paypal_payments": true})).await,
            403,
            "forbidden",
        )
        .await;
        assert_error(
            app.get("/api/v1/admin/features/history", Some(t)).await,
            403,
            "forbidden",
        )
        .await;
    }
    let r = app
        .client
        .put(app.url("/api/v1/admin/features"))
        .json(&json!({"enable_paypal_payments": true}))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthenticated").await;
    let r = put(
        &app,
        &admin,
        &json!({"enable_paypal_payments": true, "enable_teleport": true}),
    )
    .await;
    let body = assert_error(r, 422, "validation_failed").await;
    assert_eq!(body["error"]["details"]["field"], "enable_teleport");
    let r = put(&app, &admin, &json!({"enable_paypal_payments": "yes"})).await;
    assert_error(r, 422, "validation_failed").await;
    assert_eq!(features(&app).await["enable_paypal_payments"], false);
}

#[actix_web::test]
async fn the_environment_gives_a_toggle_only_until_an_admin_sets_it() {
    let app = spawn_app_with(&[("CREATIVEFLOW_ENABLE_LIVE_CHAT_SUPPORT", "true")]).await;
    let admin = app.staff(Role::Admin).await;
    assert_eq!(features(&app).await["enable_live_chat_support"], true);
    put(&app, &admin, &json!({"enable_live_chat_support": false})).await;
    assert_eq!(features(&app).await["enable_live_chat_support"], false);
    let history: Value = app
        .get("/api/v1/admin/features/history", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["items"][0]["old"], true,
        "the old value was the environment's"
    );
}

#[actix_web::test]
async fn toggles_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(
        dir.path(),
        &[
            "user",
            "create",
            "--email",
            "toggles@example.com",
            "--password",
            "a long admin password",
            "--role",
            "admin",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut server = Server::start(dir.path()).await;
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"email": "toggles@example.com", "password": "a long admin password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let r = client
        .put(format!("{}/api/v1/admin/features", server.base))
        .bearer_auth(token)
        .json(&json!({"enable_user_template_saving": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.terminate();
    let server = Server::start(dir.path()).await;
    let now: Value = client
        .get(format!("{}/api/v1/features", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["enable_user_template_saving"], true);
}
