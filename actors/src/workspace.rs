//! The creative workspace of one owner: workbenches, projects, brand kits and assets.
//!
//! Why an actor: the workspace rules span records (at most one default brand kit, a kit in use
//! cannot go, deleting a workbench takes its projects and assets, a project lives in its owner's
//! workbench). One actor per owner applies that owner's changes one at a time, so each rule is a
//! read-check-write with nothing interleaved, and no lock is held anywhere. Reads do not come
//! here: they go straight to the store ([`crate::workspace_reads`]).
//!
//! Each change is its own message type with its own result. A message only plans its write
//! ([`Change::plan`]: checks against the store, then the write set and what to answer); the one
//! handler applies the plan durably while the actor holds that owner's changes back.

use actix::prelude::*;
use storage::keys;
use storage::records::*;
use storage::{now_us, StorageError, Store, Table, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::lifecycle::completion_set;
use crate::registry::{Keyed, Registry, MAILBOX_CAPACITY};
use crate::workspace_reads::*;

/// Workspace actors by owner.
pub type WorkspaceRegistry = Registry<Workspace>;

pub struct Workspace {
    pub(crate) owner: Uuid,
    pub(crate) store: Store,
    quotas: Quotas,
}

impl Actor for Workspace {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }
}

impl Supervised for Workspace {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(owner = %self.owner, "workspace actor restarting");
    }
}

impl Keyed for Workspace {
    type Env = Quotas;

