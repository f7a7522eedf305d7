//! The storage interface on PostgreSQL (issue 13, first part): migrations, write-set semantics
//! and group commit, the database's own guards, plain-SQL reads. Each test gets a fresh
//! database on the machine's PostgreSQL (`CREATIVEFLOW_TEST_PG`, libpq form; default the local
//! server as `postgres`), dropped afterwards.

use std::sync::Arc;

use storage::keys;
use storage::ledger::Posting;
use storage::pg::{PgSettings, PgStore, Taken};
use storage::records::{AccountRecord, BrandKitOfUser, DeletingWorkbench, LedgerEntry, LedgerKind};
use storage::{now_us, Direction, StorageError, StoreOptions, WriteOutcome, WriteSet};
use uuid::Uuid;

const DEFAULT_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

fn admin_settings() -> String {
    std::env::var("CREATIVEFLOW_TEST_PG").unwrap_or_else(|_| DEFAULT_ADMIN.to_string())
}

/// A database of its own for one test, dropped with it.
struct TestDb {
    name: String,
    settings: PgSettings,
}

impl TestDb {
    fn new() -> TestDb {
        let name = format!("cf_test_{}", Uuid::new_v4().simple());
        let mut admin = postgres::Client::connect(&admin_settings(), postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let mut settings = PgSettings::from_url(&admin_settings()).unwrap();
        settings.dbname = name.clone();
        settings.tls = storage::pg::TlsMode::Disable;
        TestDb { name, settings }
    }

    fn sql(&self) -> postgres::Client {
        let mut c = self.settings.clone();
        c.read_connections = 1;
        postgres::Client::connect(
            &format!(
                "host={} port={} user={} dbname={}",
                c.host, c.port, c.user, self.name
            ),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// The balance column of `user`'s account, read with plain SQL.
    fn balance(&self, user: &Uuid) -> i64 {
        self.sql()
            .query_one("SELECT balance FROM accounts WHERE user_id = $1", &[user])
            .unwrap()
            .get(0)
    }

    /// How many ledger entries `user` has, read with plain SQL.
    fn entries(&self, user: &Uuid) -> i64 {
        self.sql()
            .query_one(
                "SELECT count(*) FROM ledger_entries WHERE user_id = $1",
                &[user],
            )
            .unwrap()
            .get(0)
    }

    fn store(&self) -> PgStore {
        PgStore::connect(&self.settings, &StoreOptions::default()).unwrap()
    }

    /// A store with one writer connection: sets submitted together share its batches.
    fn store_one_writer(&self) -> PgStore {
        let mut settings = self.settings.clone();
        settings.writer_connections = 1;
        PgStore::connect(&settings, &StoreOptions::default()).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&admin_settings(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn posting(amount: i64) -> Posting {
    Posting {
        amount,
        kind: LedgerKind::AdminAdjustment,
        description: "test".into(),
        generation_request_id: None,
        invoice_id: None,
    }
}

/// An account with `balance` credits from one grant, written as the account actor would.
fn open_account(store: &PgStore, balance: i64) -> (Uuid, AccountRecord) {
    let user = Uuid::now_v7();
    let empty = AccountRecord::empty(user, now_us());
    let (account, entry) = empty.post(posting(balance), now_us()).unwrap();
    let mut set = WriteSet::new();
    set.require_absent::<AccountRecord>(keys::account(user))
        .put(keys::account(user), &account)
        .put(keys::ledger(entry.id), &entry);
    assert_eq!(store.write_blocking(set).unwrap(), WriteOutcome::Committed);
    (user, account)
}

/// The set a deduct writes: conditioned on the account being the one read.
fn deduct_set(before: &AccountRecord, amount: i64) -> Option<(WriteSet, AccountRecord)> {
    let (next, entry) = before.post(posting(-amount), now_us()).ok()?;
    let mut set = WriteSet::new();
    set.require_equal(keys::account(before.user_id), before)
        .put(keys::account(before.user_id), &next)
        .put(keys::ledger(entry.id), &entry);
    Some((set, next))
}

#[test]
fn a_fresh_database_is_migrated_once_even_when_nodes_start_together() {
    let db = TestDb::new();
    let settings = Arc::new(db.settings.clone());
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let s = settings.clone();
            std::thread::spawn(move || PgStore::connect(&s, &StoreOptions::default()).map(drop))
        })
        .collect();
    for s in starts {
        s.join().unwrap().unwrap();
    }
    let versions: Vec<i32> = db
        .sql()
        .query(
            "SELECT version FROM cf_schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let every: Vec<i32> = storage::pg::schema::MIGRATIONS
        .iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(versions, every, "each migration once");
}

#[test]
fn an_unreachable_database_is_one_clear_line_without_the_password() {
    let db = TestDb::new();
    let mut settings = db.settings.clone().with_password(Some("wrong".into()));
    settings.port = 1; // nothing listens there: refused at once
    let Err(e) = PgStore::connect(&settings, &StoreOptions::default()) else {
        panic!("connected to a closed port");
    };
    let line = e.to_string();
    assert!(matches!(e, StorageError::Unavailable(_)), "{line}");
    assert!(line.contains("cannot connect to postgresql://"), "{line}");
    assert!(!line.contains("wrong") && !line.contains('\n'), "{line}");
}

#[test]
fn writes_are_read_back_and_scanned_in_key_order() {
    let db = TestDb::new();
    let store = db.store();
    let (user, account) = open_account(&store, 100);
    assert_eq!(
        store.get::<AccountRecord>(&keys::account(user)).unwrap(),
        Some(account)
    );
    let parent = Uuid::now_v7();
    let children: Vec<Uuid> = (0..5).map(|_| Uuid::now_v7()).collect();
    let mut set = WriteSet::new();
    for c in &children {
        set.put(keys::pair(parent, *c), &storage::records::WorkbenchOfUser);
    }
    store.write_blocking(set).unwrap();
    let forward = store
        .scan::<storage::records::WorkbenchOfUser>(parent.as_bytes(), None, Direction::Forward, 3)
        .unwrap();
    let keys_seen: Vec<Vec<u8>> = forward.iter().map(|(k, _)| k.clone()).collect();
    let want: Vec<Vec<u8>> = children[..3]
        .iter()
        .map(|c| keys::pair(parent, *c))
        .collect();
    assert_eq!(keys_seen, want);
    let back = store
        .scan::<storage::records::WorkbenchOfUser>(
            parent.as_bytes(),
            Some(&keys::pair(parent, children[3])),
            Direction::Backward,
            10,
        )
        .unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(back[0].0, keys::pair(parent, children[2]));
}

#[test]
fn many_keys_are_read_in_the_order_asked_with_none_where_absent() {
    let db = TestDb::new();
    let store = db.store();
    let (a, account_a) = open_account(&store, 100);
    let (b, account_b) = open_account(&store, 7);
    let asked = vec![
        keys::account(b),
        keys::account(Uuid::now_v7()),
        keys::account(a),
        keys::account(b),
    ];
    let got = storage::Reader::get_many::<AccountRecord>(&store, &asked).unwrap();
    assert_eq!(
        got,
        vec![Some(account_b), None, Some(account_a), Some(account_b)]
    );
    assert!(storage::Reader::get_many::<AccountRecord>(&store, &[])
        .unwrap()
        .is_empty());
}

#[test]
fn a_failed_condition_skips_only_its_own_set_in_a_batch() {
    let db = TestDb::new();
    let store = db.store();
    let (user, account) = open_account(&store, 10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // 20 deducts of 1 all conditioned on the same account state: exactly one can apply.
    let outcomes = runtime.block_on(async {
        let writes = (0..20).map(|_| {
            let (set, _) = deduct_set(&account, 1).unwrap();
            store.write(set)
        });
        futures_util::future::join_all(writes).await
    });
    let committed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(WriteOutcome::Committed)))
        .count();
    assert_eq!(committed, 1);
    assert!(outcomes.iter().all(|o| matches!(
        o,
        Ok(WriteOutcome::Committed | WriteOutcome::ConditionFailed(0))
    )));
    assert_eq!(db.balance(&user), 9);
}

#[test]
fn two_nodes_never_spend_the_same_credits_twice() {
    let db = TestDb::new();
    let (a, b) = (db.store(), db.store());
    let (user, _) = open_account(&a, 600);
    // Each node deducts 1 in a loop, reading the account and writing conditioned on it, as
    // two account actors of one user on two nodes would.
    let spend = |store: PgStore| {
        std::thread::spawn(move || {
            let mut applied = 0;
            for _ in 0..500 {
                loop {
                    let current = store
                        .get::<AccountRecord>(&keys::account(user))
                        .unwrap()
                        .unwrap();
                    let Some((set, _)) = deduct_set(&current, 1) else {
                        break;
                    };
                    if store.write_blocking(set).unwrap() == WriteOutcome::Committed {
                        applied += 1;
                        break;
                    }
                }
            }
            applied
        })
    };
    let (ta, tb) = (spend(a.clone()), spend(b));
    let applied = ta.join().unwrap() + tb.join().unwrap();
    assert_eq!(applied, 600);
    let mut sql = db.sql();
    let row = sql
        .query_one(
            "SELECT a.balance, count(l.*), coalesce(sum(l.amount), 0)::bigint
             FROM accounts a JOIN ledger_entries l ON l.user_id = a.user_id
             WHERE a.user_id = $1 GROUP BY a.balance",
            &[&user],
        )
        .unwrap();
    let (balance, entries, sum): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((balance, entries, sum), (0, 601, 0));
}

#[test]
fn the_database_refuses_a_second_entry_at_one_chain_position() {
    let db = TestDb::new();
    let store = db.store();
    let (user, account) = open_account(&store, 10);
    let (_, entry) = account.post(posting(-1), now_us()).unwrap();
    // A buggy node writing an entry at a position already taken, without the account check.
    let twin = LedgerEntry {
        id: Uuid::now_v7(),
        seq: 0,
        ..entry
    };
    let mut set = WriteSet::new();
    set.put(keys::ledger(twin.id), &twin);
    assert!(store.write_blocking(set).is_err());
    assert_eq!(db.entries(&user), 1, "the refused set wrote nothing");
}

#[test]
fn a_key_required_absent_is_never_overwritten_by_another_node() {
    let db = TestDb::new();
    let (a, b) = (db.store(), db.store());
    let email_key = b"someone@example.com".to_vec();
    let claims: Vec<_> = [a, b]
        .into_iter()
        .flat_map(|store| std::iter::repeat_n(store, 10))
        .map(|store| {
            let key = email_key.clone();
            std::thread::spawn(move || {
                let owner = storage::records::EmailIndex {
                    user_id: Uuid::now_v7(),
                };
                let mut set = WriteSet::new();
                set.require_absent::<storage::records::EmailIndex>(key.clone())
                    .put(key, &owner);
                store.write_blocking(set).unwrap()
            })
        })
        .collect();
    let won = claims
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|o| *o == WriteOutcome::Committed)
        .count();
    assert_eq!(won, 1);
}

#[test]
fn appended_keys_follow_commit_order_across_nodes() {
    let db = TestDb::new();
    let (a, b) = (db.store(), db.store());
    let writers: Vec<_> = [a.clone(), b]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let mut set = WriteSet::new();
                    set.append(&storage::records::OutboxOrder {
                        generation_id: Uuid::now_v7(),
                    });
                    store.write_blocking(set).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let rows = a
        .scan::<storage::records::OutboxOrder>(&[], None, Direction::Forward, 1000)
        .unwrap();
    let seqs: Vec<u64> = rows
        .iter()
        .map(|(k, _)| keys::parse_sequence(k).unwrap())
        .collect();
    assert_eq!(seqs, (0..100).collect::<Vec<u64>>());
}

#[test]
fn a_lost_connection_answers_unavailable_and_the_store_recovers_by_itself() {
    let db = TestDb::new();
    let store = db.store();
    let (user, account) = open_account(&store, 5);
    // The database drops every connection of this store (a restart or failover would).
    db.sql()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    let (set, next) = deduct_set(&account, 1).unwrap();
    // Each writer connection finds out on its first use, answers `Unavailable` for that batch
    // (nothing of it committed) and reconnects; the set is conditioned, so trying again is safe.
    let mut outcome = None;
    for _ in 0..=storage::pg::WRITER_CONNECTIONS_DEFAULT {
        match store.write_blocking(set.clone()) {
            Err(StorageError::Unavailable(_)) => continue,
            other => {
                outcome = Some(other.unwrap());
                break;
            }
        }
    }
    assert_eq!(outcome, Some(WriteOutcome::Committed));
    // Reads come back too: the first may meet its dropped connection, the next reconnects.
    let read = || store.get::<AccountRecord>(&keys::account(user));
    let stored = read().or_else(|_| read()).unwrap();
    assert_eq!(stored, Some(next));
}

#[test]
fn two_nodes_holding_one_cluster_mutex_take_turns_and_a_caller_that_gives_up_releases_it() {
    let db = TestDb::new();
    let options = StoreOptions::default();
    let nodes = [
        storage::Store::connect_postgres(&db.settings, &options).unwrap(),
        storage::Store::connect_postgres(&db.settings, &options).unwrap(),
    ];
    let mutexes: Vec<_> = nodes
        .iter()
        .map(|n| Arc::new(n.cluster_mutex(b"cf-test1").unwrap()))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // A caller on node 0 gives up while node 1 holds the lock: its queued request must not
        // leave node 0's session holding the lock for ever after.
        let held = mutexes[1].lock().await.unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(200), mutexes[0].lock()).await;
        assert!(waiting.is_err(), "node 0 took a lock node 1 holds");
        drop(held);
        // Both nodes then count to 200 together, each step read-then-write under the lock.
        let inside = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for i in 0..4 {
            let (m, inside, count) = (mutexes[i % 2].clone(), inside.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..50 {
                    let _turn = m.lock().await.unwrap();
                    use std::sync::atomic::Ordering::SeqCst;
                    assert_eq!(inside.fetch_add(1, SeqCst), 0, "two holders at once");
                    let seen = count.load(SeqCst);
                    tokio::task::yield_now().await;
                    count.store(seen + 1, SeqCst);
                    inside.fetch_sub(1, SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 200);
    });
}

/// Submits `sets` together (so they share batches) and waits for every outcome.
fn write_together(store: &PgStore, sets: Vec<WriteSet>) -> Vec<Result<WriteOutcome, StorageError>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(futures_util::future::join_all(
        sets.into_iter().map(|s| store.write(s)),
    ))
}

#[test]
fn sets_in_one_batch_see_the_writes_of_the_sets_before_them() {
    let db = TestDb::new();
    let store = db.store_one_writer();
    let (user, mut account) = open_account(&store, 10);
    // Ten deducts, each conditioned on the account the one before it leaves.
    let mut sets = Vec::new();
    for _ in 0..10 {
        let (set, next) = deduct_set(&account, 1).unwrap();
        sets.push(set);
        account = next;
    }
    let outcomes = write_together(&store, sets);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(WriteOutcome::Committed))),
        "{outcomes:?}"
    );
    let row = db
        .sql()
        .query_one(
            "SELECT a.balance, count(l.*) FROM accounts a JOIN ledger_entries l USING (user_id)
             WHERE a.user_id = $1 GROUP BY a.balance",
            &[&user],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (0, 11));
}

