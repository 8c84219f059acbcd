//! Shared by the behaviour suites (`mod common;` in each): a store on a fresh database with a manual clock
//! and a statement counter, a few row checks, and [`in_both_modes!`], which runs a scenario once with a
//! fresh instance per call and once with warm instances reused.
#![allow(dead_code, unused_macros, unused_imports)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use wasm_sessions::{Config, Isolation, ManualClock, SessionStore, SessionStoreBuilder, SqlDriver};
use wasm_sessions_tests::{CountingDriver, TestDb};

/// A fresh instance for every call.
pub const FRESH: Isolation = Isolation::FreshInstancePerCall;
/// Warm instances reused (a small pool, so that reuse happens).
pub const REUSE: Isolation = Isolation::ReuseInstances { max_idle: 4 };

/// Runs each `async fn name(isolation: Isolation)` scenario as two tests, `name::fresh` and
/// `name::reuse`.
macro_rules! in_both_modes {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn fresh() {
                    super::$name($crate::common::FRESH).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn reuse() {
                    super::$name($crate::common::REUSE).await;
                }
            }
        )+
    };
}
pub(crate) use in_both_modes;

/// A store builder on `driver` that keeps the compiled component in the target directory's scratch
/// space (wasmtime's compilation cache): each test's store loads it instead of compiling it again.
pub fn builder(driver: impl SqlDriver) -> SessionStoreBuilder {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-sessions-compiled");
    SessionStore::builder(driver).compilation_cache(cache)
}

/// A store under test: its database, the store, the clock it reads and the statements it sent.
pub struct Fixture {
    pub db: TestDb,
    pub store: SessionStore,
    pub clock: ManualClock,
    pub driver: CountingDriver,
}

impl Fixture {
    /// The default configuration, in `isolation`.
    pub async fn new(isolation: Isolation) -> Self {
        Self::with(isolation, |_| {}).await
    }

    /// The default configuration edited by `edit`, in `isolation`.
    pub async fn with(
        isolation: Isolation,
        edit: impl FnOnce(&mut Config) + Send + 'static,
    ) -> Self {
        let db = TestDb::new().await;
        let driver = CountingDriver::new(&db);
        let clock = ManualClock::starting_now();
        let store = builder(driver.clone())
            .clock(clock.clone())
            .isolation(isolation)
            .configure(edit)
            .build()
            .await
            .expect("store builds");
        driver.take();
        Self {
            db,
            store,
            clock,
            driver,
        }
    }

    /// Another store on the same database and clock (and statement counter), configured by `edit`.
    pub async fn store_with(
        &self,
        edit: impl FnOnce(&mut Config) + Send + 'static,
    ) -> SessionStore {
        builder(self.driver.clone())
            .clock(self.clock.clone())
            .configure(edit)
            .build()
            .await
            .expect("store builds")
    }

    /// The statements sent since the last call.
    pub fn statements(&self) -> usize {
        self.driver.take()
    }

    /// Moves the store's clock forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// The store's time.
    pub fn now(&self) -> SystemTime {
        self.store.now()
    }

    /// Rows in the sessions table.
    pub async fn rows(&self) -> i64 {
        row_count(&self.db).await
    }

    /// One column of the row of `token` (as the owner), e.g. `jsonb_typeof(data->'n')`.
    pub async fn column<T>(&self, token: &str, expression: &str) -> T
    where
        T: for<'a> tokio_postgres::types::FromSql<'a>,
    {
        self.db
            .client()
            .await
            .query_one(
                &format!(
                    "SELECT {expression} FROM wasm_sessions.sessions \
                     WHERE id_hash = sha256(convert_to($1, 'UTF8'))"
                ),
                &[&token],
            )
            .await
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
            .get(0)
    }
}

/// Rows in the sessions table of `db`.
pub async fn row_count(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM wasm_sessions.sessions", &[])
        .await
        .expect("count")
        .get(0)
}

/// Whether `s` is 64 lower-case hex characters (a token or a handle).
pub fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `seconds` as a `Duration`.
pub const fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}
