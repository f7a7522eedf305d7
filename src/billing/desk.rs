//! The shared machinery of payment events: once-only recording, invoices with gapless numbers,
//! credit movements with their records in one write.

use actors::{Apply, Outcome};
use storage::keys;
use storage::ledger::Posting;
use storage::records::*;
use storage::{now_us, WriteOutcome, WriteSet};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::AppError;
use crate::state::AppState;

/// Attempts of one event before answering 503. Events take turns across nodes (the billing
/// lock), so a failure means a record moved under a lock lost with its connection, or a
/// change from outside billing (a deduct on the same balance, a profile edit).
const ATTEMPTS_MAX: usize = 16;
/// After a failed attempt, wait up to this long (a random share of it) before deciding again,
/// so two nodes that keep meeting on one record stop meeting in step.
const RETRY_JITTER_US_MAX: u64 = 4_000;

/// What an event comes to, decided from the event and the stored state.
pub enum Decision {
    /// Write `set` (and move `credit` credits for `user`, in the same write).
    Apply {
        user: Option<Uuid>,
        credit: Option<Posting>,
        set: WriteSet,
        note: String,
    },
    /// Nothing to change; the event is recorded as seen with this note.
    Ignore(String),
    /// Cannot be applied yet (e.g. an invoice for a subscription not known yet): 503, so the
    /// provider retries later. Nothing is recorded.
    RetryLater(String),
}

/// What the webhook answers.
#[derive(Debug)]
pub enum Answer {
    Applied(String),
    Replayed,
    Ignored(String),
}

pub fn event_key(provider: Provider, event_id: &str) -> Vec<u8> {
    format!("{}:{event_id}", provider.as_str()).into_bytes()
}

pub fn ref_key(parts: &[&str]) -> Vec<u8> {
    parts.join(":").into_bytes()
}

/// Applies one verified event at most once. `decide` is called again on each attempt, so it
/// always reads fresh state.
pub async fn apply_event<F>(
    state: &AppState,
    provider: Provider,
    event_id: &str,
    event_type: &str,
    mut decide: F,
) -> Result<Answer, AppError>
where
    F: FnMut(&AppState) -> Result<Decision, AppError>,
{
    let _one_at_a_time = state.billing_lock.lock().await?;
    let key = event_key(provider, event_id);
    for _ in 0..ATTEMPTS_MAX {
        if state.store.get::<ProcessedEvent>(&key)?.is_some() {
            return Ok(Answer::Replayed);
        }
        let (user, credit, mut set, note, ignored) = match decide(state)? {
            Decision::Apply {
                user,
                credit,
                set,
                note,
            } => (user, credit, set, note, false),
            Decision::Ignore(note) => (None, None, WriteSet::new(), note, true),
            Decision::RetryLater(why) => return Err(AppError::Unavailable(why)),
        };
        let mut seen = WriteSet::new();
        seen.require_absent::<ProcessedEvent>(key.clone());
        seen.put(
            key.clone(),
            &ProcessedEvent {
                event_type: event_type.to_string(),
                outcome: note.clone(),
                received_at_us: now_us(),
            },
        );
        seen.extend(std::mem::take(&mut set));
        let committed = match (user, credit) {
            (Some(user), Some(posting)) => match state
                .accounts
                .apply(
                    user,
                    Apply {
                        posting,
                        idempotency: None,
                        extra: seen,
                    },
                )
                .await?
            {
                Outcome::Applied { .. } => true,
                Outcome::ExtraConditionFailed { index } => {
                    tracing::debug!(
                        index,
                        event_id,
                        "a record moved while applying the event; deciding again"
                    );
                    false
                }
                Outcome::InsufficientCredits { .. } => false, // the balance moved; decide again
                other => {
                    return Err(AppError::internal(format!(
                        "billing credit answered {other:?}"
                    )))
                }
            },
            _ => state.store.write(seen).await? == WriteOutcome::Committed,
        };
        if committed {
            tracing::info!(provider = provider.as_str(), event_id, event_type, note = %note, "payment event applied");
            return Ok(if ignored {
                Answer::Ignored(note)
            } else {
                Answer::Applied(note)
            });
        }
        tokio::time::sleep(jitter()).await;
    }
    Err(AppError::Unavailable(
        "the records changed while applying the event; retry".into(),
    ))
}

