//! The fast path of group commit on PostgreSQL: a whole batch in a handful of statements.
//!
//! Why: on a small machine PostgreSQL's own CPU is the limit, and it goes mostly to statements,
//! not rows. Set by set, a deduct costs five statements (locked read, two writes, savepoint
//! bookkeeping); here every key the batch's conditions name is read and locked with one
//! `SELECT … WHERE k = ANY($1) … FOR UPDATE` per table, the sets are decided in order in memory
//! (each sees the writes of the sets before it, as it would in the database), and what the
//! passing sets leave is written with one statement per table and kind: a multi-row upsert, a
//! multi-row insert for keys a set required absent, one `DELETE … = ANY`.
//!
//! Anything unusual ends the fast path with nothing kept (the caller drops the transaction)
//! and the batch is run set by set, each in a savepoint, which answers each set exactly: a
//! statement the database refuses (a constraint guarding an invariant), a record that does not
//! decode, another node inserting a key a set here required absent.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use postgres::types::ToSql;
use postgres::{Statement, Transaction};

use super::projection;
use super::schema::table_name;
use crate::writer::{Condition, Job, Op, SetResult};
use crate::{keys, Table, WriteOutcome};

/// Rows one multi-row statement carries at most (more are split): keeps every statement's
/// parameters far under PostgreSQL's 65,535 and the number of prepared shapes bounded.
pub(super) const ROWS_PER_STATEMENT_MAX: usize = 64;

/// What the fast path came to.
pub(super) enum Bulk {
    /// Every set decided and written; the caller commits.
    Done(Vec<SetResult>),
    /// Run the batch set by set instead (the transaction must be dropped: it may hold writes).
    SetBySet,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    Lock,
    Upsert,
    Insert,
    Delete,
}

/// Prepared statements by table, shape and row count.
#[derive(Default)]
pub(super) struct Statements {
    prepared: HashMap<(Table, Shape, usize), Statement>,
}

impl Statements {
    fn get(
        &mut self,
        txn: &mut Transaction<'_>,
        table: Table,
        shape: Shape,
        rows: usize,
    ) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.get(&(table, shape, rows)) {
            return Ok(s.clone());
        }
        let name = table_name(table);
        let sql = match shape {
            Shape::Lock => {
                format!("SELECT k, v FROM {name} WHERE k = ANY($1) ORDER BY k FOR UPDATE")
            }
            Shape::Upsert => projection::rows_sql(table, &name, rows, projection::Conflict::Update),
            Shape::Insert => {
                projection::rows_sql(table, &name, rows, projection::Conflict::Nothing)
            }
            Shape::Delete => format!("DELETE FROM {name} WHERE k = ANY($1)"),
        };
        let s = txn.prepare(&sql)?;
        self.prepared.insert((table, shape, rows), s.clone());
        Ok(s)
    }
}

type Key = (Table, Vec<u8>);

/// What the passing sets of a batch leave, decided in memory.
#[derive(Default)]
struct Plan {
    /// The final value of every key written (`None`: deleted).
    writes: HashMap<Key, Option<Vec<u8>>>,
    /// Keys a passing set required absent and found absent: inserted without overwrite.
    insert_only: HashSet<Key>,
    /// Appended values in set order, per table.
    appends: BTreeMap<Table, Vec<Vec<u8>>>,
}

/// Applies `batch` inside `txn` in a handful of statements (see the module's text).
/// `floors` are the connection's append-sequence floors (see [`reserve_sequence`]).
pub(super) fn apply(
    txn: &mut Transaction<'_>,
    statements: &mut Statements,
    floors: &mut [bool],
    batch: &[Job],
) -> Result<Bulk, postgres::Error> {
    let stored = read_locked(txn, statements, batch)?;
    let (results, mut plan) = decide(&stored, batch);
    if plan
        .insert_only
        .iter()
        .any(|k| plan.writes.get(k).is_some_and(Option::is_none))
    {
        // Inserted and deleted again in one batch: a delete could remove another node's row.
        return Ok(Bulk::SetBySet);
    }
    let appends = std::mem::take(&mut plan.appends);
    if !write(txn, statements, &plan)? {
        return Ok(Bulk::SetBySet);
    }
    // Last: a reserved sequence row stays locked until commit and every other writer
    // appending to the table waits for it, so nothing else of the batch runs under that lock.
    let mut appended = Plan::default();
    for (table, values) in appends {
        let count = u64::try_from(values.len()).unwrap_or(u64::MAX);
        let first = reserve_sequence(txn, floors, table, count)?;
        for (i, value) in (first..).zip(values) {
            appended
                .writes
                .insert((table, keys::sequence(i)), Some(value));
        }
    }
    if write(txn, statements, &appended)? {
        Ok(Bulk::Done(results))
    } else {
        Ok(Bulk::SetBySet)
    }
}

