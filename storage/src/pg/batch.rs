//! Group commit on PostgreSQL: a writer thread applies every waiting write set in one
//! transaction, and one `COMMIT` (synchronous commit: the WAL is flushed) answers them all. A
//! failed condition skips its own set alone. The batch is first written in a handful of
//! statements ([`super::bulk`]); when the database refuses one, it runs again set by set, each
//! inside a savepoint, so a row the constraints refuse undoes that set alone.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Statement, Transaction};

use std::sync::Arc;

use super::bulk::{self, Bulk};
use super::notify;
use super::projection;
use super::schema::table_name;
use super::settings::PgSettings;
use crate::cache::ReadCache;
use crate::writer::{self, BatchEngine, Condition, EvictOnDrop, Job, Op, SetResult};
use crate::{keys, StorageError, Table, WriteOutcome, WriteSet};

/// A batch that meets a deadlock or a serialization failure (another node's transaction) is
/// run again this many times before its sets are answered with the error.
const BATCH_ATTEMPTS_MAX: usize = 3;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// The row, locked until commit, for a condition.
    Lock,
    /// Insert or replace.
    Upsert,
    /// Insert only: the set required the key absent, so another node's insert of it must
    /// fail this set rather than be overwritten.
    Insert,
    Delete,
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<(Table, Kind), Statement>,
    /// Tables whose append sequence was already lifted past the table's last key.
    floors_known: Vec<bool>,
    /// The multi-row statements of the fast path.
    bulk: bulk::Statements,
}

pub(crate) struct PgBatch {
    settings: PgSettings,
    conn: Option<Conn>,
    /// This node's read cache: a batch's changes leave it before the batch is answered.
    cache: Arc<ReadCache>,
}

impl PgBatch {
    pub fn new(settings: PgSettings, client: Client, cache: Arc<ReadCache>) -> PgBatch {
        PgBatch {
            settings,
            conn: Some(Conn::new(client)),
            cache,
        }
    }

    /// The connection, opened again if it was lost (the database came back).
    fn conn(&mut self) -> Result<&mut Conn, StorageError> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            let client = self.settings.connect()?;
            tracing::info!(database = %self.settings.describe(), "storage writer reconnected");
            self.conn = Some(Conn::new(client));
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StorageError::Unavailable("no database connection".into()))
    }
}

impl BatchEngine for PgBatch {
    fn apply(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, StorageError> {
        // This node reads its own writes at once; other nodes hear of them from the
        // notification.
        let mut evict = EvictOnDrop::new(self.cache.clone(), batch);
        let result = self.apply_attempts(batch);
        evict.failed_conditions(batch, result.as_deref().ok());
        result
    }
}

/// Tells every node's cache, at commit, which of its keys the batch changes.
fn notify(txn: &mut Transaction<'_>, batch: &[Job]) -> Result<(), postgres::Error> {
    for payload in notify::payloads(writer::changed_keys(batch)) {
        txn.execute("SELECT pg_notify($1, $2)", &[&notify::CHANNEL, &payload])?;
    }
    Ok(())
}

impl PgBatch {
    fn apply_attempts(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, StorageError> {
        let mut attempt = 1;
        loop {
            let conn = self.conn()?;
            match conn.apply(batch) {
                Ok(results) => return Ok(results),
                Err(e) if retryable(&e) && attempt < BATCH_ATTEMPTS_MAX => {
                    tracing::debug!(error = %e, attempt, "batch met another transaction; again");
                    attempt += 1;
                }
                Err(e) => {
                    let closed = conn.client.is_closed() || session_lost(&e);
                    if closed {
                        self.conn = None;
                    }
                    return Err(pg_error(e, closed));
                }
            }
        }
    }
}

/// Whether `e` ends the whole batch rather than one set: the session is gone, or the
/// transaction met another node's (deadlock, serialization) and the batch runs again.
pub(crate) fn ends_batch(e: &postgres::Error) -> bool {
    session_lost(e) || retryable(e)
}

pub(crate) fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// A lost connection is `Unavailable` (503, and the writer reconnects); anything else is an
/// engine error.
pub(crate) fn pg_error(e: postgres::Error, closed: bool) -> StorageError {
    if closed || session_lost(&e) {
        StorageError::Unavailable(describe(&e))
    } else {
        StorageError::Engine(describe(&e))
    }
}

/// Whether `e` ended the session: the connection closed, or the server said it is ending it
/// (a FATAL error such as 57P01, sent by a restart, a failover or `pg_terminate_backend`,
/// arrives before the socket closes) or that the connection failed (class 08).
pub(crate) fn session_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            let code = db.code().code();
            matches!(db.severity(), "FATAL" | "PANIC")
                || code.starts_with("08")
                || code.starts_with("57P")
        })
}

