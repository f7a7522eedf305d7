//! Recording broker confirms: a confirmed batch is written as one set.

use actors::generation::mark_published_batch;
use actors::lifecycle::creation_set;
use std::sync::atomic::Ordering;
use storage::records::{GenStatus, GenerationRecord, OutboxOrder, OutboxRecord, ProjectRecord};
use storage::{keys, now_us, Direction, Store, StoreOptions, WriteSet};

use uuid::Uuid;

fn request(user: Uuid, project: Uuid, status: GenStatus) -> GenerationRecord {
    let now = now_us();
    GenerationRecord {
        id: Uuid::now_v7(),
        user_id: user,
        project_id: project,
        prompt: "p".into(),
        format: "banner".into(),
        variations: 1,
        params_json: "{}".into(),
        cost: 1,
        status,
        error: None,
        asset_ids: Vec::new(),
        deadline_at_us: now + 60_000_000,
        created_at_us: now,
        updated_at_us: now,
    }
}

#[actix_rt::test]
async fn a_confirmed_batch_is_recorded_in_one_set_and_a_cancelled_request_stays_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StoreOptions::default()).unwrap();
    let (user, project) = (Uuid::now_v7(), Uuid::now_v7());
    let mut set = WriteSet::new();
    set.put(
        keys::id(project),
        &ProjectRecord {
            id: project,
            user_id: user,
            workbench_id: Uuid::now_v7(),
            name: "P".into(),
            brand_kit_id: None,
            created_at_us: 0,
            updated_at_us: 0,
        },
    );
    store.write(set).await.unwrap();
    let mut requests = Vec::new();
    for status in [GenStatus::Pending, GenStatus::Pending, GenStatus::Cancelled] {
        let g = request(user, project, status);
        store.write(creation_set(&g, b"{}".to_vec())).await.unwrap();
        requests.push(g);
    }
    let order = store
        .scan::<OutboxOrder>(&[], None, Direction::Forward, 10)
        .unwrap();
    let jobs: Vec<(Uuid, Vec<u8>)> = order
        .into_iter()
        .map(|(k, o)| (o.generation_id, k))
        .collect();
    assert_eq!(jobs.len(), 3);
    let submitted = || store.stats().submitted.load(Ordering::Relaxed);
    let writes_before = submitted();
    let results = mark_published_batch(&store, &jobs).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(submitted() - writes_before, 1, "one set for the batch");
    for (g, want) in
        requests
            .iter()
            .zip([GenStatus::Queued, GenStatus::Queued, GenStatus::Cancelled])
    {
        let now: GenerationRecord = store.get(&keys::id(g.id)).unwrap().unwrap();
        assert_eq!(now.status, want);
        assert!(store
            .get::<OutboxRecord>(&keys::id(g.id))
            .unwrap()
            .is_none());
    }
    assert!(store
        .scan::<OutboxOrder>(&[], None, Direction::Forward, 10)
        .unwrap()
        .is_empty());
}
