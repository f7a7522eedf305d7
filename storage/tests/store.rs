use storage::keys;
use storage::ledger::Posting;
use storage::records::{AccountRecord, EmailIndex, LedgerKind};
use storage::{Store, StoreOptions, Table, WriteOutcome, WriteSet};
use uuid::Uuid;

fn open(dir: &std::path::Path, queue: usize) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            cache_size_bytes: 8 << 20,
            writer_queue_capacity: queue,
            writer_batch_size_max: 256,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn account_with(user: Uuid, amounts: &[i64]) -> (WriteSet, AccountRecord) {
    let postings: Vec<_> = amounts
        .iter()
        .map(|&a| (a, LedgerKind::AdminAdjustment, None))
        .collect();
    chain_with(user, &postings)
}

/// `user`'s account and ledger chain from (amount, kind, generation named) postings.
fn chain_with(
    user: Uuid,
    postings: &[(i64, LedgerKind, Option<Uuid>)],
) -> (WriteSet, AccountRecord) {
    let mut a = AccountRecord::empty(user, 0);
    let mut set = WriteSet::new();
    for &(amount, kind, generation_request_id) in postings {
        let (next, e) = a
            .post(
                Posting {
                    amount,
                    kind,
                    description: "t".into(),
                    generation_request_id,
                    invoice_id: None,
                },
                1,
            )
            .unwrap();
        set.put(keys::ledger(e.id), &e);
        a = next;
    }
    set.put(keys::account(user), &a);
    (set, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 10_000);
    let writes = (0..2000).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            let (set, _) = account_with(Uuid::now_v7(), &[5]);
            store.write(set).await.unwrap()
        })
    });
    for w in futures_util::future::join_all(writes).await {
        assert_eq!(w.unwrap(), WriteOutcome::Committed);
    }
    assert_eq!(store.count(Table::Accounts).unwrap(), 2000);
    let batches = store
        .stats()
        .batches
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        batches < 2000,
        "group commit: {batches} commits for 2000 writes"
    );
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    assert!(report.ok(), "{:?}", report.violations);
}

#[tokio::test]
async fn a_failed_condition_skips_only_its_own_set() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    let user = Uuid::now_v7();
    let mut first = WriteSet::new();
    first.require_absent::<EmailIndex>(keys::email("a@x.io"));
    first.put(keys::email("a@x.io"), &EmailIndex { user_id: user });
    assert_eq!(
        store.write(first.clone()).await.unwrap(),
        WriteOutcome::Committed
    );
    let mut second = first.clone();
    second.put(keys::email("b@x.io"), &EmailIndex { user_id: user });
    assert_eq!(
        store.write(second).await.unwrap(),
        WriteOutcome::ConditionFailed(0)
    );
    assert!(
        store
            .get::<EmailIndex>(&keys::email("b@x.io"))
            .unwrap()
            .is_none(),
        "nothing of a refused set is written"
    );
}

#[tokio::test]
async fn writes_after_shutdown_are_refused_and_earlier_ones_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let user = Uuid::now_v7();
    {
        let store = open(dir.path(), 16);
        let (set, _) = account_with(user, &[7, -2]);
        store.write(set).await.unwrap();
        store.shutdown();
        let (set, _) = account_with(Uuid::now_v7(), &[1]);
        assert!(matches!(
            store.write(set).await,
            Err(storage::StorageError::Closed)
        ));
    }
    let store = open(dir.path(), 16);
    let a = store
        .get::<AccountRecord>(&keys::account(user))
        .unwrap()
        .unwrap();
    assert_eq!(a.balance, 5);
}

#[test]
fn a_second_process_style_open_is_refused_while_the_store_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let _held = open(dir.path(), 16);
    assert!(matches!(
        Store::open(dir.path(), &StoreOptions::default()),
        Err(storage::StorageError::InUse { .. })
    ));
}

