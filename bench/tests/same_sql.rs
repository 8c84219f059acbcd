//! The native baseline must send exactly what the guest sends: this records the statements the real
//! component passes to its driver and fails when they drift from `wasm_sessions_bench::sql`, when a
//! statement there is not one the component declares, or when the native baseline sends other statements
//! or other kinds of parameters than the component for the same operation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasm_sessions::{
    Concurrency, PrepareFuture, QueryFuture, SessionStore, SqlDriver, SqlValue, StoreError,
};
use wasm_sessions_bench::native::NativeStore;
use wasm_sessions_bench::sql;
use wasm_sessions_tests::TestDb;

/// The real driver, recording each statement and the kinds of its parameters (never their values).
#[derive(Clone)]
struct RecordingDriver {
    inner: wasm_sessions::PostgresDriver,
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

    fn prepare<'a>(&'a self, statement: &'a str) -> PrepareFuture<'a> {
        self.inner.prepare(statement)
    }
}

/// The component as the benchmark configures it: last-write-wins (the semantics tower-sessions has).
async fn bench_store(driver: RecordingDriver) -> SessionStore {
    SessionStore::builder(driver)
        .configure(|c| c.concurrency = Concurrency::LastWriteWins)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_bench_statement_is_declared_by_the_component() {
    let db = TestDb::new().await;
    let store = bench_store(RecordingDriver::new(&db)).await;
    for statement in sql::USED {
        assert!(
            store.statements().iter().any(|s| s == statement),
            "the component does not declare the bench's statement {statement:?}"
        );
    }
}

#[tokio::test]
async fn the_component_sends_the_bench_statements() {
    let db = TestDb::new().await;
    let driver = RecordingDriver::new(&db);
    let store = bench_store(driver.clone()).await;
    driver.take();

    let mut session = store.new_session().await.unwrap();
    assert!(
        driver.take_statements().is_empty(),
        "new-session sends no SQL"
    );
    session.set("k", "v");
    store.save(&mut session).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::INSERT]);

    session.set("k", "w");
    store.save(&mut session).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::UPDATE_KEYS_UNCONDITIONAL]);

    session.set_user(7);
    store.save(&mut session).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::UPDATE]);

    store.load(session.id()).await.unwrap();
    assert_eq!(driver.take_statements(), [sql::LOAD]);
}

#[tokio::test]
async fn the_native_baseline_sends_what_the_component_sends() {
    let db = TestDb::new().await;
    let component_driver = RecordingDriver::new(&db);
    let store = bench_store(component_driver.clone()).await;
    let native_driver = RecordingDriver::new(&db);
    let native = NativeStore::new(Arc::new(native_driver.clone()), store.config());
    component_driver.take();

    // create = new session + save; with and without a user.
    for user in [None, Some(3)] {
        let mut from_component = store.new_session().await.unwrap();
        let mut from_native = native.new_session().unwrap();
        from_component.set("a", "1");
        from_native.set("a", "1");
        if let Some(user) = user {
            from_component.set_user(user);
            from_native.set_user(Some(user));
        }
        store.save(&mut from_component).await.unwrap();
        native.save(&mut from_native).await.unwrap();
        assert_eq!(component_driver.take(), native_driver.take());

        // save of an existing session (the delta), then load.
        from_component.set("a", "2");
        from_native.set("a", "2");
        store.save(&mut from_component).await.unwrap();
        native.save(&mut from_native).await.unwrap();
        assert_eq!(component_driver.take(), native_driver.take());
        assert_eq!(from_native.version, from_component.version());

        let by_component = store.load(&from_native.id).await.unwrap();
        let natively = native.load(&from_native.id).await.unwrap();
        assert_eq!(component_driver.take(), native_driver.take());
        assert_eq!(by_component.data(), &natively.data);
        assert_eq!(by_component.handle(), natively.handle);
        assert_eq!(by_component.version(), natively.version);
        assert_eq!(by_component.user_id(), natively.user_id);
        assert_eq!(by_component.user_id(), user);
        let micros = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
        };
        assert_eq!(micros(by_component.expires_at()), natively.expires_at);
        assert_eq!(micros(by_component.created_at()), natively.created_at);
        assert_eq!(micros(by_component.updated_at()), natively.updated_at);

        // And the other way round: what the component wrote, the native baseline reads alike.
        let natively = native.load(from_component.id()).await.unwrap();
        assert_eq!(from_component.data(), &natively.data);
        assert_eq!(from_component.version(), natively.version);
        assert_eq!(native_driver.take_statements(), [sql::LOAD]);
    }
}

#[tokio::test]
async fn native_expiry_matches_the_component() {
    let db = TestDb::new().await;
    let store = SessionStore::builder(db.driver())
        .configure(|c| {
            c.concurrency = Concurrency::LastWriteWins;
            c.max_age = 1;
        })
        .build()
        .await
        .unwrap();
    let native = NativeStore::new(Arc::new(db.driver()), store.config());
    let mut s = native.new_session().unwrap();
    native.save(&mut s).await.unwrap();
    assert!(store.load(&s.id).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(native.load(&s.id).await, Err(StoreError::Expired)));
    assert!(matches!(store.load(&s.id).await, Err(StoreError::Expired)));
}
