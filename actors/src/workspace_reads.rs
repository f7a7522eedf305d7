//! Reads of the creative workspace that need no actor: index scans, child lists, the effective
//! brand kit, and the bounds the workspace enforces. The workspace actor, the generation rules
//! and the HTTP layer all read through here, so none of them has to import another.

use storage::keys;
use storage::records::*;
use storage::{Direction, Reader, Record, StorageError, Table};
use uuid::Uuid;

pub const WORKBENCHES_PER_USER_MAX: usize = 100;
pub const PROJECTS_PER_WORKBENCH_MAX: usize = 500;
pub const BRAND_KITS_PER_USER_MAX: usize = 50;
pub const ASSETS_PER_PROJECT_MAX: usize = 5000;
pub const TEMPLATES_PER_USER_MAX: usize = 200;
/// Index keys read per step when a whole child list is collected.
const SCAN_STEP: usize = 1000;

/// Longest object-store path accepted.
pub const OBJECT_PATH_LEN_MAX: usize = 1024;
/// 10 GiB: the largest asset recorded.
pub const ASSET_SIZE_MAX: u64 = 10 * 1024 * 1024 * 1024;

/// An object-store path: relative, `/`-separated segments of ASCII letters, digits, `.`, `_`,
/// `-`; no `.` or `..` segment, no empty segment, no scheme. Percent signs, backslashes and
/// control characters cannot appear, so no decoding step can turn a path into another. The
/// same rule holds for API input and for the workers' result messages.
pub fn object_path_ok(raw: &str) -> bool {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    !raw.is_empty() && raw.len() <= OBJECT_PATH_LEN_MAX && raw.split('/').all(segment_ok)
}

/// `type/subtype` in the token characters of RFC 6838.
pub fn mime_ok(raw: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
    };
    matches!(raw.split_once('/'), Some((t, s)) if token(t) && token(s))
}

/// An asset to create (by a user, or from a completed generation).
#[derive(Debug, Clone)]
pub struct NewAsset {
    pub kind: String,
    pub path: String,
    pub mime: String,
    pub size: u64,
    pub generation_request_id: Option<Uuid>,
}

/// Up to `limit` keys of an index table under `prefix`, strictly after `after`.
pub fn index_keys(
    store: &impl Reader,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Vec<u8>>, StorageError> {
    fn keys_of<R: Record>(
        store: &impl Reader,
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
        Table::TemplatesByUser => keys_of::<TemplateOfUser>(store, prefix, after, limit),
        Table::TicketsByUser => keys_of::<TicketOfUser>(store, prefix, after, limit),
        Table::OpenTicketsByUser => keys_of::<OpenTicketOfUser>(store, prefix, after, limit),
        other => Err(StorageError::Engine(format!(
            "{other} is not an index table"
        ))),
    }
}

/// The child ids listed under `parent` in an index table.
pub fn child_ids(
    store: &impl Reader,
    table: Table,
    parent: Uuid,
) -> Result<Vec<Uuid>, StorageError> {
    let prefix = keys::id(parent);
    let mut ids = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = index_keys(store, table, &prefix, after.as_deref(), SCAN_STEP)?;
        ids.extend(rows.iter().filter_map(|k| keys::pair_child(k)));
        if rows.len() < SCAN_STEP {
            return Ok(ids);
        }
        after = rows.last().cloned();
    }
}

/// How many children `parent` has in an index table.
pub fn child_count(store: &impl Reader, table: Table, parent: Uuid) -> Result<usize, StorageError> {
    let prefix = keys::id(parent);
    let mut n = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let rows = index_keys(store, table, &prefix, after.as_deref(), SCAN_STEP)?;
        n += rows.len();
        if rows.len() < SCAN_STEP {
            return Ok(n);
        }
        after = rows.last().cloned();
    }
}

/// The records listed under `parent` in an index table (a missing one is skipped).
pub fn children<R: Record>(
    store: &impl Reader,
    index: Table,
    parent: Uuid,
) -> Result<Vec<R>, StorageError> {
    let mut out = Vec::new();
    for id in child_ids(store, index, parent)? {
        if let Some(r) = store.get::<R>(&keys::id(id))? {
            out.push(r);
        }
    }
    Ok(out)
}

/// Whether `owner`'s workbench `workbench` is being deleted in batches.
pub fn being_deleted(
    store: &impl Reader,
    owner: Uuid,
    workbench: Uuid,
) -> Result<bool, StorageError> {
    Ok(store
        .get::<DeletingWorkbench>(&keys::pair(owner, workbench))?
        .is_some())
}

/// Whether a record may be shown and changed: not inside a workbench being deleted.
pub fn visible<R: Owned>(store: &impl Reader, record: &R) -> Result<bool, StorageError> {
    match record.workbench() {
        Some(wb) => Ok(!being_deleted(store, record.owner(), wb)?),
        None => Ok(true),
    }
}

/// The brand kit a generation in this project uses: the project's, else its workbench's
/// default, else the owner's default kit, else none.
pub fn effective_brand_kit(
    store: &impl Reader,
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
