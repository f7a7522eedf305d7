use std::sync::atomic::Ordering;

use actors::{AccountRegistry, Apply, IdempotencyKey, Outcome};
use sha2::{Digest, Sha256};
use storage::keys;
use storage::ledger::Posting;
use storage::records::{AccountRecord, LedgerEntry, LedgerKind};
use storage::{Reader, Store, WriteSet};
use uuid::Uuid;

use crate::domain::{CreditDelta, Description, IdempotencyKeyValue};
use crate::error::AppError;
use crate::extract::Page;
use crate::metrics::Metrics;

/// The caller's ledger, newest first: the account's head, then each entry's predecessor. The
/// cursor is the id of the next (older) entry to show.
pub fn ledger_page(
    store: &impl Reader,
    user_id: Uuid,
    page: &Page,
) -> Result<(Vec<LedgerEntry>, Option<String>), AppError> {
    let bad_cursor = || AppError::validation("cursor", "the cursor is not one we issued");
    let mut next = match &page.after {
        Some(c) => Some(Uuid::from_slice(c).map_err(|_| bad_cursor())?),
        None => store
            .get::<AccountRecord>(&keys::account(user_id))?
            .and_then(|a| a.head_id),
    };
    let mut entries = Vec::with_capacity(page.limit.min(64));
    while let Some(id) = next {
        if entries.len() == page.limit {
            break;
        }
        let entry = store.get::<LedgerEntry>(&keys::ledger(id))?;
        let entry = match entry {
            Some(e) if e.user_id == user_id => e,
            // The first id came from the client: an id that is missing or another user's is
            // one answer, which tells nothing about other ledgers.
            _ if entries.is_empty() && page.after.is_some() => return Err(bad_cursor()),
            Some(_) => {
                return Err(AppError::internal(format!(
                    "ledger chain of {user_id} leaves the user at {id}"
                )))
            }
            None => return Err(AppError::internal(format!("ledger entry {id} is missing"))),
        };
        next = entry.prev_id;
        entries.push(entry);
    }
    let cursor = next
        .filter(|_| entries.len() == page.limit)
        .map(|id| crate::extract::encode_cursor(id.as_bytes()));
    Ok((entries, cursor))
}

/// The result of an admin adjustment, for the handler to shape.
pub enum Adjusted {
    Applied(LedgerEntry),
    Replayed(LedgerEntry),
}

/// An `admin_adjustment` through the user's account actor. A deduct beyond the balance is
/// refused and changes nothing.
pub async fn admin_adjust(
    accounts: &AccountRegistry,
    metrics: &Metrics,
    admin_id: Uuid,
    user_id: Uuid,
    delta: CreditDelta,
    description: Description,
    idempotency: Option<IdempotencyKeyValue>,
) -> Result<Adjusted, AppError> {
    let description = description.into_inner();
    let idempotency = idempotency.map(|k| IdempotencyKey {
        key_hash: Sha256::digest(format!("admin_adjustment\0{admin_id}\0{}", k.as_str())).into(),
        request_hash: Sha256::digest(format!("{}\0{description}", delta.get())).into(),
    });
    let msg = Apply {
        posting: Posting {
            amount: delta.get(),
            kind: LedgerKind::AdminAdjustment,
            description,
            generation_request_id: None,
            invoice_id: None,
        },
        idempotency,
        extra: WriteSet::new(),
    };
    match accounts.apply(user_id, msg).await? {
        Outcome::Applied { entry } => {
            metrics.ledger_applied.fetch_add(1, Ordering::Relaxed);
            tracing::info!(admin = %admin_id, user = %user_id, amount = entry.amount, balance_after = entry.balance_after, "admin credit adjustment");
            Ok(Adjusted::Applied(entry))
        }
        Outcome::AlreadyApplied { entry } => {
            metrics.ledger_replayed.fetch_add(1, Ordering::Relaxed);
            Ok(Adjusted::Replayed(entry))
        }
        Outcome::InsufficientCredits { balance } => {
            metrics.ledger_insufficient.fetch_add(1, Ordering::Relaxed);
            Err(AppError::InsufficientCredits {
                balance,
                required: delta.get().unsigned_abs(),
            })
        }
        Outcome::IdempotencyKeyReused => Err(AppError::IdempotencyKeyReused),
        Outcome::ExtraConditionFailed { .. } => {
            Err(AppError::internal("unexpected extra condition"))
        }
    }
}

/// Deletes idempotency records older than their 24 h window (at most `limit` per call). An
/// expired record is already ignored by the account actor; this only reclaims the space.
pub async fn purge_expired_idempotency(store: &Store, limit: usize) -> Result<usize, AppError> {
    use storage::records::{IdempotencyRecord, IDEMPOTENCY_TTL_US};
    let cutoff = storage::now_us() - IDEMPOTENCY_TTL_US;
    let mut set = WriteSet::new();
    let mut purged = 0;
    store.visit::<IdempotencyRecord>(&[], |k, r| {
        if r.created_at_us < cutoff {
            // Only if unchanged: a concurrent reuse of the key may have just rewritten it.
            set.require_equal(k.clone(), &r);
            set.delete::<IdempotencyRecord>(k);
            purged += 1;
        }
        purged < limit
    })?;
    if !set.is_empty() && store.write(set).await? != storage::WriteOutcome::Committed {
        return Ok(0); // a record was reused meanwhile; the next run retries
    }
    Ok(purged)
}
