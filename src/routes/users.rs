use actix_web::{get, patch, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::Name;
use crate::error::AppError;
use crate::extract::{ApiJson, Page};
use crate::services::users::{self, UserPatch};
use crate::state::AppState;
use crate::views::UserView;
use storage::records::{Role, Tier};

/// The signed-in user, with their credit balance.
#[utoipa::path(get, path = "/api/v1/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = crate::views::ErrorBody)))]
#[get("/api/v1/me")]
pub async fn me(caller: Caller) -> Result<HttpResponse, AppError> {
    let balance = users::balance_of(&*caller.reads, caller.user.id)?;
    let mut view = UserView::new(&caller.user, balance);
    view.profile = Some(crate::services::profile::answers(&*caller.reads, caller.user.id)?.answers);
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    items: Vec<UserView>,
    next_cursor: Option<String>,
}

/// Every user, oldest first (agents and admins).
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query, description = "1..200, default 50"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = UserList), (status = 403, body = crate::views::ErrorBody)))]
#[get("/api/v1/admin/users")]
pub async fn admin_list_users(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    caller.require_staff()?;
    let page = Page::from_query(&req)?;
    let (list, next_cursor) = users::list_users(&*caller.reads, &page)?;
    let items = list
        .iter()
        .map(|u| Ok(UserView::new(u, users::balance_of(&*caller.reads, u.id)?)))
        .collect::<Result<Vec<_>, AppError>>()?;
    Ok(HttpResponse::Ok().json(UserList { items, next_cursor }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchBody {
    #[schema(value_type = Option<String>, pattern = "^(free|pro|team|enterprise)$")]
    subscription_tier: Option<String>,
    #[schema(value_type = Option<String>, pattern = "^(user|agent|admin)$")]
    role: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
}

/// Change a user's tier, role or name (admins).
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])), request_body = UserPatchBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 403, body = crate::views::ErrorBody), (status = 404, body = crate::views::ErrorBody),
        (status = 409, description = "cannot_change_own_role, concurrent_update", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody)))]
#[patch("/api/v1/admin/users/{id}")]
pub async fn admin_update_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: ApiJson<UserPatchBody>,
) -> Result<HttpResponse, AppError> {
    caller.require_admin()?;
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    let body = body.0;
    let patch = UserPatch {
        tier: body
            .subscription_tier
            .map(|t| {
                Tier::parse(&t).ok_or_else(|| {
                    AppError::validation(
                        "subscription_tier",
                        "must be free, pro, team or enterprise",
                    )
                })
            })
            .transpose()?,
        role: body
            .role
            .map(|r| {
                Role::parse(&r)
                    .ok_or_else(|| AppError::validation("role", "must be user, agent or admin"))
            })
            .transpose()?,
        name: body.name.map(|n| Name::parse(&n, "name")).transpose()?,
    };
    let user = users::update_user(&state.store, &caller.user, id, patch).await?;
    let balance = users::balance_of(&state.store, id)?;
    Ok(HttpResponse::Ok().json(UserView::new(&user, balance)))
}

/// Delete a user and their workspace (admins). The ledger is kept.
#[utoipa::path(delete, path = "/api/v1/admin/users/{id}", tag = "admin", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = crate::views::ErrorBody), (status = 404, body = crate::views::ErrorBody), (status = 409, body = crate::views::ErrorBody)))]
#[actix_web::delete("/api/v1/admin/users/{id}")]
pub async fn admin_delete_user(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    caller.require_admin()?;
    let id = Uuid::parse_str(&id).map_err(|_| AppError::NotFound)?;
    users::delete_user(&state.store, &state.workspaces, &caller.user, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