    fn for_key(owner: Uuid, store: Store, quotas: Quotas) -> Self {
        Workspace {
            owner,
            store,
            quotas,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("not found")]
    NotFound,
    #[error("brand kits need the pro, team or enterprise tier")]
    TierRequired,
    #[error("the brand kit is in use by {workbenches} workbench(es) and {projects} project(s)")]
    BrandKitInUse { workbenches: usize, projects: usize },
    #[error("at most {limit} {what}")]
    LimitReached { what: &'static str, limit: usize },
    #[error("{field} does not name one of the owner's {what}")]
    BadReference {
        field: &'static str,
        what: &'static str,
    },
    #[error("the workspace holds at most {limit} {what} on this tier")]
    QuotaExceeded { what: &'static str, limit: u64 },
    #[error("{field} {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("not allowed while it is {0}")]
    InvalidStatus(&'static str),
    #[error("the record changed meanwhile; retry")]
    Conflict,
    #[error("the workspace actor is unavailable")]
    Unavailable,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// One change of an owner's workspace. Field values arrive validated (names trimmed and
/// bounded, colors well-formed); `plan` checks the rules that span records.
pub trait Change:
    Message<Result = Result<Self::Done, WorkspaceError>> + Send + Clone + 'static
{
    /// What the caller gets once the change is durable.
    type Done: Send + 'static;

    /// Checks the change against the store and returns its write set and answer.
    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now_us: i64,
    ) -> Result<(WriteSet, Self::Done), WorkspaceError>;

    /// Whether the applied change left workbenches to delete in batches ([`ReapStep`]).
    fn leaves_deletions(_done: &Self::Done) -> bool {
        false
    }

    /// Whether the owner's quota may refuse this change (a completed generation's assets were
    /// paid for, so they are counted but never refused).
    fn within_quota() -> bool {
        true
    }

    /// Whether the change removes the owner (their usage record goes with them).
    fn removes_owner() -> bool {
        false
    }
}

impl<M: Change> Handler<M> for Workspace {
    // Atomic: the checks and the write of one change see no other change of this owner.
    type Result = AtomicResponse<Self, Result<M::Done, WorkspaceError>>;

    fn handle(&mut self, msg: M, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let owner = self.owner;
        let quotas = self.quotas;
        AtomicResponse::new(Box::pin(
            async move {
                let (mut set, done) = msg.plan(&store, owner, now_us())?;
                if M::removes_owner() {
                    set.delete::<UsageRecord>(keys::user(owner));
                } else {
                    let quotas = M::within_quota().then_some(&quotas);
                    count_usage(&store, owner, &mut set, quotas)?;
                }
                // A change that finds nothing to do (a sweep racing a reply) writes nothing.
                if set.is_empty() {
                    return Ok(done);
                }
                match store.write(set).await? {
                    WriteOutcome::Committed => Ok(done),
                    WriteOutcome::ConditionFailed(_) => Err(WorkspaceError::Conflict),
                }
            }
            .into_actor(self)
            .map(|result, _act, ctx| {
                match &result {
                    // A storage failure may leave nothing consistent in memory: start over.
                    Err(WorkspaceError::Storage(_)) => ctx.stop(),
                    Ok(done) if M::leaves_deletions(done) => ctx.notify(ReapStep),
                    _ => {}
                }
                result
            }),
        ))
    }
}

impl Registry<Workspace> {
    /// Sends one change to the owner's workspace actor and waits until it is durable.
    pub async fn change<M: Change>(&self, owner: Uuid, change: M) -> Result<M::Done, WorkspaceError>
    where
        Workspace: Handler<M>,
    {
        self.send(owner, change)
            .await
            .unwrap_or(Err(WorkspaceError::Unavailable))
    }
}

// --- Workbenches --------------------------------------------------------------------------------

/// Creates a workbench (optionally with a default brand kit of the owner's).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<WorkbenchRecord, WorkspaceError>")]
pub struct CreateWorkbench {
    pub name: String,
    pub default_brand_kit_id: Option<Uuid>,
}

impl Change for CreateWorkbench {
    type Done = WorkbenchRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, WorkbenchRecord), WorkspaceError> {
        within_limit(
            store,
            Table::WorkbenchesByUser,
            owner,
            "workbenches per user",
            WORKBENCHES_PER_USER_MAX,
        )?;
        check_kit(
            store,
            owner,
            self.default_brand_kit_id,
            "default_brand_kit_id",
        )?;
        let wb = WorkbenchRecord {
            id: Uuid::now_v7(),
            user_id: owner,
            name: self.name,
            default_brand_kit_id: self.default_brand_kit_id,
            created_at_us: now,
            updated_at_us: now,
        };
        let mut set = WriteSet::new();
        require_kit(&mut set, wb.default_brand_kit_id);
        set.put(keys::id(wb.id), &wb);
        set.put(keys::pair(owner, wb.id), &WorkbenchOfUser);
        Ok((set, wb))
    }
}

/// Renames a workbench or changes its default kit (`Some(None)` clears it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<WorkbenchRecord, WorkspaceError>")]
pub struct UpdateWorkbench {
    pub id: Uuid,
    pub name: Option<String>,
    pub default_brand_kit_id: Option<Option<Uuid>>,
}

impl Change for UpdateWorkbench {
    type Done = WorkbenchRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, WorkbenchRecord), WorkspaceError> {
        let edit = Edit {
            id: self.id,
            name: self.name,
            kit: self.default_brand_kit_id,
            kit_field: "default_brand_kit_id",
        };
        edit.apply(store, owner, now, |w: &mut WorkbenchRecord| {
            (
                &mut w.name,
                &mut w.default_brand_kit_id,
                &mut w.updated_at_us,
            )
        })
    }
}

/// Deletes a workbench with its projects and their assets: in one write when the cascade is
/// small, else it becomes invisible at once and is deleted in bounded batches ([`ReapStep`]),
/// so one large deletion never stalls the writer for everyone.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Deletion, WorkspaceError>")]
pub struct DeleteWorkbench {
    pub id: Uuid,
}

/// How a deletion was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// Everything is gone, durably.
    Done,
    /// Invisible now, durably; the records go in batches (resumed after a crash).
    InBatches,
}

impl Change for DeleteWorkbench {
    type Done = Deletion;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, Deletion), WorkspaceError> {
        let wb = owned::<WorkbenchRecord>(store, owner, self.id)?;
        let mut set = WriteSet::new();
        set.require_equal(keys::id(self.id), &wb);
        if cascade_is_small(store, &[wb.id])? {
            delete_workbench(store, &wb, &mut set)?;
            return Ok((set, Deletion::Done));
        }
        mark_deleting(&mut set, &wb, now);
        Ok((set, Deletion::InBatches))
    }

    fn leaves_deletions(done: &Deletion) -> bool {
        *done == Deletion::InBatches
    }
}

// --- Projects -----------------------------------------------------------------------------------

/// Creates a project in one of the owner's workbenches.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ProjectRecord, WorkspaceError>")]
pub struct CreateProject {
    pub workbench_id: Uuid,
    pub name: String,
    pub brand_kit_id: Option<Uuid>,
}

