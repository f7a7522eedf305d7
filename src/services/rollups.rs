//! Writing the dashboard's day rollups, and reading a period of days from them.
//!
//! A day is rolled up once it has been over for [`SETTLE_DAYS`] full day (every request of it has
//! reached a final status by then: request deadlines are minutes), so its rollup never changes.
//! The days since, and any day not rolled up yet, are counted live from their key range, with a
//! bound on the records read.

use storage::records::{GenerationRecord, InvoiceRecord, LedgerEntry};
use storage::rollup::{self, DayRollup, DAY_US};
use storage::{Direction, Reader, Record, Store, WriteOutcome, WriteSet};

use crate::error::AppError;

/// Days that must have passed since a day ended before it is rolled up.
pub const SETTLE_DAYS: i64 = 1;
/// How far back the rollup job looks for missing days.
pub const DAYS_KEPT: i64 = 400;
/// Records read per step of a day's range.
const STEP: usize = 1_000;

/// A period of days and whether counting it live stopped at the read bound.
pub struct Days {
    pub days: Vec<DayRollup>,
    pub partial: bool,
}

/// Every record of `R` whose (time-ordered) key falls in `day`, at most `budget` of them;
/// returns how many were read and whether the budget ended it.
fn each_of_day<R: Record>(
    reads: &impl Reader,
    day: i64,
    budget: &mut usize,
    mut visit: impl FnMut(&R),
) -> Result<bool, AppError> {
    let start = rollup::time_key(day * DAY_US);
    let end = rollup::time_key((day + 1) * DAY_US);
    // `after` is exclusive; no id has all-zero random bits, so the day's start key is free.
    let mut after = start;
    loop {
        let rows = reads.scan::<R>(&[], Some(&after), Direction::Forward, STEP)?;
        let done = rows.len() < STEP;
        for (k, r) in rows {
            if k >= end {
                return Ok(false);
            }
            if *budget == 0 {
                return Ok(true);
            }
            *budget -= 1;
            visit(&r);
            after = k;
        }
        if done {
            return Ok(false);
        }
    }
}

/// Counts `day` from its records, reading at most `budget` of them (true if it stopped there).
pub fn count_day(
    reads: &impl Reader,
    day: i64,
    budget: &mut usize,
) -> Result<(DayRollup, bool), AppError> {
    let mut r = DayRollup::new(day);
    let mut cut = each_of_day::<LedgerEntry>(reads, day, budget, |e| r.add_ledger(e))?;
    cut |= each_of_day::<GenerationRecord>(reads, day, budget, |g| r.add_generation(g))?;
    cut |= each_of_day::<InvoiceRecord>(reads, day, budget, |i| r.add_invoice(i))?;
    Ok((r, cut))
}

/// The days `first..=last`: stored rollups where they exist, the rest counted live, newest
/// first (the recent days matter most), with at most `budget` records read in all. A day that
/// cannot be counted (an unreadable record) is shown empty and marks the period partial.
pub fn days(
    reads: &impl Reader,
    first: i64,
    last: i64,
    mut budget: usize,
) -> Result<Days, AppError> {
    let span = usize::try_from(last - first + 1).unwrap_or(0);
    let stored: std::collections::HashMap<i64, DayRollup> = reads
        .scan::<DayRollup>(&[], Some(&rollup::key(first - 1)), Direction::Forward, span)?
        .into_iter()
        .map(|(_, r)| (r.day, r))
        .filter(|(day, _)| *day <= last)
        .collect();
    let mut out = Days {
        days: Vec::with_capacity(span),
        partial: false,
    };
    for day in (first..=last).rev() {
        let r = match stored.get(&day) {
            Some(r) => r.clone(),
            None => match count_day(reads, day, &mut budget) {
                Ok((r, cut)) => {
                    out.partial |= cut;
                    r
                }
                Err(e) => {
                    tracing::warn!(day, error = %e, "a dashboard day could not be counted");
                    out.partial = true;
                    DayRollup::new(day)
                }
            },
        };
        out.days.push(r);
    }
    out.days.reverse();
    Ok(out)
}

/// Rolls up every settled day of the last [`DAYS_KEPT`] that has no rollup yet; returns how many
/// it wrote. Each day is one write of its own, so a crash loses at most the day in progress.
pub async fn roll_up(store: &Store, now_us: i64) -> Result<usize, AppError> {
    let last = rollup::day_of(now_us) - 1 - SETTLE_DAYS;
    // Nothing before the store's first record: a new store writes no empty year of days.
    let Some(oldest) = first_day(store)? else {
        return Ok(0);
    };
    let first = (last - DAYS_KEPT + 1).max(oldest);
    let mut written = 0;
    for day in first..=last {
        if store.get::<DayRollup>(&rollup::key(day))?.is_some() {
            continue;
        }
        // One day that cannot be counted must not stop the others: logged, retried next run.
        match roll_up_day(store, day).await {
            Ok(true) => written += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(day, error = %e, "day not rolled up; retried next run"),
        }
    }
    Ok(written)
}

/// The day of the oldest ledger entry, request or invoice, if there is any.
fn first_day(store: &Store) -> Result<Option<i64>, AppError> {
    fn oldest<R: Record>(store: &Store) -> Result<Option<i64>, AppError> {
        let first = store.scan::<R>(&[], None, Direction::Forward, 1)?;
        Ok(first.first().and_then(|(k, _)| rollup::day_of_key(k)))
    }
    let days = [
        oldest::<LedgerEntry>(store)?,
        oldest::<GenerationRecord>(store)?,
        oldest::<InvoiceRecord>(store)?,
    ];
    Ok(days.into_iter().flatten().min())
}

/// Counts and writes one day; false while some request of it is not final yet (after a long
/// outage the timeout sweeper settles them first) or when another writer was first.
async fn roll_up_day(store: &Store, day: i64) -> Result<bool, AppError> {
    // A day's range can be large: read off the async threads.
    let reader = store.clone();
    let (r, _) = tokio::task::spawn_blocking(move || {
        let mut unbounded = usize::MAX;
        count_day(&reader, day, &mut unbounded)
    })
    .await
    .map_err(|e| AppError::internal(format!("rollup task: {e}")))??;
    if r.unsettled > 0 {
        tracing::info!(
            day,
            unsettled = r.unsettled,
            "day not rolled up yet: requests still running"
        );
        return Ok(false);
    }
    let mut set = WriteSet::new();
    set.require_absent::<DayRollup>(rollup::key(day));
    set.put(rollup::key(day), &r);
    let committed = store.write(set).await? == WriteOutcome::Committed;
    if committed && r.ledger_entries > 0 {
        tracing::info!(
            day,
            entries = r.ledger_entries,
            "day rolled up for the dashboard"
        );
    }
    Ok(committed)
}
