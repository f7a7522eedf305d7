use crate::helpers::{assert_error, spawn_app};
use serde_json::Value;

#[actix_web::test]
async fn healthz_answers_ok() {
    let app = spawn_app().await;
    let r = app.get("/healthz", None).await;
    assert_eq!(r.status(), 200);
}

#[actix_web::test]
async fn readyz_says_the_store_is_open_and_how_the_broker_stands() {
    let app = spawn_app().await;
    let body: Value = app.get("/readyz", None).await.json().await.unwrap();
    assert_eq!(body["store"], "open");
    assert!(body["broker"]["connected"].is_boolean());
    assert!(body["outbox_backlog"].is_u64());
}

#[actix_web::test]
async fn metrics_are_prometheus_text_with_store_and_request_figures() {
    let app = spawn_app().await;
    app.get("/healthz", None).await;
    let r = app.get("/metrics", None).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains(
            "creativeflow_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("creativeflow_store_batches_total"));
    assert!(text.contains("creativeflow_account_actors_live"));
}

#[actix_web::test]
async fn the_openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/v1/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/auth/signup",
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/auth/password-reset/request",
        "/api/v1/auth/password-reset/confirm",
        "/api/v1/me",
        "/api/v1/admin/users",
        "/api/v1/admin/users/{id}",
        "/api/v1/credits",
        "/api/v1/admin/users/{id}/credits",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/workbenches",
        "/api/v1/workbenches/{id}",
        "/api/v1/projects",
        "/api/v1/projects/{id}",
        "/api/v1/brand-kits",
        "/api/v1/brand-kits/{id}",
        "/api/v1/projects/{id}/assets",
        "/api/v1/projects/{id}/assets/{asset_id}",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
}

#[actix_web::test]
async fn an_unknown_route_is_404_in_the_error_envelope() {
    let app = spawn_app().await;
    assert_error(
        app.get("/api/v1/nothing-here", None).await,
        404,
        "not_found",
    )
    .await;
}
