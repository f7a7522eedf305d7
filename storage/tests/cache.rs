//! The embedded store's read cache: a node reads its own writes at once, a snapshot older than
//! a write never leaves the old value behind, and known absences and scans follow writes too.

use storage::keys;
use storage::records::{BrandKitOfUser, DeletingWorkbench, TokenRecord};
use storage::{Direction, Reader, Store, StoreOptions, WriteOutcome, WriteSet};
use uuid::Uuid;

fn open(dir: &std::path::Path) -> Store {
    Store::open(
        dir,
        &StoreOptions {
            cache_size_bytes: 8 << 20,
            ..StoreOptions::default()
        },
    )
    .unwrap()
}

fn token(user_id: Uuid, credentials_version: u32) -> TokenRecord {
    TokenRecord {
        user_id,
        credentials_version,
        created_at_us: 1,
        expires_at_us: i64::MAX,
    }
}

async fn put_token(store: &Store, key: &[u8], record: &TokenRecord) {
    let mut set = WriteSet::new();
    set.put(key.to_vec(), record);
    assert_eq!(store.write(set).await.unwrap(), WriteOutcome::Committed);
}

fn version_of(reads: &impl Reader, key: &[u8]) -> Option<u32> {
    reads
        .get::<TokenRecord>(key)
        .unwrap()
        .map(|t| t.credentials_version)
}

#[tokio::test]
async fn a_changed_or_deleted_record_is_read_back_at_once_though_its_old_value_was_cached() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = keys::token(&[7; 32]);
    let user = Uuid::now_v7();
    put_token(&store, &key, &token(user, 1)).await;

    assert_eq!(version_of(&store, &key), Some(1));
    let hits = store.cache_hits();
    assert_eq!(version_of(&store.read().unwrap(), &key), Some(1));
    assert_eq!(
        store.cache_hits(),
        hits + 1,
        "the second read is answered from memory"
    );

    put_token(&store, &key, &token(user, 2)).await;
    assert_eq!(version_of(&store.read().unwrap(), &key), Some(2));

    let mut set = WriteSet::new();
    set.delete::<TokenRecord>(key.clone());
    store.write(set).await.unwrap();
    assert_eq!(version_of(&store.read().unwrap(), &key), None);
}

#[tokio::test]
async fn a_snapshot_older_than_a_write_never_leaves_the_old_value_in_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = keys::token(&[9; 32]);
    let user = Uuid::now_v7();
    put_token(&store, &key, &token(user, 1)).await;

    let old = store.read().unwrap();
    put_token(&store, &key, &token(user, 2)).await;
    // The cache held nothing of this key: the old snapshot reads its own time.
    assert_eq!(version_of(&old, &key), Some(1));
    // ... and did not keep it: every later reader sees the write, again and again.
    for _ in 0..3 {
        assert_eq!(version_of(&store.read().unwrap(), &key), Some(2));
    }
    drop(old);
}

#[tokio::test]
async fn a_known_absent_deletion_mark_is_cached_and_a_new_mark_is_seen_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let key = keys::id(Uuid::now_v7());
    assert!(store.get::<DeletingWorkbench>(&key).unwrap().is_none());
    let hits = store.cache_hits();
    assert!(store.get::<DeletingWorkbench>(&key).unwrap().is_none());
    assert_eq!(store.cache_hits(), hits + 1, "the absence is remembered");

    let mut set = WriteSet::new();
    set.put(key.clone(), &DeletingWorkbench { started_at_us: 5 });
    store.write(set).await.unwrap();
    let mark = store.get::<DeletingWorkbench>(&key).unwrap();
    assert_eq!(mark.map(|m| m.started_at_us), Some(5));
}

#[tokio::test]
async fn a_cached_scan_of_a_users_brand_kits_follows_a_new_kit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let user = Uuid::now_v7();
    let prefix = keys::id(user);
    let kits = |store: &Store| {
        store
            .scan::<BrandKitOfUser>(&prefix, None, Direction::Forward, 50)
            .unwrap()
            .len()
    };
    let add_kit = |store: Store| async move {
        let mut set = WriteSet::new();
        set.put(keys::pair(user, Uuid::now_v7()), &BrandKitOfUser);
        store.write(set).await.unwrap();
    };
    add_kit(store.clone()).await;
    assert_eq!(kits(&store), 1);
    let hits = store.cache_hits();
    assert_eq!(kits(&store), 1);
    assert_eq!(store.cache_hits(), hits + 1);

    add_kit(store.clone()).await;
    assert_eq!(kits(&store), 2);
}
