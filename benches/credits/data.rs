//! Generated records and bulk writes: the accounts, the charges, the ledger growth.

use std::sync::mpsc;
use std::sync::Arc;

use actors::Apply;
use storage::keys;
use storage::ledger::Posting;
use storage::records::{AccountRecord, LedgerKind};
use storage::{now_us, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::common::*;

/// Balance of every deduct-benchmark account: far more than any run can spend.
pub const DEDUCT_BALANCE: i64 = 1_000_000_000;
/// Signup grant of every memory/startup user; the generated activity never exhausts it.
pub const USER_BALANCE: i64 = 1_000_000;
pub const LEDGER_ENTRIES_PER_SET: u64 = 10_000;

fn posting(amount: i64, kind: LedgerKind, description: &str) -> Posting {
    Posting {
        amount,
        kind,
        description: description.into(),
        generation_request_id: None,
        invoice_id: None,
    }
}

/// The operation under test: one credit charged for a generation.
pub fn deduct_message() -> Apply {
    charge_message(1)
}

/// A generation charge of `credits`.
pub fn charge_message(credits: i64) -> Apply {
    let mut p = posting(
        -credits,
        LedgerKind::GenerationCharge,
        "bench: image generation",
    );
    p.generation_request_id = Some(Uuid::now_v7());
    Apply {
        posting: p,
        idempotency: None,
        extra: WriteSet::new(),
    }
}

/// Everyday activity for the generated ledger: a purchase now and then, charges otherwise.
fn activity(seq: u64) -> Posting {
    if seq.is_multiple_of(10) {
        let mut p = posting(1_000, LedgerKind::Purchase, "Credit pack");
        p.invoice_id = Some(Uuid::now_v7());
        p
    } else {
        let mut p = posting(-7, LedgerKind::GenerationCharge, "Image generation");
        p.generation_request_id = Some(Uuid::now_v7());
        p
    }
}

/// `n` fresh user ids in key order, so bulk loads append to the trees.
pub fn new_ids(n: usize) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Accounts with a signup grant of `balance`: the account record and its first ledger entry,
/// as `create_user_set` writes them (without the user and email records: the credit path never
/// reads those).
pub fn accounts_set(ids: &[Uuid], balance: i64) -> WriteSet {
    let now = now_us();
    let mut set = WriteSet::new();
    for &id in ids {
        let (account, entry) = AccountRecord::empty(id, now)
            .post(
                posting(balance, LedgerKind::SignupGrant, "Signup grant"),
                now,
            )
            .unwrap_or_else(|e| panic!("a signup grant of {balance} must post: {e}"));
        set.put(keys::account(id), &account);
        set.put(keys::ledger(entry.id), &entry);
    }
    set
}

/// Writes what `sets` yields, one durable write each, while the next set is being built on
/// another thread. `progress` hears how many items each committed set held.
pub fn write_stream<I>(store: &Store, sets: I, mut progress: impl FnMut(u64)) -> Res<()>
where
    I: Iterator<Item = (WriteSet, u64)> + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel::<(WriteSet, u64)>(2);
    let producer = std::thread::Builder::new()
        .name("bench-generator".into())
        .spawn(move || {
            for item in sets {
                if tx.send(item).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| format!("cannot start the generator thread: {e}"))?;
    for (set, items) in rx {
        match store.write_blocking(set) {
            Ok(WriteOutcome::Committed) => progress(items),
            Ok(other) => return Err(format!("a bulk write was refused: {other:?}")),
            Err(e) => return Err(format!("a bulk write failed: {e}")),
        }
    }
    producer
        .join()
        .map_err(|_| "the generator thread panicked".to_string())
}

/// Builds the ledger growth of step 4: `base` (+1 for the first `rem` users) entries per user,
/// each account read from the store and posted to in memory, ~10,000 entries per write set.
pub struct LedgerGenerator {
    store: Store,
    ids: Arc<Vec<Uuid>>,
    next_user: usize,
    base: u64,
    rem: u64,
}

impl LedgerGenerator {
    /// `extra` entries spread over the users `ids`.
    pub fn new(store: Store, ids: Arc<Vec<Uuid>>, extra: u64) -> LedgerGenerator {
        let users = ids.len() as u64;
        LedgerGenerator {
            store,
            ids,
            next_user: 0,
            base: extra / users,
            rem: extra % users,
        }
    }
}

impl Iterator for LedgerGenerator {
    type Item = (WriteSet, u64);

    fn next(&mut self) -> Option<(WriteSet, u64)> {
        let now = now_us();
        let mut set = WriteSet::new();
        let mut entries = 0u64;
        while self.next_user < self.ids.len() && entries < LEDGER_ENTRIES_PER_SET {
            let i = self.next_user;
            self.next_user += 1;
            let k = self.base + u64::from((i as u64) < self.rem);
            if k == 0 {
                continue;
            }
            let id = self.ids[i];
            let mut account = match self.store.get::<AccountRecord>(&keys::account(id)) {
                Ok(Some(a)) => a,
                Ok(None) => panic!("account {id} is missing"),
                Err(e) => panic!("cannot read account {id}: {e}"),
            };
            for _ in 0..k {
                let (next, entry) = account
                    .post(activity(account.next_seq), now)
                    .unwrap_or_else(|e| panic!("generated activity must post: {e}"));
                set.put(keys::ledger(entry.id), &entry);
                account = next;
            }
            set.put(keys::account(id), &account);
            entries += k;
        }
        (!set.is_empty()).then_some((set, entries))
    }
}