impl Change for CreateProject {
    type Done = ProjectRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, ProjectRecord), WorkspaceError> {
        let wb = owned::<WorkbenchRecord>(store, owner, self.workbench_id).map_err(|_| {
            WorkspaceError::BadReference {
                field: "workbench_id",
                what: "workbenches",
            }
        })?;
        within_limit(
            store,
            Table::ProjectsByWorkbench,
            wb.id,
            "projects per workbench",
            PROJECTS_PER_WORKBENCH_MAX,
        )?;
        check_kit(store, owner, self.brand_kit_id, "brand_kit_id")?;
        let p = ProjectRecord {
            id: Uuid::now_v7(),
            user_id: wb.user_id,
            workbench_id: wb.id,
            name: self.name,
            brand_kit_id: self.brand_kit_id,
            created_at_us: now,
            updated_at_us: now,
        };
        let mut set = WriteSet::new();
        set.require_present::<WorkbenchRecord>(keys::id(wb.id));
        require_kit(&mut set, p.brand_kit_id);
        set.put(keys::id(p.id), &p);
        set.put(keys::pair(wb.id, p.id), &ProjectOfWorkbench);
        set.put(keys::pair(owner, p.id), &ProjectOfUser);
        Ok((set, p))
    }
}

/// Renames a project or changes its brand kit override (`Some(None)` clears it).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<ProjectRecord, WorkspaceError>")]
pub struct UpdateProject {
    pub id: Uuid,
    pub name: Option<String>,
    pub brand_kit_id: Option<Option<Uuid>>,
}

impl Change for UpdateProject {
    type Done = ProjectRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, ProjectRecord), WorkspaceError> {
        let edit = Edit {
            id: self.id,
            name: self.name,
            kit: self.brand_kit_id,
            kit_field: "brand_kit_id",
        };
        edit.apply(store, owner, now, |p: &mut ProjectRecord| {
            (&mut p.name, &mut p.brand_kit_id, &mut p.updated_at_us)
        })
    }
}

/// Deletes a project with its assets.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), WorkspaceError>")]
pub struct DeleteProject {
    pub id: Uuid,
}

impl Change for DeleteProject {
    type Done = ();

    fn plan(self, store: &Store, owner: Uuid, _now: i64) -> Result<(WriteSet, ()), WorkspaceError> {
        let p = owned::<ProjectRecord>(store, owner, self.id)?;
        let mut set = WriteSet::new();
        set.require_equal(keys::id(self.id), &p);
        delete_project(store, &p, &mut set)?;
        Ok((set, ()))
    }
}

// --- Brand kits ---------------------------------------------------------------------------------

/// Creates a brand kit. `tier_exempt`: an admin acting; otherwise the owner's tier must allow
/// brand kits. A new default kit clears the owner's other default in the same write.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<BrandKitRecord, WorkspaceError>")]
pub struct CreateBrandKit {
    pub name: String,
    pub colors: Vec<BrandColor>,
    pub fonts: Vec<BrandFont>,
    pub logos: Vec<String>,
    pub is_default: bool,
    pub tier_exempt: bool,
}

impl Change for CreateBrandKit {
    type Done = BrandKitRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, BrandKitRecord), WorkspaceError> {
        if !self.tier_exempt {
            let user = store
                .get::<UserRecord>(&keys::user(owner))?
                .ok_or(WorkspaceError::NotFound)?;
            if user.tier == Tier::Free {
                return Err(WorkspaceError::TierRequired);
            }
        }
        let existing = children::<BrandKitRecord>(store, Table::BrandKitsByUser, owner)?;
        if existing.len() >= BRAND_KITS_PER_USER_MAX {
            return Err(WorkspaceError::LimitReached {
                what: "brand kits per user",
                limit: BRAND_KITS_PER_USER_MAX,
            });
        }
        let record = BrandKitRecord {
            id: Uuid::now_v7(),
            user_id: owner,
            name: self.name,
            colors: self.colors,
            fonts: self.fonts,
            logos: self.logos,
            is_default: self.is_default,
            created_at_us: now,
            updated_at_us: now,
        };
        let mut set = WriteSet::new();
        if record.is_default {
            clear_defaults(&existing, record.id, now, &mut set);
        }
        set.put(keys::id(record.id), &record);
        set.put(keys::pair(owner, record.id), &BrandKitOfUser);
        Ok((set, record))
    }
}

/// Changes fields of a brand kit; making it the default clears the others in the same write.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "Result<BrandKitRecord, WorkspaceError>")]
pub struct UpdateBrandKit {
    pub id: Uuid,
    pub name: Option<String>,
    pub colors: Option<Vec<BrandColor>>,
    pub fonts: Option<Vec<BrandFont>>,
    pub logos: Option<Vec<String>>,
    pub is_default: Option<bool>,
}

