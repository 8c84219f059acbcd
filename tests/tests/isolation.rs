//! Both isolation modes behave the same: a representative part of the behaviour suite runs once with a
//! fresh instance per call and once with warm instances reused; and an instance that trapped is never
//! used again. Also the batch cleanup API (`cleanup_batch`, `cleanup_in_batches`, `count_expired`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use wasm_sessions::{EntropyError, EntropySource, Isolation, OsEntropy, SessionStore, StoreError};
use wasm_sessions_tests::{CountingDriver, TestDb};

const FRESH: Isolation = Isolation::FreshInstancePerCall;
const REUSE: Isolation = Isolation::ReuseInstances { max_idle: 4 };

/// Runs `$body(isolation)` as two tests, `fresh` and `reuse`, in a module named `$name`.
macro_rules! in_both_modes {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fresh() {
                super::$name(super::FRESH).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reuse() {
                super::$name(super::REUSE).await;
            }
        }
    };
}

async fn store_in(db: &TestDb, isolation: Isolation) -> (SessionStore, CountingDriver) {
    let driver = CountingDriver::new(db);
    let store = SessionStore::builder(driver.clone())
        .isolation(isolation)
        .build()
        .await
        .expect("store builds");
    driver.take();
    (store, driver)
}

in_both_modes!(save_load_delete_round_trip_one_statement_each);
async fn save_load_delete_round_trip_one_statement_each(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, driver) = store_in(&db, isolation).await;
    for round in 0..3 {
        let mut session = store.new_session(600).await.unwrap();
        session.set("round", round.to_string());
        session.set("greeting", "grüß dich");
        session.set_user(round);
        store.save(&mut session).await.unwrap();
        assert_eq!(driver.take(), 1, "save is one round trip");
        let loaded = store.load(&session.id).await.unwrap();
        assert_eq!(driver.take(), 1, "load is one round trip");
        assert_eq!(loaded, session);
        assert!(store.delete(&session.id).await.unwrap());
        assert_eq!(driver.take(), 1, "delete is one round trip");
        assert!(matches!(
            store.load(&session.id).await,
            Err(StoreError::NotFound)
        ));
        assert!(!store.delete(&session.id).await.unwrap());
        assert_eq!(driver.take(), 2);
    }
}

in_both_modes!(bad_ids_and_data_are_rejected_without_sql);
async fn bad_ids_and_data_are_rejected_without_sql(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, driver) = store_in(&db, isolation).await;
    for id in ["", "abc", &"A".repeat(64), &"g".repeat(64)] {
        assert!(matches!(
            store.load(id).await,
            Err(StoreError::InvalidId(_))
        ));
    }
    let mut session = store.new_session(60).await.unwrap();
    session.set("nul", "a\0b");
    assert!(matches!(
        store.save(&mut session).await,
        Err(StoreError::InvalidData(_))
    ));
    assert_eq!(driver.take(), 0);
    // A call that returned an error value leaves a usable instance behind.
    session.delete("nul");
    store.save(&mut session).await.unwrap();
    assert_eq!(store.load(&session.id).await.unwrap().id, session.id);
}

in_both_modes!(expired_sessions_do_not_load_and_cleanup_removes_only_them);
async fn expired_sessions_do_not_load_and_cleanup_removes_only_them(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, _) = store_in(&db, isolation).await;
    let mut short = store.new_session(1).await.unwrap();
    short.set("k", "v");
    store.save(&mut short).await.unwrap();
    let mut long = store.new_session(600).await.unwrap();
    store.save(&mut long).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.is_expired(&short).await.unwrap());
    assert!(matches!(
        store.load(&short.id).await,
        Err(StoreError::Expired)
    ));
    assert_eq!(store.cleanup().await.unwrap(), 1);
    assert!(matches!(
        store.load(&short.id).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.load(&long.id).await.is_ok());
}

in_both_modes!(regenerate_id_moves_the_session);
async fn regenerate_id_moves_the_session(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, _) = store_in(&db, isolation).await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("k", "v");
    store.save(&mut session).await.unwrap();
    let old = session.id.clone();
    session.set_user(9);
    store.regenerate_id(&mut session).await.unwrap();
    assert_ne!(session.id, old);
    assert!(matches!(store.load(&old).await, Err(StoreError::NotFound)));
    let loaded = store.load(&session.id).await.unwrap();
    assert_eq!(loaded.user_id, Some(9));
    assert_eq!(loaded.get("k"), Some("v"));
}

