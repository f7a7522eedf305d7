//! Feature toggles (SPEC §10): public read, admin change, admin history.

use actix_web::{get, put, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use storage::records::FeatureChange;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::config::Features;
use crate::error::AppError;
use crate::extract::{ApiJson, Page};
use crate::services::features::{self, FeaturePatch};
use crate::state::AppState;
use crate::views::{rfc3339, Listing};

#[derive(Serialize, ToSchema)]
pub struct FeaturesView {
    enable_paypal_payments: bool,
    enable_live_chat_support: bool,
    enable_user_template_saving: bool,
    enable_progressive_profiling: bool,
}

impl From<Features> for FeaturesView {
    fn from(f: Features) -> Self {
        FeaturesView {
            enable_paypal_payments: f.enable_paypal_payments,
            enable_live_chat_support: f.enable_live_chat_support,
            enable_user_template_saving: f.enable_user_template_saving,
            enable_progressive_profiling: f.enable_progressive_profiling,
        }
    }
}

/// The four toggles now.
#[utoipa::path(get, path = "/api/v1/features", tag = "features", responses((status = 200, body = FeaturesView)))]
#[get("/api/v1/features")]
pub async fn get_features(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let now = features::current(&state.store, state.config.features)?;
    Ok(HttpResponse::Ok().json(FeaturesView::from(now)))
}

/// Toggles to change (a partial object; an unknown name is 422).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesBody {
    enable_paypal_payments: Option<bool>,
    enable_live_chat_support: Option<bool>,
    enable_user_template_saving: Option<bool>,
    enable_progressive_profiling: Option<bool>,
}

/// Change toggles (admins); every change is recorded with who, when, old and new value. The
/// next request on any worker sees the new value.
#[utoipa::path(put, path = "/api/v1/admin/features", tag = "features", security(("bearer" = [])), request_body = FeaturesBody,
    responses((status = 200, body = FeaturesView), (status = 403, body = crate::views::ErrorBody)))]
#[put("/api/v1/admin/features")]
pub async fn put_features(
    state: web::Data<AppState>,
    caller: Caller,
    body: ApiJson<FeaturesBody>,
) -> Result<HttpResponse, AppError> {
    caller.require_admin()?;
    let b = body.0;
    let patch = FeaturePatch {
        enable_paypal_payments: b.enable_paypal_payments,
        enable_live_chat_support: b.enable_live_chat_support,
        enable_user_template_saving: b.enable_user_template_saving,
        enable_progressive_profiling: b.enable_progressive_profiling,
    };
    let now = features::update(&state.store, &caller.user, state.config.features, patch).await?;
    Ok(HttpResponse::Ok().json(FeaturesView::from(now)))
}

#[derive(Serialize, ToSchema)]
pub struct FeatureChangeView {
    name: String,
    old: bool,
    new: bool,
    changed_by: Uuid,
    changed_at: String,
}

impl From<&FeatureChange> for FeatureChangeView {
    fn from(c: &FeatureChange) -> Self {
        FeatureChangeView {
            name: c.name.clone(),
            old: c.old,
            new: c.new,
            changed_by: c.changed_by,
            changed_at: rfc3339(c.changed_at_us),
        }
    }
}

/// Every toggle change, newest first (admins).
#[utoipa::path(get, path = "/api/v1/admin/features/history", tag = "features", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<FeatureChangeView>), (status = 403, body = crate::views::ErrorBody)))]
#[get("/api/v1/admin/features/history")]
pub async fn feature_history(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    caller.require_admin()?;
    let page = Page::from_query(&req)?;
    let (changes, next_cursor) = features::history(&*caller.reads, &page)?;
    Ok(HttpResponse::Ok().json(Listing {
        items: changes.iter().map(FeatureChangeView::from).collect(),
        next_cursor,
    }))
}
