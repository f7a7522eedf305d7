//! The bench store: users (record, email index, account with its signup grant) and ledger
//! entries spread over the past year, in key order, written in large durable sets.

use std::time::Instant;

use storage::keys;
use storage::records::*;
use storage::rollup::DAY_US;
use storage::{now_us, Store, WriteOutcome, WriteSet};
use uuid::Uuid;

use crate::common::*;

const USERS_PER_SET: usize = 5_000;
const ENTRIES_PER_SET: usize = 10_000;
const SIGNUP_GRANT: u64 = 1_000_000;
/// Days before the activity starts that users are created.
const USERS_DAYS_BEFORE: i64 = 366;

/// One account while its ledger is generated.
#[derive(Clone, Copy)]
struct Acc {
    balance: u64,
    seq: u64,
    head: Option<Uuid>,
}

fn v7_at(at_us: i64, rng: &mut Rng) -> Uuid {
    let secs = (at_us / 1_000_000) as u64;
    let nanos = ((at_us % 1_000_000) * 1000) as u32;
    let ts = uuid::Timestamp::from_unix(uuid::NoContext, secs, nanos);
    // The random bits from our own generator: cheap and never all zero.
    let mut b = *Uuid::new_v7(ts).as_bytes();
    b[8..].copy_from_slice(&((rng.below(usize::MAX) as u64) | 1).to_be_bytes());
    Uuid::from_bytes(b)
}

fn write(store: &Store, set: WriteSet) -> Res<()> {
    match store.write_blocking(set) {
        Ok(WriteOutcome::Committed) => Ok(()),
        Ok(other) => Err(format!("a bulk write was refused: {other:?}")),
        Err(e) => Err(format!("a bulk write failed: {e}")),
    }
}

/// `users` users created a year and a day ago, each with the signup grant; returns their ids.
pub fn users(store: &Store, users: usize, password_hash: &str) -> Res<Vec<Uuid>> {
    let t = Instant::now();
    let at = now_us() - USERS_DAYS_BEFORE * DAY_US;
    let mut rng = Rng::new(7);
    let mut ids = Vec::with_capacity(users);
    for chunk in (0..users).collect::<Vec<_>>().chunks(USERS_PER_SET) {
        let mut set = WriteSet::new();
        for &i in chunk {
            let id = v7_at(at + i as i64, &mut rng);
            let email = format!("u{i:08}@bench.example");
            let user = UserRecord {
                id,
                email: email.clone(),
                name: format!("Bench User {i}"),
                role: if i % 1000 == 0 {
                    Role::Agent
                } else {
                    Role::User
                },
                tier: Tier::Free,
                password_hash: password_hash.to_string(),
                credentials_version: 0,
                created_at_us: at,
                updated_at_us: at,
            };
            set.put(keys::user(id), &user);
            set.put(keys::email(&email), &EmailIndex { user_id: id });
            ids.push(id);
        }
        write(store, set)?;
    }
    println!(
        "  {} users in {}",
        thousands(users as u64),
        secs(t.elapsed())
    );
    Ok(ids)
}

fn entry(
    user: Uuid,
    acc: &mut Acc,
    id: Uuid,
    at: i64,
    amount: i64,
    kind: LedgerKind,
) -> LedgerEntry {
    acc.balance = acc.balance.saturating_add_signed(amount);
    let e = LedgerEntry {
        id,
        user_id: user,
        seq: acc.seq,
        amount,
        balance_after: acc.balance,
        kind,
        description: "bench activity".into(),
        generation_request_id: None,
        invoice_id: None,
        created_at_us: at,
        prev_hash: [0; 32],
        prev_id: acc.head,
    };
    acc.seq += 1;
    acc.head = Some(id);
    e
}

/// The signup grants, then `total` more entries (charges and a few purchases) spread evenly
/// over the past `span_days` days, in time order; then every account with its final state.
pub fn ledger(store: &Store, ids: &[Uuid], total: u64, span_days: i64) -> Res<()> {
    let t = Instant::now();
    let mut rng = Rng::new(11);
    let mut accs = vec![
        Acc {
            balance: 0,
            seq: 0,
            head: None
        };
        ids.len()
    ];
    let start = now_us() - span_days * DAY_US;
    let mut set = WriteSet::new();
    let mut in_set = 0;
    let mut done = 0u64;
    let all = ids.len() as u64 + total;
    for n in 0..all {
        let (i, amount, kind) = if (n as usize) < ids.len() {
            (n as usize, SIGNUP_GRANT as i64, LedgerKind::SignupGrant)
        } else if n.is_multiple_of(50) {
            (rng.below(ids.len()), 100, LedgerKind::Purchase)
        } else {
            (rng.below(ids.len()), -1, LedgerKind::GenerationCharge)
        };
        let at = start - DAY_US
            + ((n as i128 * (span_days + 1) as i128 * DAY_US as i128) / all as i128) as i64;
        let id = v7_at(at, &mut rng);
        set.put(
            keys::ledger(id),
            &entry(ids[i], &mut accs[i], id, at, amount, kind),
        );
        in_set += 1;
        if in_set == ENTRIES_PER_SET {
            write(store, std::mem::take(&mut set))?;
            in_set = 0;
            done += ENTRIES_PER_SET as u64;
            if done.is_multiple_of(1_000_000) {
                println!(
                    "  ledger: {:>12} / {} ({})",
                    thousands(done),
                    thousands(all),
                    secs(t.elapsed())
                );
            }
        }
    }
    write(store, set)?;
    accounts(store, ids, &accs)?;
    println!(
        "  {} ledger entries in {}",
        thousands(all),
        secs(t.elapsed())
    );
    Ok(())
}

fn accounts(store: &Store, ids: &[Uuid], accs: &[Acc]) -> Res<()> {
    let now = now_us();
    for (ids, accs) in ids
        .chunks(ENTRIES_PER_SET)
        .zip(accs.chunks(ENTRIES_PER_SET))
    {
        let mut set = WriteSet::new();
        for (id, a) in ids.iter().zip(accs) {
            let account = AccountRecord {
                user_id: *id,
                balance: a.balance,
                next_seq: a.seq,
                chain_hash: [0; 32],
                head_id: a.head,
                updated_at_us: now,
            };
            set.put(keys::account(*id), &account);
        }
        write(store, set)?;
    }
    Ok(())
}