impl Change for UpdateBrandKit {
    type Done = BrandKitRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, BrandKitRecord), WorkspaceError> {
        let old = owned::<BrandKitRecord>(store, owner, self.id)?;
        let kit = BrandKitRecord {
            name: self.name.unwrap_or_else(|| old.name.clone()),
            colors: self.colors.unwrap_or_else(|| old.colors.clone()),
            fonts: self.fonts.unwrap_or_else(|| old.fonts.clone()),
            logos: self.logos.unwrap_or_else(|| old.logos.clone()),
            is_default: self.is_default.unwrap_or(old.is_default),
            updated_at_us: now,
            ..old.clone()
        };
        let mut set = WriteSet::new();
        set.require_equal(keys::id(self.id), &old);
        if kit.is_default && !old.is_default {
            let kits = children::<BrandKitRecord>(store, Table::BrandKitsByUser, owner)?;
            clear_defaults(&kits, self.id, now, &mut set);
        }
        set.put(keys::id(self.id), &kit);
        Ok((set, kit))
    }
}

/// Deletes a brand kit no workbench or project refers to.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), WorkspaceError>")]
pub struct DeleteBrandKit {
    pub id: Uuid,
}

impl Change for DeleteBrandKit {
    type Done = ();

    fn plan(self, store: &Store, owner: Uuid, _now: i64) -> Result<(WriteSet, ()), WorkspaceError> {
        let kit = owned::<BrandKitRecord>(store, owner, self.id)?;
        let id = self.id;
        let workbenches = children::<WorkbenchRecord>(store, Table::WorkbenchesByUser, owner)?
            .iter()
            .filter(|w| w.default_brand_kit_id == Some(id))
            .count();
        let projects = children::<ProjectRecord>(store, Table::ProjectsByUser, owner)?
            .iter()
            .filter(|p| p.brand_kit_id == Some(id))
            .count();
        if workbenches + projects > 0 {
            return Err(WorkspaceError::BrandKitInUse {
                workbenches,
                projects,
            });
        }
        let mut set = WriteSet::new();
        set.require_equal(keys::id(id), &kit);
        set.delete::<BrandKitRecord>(keys::id(id));
        set.delete::<BrandKitOfUser>(keys::pair(owner, id));
        Ok((set, ()))
    }
}

// --- Assets -------------------------------------------------------------------------------------

/// Adds an asset to one of the owner's projects.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<AssetRecord, WorkspaceError>")]
pub struct CreateAsset {
    pub project_id: Uuid,
    pub asset: NewAsset,
}

impl Change for CreateAsset {
    type Done = AssetRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, AssetRecord), WorkspaceError> {
        let p = owned::<ProjectRecord>(store, owner, self.project_id)?;
        within_limit(
            store,
            Table::AssetsByProject,
            p.id,
            "assets per project",
            ASSETS_PER_PROJECT_MAX,
        )?;
        let a = AssetRecord {
            id: Uuid::now_v7(),
            user_id: p.user_id,
            project_id: p.id,
            kind: self.asset.kind,
            path: self.asset.path,
            mime: self.asset.mime,
            size: self.asset.size,
            generation_request_id: self.asset.generation_request_id,
            created_at_us: now,
        };
        let mut set = WriteSet::new();
        set.require_present::<ProjectRecord>(keys::id(p.id));
        set.put(keys::id(a.id), &a);
        set.put(keys::pair(p.id, a.id), &AssetOfProject);
        Ok((set, a))
    }
}

/// Deletes an asset of a project.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), WorkspaceError>")]
pub struct DeleteAsset {
    pub project_id: Uuid,
    pub id: Uuid,
}

impl Change for DeleteAsset {
    type Done = ();

    fn plan(self, store: &Store, owner: Uuid, _now: i64) -> Result<(WriteSet, ()), WorkspaceError> {
        let a = owned::<AssetRecord>(store, owner, self.id)?;
        if a.project_id != self.project_id {
            return Err(WorkspaceError::NotFound);
        }
        let mut set = WriteSet::new();
        set.require_present::<AssetRecord>(keys::id(self.id));
        set.delete::<AssetRecord>(keys::id(self.id));
        set.delete::<AssetOfProject>(keys::pair(self.project_id, self.id));
        Ok((set, ()))
    }
}

// --- Saved templates ------------------------------------------------------------------------------

/// Saves a generation template (fields arrive validated like a create's).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<TemplateRecord, WorkspaceError>")]
pub struct CreateTemplate {
    pub name: String,
    pub prompt: String,
    pub format: String,
    pub variations: u8,
    pub params_json: String,
}

