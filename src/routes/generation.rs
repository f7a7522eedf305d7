//! Generation requests (SPEC §7). The create route also speaks the Odoo JSON-RPC envelope.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use storage::records::{GenerationRecord, TemplateRecord};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::IdempotencyKeyValue;
use crate::error::AppError;
use crate::extract::{from_value, ApiJson, Page};
use crate::services::generation::{self as gen, Cancelled, CreateRequest};
use crate::state::AppState;
use crate::views::{rfc3339, AssetView, Listing};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    project_id: Uuid,
    /// One of the caller's saved templates (while template saving is on): it fills what this
    /// body leaves out.
    template_id: Option<Uuid>,
    /// 1..4000 characters, not only spaces. Required unless a template gives it.
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    prompt: Option<String>,
    /// A format of the price table (default: social_post, story, banner, image_hd, video_short).
    /// Required unless a template gives it.
    format: Option<String>,
    /// 1..4, default 1.
    #[schema(minimum = 1, maximum = 4)]
    variations: Option<i64>,
    /// An object under 16 KiB, passed to the worker.
    #[schema(value_type = Option<Object>)]
    params: Option<Value>,
}

/// The two forms the create route accepts (documentation of the body; the handler tells them
/// apart by the `jsonrpc` member).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // a schema only
pub enum CreateCall {
    Rest(CreateBody),
    JsonRpc(JsonRpcCall),
}

/// The Odoo JSON-RPC envelope around a create.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct JsonRpcCall {
    #[schema(pattern = r"^2\.0$")]
    jsonrpc: String,
    #[schema(example = "call")]
    method: Option<String>,
    /// Any JSON value; echoed in the answer.
    #[schema(schema_with = any_value)]
    id: Option<Value>,
    params: CreateBody,
}

/// The JSON-RPC answer: `result` (the 202 body) or `error` (the envelope's status, message,
/// code and details).
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct JsonRpcAnswer {
    jsonrpc: String,
    /// The call's `id`, whatever it was.
    #[schema(schema_with = any_value)]
    id: Option<Value>,
    result: Option<CreatedView>,
    error: Option<JsonRpcError>,
}

fn any_value() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
        .build()
}

#[derive(ToSchema)]
#[allow(dead_code)] // a schema only
pub struct JsonRpcError {
    /// The HTTP status the REST form would have answered.
    code: u16,
    message: String,
    #[schema(value_type = Object)]
    data: Value,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedView {
    id: Uuid,
    #[schema(example = "pending")]
    status: &'static str,
    cost: u64,
    credit_balance: u64,
}

#[derive(Serialize, ToSchema)]
pub struct GenerationView {
    id: Uuid,
    status: String,
    project_id: Uuid,
    format: String,
    variations: u8,
    cost: u64,
    prompt: String,
    created_at: String,
    updated_at: String,
    assets: Vec<AssetView>,
    error: Option<String>,
    /// True once the cost went back to the balance (failed, cancelled, timed out).
    refunded: bool,
}

impl GenerationView {
    fn new(g: &GenerationRecord, assets: Vec<AssetView>) -> Self {
        GenerationView {
            id: g.id,
            status: g.status.as_str().into(),
            project_id: g.project_id,
            format: g.format.clone(),
            variations: g.variations,
            cost: g.cost,
            prompt: g.prompt.clone(),
            created_at: rfc3339(g.created_at_us),
            updated_at: rfc3339(g.updated_at_us),
            assets,
            error: g.error.clone(),
            refunded: g.status.is_refunded(),
        }
    }
}

fn idempotency(req: &HttpRequest) -> Result<Option<IdempotencyKeyValue>, AppError> {
    req.headers()
        .get("Idempotency-Key")
        .map(|v| IdempotencyKeyValue::parse(v.to_str().unwrap_or("\u{0}")))
        .transpose()
}

/// The caller's own saved template; anyone else's (or none) is the same 422 on `template_id`.
fn own_template(caller: &Caller, id: Uuid) -> Result<TemplateRecord, AppError> {
    use storage::Reader;
    match caller.reads.get::<TemplateRecord>(&storage::keys::id(id))? {
        Some(t) if t.user_id == caller.user.id => Ok(t),
        _ => Err(AppError::validation(
            "template_id",
            "does not name one of your templates",
        )),
    }
}

async fn create_from(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: Value,
) -> Result<(CreatedView, bool), AppError> {
    let b: CreateBody = from_value(body)?;
    let (prompt, format, variations, params) = match b.template_id {
        Some(id) => {
            super::templates::enabled(state)?;
            let t = own_template(caller, id)?;
            let saved_params = serde_json::from_str(&t.params_json).ok();
            (
                b.prompt.unwrap_or(t.prompt),
                b.format.unwrap_or(t.format),
                b.variations.or(Some(i64::from(t.variations))),
                b.params.or(saved_params),
            )
        }
        None => (
            b.prompt
                .ok_or_else(|| AppError::validation("prompt", "missing field `prompt`"))?,
            b.format
                .ok_or_else(|| AppError::validation("format", "missing field `format`"))?,
            b.variations,
            b.params,
        ),
    };
    let request = CreateRequest::parse(state, b.project_id, prompt, format, variations, params)?;
    let created = gen::create(
        state,
        &*caller.reads,
        &caller.user,
        request,
        idempotency(req)?,
    )
    .await?;
    let view = CreatedView {
        id: created.id,
        // A replay answers the first body: the request was pending when it was accepted.
        status: "pending",
        cost: created.cost,
        credit_balance: created.credit_balance,
    };
    Ok((view, created.replayed))
}

/// Charge the cost and accept a generation request; its job goes to the AI workers through the
/// outbox. Honours `Idempotency-Key` (24 h). Also accepts the Odoo JSON-RPC envelope
/// `{"jsonrpc":"2.0","method":"call","params":{...},"id":N}`, answered in kind.
#[utoipa::path(post, path = "/api/v1/generation/create", tag = "generation", security(("bearer" = [])), request_body = CreateCall,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..255 visible ASCII characters; a replay answers the first status and body with `Idempotent-Replayed: true`")),
    responses((status = 202, description = "accepted (REST form)", body = CreatedView),
        (status = 200, description = "the JSON-RPC form: a result or an error object, always 200", body = JsonRpcAnswer),
        (status = 402, body = crate::views::ErrorBody), (status = 409, description = "idempotency_key_reused", body = crate::views::ErrorBody),
        (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/generation/create")]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<Value>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    if body.get("jsonrpc").is_none() {
        let (created, replayed) = create_from(&state, &caller, &req, body).await?;
        return Ok(super::answer(StatusCode::ACCEPTED, replayed).json(created));
    }
    // JSON-RPC: every outcome is a 200 carrying a result or an error object.
    let id = body.get("id").cloned().unwrap_or(Value::Null);
    let outcome = match (
        body.get("jsonrpc").and_then(Value::as_str),
        body.get("params"),
    ) {
        (Some("2.0"), Some(params)) if params.is_object() => {
            create_from(&state, &caller, &req, params.clone()).await
        }
        _ => Err(AppError::MalformedJson(
            "a JSON-RPC 2.0 call with an object in params".into(),
        )),
    };
    let replayed = matches!(&outcome, Ok((_, true)));
    let body = match outcome {
        Ok((result, _)) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            let e = e.envelope();
            json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": e.status.as_u16(),
                "message": e.message,
                "data": {"code": e.code, "details": e.details},
            }})
        }
    };
    Ok(super::answer(StatusCode::OK, replayed).json(body))
}

