use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{CreditDelta, Description, IdempotencyKeyValue};
use crate::error::AppError;
use crate::extract::{ApiJson, Page};
use crate::services::credits::{self, Adjusted};
use crate::services::users;
use crate::state::AppState;
use crate::views::LedgerEntryView;

#[derive(Serialize, ToSchema)]
pub struct CreditsView {
    balance: u64,
    /// The caller's ledger, newest first.
    transactions: Vec<LedgerEntryView>,
    next_cursor: Option<String>,
}

/// The caller's balance and ledger (newest first, paginated).
#[utoipa::path(get, path = "/api/v1/credits", tag = "credits", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, description = "1..200, default 50"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = CreditsView), (status = 401, body = crate::views::ErrorBody)))]
#[get("/api/v1/credits")]
pub async fn my_credits(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::from_query(&req)?;
    let balance = users::balance_of(&*caller.reads, caller.user.id)?;
    let (entries, next_cursor) = credits::ledger_page(&*caller.reads, caller.user.id, &page)?;
    Ok(HttpResponse::Ok().json(CreditsView {
        balance,
        transactions: entries.iter().map(LedgerEntryView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdjustBody {
    /// Non-zero; negative deducts; at most 1,000,000,000 either way.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    amount: i64,
    #[schema(min_length = 1, max_length = 500)]
    description: String,
}

#[derive(Serialize, ToSchema)]
pub struct AdjustView {
    transaction: LedgerEntryView,
    balance: u64,
}

/// Append an `admin_adjustment` to a user's ledger (admins). Honours `Idempotency-Key`.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/credits", tag = "admin", security(("bearer" = [])), request_body = AdjustBody,
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, description = "applied; a replay with the same Idempotency-Key and body answers the same, with `Idempotent-Replayed: true`", body = AdjustView),
        (status = 402, body = crate::views::ErrorBody), (status = 403, body = crate::views::ErrorBody), (status = 404, body = crate::views::ErrorBody),
        (status = 409, body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/admin/users/{id}/credits")]
pub async fn admin_adjust_credits(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<AdjustBody>,
) -> Result<HttpResponse, AppError> {
    caller.require_admin()?;
    let user_id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    let body = body.0;
    let delta = CreditDelta::parse(body.amount)?;
    let description = Description::parse(&body.description)?;
    let idempotency = req
        .headers()
        .get("Idempotency-Key")
        .map(|v| IdempotencyKeyValue::parse(v.to_str().unwrap_or("\u{0}")))
        .transpose()?;
    users::get_user(&*caller.reads, user_id)?;
    let adjusted = credits::admin_adjust(
        &state.accounts,
        &state.metrics,
        caller.user.id,
        user_id,
        delta,
        description,
        idempotency,
    )
    .await?;
    let (entry, replayed) = match adjusted {
        Adjusted::Applied(e) => (e, false),
        Adjusted::Replayed(e) => (e, true),
    };
    Ok(
        super::answer(StatusCode::CREATED, replayed).json(AdjustView {
            balance: entry.balance_after,
            transaction: LedgerEntryView::from(&entry),
        }),
    )
}