fn jitter() -> std::time::Duration {
    let mut b = [0u8; 8];
    // No entropy (never seen) only means no spread: the attempts are still bounded.
    let _ = getrandom::fill(&mut b);
    std::time::Duration::from_micros(u64::from_le_bytes(b) % RETRY_JITTER_US_MAX)
}

/// What a payment bills: who, through which provider and reference, how much.
pub struct Billed<'a> {
    pub user: Uuid,
    pub provider: Provider,
    /// The provider's id of the payment or period (payment intent, invoice, capture, sale).
    pub provider_ref: &'a str,
    pub amount_minor: u64,
    pub currency: &'a str,
    pub lines: Vec<InvoiceLine>,
}

/// Adds a new invoice to `set` with the next gapless number of the current year (the counter
/// write is conditioned on the value read, so two invoices can never take one number).
pub fn add_invoice(
    state: &AppState,
    set: &mut WriteSet,
    billed: Billed,
) -> Result<InvoiceRecord, AppError> {
    let Billed {
        user,
        provider,
        provider_ref,
        amount_minor,
        currency,
        lines,
    } = billed;
    let now = now_us();
    let year = OffsetDateTime::from_unix_timestamp(now / 1_000_000)
        .map(|t| t.year())
        .unwrap_or(1970) as u16;
    let counter_key = year.to_be_bytes().to_vec();
    let counter = state.store.get::<InvoiceCounter>(&counter_key)?;
    match counter {
        Some(c) => set.require_equal(counter_key.clone(), &c),
        None => set.require_absent::<InvoiceCounter>(counter_key.clone()),
    };
    let seq = counter.map_or(1, |c| c.next);
    set.put(counter_key, &InvoiceCounter { next: seq + 1 });
    let invoice = InvoiceRecord {
        id: Uuid::now_v7(),
        number: format!("CF/{year}/{seq:06}"),
        year,
        seq,
        user_id: user,
        provider,
        provider_ref: provider_ref.to_string(),
        amount_minor,
        currency: currency.to_string(),
        status: "paid".into(),
        lines,
        created_at_us: now,
    };
    set.put(keys::id(invoice.id), &invoice);
    set.put(keys::pair(user, invoice.id), &InvoiceOfUser);
    Ok(invoice)
}

/// Sets the user's tier in `set` (conditioned on the user record read).
pub fn set_tier(
    state: &AppState,
    set: &mut WriteSet,
    user: Uuid,
    tier: Tier,
) -> Result<(), AppError> {
    let Some(u) = state.store.get::<UserRecord>(&keys::user(user))? else {
        return Ok(()); // deleted user: the subscription record still follows the provider
    };
    if u.tier != tier {
        let mut next = u.clone();
        next.tier = tier;
        next.updated_at_us = now_us();
        set.require_equal(keys::user(user), &u);
        set.put(keys::user(user), &next);
    }
    Ok(())
}

/// A credit pack purchase: credits in, invoice, purchase record for later refunds, natural key.
pub struct PackPurchase<'a> {
    pub provider: Provider,
    pub user: Uuid,
    pub pack_code: &'a str,
    pub credits: u64,
    pub amount_minor: u64,
    pub currency: &'a str,
    /// The provider's id of the payment (Stripe payment intent, PayPal capture id).
    pub payment_ref: &'a str,
}