impl Change for CreateTemplate {
    type Done = TemplateRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, TemplateRecord), WorkspaceError> {
        within_limit(
            store,
            Table::TemplatesByUser,
            owner,
            "templates per user",
            TEMPLATES_PER_USER_MAX,
        )?;
        let t = TemplateRecord {
            id: Uuid::now_v7(),
            user_id: owner,
            name: self.name,
            prompt: self.prompt,
            format: self.format,
            variations: self.variations,
            params_json: self.params_json,
            created_at_us: now,
            updated_at_us: now,
        };
        let mut set = WriteSet::new();
        set.put(keys::id(t.id), &t);
        set.put(keys::pair(owner, t.id), &TemplateOfUser);
        Ok((set, t))
    }
}

/// Changes fields of a saved template.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "Result<TemplateRecord, WorkspaceError>")]
pub struct UpdateTemplate {
    pub id: Uuid,
    pub name: Option<String>,
    pub prompt: Option<String>,
    pub format: Option<String>,
    pub variations: Option<u8>,
    pub params_json: Option<String>,
}

impl Change for UpdateTemplate {
    type Done = TemplateRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, TemplateRecord), WorkspaceError> {
        let old = owned::<TemplateRecord>(store, owner, self.id)?;
        let t = TemplateRecord {
            name: self.name.unwrap_or_else(|| old.name.clone()),
            prompt: self.prompt.unwrap_or_else(|| old.prompt.clone()),
            format: self.format.unwrap_or_else(|| old.format.clone()),
            variations: self.variations.unwrap_or(old.variations),
            params_json: self.params_json.unwrap_or_else(|| old.params_json.clone()),
            updated_at_us: now,
            ..old.clone()
        };
        let mut set = WriteSet::new();
        set.require_equal(keys::id(self.id), &old);
        set.put(keys::id(self.id), &t);
        Ok((set, t))
    }
}

/// Deletes a saved template.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), WorkspaceError>")]
pub struct DeleteTemplate {
    pub id: Uuid,
}

impl Change for DeleteTemplate {
    type Done = ();

    fn plan(self, store: &Store, owner: Uuid, _now: i64) -> Result<(WriteSet, ()), WorkspaceError> {
        let t = owned::<TemplateRecord>(store, owner, self.id)?;
        let mut set = WriteSet::new();
        set.require_equal(keys::id(self.id), &t);
        set.delete::<TemplateRecord>(keys::id(self.id));
        set.delete::<TemplateOfUser>(keys::pair(owner, self.id));
        Ok((set, ()))
    }
}

// --- Across the workspace -----------------------------------------------------------------------

/// Completes a generation request: its new record and the assets it produced, created in its
/// project, in one write (so a concurrent project deletion cannot orphan them).
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<GenerationRecord, WorkspaceError>")]
pub struct CompleteGeneration {
    pub generation: Box<GenerationRecord>,
    pub completed: Box<GenerationRecord>,
    pub assets: Vec<NewAsset>,
}

impl Change for CompleteGeneration {
    type Done = GenerationRecord;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        _now: i64,
    ) -> Result<(WriteSet, GenerationRecord), WorkspaceError> {
        if self.generation.user_id != owner {
            return Err(WorkspaceError::NotFound);
        }
        Ok(completion_set(
            store,
            &self.generation,
            &self.completed,
            &self.assets,
        )?)
    }

    fn within_quota() -> bool {
        false
    }
}

/// Deletes everything the owner has in the workspace, plus `extra` (the caller's records, e.g.
/// the user itself), in one atomic write.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<Deletion, WorkspaceError>")]
pub struct DeleteEverything {
    pub extra: WriteSet,
}

impl Change for DeleteEverything {
    type Done = Deletion;

    fn plan(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
    ) -> Result<(WriteSet, Deletion), WorkspaceError> {
        let mut set = WriteSet::new();
        let workbenches = children::<WorkbenchRecord>(store, Table::WorkbenchesByUser, owner)?;
        let ids: Vec<Uuid> = workbenches.iter().map(|w| w.id).collect();
        let small = cascade_is_small(store, &ids)?;
        for wb in &workbenches {
            if small {
                delete_workbench(store, wb, &mut set)?;
            } else if !being_deleted(store, owner, wb.id)? {
                // The user goes now; their workbenches are invisible and go in batches.
                mark_deleting(&mut set, wb, now);
            }
        }
        for kit in child_ids(store, Table::BrandKitsByUser, owner)? {
            set.delete::<BrandKitRecord>(keys::id(kit));
            set.delete::<BrandKitOfUser>(keys::pair(owner, kit));
        }
        for t in child_ids(store, Table::TemplatesByUser, owner)? {
            set.delete::<TemplateRecord>(keys::id(t));
            set.delete::<TemplateOfUser>(keys::pair(owner, t));
        }
        set.extend(self.extra);
        let done = if small {
            Deletion::Done
        } else {
            Deletion::InBatches
        };
        Ok((set, done))
    }

