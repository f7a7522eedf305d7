//! Saved generation templates (SPEC §10), while `enable_user_template_saving` is on.

use actix_web::{delete, get, patch, post, web, HttpRequest, HttpResponse};
use actors::workspace::{CreateTemplate, DeleteTemplate, UpdateTemplate};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use storage::records::TemplateRecord;
use storage::Table;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::Name;
use crate::error::AppError;
use crate::extract::{ApiJson, Page};
use crate::services::generation::GenerationFields;
use crate::services::workspace::{self as ws, Access};
use crate::state::AppState;
use crate::views::{rfc3339, Listing};

/// `params` of a template: a JSON object under 4 KiB.
pub const TEMPLATE_PARAMS_BYTES_MAX: usize = 4 * 1024;

/// 403 `feature_disabled` while templates are off (read on every request).
pub(crate) fn enabled(state: &AppState) -> Result<(), AppError> {
    crate::services::features::require(&state.store, state.config.features, |f| {
        f.enable_user_template_saving
    })
}

#[derive(Serialize, ToSchema)]
pub struct TemplateView {
    id: Uuid,
    user_id: Uuid,
    name: String,
    prompt: String,
    format: String,
    variations: u8,
    #[schema(value_type = Object)]
    params: Value,
    created_at: String,
    updated_at: String,
}

impl From<&TemplateRecord> for TemplateView {
    fn from(t: &TemplateRecord) -> Self {
        TemplateView {
            id: t.id,
            user_id: t.user_id,
            name: t.name.clone(),
            prompt: t.prompt.clone(),
            format: t.format.clone(),
            variations: t.variations,
            params: serde_json::from_str(&t.params_json).unwrap_or_else(|_| serde_json::json!({})),
            created_at: rfc3339(t.created_at_us),
            updated_at: rfc3339(t.updated_at_us),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateCreate {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    prompt: String,
    format: String,
    #[schema(minimum = 1, maximum = 4)]
    variations: Option<i64>,
    /// An object under 4 KiB.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// Save a template (at most 200 a user; the same validation as a generation create).
#[utoipa::path(post, path = "/api/v1/templates", tag = "templates", security(("bearer" = [])), request_body = TemplateCreate,
    responses((status = 201, body = TemplateView), (status = 403, description = "feature_disabled", body = crate::views::ErrorBody),
        (status = 409, description = "limit_reached", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/templates")]
pub async fn create_template(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<TemplateCreate>,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let b = body.0;
    let name = Name::parse(&b.name, "name")?.into_inner();
    let f = GenerationFields::parse(
        &state,
        &b.prompt,
        b.format,
        b.variations,
        b.params,
        TEMPLATE_PARAMS_BYTES_MAX,
    )?;
    let change = CreateTemplate {
        name,
        prompt: f.prompt,
        format: f.format,
        variations: f.variations,
        params_json: f.params.to_string(),
    };
    let t = state.workspaces.change(caller.user.id, change).await?;
    Ok(HttpResponse::Created().json(TemplateView::from(&t)))
}

/// The caller's templates (staff: everyone's, or one user's with `user_id`).
#[utoipa::path(get, path = "/api/v1/templates", tag = "templates", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only")),
    responses((status = 200, body = Listing<TemplateView>), (status = 403, description = "feature_disabled", body = crate::views::ErrorBody)))]
#[get("/api/v1/templates")]
pub async fn list_templates(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let page = Page::with_filters(&req, &["user_id"])?;
    let (items, next_cursor) = ws::page_owned::<TemplateRecord>(
        &*caller.reads,
        &caller.user,
        Table::TemplatesByUser,
        &page,
    )?;
    Ok(HttpResponse::Ok().json(Listing {
        items: items.iter().map(TemplateView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "templates", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = TemplateView), (status = 403, description = "feature_disabled", body = crate::views::ErrorBody)))]
#[get("/api/v1/templates/{id}")]
pub async fn get_template(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let t = ws::load::<TemplateRecord>(&*caller.reads, &caller.user, &id, Access::Read)?;
    Ok(HttpResponse::Ok().json(TemplateView::from(&t)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplatePatch {
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    prompt: Option<String>,
    format: Option<String>,
    #[schema(minimum = 1, maximum = 4)]
    variations: Option<i64>,
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// Change fields of a template; the result is validated as a whole, like a create.
#[utoipa::path(patch, path = "/api/v1/templates/{id}", tag = "templates", security(("bearer" = [])), params(("id" = Uuid, Path)), request_body = TemplatePatch,
    responses((status = 200, body = TemplateView), (status = 403, description = "feature_disabled", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[patch("/api/v1/templates/{id}")]
pub async fn update_template(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<TemplatePatch>,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let b = body.0;
    let name = b
        .name
        .map(|n| Name::parse(&n, "name").map(Name::into_inner))
        .transpose()?;
    let t = ws::load::<TemplateRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    let old_params = serde_json::from_str(&t.params_json).ok();
    let f = GenerationFields::parse(
        &state,
        b.prompt.as_deref().unwrap_or(&t.prompt),
        b.format.unwrap_or_else(|| t.format.clone()),
        Some(b.variations.unwrap_or(i64::from(t.variations))),
        b.params.or(old_params),
        TEMPLATE_PARAMS_BYTES_MAX,
    )?;
    let change = UpdateTemplate {
        id: t.id,
        name,
        prompt: Some(f.prompt),
        format: Some(f.format),
        variations: Some(f.variations),
        params_json: Some(f.params.to_string()),
    };
    let t = state.workspaces.change(t.user_id, change).await?;
    Ok(HttpResponse::Ok().json(TemplateView::from(&t)))
}

#[utoipa::path(delete, path = "/api/v1/templates/{id}", tag = "templates", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, description = "feature_disabled", body = crate::views::ErrorBody)))]
#[delete("/api/v1/templates/{id}")]
pub async fn delete_template(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let t = ws::load::<TemplateRecord>(&*caller.reads, &caller.user, &id, Access::Write)?;
    state
        .workspaces
        .change(t.user_id, DeleteTemplate { id: t.id })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