in_both_modes!(user_sessions_are_listed_and_revoked);
async fn user_sessions_are_listed_and_revoked(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, _) = store_in(&db, isolation).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut s = store.new_session(600).await.unwrap();
        s.set_user(5);
        store.save(&mut s).await.unwrap();
        ids.push(s.id);
    }
    let listed = store.get_user_sessions(5).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(store.revoke_session(&listed[0].handle).await.unwrap());
    assert_eq!(store.get_user_sessions(5).await.unwrap().len(), 2);
    assert_eq!(store.delete_user_sessions(5).await.unwrap(), 2);
    for id in &ids {
        assert!(matches!(store.load(id).await, Err(StoreError::NotFound)));
    }
}

in_both_modes!(cookies_are_the_same);
async fn cookies_are_the_same(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, _) = store_in(&db, isolation).await;
    let session = store.new_session(600).await.unwrap();
    let header = store.set_cookie_header(&session, true).await.unwrap();
    assert!(header.starts_with(&format!("varel_session={}", session.id)));
    assert!(header.contains("Secure") && header.contains("SameSite=Strict"));
    let cookie = format!("other=1; varel_session={}", session.id);
    assert_eq!(
        store.session_id_from_cookie_header(&cookie).await.unwrap(),
        Some(session.id.clone())
    );
    assert!(
        store
            .removal_cookie_header(false)
            .await
            .unwrap()
            .contains("Max-Age=0")
    );
}

in_both_modes!(many_concurrent_calls_all_succeed);
async fn many_concurrent_calls_all_succeed(isolation: Isolation) {
    let db = TestDb::new().await;
    let (store, _) = store_in(&db, isolation).await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = store.new_session(600).await.unwrap();
            s.set("i", i.to_string());
            store.save(&mut s).await.unwrap();
            let loaded = store.load(&s.id).await.unwrap();
            assert_eq!(loaded.get("i"), Some(i.to_string().as_str()));
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = store.instance_stats();
    match isolation {
        Isolation::FreshInstancePerCall => assert_eq!(stats.idle, 0),
        Isolation::ReuseInstances { max_idle } => assert!(stats.idle <= max_idle, "{stats:?}"),
    }
    assert_eq!(stats.discarded, 0);
}

/// Entropy that can be told to fail, which makes the guest trap mid-call.
struct SwitchableEntropy(Arc<AtomicBool>);

impl EntropySource for SwitchableEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(EntropyError("switched off for the test".into()));
        }
        OsEntropy.fill(buf)
    }
}

#[tokio::test]
async fn warm_instances_are_reused_and_a_trapped_one_is_discarded_never_reused() {
    let db = TestDb::new().await;
    let off = Arc::new(AtomicBool::new(false));
    let store = SessionStore::builder(db.driver())
        .entropy(SwitchableEntropy(off.clone()))
        .isolation(Isolation::ReuseInstances { max_idle: 1 })
        .build()
        .await
        .unwrap();
    // The builder's calls made one instance, now idle; sequential calls keep using it.
    let before = store.instance_stats();
    assert_eq!(before.idle, 1, "{before:?}");
    for _ in 0..5 {
        store.generate_session_id().await.unwrap();
    }
    assert_eq!(store.instance_stats().instantiated, before.instantiated);

    off.store(true, Ordering::SeqCst);
    let err = store.generate_session_id().await.unwrap_err();
    assert!(matches!(err, StoreError::Guest(_)), "{err:?}");
    let after_trap = store.instance_stats();
    assert_eq!(after_trap.discarded, 1);
    assert_eq!(after_trap.idle, 0, "the trapped instance is not kept");

    off.store(false, Ordering::SeqCst);
    let id = store.generate_session_id().await.unwrap();
    assert_eq!(id.len(), 64);
    let after = store.instance_stats();
    assert_eq!(
        after.instantiated,
        before.instantiated + 1,
        "the next call ran on a new instance"
    );
    assert_eq!(after.idle, 1);
    let mut session = store.new_session(60).await.unwrap();
    store.save(&mut session).await.unwrap();
    assert!(store.load(&session.id).await.is_ok());
    assert_eq!(store.instance_stats().discarded, 1);
}