#[utoipa::path(get, path = "/api/v1/generation/{id}/status", tag = "generation", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = GenerationView), (status = 404, body = crate::views::ErrorBody)))]
#[get("/api/v1/generation/{id}/status")]
pub async fn status(caller: Caller, id: web::Path<String>) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    let g = gen::get_visible(&*caller.reads, &caller.user, id)?;
    let assets = gen::assets_of(&*caller.reads, &g)?
        .iter()
        .map(AssetView::from)
        .collect();
    Ok(HttpResponse::Ok().json(GenerationView::new(&g, assets)))
}

#[derive(Serialize, ToSchema)]
pub struct CancelView {
    id: Uuid,
    status: String,
    refunded: u64,
    credit_balance: u64,
}

/// Cancel while pending or queued: the cost is refunded once. Cancelling a cancelled request
/// answers the same; any other status is 409 `invalid_status`.
#[utoipa::path(post, path = "/api/v1/generation/{id}/cancel", tag = "generation", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = CancelView), (status = 404, body = crate::views::ErrorBody), (status = 409, description = "invalid_status", body = crate::views::ErrorBody)))]
#[post("/api/v1/generation/{id}/cancel")]
pub async fn cancel(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    let view = match gen::cancel(&state, &caller.user, id).await? {
        Cancelled::Now {
            generation,
            credit_balance,
        } => CancelView {
            id,
            status: generation.status.as_str().into(),
            refunded: generation.cost,
            credit_balance,
        },
        Cancelled::Already(g) => CancelView {
            id,
            status: g.status.as_str().into(),
            refunded: g.cost,
            credit_balance: crate::services::users::balance_of(&state.store, g.user_id)?,
        },
    };
    Ok(HttpResponse::Ok().json(view))
}

/// The caller's requests, newest first; filters `project_id`, `status` (staff: `user_id`).
#[utoipa::path(get, path = "/api/v1/generation", tag = "generation", security(("bearer" = [])),
    params(("project_id" = Option<Uuid>, Query), ("status" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only"), ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<GenerationView>)))]
#[get("/api/v1/generation")]
pub async fn list(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::with_filters(&req, &["project_id", "status", "user_id"])?;
    let (items, next_cursor) = gen::list(&*caller.reads, &caller.user, &page)?;
    let items = items
        .iter()
        .map(|g| {
            Ok(GenerationView::new(
                g,
                gen::assets_of(&*caller.reads, g)?
                    .iter()
                    .map(AssetView::from)
                    .collect(),
            ))
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    Ok(HttpResponse::Ok().json(Listing { items, next_cursor }))
}