#[tokio::test]
async fn verify_names_orphans_gaps_and_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    // A ledger with no account.
    let orphan = Uuid::now_v7();
    let (set, _) = account_with(orphan, &[3]);
    let mut only_ledger = WriteSet::new();
    only_ledger.extend(set);
    only_ledger.delete::<AccountRecord>(keys::account(orphan));
    store.write(only_ledger).await.unwrap();
    // A ledger with a removed entry in the middle.
    let gap = Uuid::now_v7();
    let (set, account) = account_with(gap, &[3, 4, 5]);
    store.write(set).await.unwrap();
    let head = store
        .get::<storage::records::LedgerEntry>(&keys::ledger(account.head_id.unwrap()))
        .unwrap()
        .unwrap();
    let mut remove = WriteSet::new();
    remove.delete::<storage::records::LedgerEntry>(keys::ledger(head.prev_id.unwrap()));
    store.write(remove).await.unwrap();
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    let all = report.violations.join("\n");
    assert!(
        all.contains(&format!(
            "ledger entries of {orphan} have no account record"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "account {gap} counts 3 ledger entries but 2 are stored"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!("ledger chain of {gap} is broken at seq 1")),
        "{all}"
    );
}

#[tokio::test]
async fn a_full_writer_queue_is_overloaded_not_unbounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1);
    let mut outcomes = Vec::new();
    let futures = (0..500).map(|_| {
        let (set, _) = account_with(Uuid::now_v7(), &[1]);
        store.write(set)
    });
    for r in futures_util::future::join_all(futures).await {
        outcomes.push(r);
    }
    assert!(outcomes
        .iter()
        .any(|r| matches!(r, Err(storage::StorageError::Overloaded))));
    assert!(outcomes
        .iter()
        .any(|r| matches!(r, Ok(WriteOutcome::Committed))));
}

#[tokio::test]
async fn verify_names_orphan_projects_assets_and_double_defaults() {
    use storage::records::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    let user = Uuid::now_v7();
    let project = ProjectRecord {
        id: Uuid::now_v7(),
        user_id: user,
        workbench_id: Uuid::now_v7(),
        name: "p".into(),
        brand_kit_id: None,
        created_at_us: 0,
        updated_at_us: 0,
    };
    let asset = AssetRecord {
        id: Uuid::now_v7(),
        user_id: user,
        project_id: Uuid::now_v7(),
        kind: "image".into(),
        path: "a.png".into(),
        mime: "image/png".into(),
        size: 1,
        generation_request_id: None,
        created_at_us: 0,
    };
    let kit = |default| BrandKitRecord {
        id: Uuid::now_v7(),
        user_id: user,
        name: "k".into(),
        colors: vec![],
        fonts: vec![],
        logos: vec![],
        is_default: default,
        created_at_us: 0,
        updated_at_us: 0,
    };
    let (k1, k2) = (kit(true), kit(true));
    let mut set = WriteSet::new();
    set.put(keys::id(project.id), &project);
    set.put(
        keys::pair(project.workbench_id, project.id),
        &ProjectOfWorkbench,
    );
    set.put(keys::pair(user, project.id), &ProjectOfUser);
    set.put(keys::id(asset.id), &asset);
    set.put(keys::pair(asset.project_id, asset.id), &AssetOfProject);
    for k in [&k1, &k2] {
        set.put(keys::id(k.id), k);
        set.put(keys::pair(user, k.id), &BrandKitOfUser);
    }
    store.write(set).await.unwrap();
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    let all = report.violations.join("\n");
    assert!(
        all.contains(&format!("project {} has no workbench", project.id)),
        "{all}"
    );
    assert!(
        all.contains(&format!("asset {} has no project", asset.id)),
        "{all}"
    );
    assert!(
        all.contains(&format!("user {user} has 2 default brand kits")),
        "{all}"
    );
}

/// A failed request of `user` that cost `cost`, as stored.
fn failed_request(user: Uuid, cost: u64) -> storage::records::GenerationRecord {
    use storage::records::*;
    GenerationRecord {
        id: Uuid::now_v7(),
        user_id: user,
        project_id: Uuid::now_v7(),
        prompt: "p".into(),
        format: "banner".into(),
        variations: 1,
        params_json: "{}".into(),
        cost,
        status: GenStatus::Failed,
        error: None,
        asset_ids: vec![],
        deadline_at_us: 5,
        created_at_us: 0,
        updated_at_us: 0,
    }
}

