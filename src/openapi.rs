//! The OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, billing, credits, generation, health, users, workspace};

#[derive(OpenApi)]
#[openapi(
    info(title = "CreativeFlow Core API", description = "Business backend of CreativeFlow AI. Every error is {\"error\": {\"code\", \"message\", \"details\"}}."),
    paths(
        health::healthz, health::readyz, health::metrics, serve,
        auth::signup, auth::login, auth::logout, auth::password_reset_request, auth::password_reset_confirm,
        users::me, users::admin_list_users, users::admin_update_user,
        users::admin_delete_user,
        credits::my_credits, credits::admin_adjust_credits,
        workspace::list_workbenches, workspace::create_workbench, workspace::get_workbench, workspace::update_workbench, workspace::delete_workbench,
        workspace::list_projects, workspace::create_project, workspace::get_project, workspace::update_project, workspace::delete_project,
        workspace::list_brand_kits, workspace::create_brand_kit, workspace::get_brand_kit, workspace::update_brand_kit, workspace::delete_brand_kit,
        workspace::list_assets, workspace::create_asset, workspace::delete_asset,
        generation::create, generation::status, generation::cancel, generation::list,
        billing::stripe_webhook, billing::paypal_webhook, billing::invoices, billing::subscription, billing::owed,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations", responses((status = 200)))]
#[get("/api/v1/openapi.json")]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The methods the document lists for the route that `path` matches, as an `Allow` value;
/// `None` when no route matches (a 404, not a 405).
pub fn allowed_methods(path: &str) -> Option<String> {
    static TABLE: std::sync::OnceLock<Vec<(Vec<String>, String)>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        document()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let mut methods: Vec<&str> = Vec::new();
                let ops = [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ];
                for (name, op) in ops {
                    if op.is_some() {
                        methods.push(name);
                    }
                }
                let segments = template.split('/').map(str::to_string).collect();
                (segments, methods.join(", "))
            })
            .collect()
    });
    let wanted: Vec<&str> = path.split('/').collect();
    table.iter().find_map(|(segments, allow)| {
        let matches = segments.len() == wanted.len()
            && segments
                .iter()
                .zip(&wanted)
                .all(|(t, w)| (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w);
        matches.then(|| allow.clone())
    })
}
