//! Progressive profiling (SPEC §10), while `enable_progressive_profiling` is on.

use std::collections::BTreeMap;

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::AppError;
use crate::extract::ApiJson;
use crate::services::profile;
use crate::state::AppState;

fn enabled(state: &AppState) -> Result<(), AppError> {
    crate::services::features::require(&state.store, state.config.features, |f| {
        f.enable_progressive_profiling
    })
}

#[derive(Serialize, ToSchema)]
pub struct QuestionView {
    key: String,
    text: String,
    /// The accepted answers (where the question allows free text, any short text too).
    choices: Vec<String>,
}

/// The next unanswered profile question, or 204 when all are answered.
#[utoipa::path(get, path = "/api/v1/me/profile/next-question", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = QuestionView), (status = 204, description = "every question is answered"),
        (status = 403, description = "feature_disabled", body = crate::views::ErrorBody)))]
#[get("/api/v1/me/profile/next-question")]
pub async fn next_question(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let answers = profile::answers(&*caller.reads, caller.user.id)?;
    Ok(
        match profile::next_question(&state.config.file.profiling, &answers) {
            Some(q) => HttpResponse::Ok().json(QuestionView {
                key: q.key.clone(),
                text: q.text.clone(),
                choices: q.choices.clone(),
            }),
            None => HttpResponse::NoContent().finish(),
        },
    )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    #[schema(min_length = 1)]
    key: String,
    #[schema(min_length = 1, max_length = 100)]
    value: String,
}

#[derive(Serialize, ToSchema)]
pub struct ProfileView {
    profile: BTreeMap<String, String>,
}

/// Answer (or re-answer) one profile question.
#[utoipa::path(post, path = "/api/v1/me/profile/answers", tag = "users", security(("bearer" = [])), request_body = AnswerBody,
    responses((status = 200, body = ProfileView), (status = 403, description = "feature_disabled", body = crate::views::ErrorBody),
        (status = 422, body = crate::views::ErrorBody)))]
#[post("/api/v1/me/profile/answers")]
pub async fn answer(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<AnswerBody>,
) -> Result<HttpResponse, AppError> {
    enabled(&state)?;
    let b = body.0;
    let p = profile::answer(
        &state.store,
        &state.config.file.profiling,
        caller.user.id,
        &b.key,
        &b.value,
    )
    .await?;
    Ok(HttpResponse::Ok().json(ProfileView { profile: p.answers }))
}
