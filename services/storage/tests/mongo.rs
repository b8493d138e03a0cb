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
use flotilla_storage::sequence::{Append, Entry, Sequence, entry_id, sequence_index};
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
    match store.set("i002", doc! {"name": "item-1"}).await {
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
                        .set_many(doc! {}, doc! {"owner": "migrated"})
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

/// A lease epoch as `flotilla_storage::migrate` stores it, for tests that plant one.
fn lease(seq: i64, holder: &str, until_ms: i64) -> Document {
    doc! {"_id": entry_id("migrations", seq), "key": "migrations", "seq": seq, "holder": holder, "until_ms": until_ms}
}

#[tokio::test]
async fn a_held_lease_makes_others_wait_and_an_expired_one_is_taken_over() {
    let mongo = database().await;
    let locks = mongo.database().collection::<Document>("flotilla_locks");
    let far = flotilla_storage::mongo::now_ms() + 60_000;
    locks.insert_one(lease(1, "stuck", far)).await.expect("lease");
    let waiting = Migrator::new(mongo.clone(), Vec::new(), "replica-c")
        .with_timing(Duration::from_secs(5), Duration::from_millis(500));
    match waiting.run().await {
        Err(Error::MigrationLocked { holder, .. }) => assert_eq!(holder, "stuck"),
        other => panic!("expected the lock to be held, got {other:?}"),
    }
    locks.insert_one(lease(2, "stuck", 0)).await.expect("expire");
    waiting.run().await.expect("an expired lease is taken over");
    let newest = locks
        .find_one(doc! {})
        .sort(doc! {"seq": -1})
        .await
        .expect("read")
        .expect("newest epoch");
    assert_eq!(
        newest.get_str("holder"),
        Ok(""),
        "released after the run: {newest}"
    );
}

static TAKEOVERS: AtomicU32 = AtomicU32::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_eight_replicas_taking_over_an_expired_lease_at_once_exactly_one_migrates() {
    // Several rounds: a conditional "take it if expired" let two or three through in about one
    // round of three on FerretDB.
    for round in 0..5 {
        let mongo = database().await;
        let locks = mongo.database().collection::<Document>("flotilla_locks");
        locks
            .insert_one(lease(1, "dead", 0))
            .await
            .expect("expired lease");
        let migrations = || {
            vec![Migration {
                version: 1,
                name: "counted",
                run: |_| {
                    Box::pin(async {
                        TAKEOVERS.fetch_add(1, Ordering::SeqCst);
                        // Long enough that every replica tries the lease while the winner holds it.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok(())
                    })
                },
            }]
        };
        let before = TAKEOVERS.load(Ordering::SeqCst);
        let replicas: Vec<_> = (0..8)
            .map(|n| {
                let migrator = Migrator::new(mongo.clone(), migrations(), format!("replica-{n}"))
                    .with_timing(Duration::from_secs(30), Duration::from_secs(20));
                tokio::spawn(async move { migrator.run().await })
            })
            .collect();
        let mut applied = Vec::new();
        for replica in replicas {
            applied.extend(replica.await.expect("join").expect("migrates"));
        }
        assert_eq!(
            applied,
            vec![1],
            "round {round}: one replica applied the migration"
        );
        assert_eq!(
            TAKEOVERS.load(Ordering::SeqCst) - before,
            1,
            "round {round}: and it ran once"
        );
    }
}

/// A counter kept as a sequence: each increment appends the next total.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Tally {
    #[serde(rename = "_id")]
    id: String,
    key: String,
    seq: i64,
    total: i64,
    by: u32,
}

impl Model for Tally {
    const COLLECTION: &'static str = "tallies";

    fn indexes() -> Vec<IndexModel> {
        vec![sequence_index()]
    }
}

impl Entry for Tally {
    fn key(&self) -> &str {
        &self.key
    }

    fn seq(&self) -> i64 {
        self.seq
    }
}