    fn leaves_deletions(done: &Deletion) -> bool {
        *done == Deletion::InBatches
    }

    fn removes_owner() -> bool {
        true
    }
}

// --- Rules shared by the changes ----------------------------------------------------------------

/// The record `id` if the owner owns it; any other case is "not found" (never reveal).
pub(crate) fn owned<R: Owned>(store: &Store, owner: Uuid, id: Uuid) -> Result<R, WorkspaceError> {
    match store.get::<R>(&keys::id(id))? {
        Some(r) if r.owner() == owner && visible(store, &r)? => Ok(r),
        _ => Err(WorkspaceError::NotFound),
    }
}

/// Deletes (index entries, assets, projects) written in one set at most; a larger cascade is
/// deleted in batches of this size.
pub const CASCADE_OPS_MAX: usize = 2000;

/// Whether deleting these workbenches with everything in them fits one write.
fn cascade_is_small(store: &Store, workbenches: &[Uuid]) -> Result<bool, WorkspaceError> {
    let mut ops = 0;
    for wb in workbenches {
        let projects = child_ids(store, Table::ProjectsByWorkbench, *wb)?;
        ops += 2 + 3 * projects.len();
        for p in projects {
            ops += 2 * child_count(store, Table::AssetsByProject, p)?;
            if ops > CASCADE_OPS_MAX {
                return Ok(false);
            }
        }
    }
    Ok(ops <= CASCADE_OPS_MAX)
}

fn mark_deleting(set: &mut WriteSet, wb: &WorkbenchRecord, now: i64) {
    set.put(
        keys::pair(wb.user_id, wb.id),
        &DeletingWorkbench { started_at_us: now },
    );
}

pub(crate) fn within_limit(
    store: &Store,
    index: Table,
    parent: Uuid,
    what: &'static str,
    limit: usize,
) -> Result<(), WorkspaceError> {
    if child_count(store, index, parent)? >= limit {
        return Err(WorkspaceError::LimitReached { what, limit });
    }
    Ok(())
}

fn check_kit(
    store: &Store,
    owner: Uuid,
    kit: Option<Uuid>,
    field: &'static str,
) -> Result<(), WorkspaceError> {
    match kit {
        None => Ok(()),
        Some(id) => owned::<BrandKitRecord>(store, owner, id)
            .map(|_| ())
            .map_err(|_| WorkspaceError::BadReference {
                field,
                what: "brand kits",
            }),
    }
}

/// A rename and/or a new kit reference (`Some(None)` clears it) of a workbench or project.
struct Edit {
    id: Uuid,
    name: Option<String>,
    kit: Option<Option<Uuid>>,
    kit_field: &'static str,
}

impl Edit {
    /// The write: conditioned on the record as read, and on the new kit still existing.
    fn apply<R: Owned + Clone>(
        self,
        store: &Store,
        owner: Uuid,
        now: i64,
        fields: impl Fn(&mut R) -> (&mut String, &mut Option<Uuid>, &mut i64),
    ) -> Result<(WriteSet, R), WorkspaceError> {
        let old = owned::<R>(store, owner, self.id)?;
        let mut next = old.clone();
        let (name, kit, updated_at_us) = fields(&mut next);
        if let Some(n) = self.name {
            *name = n;
        }
        if let Some(k) = self.kit {
            check_kit(store, owner, k, self.kit_field)?;
            *kit = k;
        }
        *updated_at_us = now;
        let kit = *kit;
        let mut set = WriteSet::new();
        set.require_equal(keys::id(self.id), &old);
        require_kit(&mut set, kit);
        set.put(keys::id(self.id), &next);
        Ok((set, next))
    }
}

/// A reference to a kit is written only while the kit exists.
fn require_kit(set: &mut WriteSet, kit: Option<Uuid>) {
    if let Some(id) = kit {
        set.require_present::<BrandKitRecord>(keys::id(id));
    }
}

fn clear_defaults(kits: &[BrandKitRecord], except: Uuid, now: i64, set: &mut WriteSet) {
    for k in kits.iter().filter(|k| k.is_default && k.id != except) {
        let mut cleared = k.clone();
        cleared.is_default = false;
        cleared.updated_at_us = now;
        set.put(keys::id(k.id), &cleared);
    }
}