#[test]
fn a_set_the_database_refuses_fails_alone_and_the_rest_of_its_batch_commits() {
    let db = TestDb::new();
    let store = db.store_one_writer();
    let (user, account) = open_account(&store, 10);
    let others: Vec<(Uuid, AccountRecord)> = (0..5).map(|_| open_account(&store, 3)).collect();
    let (_, entry) = account.post(posting(-1), now_us()).unwrap();
    let twin = LedgerEntry {
        id: Uuid::now_v7(),
        seq: 0,
        ..entry
    };
    let mut refused = WriteSet::new();
    refused.put(keys::ledger(twin.id), &twin);
    let mut sets: Vec<WriteSet> = others
        .iter()
        .map(|(_, a)| deduct_set(a, 1).unwrap().0)
        .collect();
    sets.insert(2, refused);
    let outcomes = write_together(&store, sets);
    assert!(outcomes[2].is_err(), "{outcomes:?}");
    for (i, o) in outcomes.iter().enumerate().filter(|(i, _)| *i != 2) {
        assert!(matches!(o, Ok(WriteOutcome::Committed)), "set {i}: {o:?}");
    }
    assert_eq!(db.entries(&user), 1, "the refused set wrote nothing");
    for (other, _) in &others {
        assert_eq!(db.balance(other), 2);
    }
}

