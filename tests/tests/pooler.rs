//! `StatementMode::Unnamed` and PgBouncer in transaction pooling mode (`wasm_sessions_tests::pgbouncer`):
//! the unnamed mode returns what the prepared mode returns (with the documented differences), and the
//! store works through PgBouncer with fewer server connections than clients, where named prepared
//! statements break. (The whole behaviour suite also runs through PgBouncer: `conformance.rs`,
//! `through_pgbouncer`.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasm_sessions::{
    PostgresDriver, PostgresOptions, RowSet, SessionStore, SqlDriver as _, SqlError, SqlValue,
    StatementMode, StoreError,
};
use wasm_sessions_tests::pgbouncer::PgBouncer;
use wasm_sessions_tests::{TestDb, runtime_role, server_url};

fn driver(url: &str, mode: StatementMode) -> PostgresDriver {
    let options = PostgresOptions {
        statement_mode: mode,
        ..PostgresOptions::default()
    };
    PostgresDriver::connect(url, &options).expect("a valid URL")
}

/// The same class of outcome: equal rows (column names compared when both have them), or the same error
/// variant (and SQLSTATE for constraints).
fn same(a: &Result<RowSet, SqlError>, b: &Result<RowSet, SqlError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => {
            a.rows == b.rows
                && a.rows_affected == b.rows_affected
                && (a.rows.is_empty() || a.columns == b.columns)
        }
        (
            Err(SqlError::ConstraintViolation { sqlstate: x, .. }),
            Err(SqlError::ConstraintViolation { sqlstate: y, .. }),
        ) => x == y,
        (Err(a), Err(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unnamed_statements_return_what_prepared_ones_return() {
    // A database per mode, so that the same statements leave both in the same state.
    let (db_a, db_b) = (TestDb::new().await, TestDb::new().await);
    let prepared = driver(&db_a.url, StatementMode::Prepared);
    let unnamed = driver(&db_b.url, StatementMode::Unnamed);
    let insert = "INSERT INTO wasm_sessions.sessions (id_hash, data, expires_at) \
                  SELECT sha256(($1::text || g::text)::bytea), $2::jsonb, $3::timestamptz \
                  FROM generate_series(1, 3) g";
    let one = |key: &str| {
        vec![
            SqlValue::Text(key.into()),
            SqlValue::Json("{}".into()),
            SqlValue::Timestamp(1),
        ]
    };
    let cases: Vec<(&str, Vec<SqlValue>)> = vec![
        (
            "SELECT $1::boolean AS b, $2::bigint AS i8, $3::int AS i4, $4::smallint AS i2, \
             $5::float8 AS f8, $6::real AS f4, $7::text AS t, $8::varchar AS v, $9::jsonb AS jb, \
             $10::timestamptz AS ts, $11::bytea AS by, $12::text[] AS ta, $13::varchar[] AS va, \
             $14::text AS n, $15::text[] AS empty, $16::bigint AS nb, $17::jsonb AS nj",
            vec![
                SqlValue::Boolean(true),
                SqlValue::Int64(-9_000_000_000),
                SqlValue::Int64(7),
                SqlValue::Int64(-3),
                SqlValue::Float64(1.5),
                SqlValue::Float64(0.25),
                SqlValue::Text("héllo".into()),
                SqlValue::Text("v".into()),
                SqlValue::Json(r#"{"a":"b","n":[1,2.5,null]}"#.into()),
                SqlValue::Timestamp(1_893_456_000_123_456),
                SqlValue::Bytes(vec![0, 1, 255]),
                SqlValue::TextArray(vec!["a".into(), "b,\"c\"".into(), String::new()]),
                SqlValue::TextArray(vec!["x".into()]),
                SqlValue::Null,
                SqlValue::TextArray(Vec::new()),
                SqlValue::Null,
                SqlValue::Null,
            ],
        ),
        // A NULL is typed by the statement's cast, wherever it is used.
        (
            "SELECT $1::timestamptz IS NULL AS a, COALESCE($1::timestamptz, $2::timestamptz) AS b",
            vec![SqlValue::Null, SqlValue::Timestamp(5)],
        ),
        ("SELECT NULL::bigint AS n, NULL::jsonb AS j", vec![]),
        (insert, one("a")),
        (
            "SELECT count(*) AS n FROM wasm_sessions.sessions WHERE data ?| $1::text[]",
            vec![SqlValue::TextArray(vec!["k".into()])],
        ),
        (
            "UPDATE wasm_sessions.sessions SET data = $1::jsonb RETURNING data",
            vec![SqlValue::Json(r#"{"k": 1}"#.into())],
        ),
        (
            "SELECT data FROM wasm_sessions.sessions WHERE id_hash = $1::bytea",
            vec![SqlValue::Bytes(vec![0; 32])],
        ),
        (
            "DELETE FROM wasm_sessions.sessions WHERE expires_at <= $1::timestamptz",
            vec![SqlValue::Timestamp(1)],
        ),
        // Bad parameters: out of range, not JSON, no cast between the kinds, too few.
        ("SELECT $1::int", vec![SqlValue::Int64(i64::MAX)]),
        ("SELECT $1::smallint", vec![SqlValue::Int64(40_000)]),
        ("SELECT $1::jsonb", vec![SqlValue::Json("{not json".into())]),
        ("SELECT $1::bytea", vec![SqlValue::Boolean(true)]),
        ("SELECT $1::timestamptz", vec![SqlValue::Int64(1)]),
        ("SELECT $1::int", vec![]),
        ("SELECT $1::int, $2::int", vec![SqlValue::Int64(1)]),
        ("SELECT $1 AS untyped", vec![SqlValue::Null]),
        // Constraints, with their SQLSTATE.
        (insert, one("b")),
        (insert, one("b")),
        (
            insert,
            vec![
                SqlValue::Text("c".into()),
                SqlValue::Json("[]".into()),
                SqlValue::Timestamp(1),
            ],
        ),
        (
            insert,
            vec![
                SqlValue::Text("d".into()),
                SqlValue::Json("{}".into()),
                SqlValue::Null,
            ],
        ),
        // Query failures: syntax, a missing table, no privilege, a type the interface cannot carry.
        ("SELEC 1", vec![]),
        ("SELECT * FROM no_such_table", vec![]),
        ("SELECT rolname FROM pg_authid", vec![]),
        ("SELECT '1 day'::interval AS i", vec![]),
        ("SELECT 1 / $1::int AS x", vec![SqlValue::Int64(0)]),
    ];
    for (statement, params) in &cases {
        let a = prepared.query(statement, params).await;
        let b = unnamed.query(statement, params).await;
        assert!(
            same(&a, &b),
            "{statement}\n  prepared: {a:?}\n  unnamed:  {b:?}"
        );
    }

    // The documented differences: a value of another kind goes through the statement's cast instead of
    // being refused unsent; a surplus parameter is not refused; a result without rows has no columns.
    let text_as_bigint = [SqlValue::Text("1".into())];
    assert!(matches!(
        prepared
            .query("SELECT $1::bigint AS n", &text_as_bigint)
            .await,
        Err(SqlError::BadParameter(_))
    ));
    assert_eq!(
        unnamed
            .query("SELECT $1::bigint AS n", &text_as_bigint)
            .await
            .unwrap()
            .rows,
        vec![vec![SqlValue::Int64(1)]]
    );
    let surplus = [SqlValue::Int64(1)];
    assert!(matches!(
        prepared.query("SELECT 1::bigint AS n", &surplus).await,
        Err(SqlError::BadParameter(_))
    ));
    assert!(
        unnamed
            .query("SELECT 1::bigint AS n", &surplus)
            .await
            .is_ok()
    );
    let none = unnamed
        .query("SELECT 1::bigint AS n WHERE false", &[])
        .await
        .unwrap();
    assert!(none.rows.is_empty() && none.columns.is_empty(), "{none:?}");

    // Preparing still reports a statement that does not fit the schema.
    unnamed
        .prepare("SELECT id_hash FROM wasm_sessions.sessions")
        .await
        .unwrap();
    let err = unnamed
        .prepare("SELECT nope FROM wasm_sessions.sessions")
        .await
        .unwrap_err();
    assert!(
        matches!(err, SqlError::QueryFailed(ref m) if m.starts_with("42703")),
        "{err:?}"
    );
}

/// A PgBouncer with 2 server connections per database and user, in front of the test server.
fn small_pgbouncer() -> PgBouncer {
    let server = server_url();
    let config: tokio_postgres::Config = server.parse().expect("a valid server URL");
    let owner = config.get_user().unwrap_or("postgres").to_owned();
    let owner_password = config
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let role = runtime_role();
    PgBouncer::start(
        &server,
        &[
            (&owner, owner_password.as_deref()),
            (role.name(), role.password()),
        ],
        2,
    )
}

/// `workers` tasks, each creating, updating and loading its own sessions `rounds` times through
/// `store`; returns the first error, if any, after every task ended.
async fn exercise(
    store: &SessionStore,
    workers: usize,
    rounds: usize,
) -> Result<usize, StoreError> {
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut checked = 0;
                for round in 0..rounds {
                    let mut session = store.new_session().await?;
                    session.insert("worker", w)?;
                    session.insert("round", round)?;
                    store.save(&mut session).await?;
                    session.insert("round", round + 1)?;
                    store.save(&mut session).await?;
                    let loaded = store.load(session.id()).await?;
                    let expected: BTreeMap<String, Value> = session.data().clone();
                    assert_eq!(loaded.data(), &expected);
                    checked += 1;
                }
                Ok::<usize, StoreError>(checked)
            })
        })
        .collect();
    let mut total = 0;
    let mut first_error = None;
    for task in tasks {
        match task.await.expect("a worker") {
            Ok(n) => total += n,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(total), Err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_through_pgbouncer_in_transaction_mode_with_unnamed_statements() {
    let db = TestDb::new().await;
    let bouncer = small_pgbouncer();
    let url = bouncer.url_for(&db.url);
    // Two stores, as two hosts behind one pooler, checking their statements at the same time.
    let mut stores = Vec::new();
    for _ in 0..2 {
        stores.push(
            SessionStore::builder(driver(&url, StatementMode::Unnamed))
                .build()
                .await
                .expect("the store builds"),
        );
    }
    for round in 0..2 {
        let checks: Vec<_> = stores
            .iter()
            .map(|store| {
                let store = store.clone();
                tokio::spawn(async move { store.check_statements().await })
            })
            .collect();
        for check in checks {
            check.await.expect("a check").unwrap_or_else(|e| {
                panic!(
                    "check {round} through PgBouncer: {e:?}\n{}",
                    bouncer.log(20)
                )
            });
        }
    }
    // 16 clients per store over 2 server connections: every statement may land on another one.
    let started = Instant::now();
    let runs: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = store.clone();
            tokio::spawn(async move { exercise(&store, 16, 10).await })
        })
        .collect();
    for run in runs {
        let checked = run
            .await
            .expect("a run")
            .unwrap_or_else(|e| panic!("through PgBouncer: {e:?}\n{}", bouncer.log(20)));
        assert_eq!(checked, 160);
    }
    let rows: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM wasm_sessions.sessions", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 320);
    eprintln!(
        "960 store calls through PgBouncer in {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_prepared_statements_break_behind_pgbouncer_in_transaction_mode() {
    let db = TestDb::new().await;
    let bouncer = small_pgbouncer();
    let store = SessionStore::builder(driver(&bouncer.url_for(&db.url), StatementMode::Prepared))
        .build()
        .await
        .expect("the store builds");
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        match exercise(&store, 16, 5).await {
            Err(error) => break error,
            Ok(_) => assert!(
                Instant::now() < deadline,
                "named prepared statements kept working behind PgBouncer in transaction mode"
            ),
        }
    };
    // A statement prepared on one server connection and executed on another: 26000, "prepared
    // statement \"s…\" does not exist" (or 42P05 when a name is taken on the other connection).
    assert!(
        matches!(&error, StoreError::Database(SqlError::QueryFailed(m)) if m.starts_with("26000") || m.starts_with("42P05")),
        "{error:?}"
    );
}
