//! Sandbox limits: a guest that loops, hoards memory or panics is stopped with an error for that call,
//! and the host keeps serving, on the same store and on others.

use std::time::{Duration, Instant};

use wasm_sessions::{SessionStore, StoreError};
use wasm_sessions_tests::TestDb;

const MISBEHAVING: &[u8] = include_bytes!(env!("MISBEHAVING_GUEST_COMPONENT"));

async fn hostile_store(db: &TestDb) -> SessionStore {
    SessionStore::builder(db.driver())
        .component(MISBEHAVING)
        .fuel_per_call(200_000_000)
        .build()
        .await
        .expect("the hostile component still builds: its config exports behave")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_loops_forever_is_stopped_by_its_fuel_limit() {
    let db = TestDb::new().await;
    let store = hostile_store(&db).await;
    let started = Instant::now();
    let err = store.generate_session_id().await.unwrap_err();
    assert!(matches!(err, StoreError::FuelExhausted), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The same store keeps serving.
    store.validate_config(store.config()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_allocates_without_bound_is_stopped_by_its_memory_limit() {
    let db = TestDb::new().await;
    let store = hostile_store(&db).await;
    let err = store.new_session(60).await.unwrap_err();
    assert!(
        matches!(err, StoreError::MemoryLimit { desired, limit } if desired > limit && limit == wasm_sessions::GUEST_MEMORY_LIMIT),
        "{err:?}"
    );
    store.validate_config(store.config()).await.unwrap();
}

#[tokio::test]
async fn a_guest_that_panics_is_an_error_not_a_crash() {
    let db = TestDb::new().await;
    let store = hostile_store(&db).await;
    let good = db.store().await;
    let session = good.new_session(60).await.unwrap();
    let err = store.is_expired(&session).await.unwrap_err();
    assert!(matches!(err, StoreError::Guest(_)), "{err:?}");
    assert!(!good.is_expired(&session).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_calls_are_served_while_a_hostile_call_spins() {
    let db = TestDb::new().await;
    let hostile = hostile_store(&db).await;
    let good = db.store().await;
    let spinning = tokio::spawn({
        let hostile = hostile.clone();
        async move { hostile.generate_session_id().await }
    });
    let mut served = 0;
    while !spinning.is_finished() {
        let mut session = good.new_session(60).await.unwrap();
        good.save(&mut session).await.unwrap();
        good.load(&session.id).await.unwrap();
        served += 1;
    }
    assert!(matches!(
        spinning.await.unwrap(),
        Err(StoreError::FuelExhausted)
    ));
    assert!(served > 0, "no call was served while the hostile one spun");
    eprintln!("{served} save+load pairs served while the hostile call spun");
}

#[tokio::test]
async fn a_warm_instance_gets_a_full_fuel_budget_for_every_call() {
    let db = TestDb::new().await;
    // Far more than one call needs, far less than 2,000 calls need together.
    let store = SessionStore::builder(db.driver())
        .isolation(wasm_sessions::Isolation::ReuseInstances { max_idle: 1 })
        .fuel_per_call(1_000_000)
        .build()
        .await
        .unwrap();
    for _ in 0..2000 {
        store.generate_session_id().await.unwrap();
    }
    let stats = store.instance_stats();
    assert!(stats.instantiated <= 3, "{stats:?}");
    assert_eq!(stats.discarded, 0);
}