#[test]
fn a_batch_appends_in_set_order_after_what_is_stored() {
    let db = TestDb::new();
    let store = db.store_one_writer();
    let appended = |n: u8| {
        let mut set = WriteSet::new();
        set.append(&storage::records::FeatureChange {
            name: format!("e{n}"),
            old: false,
            new: true,
            changed_by: Uuid::nil(),
            changed_at_us: 0,
        });
        set
    };
    let first = write_together(&store, (0..3).map(appended).collect());
    let second = write_together(&store, (3..8).map(appended).collect());
    assert!(first
        .iter()
        .chain(&second)
        .all(|o| matches!(o, Ok(WriteOutcome::Committed))));
    let rows = store
        .scan::<storage::records::FeatureChange>(&[], None, Direction::Forward, 100)
        .unwrap();
    let order: Vec<String> = rows.iter().map(|(_, e)| e.name.clone()).collect();
    let expected: Vec<String> = (0..8).map(|n| format!("e{n}")).collect();
    assert_eq!(order, expected);
}

#[test]
fn attempts_taken_through_two_nodes_let_exactly_the_maximum_through_a_window() {
    let db = TestDb::new();
    let (a, b) = (Arc::new(db.store()), Arc::new(db.store()));
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let node = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || node.take_attempts(60, &[("login/a:x@y.io", 5)]).unwrap())
        })
        .collect();
    let outcomes: Vec<Taken> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|t| **t == Taken::Taken).count(), 5);
    assert!(outcomes.iter().all(|t| match t {
        Taken::Taken => true,
        Taken::Refused { retry_after_s } => (1..=60).contains(retry_after_s),
    }));
}

