//! Saved generation templates (SPEC §10): gated by their toggle, the owner's own, bounded, and
//! usable by `template_id` on a create.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, TestApp};

async fn enable(app: &TestApp, on: bool) {
    app.set_features(&json!({"enable_user_template_saving": on}))
        .await;
}

fn template(name: &str) -> Value {
    json!({"name": name, "prompt": "A bold poster", "format": "banner", "variations": 2, "params": {"style": "flat"}})
}

#[actix_web::test]
async fn templates_are_off_until_enabled_and_then_crud_works() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let r = app
        .post_json("/api/v1/templates", Some(&token), &template("T"))
        .await;
    assert_error(r, 403, "feature_disabled").await;
    enable(&app, true).await;
    let r = app
        .post_json("/api/v1/templates", Some(&token), &template("T"))
        .await;
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["variations"], 2);
    assert_eq!(t["params"], json!({"style": "flat"}));
    let id = t["id"].as_str().unwrap();
    let r = app
        .get(&format!("/api/v1/templates/{id}"), Some(&token))
        .await;
    assert_eq!(r.status(), 200);
    let r = app
        .patch_json(
            &format!("/api/v1/templates/{id}"),
            Some(&token),
            &json!({"name": "Renamed", "variations": 3}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        (
            t["name"].clone(),
            t["variations"].clone(),
            t["prompt"].clone()
        ),
        (json!("Renamed"), json!(3), json!("A bold poster"))
    );
    let listed: Value = app
        .get("/api/v1/templates", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    // Off again: every route says so at once.
    enable(&app, false).await;
    assert_error(
        app.get(&format!("/api/v1/templates/{id}"), Some(&token))
            .await,
        403,
        "feature_disabled",
    )
    .await;
    enable(&app, true).await;
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/templates/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        app.get(&format!("/api/v1/templates/{id}"), Some(&token))
            .await,
        404,
        "not_found",
    )
    .await;
    app.assert_verified();
}

#[actix_web::test]
async fn bad_templates_are_refused_naming_the_field_and_change_nothing() {
    let app = spawn_app().await;
    enable(&app, true).await;
    let (token, _) = app.new_user().await;
    for (body, field) in [
        (
            json!({"name": "", "prompt": "p", "format": "banner"}),
            "name",
        ),
        (
            json!({"name": "T", "prompt": "  ", "format": "banner"}),
            "prompt",
        ),
        (
            json!({"name": "T", "prompt": "p", "format": "hologram"}),
            "format",
        ),
        (
            json!({"name": "T", "prompt": "p", "format": "banner", "variations": 9}),
            "variations",
        ),
        (
            json!({"name": "T", "prompt": "p", "format": "banner", "params": [1]}),
            "params",
        ),
        (
            json!({"name": "T", "prompt": "p", "format": "banner", "params": {"x": "y".repeat(5000)}}),
            "params",
        ),
    ] {
        let r = app
            .post_json("/api/v1/templates", Some(&token), &body)
            .await;
        let e = assert_error(r, 422, "validation_failed").await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    let listed: Value = app
        .get("/api/v1/templates", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["items"].as_array().unwrap().is_empty());
}

#[actix_web::test]
async fn another_users_template_is_404_and_the_bound_is_200_a_user() {
    let app = spawn_app().await;
    enable(&app, true).await;
    let (alice, _) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    let t: Value = app
        .post_json("/api/v1/templates", Some(&alice), &template("A"))
        .await
        .json()
        .await
        .unwrap();
    let id = t["id"].as_str().unwrap();
    assert_error(
        app.get(&format!("/api/v1/templates/{id}"), Some(&bob))
            .await,
        404,
        "not_found",
    )
    .await;
    let r = app
        .patch_json(
            &format!("/api/v1/templates/{id}"),
            Some(&bob),
            &json!({"name": "mine"}),
        )
        .await;
    assert_error(r, 404, "not_found").await;
    for i in 1..200 {
        let r = app
            .post_json(
                "/api/v1/templates",
                Some(&alice),
                &template(&format!("A{i}")),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let r = app
        .post_json("/api/v1/templates", Some(&alice), &template("one too many"))
        .await;
    assert_error(r, 409, "limit_reached").await;
    app.assert_verified();
}

#[actix_web::test]
async fn a_create_with_template_id_takes_what_the_body_leaves_out() {
    let app = spawn_app().await;
    enable(&app, true).await;
    let (token, _) = app.new_user().await;
    let (other, _) = app.new_user().await;
    let project_id = app.project_of(&token).await;
    let t: Value = app
        .post_json("/api/v1/templates", Some(&token), &template("T"))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .post_json(
            "/api/v1/generation/create",
            Some(&token),
            &json!({"project_id": project_id, "template_id": t["id"], "variations": 1}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        created["cost"], 1,
        "banner x1: the body's variations win over the template's 2"
    );
    let g: Value = app
        .get(
            &format!(
                "/api/v1/generation/{}/status",
                created["id"].as_str().unwrap()
            ),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["prompt"], "A bold poster");
    assert_eq!(g["format"], "banner");
    // Someone else's template, or none, is 422 on template_id.
    let theirs: Value = app
        .post_json("/api/v1/templates", Some(&other), &template("O"))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .post_json(
            "/api/v1/generation/create",
            Some(&token),
            &json!({"project_id": project_id, "template_id": theirs["id"]}),
        )
        .await;
    let e = assert_error(r, 422, "validation_failed").await;
    assert_eq!(e["error"]["details"]["field"], "template_id");
    // Without a template, prompt and format stay required.
    let r = app
        .post_json(
            "/api/v1/generation/create",
            Some(&token),
            &json!({"project_id": project_id, "format": "banner"}),
        )
        .await;
    let e = assert_error(r, 422, "validation_failed").await;
    assert_eq!(e["error"]["details"]["field"], "prompt");
    app.assert_verified();
}