/// A user's requests are listed through the charges of their own chain, so a charge in
/// another user's chain must be found even when the owner's chain holds the refund.
#[tokio::test]
async fn verify_names_a_request_charged_in_another_users_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    let (owner, other) = (Uuid::now_v7(), Uuid::now_v7());
    let g = failed_request(owner, 2);
    let (mut set, _) = chain_with(
        other,
        &[
            (10, LedgerKind::SignupGrant, None),
            (-2, LedgerKind::GenerationCharge, Some(g.id)),
        ],
    );
    let (owners, _) = chain_with(
        owner,
        &[
            (10, LedgerKind::SignupGrant, None),
            (2, LedgerKind::GenerationRefund, Some(g.id)),
        ],
    );
    set.extend(owners);
    set.put(keys::id(g.id), &g);
    store.write(set).await.unwrap();
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    let all = report.violations.join("\n");
    assert!(
        all.contains(&format!(
            "generation {} of user {owner} is named by another user's ledger entries",
            g.id
        )),
        "{all}"
    );
}

#[tokio::test]
async fn verify_names_a_request_refunded_twice_and_a_pending_one_without_its_job() {
    use storage::records::*;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    let user = Uuid::now_v7();
    let g = failed_request(user, 2);
    let pending = GenerationRecord {
        id: Uuid::now_v7(),
        status: GenStatus::Pending,
        ..g.clone()
    };
    let (mut set, _) = chain_with(
        user,
        &[
            (10, LedgerKind::SignupGrant, None),
            (-2, LedgerKind::GenerationCharge, Some(g.id)),
            (2, LedgerKind::GenerationRefund, Some(g.id)),
            (2, LedgerKind::GenerationRefund, Some(g.id)),
            (-2, LedgerKind::GenerationCharge, Some(pending.id)),
        ],
    );
    for r in [&g, &pending] {
        set.put(keys::id(r.id), r);
    }
    set.put(
        keys::live_generation(pending.deadline_at_us, pending.id),
        &LiveGeneration,
    );
    store.write(set).await.unwrap();
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    let all = report.violations.join("\n");
    assert!(
        all.contains(&format!("generation {} is failed with 2 refund(s)", g.id)),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "pending generation {} is neither queued nor in the outbox",
            pending.id
        )),
        "{all}"
    );
}

/// A reader that only ever moves its cursor forward sees every appended entry, however the
/// appends interleave across commits: writer-assigned keys grow in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_keys_follow_commit_order_so_a_forward_cursor_misses_nothing() {
    use storage::records::OutboxOrder;
    use storage::Direction;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 10_000);
    const WRITES: usize = 3000;
    let writers: Vec<_> = (0..WRITES)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut set = WriteSet::new();
                set.append(&OutboxOrder {
                    generation_id: Uuid::now_v7(),
                });
                store.write(set).await.unwrap()
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut cursor: Option<Vec<u8>> = None;
    let mut last_seq: Option<u64> = None;
    while seen.len() < WRITES {
        let rows = store
            .scan::<OutboxOrder>(&[], cursor.as_deref(), Direction::Forward, 128)
            .unwrap();
        for (k, r) in &rows {
            let seq = keys::parse_sequence(k).expect("a sequence key");
            assert!(last_seq.is_none_or(|l| seq > l));
            last_seq = Some(seq);
            assert!(seen.insert(r.generation_id));
        }
        if let Some((k, _)) = rows.last() {
            cursor = Some(k.clone());
        } else {
            tokio::task::yield_now().await;
        }
    }
    for w in futures_util::future::join_all(writers).await {
        assert_eq!(w.unwrap(), WriteOutcome::Committed);
    }
    assert_eq!(seen.len(), WRITES);
    store.shutdown();
    drop(store);

    // After a restart the sequence continues past what is stored.
    let store = open(dir.path(), 16);
    let mut set = WriteSet::new();
    set.append(&OutboxOrder {
        generation_id: Uuid::now_v7(),
    });
    store.write(set).await.unwrap();
    let last = store
        .scan::<OutboxOrder>(&[], None, Direction::Backward, 1)
        .unwrap();
    assert_eq!(keys::parse_sequence(&last[0].0), Some(WRITES as u64));
    store.shutdown();
}

