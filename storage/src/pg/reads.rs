//! Reads on PostgreSQL keep the storage interface synchronous: each read connection lives on a
//! thread of its own (the `postgres` client drives its own runtime, which must not run inside
//! an actix or tokio worker), and a caller hands it one query and waits for the rows.

use crossbeam_channel::{Receiver, Sender};

use std::collections::HashMap;

use postgres::{Client, Statement};

use super::batch::{pg_error, session_lost};
use super::schema::table_name;
use super::settings::PgSettings;
use super::windows::{self, Taken, WindowOp};
use crate::interface::Direction;
use crate::keys::prefix_end;
use crate::{StorageError, Table};

/// Queries waiting for a read connection beyond this make the caller wait: backpressure.
const READ_QUEUE_CAPACITY: usize = 1024;

/// Runs of one read when its connection is lost under it (the second is on a new connection).
const READ_ATTEMPTS_MAX: u32 = 2;

/// One key/value pair as stored.
pub(crate) use crate::cache::Row;

pub(crate) enum Query {
    Get {
        table: Table,
        key: Vec<u8>,
    },
    GetMany {
        table: Table,
        keys: Vec<Vec<u8>>,
    },
    Scan {
        table: Table,
        prefix: Vec<u8>,
        after: Option<Vec<u8>>,
        direction: Direction,
        limit: usize,
    },
    Count {
        table: Table,
    },
    /// Attempt windows ([`super::windows`]) share these connections: like a read, each is one
    /// short statement or transaction a request waits for.
    Window(WindowOp),
}

pub(crate) enum Answer {
    Rows(Vec<Row>),
    Count(u64),
    Window(Option<Taken>),
}

struct Work {
    query: Query,
    reply: Sender<Result<Answer, StorageError>>,
}

/// The read connections.
pub(crate) struct ReadPool {
    tx: Sender<Work>,
}

impl ReadPool {
    /// Starts `settings.read_connections` threads; each connects when it starts and again
    /// whenever its connection was lost.
    pub fn start(settings: &PgSettings) -> Result<ReadPool, StorageError> {
        // A channel every read thread waits on: a query wakes one of them. (A receiver shared
        // behind a mutex cost several thread wake-ups per query, ~130 µs of CPU each time.)
        let (tx, rx) = crossbeam_channel::bounded::<Work>(READ_QUEUE_CAPACITY);
        let n = settings
            .read_connections
            .clamp(1, super::settings::READ_CONNECTIONS_MAX);
        for i in 0..n {
            let (rx, settings) = (rx.clone(), settings.clone());
            std::thread::Builder::new()
                .name(format!("pg-read-{i}"))
                .spawn(move || serve(&settings, &rx))?;
        }
        Ok(ReadPool { tx })
    }

    /// Runs one query on a read connection and waits for its answer.
    pub fn run(&self, query: Query) -> Result<Answer, StorageError> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.tx
            .send(Work { query, reply })
            .map_err(|_| StorageError::Closed)?;
        answer.recv().map_err(|_| StorageError::Closed)?
    }
}

/// A read connection and the statements it prepared (one round trip per query after the
/// first, instead of parse + execute each time).
struct ReadConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl ReadConn {
    fn prepared(&mut self, sql: String) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(&sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

/// A read thread: takes the next query, runs it, answers; exits when the pool is dropped.
fn serve(settings: &PgSettings, rx: &Receiver<Work>) {
    let mut client: Option<ReadConn> = None;
    while let Ok(work) = rx.recv() {
        let answer = answer(settings, &mut client, &work.query);
        let _ = work.reply.send(answer);
    }
}

/// Runs `query`, on a fresh connection when the last one was lost. A read is safe to repeat,
/// so one lost while running is run once more on a new connection before answering.
fn answer(
    settings: &PgSettings,
    client: &mut Option<ReadConn>,
    query: &Query,
) -> Result<Answer, StorageError> {
    for attempt in 1..=READ_ATTEMPTS_MAX {
        let c = match client {
            Some(c) if !c.client.is_closed() => c,
            _ => client.insert(ReadConn {
                client: settings.connect()?,
                statements: HashMap::new(),
            }),
        };
        match run_query(c, query) {
            Ok(a) => return Ok(a),
            Err(e) if session_lost(&e) && attempt < READ_ATTEMPTS_MAX => *client = None,
            Err(e) => {
                let lost = session_lost(&e);
                if lost {
                    *client = None;
                }
                return Err(pg_error(e, lost));
            }
        }
    }
    Err(StorageError::Unavailable("no database connection".into()))
}

fn run_query(c: &mut ReadConn, query: &Query) -> Result<Answer, postgres::Error> {
    match query {
        Query::Get { table, key } => rows_where(c, *table, "k = $1", key),
        Query::GetMany { table, keys } => rows_where(c, *table, "k = ANY($1)", keys),
        Query::Scan {
            table,
            prefix,
            after,
            direction,
            limit,
        } => scan(c, *table, prefix, after.as_deref(), *direction, *limit),
        Query::Count { table } => {
            let s = c.prepared(format!("SELECT count(*) FROM {}", table_name(*table)))?;
            let n: i64 = c.client.query_one(&s, &[])?.get(0);
            Ok(Answer::Count(u64::try_from(n).unwrap_or(0)))
        }
        // Run again after a lost session, a take may count twice: a limit errs on the strict
        // side, never the lenient one.
        Query::Window(op) => windows::run(&mut c.client, op).map(Answer::Window),
    }
}

/// The (key, value) rows of `table` matching `filter` on its one parameter.
fn rows_where(
    c: &mut ReadConn,
    table: Table,
    filter: &str,
    param: &(dyn postgres::types::ToSql + Sync),
) -> Result<Answer, postgres::Error> {
    let s = c.prepared(format!(
        "SELECT k, v FROM {} WHERE {filter}",
        table_name(table)
    ))?;
    let rows = c.client.query(&s, &[param])?;
    Ok(Answer::Rows(
        rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    ))
}

/// The same range as the embedded store's scan: keys under `prefix`, strictly after `after`
/// in `direction`, at most `limit`. bytea compares byte by byte, as redb's keys do.
fn scan(
    c: &mut ReadConn,
    table: Table,
    prefix: &[u8],
    after: Option<&[u8]>,
    direction: Direction,
    limit: usize,
) -> Result<Answer, postgres::Error> {
    let end = prefix_end(prefix);
    let (lower, lower_op, upper, upper_op): (&[u8], &str, Option<&[u8]>, &str) =
        match (direction, after) {
            (Direction::Forward, Some(a)) => (a, ">", end.as_deref(), "<"),
            (Direction::Backward, Some(a)) => (prefix, ">=", Some(a), "<"),
            (_, None) => (prefix, ">=", end.as_deref(), "<"),
        };
    let order = match direction {
        Direction::Forward => "ASC",
        Direction::Backward => "DESC",
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let name = table_name(table);
    let rows = match upper {
        Some(u) => {
            let s = c.prepared(format!(
                "SELECT k, v FROM {name} WHERE k {lower_op} $1 AND k {upper_op} $2 \
                 ORDER BY k {order} LIMIT $3"
            ))?;
            c.client.query(&s, &[&lower, &u, &limit])?
        }
        None => {
            let s = c.prepared(format!(
                "SELECT k, v FROM {name} WHERE k {lower_op} $1 ORDER BY k {order} LIMIT $2"
            ))?;
            c.client.query(&s, &[&lower, &limit])?
        }
    };
    Ok(Answer::Rows(
        rows.iter()
            .map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1)))
            .filter(|(k, _)| k.starts_with(prefix))
            .collect(),
    ))
}
