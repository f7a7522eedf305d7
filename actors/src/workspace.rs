//! The creative workspace of one owner: workbenches, projects, brand kits and assets.
//!
//! Why an actor: the workspace rules span records (at most one default brand kit, a kit in use
//! cannot go, deleting a workbench takes its projects and assets, a project lives in its owner's
//! workbench). One actor per owner applies that owner's changes one at a time, so each rule is a
//! read-check-write with nothing interleaved, and no lock is held anywhere. Reads do not come
//! here: they go straight to the store.

use actix::prelude::*;
use storage::keys;
use storage::records::*;
use storage::{now_us, Direction, StorageError, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::registry::{Keyed, Registry};

pub const WORKBENCHES_PER_USER_MAX: usize = 100;
pub const PROJECTS_PER_WORKBENCH_MAX: usize = 500;
pub const BRAND_KITS_PER_USER_MAX: usize = 50;
pub const ASSETS_PER_PROJECT_MAX: usize = 5000;
/// Records scanned per step when a cascade collects children.
const SCAN_STEP: usize = 1000;

/// Workspace actors by owner.
pub type WorkspaceRegistry = Registry<Workspace>;

pub struct Workspace {
    owner: Uuid,
    store: Store,
}

impl Actor for Workspace {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::MAILBOX_CAPACITY);
    }
}

impl Supervised for Workspace {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        tracing::warn!(owner = %self.owner, "workspace actor restarting");
    }
}

impl Keyed for Workspace {
    fn for_key(owner: Uuid, store: Store) -> Self {
        Workspace { owner, store }
    }
}

#[derive(Debug, Clone)]
pub struct NewBrandKit {
    pub name: String,
    pub colors: Vec<BrandColor>,
    pub fonts: Vec<BrandFont>,
    pub logos: Vec<String>,
    pub is_default: bool,
}

