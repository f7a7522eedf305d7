//! The account journal of the embedded store: versions past folds read back exactly, a
//! snapshot keeps the account it saw while later versions and folds commit, and a reopen finds
//! every committed version.

use std::sync::atomic::Ordering;

use storage::keys;
use storage::ledger::Posting;
use storage::records::{AccountRecord, LedgerKind};
use storage::{Reader, Store, StoreOptions, Table, WriteOutcome, WriteSet};
use uuid::Uuid;

fn open(dir: &std::path::Path, fold_entries: u64) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            cache_size_bytes: 8 << 20,
            account_journal_fold_entries: fold_entries,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

async fn create(store: &Store, user: Uuid) -> AccountRecord {
    let account = AccountRecord::empty(user, 0);
    let mut set = WriteSet::new();
    set.require_absent::<AccountRecord>(keys::account(user));
    set.put(keys::account(user), &account);
    assert_eq!(store.write(set).await.unwrap(), WriteOutcome::Committed);
    account
}

/// Posts `amount` to `current` the way the account actor does: conditioned on the stored
/// account being `current`.
async fn post(store: &Store, current: &AccountRecord, amount: i64) -> AccountRecord {
    let posting = Posting {
        amount,
        kind: LedgerKind::AdminAdjustment,
        description: "t".into(),
        generation_request_id: None,
        invoice_id: None,
    };
    let (next, entry) = current.post(posting, 1).unwrap();
    let mut set = WriteSet::new();
    set.require_equal(keys::account(current.user_id), current);
    set.put(keys::account(current.user_id), &next);
    set.put(keys::ledger(entry.id), &entry);
    assert_eq!(store.write(set).await.unwrap(), WriteOutcome::Committed);
    next
}

fn stored(reader: &impl Reader, user: Uuid) -> AccountRecord {
    reader
        .get::<AccountRecord>(&keys::account(user))
        .unwrap()
        .expect("account")
}

fn assert_verified(store: &Store) {
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
}

#[tokio::test]
async fn account_versions_past_several_folds_read_back_exactly_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut held = Vec::new();
    {
        let store = open(dir.path(), 5);
        for &u in &users {
            held.push(create(&store, u).await);
        }
        for round in 0..12 {
            for (i, &u) in users.iter().enumerate() {
                held[i] = post(&store, &held[i], 10 + round).await;
                assert_eq!(stored(&store, u), held[i], "read back after each write");
            }
        }
        let overlay = store.account_overlay().unwrap();
        assert!(
            overlay.folds() >= 5,
            "36 versions, a fold every 5: {}",
            overlay.folds()
        );
        // A stale holder is refused, as with an account rewritten in place.
        let stale = AccountRecord::empty(users[0], 0);
        let mut set = WriteSet::new();
        set.require_equal(keys::account(users[0]), &stale);
        set.put(keys::account(users[0]), &stale);
        assert_eq!(
            store.write(set).await.unwrap(),
            WriteOutcome::ConditionFailed(0)
        );
        assert_verified(&store);
        // Some versions are journaled, not folded, when the store closes.
        held[0] = post(&store, &held[0], 1).await;
        store.shutdown();
    }
    let store = open(dir.path(), 5);
    for (i, &u) in users.iter().enumerate() {
        assert_eq!(stored(&store, u), held[i], "after a reopen");
    }
    assert_eq!(store.count(Table::Accounts).unwrap(), 3);
    assert_verified(&store);
}

#[tokio::test]
async fn a_snapshot_keeps_the_account_it_saw_while_later_versions_and_folds_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 4);
    let user = Uuid::now_v7();
    let other = Uuid::now_v7();
    let mut a = create(&store, user).await;
    let mut b = create(&store, other).await;
    a = post(&store, &a, 7).await;
    let early = store.read().unwrap();
    let seen = a;
    for n in 0..20 {
        a = post(&store, &a, 1).await;
        if n == 2 {
            b = post(&store, &b, 5).await;
        }
    }
    let overlay = store.account_overlay().unwrap();
    assert!(overlay.folds() >= 4, "folds: {}", overlay.folds());
    // Memory has let go of the versions `early` holds: it searches its own journal.
    let searches = overlay.journal_searches();
    assert_eq!(stored(&early, user), seen);
    assert!(overlay.journal_searches() > searches);
    // An account the snapshot never saw change reads as it was then.
    assert_eq!(stored(&early, other).balance, 0);
    let late = store.read().unwrap();
    assert_eq!(stored(&late, user), a);
    assert_eq!(stored(&late, other), b);
    let raw = late.get_raw(Table::Accounts, &keys::account(user)).unwrap();
    assert_eq!(raw, Some(storage::codec::encode(&a)));
    let many = late
        .get_many::<AccountRecord>(&[keys::account(user), keys::account(other)])
        .unwrap();
    assert_eq!(many, vec![Some(a), Some(b)]);
    let scanned = late
        .scan::<AccountRecord>(&[], None, storage::Direction::Forward, 10)
        .unwrap();
    assert_eq!(scanned.len(), 2);
    assert!(scanned.iter().any(|(_, r)| *r == a) && scanned.iter().any(|(_, r)| *r == b));
    assert_verified(&store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_movements_of_many_accounts_cross_folds_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let user = Uuid::now_v7();
            let mut a = create(&store, user).await;
            for n in 0..25 {
                a = post(&store, &a, n + 1).await;
            }
            (user, a)
        }));
    }
    let mut held = Vec::new();
    for t in tasks {
        held.push(t.await.unwrap());
    }
    for (user, a) in &held {
        assert_eq!(stored(&store, *user), *a);
        assert_eq!(a.balance, (1..=25).sum::<i64>() as u64);
    }
    let overlay = store.account_overlay().unwrap();
    // A fold takes 16 entries and what the batch that crossed the bound added (40 at most).
    assert!(
        overlay.folds() >= 15,
        "1,000 versions: {} folds",
        overlay.folds()
    );
    let failed = store.stats().failed_batches.load(Ordering::Relaxed);
    assert_eq!(failed, 0);
    assert_verified(&store);
}

#[tokio::test]
async fn an_account_deleted_after_journaled_versions_and_made_again_is_listed_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let user = Uuid::now_v7();
    {
        let store = open(dir.path(), 1_000);
        let a = create(&store, user).await;
        post(&store, &a, 3).await;
        let mut gone = WriteSet::new();
        gone.delete::<AccountRecord>(keys::account(user));
        assert_eq!(store.write(gone).await.unwrap(), WriteOutcome::Committed);
        assert_eq!(
            store.get::<AccountRecord>(&keys::account(user)).unwrap(),
            None
        );
        assert_eq!(store.count(Table::Accounts).unwrap(), 0);
        let again = create(&store, user).await;
        assert_eq!(stored(&store, user), again);
        assert_eq!(store.count(Table::Accounts).unwrap(), 1);
        let listed = store
            .scan::<AccountRecord>(&[], None, storage::Direction::Forward, 10)
            .unwrap();
        assert_eq!(listed, vec![(keys::account(user), again)]);
        store.shutdown();
    }
    let store = open(dir.path(), 1_000);
    assert_eq!(stored(&store, user), AccountRecord::empty(user, 0));
}
