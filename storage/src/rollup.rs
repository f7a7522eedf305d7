//! Daily totals for the back-office dashboard, so its charts read a few dozen small records
//! instead of every ledger entry, request and invoice of the period.
//!
//! Ids are UUIDv7, so the ledger, generation and invoice tables are in creation order and a day
//! is one key range. A day is rolled up once it is over and every request of it has reached a
//! final status (see the service that writes them); a rollup is written once and never
//! changed. `verify` checks the ledger and invoice totals of each rollup against the records
//! (ledger entries and invoice amounts never change; request statuses are as counted then).

use serde::{Deserialize, Serialize};

use crate::records::{
    GenStatus, GenerationRecord, InvoiceRecord, LedgerEntry, LedgerKind, Provider,
};
use crate::{Record, Table};

pub const DAY_US: i64 = 86_400_000_000;

/// The statuses a rollup counts, in the order of [`DayRollup::generations`].
pub const GEN_STATUSES: [GenStatus; 6] = [
    GenStatus::Pending,
    GenStatus::Queued,
    GenStatus::Processing,
    GenStatus::Completed,
    GenStatus::Failed,
    GenStatus::Cancelled,
];

/// The providers of [`DayRollup::revenue_minor`], in order.
pub const PROVIDERS: [Provider; 2] = [Provider::Stripe, Provider::Paypal];

/// The day (since the Unix epoch, UTC) of a time.
pub fn day_of(at_us: i64) -> i64 {
    at_us.div_euclid(DAY_US)
}

/// `day_rollups` key: the day, big-endian (days before 1970 are not stored).
pub fn key(day: i64) -> Vec<u8> {
    u32::try_from(day).unwrap_or(0).to_be_bytes().to_vec()
}

pub fn parse_key(key: &[u8]) -> Option<i64> {
    Some(i64::from(u32::from_be_bytes(key.try_into().ok()?)))
}

/// The smallest key a UUIDv7 id made at `at_us` can have: time-ordered tables are read from
/// here to read "since `at_us`".
pub fn time_key(at_us: i64) -> Vec<u8> {
    let ms = u64::try_from(at_us.div_euclid(1000)).unwrap_or(0);
    let mut k = ms.to_be_bytes()[2..].to_vec();
    k.resize(16, 0);
    k
}

/// The day a time-ordered key (a UUIDv7 id) was made.
pub fn day_of_key(key: &[u8]) -> Option<i64> {
    let ms = key.get(..6)?;
    let mut b = [0u8; 8];
    b[2..].copy_from_slice(ms);
    Some(day_of(
        i64::try_from(u64::from_be_bytes(b))
            .ok()?
            .saturating_mul(1000),
    ))
}

/// One day's totals.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DayRollup {
    pub day: i64,
    /// Credits added by every positive entry except refunds (grants, purchases, adjustments).
    pub granted: u64,
    /// Credits charged for generations, net of their refunds.
    pub spent: i64,
    pub ledger_entries: u64,
    /// Requests created that day, by their status when the day was rolled up.
    pub generations: [u64; 6],
    /// Invoiced that day (gross: a later refund does not change it), by currency.
    pub revenue: Vec<Revenue>,
    /// Requests that had not reached a final status when counted (a stored rollup has none).
    pub unsettled: u64,
}

/// One currency's invoiced amounts of a day, in minor units, by provider ([`PROVIDERS`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revenue {
    pub currency: String,
    pub minor: [u64; 2],
}

impl Record for DayRollup {
    const TABLE: Table = Table::DayRollups;
    const VERSION: u8 = 1;
}

impl DayRollup {
    pub fn new(day: i64) -> DayRollup {
        DayRollup {
            day,
            ..DayRollup::default()
        }
    }

    pub fn add_ledger(&mut self, e: &LedgerEntry) {
        self.ledger_entries += 1;
        match e.kind {
            LedgerKind::GenerationCharge => self.spent -= e.amount,
            LedgerKind::GenerationRefund => self.spent -= e.amount,
            _ if e.amount > 0 => self.granted += e.amount.unsigned_abs(),
            _ => {}
        }
    }

    pub fn add_generation(&mut self, g: &GenerationRecord) {
        if let Some(i) = GEN_STATUSES.iter().position(|s| *s == g.status) {
            self.generations[i] += 1;
        }
        if matches!(
            g.status,
            GenStatus::Pending | GenStatus::Queued | GenStatus::Processing
        ) {
            self.unsettled += 1;
        }
    }

    pub fn add_invoice(&mut self, i: &InvoiceRecord) {
        let Some(p) = PROVIDERS.iter().position(|p| *p == i.provider) else {
            return;
        };
        let at = match self.revenue.iter().position(|r| r.currency == i.currency) {
            Some(at) => at,
            None => {
                self.revenue.push(Revenue {
                    currency: i.currency.clone(),
                    minor: [0; 2],
                });
                self.revenue.len() - 1
            }
        };
        self.revenue[at].minor[p] += i.amount_minor;
    }

    /// Whether the parts that never change after the day (ledger and invoice totals) equal
    /// `other`'s: what `verify` recomputes.
    pub fn same_fixed_totals(&self, other: &DayRollup) -> bool {
        let mut a = self.revenue.clone();
        let mut b = other.revenue.clone();
        a.sort_by(|x, y| x.currency.cmp(&y.currency));
        b.sort_by(|x, y| x.currency.cmp(&y.currency));
        (self.granted, self.spent, self.ledger_entries, a)
            == (other.granted, other.spent, other.ledger_entries, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_key_sorts_with_the_ids_made_at_that_time() {
        let at = 1_780_000_000_123_456;
        let id = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (at / 1_000_000) as u64,
            ((at % 1_000_000) * 1000) as u32,
        ));
        assert!(time_key(at).as_slice() <= id.as_bytes().as_slice());
        assert!(time_key(at + 1000).as_slice() > id.as_bytes().as_slice());
        assert_eq!(parse_key(&key(20_000)), Some(20_000));
        assert_eq!(day_of_key(id.as_bytes()), Some(day_of(at)));
    }
}
