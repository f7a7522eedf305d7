use actix_web::{post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::domain::{Email, Name, Password};
use crate::error::AppError;
use crate::extract::ApiJson;
use crate::services::login as sessions;
use crate::services::users::{self, NewUser};
use crate::state::AppState;
use crate::views::UserView;
use storage::records::Role;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupBody {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    email: String,
    /// 10 to 1024 characters.
    #[schema(min_length = 10, max_length = 1024)]
    password: String,
    #[schema(min_length = 1, max_length = 200)]
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    user: UserView,
    /// Bearer token for `Authorization: Bearer <token>`.
    token: String,
    expires_at: String,
}

async fn session(
    state: &AppState,
    user: &storage::records::UserRecord,
) -> Result<SessionView, AppError> {
    let (token, expires_at_us) = sessions::open_session(state, user).await?;
    Ok(SessionView {
        user: UserView::new(user, users::balance_of(&state.store, user.id)?),
        token,
        expires_at: crate::views::rfc3339(expires_at_us),
    })
}

#[utoipa::path(post, path = "/api/v1/auth/signup", request_body = SignupBody, tag = "auth",
    responses((status = 201, body = SessionView), (status = 409, description = "email_taken", body = crate::views::ErrorBody), (status = 422, body = crate::views::ErrorBody),
        (status = 429, description = "rate_limited: signups per client IP", body = crate::views::ErrorBody)))]
#[post("/api/v1/auth/signup")]
pub async fn signup(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<SignupBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    let email = Email::parse(&body.email)?;
    let name = Name::parse(&body.name, "name")?;
    let password = Password::parse(body.password, "password")?;
    // Every well-formed attempt counts: it bounds both credit farming and how fast anyone can
    // learn which emails are registered from `email_taken`.
    let a = &state.config.file.auth;
    state
        .signup_limiter
        .try_take(&[(&format!("s:{}", client_ip(&req)), a.signups_per_ip_max)])?;
    if users::find_by_email(&state.store, &email)?.is_some() {
        return Err(AppError::EmailTaken);
    }
    let password_hash = state.hashes.hash(password).await?;
    let user = users::create_user(
        &state.store,
        NewUser {
            email,
            name,
            password_hash,
            role: Role::User,
            signup_grant: state.config.file.credits.signup_grant,
        },
    )
    .await?;
    tracing::info!(user = %user.id, "signup");
    Ok(HttpResponse::Created().json(session(&state, &user).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    #[schema(max_length = 254)]
    email: String,
    #[schema(max_length = 1024)]
    password: String,
}

/// Exchange email and password for a bearer token. Failed attempts are rate limited per account
/// and per client address.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginBody, tag = "auth",
    responses((status = 200, body = SessionView), (status = 401, body = crate::views::ErrorBody), (status = 429, body = crate::views::ErrorBody)))]
#[post("/api/v1/auth/login")]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<LoginBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    let user =
        sessions::check_credentials(&state, &client_ip(&req), &body.email, &body.password).await?;
    Ok(HttpResponse::Ok().json(session(&state, &user).await?))
}

/// Revoke the bearer token used for this call.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::views::ErrorBody)))]
#[post("/api/v1/auth/logout")]
pub async fn logout(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, AppError> {
    users::revoke_token(&state.store, caller.user.id, &caller.token_hash).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequestBody {
    #[schema(format = Email, min_length = 3, max_length = 254)]
    email: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    status: &'static str,
}

/// Mail a single-use reset code. Always 202: the answer never tells whether the email exists.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/request", request_body = ResetRequestBody, tag = "auth",
    responses((status = 202, body = StatusView), (status = 422, body = crate::views::ErrorBody),
        (status = 429, description = "rate_limited: requests per email and per client IP", body = crate::views::ErrorBody)))]
#[post("/api/v1/auth/password-reset/request")]
pub async fn password_reset_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: ApiJson<ResetRequestBody>,
) -> Result<HttpResponse, AppError> {
    let email = Email::parse(&body.0.email)?;
    // Limited alike for known and unknown emails, so the limit tells nothing either.
    let a = &state.config.file.auth;
    state.reset_limiter.try_take(&[
        (
            &format!("e:{}", email.as_str()),
            a.reset_requests_per_email_max,
        ),
        (
            &format!("i:{}", client_ip(&req)),
            a.reset_requests_per_ip_max,
        ),
    ])?;
    let ttl_us = i64::try_from(
        state
            .config
            .file
            .auth
            .reset_token_ttl_minutes
            .saturating_mul(60_000_000),
    )
    .unwrap_or(i64::MAX);
    users::request_password_reset(&state.store, state.mailer.clone(), &email, ttl_us)?;
    Ok(HttpResponse::Accepted().json(StatusView { status: "accepted" }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmBody {
    #[schema(min_length = 1)]
    token: String,
    #[schema(min_length = 10, max_length = 1024)]
    new_password: String,
}

/// Spend a reset code: sets the new password and signs out every session.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", request_body = ResetConfirmBody, tag = "auth",
    responses((status = 200, body = StatusView), (status = 422, description = "invalid, used or expired token; weak password", body = crate::views::ErrorBody)))]
#[post("/api/v1/auth/password-reset/confirm")]
pub async fn password_reset_confirm(
    state: web::Data<AppState>,
    body: ApiJson<ResetConfirmBody>,
) -> Result<HttpResponse, AppError> {
    let body = body.0;
    if body.token.is_empty() || body.token.len() > 512 {
        return Err(AppError::validation(
            "token",
            "the reset token is invalid, used or expired",
        ));
    }
    let password = Password::parse(body.new_password, "new_password")?;
    // The code first: a bogus one costs a read, never a hash.
    let checked = users::check_reset_code(&state.store, &body.token)?;
    let hash = state.hashes.hash(password).await?;
    users::confirm_password_reset(&state.store, checked, hash).await?;
    Ok(HttpResponse::Ok().json(StatusView {
        status: "password_changed",
    }))
}

/// The client's address as the limiters see it: the TCP peer (behind a proxy, the proxy's).
pub fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
}
