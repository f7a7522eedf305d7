//! PayPal: what each verified event does.

use serde_json::Value;
use storage::records::*;
use storage::WriteSet;

use super::desk::{self, existing_user, text, Decision, PackPurchase};
use crate::error::AppError;
use crate::state::AppState;

pub const HANDLED: [&str; 6] = [
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.REFUNDED",
    "BILLING.SUBSCRIPTION.ACTIVATED",
    "BILLING.SUBSCRIPTION.CANCELLED",
    "BILLING.SUBSCRIPTION.PAYMENT.FAILED",
    "PAYMENT.SALE.COMPLETED",
];

/// "9.99" in a currency with 2 decimals → 999. PayPal amounts are decimal strings; anything that
/// is not a plain non-negative decimal with at most 2 places is refused.
pub fn minor_units(value: &str) -> Option<u64> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let frac = format!("{frac:0<2}");
    whole
        .parse::<u64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(frac.parse::<u64>().ok()?)
}

fn plan_tier(state: &AppState, plan_id: Option<&str>) -> Option<Tier> {
    let plan_id = plan_id?;
    state
        .config
        .file
        .plans
        .iter()
        .find(|(_, p)| p.paypal_plan_ids.iter().any(|id| id == plan_id))
        .and_then(|(t, _)| desk::tier_named(t))
}

fn event_time_us(event: &Value) -> i64 {
    text(event, &["create_time"])
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map_or(0, |t| (t.unix_timestamp_nanos() / 1000) as i64)
}

/// What a verified PayPal event means for the store.
pub fn decide(state: &AppState, event: &Value) -> Result<Decision, AppError> {
    let r = &event["resource"];
    let at_us = event_time_us(event);
    match text(event, &["event_type"]).unwrap_or_default() {
        "PAYMENT.CAPTURE.COMPLETED" => capture_completed(state, r),
        "PAYMENT.CAPTURE.REFUNDED" => capture_refunded(state, r, at_us),
        "BILLING.SUBSCRIPTION.ACTIVATED" => subscription_activated(state, r, at_us),
        kind @ ("BILLING.SUBSCRIPTION.CANCELLED" | "BILLING.SUBSCRIPTION.PAYMENT.FAILED") => {
            subscription_ended(state, r, kind, at_us)
        }
        "PAYMENT.SALE.COMPLETED" => sale_completed(state, r),
        other => Ok(Decision::Ignore(format!("unhandled type {other}"))),
    }
}

/// The user and stored subscription behind a PayPal subscription id, once its activation (or
/// an earlier event naming it) was applied.
fn known_subscription(
    state: &AppState,
    sub: &str,
) -> Result<Option<(uuid::Uuid, SubscriptionRecord)>, AppError> {
    desk::subscription_of(state, Provider::Paypal, sub)
}

/// A pack bought with an order: `custom_id` is `<user_id>:<pack_code>`; the amount must match.
fn capture_completed(state: &AppState, r: &Value) -> Result<Decision, AppError> {
    let Some((user_raw, code)) = text(r, &["custom_id"]).and_then(|c| c.split_once(':')) else {
        return Ok(Decision::Ignore(
            "custom_id is not <user_id>:<pack_code>".into(),
        ));
    };
    let Some(user) = existing_user(state, Some(user_raw))? else {
        return Ok(Decision::Ignore("custom_id names no user".into()));
    };
    let Some(pack) = state.config.file.packs.get(code) else {
        return Ok(Decision::Ignore(format!("unknown pack {code}")));
    };
    let paid = text(r, &["amount", "value"]).and_then(minor_units);
    let currency = text(r, &["amount", "currency_code"]).map(str::to_ascii_lowercase);
    if paid != Some(pack.price_minor) || currency.as_deref() != Some(pack.currency.as_str()) {
        state
            .metrics
            .payment_mismatches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let note = format!("mismatch: paid {paid:?} {currency:?} for {code}");
        tracing::warn!(%user, %note, "pack price mismatch; no credits");
        return Ok(Decision::Ignore(note));
    }
    let Some(capture) = text(r, &["id"]) else {
        return Ok(Decision::Ignore("capture without id".into()));
    };
    desk::purchase(
        state,
        PackPurchase {
            provider: Provider::Paypal,
            user,
            pack_code: code,
            credits: pack.credits,
            amount_minor: pack.price_minor,
            currency: &pack.currency,
            payment_ref: capture,
        },
    )
}