pub fn purchase(state: &AppState, p: PackPurchase) -> Result<Decision, AppError> {
    let purchase_key = ref_key(&[p.provider.as_str(), "payment", p.payment_ref]);
    if state.store.get::<PurchaseRecord>(&purchase_key)?.is_some() {
        return Ok(Decision::Ignore(format!(
            "payment {} already credited",
            p.payment_ref
        )));
    }
    let mut set = WriteSet::new();
    let line = InvoiceLine {
        description: format!("Credit pack {} ({} credits)", p.pack_code, p.credits),
        quantity: 1,
        amount_minor: p.amount_minor as i64,
    };
    let billed = Billed {
        user: p.user,
        provider: p.provider,
        provider_ref: p.payment_ref,
        amount_minor: p.amount_minor,
        currency: p.currency,
        lines: vec![line],
    };
    let invoice = add_invoice(state, &mut set, billed)?;
    let now = now_us();
    set.require_absent::<PurchaseRecord>(purchase_key.clone());
    set.put(
        purchase_key,
        &PurchaseRecord {
            user_id: p.user,
            pack: p.pack_code.to_string(),
            credits: p.credits,
            amount_minor: p.amount_minor,
            currency: p.currency.to_string(),
            invoice_id: invoice.id,
            refunded_minor: 0,
            reversed_credits: 0,
            owed_credits: 0,
            created_at_us: now,
            updated_at_us: now,
        },
    );
    let posting = Posting {
        amount: p.credits as i64,
        kind: LedgerKind::Purchase,
        description: format!("Purchase: {} ({})", p.pack_code, invoice.number),
        generation_request_id: None,
        invoice_id: Some(invoice.id),
    };
    Ok(Decision::Apply {
        user: Some(p.user),
        credit: Some(posting),
        set,
        note: format!("pack {} credited", p.pack_code),
    })
}

/// How long a refund of a payment we have not recorded is retried: its purchase or period
/// event may still be on its way. After that it names a payment that never credited anything
/// here, and retrying for the provider's three days would change nothing.
const UNKNOWN_REFUND_RETRY_US: i64 = 3_600_000_000;

/// A refund of a purchase or a paid subscription period: reverses the proportional share of
/// its credits (rounded down), never taking the balance below zero; what cannot be taken is
/// recorded as owed. `event_at_us` is when the provider created the refund event.
pub fn refund(
    state: &AppState,
    provider: Provider,
    payment_ref: &str,
    refunded_total_minor: u64,
    event_at_us: i64,
) -> Result<Decision, AppError> {
    let key = ref_key(&[provider.as_str(), "payment", payment_ref]);
    let Some(p) = state.store.get::<PurchaseRecord>(&key)? else {
        if now_us().saturating_sub(event_at_us) < UNKNOWN_REFUND_RETRY_US {
            return Ok(Decision::RetryLater(format!(
                "refund of unknown payment {payment_ref}"
            )));
        }
        return Ok(Decision::Ignore(format!(
            "refund of payment {payment_ref}, which credited nothing here"
        )));
    };
    let refunded = refunded_total_minor.min(p.amount_minor);
    if refunded <= p.refunded_minor {
        return Ok(Decision::Ignore("refund already applied".into()));
    }
    // floor(credits * refunded / paid), in u128 so nothing overflows.
    let target =
        (u128::from(p.credits) * u128::from(refunded) / u128::from(p.amount_minor.max(1))) as u64;
    let due = target.saturating_sub(p.reversed_credits + p.owed_credits);
    let balance = state
        .store
        .get::<AccountRecord>(&keys::account(p.user_id))?
        .map_or(0, |a| a.balance);
    let taken = due.min(balance);
    let mut next = p.clone();
    next.refunded_minor = refunded;
    next.reversed_credits += taken;
    next.owed_credits += due - taken;
    next.updated_at_us = now_us();
    let mut set = WriteSet::new();
    set.require_equal(key.clone(), &p);
    set.put(key, &next);
    if let Some(inv) = state.store.get::<InvoiceRecord>(&keys::id(p.invoice_id))? {
        let mut inv2 = inv.clone();
        inv2.status = if refunded >= p.amount_minor {
            "refunded"
        } else {
            "partially_refunded"
        }
        .into();
        set.require_equal(keys::id(inv.id), &inv);
        set.put(keys::id(inv.id), &inv2);
    }
    let note = format!(
        "refund of {payment_ref}: {taken} credits reversed, {} owed",
        due - taken
    );
    if due - taken > 0 {
        tracing::warn!(user = %p.user_id, owed = due - taken, payment_ref, "refund exceeds the balance; recorded as owed");
    }
    let credit = (taken > 0).then(|| Posting {
        amount: -(taken as i64),
        kind: LedgerKind::PaymentReversal,
        description: format!("Refund of {payment_ref}"),
        generation_request_id: None,
        invoice_id: Some(p.invoice_id),
    });
    Ok(Decision::Apply {
        user: Some(p.user_id),
        credit,
        set,
        note,
    })
}

