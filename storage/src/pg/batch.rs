//! Group commit on PostgreSQL: the writer thread applies every waiting write set in one
//! transaction, each set inside a savepoint, so a failed condition (or a row the database's
//! constraints refuse) undoes that set alone; one `COMMIT` (synchronous commit: the WAL is
//! flushed) answers them all.

use std::collections::HashMap;

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Statement, Transaction};

use super::projection;
use super::schema::table_name;
use super::settings::PgSettings;
use crate::writer::{BatchEngine, Condition, Job, Op, SetResult};
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
    /// The last key of a table with appended keys.
    LastKey,
}

/// One connection and its prepared statements.
struct Conn {
    client: Client,
    statements: HashMap<(Table, Kind), Statement>,
    /// Tables whose append sequence was already lifted past the table's last key.
    floors_known: Vec<bool>,
}

pub(crate) struct PgBatch {
    settings: PgSettings,
    conn: Option<Conn>,
}

impl PgBatch {
    pub fn new(settings: PgSettings, client: Client) -> PgBatch {
        PgBatch {
            settings,
            conn: Some(Conn::new(client)),
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
                    let closed = conn.client.is_closed();
                    if closed {
                        self.conn = None;
                    }
                    return Err(pg_error(e, closed));
                }
            }
        }
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(&SqlState::T_R_DEADLOCK_DETECTED) | Some(&SqlState::T_R_SERIALIZATION_FAILURE)
    )
}

/// A lost connection is `Unavailable` (503, and the writer reconnects); anything else is an
/// engine error.
pub(crate) fn pg_error(e: postgres::Error, closed: bool) -> StorageError {
    if closed || e.is_closed() {
        StorageError::Unavailable(describe(&e))
    } else {
        StorageError::Engine(describe(&e))
    }
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
        }
    }

    /// Applies the batch. First without savepoints (a set's conditions are all checked before
    /// any of its writes, so a failed condition has written nothing, and one savepoint costs
    /// two round trips); should the database refuse a statement, the transaction is gone, and
    /// the batch runs again with each set in a savepoint so that only the refused set fails.
    fn apply(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, postgres::Error> {
        match self.apply_fast(batch)? {
            Some(results) => Ok(results),
            None => self.apply_isolated(batch),
        }
    }

    /// `None` when a set met an error of its own (the transaction is rolled back).
    fn apply_fast(&mut self, batch: &[Job]) -> Result<Option<Vec<SetResult>>, postgres::Error> {
        let mut floors = self.floors_known.clone();
        let mut txn = self.client.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        for job in batch {
            let mut w = SetWriter {
                txn: &mut txn,
                statements: &mut self.statements,
                floors: &mut floors,
            };
            match w.apply(&job.set) {
                Ok(outcome) => results.push(Ok(outcome)),
                Err(SetError::Pg(e)) if e.is_closed() || retryable(&e) => return Err(e),
                Err(_) => return Ok(None),
            }
        }
        txn.commit()?;
        self.floors_known = floors;
        Ok(Some(results))
    }

    fn apply_isolated(&mut self, batch: &[Job]) -> Result<Vec<SetResult>, postgres::Error> {
        let mut floors = self.floors_known.clone();
        let mut txn = self.client.transaction()?;
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
                Err(SetError::Pg(e)) if e.is_closed() || retryable(&e) => return Err(e),
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
    floors: &'a mut Vec<bool>,
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
        let (table, key) = match c {
            Condition::Absent { table, key }
            | Condition::Present { table, key }
            | Condition::Equals { table, key, .. } => (*table, key),
        };
        let s = self.statement(table, Kind::Lock)?;
        let row = self.txn.query_opt(&s, &[key])?;
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

    /// The next key of `table`'s append sequence. The sequence row stays locked until commit,
    /// so another node appending to the same table waits: appended keys grow in commit order
    /// across nodes too, which is what readers that follow them (the publisher) rely on.
    fn next_sequence(&mut self, table: Table) -> Result<u64, postgres::Error> {
        let floor: i64 = if self.floors[table.index()] {
            0
        } else {
            let s = self.statement(table, Kind::LastKey)?;
            let last: Option<Vec<u8>> = self.txn.query_opt(&s, &[])?.map(|r| r.get(0));
            self.floors[table.index()] = true;
            last.and_then(|k| keys::parse_sequence(&k)).map_or(0, |n| {
                i64::try_from(n.saturating_add(1)).unwrap_or(i64::MAX)
            })
        };
        let row = self.txn.query_one(
            "INSERT INTO cf_append_sequences (table_name, next) VALUES ($1, $2::bigint + 1)
             ON CONFLICT (table_name)
             DO UPDATE SET next = GREATEST(cf_append_sequences.next, $2::bigint) + 1
             RETURNING next - 1",
            &[&table.name(), &floor],
        )?;
        let next: i64 = row.get(0);
        Ok(u64::try_from(next).unwrap_or(0))
    }

    fn statement(&mut self, table: Table, kind: Kind) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(&(table, kind)) {
            return Ok(s.clone());
        }
        let name = table_name(table);
        let sql = match kind {
            Kind::Lock => format!("SELECT v FROM {name} WHERE k = $1 FOR UPDATE"),
            Kind::Upsert => projection::upsert_sql(table, &name),
            Kind::Insert => insert_sql(table, &name),
            Kind::Delete => format!("DELETE FROM {name} WHERE k = $1"),
            Kind::LastKey => format!("SELECT k FROM {name} ORDER BY k DESC LIMIT 1"),
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

fn insert_sql(table: Table, name: &str) -> String {
    let upsert = projection::upsert_sql(table, name);
    match upsert.find(" ON CONFLICT") {
        Some(at) => upsert[..at].to_string(),
        None => upsert,
    }
}