/// The error with what the server said (`postgres::Error`'s own text is only "db error").
pub(crate) fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl Conn {
    fn new(client: Client) -> Conn {
        Conn {
            client,
            statements: HashMap::new(),
            floors_known: vec![false; Table::ALL.len()],
            bulk: bulk::Statements::default(),
        }
    }

    /// Applies the batch: first in a handful of statements ([`bulk`]); should that meet
    /// anything unusual (a statement the database refuses, another node's insert of a key a
    /// set required absent), again set by set, each in a savepoint, so that only the refused
    /// set fails and each is answered exactly.
    fn apply(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, postgres::Error> {
        match self.apply_bulk(batch)? {
            Some(results) => Ok(results),
            None => self.apply_isolated(batch),
        }
    }

    /// `None` when the batch must go set by set (the transaction is rolled back).
    fn apply_bulk(&mut self, batch: &[Job]) -> Result<Option<Vec<SetResult>>, postgres::Error> {
        let mut floors = self.floors_known.clone();
        let mut txn = self.client.transaction()?;
        // First: a notification is sent only at commit, and sent before the append sequence
        // is reserved it does not lengthen that row's lock.
        notify(&mut txn, batch)?;
        match bulk::apply(&mut txn, &mut self.bulk, &mut floors, batch)? {
            Bulk::Done(results) => {
                txn.commit()?;
                self.floors_known = floors;
                Ok(Some(results))
            }
            Bulk::SetBySet => Ok(None),
        }
    }

    fn apply_isolated(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, postgres::Error> {
        let mut floors = self.floors_known.clone();
        let mut txn = self.client.transaction()?;
        notify(&mut txn, batch)?;
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            let mut sp = txn.savepoint("write_set")?;
            let mut w = SetWriter {
                txn: &mut sp,
                statements: &mut self.statements,
                floors: &mut floors,
            };
            match w.apply(&job.set) {
                Ok(WriteOutcome::Committed) => {
                    sp.commit()?;
                    results.push(Ok(WriteOutcome::Committed));
                }
                Ok(failed) => {
                    sp.rollback()?;
                    results.push(Ok(failed));
                }
                Err(SetError::Pg(e)) if ends_batch(&e) => return Err(e),
                Err(SetError::Pg(e)) => {
                    sp.rollback()?;
                    results.push(refused(&job.set, e));
                }
                Err(SetError::Record(e)) => {
                    sp.rollback()?;
                    results.push(Err(e));
                }
            }
        }
        txn.commit()?;
        self.floors_known = floors;
        Ok(results)
    }
}

/// What a set the database refused answers: a unique violation on a key the set required
/// absent is that condition failing (another node inserted it first); any other refusal is
/// the database guarding an invariant, and an error for this set alone.
fn refused(set: &WriteSet, e: postgres::Error) -> SetResult {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        if let Some(i) = set
            .conditions
            .iter()
            .position(|c| matches!(c, Condition::Absent { .. }))
        {
            return Ok(WriteOutcome::ConditionFailed(i));
        }
    }
    let why = describe(&e);
    tracing::error!(error = %why, "the database refused a write set; nothing of it was written");
    Err(StorageError::Engine(format!(
        "the database refused the write: {why}"
    )))
}

