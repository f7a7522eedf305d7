//! Moving generation requests: each change of a request is a compare-and-set on its stored
//! record (the write carries "the record is still the one I read"), so concurrent movers — the
//! publisher, the results consumer, a cancel, the timeout sweep — can never apply two changes on
//! the same state. Refunds go through the user's credit account actor; completions (which add
//! assets) through the owner's workspace actor, which also serializes project deletions. The
//! rules themselves are in [`crate::lifecycle`].

use storage::keys;
use storage::ledger::Posting;
use storage::records::*;
use storage::{now_us, StorageError, Store, WriteOutcome};
use uuid::Uuid;

use crate::account::{AccountError, AccountRegistry, Apply, Outcome};
use crate::lifecycle::{decide, finish_set, published_set, Decision, Event};
use crate::workspace::{CompleteGeneration, WorkspaceError, WorkspaceRegistry};

/// Attempts of one compare-and-set before giving up (each failure means someone else moved the
/// request meanwhile, which re-reading settles).
const CAS_ATTEMPTS_MAX: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored
pub enum EventOutcome {
    /// Applied and durable; `balance_after` when a refund was written.
    Applied {
        generation: GenerationRecord,
        balance_after: Option<u64>,
    },
    Ignored(GenerationRecord),
    Refused(GenerationRecord),
}

#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    #[error("no generation request {0}")]
    Unknown(Uuid),
    #[error("the request kept changing under us; retry")]
    Contended,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Applies `event` to request `id`, exactly once, whoever else is moving it.
pub async fn apply_event(
    store: &Store,
    accounts: &AccountRegistry,
    workspaces: &WorkspaceRegistry,
    id: Uuid,
    event: Event,
) -> Result<EventOutcome, GenerationError> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        let current = store
            .get::<GenerationRecord>(&keys::id(id))?
            .ok_or(GenerationError::Unknown(id))?;
        let next = match decide(&current, &event, now_us()) {
            Decision::Ignore => return Ok(EventOutcome::Ignored(current)),
            Decision::Refuse => return Ok(EventOutcome::Refused(current)),
            Decision::Apply(next) => next,
        };
        if next.status.is_refunded() {
            let refund = Apply {
                posting: Posting {
                    amount: i64::try_from(current.cost).map_err(|_| GenerationError::Contended)?,
                    kind: LedgerKind::GenerationRefund,
                    description: format!("Refund: generation {}", next.status.as_str()),
                    generation_request_id: Some(id),
                    invoice_id: None,
                },
                idempotency: None,
                extra: finish_set(&current, &next),
            };
            match accounts.apply(current.user_id, refund).await? {
                Outcome::Applied { entry } => {
                    return Ok(EventOutcome::Applied {
                        generation: next,
                        balance_after: Some(entry.balance_after),
                    })
                }
                Outcome::ExtraConditionFailed { .. } => continue,
                other => {
                    return Err(GenerationError::Account(AccountError::Corrupt(
                        current.user_id,
                        format!("refund answered {other:?}"),
                    )))
                }
            }
        }
        if let Event::Completed { assets } = &event {
            let change = CompleteGeneration {
                generation: Box::new(current.clone()),
                completed: Box::new(next.clone()),
                assets: assets.clone(),
            };
            match workspaces.change(current.user_id, change).await {
                Ok(done) => {
                    return Ok(EventOutcome::Applied {
                        generation: done,
                        balance_after: None,
                    })
                }
                Err(WorkspaceError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        match store.write(finish_set(&current, &next)).await? {
            WriteOutcome::Committed => {
                return Ok(EventOutcome::Applied {
                    generation: next,
                    balance_after: None,
                })
            }
            WriteOutcome::ConditionFailed(_) => continue,
        }
    }
    Err(GenerationError::Contended)
}

/// Records the broker's confirm of a job (see [`published_set`]); `order_key` is the job's
/// `outbox_order` key, which the publisher's cursor found it under.
pub async fn mark_published(
    store: &Store,
    id: Uuid,
    order_key: &[u8],
) -> Result<(), GenerationError> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        let current = store.get::<GenerationRecord>(&keys::id(id))?;
        match store
            .write(published_set(current.as_ref(), id, order_key, now_us()))
            .await?
        {
            WriteOutcome::Committed => return Ok(()),
            WriteOutcome::ConditionFailed(_) => continue,
        }
    }
    Err(GenerationError::Contended)
}
