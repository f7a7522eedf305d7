//! Moving generation requests: each change of a request is a compare-and-set on its stored
//! record (the write carries "the record is still the one I read"), so concurrent movers — the
//! publisher, the results consumer, a cancel, the timeout sweep — can never apply two changes on
//! the same state. Refunds go through the user's credit account actor; completions (which add
//! assets) through the owner's workspace actor, which also serializes project deletions. The
//! rules themselves are in [`crate::lifecycle`].

use storage::keys;
use storage::ledger::Posting;
use storage::records::*;
use storage::{now_us, Reader, StorageError, Store, WriteOutcome, WriteSet};
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

/// Confirms recorded in one write set at most: a set stays small enough for the writer's
/// batch, and one conflict sends at most this many jobs to the one-by-one path.
pub const CONFIRMS_PER_WRITE_MAX: usize = 256;

/// Records a batch of confirms (id, `outbox_order` key) as one write set read from one snapshot:
/// one writer job instead of one per job. If any of their requests changed in between (a
/// cancel, a worker's result) the set's conditions fail and each job is recorded on its own.
/// Returns one result per job, in order.
pub async fn mark_published_batch(
    store: &Store,
    jobs: &[(Uuid, Vec<u8>)],
) -> Vec<Result<(), GenerationError>> {
    assert!(
        jobs.len() <= CONFIRMS_PER_WRITE_MAX,
        "confirm batch over its bound"
    );
    if let Ok(set) = batch_set(store, jobs) {
        if let Ok(WriteOutcome::Committed) = store.write(set).await {
            return jobs.iter().map(|_| Ok(())).collect();
        }
    }
    let one_by_one = jobs.iter().map(|(id, key)| mark_published(store, *id, key));
    futures_util::future::join_all(one_by_one).await
}

fn batch_set(store: &Store, jobs: &[(Uuid, Vec<u8>)]) -> Result<WriteSet, StorageError> {
    let reads = store.read()?;
    let now = now_us();
    let ids: Vec<Vec<u8>> = jobs.iter().map(|(id, _)| keys::id(*id)).collect();
    let current = reads.get_many::<GenerationRecord>(&ids)?;
    let mut set = WriteSet::new();
    for ((id, order_key), current) in jobs.iter().zip(current) {
        set.extend(published_set(current.as_ref(), *id, order_key, now));
    }
    Ok(set)
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