#[test]
fn a_refused_take_counts_nothing_and_a_given_back_or_cleared_attempt_is_free_again() {
    let db = TestDb::new();
    let (a, b) = (db.store(), db.store());
    assert_eq!(a.take_attempts(60, &[("ip", 1)]).unwrap(), Taken::Taken);
    // Refused on "ip": "account" must not be charged for it.
    assert!(matches!(
        b.take_attempts(60, &[("account", 1), ("ip", 1)]).unwrap(),
        Taken::Refused { .. }
    ));
    assert_eq!(
        b.take_attempts(60, &[("account", 1)]).unwrap(),
        Taken::Taken
    );
    b.give_back_attempt("ip").unwrap();
    assert_eq!(a.take_attempts(60, &[("ip", 1)]).unwrap(), Taken::Taken);
    a.clear_attempts("account").unwrap();
    assert_eq!(
        b.take_attempts(60, &[("account", 1)]).unwrap(),
        Taken::Taken
    );
    assert!(a.take_attempts(60, &[]).is_err(), "a take names a key");
}

#[test]
fn an_ended_window_counts_from_one_again() {
    let db = TestDb::new();
    let a = db.store();
    assert_eq!(a.take_attempts(1, &[("k", 1)]).unwrap(), Taken::Taken);
    assert!(matches!(
        a.take_attempts(1, &[("k", 1)]).unwrap(),
        Taken::Refused { retry_after_s: 1 }
    ));
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    assert_eq!(a.take_attempts(1, &[("k", 1)]).unwrap(), Taken::Taken);
    let n: i32 = db
        .sql()
        .query_one("SELECT n FROM cf_attempt_windows WHERE k = 'k'", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// A store whose cache listener is live: it answers from its cache once a read filled it.
fn store_with_live_cache(db: &TestDb) -> PgStore {
    let store = db.store();
    let probe = keys::pair(Uuid::now_v7(), Uuid::now_v7());
    until("the cache went live", || {
        store.get::<DeletingWorkbench>(&probe).unwrap();
        answered_from_cache(&store, &probe)
    });
    store
}

/// Polls `done` every 20 ms until it holds, failing after 10 s: what another node (or this
/// node's listener) does arrives in its own time.
fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a read of `key` on `store` is answered from its cache.
fn answered_from_cache(store: &PgStore, key: &[u8]) -> bool {
    let hits = store.cache_hits();
    store.get::<DeletingWorkbench>(key).unwrap();
    store.cache_hits() > hits
}

fn mark(store: &PgStore, key: &[u8], started_at_us: i64) {
    let mut set = WriteSet::new();
    set.put(key.to_vec(), &DeletingWorkbench { started_at_us });
    assert_eq!(store.write_blocking(set).unwrap(), WriteOutcome::Committed);
}

/// Reads `key` on `store` until it holds `want` (another node's change arrives by notification).
fn eventually(store: &PgStore, key: &[u8], want: Option<DeletingWorkbench>) {
    until(&format!("{want:?} arrived"), || {
        store.get::<DeletingWorkbench>(key).unwrap() == want
    });
}

#[test]
fn a_node_reads_its_own_writes_at_once_through_its_cache() {
    let db = TestDb::new();
    let a = store_with_live_cache(&db);
    let key = keys::pair(Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(a.get::<DeletingWorkbench>(&key).unwrap(), None);
    assert!(
        answered_from_cache(&a, &key),
        "the absence was answered from the cache"
    );
    mark(&a, &key, 1);
    assert_eq!(
        a.get::<DeletingWorkbench>(&key).unwrap(),
        Some(DeletingWorkbench { started_at_us: 1 })
    );
    let mut set = WriteSet::new();
    set.delete::<DeletingWorkbench>(key.clone());
    a.write_blocking(set).unwrap();
    assert_eq!(a.get::<DeletingWorkbench>(&key).unwrap(), None);
}

#[test]
fn another_nodes_change_evicts_a_cached_record_and_a_cached_scan() {
    let db = TestDb::new();
    let (a, b) = (store_with_live_cache(&db), store_with_live_cache(&db));
    let key = keys::pair(Uuid::now_v7(), Uuid::now_v7());
    mark(&a, &key, 1);
    eventually(&b, &key, Some(DeletingWorkbench { started_at_us: 1 }));
    // b comes to answer it from its cache (a fill racing the write's own notification is
    // dropped, so this may take a read or two).
    until("b cached it", || answered_from_cache(&b, &key));
    mark(&a, &key, 2);
    eventually(&b, &key, Some(DeletingWorkbench { started_at_us: 2 }));
    // A user's kits, read by prefix: another node's new kit evicts the cached page.
    let user = Uuid::now_v7();
    let kits = |s: &PgStore| {
        s.scan::<BrandKitOfUser>(&keys::id(user), None, Direction::Forward, 10)
            .unwrap()
            .len()
    };
    assert_eq!(kits(&b), 0);
    let mut set = WriteSet::new();
    set.put(keys::pair(user, Uuid::now_v7()), &BrandKitOfUser);
    a.write_blocking(set).unwrap();
    until("the new kit showed", || kits(&b) == 1);
}

#[test]
fn a_cache_whose_listener_lost_its_session_stops_answering_until_it_listens_again() {
    let db = TestDb::new();
    let b = store_with_live_cache(&db);
    let key = keys::pair(Uuid::now_v7(), Uuid::now_v7());
    assert_eq!(b.get::<DeletingWorkbench>(&key).unwrap(), None);
    // Every session of b ends (its listener's too); a change made meanwhile by plain SQL, so
    // no notification of it is ever sent.
    db.sql()
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let value = storage::codec::encode(&DeletingWorkbench { started_at_us: 9 });
    db.sql()
        .execute(
            "INSERT INTO cf_deleting (k, v) VALUES ($1, $2)",
            &[&key, &value],
        )
        .unwrap();
    let read = || b.get::<DeletingWorkbench>(&key);
    assert_eq!(
        read().or_else(|_| read()).unwrap(),
        Some(DeletingWorkbench { started_at_us: 9 }),
        "the stale absence was dropped with the session"
    );
}

#[test]
fn a_watcher_hears_every_nodes_changes_to_a_watched_table() {
    let db = TestDb::new();
    let (a, b) = (db.store(), store_with_live_cache(&db));
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(tx);
    b.watch(
        storage::Table::Tickets,
        Box::new(move |key| {
            let _ = tx.lock().unwrap().send(key.to_vec());
        }),
    );
    let ticket = Uuid::now_v7();
    let record = storage::records::TicketRecord {
        id: ticket,
        number: 1,
        user_id: Uuid::now_v7(),
        subject: "s".into(),
        description: "d".into(),
        channel: storage::records::TicketChannel::Web,
        stage: storage::records::TicketStage::New,
        priority: storage::records::TicketPriority::Normal,
        assignee_id: None,
        project_id: None,
        generation_request_id: None,
        first_response_due_at_us: 1,
        first_responded_at_us: None,
        sla_breached: false,
        messages_count: 0,
        events_count: 0,
        created_at_us: 1,
        updated_at_us: 1,
    };
    let mut set = WriteSet::new();
    set.put(keys::id(ticket), &record);
    a.write_blocking(set).unwrap();
    let heard = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the change was heard");
    assert_eq!(heard, keys::id(ticket));
}

#[test]
fn a_failed_condition_sends_the_next_read_of_its_key_to_the_database() {
    let db = TestDb::new();
    let a = store_with_live_cache(&db);
    let key = keys::pair(Uuid::now_v7(), Uuid::now_v7());
    // Written by plain SQL, which notifies nobody: nothing will evict what `a` caches.
    let first = DeletingWorkbench { started_at_us: 1 };
    db.sql()
        .execute(
            "INSERT INTO cf_deleting (k, v) VALUES ($1, $2)",
            &[&key, &storage::codec::encode(&first)],
        )
        .unwrap();
    assert_eq!(a.get::<DeletingWorkbench>(&key).unwrap(), Some(first));
    // Changed behind the cache's back (plain SQL sends no notification).
    let value = storage::codec::encode(&DeletingWorkbench { started_at_us: 2 });
    db.sql()
        .execute(
            "UPDATE cf_deleting SET v = $2 WHERE k = $1",
            &[&key, &value],
        )
        .unwrap();
    assert_eq!(
        a.get::<DeletingWorkbench>(&key).unwrap(),
        Some(first),
        "cached"
    );
    // Conditioned on the cached value, writing elsewhere (as a create is on its project).
    let mut set = WriteSet::new();
    set.require_equal(key.clone(), &first).put(
        keys::pair(Uuid::now_v7(), Uuid::now_v7()),
        &DeletingWorkbench { started_at_us: 3 },
    );
    assert_eq!(
        a.write_blocking(set).unwrap(),
        WriteOutcome::ConditionFailed(0)
    );
    assert_eq!(
        a.get::<DeletingWorkbench>(&key).unwrap(),
        Some(DeletingWorkbench { started_at_us: 2 }),
        "the retry reads what the database holds"
    );
}

#[test]
fn ended_attempt_windows_are_purged_in_bounded_slices_as_attempts_go_on() {
    let db = TestDb::new();
    let a = db.store();
    db.sql()
        .execute(
            "INSERT INTO cf_attempt_windows (k, ends, n)
             SELECT 'old' || i, now() - interval '1 hour', 1 FROM generate_series(1, 1500) i",
            &[],
        )
        .unwrap();
    let ended = || -> i64 {
        db.sql()
            .query_one(
                "SELECT count(*) FROM cf_attempt_windows WHERE ends < now()",
                &[],
            )
            .unwrap()
            .get(0)
    };
    // A purge runs every 128 takes of the process and removes at most 1,000 rows.
    let mut takes = 0;
    while ended() == 1500 {
        assert!(takes < 129, "no purge in 129 takes");
        a.take_attempts(60, &[(&format!("new{takes}"), 5)]).unwrap();
        takes += 1;
    }
    assert_eq!(ended(), 500, "one bounded slice of 1,000 went");
}

#[test]
fn a_take_that_waits_a_second_for_a_parallel_attempts_lock_is_refused() {
    let db = TestDb::new();
    let a = db.store();
    assert_eq!(a.take_attempts(60, &[("busy", 5)]).unwrap(), Taken::Taken);
    let mut holder = db.sql();
    let mut txn = holder.transaction().unwrap();
    txn.execute(
        "SELECT n FROM cf_attempt_windows WHERE k = 'busy' FOR UPDATE",
        &[],
    )
    .unwrap();
    assert_eq!(
        a.take_attempts(60, &[("busy", 5)]).unwrap(),
        Taken::Refused { retry_after_s: 1 }
    );
    txn.rollback().unwrap();
    assert_eq!(a.take_attempts(60, &[("busy", 5)]).unwrap(), Taken::Taken);
}

#[test]
fn a_window_created_while_a_take_waits_never_asks_more_than_its_length() {
    // Another attempt creates the key's full window after this take's transaction began and
    // while it waits for the row: the wait must not count as time the window has left.
    let db = TestDb::new();
    let store = Arc::new(db.store());
    let mut holder = db.sql();
    let mut txn = holder.transaction().unwrap();
    txn.execute(
        "INSERT INTO cf_attempt_windows (k, ends, n) VALUES ('late', clock_timestamp(), 0)",
        &[],
    )
    .unwrap();
    let taker = {
        let store = store.clone();
        std::thread::spawn(move || store.take_attempts(60, &[("late", 5)]).unwrap())
    };
    std::thread::sleep(std::time::Duration::from_millis(400));
    txn.execute(
        "UPDATE cf_attempt_windows SET n = 5, \
         ends = clock_timestamp() + make_interval(secs => 60) WHERE k = 'late'",
        &[],
    )
    .unwrap();
    txn.commit().unwrap();
    match taker.join().unwrap() {
        Taken::Refused { retry_after_s } => assert!((1..=60).contains(&retry_after_s)),
        Taken::Taken => panic!("a full window let an attempt through"),
    }
}

#[test]
fn a_database_at_record_schema_6_is_moved_to_7_and_an_older_one_is_refused() {
    use storage::records::{MetaRecord, META_KEY, PG_SCHEMA_UPGRADABLE_FROM, SCHEMA_VERSION};
    let db = TestDb::new();
    let at = |version: u32| {
        let store = db.store();
        let mut set = WriteSet::new();
        set.put(
            META_KEY.to_vec(),
            &MetaRecord {
                schema_version: version,
                created_at_us: 1,
            },
        );
        assert_eq!(store.write_blocking(set).unwrap(), WriteOutcome::Committed);
        store.shutdown();
    };
    at(PG_SCHEMA_UPGRADABLE_FROM);
    let store = db.store();
    let meta = store.get::<MetaRecord>(META_KEY).unwrap().unwrap();
    assert_eq!(
        (meta.schema_version, meta.created_at_us),
        (SCHEMA_VERSION, 1)
    );
    store.shutdown();
    drop(store);

    at(PG_SCHEMA_UPGRADABLE_FROM - 1);
    let refused = PgStore::connect(&db.settings, &StoreOptions::default()).err();
    let why = refused.map(|e| e.to_string()).unwrap_or_default();
    assert!(why.contains("record schema version 5"), "{why}");
}
