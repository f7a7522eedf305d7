use crate::helpers::{assert_error, spawn_app};
use serde_json::{json, Value};
use storage::records::Role;

#[actix_web::test]
async fn admins_and_agents_list_users_page_by_page() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let agent = app.staff(Role::Agent).await;
    for _ in 0..3 {
        app.new_user().await;
    }
    let first: Value = app
        .get("/api/v1/admin/users?limit=2", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second: Value = app
        .get(
            &format!("/api/v1/admin/users?limit=2&cursor={cursor}"),
            Some(&agent),
        )
        .await
        .json()
        .await
        .unwrap();
    let seen: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(seen.len(), 4);
    assert_eq!(unique.len(), 4);
}

#[actix_web::test]
async fn a_bad_page_limit_or_cursor_is_422() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    for q in ["limit=0", "limit=201", "limit=x", "cursor=***"] {
        let e = assert_error(
            app.get(&format!("/api/v1/admin/users?{q}"), Some(&admin))
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert!(e["error"]["details"]["field"].is_string());
    }
}

#[actix_web::test]
async fn a_user_cannot_call_admin_routes() {
    let app = spawn_app().await;
    let (token, id) = app.new_user().await;
    assert_error(
        app.get("/api/v1/admin/users", Some(&token)).await,
        403,
        "forbidden",
    )
    .await;
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{id}"),
            Some(&token),
            &json!({"subscription_tier": "enterprise"}),
        )
        .await;
    assert_error(r, 403, "forbidden").await;
    assert_error(
        app.admin_adjust(&token, &id, 1000, "self-service").await,
        403,
        "forbidden",
    )
    .await;
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["subscription_tier"], "free");
    assert_eq!(me["credit_balance"], 10);
}

#[actix_web::test]
async fn an_agent_reads_users_but_cannot_change_them() {
    let app = spawn_app().await;
    let agent = app.staff(Role::Agent).await;
    let (_, id) = app.new_user().await;
    assert_eq!(
        app.get("/api/v1/admin/users", Some(&agent)).await.status(),
        200
    );
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{id}"),
            Some(&agent),
            &json!({"role": "admin"}),
        )
        .await;
    assert_error(r, 403, "forbidden").await;
}

#[actix_web::test]
async fn an_admin_changes_tier_role_and_name() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{id}"),
            Some(&admin),
            &json!({"subscription_tier": "pro", "role": "agent", "name": " Renamed "}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["subscription_tier"], "pro");
    assert_eq!(me["role"], "agent");
    assert_eq!(me["name"], "Renamed");
}

#[actix_web::test]
async fn a_bad_patch_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let path = format!("/api/v1/admin/users/{id}");
    for (body, field) in [
        (
            json!({"subscription_tier": "platinum"}),
            "subscription_tier",
        ),
        (json!({"role": "root"}), "role"),
        (json!({"name": ""}), "name"),
        (
            json!({"subscription_tier": "pro", "credit_balance": 5}),
            "credit_balance",
        ),
    ] {
        let e = assert_error(
            app.patch_json(&path, Some(&admin), &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["error"]["details"]["field"], field);
    }
    let me: Value = app
        .get("/api/v1/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["subscription_tier"], "free");
    assert_eq!(me["role"], "user");
}

#[actix_web::test]
async fn patching_an_unknown_or_malformed_id_is_404() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let body = json!({"subscription_tier": "pro"});
    assert_error(
        app.patch_json(
            &format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7()),
            Some(&admin),
            &body,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.patch_json("/api/v1/admin/users/not-a-uuid", Some(&admin), &body)
            .await,
        404,
        "not_found",
    )
    .await;
}

#[actix_web::test]
async fn an_admin_cannot_change_their_own_role() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let me: Value = app
        .get("/api/v1/me", Some(&admin))
        .await
        .json()
        .await
        .unwrap();
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{}", me["id"].as_str().unwrap()),
            Some(&admin),
            &json!({"role": "user"}),
        )
        .await;
    assert_error(r, 409, "cannot_change_own_role").await;
}
