//! Payment webhooks, invoices and the subscription (SPEC §8).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};
use storage::keys;
use storage::records::*;
use storage::Reader;
use storage::Table;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::billing::desk::{self, Answer};
use crate::billing::{paypal, stripe};
use crate::error::AppError;
use crate::extract::{body_timeout, read_body, Page};
use crate::paypal_verify::{PaypalHeaders, VerifyError};
use crate::state::AppState;
use crate::views::{rfc3339, Listing};

/// Stripe webhook bodies are small; refuse anything larger before reading it all.
const WEBHOOK_BODY_LIMIT_BYTES: usize = 256 * 1024;

fn answer(a: Answer) -> HttpResponse {
    match a {
        Answer::Applied(note) => {
            HttpResponse::Ok().json(json!({"received": true, "outcome": "applied", "note": note}))
        }
        Answer::Replayed => {
            HttpResponse::Ok().json(json!({"received": true, "outcome": "already_processed"}))
        }
        Answer::Ignored(note) => {
            HttpResponse::Ok().json(json!({"received": true, "outcome": "ignored", "note": note}))
        }
    }
}

fn now_unix() -> i64 {
    storage::now_us() / 1_000_000
}

/// Stripe events. The signature is checked over the raw bytes before anything is parsed.
#[utoipa::path(post, path = "/payment/stripe/webhook", tag = "payments", request_body(content = Object, content_type = "application/json"),
    params(("Stripe-Signature" = String, Header)),
    responses((status = 200, description = "applied, replayed or ignored"), (status = 400, description = "invalid_signature / malformed_json", body = crate::views::ErrorBody),
        (status = 503, description = "webhook_not_configured, or an event that cannot apply yet (Stripe retries)", body = crate::views::ErrorBody)))]
#[post("/payment/stripe/webhook")]
pub async fn stripe_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let Some(secret) = state.config.stripe_webhook_secret.as_ref() else {
        return Err(AppError::NotConfigured(
            "CREATIVEFLOW_STRIPE_WEBHOOK_SECRET is not set",
        ));
    };
    let body = read_body(
        payload.into_inner(),
        WEBHOOK_BODY_LIMIT_BYTES,
        body_timeout(&req),
    )
    .await?;
    let header = req
        .headers()
        .get("Stripe-Signature")
        .and_then(|v| v.to_str().ok());
    stripe::verify_signature(secret.expose(), header, &body, now_unix())
        .map_err(|e| AppError::InvalidSignature(e.to_string()))?;
    let event: Value =
        serde_json::from_slice(&body).map_err(|e| AppError::MalformedJson(e.to_string()))?;
    let (Some(id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(AppError::MalformedJson("an event needs id and type".into()));
    };
    if !stripe::HANDLED.contains(&kind) {
        state
            .metrics
            .payment_events_ignored
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            event_id = id,
            event_type = kind,
            "stripe event type not handled; acknowledged"
        );
        return Ok(answer(Answer::Ignored(format!("unhandled type {kind}"))));
    }
    let result = desk::apply_event(&state, Provider::Stripe, id, kind, |s| {
        stripe::decide(s, &event)
    })
    .await?;
    Ok(answer(result))
}

/// PayPal events, only while `enable_paypal_payments` is on.
#[utoipa::path(post, path = "/payment/paypal/webhook", tag = "payments", request_body(content = Object, content_type = "application/json"),
    responses((status = 200), (status = 400, body = crate::views::ErrorBody), (status = 404, description = "feature_disabled", body = crate::views::ErrorBody),
        (status = 503, description = "webhook_not_configured", body = crate::views::ErrorBody)))]
#[post("/payment/paypal/webhook")]
pub async fn paypal_webhook(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, AppError> {
    let features = crate::services::features::current(&state.store, state.config.features)?;
    if !features.enable_paypal_payments {
        return Err(AppError::FeatureDisabled { status_404: true });
    }
    let Some(verifier) = state.paypal.as_ref() else {
        return Err(AppError::NotConfigured(
            "CREATIVEFLOW_PAYPAL_WEBHOOK_ID is not set",
        ));
    };
    let body = read_body(
        payload.into_inner(),
        WEBHOOK_BODY_LIMIT_BYTES,
        body_timeout(&req),
    )
    .await?;
    let headers = PaypalHeaders::from_lookup(|name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    })
    .map_err(|e| AppError::InvalidSignature(e.to_string()))?;
    verifier
        .verify(&headers, &body, now_unix())
        .await
        .map_err(|e| match e {
            VerifyError::Busy => AppError::Overloaded,
            other => AppError::InvalidSignature(other.to_string()),
        })?;
    let event: Value =
        serde_json::from_slice(&body).map_err(|e| AppError::MalformedJson(e.to_string()))?;
    let (Some(id), Some(kind)) = (event["id"].as_str(), event["event_type"].as_str()) else {
        return Err(AppError::MalformedJson(
            "an event needs id and event_type".into(),
        ));
    };
    if !paypal::HANDLED.contains(&kind) {
        state
            .metrics
            .payment_events_ignored
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(answer(Answer::Ignored(format!("unhandled type {kind}"))));
    }
    let result = desk::apply_event(&state, Provider::Paypal, id, kind, |s| {
        paypal::decide(s, &event)
    })
    .await?;
    Ok(answer(result))
}