/// Writes `set` into a new store in `dir` marked as schema `version`, then opens it again as a
/// restart would: it must be at this build's version.
async fn reopened_from_version(dir: &std::path::Path, version: u32, mut set: WriteSet) -> Store {
    use storage::records::{MetaRecord, META_KEY, SCHEMA_VERSION};
    let store = open(dir, 16);
    set.put(
        META_KEY.to_vec(),
        &MetaRecord {
            schema_version: version,
            created_at_us: 0,
        },
    );
    assert_eq!(store.write(set).await.unwrap(), WriteOutcome::Committed);
    store.shutdown();
    drop(store);
    let store = open(dir, 16);
    let meta = store.get::<MetaRecord>(META_KEY).unwrap().unwrap();
    assert_eq!(meta.schema_version, SCHEMA_VERSION);
    store
}

/// A version-2 store (outbox without order entries) opens as version 3 with every waiting job
/// in the publisher's order, and verifies clean of order findings.
#[tokio::test]
async fn a_schema_2_store_is_upgraded_with_its_outbox_ordered() {
    use storage::records::{OutboxOrder, OutboxRecord};
    use storage::Direction;
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    let mut set = WriteSet::new();
    for id in &ids {
        set.put(
            keys::id(*id),
            &OutboxRecord {
                generation_id: *id,
                payload: b"{}".to_vec(),
                created_at_us: 0,
            },
        );
    }
    let store = reopened_from_version(dir.path(), 2, set).await;
    let order = store
        .scan::<OutboxOrder>(&[], None, Direction::Forward, 10)
        .unwrap();
    let ordered: Vec<Uuid> = order.iter().map(|(_, o)| o.generation_id).collect();
    assert_eq!(ordered, ids);
    store.shutdown();
}

/// A version-6 store opens as version 7 without converting anything: the retired
/// `generations_by_user` entries stay, and `verify` still holds them to naming real requests.
#[tokio::test]
async fn a_schema_6_store_is_upgraded_and_its_retired_index_entries_are_still_checked() {
    use storage::records::GenerationOfUser;
    let dir = tempfile::tempdir().unwrap();
    let mut set = WriteSet::new();
    let (user, missing) = (Uuid::now_v7(), Uuid::now_v7());
    set.put(keys::pair(user, missing), &GenerationOfUser);
    let store = reopened_from_version(dir.path(), 6, set).await;
    let report = storage::verify::verify(&store.snapshot().unwrap(), &mut |_, _| {}).unwrap();
    assert_eq!(report.violations.len(), 1, "{:?}", report.violations);
    assert!(report.violations[0].contains("names a missing request"));
    store.shutdown();
}

#[test]
fn many_keys_are_read_in_the_order_asked_from_the_store_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 16);
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let (set_a, account_a) = account_with(a, &[3]);
    let (set_b, account_b) = account_with(b, &[4]);
    store.write_blocking(set_a).unwrap();
    store.write_blocking(set_b).unwrap();
    let asked = vec![
        keys::account(b),
        keys::account(Uuid::now_v7()),
        keys::account(a),
    ];
    let want = vec![Some(account_b), None, Some(account_a)];
    let from_store = storage::Reader::get_many::<AccountRecord>(&store, &asked).unwrap();
    assert_eq!(from_store, want);
    let snapshot = store.read().unwrap();
    assert_eq!(
        storage::Reader::get_many::<AccountRecord>(&snapshot, &asked).unwrap(),
        want
    );
}