/// A (partial) refund of a capture: the total refunded so far decides what is reversed.
fn capture_refunded(state: &AppState, r: &Value, at_us: i64) -> Result<Decision, AppError> {
    // The resource is the refund; its capture is in related ids or the "up" link.
    let capture = text(r, &["supplementary_data", "related_ids", "capture_id"])
        .map(str::to_string)
        .or_else(|| {
            r["links"].as_array()?.iter().find(|l| l["rel"] == "up")?["href"]
                .as_str()?
                .rsplit('/')
                .next()
                .map(str::to_string)
        });
    let Some(capture) = capture else {
        return Ok(Decision::Ignore("refund without its capture".into()));
    };
    let key = desk::ref_key(&[Provider::Paypal.as_str(), "payment", &capture]);
    let already = state
        .store
        .get::<PurchaseRecord>(&key)?
        .map_or(0, |p| p.refunded_minor);
    let this = text(r, &["amount", "value"])
        .and_then(minor_units)
        .unwrap_or(0);
    desk::refund(state, Provider::Paypal, &capture, already + this, at_us)
}

/// A subscription starts: `custom_id` is the user, the plan id maps to a tier.
fn subscription_activated(state: &AppState, r: &Value, at_us: i64) -> Result<Decision, AppError> {
    let Some(sub) = text(r, &["id"]) else {
        return Ok(Decision::Ignore("subscription without id".into()));
    };
    let Some(user) = existing_user(state, text(r, &["custom_id"]))? else {
        return Ok(Decision::Ignore("custom_id names no user".into()));
    };
    let Some(tier) = plan_tier(state, text(r, &["plan_id"])) else {
        return Ok(Decision::Ignore("plan_id maps to no tier".into()));
    };
    let mut set = WriteSet::new();
    desk::subscription_set(
        state,
        &mut set,
        Provider::Paypal,
        user,
        None,
        sub,
        tier,
        SubStatus::Active,
        None,
        at_us,
    )?;
    Ok(Decision::Apply {
        user: None,
        credit: None,
        set,
        note: format!("subscription {sub} active at {}", tier.as_str()),
    })
}

/// A subscription is cancelled or its payment failed; an event older than the stored state
/// changes nothing.
fn subscription_ended(
    state: &AppState,
    r: &Value,
    kind: &str,
    at_us: i64,
) -> Result<Decision, AppError> {
    let Some(sub) = text(r, &["id"]) else {
        return Ok(Decision::Ignore("subscription without id".into()));
    };
    let Some((user, known)) = known_subscription(state, sub)? else {
        return Ok(Decision::RetryLater(format!(
            "subscription {sub} not known yet"
        )));
    };
    if at_us < known.last_event_at_us {
        return Ok(Decision::Ignore(
            "older than the state already applied".into(),
        ));
    }
    let status = if kind.ends_with("CANCELLED") {
        SubStatus::Cancelled
    } else {
        SubStatus::PastDue
    };
    let mut set = WriteSet::new();
    desk::subscription_set(
        state,
        &mut set,
        Provider::Paypal,
        user,
        None,
        sub,
        known.tier,
        status,
        None,
        at_us,
    )?;
    Ok(Decision::Apply {
        user: None,
        credit: None,
        set,
        note: format!("subscription {}", status.as_str()),
    })
}

/// A subscription period paid: plan credits and an invoice.
fn sale_completed(state: &AppState, r: &Value) -> Result<Decision, AppError> {
    let Some(sub) = text(r, &["billing_agreement_id"]) else {
        return Ok(Decision::Ignore("sale without billing_agreement_id".into()));
    };
    let Some(sale) = text(r, &["id"]) else {
        return Ok(Decision::Ignore("sale without id".into()));
    };
    let Some((user, known)) = known_subscription(state, sub)? else {
        return Ok(Decision::RetryLater(format!(
            "subscription {sub} not known yet"
        )));
    };
    let amount = text(r, &["amount", "total"])
        .and_then(minor_units)
        .unwrap_or(0);
    let currency = text(r, &["amount", "currency"])
        .unwrap_or("usd")
        .to_ascii_lowercase();
    let line = InvoiceLine {
        description: format!("Plan {}", known.tier.as_str()),
        quantity: 1,
        amount_minor: amount as i64,
    };
    let billed = desk::Billed {
        user,
        provider: Provider::Paypal,
        provider_ref: sale,
        amount_minor: amount,
        currency: &currency,
        lines: vec![line],
    };
    desk::period_paid(state, known.tier, billed, None, WriteSet::new())
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn decimal_amounts_become_minor_units_exactly() {
        assert_eq!(minor_units("9.99"), Some(999));
        assert_eq!(minor_units("10"), Some(1000));
        assert_eq!(minor_units("0.5"), Some(50));
        for bad in ["", "-1.00", "1.999", "1e3", "abc", ".5"] {
            assert_eq!(minor_units(bad), None, "{bad}");
        }
    }
}