/// Why one set could not be applied.
enum SetError {
    Pg(postgres::Error),
    /// The record does not decode, so its typed columns cannot be filled: a caller bug.
    Record(StorageError),
}

impl From<postgres::Error> for SetError {
    fn from(e: postgres::Error) -> Self {
        SetError::Pg(e)
    }
}

/// Applies one set inside its savepoint.
struct SetWriter<'a, 't> {
    txn: &'a mut Transaction<'t>,
    statements: &'a mut HashMap<(Table, Kind), Statement>,
    floors: &'a mut [bool],
}

impl SetWriter<'_, '_> {
    fn apply(&mut self, set: &WriteSet) -> Result<WriteOutcome, SetError> {
        for (i, c) in set.conditions.iter().enumerate() {
            if !self.holds(c)? {
                return Ok(WriteOutcome::ConditionFailed(i));
            }
        }
        for op in &set.ops {
            match op {
                Op::Put { table, key, value } => {
                    let kind = if required_absent(set, *table, key) {
                        Kind::Insert
                    } else {
                        Kind::Upsert
                    };
                    self.put(*table, kind, key, value)?;
                }
                Op::Delete { table, key } => {
                    let s = self.statement(*table, Kind::Delete)?;
                    self.txn.execute(&s, &[key]).map_err(SetError::Pg)?;
                }
                Op::Append { table, value } => {
                    let key = keys::sequence(self.next_sequence(*table)?);
                    self.put(*table, Kind::Upsert, &key, value)?;
                }
            }
        }
        Ok(WriteOutcome::Committed)
    }

    fn holds(&mut self, c: &Condition) -> Result<bool, postgres::Error> {
        let (table, key) = c.key();
        let s = self.statement(table, Kind::Lock)?;
        let row = self.txn.query_opt(&s, &[&key])?;
        let stored: Option<Vec<u8>> = row.map(|r| r.get(0));
        Ok(match c {
            Condition::Absent { .. } => stored.is_none(),
            Condition::Present { .. } => stored.is_some(),
            Condition::Equals { value, .. } => stored.as_deref() == Some(value.as_slice()),
        })
    }

    fn put(&mut self, table: Table, kind: Kind, key: &[u8], value: &[u8]) -> Result<(), SetError> {
        // A record that does not decode never reaches the database.
        let typed = projection::values(table, value).map_err(SetError::Record)?;
        let s = self.statement(table, kind)?;
        let key: &(dyn ToSql + Sync) = &key;
        let value: &(dyn ToSql + Sync) = &value;
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![key, value];
        params.extend(typed.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)));
        self.txn.execute(&s, &params)?;
        Ok(())
    }

    /// The next key of `table`'s append sequence (see [`bulk::reserve_sequence`]).
    fn next_sequence(&mut self, table: Table) -> Result<u64, postgres::Error> {
        bulk::reserve_sequence(self.txn, self.floors, table, 1)
    }

    fn statement(&mut self, table: Table, kind: Kind) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(&(table, kind)) {
            return Ok(s.clone());
        }
        let name = table_name(table);
        let sql = match kind {
            Kind::Lock => format!("SELECT v FROM {name} WHERE k = $1 FOR UPDATE"),
            Kind::Upsert => projection::upsert_sql(table, &name),
            Kind::Insert => projection::rows_sql(table, &name, 1, projection::Conflict::Refuse),
            Kind::Delete => format!("DELETE FROM {name} WHERE k = $1"),
        };
        let s = self.txn.prepare(&sql)?;
        self.statements.insert((table, kind), s.clone());
        Ok(s)
    }
}

fn required_absent(set: &WriteSet, table: Table, key: &[u8]) -> bool {
    set.conditions.iter().any(|c| {
        matches!(c, Condition::Absent { table: t, key: k } if *t == table && k.as_slice() == key)
    })
}