fn delete_project(
    store: &Store,
    p: &ProjectRecord,
    set: &mut WriteSet,
) -> Result<(), WorkspaceError> {
    for asset in child_ids(store, Table::AssetsByProject, p.id)? {
        set.delete::<AssetRecord>(keys::id(asset));
        set.delete::<AssetOfProject>(keys::pair(p.id, asset));
    }
    set.delete::<ProjectRecord>(keys::id(p.id));
    set.delete::<ProjectOfWorkbench>(keys::pair(p.workbench_id, p.id));
    set.delete::<ProjectOfUser>(keys::pair(p.user_id, p.id));
    Ok(())
}

fn delete_workbench(
    store: &Store,
    wb: &WorkbenchRecord,
    set: &mut WriteSet,
) -> Result<(), WorkspaceError> {
    for id in child_ids(store, Table::ProjectsByWorkbench, wb.id)? {
        if let Some(p) = store.get::<ProjectRecord>(&keys::id(id))? {
            delete_project(store, &p, set)?;
        }
    }
    set.delete::<WorkbenchRecord>(keys::id(wb.id));
    set.delete::<WorkbenchOfUser>(keys::pair(wb.user_id, wb.id));
    Ok(())
}

// --- Deletion in batches -------------------------------------------------------------------------

/// Deletes one bounded batch of a workbench being deleted (assets of one project; the project
/// once empty; the workbench once it has no projects) and schedules the next while any is
/// left. Every batch keeps every invariant: nothing is ever left without its parent.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "Result<bool, WorkspaceError>")]
pub struct ReapStep;

impl Handler<ReapStep> for Workspace {
    type Result = AtomicResponse<Self, Result<bool, WorkspaceError>>;

    fn handle(&mut self, _msg: ReapStep, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let owner = self.owner;
        AtomicResponse::new(Box::pin(
            async move {
                let Some(mut set) = reap_batch(&store, owner)? else {
                    return Ok(false);
                };
                count_usage(&store, owner, &mut set, None)?;
                match store.write(set).await? {
                    // A condition failed: something moved meanwhile; the next step rereads.
                    WriteOutcome::Committed | WriteOutcome::ConditionFailed(_) => Ok(true),
                }
            }
            .into_actor(self)
            .map(|result, act, ctx| {
                match &result {
                    Ok(true) => ctx.notify(ReapStep),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(owner = %act.owner, error = %e, "batch deletion paused; resumed at the next start or janitor run");
                        if let Err(WorkspaceError::Storage(_)) = &result {
                            ctx.stop();
                        }
                    }
                }
                result
            }),
        ))
    }
}

/// The next batch of the owner's first workbench being deleted, or `None` when none is.
fn reap_batch(store: &Store, owner: Uuid) -> Result<Option<WriteSet>, WorkspaceError> {
    let marks = store.scan::<DeletingWorkbench>(
        &keys::user(owner),
        None,
        storage::Direction::Forward,
        1,
    )?;
    let Some((mark_key, mark)) = marks.into_iter().next() else {
        return Ok(None);
    };
    let mut set = WriteSet::new();
    set.require_equal(mark_key.clone(), &mark);
    let Some(wb_id) = keys::pair_child(&mark_key) else {
        set.delete::<DeletingWorkbench>(mark_key);
        return Ok(Some(set));
    };
    let project = index_keys(store, Table::ProjectsByWorkbench, &keys::id(wb_id), None, 1)?
        .first()
        .and_then(|k| keys::pair_child(k));
    match project {
        Some(p) => {
            let batch = CASCADE_OPS_MAX / 2;
            let assets: Vec<Uuid> =
                index_keys(store, Table::AssetsByProject, &keys::id(p), None, batch + 1)?
                    .iter()
                    .filter_map(|k| keys::pair_child(k))
                    .collect();
            for a in assets.iter().take(batch) {
                set.delete::<AssetRecord>(keys::id(*a));
                set.delete::<AssetOfProject>(keys::pair(p, *a));
            }
            if assets.len() <= batch {
                // Its last assets go in this batch: the project goes with them.
                match store.get::<ProjectRecord>(&keys::id(p))? {
                    Some(project) => {
                        set.delete::<ProjectRecord>(keys::id(p));
                        set.delete::<ProjectOfWorkbench>(keys::pair(wb_id, p));
                        set.delete::<ProjectOfUser>(keys::pair(project.user_id, p));
                    }
                    None => {
                        set.delete::<ProjectOfWorkbench>(keys::pair(wb_id, p));
                    }
                }
            }
        }
        None => {
            set.delete::<WorkbenchRecord>(keys::id(wb_id));
            set.delete::<WorkbenchOfUser>(keys::pair(owner, wb_id));
            set.delete::<DeletingWorkbench>(mark_key);
        }
    }
    Ok(Some(set))
}

