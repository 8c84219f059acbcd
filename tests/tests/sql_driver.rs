//! The production `PostgresDriver` behind the guest's `sql-query`, as the least-privilege runtime role:
//! every value type, the error classes, and `prepare`.

use wasm_sessions::{PostgresDriver, PostgresOptions, SqlDriver, SqlError, SqlValue};
use wasm_sessions_tests::TestDb;

#[tokio::test]
async fn every_value_type_round_trips() {
    let db = TestDb::new().await;
    let driver = db.driver();
    let params = [
        SqlValue::Boolean(true),
        SqlValue::Int64(-9_000_000_000),
        SqlValue::Int64(7),
        SqlValue::Float64(1.5),
        SqlValue::Text("héllo".into()),
        SqlValue::Json(r#"{"a":"b"}"#.into()),
        SqlValue::Json("[1,2]".into()),
        SqlValue::Timestamp(1_700_000_000_123_456),
        SqlValue::Bytes(vec![0, 1, 255]),
        SqlValue::TextArray(vec!["a".into(), "b c".into(), String::new()]),
        SqlValue::Null,
    ];
    let rows = driver
        .query(
            "SELECT $1::boolean AS b, $2::bigint AS i8, $3::int AS i4, $4::float8 AS f, $5::text AS t, \
             $6::jsonb AS jb, $7::json AS j, $8::timestamptz AS ts, $9::bytea AS by, \
             $10::text[] AS ta, $11::text AS n",
            &params,
        )
        .await
        .unwrap();
    assert_eq!(
        rows.columns,
        ["b", "i8", "i4", "f", "t", "jb", "j", "ts", "by", "ta", "n"]
    );
    assert_eq!(rows.rows_affected, 1);
    let mut expected = params.to_vec();
    expected[5] = SqlValue::Json(r#"{"a": "b"}"#.into()); // jsonb normalizes spacing
    assert_eq!(rows.rows[0], expected);
}

#[tokio::test]
async fn statements_without_rows_report_the_affected_count() {
    let db = TestDb::new().await;
    let driver = db.driver();
    let inserted = driver
        .query(
            "INSERT INTO wasm_sessions.sessions (id_hash, expires_at) \
             SELECT sha256(g::text::bytea), $1 FROM generate_series(1, 3) g",
            &[SqlValue::Timestamp(4_000_000_000_000_000)],
        )
        .await
        .unwrap();
    assert_eq!(inserted.rows_affected, 3);
    assert!(inserted.rows.is_empty());
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_bad_parameter() {
    let db = TestDb::new().await;
    let driver = db.driver();
    for (statement, value) in [
        ("SELECT $1::bigint", SqlValue::Text("1".into())),
        ("SELECT $1::int", SqlValue::Int64(i64::MAX)),
        ("SELECT $1::jsonb", SqlValue::Json("{not json".into())),
        ("SELECT $1::bytea", SqlValue::Boolean(true)),
    ] {
        let err = driver.query(statement, &[value]).await.unwrap_err();
        assert!(
            matches!(err, SqlError::BadParameter(_)),
            "{statement}: {err:?}"
        );
    }
    let err = driver.query("SELECT $1::int", &[]).await.unwrap_err();
    assert!(matches!(err, SqlError::BadParameter(_)), "{err:?}");
}

#[tokio::test]
async fn a_unique_violation_carries_its_sqlstate() {
    let db = TestDb::new().await;
    let driver = db.driver();
    let insert = "INSERT INTO wasm_sessions.sessions (id_hash, expires_at) VALUES (sha256('x'::bytea), now())";
    driver.query(insert, &[]).await.unwrap();
    let err = driver.query(insert, &[]).await.unwrap_err();
    assert!(
        matches!(&err, SqlError::ConstraintViolation { sqlstate, .. } if sqlstate == "23505"),
        "{err:?}"
    );
}

/// The schema's own rules hold whatever a client with the runtime role's rights writes: an id hash of
/// 32 bytes, data that is a JSON object, one of the three expiry modes, an idle deadline within the
/// absolute one (or no absolute deadline), on insert and on update alike (V4 moved the single-column
/// rules into domains; each case breaks one rule of a row that is otherwise valid).
#[tokio::test]
async fn the_schema_refuses_rows_that_break_its_rules() {
    let db = TestDb::new().await;
    let driver = db.driver();
    let insert = |id: &str, data: &str, mode: &str, expires: &str, absolute: &str| {
        format!(
            "INSERT INTO wasm_sessions.sessions (id_hash, data, expiry_mode, expires_at, \
             absolute_expires_at) VALUES ({id}, {data}, {mode}, {expires}, {absolute})"
        )
    };
    let id = "sha256('a'::bytea)";
    let (soon, later) = ("now()", "now() + interval '1 hour'");
    let refused = [
        insert("'\\x00'::bytea", "'{}'", "NULL", soon, later),
        insert(id, "'[]'", "NULL", soon, later),
        insert(id, "'\"text\"'", "NULL", soon, later),
        insert(id, "'{}'", "'never'", soon, later),
        insert(id, "'{}'", "NULL", later, soon),
        "UPDATE wasm_sessions.sessions SET id_hash = '\\x01'::bytea".to_owned(),
        "UPDATE wasm_sessions.sessions SET data = '[1]'".to_owned(),
        "UPDATE wasm_sessions.sessions SET data = data - 'k' || '1'::jsonb".to_owned(),
        "UPDATE wasm_sessions.sessions SET expiry_mode = 'At'".to_owned(),
        "UPDATE wasm_sessions.sessions SET expires_at = absolute_expires_at + interval '1 second' \
         WHERE absolute_expires_at IS NOT NULL"
            .to_owned(),
    ];
    // The valid rows these break: with and without an absolute deadline, with each expiry mode.
    for (n, mode) in ["'on-inactivity'", "'at'", "'on-session-end'", "NULL"]
        .into_iter()
        .enumerate()
    {
        let id = format!("sha256('{n}'::bytea)");
        let absolute = if n == 3 { "NULL" } else { later };
        let rows = driver
            .query(&insert(&id, "'{\"k\": 1}'", mode, soon, absolute), &[])
            .await
            .unwrap();
        assert_eq!(rows.rows_affected, 1);
    }
    for statement in refused {
        let err = driver.query(&statement, &[]).await.unwrap_err();
        assert!(
            matches!(&err, SqlError::ConstraintViolation { sqlstate, .. } if sqlstate == "23514"),
            "{statement}: {err:?}"
        );
    }
    let rows = driver
        .query(
            "SELECT count(*) AS n FROM wasm_sessions.sessions WHERE data = '{\"k\": 1}'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.rows[0], [SqlValue::Int64(4)]);
}

#[tokio::test]
async fn invalid_sql_is_a_query_failure() {
    let db = TestDb::new().await;
    let err = db.driver().query("SELEC 1", &[]).await.unwrap_err();
    assert!(matches!(err, SqlError::QueryFailed(_)), "{err:?}");
    let err = db
        .driver()
        .query("SELECT '1 day'::interval", &[])
        .await
        .unwrap_err();
    assert!(matches!(err, SqlError::QueryFailed(m) if m.contains("interval")));
}

#[tokio::test]
async fn prepare_checks_a_statement_against_the_schema_without_running_it() {
    let db = TestDb::new().await;
    let driver = db.driver();
    driver
        .prepare("DELETE FROM wasm_sessions.sessions WHERE id_hash = $1::bytea")
        .await
        .unwrap();
    for bad in [
        "SELECT nope FROM wasm_sessions.sessions",
        "SELECT 1 FROM sessions",
        "SELEC 1",
    ] {
        let err = driver.prepare(bad).await.unwrap_err();
        assert!(matches!(err, SqlError::QueryFailed(_)), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn the_runtime_role_reaches_only_the_sessions_table() {
    let db = TestDb::new().await;
    let driver = db.driver();
    // Unqualified names do not resolve (its search path is `pg_catalog` only), and it has no rights
    // on the migrations' history or to change the schema.
    for statement in [
        "SELECT count(*) FROM sessions",
        "SELECT count(*) FROM public.refinery_schema_history",
        "CREATE TABLE wasm_sessions.other (id int)",
        "CREATE TEMPORARY TABLE scratch (id int)",
        "TRUNCATE wasm_sessions.sessions",
    ] {
        let err = driver.query(statement, &[]).await.unwrap_err();
        assert!(
            matches!(err, SqlError::QueryFailed(_)),
            "{statement}: {err:?}"
        );
    }
    let rows = driver
        .query("SELECT count(*) AS n FROM wasm_sessions.sessions", &[])
        .await
        .unwrap();
    assert_eq!(rows.rows[0], [SqlValue::Int64(0)]);
}

#[tokio::test]
async fn migrations_are_idempotent_as_the_owner() {
    let db = TestDb::new().await;
    let owner = PostgresDriver::connect(&db.owner_url, &PostgresOptions::default()).unwrap();
    owner.migrate().await.unwrap();
    owner.migrate().await.unwrap();
    // The runtime role cannot run them.
    assert!(db.driver().migrate().await.is_err());
}
