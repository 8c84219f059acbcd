//! The production `PostgresDriver` behind the guest's `sql-query`: every value type, and the error classes.

use wasm_sessions::{SqlDriver, SqlError, SqlValue};
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
        SqlValue::Null,
    ];
    let rows = driver
        .query(
            "SELECT $1::boolean AS b, $2::bigint AS i8, $3::int AS i4, $4::float8 AS f, $5::text AS t, \
             $6::jsonb AS jb, $7::json AS j, $8::timestamptz AS ts, $9::bytea AS by, $10::text AS n",
            &params,
        )
        .await
        .unwrap();
    assert_eq!(
        rows.columns,
        ["b", "i8", "i4", "f", "t", "jb", "j", "ts", "by", "n"]
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
            "INSERT INTO sessions (id_hash, expires_at) SELECT sha256(g::text::bytea), $1 \
             FROM generate_series(1, 3) g",
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
    let insert = "INSERT INTO sessions (id_hash, expires_at) VALUES (sha256('x'::bytea), now())";
    driver.query(insert, &[]).await.unwrap();
    let err = driver.query(insert, &[]).await.unwrap_err();
    assert!(
        matches!(&err, SqlError::ConstraintViolation { sqlstate, .. } if sqlstate == "23505"),
        "{err:?}"
    );
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
async fn migrations_are_idempotent() {
    let db = TestDb::new().await;
    db.driver().migrate().await.unwrap();
    db.driver().migrate().await.unwrap();
}