/// Every key named by a condition in the batch, read and locked: `None` where absent.
fn read_locked(
    txn: &mut Transaction<'_>,
    statements: &mut Statements,
    batch: &[Job],
) -> Result<HashMap<Key, Option<Vec<u8>>>, postgres::Error> {
    // Tables in one order and keys sorted within each, so two nodes lock in the same order.
    let mut wanted: BTreeMap<Table, BTreeSet<&[u8]>> = BTreeMap::new();
    for c in batch.iter().flat_map(|j| &j.set.conditions) {
        let (table, key) = c.key();
        wanted.entry(table).or_default().insert(key);
    }
    let mut stored = HashMap::new();
    for (table, keys) in wanted {
        let keys: Vec<&[u8]> = keys.into_iter().collect();
        let s = statements.get(txn, table, Shape::Lock, 0)?;
        for row in txn.query(&s, &[&keys])? {
            stored.insert((table, row.get::<_, Vec<u8>>(0)), Some(row.get(1)));
        }
        for k in keys {
            stored.entry((table, k.to_vec())).or_insert(None);
        }
    }
    Ok(stored)
}

/// Decides the sets in order against what was read plus the writes of the sets before.
fn decide(stored: &HashMap<Key, Option<Vec<u8>>>, batch: &[Job]) -> (Vec<SetResult>, Plan) {
    let mut plan = Plan::default();
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let set = &job.set;
        let now = |t: Table, k: &[u8]| -> Option<Vec<u8>> {
            let key = (t, k.to_vec());
            match plan.writes.get(&key) {
                Some(v) => v.clone(),
                None => stored.get(&key).cloned().flatten(),
            }
        };
        let failed = set.conditions.iter().position(|c| {
            let (table, key) = c.key();
            let current = now(table, key);
            !match c {
                Condition::Absent { .. } => current.is_none(),
                Condition::Present { .. } => current.is_some(),
                Condition::Equals { value, .. } => current.as_deref() == Some(value.as_slice()),
            }
        });
        if let Some(i) = failed {
            results.push(Ok(WriteOutcome::ConditionFailed(i)));
            continue;
        }
        for c in &set.conditions {
            if let Condition::Absent { table, key } = c {
                if stored
                    .get(&(*table, key.clone()))
                    .is_some_and(Option::is_none)
                {
                    plan.insert_only.insert((*table, key.clone()));
                }
            }
        }
        for op in &set.ops {
            match op {
                Op::Put { table, key, value } => {
                    plan.writes
                        .insert((*table, key.clone()), Some(value.clone()));
                }
                Op::Delete { table, key } => {
                    plan.writes.insert((*table, key.clone()), None);
                }
                Op::Append { table, value } => {
                    plan.appends.entry(*table).or_default().push(value.clone());
                }
            }
        }
        results.push(Ok(WriteOutcome::Committed));
    }
    // A key required absent but never written needs no insert (nothing to guard).
    plan.insert_only.retain(|k| plan.writes.contains_key(k));
    (results, plan)
}

/// The writes of one table, by statement.
#[derive(Default)]
struct TableWrites<'a> {
    deletes: Vec<&'a [u8]>,
    upserts: Vec<(&'a [u8], &'a [u8])>,
    inserts: Vec<(&'a [u8], &'a [u8])>,
}

