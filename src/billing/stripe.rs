//! Stripe: the `Stripe-Signature` check and what each event does.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use storage::keys;
use storage::records::*;
use storage::WriteSet;
use uuid::Uuid;

use super::desk::{self, existing_user, text, Decision, PackPurchase};
use crate::error::AppError;
use crate::state::AppState;

/// Seconds a signed timestamp may differ from now (Stripe's libraries use 300).
pub const TOLERANCE_S: i64 = 300;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the signature timestamp is outside the tolerance")]
    Stale,
    #[error("no v1 signature matches")]
    NoMatch,
}

/// Verifies `t=…,v1=…[,v1=…]` over the raw body: HMAC-SHA256 keyed with the whole `whsec_…`
/// string, every `v1` tried (secret rotation), constant-time compare; other schemes ignored.
pub fn verify_signature(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut candidates: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match k {
            "t" => timestamp = Some(v.parse().map_err(|_| SignatureError::Malformed)?),
            "v1" => {
                if let Ok(sig) = hex::decode(v) {
                    candidates.push(sig);
                }
            }
            _ => {} // v0 and future schemes: never trusted
        }
    }
    let t = timestamp.ok_or(SignatureError::Malformed)?;
    if candidates.is_empty() {
        return Err(SignatureError::NoMatch);
    }
    if now_unix.abs_diff(t) > TOLERANCE_S.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let mac = signed_mac(secret, t, body);
    if candidates
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::NoMatch)
    }
}

fn signed_mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// A `Stripe-Signature` header for `body` (what Stripe sends; used by tests and tooling).
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!(
        "t={t},v1={}",
        hex::encode(signed_mac(secret, t, body).finalize().into_bytes())
    )
}

/// The event types this server acts on; others are acknowledged and ignored.
pub const HANDLED: [&str; 7] = [
    "checkout.session.completed",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "charge.refunded",
    "checkout.session.async_payment_succeeded",
];

fn number(v: &Value, path: &[&str]) -> Option<u64> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_u64)
}

/// A tier from the configured Stripe price ids — what was actually bought — else from
/// `metadata.tier` (set by our own checkout when no price is mapped).
fn tier_of(state: &AppState, metadata: Option<&Value>, price_ids: &[&str]) -> Option<Tier> {
    let mapped = state
        .config
        .file
        .plans
        .iter()
        .find(|(_, p)| {
            p.stripe_price_ids
                .iter()
                .any(|id| price_ids.contains(&id.as_str()))
        })
        .and_then(|(t, _)| desk::tier_named(t));
    mapped.or_else(|| {
        metadata
            .and_then(|m| text(m, &["tier"]))
            .and_then(desk::tier_named)
    })
}

/// Price ids in an invoice's lines (old and basil shapes) or a subscription's items.
fn price_ids(list: Option<&Value>) -> Vec<&str> {
    list.and_then(|l| l.get("data"))
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |items| {
            items
                .iter()
                .filter_map(|i| {
                    text(i, &["price", "id"])
                        .or_else(|| text(i, &["pricing", "price_details", "price"]))
                })
                .collect()
        })
}

/// Stripe's subscription status as ours: only `active`, `trialing` and `past_due` grant the
/// tier; `incomplete`, `unpaid` and `paused` are not paid (no tier, no credits).
fn sub_status(s: &str) -> SubStatus {
    match s {
        "active" | "trialing" => SubStatus::Active,
        "past_due" => SubStatus::PastDue,
        "canceled" | "incomplete_expired" => SubStatus::Cancelled,
        _ => SubStatus::Inactive,
    }
}

/// What one verified event does, read against the current state.
pub fn decide(state: &AppState, event: &Value) -> Result<Decision, AppError> {
    let obj = &event["data"]["object"];
    let created_us = event["created"]
        .as_i64()
        .and_then(desk::seconds_to_us)
        .unwrap_or(0);
    match event["type"].as_str().unwrap_or_default() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            checkout(state, obj, created_us)
        }
        "invoice.paid" => invoice_paid(state, obj, created_us),
        "invoice.payment_failed" => invoice_failed(state, obj, created_us),
        "customer.subscription.updated" => subscription_changed(state, obj, created_us, false),
        "customer.subscription.deleted" => subscription_changed(state, obj, created_us, true),
        "charge.refunded" => {
            let Some(pi) = text(obj, &["payment_intent"]) else {
                return Ok(Decision::Ignore("refund without payment_intent".into()));
            };
            desk::refund(
                state,
                Provider::Stripe,
                pi,
                number(obj, &["amount_refunded"]).unwrap_or(0),
                created_us,
            )
        }
        other => Ok(Decision::Ignore(format!("unhandled type {other}"))),
    }
}