#[derive(Serialize, ToSchema)]
pub struct InvoiceLineView {
    description: String,
    quantity: u64,
    amount_minor: i64,
}

#[derive(Serialize, ToSchema)]
pub struct InvoiceView {
    id: Uuid,
    #[schema(example = "CF/2026/000001")]
    number: String,
    provider: String,
    provider_ref: String,
    amount_minor: u64,
    currency: String,
    status: String,
    lines: Vec<InvoiceLineView>,
    created_at: String,
    user_id: Uuid,
}

impl From<&InvoiceRecord> for InvoiceView {
    fn from(i: &InvoiceRecord) -> Self {
        InvoiceView {
            id: i.id,
            number: i.number.clone(),
            provider: i.provider.as_str().into(),
            provider_ref: i.provider_ref.clone(),
            amount_minor: i.amount_minor,
            currency: i.currency.clone(),
            status: i.status.clone(),
            lines: i
                .lines
                .iter()
                .map(|l| InvoiceLineView {
                    description: l.description.clone(),
                    quantity: l.quantity,
                    amount_minor: l.amount_minor,
                })
                .collect(),
            created_at: rfc3339(i.created_at_us),
            user_id: i.user_id,
        }
    }
}

/// The caller's invoices (staff: everyone's, or one user's with `user_id`).
#[utoipa::path(get, path = "/api/v1/invoices", tag = "payments", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("user_id" = Option<Uuid>, Query, description = "staff only")),
    responses((status = 200, body = Listing<InvoiceView>)))]
#[get("/api/v1/invoices")]
pub async fn invoices(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    let page = Page::with_filters(&req, &["user_id"])?;
    let (items, next_cursor) = crate::services::workspace::page_owned::<InvoiceRecord>(
        &*caller.reads,
        &caller.user,
        Table::InvoicesByUser,
        &page,
    )?;
    Ok(HttpResponse::Ok().json(Listing {
        items: items.iter().map(InvoiceView::from).collect(),
        next_cursor,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SubscriptionView {
    tier: String,
    /// "active", "past_due", "cancelled", "inactive" (not paid), or "none".
    status: String,
    provider: Option<String>,
    current_period_end: Option<String>,
}

/// The caller's tier and the subscription behind it: among several, the one granting the
/// highest tier, else the one changed last.
#[utoipa::path(get, path = "/api/v1/subscription", tag = "payments", security(("bearer" = [])), responses((status = 200, body = SubscriptionView)))]
#[get("/api/v1/subscription")]
pub async fn subscription(caller: Caller) -> Result<HttpResponse, AppError> {
    const SUBSCRIPTIONS_READ_MAX: usize = 1000;
    let subs = caller.reads.scan::<SubscriptionRecord>(
        &keys::user(caller.user.id),
        None,
        storage::Direction::Forward,
        SUBSCRIPTIONS_READ_MAX,
    )?;
    let shown = subs.iter().map(|(_, s)| s).max_by_key(|s| {
        (
            s.status.grants_tier() && s.tier == caller.user.tier,
            s.updated_at_us,
        )
    });
    let view = match shown {
        Some(s) => SubscriptionView {
            tier: caller.user.tier.as_str().into(),
            status: s.status.as_str().into(),
            provider: Some(s.provider.as_str().into()),
            current_period_end: s.current_period_end_us.map(rfc3339),
        },
        None => SubscriptionView {
            tier: caller.user.tier.as_str().into(),
            status: "none".into(),
            provider: None,
            current_period_end: None,
        },
    };
    Ok(HttpResponse::Ok().json(view))
}

#[derive(Serialize, ToSchema)]
pub struct OwedView {
    user_id: Uuid,
    payment_ref: String,
    pack: String,
    owed_credits: u64,
    refunded_minor: u64,
    currency: String,
    invoice_id: Uuid,
}

/// Refunds that could not be fully reversed (the balance was spent): what each user owes (admins).
#[utoipa::path(get, path = "/api/v1/admin/owed", tag = "admin", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Listing<OwedView>), (status = 403, body = crate::views::ErrorBody)))]
#[get("/api/v1/admin/owed")]
pub async fn owed(req: HttpRequest, caller: Caller) -> Result<HttpResponse, AppError> {
    caller.require_staff()?;
    let page = Page::from_query(&req)?;
    const SCAN_MAX: usize = 10_000;
    let rows = caller.reads.scan::<PurchaseRecord>(
        &[],
        page.after.as_deref(),
        storage::Direction::Forward,
        SCAN_MAX,
    )?;
    let exhausted = rows.len() < SCAN_MAX;
    let mut items = Vec::new();
    let mut last = None;
    for (k, p) in rows {
        last = Some(k.clone());
        if p.owed_credits > 0 {
            let payment_ref = String::from_utf8_lossy(&k).to_string();
            items.push(OwedView {
                user_id: p.user_id,
                payment_ref,
                pack: p.pack,
                owed_credits: p.owed_credits,
                refunded_minor: p.refunded_minor,
                currency: p.currency,
                invoice_id: p.invoice_id,
            });
            if items.len() == page.limit {
                break;
            }
        }
    }
    // A page can end because it is full or because the bounded scan ran out: either way,
    // unless the table itself ran out, the next page starts after the last key examined.
    let next_cursor = if items.len() == page.limit || !exhausted {
        last.as_deref().map(crate::extract::encode_cursor)
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(Listing { items, next_cursor }))
}