#[tokio::test]
async fn concurrent_increments_through_a_sequence_are_exact() {
    const WRITERS: u32 = 16;
    const EACH: i64 = 25;
    let mongo = database().await;
    let tallies = Sequence::new(mongo.store::<Tally>());
    tallies.store().ensure_indexes().await.expect("indexes");
    let writers: Vec<_> = (0..WRITERS)
        .map(|by| {
            let tallies = tallies.clone();
            tokio::spawn(async move {
                let mut hint = 0;
                for _ in 0..EACH {
                    let advanced = tallies
                        .advance("hits", hint, |head| {
                            let (seq, total) = head.map_or((1, 1), |h| (h.seq + 1, h.total + 1));
                            Ok(Some(Tally {
                                id: entry_id("hits", seq),
                                key: "hits".into(),
                                seq,
                                total,
                                by,
                            }))
                        })
                        .await
                        .expect("advance");
                    assert!(advanced.appended);
                    hint = advanced.head.expect("head").seq;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let expected = i64::from(WRITERS) * EACH;
    let head = tallies.head("hits", 0).await.expect("head").expect("entries");
    assert_eq!((head.seq, head.total), (expected, expected));
    // No gaps and no position twice: every entry is there, each one more than the last.
    let all = tallies
        .store()
        .find(doc! {"key": "hits"}, doc! {"seq": 1}, expected + 10)
        .await
        .expect("entries");
    assert_eq!(all.len() as i64, expected);
    for (n, tally) in all.iter().enumerate() {
        assert_eq!((tally.seq, tally.total), (n as i64 + 1, n as i64 + 1));
    }
    // Every writer's increments landed.
    for by in 0..WRITERS {
        assert_eq!(all.iter().filter(|t| t.by == by).count() as i64, EACH);
    }
}

#[tokio::test]
async fn any_hint_finds_the_head_and_a_taken_position_is_refused() {
    let mongo = database().await;
    let tallies = Sequence::new(mongo.store::<Tally>());
    for seq in 1..=6 {
        let tally = Tally {
            id: entry_id("k", seq),
            key: "k".into(),
            seq,
            total: seq,
            by: 0,
        };
        assert_eq!(tallies.append(&tally).await.expect("append"), Append::Appended);
        assert_eq!(tallies.append(&tally).await.expect("again"), Append::Taken);
    }
    // No hint, an old one, the head itself, and one past the head (as after an account's steps
    // were deleted and written again).
    for hint in [0, 1, 3, 6, 9] {
        let head = tallies.head("k", hint).await.expect("head").expect("exists");
        assert_eq!(head.seq, 6, "from hint {hint}");
    }
    assert!(tallies.head("other", 0).await.expect("head").is_none());
    assert_eq!(tallies.delete_all("k").await.expect("delete"), 6);
    assert!(tallies.head("k", 6).await.expect("head").is_none());
}

/// Projections written out of order still end at the head: each writer checks the head after its
/// own write lands and writes again when it moved.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Shown {
    #[serde(rename = "_id")]
    id: String,
    seq: i64,
}

impl Model for Shown {
    const COLLECTION: &'static str = "shown";
}

#[tokio::test]
async fn a_settled_projection_ends_at_the_head_whatever_order_writes_land_in() {
    let mongo = database().await;
    let tallies = Sequence::new(mongo.store::<Tally>());
    let shown = mongo.store::<Shown>();
    let writers: Vec<_> = (0..8_u32)
        .map(|by| {
            let (tallies, shown) = (tallies.clone(), shown.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let advanced = tallies
                        .advance("p", 0, |head| {
                            let seq = head.map_or(1, |h| h.seq + 1);
                            Ok(Some(Tally {
                                id: entry_id("p", seq),
                                key: "p".into(),
                                seq,
                                total: seq,
                                by,
                            }))
                        })
                        .await
                        .expect("advance");
                    let head = advanced.head.expect("appended");
                    tallies
                        .settle("p", head, |head| {
                            let (shown, seq) = (shown.clone(), head.seq);
                            async move {
                                // A random delay, so older writes often land after newer ones.
                                tokio::time::sleep(Duration::from_millis(u64::from(seq as u32 % 7))).await;
                                shown.replace("p", &Shown { id: "p".into(), seq }).await
                            }
                        })
                        .await
                        .expect("settle");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    assert_eq!(shown.get("p").await.expect("get").expect("projection").seq, 80);
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