fn checkout(state: &AppState, obj: &Value, created_us: i64) -> Result<Decision, AppError> {
    let Some(user) = existing_user(state, text(obj, &["client_reference_id"]))? else {
        return Ok(Decision::Ignore("client_reference_id names no user".into()));
    };
    match text(obj, &["mode"]) {
        Some("payment") => {
            if text(obj, &["payment_status"]) != Some("paid") {
                return Ok(Decision::Ignore("checkout not paid yet".into()));
            }
            let Some(code) = text(obj, &["metadata", "pack"]) else {
                return Ok(Decision::Ignore("no metadata.pack".into()));
            };
            let Some(pack) = state.config.file.packs.get(code) else {
                return Ok(Decision::Ignore(format!("unknown pack {code}")));
            };
            let paid = number(obj, &["amount_total"]);
            let currency = text(obj, &["currency"]).map(str::to_ascii_lowercase);
            if paid != Some(pack.price_minor) || currency.as_deref() != Some(pack.currency.as_str())
            {
                let note = format!(
                    "mismatch: paid {paid:?} {currency:?} for {code} priced {} {}",
                    pack.price_minor, pack.currency
                );
                tracing::warn!(user = %user, %note, "pack price mismatch; no credits");
                state
                    .metrics
                    .payment_mismatches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(Decision::Ignore(note));
            }
            let payment_ref = text(obj, &["payment_intent"])
                .or_else(|| text(obj, &["id"]))
                .unwrap_or_default();
            desk::purchase(
                state,
                PackPurchase {
                    provider: Provider::Stripe,
                    user,
                    pack_code: code,
                    credits: pack.credits,
                    amount_minor: pack.price_minor,
                    currency: &pack.currency,
                    payment_ref,
                },
            )
        }
        Some("subscription") => {
            let Some(sub) = text(obj, &["subscription"]) else {
                return Ok(Decision::Ignore("no subscription id".into()));
            };
            let price = text(obj, &["metadata", "price_id"]).map_or_else(Vec::new, |p| vec![p]);
            let Some(tier) = tier_of(state, obj.get("metadata"), &price) else {
                return Ok(Decision::Ignore(
                    "no tier in metadata or price mapping".into(),
                ));
            };
            // An unpaid checkout records the subscription (later events find their user) but
            // grants nothing until a payment arrives.
            let status = match text(obj, &["payment_status"]) {
                Some("paid" | "no_payment_required") => SubStatus::Active,
                _ => SubStatus::Inactive,
            };
            let mut set = WriteSet::new();
            desk::subscription_set(
                state,
                &mut set,
                Provider::Stripe,
                user,
                text(obj, &["customer"]),
                sub,
                tier,
                status,
                None,
                created_us,
            )?;
            Ok(Decision::Apply {
                user: None,
                credit: None,
                set,
                note: format!(
                    "subscription {sub} started at {} ({})",
                    tier.as_str(),
                    status.as_str()
                ),
            })
        }
        other => Ok(Decision::Ignore(format!(
            "checkout mode {other:?} not handled"
        ))),
    }
}

/// The subscription id of an invoice, in either API version's place.
fn invoice_subscription(obj: &Value) -> Option<&str> {
    text(obj, &["subscription"])
        .or_else(|| text(obj, &["parent", "subscription_details", "subscription"]))
}

fn invoice_user(state: &AppState, obj: &Value) -> Result<Option<Uuid>, AppError> {
    if let Some(u) = invoice_subscription(obj)
        .map(|s| desk::user_of(state, Provider::Stripe, "subscription", s))
        .transpose()?
        .flatten()
    {
        return Ok(Some(u));
    }
    if let Some(u) = text(obj, &["customer"])
        .map(|c| desk::user_of(state, Provider::Stripe, "customer", c))
        .transpose()?
        .flatten()
    {
        return Ok(Some(u));
    }
    existing_user(
        state,
        text(
            obj,
            &["parent", "subscription_details", "metadata", "user_id"],
        ),
    )
}