/// A paid subscription period: the plan's credits, once per provider invoice/sale id.
/// `billed.provider_ref` is the period's id; `extra` holds the caller's other records. With the
/// payment's id (`payment_ref`), the grant is recorded like a pack purchase, so a refund of the
/// period reverses its credits proportionally.
pub fn period_paid(
    state: &AppState,
    tier: Tier,
    billed: Billed,
    payment_ref: Option<&str>,
    mut extra: WriteSet,
) -> Result<Decision, AppError> {
    let (user, provider, period_ref) = (billed.user, billed.provider, billed.provider_ref);
    let natural = ref_key(&[provider.as_str(), "period", period_ref]);
    if state.store.get::<BillingRef>(&natural)?.is_some() {
        return Ok(Decision::Ignore(format!(
            "period {period_ref} already granted"
        )));
    }
    let credits = state
        .config
        .file
        .plans
        .get(tier.as_str())
        .map_or(0, |p| p.monthly_credits);
    let (amount_minor, currency) = (billed.amount_minor, billed.currency.to_string());
    let invoice = add_invoice(state, &mut extra, billed)?;
    if let Some(payment) = payment_ref.filter(|_| credits > 0) {
        let key = ref_key(&[provider.as_str(), "payment", payment]);
        let now = now_us();
        extra.require_absent::<PurchaseRecord>(key.clone());
        extra.put(
            key,
            &PurchaseRecord {
                user_id: user,
                pack: format!("plan:{}", tier.as_str()),
                credits,
                amount_minor,
                currency,
                invoice_id: invoice.id,
                refunded_minor: 0,
                reversed_credits: 0,
                owed_credits: 0,
                created_at_us: now,
                updated_at_us: now,
            },
        );
    }
    extra.require_absent::<BillingRef>(natural.clone());
    extra.put(
        natural,
        &BillingRef {
            user_id: user,
            invoice_id: Some(invoice.id),
        },
    );
    let credit = (credits > 0).then(|| Posting {
        amount: credits as i64,
        kind: LedgerKind::PlanGrant,
        description: format!(
            "Plan {}: {} credits ({})",
            tier.as_str(),
            credits,
            invoice.number
        ),
        generation_request_id: None,
        invoice_id: Some(invoice.id),
    });
    Ok(Decision::Apply {
        user: Some(user),
        credit,
        set: extra,
        note: format!("{} credits granted for {period_ref}", credits),
    })
}

