//! The boundary, proven with a hostile component (`tests/misbehaving-guest`) through the real host and
//! real PostgreSQL: one test per attack. Each is refused or contained with a typed error, and afterwards
//! the real component, on the same connection pool (one connection, so any state an attack left on it
//! would be met), passes a save/load round trip and the table and its rows are intact.
//!
//! The layers are tested apart:
//! - **pinning**: the component names a statement by its index in the list it declared, so it cannot name
//!   one it did not declare; an index outside the list is refused unsent (the driver never sees it);
//! - **connection handling**: a declared statement that is not a single data statement (DDL, `COPY`,
//!   `SET`, `BEGIN`) is refused unsent, so nothing can change a pooled connection's state; a statement
//!   still running at the call's deadline is cancelled and its connection taken out of the pool;
//! - **the role**: a declared data statement that reaches past the sessions table (`pg_authid`, the
//!   migrations table) is refused by PostgreSQL itself; and the role alone, asked directly, refuses the
//!   DDL, `COPY ... TO PROGRAM` and temporary tables the connection handling stops earlier;
//! - **the sandbox**: an endless loop and a hoard of memory are stopped by the deadline and the memory
//!   limit; a panic is a trap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasm_sessions::{
    PostgresDriver, PostgresOptions, QueryFuture, SessionStore, SqlDriver, SqlError, SqlValue,
    StoreError,
};
use wasm_sessions_tests::TestDb;

const MISBEHAVING: &[u8] = include_bytes!(env!("MISBEHAVING_GUEST_COMPONENT"));

/// The deadline of the hostile store's calls.
const DEADLINE: Duration = Duration::from_secs(2);

/// One pooled connection shared by the hostile and the real component, counting what reaches it.
#[derive(Clone)]
struct SharedPool {
    driver: Arc<PostgresDriver>,
    sent: Arc<AtomicUsize>,
}

impl SqlDriver for SharedPool {
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.driver.query(statement, params)
    }

    fn prepare<'a>(&'a self, statement: &'a str) -> wasm_sessions::PrepareFuture<'a> {
        self.driver.prepare(statement)
    }
}

/// A database with three saved sessions, the hostile store and the real one on one shared connection.
struct Arena {
    db: TestDb,
    pool: SharedPool,
    hostile: SessionStore,
    real: SessionStore,
    tokens: Vec<String>,
}

impl Arena {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let options = PostgresOptions {
            pool_size: 1,
            ..PostgresOptions::default()
        };
        let pool = SharedPool {
            driver: Arc::new(PostgresDriver::connect(&db.url, &options).expect("valid URL")),
            sent: Arc::default(),
        };
        let hostile = SessionStore::builder(pool.clone())
            .component(MISBEHAVING)
            .call_timeout(DEADLINE)
            .build()
            .await
            .expect("the hostile component builds: its config exports behave");
        let real = SessionStore::builder(pool.clone())
            .build()
            .await
            .expect("the real component builds");
        let mut tokens = Vec::new();
        for i in 0..3 {
            let mut session = real.new_session().await.unwrap();
            session.insert("n", i).unwrap();
            real.save(&mut session).await.unwrap();
            tokens.push(session.id().to_owned());
        }
        Self {
            db,
            pool,
            hostile,
            real,
            tokens,
        }
    }

    /// Runs the attack `name` and returns what the hostile component reported.
    async fn attack(&self, name: &str) -> StoreError {
        match self.hostile.load(name).await {
            Ok(_) => panic!("the hostile component returned a session for {name}"),
            Err(error) => error,
        }
    }

    fn sent(&self) -> usize {
        self.pool.sent.load(Ordering::SeqCst)
    }

    /// The table is intact with its rows, and the real component round-trips on the same connection.
    async fn assert_intact(&self) {
        let rows: i64 = self
            .db
            .client()
            .await
            .query_one("SELECT count(*) FROM wasm_sessions.sessions", &[])
            .await
            .expect("the table is still there")
            .get(0);
        assert!(rows >= 3, "rows were lost: {rows}");
        for (i, token) in self.tokens.iter().enumerate() {
            let loaded = self.real.load(token).await.expect("an old session loads");
            assert_eq!(loaded.get::<usize>("n").unwrap(), Some(i));
        }
        let mut session = self.real.new_session().await.unwrap();
        session.set("after", "the attack");
        self.real.save(&mut session).await.expect("a save works");
        let loaded = self.real.load(session.id()).await.expect("a load works");
        assert_eq!(loaded.get_str("after"), Some("the attack"));
    }
}

