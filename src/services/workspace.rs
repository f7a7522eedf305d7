//! Workspace reads (straight from the store) and the record rules: who may see or change what.

use actors::workspace_reads::{effective_brand_kit, index_keys, visible};
use storage::keys;
use storage::records::*;
use storage::{Direction, Reader, Record, Table};
use uuid::Uuid;

use crate::error::AppError;
use crate::extract::Page;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A user sees and changes only their own records (another user's answer 404, never revealing
/// they exist); an agent reads everything and changes only their own; an admin does everything.
pub fn authorize(caller: &UserRecord, owner: Uuid, access: Access) -> Result<(), AppError> {
    if caller.id == owner {
        return Ok(());
    }
    match (caller.role, access) {
        (Role::Admin, _) | (Role::Agent, Access::Read) => Ok(()),
        (Role::Agent, Access::Write) => Err(AppError::Forbidden),
        (Role::User, _) => Err(AppError::NotFound),
    }
}

/// A record, by the id as the path gave it, that the caller may access. A malformed id names no
/// record: 404 like any other.
pub fn load<R: Owned>(
    store: &impl Reader,
    caller: &UserRecord,
    raw_id: &str,
    access: Access,
) -> Result<R, AppError> {
    let id = Uuid::parse_str(raw_id).map_err(|_| AppError::NotFound)?;
    load_id(store, caller, id, access)
}

/// The same for an id already parsed.
pub fn load_id<R: Owned>(
    store: &impl Reader,
    caller: &UserRecord,
    id: Uuid,
    access: Access,
) -> Result<R, AppError> {
    let record = store.get::<R>(&keys::id(id))?.ok_or(AppError::NotFound)?;
    authorize(caller, record.owner(), access)?;
    // Inside a workbench being deleted in batches: already gone for every caller.
    if !visible(store, &record)? {
        return Err(AppError::NotFound);
    }
    Ok(record)
}

/// One page of the records listed under `parent` in an index table.
pub fn page_by_index<R: Record>(
    store: &impl Reader,
    index: Table,
    parent: Uuid,
    page: &Page,
) -> Result<(Vec<R>, Option<String>), AppError> {
    let prefix = keys::id(parent);
    if page.after.as_ref().is_some_and(|a| !a.starts_with(&prefix)) {
        return Err(AppError::validation(
            "cursor",
            "the cursor is not one we issued",
        ));
    }
    // Index keys are (parent, child): the page is taken over the index, then records fetched.
    let index_page = index_keys(store, index, &prefix, page.after.as_deref(), page.limit)?;
    let mut records = Vec::with_capacity(index_page.len());
    for id in index_page.iter().filter_map(|k| keys::pair_child(k)) {
        if let Some(r) = store.get::<R>(&keys::id(id))? {
            records.push(r);
        }
    }
    let next = page.next_cursor(index_page.len(), index_page.last().map(Vec::as_slice));
    Ok((records, next))
}

/// One page of every record of a table (staff listings).
pub fn page_all<R: Record>(
    store: &impl Reader,
    page: &Page,
) -> Result<(Vec<R>, Option<String>), AppError> {
    let rows = store.scan::<R>(&[], page.after.as_deref(), Direction::Forward, page.limit)?;
    let next = page.next_cursor(rows.len(), rows.last().map(|(k, _)| k.as_slice()));
    Ok((rows.into_iter().map(|(_, r)| r).collect(), next))
}

/// Drops the records of a listing page that are inside a workbench being deleted (the page may
/// come back shorter; its cursor still moves on).
pub fn only_visible<R: Owned>(store: &impl Reader, records: Vec<R>) -> Result<Vec<R>, AppError> {
    // A listing spans few owners, each with few (usually no) marks: read each owner's marks
    // once rather than look one up per record.
    let mut marks: std::collections::HashMap<Uuid, Vec<Uuid>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let Some(wb) = r.workbench() else {
            out.push(r);
            continue;
        };
        let marked = match marks.entry(r.owner()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                store
                    .scan::<DeletingWorkbench>(
                        &keys::user(r.owner()),
                        None,
                        Direction::Forward,
                        MARKS_READ_MAX,
                    )?
                    .iter()
                    .filter_map(|(k, _)| keys::pair_child(k))
                    .collect(),
            ),
        };
        if !marked.contains(&wb) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Deletions in progress read per owner for a listing (each is one workbench).
const MARKS_READ_MAX: usize = 1000;

/// A listing: the caller's own records, or for staff everyone's (or one user's with `user_id`).
pub fn page_owned<R: Record>(
    store: &impl Reader,
    caller: &UserRecord,
    index: Table,
    page: &Page,
) -> Result<(Vec<R>, Option<String>), AppError> {
    match (caller.role, page.uuid_filter("user_id")?) {
        (Role::User, Some(u)) if u != caller.id => Err(AppError::NotFound),
        (Role::User, _) => page_by_index(store, index, caller.id, page),
        (_, Some(u)) => page_by_index(store, index, u, page),
        (_, None) => page_all(store, page),
    }
}

/// Ids shown inside a record's view at most; the full lists are paged by their own routes, so
/// a listing of 200 projects never reads a million asset keys.
pub const IDS_IN_VIEW_MAX: usize = 100;

/// The first [`IDS_IN_VIEW_MAX`] children under `parent`, and whether that is all of them.
fn first_children(
    store: &impl Reader,
    table: Table,
    parent: Uuid,
) -> Result<(Vec<Uuid>, bool), AppError> {
    let prefix = keys::id(parent);
    let mut ids: Vec<Uuid> = index_keys(store, table, &prefix, None, IDS_IN_VIEW_MAX + 1)?
        .iter()
        .filter_map(|k| keys::pair_child(k))
        .collect();
    let complete = ids.len() <= IDS_IN_VIEW_MAX;
    ids.truncate(IDS_IN_VIEW_MAX);
    Ok((ids, complete))
}

pub fn project_ids(store: &impl Reader, workbench: Uuid) -> Result<(Vec<Uuid>, bool), AppError> {
    first_children(store, Table::ProjectsByWorkbench, workbench)
}

pub fn asset_ids(store: &impl Reader, project: Uuid) -> Result<(Vec<Uuid>, bool), AppError> {
    first_children(store, Table::AssetsByProject, project)
}

pub fn effective_kit_id(
    store: &impl Reader,
    project: &ProjectRecord,
) -> Result<Option<Uuid>, AppError> {
    Ok(effective_brand_kit(store, project)?.map(|k| k.id))
}