/// Starts or updates a subscription record, its provider refs, and the user's tier.
#[allow(clippy::too_many_arguments)]
pub fn subscription_set(
    state: &AppState,
    set: &mut WriteSet,
    provider: Provider,
    user: Uuid,
    customer_id: Option<&str>,
    subscription_id: &str,
    tier: Tier,
    status: SubStatus,
    period_end_us: Option<i64>,
    event_at_us: i64,
) -> Result<SubscriptionRecord, AppError> {
    let key = keys::subscription(user, provider.as_str(), subscription_id);
    let old = state.store.get::<SubscriptionRecord>(&key)?;
    if let Some(o) = &old {
        // Delivered late: state from an older event never overwrites newer state.
        if event_at_us < o.last_event_at_us {
            return Ok(o.clone());
        }
    }
    match &old {
        Some(o) => set.require_equal(key.clone(), o),
        None => set.require_absent::<SubscriptionRecord>(key.clone()),
    };
    let record = SubscriptionRecord {
        user_id: user,
        provider,
        customer_id: customer_id
            .map(str::to_string)
            .or_else(|| old.as_ref().and_then(|o| o.customer_id.clone())),
        subscription_id: subscription_id.to_string(),
        tier,
        status,
        current_period_end_us: period_end_us
            .or_else(|| old.as_ref().and_then(|o| o.current_period_end_us)),
        last_event_at_us: event_at_us.max(old.as_ref().map_or(0, |o| o.last_event_at_us)),
        updated_at_us: now_us(),
    };
    set.put(key, &record);
    if let Some(c) = customer_id {
        set.put(
            ref_key(&[provider.as_str(), "customer", c]),
            &BillingRef {
                user_id: user,
                invoice_id: None,
            },
        );
    }
    set.put(
        ref_key(&[provider.as_str(), "subscription", subscription_id]),
        &BillingRef {
            user_id: user,
            invoice_id: None,
        },
    );
    set_tier(state, set, user, tier_with(state, user, &record)?)?;
    Ok(record)
}

/// The user's tier once `changed` is stored: the highest among their subscriptions that grant
/// one (each subscription's events change only that subscription), else free.
fn tier_with(state: &AppState, user: Uuid, changed: &SubscriptionRecord) -> Result<Tier, AppError> {
    let others = state.store.scan::<SubscriptionRecord>(
        &keys::user(user),
        None,
        storage::Direction::Forward,
        SUBSCRIPTIONS_PER_USER_READ_MAX,
    )?;
    let same = |s: &SubscriptionRecord| {
        s.provider == changed.provider && s.subscription_id == changed.subscription_id
    };
    Ok(others
        .iter()
        .map(|(_, s)| s)
        .filter(|s| !same(s))
        .chain(std::iter::once(changed))
        .filter(|s| s.status.grants_tier())
        .map(|s| s.tier)
        .max()
        .unwrap_or(Tier::Free))
}

/// Subscriptions of one user read to decide the tier (far more than anyone has).
const SUBSCRIPTIONS_PER_USER_READ_MAX: usize = 1000;

/// The user and stored record of a provider's subscription id, once an event named it.
pub fn subscription_of(
    state: &AppState,
    provider: Provider,
    subscription_id: &str,
) -> Result<Option<(Uuid, SubscriptionRecord)>, AppError> {
    let Some(user) = user_of(state, provider, "subscription", subscription_id)? else {
        return Ok(None);
    };
    let key = keys::subscription(user, provider.as_str(), subscription_id);
    Ok(state
        .store
        .get::<SubscriptionRecord>(&key)?
        .map(|s| (user, s)))
}

/// The user behind a provider id, if recorded.
pub fn user_of(
    state: &AppState,
    provider: Provider,
    kind: &str,
    id: &str,
) -> Result<Option<Uuid>, AppError> {
    Ok(state
        .store
        .get::<BillingRef>(&ref_key(&[provider.as_str(), kind, id]))?
        .map(|r| r.user_id))
}

/// A string at `path` in a JSON value, if present and non-empty.
pub fn text<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The user named by a provider's reference field, if it is a UUID of an existing user.
pub fn existing_user(state: &AppState, raw: Option<&str>) -> Result<Option<Uuid>, AppError> {
    let Some(id) = raw.and_then(|r| Uuid::parse_str(r).ok()) else {
        return Ok(None);
    };
    Ok(state
        .store
        .get::<UserRecord>(&keys::user(id))?
        .map(|u| u.id))
}

pub fn tier_named(name: &str) -> Option<Tier> {
    Tier::parse(name).filter(|t| *t != Tier::Free)
}

/// Unix seconds from a provider as our microseconds; `None` when out of range (a forged or
/// broken timestamp is treated as absent, never wrapped).
pub fn seconds_to_us(s: i64) -> Option<i64> {
    s.checked_mul(1_000_000)
}
