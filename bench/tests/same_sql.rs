//! The native baseline must send exactly what the guest sends: this records the statements the real
//! component passes to its driver and fails when they drift from `wasm_sessions_bench::sql`, or when
//! the native baseline sends other statements or other kinds of parameters than the component.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use wasm_sessions::{PostgresDriver, QueryFuture, SessionStore, SqlDriver, SqlValue};
use wasm_sessions_bench::native::NativeStore;
use wasm_sessions_bench::sql;
use wasm_sessions_tests::TestDb;

/// The real driver, recording each statement and the kinds of its parameters (never their values).
#[derive(Clone)]
struct RecordingDriver {
    inner: PostgresDriver,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl RecordingDriver {
    fn new(db: &TestDb) -> Self {
        Self {
            inner: db.driver(),
            seen: Arc::default(),
        }
    }

    /// The statements recorded since the last call, with their parameter kinds.
    fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Only the statement texts recorded since the last call.
    fn take_statements(&self) -> Vec<String> {
        self.take().into_iter().map(|(s, _)| s).collect()
    }
}

impl SqlDriver for RecordingDriver {
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
        // `SqlValue`'s Debug names the kind (and a length), never the content.
        let kinds = params
            .iter()
            .map(|p| {
                let debug = format!("{p:?}");
                debug.split('(').next().unwrap_or_default().to_owned()
            })
            .collect::<Vec<_>>()
            .join(",");
        self.seen
            .lock()
            .unwrap()
            .push((statement.to_owned(), kinds));
        self.inner.query(statement, params)
    }
}

#[tokio::test]
async fn the_bench_statements_are_exactly_the_ones_the_guest_sends() {
    let db = TestDb::new().await;
    let driver = RecordingDriver::new(&db);
    let store = SessionStore::builder(driver.clone()).build().await.unwrap();
    driver.take();

    let mut session = store.new_session(600).await.unwrap();
    session.set("k", "v");
    session.set_user(7);
    store.save(&mut session).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::INSERT]);

    session.set("k", "w");
    store.save(&mut session).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::UPDATE]);

    store.load(&session.id).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::SELECT_ONE]);

    store.regenerate_id(&mut session).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::UPDATE]);

    store.get_user_sessions(7).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::SELECT_USER]);

    store.delete(&session.id).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::DELETE_ONE]);

    store
        .delete_user_sessions_except(7, &session.id)
        .await
        .unwrap();
    assert_eq!(driver.take_statements(), [sql::DELETE_USER_EXCEPT]);

    store.delete_user_sessions(7).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::DELETE_USER]);

    store.cleanup().await.unwrap();
    assert_eq!(driver.take_statements(), [sql::CLEANUP]);

    let now = SystemTime::now();
    store.cleanup_batch(now, 10).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::CLEANUP]);

    store.count_expired(now).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::COUNT_EXPIRED]);
}

#[tokio::test]
async fn the_native_baseline_sends_what_the_component_sends() {
    let db = TestDb::new().await;
    let component_driver = RecordingDriver::new(&db);
    // The native baseline writes as the component does under last-write-wins (the benchmark's setting).
    let store = SessionStore::builder(component_driver.clone())
        .configure(|c| c.concurrency = wasm_sessions::Concurrency::LastWriteWins)
        .build()
        .await
        .unwrap();
    let native_driver = RecordingDriver::new(&db);
    let native = NativeStore::new(Arc::new(native_driver.clone()));
    component_driver.take();

    // create = new session + save; with and without a user.
    for user in [None, Some(3)] {
        let mut from_component = store.new_session(600).await.unwrap();
        let mut from_native = NativeStore::new_session(600).unwrap();
        for s in [&mut from_component, &mut from_native] {
            s.set("a", "1");
            s.user_id = user;
        }
        store.save(&mut from_component).await.unwrap();
        native.save(&mut from_native).await.unwrap();
        assert_eq!(component_driver.take(), native_driver.take());

        // save of an existing session, then load.
        from_component.set("a", "2");
        from_native.set("a", "2");
        store.save(&mut from_component).await.unwrap();
        native.save(&mut from_native).await.unwrap();
        assert_eq!(component_driver.take(), native_driver.take());

        let loaded_by_component = store.load(&from_native.id).await.unwrap();
        let loaded_natively = native.load(&from_native.id).await.unwrap();
        assert_eq!(component_driver.take(), native_driver.take());
        assert_eq!(loaded_by_component, loaded_natively);
        assert_eq!(
            loaded_natively.expires_at, from_native.expires_at,
            "timestamps survive the round trip"
        );
    }

    // A natively created session loads through the component and the other way round.
    let mut s = NativeStore::new_session(1).unwrap();
    native.save(&mut s).await.unwrap();
    assert!(store.load(&s.id).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        native.load(&s.id).await,
        Err(wasm_sessions::StoreError::Expired)
    ));
    assert!(matches!(
        store.load(&s.id).await,
        Err(wasm_sessions::StoreError::Expired)
    ));
}