fn invoice_paid(state: &AppState, obj: &Value, created_us: i64) -> Result<Decision, AppError> {
    let Some(invoice_id) = text(obj, &["id"]) else {
        return Ok(Decision::Ignore("invoice without id".into()));
    };
    // Only subscription invoices grant plan credits; a one-off invoice (a pack bought with
    // invoicing on, a manual invoice) is not a period.
    let reason = text(obj, &["billing_reason"]).unwrap_or("subscription");
    if invoice_subscription(obj).is_none() || !reason.starts_with("subscription") {
        return Ok(Decision::Ignore(format!(
            "invoice {invoice_id} is not a subscription period"
        )));
    }
    let Some(user) = invoice_user(state, obj)? else {
        return Ok(Decision::RetryLater(format!(
            "invoice {invoice_id}: subscription not known yet"
        )));
    };
    let known = invoice_subscription(obj)
        .map(|s| desk::subscription_of(state, Provider::Stripe, s))
        .transpose()?
        .flatten()
        .map(|(_, k)| k);
    let tier = tier_of(
        state,
        obj.get("parent")
            .and_then(|p| p.get("subscription_details"))
            .and_then(|d| d.get("metadata")),
        &price_ids(obj.get("lines")),
    )
    .or(known.as_ref().map(|s| s.tier).filter(|t| *t != Tier::Free));
    let Some(tier) = tier else {
        // The checkout that names the plan may still be on its way: let Stripe retry.
        return Ok(Decision::RetryLater(format!(
            "invoice {invoice_id}: no plan matches yet"
        )));
    };
    let period_end_us = obj["lines"]["data"]
        .get(0)
        .and_then(|l| l["period"]["end"].as_i64())
        .and_then(desk::seconds_to_us);
    let mut extra = WriteSet::new();
    let sub = invoice_subscription(obj)
        .map(str::to_string)
        .or_else(|| known.as_ref().map(|k| k.subscription_id.clone()))
        .unwrap_or_default();
    if known
        .as_ref()
        .is_none_or(|k| k.status != SubStatus::Cancelled)
    {
        desk::subscription_set(
            state,
            &mut extra,
            Provider::Stripe,
            user,
            text(obj, &["customer"]),
            &sub,
            tier,
            SubStatus::Active,
            period_end_us,
            created_us,
        )?;
    }
    let lines = obj["lines"]["data"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| InvoiceLine {
                    description: text(l, &["description"])
                        .unwrap_or("Subscription")
                        .chars()
                        .take(200)
                        .collect(),
                    quantity: number(l, &["quantity"]).unwrap_or(1),
                    amount_minor: l["amount"].as_i64().unwrap_or(0),
                })
                .take(100)
                .collect()
        })
        .unwrap_or_default();
    let currency = text(obj, &["currency"])
        .unwrap_or("usd")
        .to_ascii_lowercase();
    let billed = desk::Billed {
        user,
        provider: Provider::Stripe,
        provider_ref: invoice_id,
        amount_minor: number(obj, &["amount_paid"]).unwrap_or(0),
        currency: &currency,
        lines,
    };
    // The payment behind the invoice, in either API version's place: a refund names it.
    let payment = text(obj, &["payment_intent"]).or_else(|| {
        obj["payments"]["data"]
            .as_array()?
            .iter()
            .find_map(|p| text(p, &["payment", "payment_intent"]))
    });
    desk::period_paid(state, tier, billed, payment, extra)
}

fn invoice_failed(state: &AppState, obj: &Value, created_us: i64) -> Result<Decision, AppError> {
    let Some(user) = invoice_user(state, obj)? else {
        return Ok(Decision::RetryLater(
            "failed invoice for a subscription not known yet".into(),
        ));
    };
    let known = invoice_subscription(obj)
        .map(|s| desk::subscription_of(state, Provider::Stripe, s))
        .transpose()?
        .flatten()
        .filter(|(u, _)| *u == user);
    let Some((_, known)) = known else {
        return Ok(Decision::RetryLater(
            "failed invoice for a subscription not known yet".into(),
        ));
    };
    if known.status == SubStatus::Cancelled {
        return Ok(Decision::Ignore("subscription already cancelled".into()));
    }
    let mut set = WriteSet::new();
    // Past due keeps the tier until the provider cancels.
    desk::subscription_set(
        state,
        &mut set,
        Provider::Stripe,
        user,
        None,
        &known.subscription_id.clone(),
        known.tier,
        SubStatus::PastDue,
        None,
        created_us,
    )?;
    Ok(Decision::Apply {
        user: None,
        credit: None,
        set,
        note: "subscription past_due".into(),
    })
}