#[derive(Debug, Clone, Default)]
pub struct BrandKitPatch {
    pub name: Option<String>,
    pub colors: Option<Vec<BrandColor>>,
    pub fonts: Option<Vec<BrandFont>>,
    pub logos: Option<Vec<String>>,
    pub is_default: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewAsset {
    pub kind: String,
    pub path: String,
    pub mime: String,
    pub size: u64,
    pub generation_request_id: Option<Uuid>,
}

/// What an owner's workspace can be asked to do. Field values arrive validated (names trimmed
/// and bounded, colors well-formed); the actor checks the rules that span records.
#[derive(Debug, Clone)]
pub enum Command {
    CreateWorkbench {
        name: String,
        default_brand_kit_id: Option<Uuid>,
    },
    /// `default_brand_kit_id: Some(None)` clears the default.
    UpdateWorkbench {
        id: Uuid,
        name: Option<String>,
        default_brand_kit_id: Option<Option<Uuid>>,
    },
    DeleteWorkbench {
        id: Uuid,
    },
    CreateProject {
        workbench_id: Uuid,
        name: String,
        brand_kit_id: Option<Uuid>,
    },
    UpdateProject {
        id: Uuid,
        name: Option<String>,
        brand_kit_id: Option<Option<Uuid>>,
    },
    DeleteProject {
        id: Uuid,
    },
    /// `tier_exempt`: an admin acting; otherwise the owner's tier must allow brand kits.
    CreateBrandKit {
        kit: NewBrandKit,
        tier_exempt: bool,
    },
    UpdateBrandKit {
        id: Uuid,
        patch: BrandKitPatch,
    },
    DeleteBrandKit {
        id: Uuid,
    },
    CreateAsset {
        project_id: Uuid,
        asset: NewAsset,
    },
    DeleteAsset {
        project_id: Uuid,
        id: Uuid,
    },
    /// Completes a generation request: its new record and the assets it produced, created in
    /// its project, in one write (so a concurrent project deletion cannot orphan them).
    CompleteGeneration {
        generation: Box<GenerationRecord>,
        completed: Box<GenerationRecord>,
        assets: Vec<NewAsset>,
    },
    /// Deletes everything the owner has in the workspace, plus `extra` (the caller's records,
    /// e.g. the user itself), in one atomic write.
    DeleteEverything {
        extra: WriteSet,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    Workbench(WorkbenchRecord),
    Project(ProjectRecord),
    BrandKit(BrandKitRecord),
    Asset(AssetRecord),
    Generation(Box<GenerationRecord>),
    Deleted,
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
    #[error("the record changed meanwhile; retry")]
    Conflict,
    #[error("the workspace actor is unavailable")]
    Unavailable,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Applies one change to the owner's workspace and answers once it is durable.
#[derive(Message, Clone)]
#[rtype(result = "Result<Changed, WorkspaceError>")]
pub struct Change(pub Command);

impl Handler<Change> for Workspace {
    // Atomic: the checks and the write of one change see no other change of this owner.
    type Result = AtomicResponse<Self, Result<Changed, WorkspaceError>>;

    fn handle(&mut self, msg: Change, _ctx: &mut Self::Context) -> Self::Result {
        let store = self.store.clone();
        let owner = self.owner;
        AtomicResponse::new(Box::pin(
            async move { execute(&store, owner, msg.0).await }
                .into_actor(self)
                .map(|result, _act, ctx| {
                    if let Err(WorkspaceError::Storage(_)) = &result {
                        ctx.stop();
                    }
                    result
                }),
        ))
    }
}

impl Registry<Workspace> {
    /// Sends one change to the owner's workspace actor.
    pub async fn change(&self, owner: Uuid, command: Command) -> Result<Changed, WorkspaceError> {
        self.send(owner, Change(command))
            .await
            .unwrap_or(Err(WorkspaceError::Unavailable))
    }
}

async fn execute(store: &Store, owner: Uuid, command: Command) -> Result<Changed, WorkspaceError> {
    let now = now_us();
    let (set, changed) = match command {
        Command::CreateWorkbench {
            name,
            default_brand_kit_id,
        } => {
            if count(store, &keys::user(owner), Table::WorkbenchesByUser)?
                >= WORKBENCHES_PER_USER_MAX
            {
                return Err(WorkspaceError::LimitReached {
                    what: "workbenches per user",
                    limit: WORKBENCHES_PER_USER_MAX,
                });
            }
            check_kit(store, owner, default_brand_kit_id, "default_brand_kit_id")?;
            let wb = WorkbenchRecord {
                id: Uuid::now_v7(),
                user_id: owner,
                name,
                default_brand_kit_id,
                created_at_us: now,
                updated_at_us: now,
            };
            let mut set = WriteSet::new();
            require_kit(&mut set, default_brand_kit_id);
            set.put(keys::id(wb.id), &wb);
            set.put(keys::pair(owner, wb.id), &WorkbenchOfUser);
            (set, Changed::Workbench(wb))
        }
        Command::UpdateWorkbench {
            id,
            name,
            default_brand_kit_id,
        } => {
            let old = owned::<WorkbenchRecord>(store, owner, id)?;
            let mut wb = old.clone();
            if let Some(n) = name {
                wb.name = n;
            }
            if let Some(kit) = default_brand_kit_id {
                check_kit(store, owner, kit, "default_brand_kit_id")?;
                wb.default_brand_kit_id = kit;
            }
            wb.updated_at_us = now;
            let mut set = WriteSet::new();
            set.require_equal(keys::id(id), &old);
            require_kit(&mut set, wb.default_brand_kit_id);
            set.put(keys::id(id), &wb);
            (set, Changed::Workbench(wb))
        }
        Command::DeleteWorkbench { id } => {
            let wb = owned::<WorkbenchRecord>(store, owner, id)?;
            let mut set = WriteSet::new();
            set.require_equal(keys::id(id), &wb);
            delete_workbench(store, &wb, &mut set)?;
            (set, Changed::Deleted)
        }
        Command::CreateProject {
            workbench_id,
            name,
            brand_kit_id,
        } => {
            let wb = owned::<WorkbenchRecord>(store, owner, workbench_id).map_err(|_| {
                WorkspaceError::BadReference {
                    field: "workbench_id",
                    what: "workbenches",
                }
            })?;
            if count(store, &keys::id(workbench_id), Table::ProjectsByWorkbench)?
                >= PROJECTS_PER_WORKBENCH_MAX
            {
                return Err(WorkspaceError::LimitReached {
                    what: "projects per workbench",
                    limit: PROJECTS_PER_WORKBENCH_MAX,
                });
            }
            check_kit(store, owner, brand_kit_id, "brand_kit_id")?;
            let p = ProjectRecord {
                id: Uuid::now_v7(),
                user_id: wb.user_id,
                workbench_id,
                name,
                brand_kit_id,
                created_at_us: now,
                updated_at_us: now,
            };
            let mut set = WriteSet::new();
            set.require_present::<WorkbenchRecord>(keys::id(workbench_id));
            require_kit(&mut set, brand_kit_id);
            set.put(keys::id(p.id), &p);
            set.put(keys::pair(workbench_id, p.id), &ProjectOfWorkbench);
            set.put(keys::pair(owner, p.id), &ProjectOfUser);
            (set, Changed::Project(p))
        }
        Command::UpdateProject {
            id,
            name,
            brand_kit_id,
        } => {
            let old = owned::<ProjectRecord>(store, owner, id)?;
            let mut p = old.clone();
            if let Some(n) = name {
                p.name = n;
            }
            if let Some(kit) = brand_kit_id {
                check_kit(store, owner, kit, "brand_kit_id")?;
                p.brand_kit_id = kit;
            }
            p.updated_at_us = now;
            let mut set = WriteSet::new();
            set.require_equal(keys::id(id), &old);
            require_kit(&mut set, p.brand_kit_id);
            set.put(keys::id(id), &p);
            (set, Changed::Project(p))
        }
        Command::DeleteProject { id } => {
            let p = owned::<ProjectRecord>(store, owner, id)?;
            let mut set = WriteSet::new();
            set.require_equal(keys::id(id), &p);
            delete_project(store, &p, &mut set)?;
            (set, Changed::Deleted)
        }
        Command::CreateBrandKit { kit, tier_exempt } => {
            if !tier_exempt {
                let user = store
                    .get::<UserRecord>(&keys::user(owner))?
                    .ok_or(WorkspaceError::NotFound)?;
                if user.tier == Tier::Free {
                    return Err(WorkspaceError::TierRequired);
                }
            }
            let existing = owner_kits(store, owner)?;
            if existing.len() >= BRAND_KITS_PER_USER_MAX {
                return Err(WorkspaceError::LimitReached {
                    what: "brand kits per user",
                    limit: BRAND_KITS_PER_USER_MAX,
                });
            }
            let record = BrandKitRecord {
                id: Uuid::now_v7(),
                user_id: owner,
                name: kit.name,
                colors: kit.colors,
                fonts: kit.fonts,
                logos: kit.logos,
                is_default: kit.is_default,
                created_at_us: now,
                updated_at_us: now,
            };
            let mut set = WriteSet::new();
            if record.is_default {
                clear_defaults(&existing, record.id, now, &mut set);
            }
            set.put(keys::id(record.id), &record);
            set.put(keys::pair(owner, record.id), &BrandKitOfUser);
            (set, Changed::BrandKit(record))
        }
        Command::UpdateBrandKit { id, patch } => {
            let old = owned::<BrandKitRecord>(store, owner, id)?;
            let mut kit = old.clone();
            if let Some(v) = patch.name {
                kit.name = v;
            }
            if let Some(v) = patch.colors {
                kit.colors = v;
            }
            if let Some(v) = patch.fonts {
                kit.fonts = v;
            }
            if let Some(v) = patch.logos {
                kit.logos = v;
            }
            if let Some(v) = patch.is_default {
                kit.is_default = v;
            }
            kit.updated_at_us = now;
            let mut set = WriteSet::new();
            set.require_equal(keys::id(id), &old);
            if kit.is_default && !old.is_default {
                // Making one default clears the others in the same write.
                clear_defaults(&owner_kits(store, owner)?, id, now, &mut set);
            }
            set.put(keys::id(id), &kit);
            (set, Changed::BrandKit(kit))
        }
        Command::DeleteBrandKit { id } => {
            let kit = owned::<BrandKitRecord>(store, owner, id)?;
            let workbenches =
                owner_children::<WorkbenchRecord>(store, Table::WorkbenchesByUser, owner)?
                    .iter()
                    .filter(|w| w.default_brand_kit_id == Some(id))
                    .count();
            let projects = owner_children::<ProjectRecord>(store, Table::ProjectsByUser, owner)?
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
            (set, Changed::Deleted)
        }
        Command::CreateAsset { project_id, asset } => {
            let p = owned::<ProjectRecord>(store, owner, project_id)?;
            if count(store, &keys::id(project_id), Table::AssetsByProject)?
                >= ASSETS_PER_PROJECT_MAX
            {
                return Err(WorkspaceError::LimitReached {
                    what: "assets per project",
                    limit: ASSETS_PER_PROJECT_MAX,
                });
            }
            let a = AssetRecord {
                id: Uuid::now_v7(),
                user_id: p.user_id,
                project_id,
                kind: asset.kind,
                path: asset.path,
                mime: asset.mime,
                size: asset.size,
                generation_request_id: asset.generation_request_id,
                created_at_us: now,
            };
            let mut set = WriteSet::new();
            set.require_present::<ProjectRecord>(keys::id(project_id));
            set.put(keys::id(a.id), &a);
            set.put(keys::pair(project_id, a.id), &AssetOfProject);
            (set, Changed::Asset(a))
        }
        Command::DeleteAsset { project_id, id } => {
            let a = owned::<AssetRecord>(store, owner, id)?;
            if a.project_id != project_id {
                return Err(WorkspaceError::NotFound);
            }
            let mut set = WriteSet::new();
            set.require_present::<AssetRecord>(keys::id(id));
            set.delete::<AssetRecord>(keys::id(id));
            set.delete::<AssetOfProject>(keys::pair(project_id, id));
            (set, Changed::Deleted)
        }
        Command::CompleteGeneration {
            generation,
            completed,
            assets,
        } => {
            if generation.user_id != owner {
                return Err(WorkspaceError::NotFound);
            }
            let (set, done) =
                crate::generation::completion_set(store, &generation, &completed, &assets)?;
            (set, Changed::Generation(Box::new(done)))
        }
        Command::DeleteEverything { extra } => {
            let mut set = WriteSet::new();
            for wb in owner_children::<WorkbenchRecord>(store, Table::WorkbenchesByUser, owner)? {
                delete_workbench(store, &wb, &mut set)?;
            }
            for kit in owner_kits(store, owner)? {
                set.delete::<BrandKitRecord>(keys::id(kit.id));
                set.delete::<BrandKitOfUser>(keys::pair(owner, kit.id));
            }
            set.extend(extra);
            (set, Changed::Deleted)
        }
    };
    match store.write(set).await? {
        WriteOutcome::Committed => Ok(changed),
        WriteOutcome::ConditionFailed(_) => Err(WorkspaceError::Conflict),
    }
}

/// The record `id` if the owner owns it; any other case is "not found" (never reveal).
fn owned<R: Owned>(store: &Store, owner: Uuid, id: Uuid) -> Result<R, WorkspaceError> {
    match store.get::<R>(&keys::id(id))? {
        Some(r) if r.owner() == owner => Ok(r),
        _ => Err(WorkspaceError::NotFound),
    }
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

fn count(store: &Store, prefix: &[u8], table: Table) -> Result<usize, WorkspaceError> {
    let mut n = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = scan_keys(store, table, prefix, after.as_deref())?;
        n += rows.len();
        if rows.len() < SCAN_STEP {
            return Ok(n);
        }
        after = rows.last().cloned();
    }
}

/// Index keys under `prefix` (one step), whatever the marker type of the table.
fn scan_keys(
    store: &Store,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
) -> Result<Vec<Vec<u8>>, WorkspaceError> {
    Ok(index_keys(store, table, prefix, after, SCAN_STEP)?)
}

/// Up to `limit` keys of an index table under `prefix`, strictly after `after`.
pub fn index_keys(
    store: &Store,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Vec<u8>>, StorageError> {
    fn keys_of<R: storage::Record>(
        store: &Store,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StorageError> {
        Ok(store
            .scan::<R>(prefix, after, Direction::Forward, limit)?
            .into_iter()
            .map(|(k, _)| k)
            .collect())
    }
    match table {
        Table::WorkbenchesByUser => keys_of::<WorkbenchOfUser>(store, prefix, after, limit),
        Table::ProjectsByWorkbench => keys_of::<ProjectOfWorkbench>(store, prefix, after, limit),
        Table::ProjectsByUser => keys_of::<ProjectOfUser>(store, prefix, after, limit),
        Table::BrandKitsByUser => keys_of::<BrandKitOfUser>(store, prefix, after, limit),
        Table::AssetsByProject => keys_of::<AssetOfProject>(store, prefix, after, limit),
        Table::InvoicesByUser => keys_of::<InvoiceOfUser>(store, prefix, after, limit),
        Table::GenerationsByUser => keys_of::<GenerationOfUser>(store, prefix, after, limit),
        other => Err(StorageError::Engine(format!(
            "{other} is not an index table"
        ))),
    }
}

/// The child ids listed under `parent` in an index table.
pub fn child_ids(store: &Store, table: Table, parent: Uuid) -> Result<Vec<Uuid>, StorageError> {
    let prefix = keys::id(parent);
    let mut ids = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = scan_keys(store, table, &prefix, after.as_deref()).map_err(|e| match e {
            WorkspaceError::Storage(s) => s,
            other => StorageError::Engine(other.to_string()),
        })?;
        ids.extend(rows.iter().filter_map(|k| keys::pair_child(k)));
        if rows.len() < SCAN_STEP {
            return Ok(ids);
        }
        after = rows.last().cloned();
    }
}

fn owner_children<R: storage::Record>(
    store: &Store,
    index: Table,
    owner: Uuid,
) -> Result<Vec<R>, WorkspaceError> {
    let mut out = Vec::new();
    for id in child_ids(store, index, owner)? {
        if let Some(r) = store.get::<R>(&keys::id(id))? {
            out.push(r);
        }
    }
    Ok(out)
}

fn owner_kits(store: &Store, owner: Uuid) -> Result<Vec<BrandKitRecord>, WorkspaceError> {
    owner_children(store, Table::BrandKitsByUser, owner)
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

/// The brand kit a generation in this project uses: the project's, else its workbench's
/// default, else the owner's default kit, else none.
pub fn effective_brand_kit(
    store: &Store,
    project: &ProjectRecord,
) -> Result<Option<BrandKitRecord>, StorageError> {
    let kit = |id: Uuid| store.get::<BrandKitRecord>(&keys::id(id));
    if let Some(k) = project.brand_kit_id.map(kit).transpose()?.flatten() {
        return Ok(Some(k));
    }
    let wb = store.get::<WorkbenchRecord>(&keys::id(project.workbench_id))?;
    if let Some(k) = wb
        .and_then(|w| w.default_brand_kit_id)
        .map(kit)
        .transpose()?
        .flatten()
    {
        return Ok(Some(k));
    }
    for id in child_ids(store, Table::BrandKitsByUser, project.user_id)? {
        if let Some(k) = kit(id)?.filter(|k| k.is_default) {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

use storage::Table;
