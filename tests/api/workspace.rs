use crate::helpers::{assert_error, spawn_app, TestApp};
use serde_json::{json, Value};
use storage::records::Role;
use storage::Table;

async fn created(r: reqwest::Response) -> Value {
    assert_eq!(r.status(), 201, "expected 201");
    r.json().await.unwrap()
}

async fn workbench(app: &TestApp, token: &str, name: &str) -> Value {
    created(
        app.post_json("/api/v1/workbenches", Some(token), &json!({"name": name}))
            .await,
    )
    .await
}

async fn project(app: &TestApp, token: &str, workbench_id: &str) -> Value {
    created(
        app.post_json(
            "/api/v1/projects",
            Some(token),
            &json!({"name": "Launch", "workbench_id": workbench_id}),
        )
        .await,
    )
    .await
}

async fn delete(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// A user on the pro tier (brand kits need it).
async fn pro_user(app: &TestApp) -> (String, String) {
    let admin = app.staff(Role::Admin).await;
    let (token, id) = app.new_user().await;
    let r = app
        .patch_json(
            &format!("/api/v1/admin/users/{id}"),
            Some(&admin),
            &json!({"subscription_tier": "pro"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    (token, id)
}

async fn kit(app: &TestApp, token: &str, body: Value) -> Value {
    created(
        app.post_json("/api/v1/brand-kits", Some(token), &body)
            .await,
    )
    .await
}

#[actix_web::test]
async fn a_workbench_is_created_read_listed_renamed_and_deleted() {
    let app = spawn_app().await;
    let (token, user_id) = app.new_user().await;
    let wb = workbench(&app, &token, "  Spring campaign ").await;
    assert_eq!(wb["name"], "Spring campaign");
    assert_eq!(wb["user_id"], user_id);
    assert_eq!(wb["project_ids"], json!([]));
    let id = wb["id"].as_str().unwrap();
    let got: Value = app
        .get(&format!("/api/v1/workbenches/{id}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], id);
    let list: Value = app
        .get("/api/v1/workbenches", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let r = app
        .patch_json(
            &format!("/api/v1/workbenches/{id}"),
            Some(&token),
            &json!({"name": "Summer"}),
        )
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "Summer");
    assert_eq!(
        delete(&app, &format!("/api/v1/workbenches/{id}"), &token)
            .await
            .status(),
        204
    );
    assert_error(
        app.get(&format!("/api/v1/workbenches/{id}"), Some(&token))
            .await,
        404,
        "not_found",
    )
    .await;
    app.assert_verified();
}

#[actix_web::test]
async fn bad_workbench_bodies_are_422_and_change_nothing() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({}), "name"),
        (
            json!({"name": "A", "user_id": uuid::Uuid::now_v7()}),
            "user_id",
        ),
        (
            json!({"name": "A", "default_brand_kit_id": uuid::Uuid::now_v7()}),
            "default_brand_kit_id",
        ),
        (
            json!({"name": "A", "default_brand_kit_id": "nope"}),
            "default_brand_kit_id",
        ),
    ] {
        let e = assert_error(
            app.post_json("/api/v1/workbenches", Some(&token), &body)
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(app.state.store.count(Table::Workbenches).unwrap(), 0);
}

#[actix_web::test]
async fn a_project_lives_in_its_owners_workbench_and_takes_the_owner_from_it() {
    let app = spawn_app().await;
    let (alice, alice_id) = app.new_user().await;
    let (bob, _) = app.new_user().await;
    let wb = workbench(&app, &alice, "Alice's").await;
    let wb_id = wb["id"].as_str().unwrap();
    let p = project(&app, &alice, wb_id).await;
    assert_eq!(p["user_id"], alice_id);
    assert_eq!(p["workbench_id"], wb_id);
    // Bob cannot create a project in Alice's workbench, nor set its owner.
    let r = app
        .post_json(
            "/api/v1/projects",
            Some(&bob),
            &json!({"name": "Sneaky", "workbench_id": wb_id}),
        )
        .await;
    let e = assert_error(r, 422, "validation_failed").await;
    assert_eq!(e["error"]["details"]["field"], "workbench_id");
    let r = app
        .post_json(
            "/api/v1/projects",
            Some(&alice),
            &json!({"name": "X", "workbench_id": wb_id, "user_id": alice_id}),
        )
        .await;
    assert_error(r, 422, "validation_failed").await;
    let wb_now: Value = app
        .get(&format!("/api/v1/workbenches/{wb_id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wb_now["project_ids"], json!([p["id"]]));
    let filtered: Value = app
        .get(
            &format!("/api/v1/projects?workbench_id={wb_id}"),
            Some(&alice),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert_error(
        app.get("/api/v1/projects?workbench_id=zzz", Some(&alice))
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_error(
        app.get("/api/v1/projects?colour=red", Some(&alice)).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(app.state.store.count(Table::Projects).unwrap(), 1);
    app.assert_verified();
}

#[actix_web::test]
async fn another_users_records_answer_404_on_every_route_and_stay_unchanged() {
    let app = spawn_app().await;
    let (alice, _) = pro_user(&app).await;
    let (bob, _) = app.new_user().await;
    let wb = workbench(&app, &alice, "Private").await;
    let wb_id = wb["id"].as_str().unwrap().to_string();
    let p = project(&app, &alice, &wb_id).await;
    let p_id = p["id"].as_str().unwrap().to_string();
    let k = kit(&app, &alice, json!({"name": "Acme"})).await;
    let k_id = k["id"].as_str().unwrap().to_string();
    let a = created(
        app.post_json(
            &format!("/api/v1/projects/{p_id}/assets"),
            Some(&alice),
            &json!({"kind": "image", "path": "u/a.png", "mime": "image/png", "size": 10}),
        )
        .await,
    )
    .await;
    let a_id = a["id"].as_str().unwrap().to_string();

    for path in [
        format!("/api/v1/workbenches/{wb_id}"),
        format!("/api/v1/projects/{p_id}"),
        format!("/api/v1/brand-kits/{k_id}"),
        format!("/api/v1/projects/{p_id}/assets"),
        format!("/api/v1/projects?workbench_id={wb_id}"),
    ] {
        assert_error(app.get(&path, Some(&bob)).await, 404, "not_found").await;
    }
    for (path, body) in [
        (
            format!("/api/v1/workbenches/{wb_id}"),
            json!({"name": "pwned"}),
        ),
        (format!("/api/v1/projects/{p_id}"), json!({"name": "pwned"})),
        (
            format!("/api/v1/brand-kits/{k_id}"),
            json!({"name": "pwned"}),
        ),
    ] {
        assert_error(
            app.patch_json(&path, Some(&bob), &body).await,
            404,
            "not_found",
        )
        .await;
    }
    let r = app
        .post_json(
            &format!("/api/v1/projects/{p_id}/assets"),
            Some(&bob),
            &json!({"kind": "image", "path": "b.png", "mime": "image/png", "size": 1}),
        )
        .await;
    assert_error(r, 404, "not_found").await;
    for path in [
        format!("/api/v1/projects/{p_id}/assets/{a_id}"),
        format!("/api/v1/brand-kits/{k_id}"),
        format!("/api/v1/projects/{p_id}"),
        format!("/api/v1/workbenches/{wb_id}"),
    ] {
        assert_error(delete(&app, &path, &bob).await, 404, "not_found").await;
    }
    for list in [
        "/api/v1/workbenches",
        "/api/v1/projects",
        "/api/v1/brand-kits",
    ] {
        let l: Value = app.get(list, Some(&bob)).await.json().await.unwrap();
        assert_eq!(l["items"], json!([]), "{list}");
    }
    let wb_now: Value = app
        .get(&format!("/api/v1/workbenches/{wb_id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wb_now["name"], "Private");
    assert_eq!(wb_now["project_ids"], json!([p_id]));
    let p_now: Value = app
        .get(&format!("/api/v1/projects/{p_id}"), Some(&alice))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p_now["asset_ids"], json!([a_id]));
    assert_eq!(app.state.store.count(Table::BrandKits).unwrap(), 1);
}

#[actix_web::test]
async fn an_agent_reads_everyones_workspace_but_changes_none_of_it() {
    let app = spawn_app().await;
    let agent = app.staff(Role::Agent).await;
    let (alice, alice_id) = app.new_user().await;
    let wb = workbench(&app, &alice, "Seen").await;
    let wb_id = wb["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/api/v1/workbenches/{wb_id}"), Some(&agent))
            .await
            .status(),
        200
    );
    let mine: Value = app
        .get(
            &format!("/api/v1/workbenches?user_id={alice_id}"),
            Some(&agent),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    let r = app
        .patch_json(
            &format!("/api/v1/workbenches/{wb_id}"),
            Some(&agent),
            &json!({"name": "x"}),
        )
        .await;
    assert_error(r, 403, "forbidden").await;
    assert_error(
        delete(&app, &format!("/api/v1/workbenches/{wb_id}"), &agent).await,
        403,
        "forbidden",
    )
    .await;
}

#[actix_web::test]
async fn a_free_user_cannot_create_a_brand_kit() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    assert_error(
        app.post_json("/api/v1/brand-kits", Some(&token), &json!({"name": "Acme"}))
            .await,
        403,
        "tier_required",
    )
    .await;
    assert_eq!(app.state.store.count(Table::BrandKits).unwrap(), 0);
}

#[actix_web::test]
async fn brand_kit_fields_are_validated_and_normalized() {
    let app = spawn_app().await;
    let (token, _) = pro_user(&app).await;
    let k = kit(
        &app,
        &token,
        json!({
            "name": "Acme",
            "colors": ["#ff0000", {"hex": "#00ff00", "name": "Leaf"}],
            "fonts": [{"family": "Inter", "weight": 700, "usage": "headings"}],
            "logos": ["brand/acme/logo.svg"]
        }),
    )
    .await;
    assert_eq!(
        k["colors"],
        json!([{"hex": "#FF0000", "name": null}, {"hex": "#00FF00", "name": "Leaf"}])
    );
    assert_eq!(k["is_default"], false);
    let logos: Vec<String> = (0..21).map(|i| format!("l/{i}.png")).collect();
    for (body, field) in [
        (json!({"name": "A", "colors": ["red"]}), "colors[0]"),
        (
            json!({"name": "A", "fonts": [{"family": "Inter", "weight": 1000}]}),
            "fonts[0].weight",
        ),
        (
            json!({"name": "A", "fonts": [{"weight": 400}]}),
            "fonts[0].family",
        ),
        (
            json!({"name": "A", "logos": ["../../etc/passwd"]}),
            "logos[0]",
        ),
        (
            json!({"name": "A", "logos": ["https://evil.example/logo.png"]}),
            "logos[0]",
        ),
        (json!({"name": "A", "logos": logos}), "logos"),
        (json!({"name": "A", "owner": "me"}), "owner"),
    ] {
        let e = assert_error(
            app.post_json("/api/v1/brand-kits", Some(&token), &body)
                .await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    assert_eq!(app.state.store.count(Table::BrandKits).unwrap(), 1);
}

#[actix_web::test]
async fn making_a_kit_default_clears_the_other_default() {
    let app = spawn_app().await;
    let (token, _) = pro_user(&app).await;
    let a = kit(&app, &token, json!({"name": "A", "is_default": true})).await;
    let b = kit(&app, &token, json!({"name": "B", "is_default": true})).await;
    let a_now: Value = app
        .get(
            &format!("/api/v1/brand-kits/{}", a["id"].as_str().unwrap()),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(a_now["is_default"], false);
    assert_eq!(b["is_default"], true);
    let r = app
        .patch_json(
            &format!("/api/v1/brand-kits/{}", a["id"].as_str().unwrap()),
            Some(&token),
            &json!({"is_default": true}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let list: Value = app
        .get("/api/v1/brand-kits", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let defaults: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["is_default"] == true)
        .collect();
    assert_eq!(defaults.len(), 1);
    assert_eq!(defaults[0]["id"], a["id"]);
    app.assert_verified();
}

#[actix_web::test]
async fn fifty_simultaneous_make_default_calls_end_with_exactly_one_default() {
    let app = spawn_app().await;
    let (token, _) = pro_user(&app).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(
            kit(&app, &token, json!({"name": format!("Kit {i}")})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let body = json!({"is_default": true});
    let paths: Vec<String> = ids
        .iter()
        .map(|id| format!("/api/v1/brand-kits/{id}"))
        .collect();
    let calls = paths.iter().map(|p| app.patch_json(p, Some(&token), &body));
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r.status(), 200);
    }
    let list: Value = app
        .get("/api/v1/brand-kits?limit=200", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let defaults = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["is_default"] == true)
        .count();
    assert_eq!(defaults, 1);
    app.assert_verified();
}

#[actix_web::test]
async fn a_kit_in_use_cannot_be_deleted_until_released() {
    let app = spawn_app().await;
    let (token, _) = pro_user(&app).await;
    let k = kit(&app, &token, json!({"name": "Used"})).await;
    let k_id = k["id"].as_str().unwrap();
    let wb = created(
        app.post_json(
            "/api/v1/workbenches",
            Some(&token),
            &json!({"name": "W", "default_brand_kit_id": k_id}),
        )
        .await,
    )
    .await;
    let wb_id = wb["id"].as_str().unwrap();
    let p = created(
        app.post_json(
            "/api/v1/projects",
            Some(&token),
            &json!({"name": "P", "workbench_id": wb_id, "brand_kit_id": k_id}),
        )
        .await,
    )
    .await;
    let e = assert_error(
        delete(&app, &format!("/api/v1/brand-kits/{k_id}"), &token).await,
        409,
        "brand_kit_in_use",
    )
    .await;
    assert_eq!(
        e["error"]["details"],
        json!({"workbenches": 1, "projects": 1})
    );
    app.patch_json(
        &format!("/api/v1/workbenches/{wb_id}"),
        Some(&token),
        &json!({"default_brand_kit_id": null}),
    )
    .await;
    app.patch_json(
        &format!("/api/v1/projects/{}", p["id"].as_str().unwrap()),
        Some(&token),
        &json!({"brand_kit_id": null}),
    )
    .await;
    assert_eq!(
        delete(&app, &format!("/api/v1/brand-kits/{k_id}"), &token)
            .await
            .status(),
        204
    );
    app.assert_verified();
}

#[actix_web::test]
async fn the_effective_brand_kit_is_project_then_workbench_then_user_default() {
    let app = spawn_app().await;
    let (token, _) = pro_user(&app).await;
    let user_default = kit(
        &app,
        &token,
        json!({"name": "User default", "is_default": true}),
    )
    .await;
    let wb_kit = kit(&app, &token, json!({"name": "Workbench"})).await;
    let p_kit = kit(&app, &token, json!({"name": "Project"})).await;
    let wb = workbench(&app, &token, "W").await;
    let wb_id = wb["id"].as_str().unwrap();
    let p = project(&app, &token, wb_id).await;
    let p_path = format!("/api/v1/projects/{}", p["id"].as_str().unwrap());
    assert_eq!(p["effective_brand_kit_id"], user_default["id"]);
    app.patch_json(
        &format!("/api/v1/workbenches/{wb_id}"),
        Some(&token),
        &json!({"default_brand_kit_id": wb_kit["id"]}),
    )
    .await;
    let now: Value = app.get(&p_path, Some(&token)).await.json().await.unwrap();
    assert_eq!(now["effective_brand_kit_id"], wb_kit["id"]);
    app.patch_json(&p_path, Some(&token), &json!({"brand_kit_id": p_kit["id"]}))
        .await;
    let now: Value = app.get(&p_path, Some(&token)).await.json().await.unwrap();
    assert_eq!(now["effective_brand_kit_id"], p_kit["id"]);
}

#[actix_web::test]
async fn assets_are_validated_listed_and_deleted() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let wb = workbench(&app, &token, "W").await;
    let p = project(&app, &token, wb["id"].as_str().unwrap()).await;
    let base = format!("/api/v1/projects/{}/assets", p["id"].as_str().unwrap());
    let a = created(
        app.post_json(
            &base,
            Some(&token),
            &json!({"kind": "image", "path": "gen/1.png", "mime": "image/png", "size": 2048}),
        )
        .await,
    )
    .await;
    for (body, field) in [
        (
            json!({"kind": "hologram", "path": "a.png", "mime": "image/png", "size": 1}),
            "kind",
        ),
        (
            json!({"kind": "image", "path": "../a.png", "mime": "image/png", "size": 1}),
            "path",
        ),
        (
            json!({"kind": "image", "path": "a.png", "mime": "png", "size": 1}),
            "mime",
        ),
        (
            json!({"kind": "image", "path": "a.png", "mime": "image/png", "size": -1}),
            "size",
        ),
    ] {
        let e = assert_error(
            app.post_json(&base, Some(&token), &body).await,
            422,
            "validation_failed",
        )
        .await;
        assert_eq!(e["error"]["details"]["field"], field, "{body}");
    }
    let list: Value = app.get(&base, Some(&token)).await.json().await.unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        delete(
            &app,
            &format!("{base}/{}", a["id"].as_str().unwrap()),
            &token
        )
        .await
        .status(),
        204
    );
    assert_eq!(app.state.store.count(Table::Assets).unwrap(), 0);
    app.assert_verified();
}

#[actix_web::test]
async fn deleting_a_workbench_deletes_its_projects_and_assets_leaving_no_orphans() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let wb = workbench(&app, &token, "Doomed").await;
    let wb_id = wb["id"].as_str().unwrap();
    for _ in 0..3 {
        let p = project(&app, &token, wb_id).await;
        let path = format!("/api/v1/projects/{}/assets", p["id"].as_str().unwrap());
        for i in 0..2 {
            created(app.post_json(&path, Some(&token), &json!({"kind": "image", "path": format!("x/{i}.png"), "mime": "image/png", "size": 1})).await).await;
        }
    }
    let keep = workbench(&app, &token, "Kept").await;
    project(&app, &token, keep["id"].as_str().unwrap()).await;
    assert_eq!(
        delete(&app, &format!("/api/v1/workbenches/{wb_id}"), &token)
            .await
            .status(),
        204
    );
    let s = &app.state.store;
    assert_eq!(s.count(Table::Projects).unwrap(), 1);
    assert_eq!(s.count(Table::Assets).unwrap(), 0);
    assert_eq!(s.count(Table::ProjectsByWorkbench).unwrap(), 1);
    assert_eq!(s.count(Table::ProjectsByUser).unwrap(), 1);
    assert_eq!(s.count(Table::AssetsByProject).unwrap(), 0);
    app.assert_verified();
}

#[actix_web::test]
async fn deleting_a_user_deletes_their_workspace_but_keeps_their_ledger() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = pro_user(&app).await;
    let wb = workbench(&app, &token, "W").await;
    project(&app, &token, wb["id"].as_str().unwrap()).await;
    kit(&app, &token, json!({"name": "K", "is_default": true})).await;
    let (other, _) = app.new_user().await;
    workbench(&app, &other, "Survivor").await;
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/admin/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        401,
        "unauthenticated",
    )
    .await;
    let s = &app.state.store;
    assert_eq!(s.count(Table::Workbenches).unwrap(), 1);
    assert_eq!(s.count(Table::Projects).unwrap(), 0);
    assert_eq!(s.count(Table::BrandKits).unwrap(), 0);
    let user = uuid::Uuid::parse_str(&id).unwrap();
    let account = s
        .get::<storage::records::AccountRecord>(&storage::keys::account(user))
        .unwrap()
        .expect("the account stays");
    assert!(
        s.get::<storage::records::LedgerEntry>(&storage::keys::ledger(account.head_id.unwrap()))
            .unwrap()
            .is_some(),
        "the ledger stays"
    );
    assert_error(
        app.client
            .delete(app.url(&format!("/api/v1/admin/users/{id}")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.client
            .delete(app.url(&format!("/api/v1/admin/users/{id}")))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    app.assert_verified();
}

/// A view shows at most 100 child ids and says whether that is all; the rest are paged by the
/// children's own route, so listing records never reads every child key.
#[actix_web::test]
async fn views_show_a_bounded_id_list_and_say_when_it_is_not_all() {
    let app = spawn_app().await;
    let (token, _) = app.new_user().await;
    let wb = workbench(&app, &token, "W").await;
    let p = project(&app, &token, wb["id"].as_str().unwrap()).await;
    let pid = p["id"].as_str().unwrap();
    for i in 0..101 {
        let r = app
            .post_json(
                &format!("/api/v1/projects/{pid}/assets"),
                Some(&token),
                &json!({"kind": "image", "path": format!("out/{i}.png"), "mime": "image/png", "size": 1}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let view: Value = app
        .get(&format!("/api/v1/projects/{pid}"), Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["asset_ids"].as_array().unwrap().len(), 100);
    assert_eq!(view["asset_ids_complete"], false);
    let listed: Value = app
        .get("/api/v1/projects", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["asset_ids_complete"], false);
    let wb_view: Value = app
        .get(
            &format!("/api/v1/workbenches/{}", wb["id"].as_str().unwrap()),
            Some(&token),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(wb_view["project_ids"].as_array().unwrap().len(), 1);
    assert_eq!(wb_view["project_ids_complete"], true);
    // Every asset is reachable through the paged route.
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let page: Value = app
            .get(
                &format!("/api/v1/projects/{pid}/assets?limit=40{q}"),
                Some(&token),
            )
            .await
            .json()
            .await
            .unwrap();
        seen += page["items"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, 101);
}

/// Writes `n` assets straight into the store (the API would take minutes to make this many).
pub async fn bulk_assets(store: &storage::Store, user: uuid::Uuid, project: uuid::Uuid, n: usize) {
    use storage::records::{AssetOfProject, AssetRecord};
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut set = storage::WriteSet::new();
        for i in chunk {
            let a = AssetRecord {
                id: uuid::Uuid::now_v7(),
                user_id: user,
                project_id: project,
                kind: "image".into(),
                path: format!("bulk/{i}.png"),
                mime: "image/png".into(),
                size: 1,
                generation_request_id: None,
                created_at_us: 0,
            };
            set.put(storage::keys::id(a.id), &a);
            set.put(storage::keys::pair(project, a.id), &AssetOfProject);
        }
        // Counted in the owner's usage like any change (verify checks it).
        let usage_key = storage::keys::user(user);
        let mut usage = store
            .get::<storage::records::UsageRecord>(&usage_key)
            .unwrap()
            .unwrap_or_default();
        usage.records += chunk.len() as u64;
        usage.asset_bytes += chunk.len() as u64;
        set.put(usage_key, &usage);
        assert_eq!(
            store.write(set).await.unwrap(),
            storage::WriteOutcome::Committed
        );
    }
}

/// A cascade too large for one write (here 3,000 assets) is invisible at once and deleted in
/// bounded batches; other users' writes keep being answered meanwhile, and every batch keeps
/// the invariants.
#[actix_web::test]
async fn a_huge_workbench_is_invisible_at_once_and_deleted_in_batches() {
    let app = spawn_app().await;
    let (token, user) = app.new_user().await;
    let wb = workbench(&app, &token, "Huge").await;
    let wb_id = wb["id"].as_str().unwrap().to_string();
    let p = project(&app, &token, &wb_id).await;
    let pid = p["id"].as_str().unwrap().to_string();
    let user_id = uuid::Uuid::parse_str(&user).unwrap();
    bulk_assets(
        &app.state.store,
        user_id,
        uuid::Uuid::parse_str(&pid).unwrap(),
        3000,
    )
    .await;
    app.assert_verified();
    let (other, _) = app.new_user().await;

    let r = delete(&app, &format!("/api/v1/workbenches/{wb_id}"), &token).await;
    assert_eq!(r.status(), 204);
    assert_error(
        app.get(&format!("/api/v1/workbenches/{wb_id}"), Some(&token))
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get(&format!("/api/v1/projects/{pid}"), Some(&token))
            .await,
        404,
        "not_found",
    )
    .await;
    let listed: Value = app
        .get("/api/v1/projects", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(listed["items"].as_array().unwrap().is_empty());
    let r = app
        .post_json(
            "/api/v1/projects",
            Some(&token),
            &json!({"name": "x", "workbench_id": wb_id}),
        )
        .await;
    assert_error(r, 422, "validation_failed").await;
    // Others are served while the batches run.
    for i in 0..10 {
        let r = app
            .post_json(
                "/api/v1/workbenches",
                Some(&other),
                &json!({"name": format!("o{i}")}),
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.state.store.count(Table::Assets).unwrap() > 0
        || app.state.store.count(Table::Deleting).unwrap() > 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batches never finished"
        );
        app.assert_verified();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.store.count(Table::Projects).unwrap(), 0);
    app.assert_verified();
}

/// Deleting a user whose workspace is too large for one write: the user is gone at once, their
/// workbenches (using a kit that goes with the user) are deleted in batches, and the store
/// verifies at every step.
#[actix_web::test]
async fn deleting_a_user_with_a_huge_workspace_finishes_in_batches() {
    let app = spawn_app().await;
    let admin = app.staff(Role::Admin).await;
    let (token, id) = pro_user(&app).await;
    let k = kit(&app, &token, json!({"name": "K"})).await;
    let wb = created(
        app.post_json(
            "/api/v1/workbenches",
            Some(&token),
            &json!({"name": "W", "default_brand_kit_id": k["id"]}),
        )
        .await,
    )
    .await;
    let p = project(&app, &token, wb["id"].as_str().unwrap()).await;
    let user = uuid::Uuid::parse_str(&id).unwrap();
    let pid = uuid::Uuid::parse_str(p["id"].as_str().unwrap()).unwrap();
    bulk_assets(&app.state.store, user, pid, 2500).await;
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/admin/users/{id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        app.get("/api/v1/me", Some(&token)).await,
        401,
        "unauthenticated",
    )
    .await;
    app.assert_verified();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while app.state.store.count(Table::Workbenches).unwrap() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the batches never finished"
        );
        app.assert_verified();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.state.store.count(Table::Assets).unwrap(), 0);
    assert_eq!(app.state.store.count(Table::Deleting).unwrap(), 0);
    app.assert_verified();
}

/// A user's workspace is bounded as a whole by their tier's quota (records and asset bytes),
/// counted in one usage record kept with every change; the bound answers 409 quota_exceeded
/// and changes nothing, and deleting frees room.
#[actix_web::test]
async fn the_workspace_quota_bounds_records_and_bytes_per_tier() {
    let (app, _dir) = crate::helpers::spawn_app_with_config(
        "[quotas.free]\nrecords_max = 4\nasset_bytes_max = 1000\n\
         [quotas.pro]\nrecords_max = 100\nasset_bytes_max = 100000\n\
         [quotas.team]\nrecords_max = 100\nasset_bytes_max = 100000\n\
         [quotas.enterprise]\nrecords_max = 100\nasset_bytes_max = 100000\n",
    )
    .await;
    let (token, _) = app.new_user().await;
    let wb = workbench(&app, &token, "W").await;
    let wb_id = wb["id"].as_str().unwrap();
    let p = project(&app, &token, wb_id).await;
    let pid = p["id"].as_str().unwrap();
    let asset = |path: &str, size: u64| json!({"kind": "image", "path": path, "mime": "image/png", "size": size});
    let r = app
        .post_json(
            &format!("/api/v1/projects/{pid}/assets"),
            Some(&token),
            &asset("a.png", 600),
        )
        .await;
    assert_eq!(r.status(), 201);
    // 600 + 600 bytes passes the byte quota.
    let r = app
        .post_json(
            &format!("/api/v1/projects/{pid}/assets"),
            Some(&token),
            &asset("b.png", 600),
        )
        .await;
    let body = assert_error(r, 409, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["what"], "asset bytes");
    let r = app
        .post_json(
            &format!("/api/v1/projects/{pid}/assets"),
            Some(&token),
            &asset("c.png", 10),
        )
        .await;
    assert_eq!(r.status(), 201, "the fourth record fits");
    let r = app
        .post_json(
            "/api/v1/workbenches",
            Some(&token),
            &json!({"name": "fifth"}),
        )
        .await;
    let body = assert_error(r, 409, "quota_exceeded").await;
    assert_eq!(body["error"]["details"]["what"], "workspace records");
    app.assert_verified();
    // Deleting frees room.
    assert_eq!(
        delete(&app, &format!("/api/v1/workbenches/{wb_id}"), &token)
            .await
            .status(),
        204
    );
    workbench(&app, &token, "again").await;
    app.assert_verified();
}
