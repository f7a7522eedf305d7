//! Attempt windows shared by every node on one database: the counts behind rate limits
//! (failed logins, signups, reset requests). One node keeps them in memory; several nodes
//! keep them here, so a guesser spreading attempts over N nodes still gets the limit once,
//! not N times.
//!
//! A window is a row (key, when it ends, how many attempts it counted). Taking attempts locks
//! the rows of every key named, in key order (two takes never wait on each other in a cycle),
//! decides with the database's clock (nodes need not agree on the time), and either counts one
//! on each or changes nothing. The clock is `clock_timestamp()`, not `now()`: `now()` is when
//! the transaction began, and a take that began before another take created the row (then
//! waited for its lock) would see that window end more than `window_s` ahead. Rows whose
//! window ended are removed a bounded slice at a time.

use std::sync::atomic::{AtomicU64, Ordering};

use postgres::error::SqlState;
use postgres::Client;

/// Every this many takes (per node), one purge of ended windows.
const PURGE_EVERY_TAKES: u64 = 128;
/// Ended windows removed by one purge at most: bounded work per take.
const PURGE_ROWS_MAX: i64 = 1_000;
/// Runs of a take that met another transaction (deadlock, serialization) before giving up.
const TAKE_ATTEMPTS_MAX: u32 = 3;
/// How long a take waits for another attempt's lock on the same key; past it the attempt is
/// refused (it is contended by parallel attempts on that key, which the limit is about), so
/// takes never hold the node's read connections long.
const LOCK_WAIT: &str = "SET LOCAL lock_timeout = '1s'";
/// Keys one take may name (a login names two).
pub const TAKE_KEYS_MAX: usize = 8;

static TAKES: AtomicU64 = AtomicU64::new(0);

/// What is asked of the attempt windows.
pub(crate) enum WindowOp {
    /// One attempt from every key's window at once, or none (see [`Taken`]).
    Take {
        window_s: u32,
        keys: Vec<(String, u32)>,
    },
    /// Returns one attempt taken in the key's current window (it turned out not to count).
    GiveBack { key: String },
    /// Forgets the key's window (a success clears an account's failures).
    Clear { key: String },
}

/// The outcome of a take: a refusal is an answer, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// One attempt was counted on every key.
    Taken,
    /// A key had used its maximum in its current window, which ends in `retry_after_s`;
    /// nothing was counted.
    Refused { retry_after_s: u64 },
}

/// Creates the rows missing and locks every row named, in key order, in one statement (a
/// row that exists is locked by the no-op update, so a concurrent clear or purge cannot make
/// it vanish between the insert and the lock).
const LOCK_SQL: &str = "INSERT INTO cf_attempt_windows (k, ends, n) \
     SELECT k, clock_timestamp() + make_interval(secs => $2::float8), 0 \
     FROM unnest($1::text[]) AS k ORDER BY k \
     ON CONFLICT (k) DO UPDATE SET k = EXCLUDED.k \
     RETURNING k, n, ends > clock_timestamp(), \
     ceil(extract(epoch FROM ends - clock_timestamp()))::bigint";
const COUNT_SQL: &str = "UPDATE cf_attempt_windows w SET \
     n = CASE WHEN w.ends > c.t THEN w.n + 1 ELSE 1 END, \
     ends = CASE WHEN w.ends > c.t THEN w.ends ELSE c.t + make_interval(secs => $2::float8) END \
     FROM (SELECT clock_timestamp() AS t) c WHERE w.k = ANY($1)";
const GIVE_BACK_SQL: &str =
    "UPDATE cf_attempt_windows SET n = n - 1 WHERE k = $1 AND n > 0 AND ends > clock_timestamp()";
const CLEAR_SQL: &str = "DELETE FROM cf_attempt_windows WHERE k = $1";
const PURGE_SQL: &str = "DELETE FROM cf_attempt_windows WHERE k IN \
     (SELECT k FROM cf_attempt_windows WHERE ends < clock_timestamp() LIMIT $1)";

/// Runs `op` on `client`. `Ok(None)` for the operations that answer nothing.
pub(crate) fn run(client: &mut Client, op: &WindowOp) -> Result<Option<Taken>, postgres::Error> {
    match op {
        WindowOp::Take { window_s, keys } => {
            let mut attempt = 1;
            loop {
                match take(client, *window_s, keys) {
                    Err(e) if super::batch::retryable(&e) && attempt < TAKE_ATTEMPTS_MAX => {
                        attempt += 1;
                    }
                    Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                        return Ok(Some(Taken::Refused { retry_after_s: 1 }));
                    }
                    other => return other.map(Some),
                }
            }
        }
        WindowOp::GiveBack { key } => client.execute(GIVE_BACK_SQL, &[key]).map(|_| None),
        WindowOp::Clear { key } => client.execute(CLEAR_SQL, &[key]).map(|_| None),
    }
}

fn take(
    client: &mut Client,
    window_s: u32,
    keys: &[(String, u32)],
) -> Result<Taken, postgres::Error> {
    let mut names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let window = f64::from(window_s);
    let mut txn = client.transaction()?;
    txn.batch_execute(LOCK_WAIT)?;
    let rows = txn.query(LOCK_SQL, &[&names, &window])?;
    for row in &rows {
        let (key, n, live, left_s): (&str, i32, bool, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let max = keys.iter().filter(|(k, _)| k == key).map(|(_, m)| *m).min();
        let used = u32::try_from(n).unwrap_or(u32::MAX);
        if live && max.is_some_and(|m| used >= m) {
            // Dropping the transaction rolls back the rows inserted for this take.
            return Ok(Taken::Refused {
                retry_after_s: u64::try_from(left_s).unwrap_or(0).max(1),
            });
        }
    }
    txn.execute(COUNT_SQL, &[&names, &window])?;
    txn.commit()?;
    if TAKES
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(PURGE_EVERY_TAKES)
    {
        // Ended windows count nothing; a failed purge is retried by a later take.
        if let Err(e) = client.execute(PURGE_SQL, &[&PURGE_ROWS_MAX]) {
            tracing::warn!(error = %super::batch::describe(&e), "purging ended attempt windows");
        }
    }
    Ok(Taken::Taken)
}
