//! Generation requests: the state machine and the writes that move a request along it.
//!
//! Every change of a request is a compare-and-set on its stored record (the write carries "the
//! record is still the one I read"), so concurrent movers — the publisher, the results consumer,
//! a cancel, the timeout sweep — can never apply two changes on the same state. Money moves
//! (refunds) go through the user's credit account actor; assets are created through the
//! owner's workspace actor, which also serializes project deletions.

use serde::Serialize;
use storage::keys;
use storage::ledger::Posting;
use storage::records::*;
use storage::{now_us, StorageError, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::account::{AccountError, Apply, Outcome};
use crate::workspace::{
    Changed, Command, NewAsset, WorkspaceError, WorkspaceRegistry, ASSETS_PER_PROJECT_MAX,
};
use crate::AccountRegistry;

/// Attempts of one compare-and-set before giving up (each failure means someone else moved the
/// request meanwhile, which re-reading settles).
const CAS_ATTEMPTS_MAX: usize = 8;

/// Something that happens to a request.
#[derive(Debug, Clone)]
pub enum Event {
    /// The broker confirmed the job.
    Queued,
    Processing,
    Completed {
        assets: Vec<NewAsset>,
    },
    Failed {
        error: String,
    },
    /// The user cancelled (allowed while pending or queued).
    Cancel,
    /// No result within the deadline.
    Timeout,
}

impl Event {
    fn target(&self) -> GenStatus {
        match self {
            Event::Queued => GenStatus::Queued,
            Event::Processing => GenStatus::Processing,
            Event::Completed { .. } => GenStatus::Completed,
            Event::Failed { .. } | Event::Timeout => GenStatus::Failed,
            Event::Cancel => GenStatus::Cancelled,
        }
    }
}

/// What the state machine says about an event in a state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored
pub enum Decision {
    /// Move to the new record (refund with it when the new status is failed/cancelled).
    Apply(GenerationRecord),
    /// A duplicate, late or out-of-order event: nothing to do, and nothing wrong.
    Ignore,
    /// Not allowed from this state (a cancel after the work started).
    Refuse,
}

pub const TIMEOUT_ERROR: &str = "generation_timeout";

/// The pure state machine: a status never moves backwards, terminal states are final, a cancel
/// is allowed only from pending or queued.
pub fn decide(current: &GenerationRecord, event: &Event, now_us: i64) -> Decision {
    let target = event.target();
    if matches!(event, Event::Cancel) && current.status.rank() > GenStatus::Queued.rank() {
        return if current.status == GenStatus::Cancelled {
            Decision::Ignore
        } else {
            Decision::Refuse
        };
    }
    if current.status.is_terminal() || target.rank() <= current.status.rank() {
        return Decision::Ignore;
    }
    let mut next = current.clone();
    next.status = target;
    next.updated_at_us = now_us;
    match event {
        Event::Failed { error } => next.error = Some(error.clone()),
        Event::Timeout => next.error = Some(TIMEOUT_ERROR.to_string()),
        _ => {}
    }
    Decision::Apply(next)
}

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

/// The records that leave with a request once it is terminal (or queued: the outbox entry).
fn finish_set(old: &GenerationRecord, next: &GenerationRecord) -> WriteSet {
    let mut set = WriteSet::new();
    set.require_equal(keys::id(old.id), old);
    set.put(keys::id(next.id), next);
    if next.status != GenStatus::Pending {
        // Harmless when already gone; a cancelled or failed pending job must not be published.
        set.delete::<OutboxRecord>(keys::id(next.id));
    }
    if next.status.is_terminal() {
        set.delete::<LiveGeneration>(keys::live_generation(old.deadline_at_us, old.id));
    }
    set
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
            let command = Command::CompleteGeneration {
                generation: Box::new(current.clone()),
                completed: Box::new(next.clone()),
                assets: assets.clone(),
            };
            match workspaces.change(current.user_id, command).await {
                Ok(Changed::Generation(done)) => {
                    return Ok(EventOutcome::Applied {
                        generation: *done,
                        balance_after: None,
                    })
                }
                Ok(_) => return Err(GenerationError::Contended),
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

/// The write that completes a request: the new status and the assets in the project, at once.
/// Called by the owner's workspace actor, so no project deletion interleaves. When the project
/// is gone (deleted while the job ran) the request completes without assets.
pub(crate) fn completion_set(
    store: &Store,
    old: &GenerationRecord,
    next: &GenerationRecord,
    assets: &[NewAsset],
) -> Result<(WriteSet, GenerationRecord), StorageError> {
    let mut next = next.clone();
    let mut set = WriteSet::new();
    let project = store.get::<ProjectRecord>(&keys::id(old.project_id))?;
    if let Some(project) = project {
        let existing =
            crate::workspace::child_ids(store, Table::AssetsByProject, project.id)?.len();
        for a in assets
            .iter()
            .take(ASSETS_PER_PROJECT_MAX.saturating_sub(existing))
        {
            let asset = AssetRecord {
                id: Uuid::now_v7(),
                user_id: project.user_id,
                project_id: project.id,
                kind: a.kind.clone(),
                path: a.path.clone(),
                mime: a.mime.clone(),
                size: a.size,
                generation_request_id: Some(old.id),
                created_at_us: next.updated_at_us,
            };
            set.put(keys::id(asset.id), &asset);
            set.put(keys::pair(project.id, asset.id), &AssetOfProject);
            next.asset_ids.push(asset.id);
        }
        set.require_present::<ProjectRecord>(keys::id(project.id));
    }
    let mut finish = finish_set(old, &next);
    finish.extend(set);
    Ok((finish, next))
}

/// Marks a request's job as confirmed by the broker: the outbox entry goes, and a request still
/// pending becomes queued, in one write.
pub async fn mark_published(store: &Store, id: Uuid) -> Result<(), GenerationError> {
    for _ in 0..CAS_ATTEMPTS_MAX {
        let mut set = WriteSet::new();
        set.delete::<OutboxRecord>(keys::id(id));
        if let Some(current) = store.get::<GenerationRecord>(&keys::id(id))? {
            if let Decision::Apply(next) = decide(&current, &Event::Queued, now_us()) {
                set.extend(finish_set(&current, &next));
            }
        }
        match store.write(set).await? {
            WriteOutcome::Committed => return Ok(()),
            WriteOutcome::ConditionFailed(_) => continue,
        }
    }
    Err(GenerationError::Contended)
}

/// The brand kit part of a job message.
#[derive(Debug, Serialize)]
pub struct JobBrandKit<'a> {
    pub colors: &'a [BrandColor],
    pub fonts: &'a [BrandFont],
    pub logos: &'a [String],
}

/// The job message (SPEC §7), as published.
#[derive(Debug, Serialize)]
pub struct JobMessage<'a> {
    pub generation_id: Uuid,
    pub user_id: Uuid,
    pub project_id: Uuid,
    pub prompt: &'a str,
    pub format: &'a str,
    pub variations: u8,
    pub params: &'a serde_json::Value,
    pub brand_kit: Option<JobBrandKit<'a>>,
    pub cost: u64,
    pub created_at: String,
}

/// The records a create adds to the charge's write set: the request, its indexes and its job
/// in the outbox. Conditioned on the project still existing.
pub fn creation_set(generation: &GenerationRecord, job_payload: Vec<u8>) -> WriteSet {
    let mut set = WriteSet::new();
    set.require_present::<ProjectRecord>(keys::id(generation.project_id));
    set.put(keys::id(generation.id), generation);
    set.put(
        keys::pair(generation.user_id, generation.id),
        &GenerationOfUser,
    );
    set.put(
        keys::live_generation(generation.deadline_at_us, generation.id),
        &LiveGeneration,
    );
    set.put(
        keys::id(generation.id),
        &OutboxRecord {
            generation_id: generation.id,
            payload: job_payload,
            created_at_us: generation.created_at_us,
        },
    );
    set
}

use storage::Table;

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(status: GenStatus) -> GenerationRecord {
        GenerationRecord {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            project_id: Uuid::now_v7(),
            prompt: "p".into(),
            format: "banner".into(),
            variations: 1,
            params_json: "{}".into(),
            cost: 1,
            status,
            error: None,
            asset_ids: vec![],
            deadline_at_us: 10,
            created_at_us: 0,
            updated_at_us: 0,
        }
    }

    #[test]
    fn statuses_never_move_backwards_and_terminal_is_final() {
        use GenStatus::*;
        assert!(
            matches!(decide(&gen(Pending), &Event::Queued, 1), Decision::Apply(g) if g.status == Queued)
        );
        assert_eq!(
            decide(&gen(Processing), &Event::Queued, 1),
            Decision::Ignore
        );
        assert_eq!(
            decide(&gen(Processing), &Event::Processing, 1),
            Decision::Ignore
        );
        assert!(matches!(
            decide(&gen(Pending), &Event::Completed { assets: vec![] }, 1),
            Decision::Apply(_)
        ));
        for t in [Completed, Failed, Cancelled] {
            assert_eq!(
                decide(&gen(t), &Event::Failed { error: "x".into() }, 1),
                Decision::Ignore
            );
            assert_eq!(decide(&gen(t), &Event::Processing, 1), Decision::Ignore);
        }
    }

    #[test]
    fn cancel_is_allowed_only_before_the_work_starts() {
        use GenStatus::*;
        assert!(
            matches!(decide(&gen(Pending), &Event::Cancel, 1), Decision::Apply(g) if g.status == Cancelled)
        );
        assert!(matches!(
            decide(&gen(Queued), &Event::Cancel, 1),
            Decision::Apply(_)
        ));
        assert_eq!(
            decide(&gen(Processing), &Event::Cancel, 1),
            Decision::Refuse
        );
        assert_eq!(decide(&gen(Completed), &Event::Cancel, 1), Decision::Refuse);
        assert_eq!(decide(&gen(Cancelled), &Event::Cancel, 1), Decision::Ignore);
    }

    #[test]
    fn a_timeout_fails_with_its_error() {
        match decide(&gen(GenStatus::Queued), &Event::Timeout, 1) {
            Decision::Apply(g) => {
                assert_eq!(g.status, GenStatus::Failed);
                assert_eq!(g.error.as_deref(), Some(TIMEOUT_ERROR));
            }
            other => panic!("{other:?}"),
        }
    }
}
