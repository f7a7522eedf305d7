//! The rules of a generation request: its state machine and the write sets that move it. Pure
//! functions of records (no actor, no I/O but reads): the orchestration that sends these writes
//! through the account and workspace actors lives in the `generation` module.

use serde::Serialize;
use storage::keys;
use storage::records::*;
use storage::{StorageError, Store, Table, WriteSet};
use uuid::Uuid;

use crate::workspace_reads::{child_count, NewAsset, ASSETS_PER_PROJECT_MAX};

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

/// The records that leave with a request once it is terminal (or queued: the outbox entry).
pub fn finish_set(old: &GenerationRecord, next: &GenerationRecord) -> WriteSet {
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

/// The write that completes a request: the new status and the assets in the project, at once.
/// The owner's workspace actor applies it, so no project deletion interleaves. When the project
/// is gone (deleted while the job ran) the request completes without assets.
pub fn completion_set(
    store: &Store,
    old: &GenerationRecord,
    next: &GenerationRecord,
    assets: &[NewAsset],
) -> Result<(WriteSet, GenerationRecord), StorageError> {
    let mut next = next.clone();
    let mut set = WriteSet::new();
    // A project inside a workbench being deleted is as good as gone.
    let project = match store.get::<ProjectRecord>(&keys::id(old.project_id))? {
        Some(p) if crate::workspace_reads::visible(store, &p)? => Some(p),
        _ => None,
    };
    if let Some(project) = project {
        let existing = child_count(store, Table::AssetsByProject, project.id)?;
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

/// The write that records the broker's confirm of a job: its outbox entry and order entry go,
/// and a request still pending becomes queued, at once (conditioned on the request being the
/// one read, so a concurrent move makes the caller reread).
pub fn published_set(
    current: Option<&GenerationRecord>,
    id: Uuid,
    order_key: &[u8],
    now_us: i64,
) -> WriteSet {
    let mut set = WriteSet::new();
    set.delete::<OutboxRecord>(keys::id(id));
    set.delete::<OutboxOrder>(order_key.to_vec());
    if let Some(current) = current {
        if let Decision::Apply(next) = decide(current, &Event::Queued, now_us) {
            set.extend(finish_set(current, &next));
        }
    }
    set
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

/// The records a create adds to the charge's write set: the request, its deadline entry and its
/// job in the outbox with its place in the publisher's order. Conditioned on the project still
/// existing. A user's requests are listed through the charges of their ledger chain, so no
/// per-user index entry is written.
pub fn creation_set(generation: &GenerationRecord, job_payload: Vec<u8>) -> WriteSet {
    let mut set = WriteSet::new();
    set.require_present::<ProjectRecord>(keys::id(generation.project_id));
    set.put(keys::id(generation.id), generation);
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
    set.append(&OutboxOrder {
        generation_id: generation.id,
    });
    set
}

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
