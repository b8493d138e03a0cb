//! The MongoDB layer against real FerretDB: typed stores, unique indexes, cursor pages, migrations
//! racing across replicas, and backup/restore round trips.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use flotilla_storage::Error;
use flotilla_storage::backup;
use flotilla_storage::migrate::{Migration, Migrator};
use flotilla_storage::model::{Model, index, unique_index};
use flotilla_storage::mongo::{Mongo, MongoOptions};
use flotilla_storage::page::{PageRequest, SortKey};
use mongodb::IndexModel;
use mongodb::bson::{Bson, DateTime, Document, doc};
use serde::{Deserialize, Serialize};

fn url() -> String {
    std::env::var("FLOTILLA_MONGO_URL").expect("FLOTILLA_MONGO_URL is not set: run e2e/storage/up.sh")
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{prefix}{nanos:x}{}", std::process::id())
}

async fn database() -> Mongo {
    Mongo::connect_unmonitored(&MongoOptions::new(url(), unique("storage")))
        .await
        .expect("connect")
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Item {
    #[serde(rename = "_id")]
    id: String,
    owner: String,
    name: String,
    at: i64,
}

impl Model for Item {
    const COLLECTION: &'static str = "items";

    fn indexes() -> Vec<IndexModel> {
        // Two, one of them compound and descending: FerretDB once dropped the connection when
        // asked to create several indexes that all existed.
        vec![
            unique_index("name", doc! {"name": 1}),
            index("owner_at", doc! {"owner": 1, "at": -1}),
        ]
    }
}

fn item(n: i64, at: i64) -> Item {
    Item {
        id: format!("i{n:03}"),
        owner: "ann".into(),
        name: format!("item-{n}"),
        at,
    }
}

#[tokio::test]
async fn a_unique_index_turns_a_second_insert_or_update_into_a_named_duplicate() {
    let mongo = database().await;
    let store = mongo.store::<Item>();
    store.ensure_indexes().await.expect("indexes");
    store.ensure_indexes().await.expect("indexes are idempotent");
    store.insert(&item(1, 0)).await.expect("insert");
    store.insert(&item(2, 0)).await.expect("insert");
    let mut clash = item(3, 0);
    clash.name = "item-1".into();
    match store.insert(&clash).await {
        Err(Error::Duplicate { field }) => assert_eq!(field, "name"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    match store
        .update_idempotent(doc! {"_id": "i002"}, doc! {"$set": {"name": "item-1"}})
        .await
    {
        Err(Error::Duplicate { field }) => assert_eq!(field, "name"),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(
        store.get("i002").await.expect("get").expect("exists").name,
        "item-2"
    );
}

#[tokio::test]
async fn cursor_pages_cover_every_item_once_in_order_even_with_ties() {
    let mongo = database().await;
    let store = mongo.store::<Item>();
    // 25 items over 5 timestamps: ties on the sort key are broken by id.
    for n in 0..25 {
        store.insert(&item(n, n / 5)).await.expect("insert");
    }
    let key = SortKey::descending("at");
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .page(doc! {"owner": "ann"}, key, &PageRequest::new(Some(7), cursor))
            .await
            .expect("page");
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|i| (i.at, i.id.clone())));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<(i64, String)> = (0..25).map(|n| (n / 5, format!("i{n:03}"))).collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, expected);
    let bad = store
        .page(doc! {}, key, &PageRequest::new(Some(5), Some("garbage!".into())))
        .await;
    assert!(matches!(bad, Err(Error::BadCursor)));
}

static RUNS: AtomicU32 = AtomicU32::new(0);

fn counted_migrations() -> Vec<Migration> {
    vec![
        Migration {
            version: 1,
            name: "indexes",
            run: |mongo| {
                Box::pin(async move {
                    RUNS.fetch_add(1, Ordering::SeqCst);
                    // Slow enough that a second replica arrives while the first holds the lease.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    mongo.store::<Item>().ensure_indexes().await
                })
            },
        },
        Migration {
            version: 2,
            name: "backfill",
            run: |mongo| {
                Box::pin(async move {
                    RUNS.fetch_add(1, Ordering::SeqCst);
                    mongo
                        .store::<Item>()
                        .update_many_idempotent(doc! {}, doc! {"$set": {"owner": "migrated"}})
                        .await?;
                    Ok(())
                })
            },
        },
    ]
}

#[tokio::test]
async fn two_replicas_migrating_at_once_apply_each_migration_exactly_once() {
    let mongo = database().await;
    mongo.store::<Item>().insert(&item(1, 0)).await.expect("insert");
    let first = Migrator::new(mongo.clone(), counted_migrations(), "replica-a");
    let second = Migrator::new(mongo.clone(), counted_migrations(), "replica-b");
    let (a, b) = tokio::join!(first.run(), second.run());
    let (a, b) = (a.expect("a migrates"), b.expect("b migrates"));
    let mut applied = [a.clone(), b.clone()].concat();
    applied.sort_unstable();
    assert_eq!(
        applied,
        vec![1, 2],
        "each version applied once between them: a={a:?} b={b:?}"
    );
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
    let recorded: Vec<u32> = first
        .applied()
        .await
        .expect("applied")
        .iter()
        .map(|m| m.version)
        .collect();
    assert_eq!(recorded, vec![1, 2]);
    assert!(
        first.run().await.expect("rerun").is_empty(),
        "a rerun applies nothing"
    );
    assert_eq!(
        mongo
            .store::<Item>()
            .get("i001")
            .await
            .expect("get")
            .expect("item")
            .owner,
        "migrated"
    );

    // A build that knows fewer migrations than the database has refuses to run.
    let older = Migrator::new(
        mongo.clone(),
        counted_migrations().into_iter().take(1).collect(),
        "old",
    );
    assert!(matches!(
        older.run().await,
        Err(Error::MigrationsAhead { found: 2, known: 1 })
    ));
}

#[tokio::test]
async fn a_held_lease_makes_others_wait_and_an_expired_one_is_taken_over() {
    let mongo = database().await;
    let locks = mongo.database().collection::<Document>("flotilla_locks");
    let far = flotilla_storage::mongo::now_ms() + 60_000;
    locks
        .insert_one(doc! {"_id": "migrations", "holder": "stuck", "until_ms": far})
        .await
        .expect("lease");
    let waiting = Migrator::new(mongo.clone(), Vec::new(), "replica-c")
        .with_timing(Duration::from_secs(5), Duration::from_millis(500));
    match waiting.run().await {
        Err(Error::MigrationLocked { holder, .. }) => assert_eq!(holder, "stuck"),
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    locks
        .update_one(doc! {"_id": "migrations"}, doc! {"$set": {"until_ms": 0_i64}})
        .await
        .expect("expire");
    waiting.run().await.expect("an expired lease is taken over");
    assert_eq!(
        locks.count_documents(doc! {}).await.expect("count"),
        0,
        "released after the run"
    );
}

#[tokio::test]
async fn a_backup_restores_into_an_empty_database_exactly() {
    let source = database().await;
    let items = source.store::<Item>();
    items.ensure_indexes().await.expect("indexes");
    for n in 0..1200 {
        items.insert(&item(n, n * 7)).await.expect("insert");
    }
    let typed = source.database().collection::<Document>("typed");
    let typed_doc = doc! {
        "_id": 1_i32, "big": i64::MAX, "when": DateTime::from_millis(1_700_000_000_123),
        "bytes": Bson::Binary(mongodb::bson::Binary { subtype: mongodb::bson::spec::BinarySubtype::Generic, bytes: vec![0, 1, 255] }),
        "nested": {"list": [1.5_f64, "two", Bson::Null]},
    };
    typed.insert_one(typed_doc.clone()).await.expect("insert typed");
    source
        .database()
        .create_collection("empty")
        .await
        .expect("create empty");

    let dir = std::env::temp_dir().join(unique("backup"));
    std::fs::create_dir_all(&dir).expect("dir");
    let archive = dir.join("backup.tar.gz");
    let manifest = backup::export(&source, &archive).await.expect("export");
    let names: Vec<&str> = manifest.collections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["empty", "items", "typed"]);
    assert_eq!(backup::verify(&archive).expect("verify"), manifest);

    let target = database().await;
    backup::restore(&target, &archive).await.expect("restore");
    let restored: Vec<Item> = target
        .store::<Item>()
        .find(doc! {}, doc! {"_id": 1}, 10_000)
        .await
        .expect("items");
    let original: Vec<Item> = items.find(doc! {}, doc! {"_id": 1}, 10_000).await.expect("items");
    assert_eq!(restored, original);
    let restored_typed = target
        .database()
        .collection::<Document>("typed")
        .find_one(doc! {})
        .await
        .expect("find");
    assert_eq!(restored_typed, Some(typed_doc));
    let mut clash = item(5000, 0);
    clash.name = "item-3".into();
    assert!(
        matches!(
            target.store::<Item>().insert(&clash).await,
            Err(Error::Duplicate { .. })
        ),
        "index restored"
    );

    // Restoring over data is refused, and nothing is written.
    assert!(matches!(
        backup::restore(&target, &archive).await,
        Err(Error::RestoreTargetNotEmpty(_))
    ));

    // A corrupted archive is refused before anything is written.
    let bytes = std::fs::read(&archive).expect("read");
    let corrupt = dir.join("corrupt.tar.gz");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 2]).expect("write");
    let empty = database().await;
    assert!(backup::restore(&empty, &corrupt).await.is_err());
    let collections = empty.database().list_collection_names().await.expect("list");
    assert!(collections.is_empty(), "nothing written: {collections:?}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[tokio::test]
async fn a_wrong_address_fails_at_connect_within_the_timeout() {
    let mut options = MongoOptions::new("mongodb://127.0.0.1:1/", "x");
    options.timeout = Duration::from_millis(500);
    let started = std::time::Instant::now();
    assert!(Mongo::connect_unmonitored(&options).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}