fn subscription_changed(
    state: &AppState,
    obj: &Value,
    created_us: i64,
    deleted: bool,
) -> Result<Decision, AppError> {
    let Some(sub) = text(obj, &["id"]) else {
        return Ok(Decision::Ignore("subscription without id".into()));
    };
    let user = match desk::user_of(state, Provider::Stripe, "subscription", sub)? {
        Some(u) => Some(u),
        None => existing_user(state, text(obj, &["metadata", "user_id"]))?,
    };
    let Some(user) = user else {
        return Ok(Decision::RetryLater(format!(
            "subscription {sub} not known yet"
        )));
    };
    // Each subscription's events change that subscription only; the tier follows all of
    // the user's subscriptions together.
    let known = state.store.get::<SubscriptionRecord>(&keys::subscription(
        user,
        Provider::Stripe.as_str(),
        sub,
    ))?;
    if let Some(k) = &known {
        if created_us < k.last_event_at_us {
            return Ok(Decision::Ignore(
                "older than the state already applied".into(),
            ));
        }
    }
    let status = if deleted {
        SubStatus::Cancelled
    } else {
        sub_status(text(obj, &["status"]).unwrap_or("active"))
    };
    let tier = tier_of(state, obj.get("metadata"), &price_ids(obj.get("items")))
        .or(known.as_ref().map(|k| k.tier))
        .unwrap_or(Tier::Free);
    let period_end_us = obj["current_period_end"]
        .as_i64()
        .or_else(|| {
            obj["items"]["data"]
                .get(0)
                .and_then(|i| i["current_period_end"].as_i64())
        })
        .and_then(desk::seconds_to_us);
    let mut set = WriteSet::new();
    let r = desk::subscription_set(
        state,
        &mut set,
        Provider::Stripe,
        user,
        text(obj, &["customer"]),
        sub,
        tier,
        status,
        period_end_us,
        created_us,
    )?;
    Ok(Decision::Apply {
        user: None,
        credit: None,
        set,
        note: format!("subscription {} {}", r.status.as_str(), r.tier.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently with Python:
    // hmac.new(b"whsec_test_secret", b"1700000000.{\"id\":\"evt_1\"}", hashlib.sha256).hexdigest()
    const VECTOR_SIG: &str = "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a";

    #[test]
    fn the_signature_matches_an_independent_implementation() {
        let body = br#"{"id":"evt_1"}"#;
        assert_eq!(
            signature_header("whsec_test_secret", 1_700_000_000, body),
            format!("t=1700000000,v1={VECTOR_SIG}")
        );
        assert_eq!(
            verify_signature(
                "whsec_test_secret",
                Some(&format!("t=1700000000,v1={VECTOR_SIG}")),
                body,
                1_700_000_100
            ),
            Ok(())
        );
    }

    #[test]
    fn bad_signatures_are_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let good = signature_header("whsec_a", 1000, body);
        assert_eq!(
            verify_signature("whsec_b", Some(&good), body, 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature("whsec_a", Some(&good), b"{\"id\":\"evt_2\"}", 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            verify_signature("whsec_a", Some(&good), body, 1000 + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("whsec_a", None, body, 1000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature("whsec_a", Some("garbage"), body, 1000),
            Err(SignatureError::Malformed)
        );
        // A forged v0 is never trusted.
        let v0 = good.replace("v1=", "v0=");
        assert_eq!(
            verify_signature("whsec_a", Some(&v0), body, 1000),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn any_matching_v1_passes_during_secret_rotation() {
        let body = b"{}";
        let new = signature_header("whsec_new", 5000, body);
        let old_sig = signature_header("whsec_old", 5000, body);
        let both = format!("{},v1={}", old_sig, new.split("v1=").nth(1).unwrap());
        assert_eq!(
            verify_signature("whsec_new", Some(&both), body, 5000),
            Ok(())
        );
    }
}
