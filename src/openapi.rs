//! The OpenAPI 3 document, generated from the handlers' annotations.

use actix_web::{get, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    auth, billing, credits, features, generation, health, profile, templates, ticket_events,
    tickets, users, workspace,
};

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
        features::get_features, features::put_features, features::feature_history,
        profile::next_question, profile::answer,
        templates::list_templates, templates::create_template, templates::get_template, templates::update_template, templates::delete_template,
        tickets::create_ticket, tickets::list_tickets, tickets::get_ticket, tickets::update_ticket, tickets::list_messages, tickets::post_message,
        ticket_events::ticket_events,
    ),
    modifiers(&BearerAuth, &CommonAnswers)
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

/// The answers every route of a kind can give, added where a handler's annotation does not
/// already name them, so the document lists every status the server can send: 503 (capacity,
/// shutdown) on every route; 401 where a bearer token is required; 409 `concurrent_update` on
/// every authenticated change (a compare-and-set can lose); 400, 413, 415 and 422 where there
/// is a JSON body; 404 where a path names a record (malformed ids are 404 too); 422 and the
/// bounds of `limit` where a route pages. Each carries the error envelope.
struct CommonAnswers;

impl Modify for CommonAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            if let Some(op) = item.get.as_mut() {
                add_common_answers(op, false);
            }
            let writes = [
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in writes.into_iter().flatten() {
                add_common_answers(op, true);
            }
        }
    }
}

fn error_answer(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

fn add_common_answers(op: &mut utoipa::openapi::path::Operation, writes: bool) {
    use utoipa::openapi::path::ParameterIn;
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_body = op.request_body.is_some();
    let params = op.parameters.get_or_insert_with(Vec::new);
    let has_path_id = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
    let mut pages = false;
    for p in params.iter_mut() {
        if p.name == "limit" {
            pages = true;
            p.schema = Some(limit_schema());
        }
    }
    let mut answers: Vec<(&str, &str)> = vec![
        (
            "503",
            "overloaded or unavailable (shutting down); `Retry-After` says when to retry",
        ),
        (
            "429",
            "rate_limited: too many requests of this client in flight (or the route's own limits)",
        ),
    ];
    if secured {
        answers.push((
            "401",
            "unauthenticated: no, unknown or expired bearer token",
        ));
    }
    if has_body {
        answers.push(("400", "malformed_json"));
        answers.push(("413", "payload_too_large"));
        answers.push(("408", "request_timeout: the body did not arrive in time"));
        answers.push(("415", "unsupported_media_type"));
        answers.push(("422", "validation_failed (`details.field`)"));
    }
    if has_path_id {
        answers.push(("404", "not_found (also for a malformed id)"));
    }
    if secured && writes {
        answers.push((
            "409",
            "concurrent_update: the record changed meanwhile (or the route's own conflict codes)",
        ));
    }
    if pages {
        answers.push(("422", "validation_failed on `limit`, `cursor` or a filter"));
    }
    for (status, description) in answers {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_answer(description).into());
    }
}

/// `?limit=`: what `extract::Page` accepts.
fn limit_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .minimum(Some(1))
        .maximum(Some(crate::extract::PAGE_LIMIT_MAX as i64))
        .default(Some(crate::extract::PAGE_LIMIT_DEFAULT.into()))
        .into()
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