impl Registry<Workspace> {
    /// Runs the owner's batch deletions (one step now; the actor schedules the rest).
    pub async fn resume_deletions(&self, owner: Uuid) -> Result<bool, WorkspaceError> {
        self.send(owner, ReapStep)
            .await
            .unwrap_or(Err(WorkspaceError::Unavailable))
    }
}

// --- Usage and quotas ----------------------------------------------------------------------------

/// A tier's bound on one user's workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Workbenches, projects, brand kits and assets together.
    pub records_max: u64,
    pub asset_bytes_max: u64,
}

/// The quota of each tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub free: Quota,
    pub pro: Quota,
    pub team: Quota,
    pub enterprise: Quota,
}

const GIB: u64 = 1 << 30;

impl Default for Quotas {
    fn default() -> Self {
        let q = |records_max, asset_bytes_max| Quota {
            records_max,
            asset_bytes_max,
        };
        Quotas {
            free: q(5_000, 5 * GIB),
            pro: q(100_000, 500 * GIB),
            team: q(500_000, 5 * 1024 * GIB),
            enterprise: q(5_000_000, 50 * 1024 * GIB),
        }
    }
}

impl Quotas {
    pub fn of(&self, tier: Tier) -> Quota {
        match tier {
            Tier::Free => self.free,
            Tier::Pro => self.pro,
            Tier::Team => self.team,
            Tier::Enterprise => self.enterprise,
        }
    }
}

/// What `set` creates and deletes in the four workspace tables, as (records, asset bytes),
/// read against the store: counted from the writes themselves, so no change can forget it.
fn usage_delta(store: &Store, set: &WriteSet) -> Result<(i64, i64), WorkspaceError> {
    // One snapshot for every op of the set (a cascade can hold thousands).
    let reads = store.read()?;
    let (mut records, mut bytes) = (0i64, 0i64);
    for table in [
        Table::Workbenches,
        Table::Projects,
        Table::BrandKits,
        Table::Assets,
    ] {
        for (key, value) in set.ops_on(table) {
            let stored = reads.get_raw(table, key)?;
            let size = |v: &[u8]| -> Result<i64, WorkspaceError> {
                if table != Table::Assets {
                    return Ok(0);
                }
                let a = storage::codec::decode::<AssetRecord>(v)?;
                Ok(i64::try_from(a.size).unwrap_or(i64::MAX))
            };
            match (stored, value) {
                (None, Some(v)) => {
                    records += 1;
                    bytes += size(v)?;
                }
                (Some(old), None) => {
                    records -= 1;
                    bytes -= size(&old)?;
                }
                _ => {}
            }
        }
    }
    Ok((records, bytes))
}

/// Adds the owner's new usage to `set` (conditioned on the usage read), refusing a change
/// that would take it past the owner's tier quota when `quotas` are given.
fn count_usage(
    store: &Store,
    owner: Uuid,
    set: &mut WriteSet,
    quotas: Option<&Quotas>,
) -> Result<(), WorkspaceError> {
    let (records, bytes) = usage_delta(store, set)?;
    if records == 0 && bytes == 0 {
        return Ok(());
    }
    let key = keys::user(owner);
    let old = store.get::<UsageRecord>(&key)?;
    let user = store.get::<UserRecord>(&keys::user(owner))?;
    let Some(user) = user else {
        // The owner is gone (a deletion in batches): nothing to count against.
        return Ok(());
    };
    let base = old.unwrap_or_default();
    let apply = |v: u64, d: i64| v.saturating_add_signed(d);
    let next = UsageRecord {
        records: apply(base.records, records),
        asset_bytes: apply(base.asset_bytes, bytes),
    };
    if let Some(quota) = quotas
        .filter(|_| records > 0 || bytes > 0)
        .map(|q| q.of(user.tier))
    {
        if records > 0 && next.records > quota.records_max {
            return Err(WorkspaceError::QuotaExceeded {
                what: "workspace records",
                limit: quota.records_max,
            });
        }
        if bytes > 0 && next.asset_bytes > quota.asset_bytes_max {
            return Err(WorkspaceError::QuotaExceeded {
                what: "asset bytes",
                limit: quota.asset_bytes_max,
            });
        }
    }
    match old {
        Some(o) => set.require_equal(key.clone(), &o),
        None => set.require_absent::<UsageRecord>(key.clone()),
    };
    set.put(key, &next);
    Ok(())
}