/// Writes the plan, table by table. `false`: run the batch set by set instead (a record did
/// not decode, the database refused a statement, or another node inserted a key first).
fn write(
    txn: &mut Transaction<'_>,
    statements: &mut Statements,
    plan: &Plan,
) -> Result<bool, postgres::Error> {
    let mut by_table: BTreeMap<Table, TableWrites> = BTreeMap::new();
    for ((table, key), value) in &plan.writes {
        let w = by_table.entry(*table).or_default();
        match value {
            None => w.deletes.push(key),
            Some(v) if plan.insert_only.contains(&(*table, key.clone())) => {
                w.inserts.push((key, v))
            }
            Some(v) => w.upserts.push((key, v)),
        }
    }
    for (
        table,
        TableWrites {
            deletes,
            upserts,
            inserts,
        },
    ) in by_table
    {
        if !deletes.is_empty() {
            let s = statements.get(txn, table, Shape::Delete, 0)?;
            if refused(txn.execute(&s, &[&deletes]))?.is_none() {
                return Ok(false);
            }
        }
        for (shape, rows) in [(Shape::Upsert, upserts), (Shape::Insert, inserts)] {
            for chunk in rows.chunks(ROWS_PER_STATEMENT_MAX) {
                match put_rows(txn, statements, table, shape, chunk)? {
                    Some(n) if shape == Shape::Insert && n < chunk.len() as u64 => {
                        return Ok(false); // another node inserted one of these keys first
                    }
                    Some(_) => {}
                    None => return Ok(false),
                }
            }
        }
    }
    Ok(true)
}

/// One multi-row upsert or insert; `None` when a record does not decode or the database
/// refused the statement, else the rows it wrote.
fn put_rows(
    txn: &mut Transaction<'_>,
    statements: &mut Statements,
    table: Table,
    shape: Shape,
    rows: &[(&[u8], &[u8])],
) -> Result<Option<u64>, postgres::Error> {
    let mut typed = Vec::with_capacity(rows.len());
    for (_, value) in rows {
        match projection::values(table, value) {
            Ok(v) => typed.push(v),
            Err(_) => return Ok(None),
        }
    }
    let mut params: Vec<&(dyn ToSql + Sync)> = Vec::new();
    for ((key, value), columns) in rows.iter().zip(&typed) {
        params.push(key);
        params.push(value);
        params.extend(columns.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
    }
    let s = statements.get(txn, table, shape, rows.len())?;
    refused(txn.execute(&s, &params))
}

/// `None` when the database refused the statement (the transaction is aborted: the batch
/// goes set by set); a lost session or a deadlock stays an error, for the caller to handle.
fn refused(r: Result<u64, postgres::Error>) -> Result<Option<u64>, postgres::Error> {
    match r {
        Ok(n) => Ok(Some(n)),
        Err(e) if super::batch::ends_batch(&e) => Err(e),
        Err(_) => Ok(None),
    }
}

/// Reserves `count` consecutive keys of `table`'s append sequence and returns the first. The
/// sequence row stays locked until commit, so another node appending to the same table waits:
/// appended keys grow in commit order across nodes too, which is what readers that follow
/// them (the publisher) rely on. The first use on a connection lifts the sequence past the
/// table's last key (`floors`), so keys written by another engine (a copied store) are never
/// reused.
pub(super) fn reserve_sequence(
    txn: &mut Transaction<'_>,
    floors: &mut [bool],
    table: Table,
    count: u64,
) -> Result<u64, postgres::Error> {
    let floor: i64 = if floors[table.index()] {
        0
    } else {
        let last: Option<Vec<u8>> = txn
            .query_opt(
                &format!(
                    "SELECT k FROM {} ORDER BY k DESC LIMIT 1",
                    table_name(table)
                ),
                &[],
            )?
            .map(|r| r.get(0));
        floors[table.index()] = true;
        last.and_then(|k| keys::parse_sequence(&k)).map_or(0, |n| {
            i64::try_from(n.saturating_add(1)).unwrap_or(i64::MAX)
        })
    };
    let count = i64::try_from(count).unwrap_or(i64::MAX);
    let row = txn.query_one(
        "INSERT INTO cf_append_sequences (table_name, next) VALUES ($1, $2::bigint + $3::bigint)
         ON CONFLICT (table_name)
         DO UPDATE SET next = GREATEST(cf_append_sequences.next, $2::bigint) + $3::bigint
         RETURNING next - $3::bigint",
        &[&table.name(), &floor, &count],
    )?;
    let first: i64 = row.get(0);
    Ok(u64::try_from(first).unwrap_or(0))
}