fn refused(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(SqlError::Refused(_)))
}

fn permission_denied(error: &StoreError) -> bool {
    matches!(error, StoreError::Database(SqlError::QueryFailed(m)) if m.starts_with("42501"))
}

// --- pinning: only declared statements can be named, and nothing else leaves the host ----------------

#[tokio::test]
async fn an_index_past_the_declared_list_is_refused_unsent() {
    let arena = Arena::new().await;
    let before = arena.sent();
    let error = arena.attack("undeclared:drop").await;
    assert!(
        matches!(&error, StoreError::Database(SqlError::Refused(m))
            if m == "the component did not declare statement 10: it declared 10"),
        "{error:?}"
    );
    assert_eq!(arena.sent(), before, "nothing reached the driver");
    arena.assert_intact().await;
}

#[tokio::test]
async fn ten_thousand_distinct_undeclared_indexes_are_all_refused_unsent() {
    let arena = Arena::new().await;
    let before = arena.sent();
    let error = arena.attack("undeclared:many").await;
    match &error {
        StoreError::Database(SqlError::Refused(m)) => {
            assert!(m.starts_with("10000 of 10000"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(arena.sent(), before, "nothing reached the driver");
    // Nothing was prepared on the connection either: its statement cache cannot grow.
    arena.assert_intact().await;
}

// --- connection handling: declared, but not single data statements ---------------------------------

#[tokio::test]
async fn a_declared_drop_table_is_refused_unsent() {
    let arena = Arena::new().await;
    let before = arena.sent();
    let error = arena.attack("declared:0").await;
    assert!(refused(&error), "{error:?}");
    assert_eq!(arena.sent(), before);
    arena.assert_intact().await;
}

#[tokio::test]
async fn a_declared_copy_to_program_is_refused_unsent_and_runs_nothing() {
    let arena = Arena::new().await;
    let marker = std::path::Path::new("/tmp/wasm-sessions-pwned");
    let _ = std::fs::remove_file(marker);
    let error = arena.attack("declared:3").await;
    assert!(refused(&error), "{error:?}");
    assert!(!marker.exists(), "the program ran");
    arena.assert_intact().await;
}

#[tokio::test]
async fn a_declared_temp_table_shadowing_sessions_is_refused_unsent() {
    let arena = Arena::new().await;
    let error = arena.attack("declared:4").await;
    assert!(refused(&error), "{error:?}");
    arena.assert_intact().await;
}

#[tokio::test]
async fn a_declared_set_search_path_is_refused_and_leaves_the_connection_clean() {
    let arena = Arena::new().await;
    let error = arena.attack("declared:5").await;
    assert!(refused(&error), "{error:?}");
    arena.assert_intact().await;
}

#[tokio::test]
async fn a_declared_begin_without_commit_is_refused_and_later_writes_are_committed() {
    let arena = Arena::new().await;
    let error = arena.attack("declared:6").await;
    assert!(refused(&error), "{error:?}");
    arena.assert_intact().await;
    // A write through the same single connection is visible to another connection: not stuck in an
    // open transaction.
    let mut session = arena.real.new_session().await.unwrap();
    session.set("visible", "yes");
    arena.real.save(&mut session).await.unwrap();
    let visible: i64 = arena
        .db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM wasm_sessions.sessions WHERE data->>'visible' = 'yes'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(visible, 1);
}

#[tokio::test]
async fn a_session_setting_changed_through_a_select_cannot_redirect_the_schema_qualified_statements()
 {
    let arena = Arena::new().await;
    let error = arena.attack("declared:8").await;
    assert!(
        matches!(&error, StoreError::UnexpectedResult(m) if m.starts_with("ran:")),
        "{error:?}"
    );
    // The connection now has search_path = nowhere: every statement of the component names its
    // schema, so the round trip still works on it.
    arena.assert_intact().await;
}

// --- the role: data statements that reach past the sessions table -----------------------------------

#[tokio::test]
async fn reading_pg_authid_is_denied_by_the_role() {
    let arena = Arena::new().await;
    let error = arena.attack("declared:1").await;
    assert!(permission_denied(&error), "{error:?}");
    arena.assert_intact().await;
}

#[tokio::test]
async fn reading_another_table_is_denied_by_the_role() {
    let arena = Arena::new().await;
    let error = arena.attack("declared:2").await;
    assert!(permission_denied(&error), "{error:?}");
    arena.assert_intact().await;
}

#[tokio::test]
async fn the_role_alone_refuses_ddl_copy_to_program_temp_tables_and_the_catalogs() {
    let db = TestDb::new().await;
    let runtime = db.runtime_client().await;
    for statement in [
        "DROP TABLE wasm_sessions.sessions",
        "TRUNCATE wasm_sessions.sessions",
        "ALTER TABLE wasm_sessions.sessions ADD COLUMN x int",
        "CREATE TABLE wasm_sessions.evil (id int)",
        "CREATE TABLE public.evil (id int)",
        "CREATE TEMP TABLE sessions (id int)",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/wasm-sessions-pwned'",
        "SELECT rolname, rolpassword FROM pg_authid",
        "SELECT * FROM public.refinery_schema_history",
        "SELECT pg_read_file('/etc/passwd')",
    ] {
        let error = runtime.batch_execute(statement).await.expect_err(statement);
        let code = error.code().map(|c| c.code().to_owned());
        assert_eq!(code.as_deref(), Some("42501"), "{statement}: {error}");
    }
    // What it may do: rows of the sessions table.
    runtime
        .batch_execute("SELECT count(*) FROM wasm_sessions.sessions")
        .await
        .unwrap();
}

// --- deadlines and the sandbox -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sleep_past_the_deadline_fails_the_call_cancels_the_statement_and_frees_the_connection()
{
    let arena = Arena::new().await;
    let error = arena.attack("sleep-in-host").await;
    assert!(
        matches!(error, StoreError::DeadlineExceeded(d) if d == DEADLINE),
        "{error:?}"
    );
    // The single pooled connection was not handed on with the statement still running.
    arena.assert_intact().await;
    // The server was told to cancel it: no backend is still sleeping (polled: the cancel request is
    // asynchronous).
    let owner = arena.db.client().await;
    let mut sleeping = i64::MAX;
    for _ in 0..100 {
        sleeping = owner
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3600)' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if sleeping == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sleeping, 0, "the abandoned statement is still running");
    assert!(arena.hostile.instance_stats().discarded >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_by_the_deadline_and_the_store_keeps_serving() {
    let arena = Arena::new().await;
    let error = arena.attack("loop").await;
    assert!(
        matches!(error, StoreError::DeadlineExceeded(_)),
        "{error:?}"
    );
    assert_eq!(arena.hostile.instance_stats().discarded, 1);
    // The same hostile store keeps serving.
    assert!(arena.hostile.removal_cookie_header().await.is_ok());
    arena.assert_intact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_calls_are_served_while_a_hostile_call_spins() {
    let arena = Arena::new().await;
    let spinning = tokio::spawn({
        let hostile = arena.hostile.clone();
        async move { hostile.load("loop").await }
    });
    let mut served = 0;
    while !spinning.is_finished() {
        let mut session = arena.real.new_session().await.unwrap();
        arena.real.save(&mut session).await.unwrap();
        arena.real.load(session.id()).await.unwrap();
        served += 1;
    }
    assert!(matches!(
        spinning.await.unwrap(),
        Err(StoreError::DeadlineExceeded(_))
    ));
    assert!(served > 0, "no call was served while the hostile one spun");
}

#[tokio::test]
async fn a_guest_that_allocates_without_bound_is_stopped_by_its_memory_limit() {
    let arena = Arena::new().await;
    let error = arena.attack("hoard").await;
    assert!(
        matches!(error, StoreError::MemoryLimit { desired, limit } if desired > limit && limit == wasm_sessions::GUEST_MEMORY_LIMIT),
        "{error:?}"
    );
    arena.assert_intact().await;
}

#[tokio::test]
async fn a_guest_that_panics_is_an_error_not_a_crash() {
    let arena = Arena::new().await;
    let error = arena.attack("panic").await;
    assert!(matches!(error, StoreError::Guest(_)), "{error:?}");
    arena.assert_intact().await;
}

#[tokio::test]
async fn the_host_records_exactly_the_declared_statements() {
    let arena = Arena::new().await;
    assert_eq!(arena.hostile.statements().len(), 10);
    assert!(
        arena
            .hostile
            .statements()
            .iter()
            .any(|s| s == "SELECT 1 AS one")
    );
    // The real component's statements all name the one table, and all fit the schema and the role.
    assert!(
        arena
            .real
            .statements()
            .iter()
            .all(|s| s.contains("wasm_sessions.sessions"))
    );
    arena.real.check_statements().await.unwrap();
}