#[tokio::test]
async fn fresh_instance_per_call_instantiates_for_every_call_and_keeps_none() {
    let db = TestDb::new().await;
    let store = SessionStore::builder(db.driver())
        .isolation(Isolation::FreshInstancePerCall)
        .build()
        .await
        .unwrap();
    let before = store.instance_stats();
    for _ in 0..3 {
        store.generate_session_id().await.unwrap();
    }
    let after = store.instance_stats();
    assert_eq!(after.instantiated, before.instantiated + 3);
    assert_eq!(after.idle, 0);
}

/// Inserts `expired` rows that expired a day ago and `live` rows valid for a day.
async fn generate_rows(db: &TestDb, expired: i64, live: i64) {
    db.client()
        .await
        .batch_execute(&format!(
            "INSERT INTO sessions (id_hash, expires_at) \
             SELECT sha256(int8send(g)), now() - interval '1 day' + g * interval '1 millisecond' \
             FROM generate_series(1, {expired}) AS g; \
             INSERT INTO sessions (id_hash, expires_at) \
             SELECT sha256(int8send(g)), now() + interval '1 day' \
             FROM generate_series({expired} + 1, {expired} + {live}) AS g"
        ))
        .await
        .unwrap();
}

async fn counts(db: &TestDb) -> (i64, i64) {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FILTER (WHERE expires_at <= now()), \
             count(*) FILTER (WHERE expires_at > now()) FROM sessions",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn cleanup_in_batches_removes_exactly_the_expired_rows_and_reports_each_batch() {
    let db = TestDb::new().await;
    generate_rows(&db, 2_345, 300).await;
    let (store, driver) = store_in(&db, Isolation::default()).await;
    assert_eq!(store.count_expired(SystemTime::now()).await.unwrap(), 2_345);
    driver.take();
    let mut reports = Vec::new();
    let removed = store
        .cleanup_in_batches(1000, |p| reports.push(p))
        .await
        .unwrap();
    assert_eq!(removed, 2_345);
    assert_eq!(driver.take(), 3, "one statement per batch");
    let per_batch: Vec<u64> = reports.iter().map(|p| p.removed_in_batch).collect();
    assert_eq!(per_batch, [1000, 1000, 345]);
    assert_eq!(reports.last().unwrap().removed_total, 2_345);
    assert_eq!(reports.last().unwrap().batches, 3);
    assert_eq!(counts(&db).await, (0, 300));
    assert_eq!(store.count_expired(SystemTime::now()).await.unwrap(), 0);
}

#[tokio::test]
async fn an_exact_multiple_of_the_batch_size_ends_with_an_empty_batch() {
    let db = TestDb::new().await;
    generate_rows(&db, 200, 10).await;
    let (store, _) = store_in(&db, Isolation::default()).await;
    let mut per_batch = Vec::new();
    let removed = store
        .cleanup_in_batches(100, |p| per_batch.push(p.removed_in_batch))
        .await
        .unwrap();
    assert_eq!(removed, 200);
    assert_eq!(per_batch, [100, 100, 0]);
    assert_eq!(counts(&db).await, (0, 10));
}

#[tokio::test]
async fn cleanup_batch_removes_the_oldest_first_up_to_the_limit_and_respects_the_cutoff() {
    let db = TestDb::new().await;
    generate_rows(&db, 50, 5).await;
    let (store, driver) = store_in(&db, Isolation::default()).await;
    // A cutoff in the distant past matches nothing.
    let past = SystemTime::now() - Duration::from_secs(10 * 24 * 3600);
    assert_eq!(store.cleanup_batch(past, 100).await.unwrap(), 0);
    assert_eq!(
        store.cleanup_batch(SystemTime::now(), 20).await.unwrap(),
        20
    );
    // The 20 removed were the oldest: the rows numbered 1..=20 by the generator.
    let left: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM sessions WHERE id_hash IN \
             (SELECT sha256(int8send(g)) FROM generate_series(1, 20) AS g)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    driver.take();
    assert_eq!(store.cleanup_batch(SystemTime::now(), 0).await.unwrap(), 0);
    assert_eq!(driver.take(), 0, "a limit of 0 sends no SQL");
    assert!(matches!(
        store.cleanup_batch(SystemTime::now(), 100_001).await,
        Err(StoreError::InvalidData(_))
    ));
    assert!(matches!(
        store.cleanup_in_batches(0, |_| {}).await,
        Err(StoreError::InvalidData(_))
    ));
    assert_eq!(counts(&db).await, (30, 5));
}
