use std::sync::Arc;
use std::time::Duration;

use actors::{AccountError, AccountRegistry, Apply, Outcome, RegistryOptions};
use storage::keys;
use storage::ledger::Posting;
use storage::records::{AccountRecord, LedgerKind};
use storage::{Store, StoreOptions, WriteSet};
use uuid::Uuid;

fn apply(amount: i64) -> Apply {
    Apply {
        posting: Posting {
            amount,
            kind: LedgerKind::AdminAdjustment,
            description: "t".into(),
            generation_request_id: None,
            invoice_id: None,
        },
        idempotency: None,
        extra: WriteSet::new(),
    }
}

async fn setup(options: RegistryOptions) -> (tempfile::TempDir, Store, Arc<AccountRegistry>, Uuid) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let user = Uuid::now_v7();
    let mut set = WriteSet::new();
    set.put(keys::account(user), &AccountRecord::empty(user, 0));
    store.write(set).await.unwrap();
    let registry = AccountRegistry::start(store.clone(), options);
    (dir, store, registry, user)
}

fn balance(store: &Store, user: Uuid) -> u64 {
    store
        .get::<AccountRecord>(&keys::account(user))
        .unwrap()
        .unwrap()
        .balance
}

#[actix_rt::test]
async fn a_deduct_beyond_the_balance_is_insufficient_and_writes_nothing() {
    let (_d, store, registry, user) = setup(RegistryOptions::default()).await;
    assert!(matches!(
        registry.apply(user, apply(5)).await.unwrap(),
        Outcome::Applied { .. }
    ));
    assert_eq!(
        registry.apply(user, apply(-6)).await.unwrap(),
        Outcome::InsufficientCredits { balance: 5 }
    );
    assert_eq!(balance(&store, user), 5);
}

#[actix_rt::test]
async fn an_account_changed_behind_the_actor_is_reread_never_overspent() {
    let (_d, store, registry, user) = setup(RegistryOptions::default()).await;
    registry.apply(user, apply(10)).await.unwrap();
    // Another writer (a successor actor, in real life) moves the account on disk.
    let current = store
        .get::<AccountRecord>(&keys::account(user))
        .unwrap()
        .unwrap();
    let (next, entry) = current
        .post(
            Posting {
                amount: -8,
                kind: LedgerKind::GenerationCharge,
                description: "elsewhere".into(),
                generation_request_id: None,
                invoice_id: None,
            },
            1,
        )
        .unwrap();
    let mut set = WriteSet::new();
    set.put(keys::account(user), &next);
    set.put(keys::ledger(entry.id), &entry);
    store.write(set).await.unwrap();
    // The actor still believes in 10; its conditioned write fails, it rereads 2, and refuses.
    assert_eq!(
        registry.apply(user, apply(-5)).await.unwrap(),
        Outcome::InsufficientCredits { balance: 2 }
    );
    assert!(matches!(
        registry.apply(user, apply(-2)).await.unwrap(),
        Outcome::Applied { .. }
    ));
    assert_eq!(balance(&store, user), 0);
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
}

#[actix_rt::test]
async fn a_corrupt_account_fails_the_caller_and_the_restarted_actor_recovers() {
    let (_d, store, registry, user) = setup(RegistryOptions::default()).await;
    registry.apply(user, apply(10)).await.unwrap();
    let good = store
        .get::<AccountRecord>(&keys::account(user))
        .unwrap()
        .unwrap();
    let mut bad = good;
    bad.balance = 999;
    let mut set = WriteSet::new();
    set.put(keys::account(user), &bad);
    store.write(set).await.unwrap();
    // The actor's write is refused (stale), it rereads, finds the account off its ledger head.
    assert!(matches!(
        registry.apply(user, apply(-1)).await,
        Err(AccountError::Corrupt(..))
    ));
    assert_eq!(
        balance(&store, user),
        999,
        "nothing written on a corrupt account"
    );
    let mut set = WriteSet::new();
    set.put(keys::account(user), &good);
    store.write(set).await.unwrap();
    assert!(matches!(
        registry.apply(user, apply(-1)).await.unwrap(),
        Outcome::Applied { .. }
    ));
    assert_eq!(balance(&store, user), 9);
}

#[actix_rt::test]
async fn idle_accounts_are_let_go_and_come_back_from_the_store() {
    let options = RegistryOptions {
        idle_after_ms: 50,
        sweep_every_ms: 20,
        ..RegistryOptions::default()
    };
    let (_d, store, registry, user) = setup(options).await;
    registry.apply(user, apply(4)).await.unwrap();
    assert_eq!(registry.live(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(registry.live(), 0);
    assert!(matches!(
        registry.apply(user, apply(-4)).await.unwrap(),
        Outcome::Applied { .. }
    ));
    assert_eq!(balance(&store, user), 0);
    assert_eq!(registry.started_total(), 2);
}

#[actix_rt::test]
async fn the_live_bound_evicts_the_least_recently_used() {
    let options = RegistryOptions {
        live_actors_max: 64,
        sweep_every_ms: 3_600_000,
        ..RegistryOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let registry = AccountRegistry::start(store.clone(), options);
    for _ in 0..200 {
        let u = Uuid::now_v7();
        let mut set = WriteSet::new();
        set.put(keys::account(u), &AccountRecord::empty(u, 0));
        store.write(set).await.unwrap();
        registry.apply(u, apply(1)).await.unwrap();
    }
    assert_eq!(registry.live(), 200);
    registry.evict_idle();
    assert!(registry.live() <= 64, "live {}", registry.live());
}

#[actix_rt::test]
async fn an_unknown_user_has_no_account() {
    let (_d, _store, registry, _) = setup(RegistryOptions::default()).await;
    assert!(matches!(
        registry.apply(Uuid::now_v7(), apply(1)).await,
        Err(AccountError::NoSuchAccount(_))
    ));
}
