//! Typed session values, end to end: anything serde serializes is stored as real JSON in the JSONB column
//! (a number stays a number), rows written the old way (an object of strings) still load, and the
//! guest's checks (NUL characters, the size limit, of the merged result too) hold for typed values.
//! Every scenario runs in both isolation modes.

mod common;

use std::collections::BTreeMap;

use wasm_sessions::{Isolation, StoreError};

use common::{Fixture, in_both_modes, secs};

in_both_modes!(
    numbers_objects_arrays_and_bools_round_trip_as_real_json_in_the_row,
    every_finite_double_round_trips_exactly,
    a_very_large_double_is_saved_and_loads_again,
    deeply_nested_data_is_either_refused_or_loads_again,
    a_row_written_the_old_way_still_loads_and_saves,
    a_value_of_another_type_is_invalid_value_and_changes_nothing,
    nul_inside_a_typed_value_is_refused_and_nothing_is_written,
    the_size_limit_applies_to_typed_values,
    the_size_limit_applies_to_the_merged_result_of_concurrent_saves,
);

async fn numbers_objects_arrays_and_bools_round_trip_as_real_json_in_the_row(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    let object = BTreeMap::from([
        ("x".to_owned(), vec![1i64, -2, 3]),
        ("empty".to_owned(), Vec::new()),
    ]);
    session.insert("int", 42).unwrap();
    session.insert("big", i64::MIN).unwrap();
    session.insert("unsigned", u64::MAX).unwrap();
    session.insert("float", 2.5f64).unwrap();
    session.insert("tiny", 1e-300f64).unwrap();
    session.insert("bool", true).unwrap();
    session.insert("null", ()).unwrap();
    session.insert("text", "dark").unwrap();
    session.insert("array", ["a", "b"]).unwrap();
    session.insert("object", &object).unwrap();
    session
        .insert("nested", (1, "two", [3.5], Some(false), None::<i32>))
        .unwrap();
    fx.store.save(&mut session).await.unwrap();

    let loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(loaded.data(), session.data());
    assert_eq!(loaded.get::<i32>("int").unwrap(), Some(42));
    assert_eq!(loaded.get::<i64>("big").unwrap(), Some(i64::MIN));
    assert_eq!(loaded.get::<u64>("unsigned").unwrap(), Some(u64::MAX));
    assert_eq!(loaded.get::<f64>("float").unwrap(), Some(2.5));
    assert_eq!(loaded.get::<f64>("tiny").unwrap(), Some(1e-300));
    assert_eq!(loaded.get::<bool>("bool").unwrap(), Some(true));
    assert_eq!(loaded.get::<Option<i32>>("null").unwrap(), Some(None));
    assert_eq!(
        loaded.get::<String>("text").unwrap().as_deref(),
        Some("dark")
    );
    assert_eq!(loaded.get_str("text"), Some("dark"));
    assert_eq!(
        loaded.get::<Vec<String>>("array").unwrap(),
        Some(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        loaded.get::<BTreeMap<String, Vec<i64>>>("object").unwrap(),
        Some(object)
    );
    type Nested = (i32, String, Vec<f64>, Option<bool>, Option<i32>);
    assert_eq!(
        loaded.get::<Nested>("nested").unwrap(),
        Some((1, "two".into(), vec![3.5], Some(false), None))
    );
    assert_eq!(loaded.get::<i32>("absent").unwrap(), None);

    // Real JSON in the column, queryable by SQL.
    for (key, kind) in [
        ("int", "number"),
        ("big", "number"),
        ("unsigned", "number"),
        ("float", "number"),
        ("bool", "boolean"),
        ("null", "null"),
        ("text", "string"),
        ("array", "array"),
        ("object", "object"),
        ("nested", "array"),
    ] {
        let stored: String = fx
            .column(session.id(), &format!("jsonb_typeof(data->'{key}')"))
            .await;
        assert_eq!(stored, kind, "{key}");
    }
    let sum: i64 = fx
        .column(
            session.id(),
            "(data->>'int')::bigint + (data#>>'{object,x,2}')::bigint",
        )
        .await;
    assert_eq!(sum, 45);

    // An update keeps the types too.
    let mut loaded = loaded;
    let n = loaded.get::<i64>("int").unwrap().unwrap_or(0);
    loaded.insert("int", n + 1).unwrap();
    fx.store.save(&mut loaded).await.unwrap();
    let stored: String = fx.column(session.id(), "data->>'int'").await;
    assert_eq!(stored, "43");
}

/// A double is stored as its shortest decimal form and must come back as the same double. (Found by
/// `properties.rs`: the host parses the data with serde_json's default float parsing, which is not
/// correctly rounded; serde_json's `float_roundtrip` feature is.)
async fn every_finite_double_round_trips_exactly(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let doubles = [
        -9.423_568_474_812_503e-151,
        0.1,
        1.0 / 3.0,
        2.225_073_858_507_201e-308,
        5e-324,
        f64::MIN_POSITIVE,
        123_456_789.123_456_79,
    ];
    let mut session = fx.store.new_session().await.unwrap();
    session.insert("doubles", doubles).unwrap();
    fx.store.save(&mut session).await.unwrap();
    // The database holds the exact value.
    let text: String = fx.column(session.id(), "data#>>'{doubles,0}'").await;
    assert_eq!(text.parse::<f64>().unwrap(), doubles[0], "{text}");

    let loaded = fx.store.load(session.id()).await.unwrap();
    let stored = loaded.get::<Vec<f64>>("doubles").unwrap().unwrap();
    for (stored, original) in stored.iter().zip(doubles) {
        assert_eq!(
            stored.to_bits(),
            original.to_bits(),
            "{original:e} came back as {stored:e}"
        );
    }
    // A request that reads the key and writes another commits (under `Merge` it sends what it read as
    // the condition of its write: a value read back wrong refuses every such save).
    let mut loaded = loaded;
    let _ = loaded.get_value("doubles");
    loaded.set("seen", "yes");
    fx.store.save(&mut loaded).await.unwrap();
}

/// The largest doubles: PostgreSQL renders `f64::MAX` as a 309-digit integer, which must read back as
/// `f64::MAX`, not fail the save that wrote it and every load after.
async fn a_very_large_double_is_saved_and_loads_again(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.insert("max", f64::MAX).unwrap();
    session.insert("min", f64::MIN).unwrap();
    let saved = fx.store.save(&mut session).await;
    assert!(
        saved.is_ok(),
        "the save reported {saved:?} after writing {} row(s)",
        fx.rows().await
    );
    let loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(loaded.get::<f64>("max").unwrap(), Some(f64::MAX));
    assert_eq!(loaded.get::<f64>("min").unwrap(), Some(f64::MIN));
}

/// Data nested 150 levels deep (arrays in arrays): the store must either refuse it on save, writing
/// nothing, or save it and load it again. Accepting it and then failing (the save that wrote it, and
/// every load after) leaves a session, and its cookie, that breaks every request until it expires.
async fn deeply_nested_data_is_either_refused_or_loads_again(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.insert("deep", 0).unwrap();
    for _ in 0..150 {
        let inner = session.get_value("deep").cloned().unwrap();
        session.insert("deep", [inner]).unwrap();
    }
    match fx.store.save(&mut session).await {
        Err(StoreError::InvalidData(_)) => assert_eq!(fx.rows().await, 0),
        saved => {
            assert!(
                saved.is_ok(),
                "the save reported {saved:?} after writing {} row(s)",
                fx.rows().await
            );
            let loaded = fx.store.load(session.id()).await.unwrap();
            assert_eq!(loaded.data(), session.data());
        }
    }
}

async fn a_row_written_the_old_way_still_loads_and_saves(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let token = fx.store.generate_session_id().await.unwrap();
    let now = fx.now();
    // As the 0.1 store wrote it: a JSON object of strings, version 0, no absolute deadline, no label
    // and no expiry mode.
    fx.db
        .client()
        .await
        .execute(
            "INSERT INTO wasm_sessions.sessions \
             (id_hash, data, user_id, created_at, expires_at, updated_at, version) \
             VALUES (sha256(convert_to($1, 'UTF8')), '{\"theme\": \"dark\", \"visits\": \"3\"}', \
             7, $2, $3, $2, 0)",
            &[&token, &now, &(now + secs(600))],
        )
        .await
        .unwrap();

    let mut loaded = fx.store.load(&token).await.unwrap();
    assert_eq!(loaded.get_str("theme"), Some("dark"));
    assert_eq!(
        loaded.get::<String>("visits").unwrap().as_deref(),
        Some("3")
    );
    assert!(matches!(
        loaded.get::<u32>("visits"),
        Err(StoreError::InvalidValue(_))
    ));
    assert_eq!(loaded.user_id(), Some(7));
    assert_eq!(loaded.label(), None);
    assert_eq!(loaded.expiry(), None);
    assert_eq!(loaded.version(), 0);
    assert_eq!(loaded.created_at(), now);
    assert_eq!(loaded.expires_at(), now + secs(600));
    assert_eq!(
        loaded.absolute_expires_at(),
        loaded.expires_at(),
        "no absolute deadline: the expiry is the deadline"
    );

    loaded.insert("visits", 4).unwrap();
    fx.store.save(&mut loaded).await.unwrap();
    assert_eq!(loaded.version(), 1);
    let again = fx.store.load(&token).await.unwrap();
    assert_eq!(again.get::<u32>("visits").unwrap(), Some(4));
    assert_eq!(again.get_str("theme"), Some("dark"));
    assert_eq!(again.expires_at(), now + secs(600));

    fx.advance(secs(600));
    assert!(matches!(
        fx.store.load(&token).await,
        Err(StoreError::Expired)
    ));
}

async fn a_value_of_another_type_is_invalid_value_and_changes_nothing(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.insert("n", 5).unwrap();
    session.set("s", "five");
    fx.store.save(&mut session).await.unwrap();
    let mut loaded = fx.store.load(session.id()).await.unwrap();
    for result in [
        loaded.get::<String>("n").map(drop),
        loaded.get::<i64>("s").map(drop),
        loaded.get::<bool>("n").map(drop),
        loaded.get::<Vec<i64>>("n").map(drop),
    ] {
        assert!(
            matches!(result, Err(StoreError::InvalidValue(_))),
            "{result:?}"
        );
    }
    assert_eq!(loaded.get_str("n"), None, "not a string");
    // A value serde cannot turn into JSON (a map with non-string keys): refused, nothing changes.
    let err = loaded
        .insert("pairs", BTreeMap::from([((1, 2), 3)]))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidValue(_)), "{err:?}");
    assert!(!loaded.has_changes());
    assert_eq!(loaded.get::<i64>("n").unwrap(), Some(5));
}

async fn nul_inside_a_typed_value_is_refused_and_nothing_is_written(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.insert("ok", [1, 2]).unwrap();
    fx.store.save(&mut session).await.unwrap();
    fx.statements();
    let deep = BTreeMap::from([(
        "outer".to_owned(),
        vec![BTreeMap::from([("inner".to_owned(), "a\0b".to_owned())])],
    )]);
    let in_key = BTreeMap::from([(
        "outer".to_owned(),
        vec![BTreeMap::from([("in\0ner".to_owned(), "ab".to_owned())])],
    )]);
    for (what, value) in [("a string inside an object", &deep), ("a key", &in_key)] {
        let mut changed = session.clone();
        changed.insert("v", value).unwrap();
        let err = fx.store.save(&mut changed).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidData(m) if m.contains("NUL")),
            "{what}: {err:?}"
        );
        let mut fresh = fx.store.new_session().await.unwrap();
        fresh.insert("v", value).unwrap();
        let err = fx.store.save(&mut fresh).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidData(_)),
            "{what}: {err:?}"
        );
        assert_eq!(fx.statements(), 0, "{what}: refused unsent");
    }
    // An escaped backslash followed by `u0000` is text, not a NUL.
    let mut changed = session.clone();
    changed.insert("v", ["\\u0000"]).unwrap();
    fx.store.save(&mut changed).await.unwrap();
    let stored = fx.store.load(session.id()).await.unwrap();
    assert_eq!(
        stored.get::<Vec<String>>("v").unwrap(),
        Some(vec!["\\u0000".to_owned()])
    );
    assert_eq!(stored.get::<Vec<i32>>("ok").unwrap(), Some(vec![1, 2]));
    assert_eq!(fx.rows().await, 1);
}

async fn the_size_limit_applies_to_typed_values(isolation: Isolation) {
    let fx = Fixture::with(isolation, |c| c.max_data_bytes = 200).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.insert("n", vec![123_456_789u64; 10]).unwrap();
    fx.store.save(&mut session).await.unwrap();
    // `{"n": [123456789, ...]}`: 10 numbers of 9 digits fit in 200 bytes, 20 do not.
    session.insert("n", vec![123_456_789u64; 20]).unwrap();
    let err = fx.store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("the limit is 200")),
        "{err:?}"
    );
    let mut nested = fx.store.new_session().await.unwrap();
    nested
        .insert("m", BTreeMap::from([("k", vec![vec![true; 20]; 3])]))
        .unwrap();
    assert!(matches!(
        fx.store.save(&mut nested).await,
        Err(StoreError::InvalidData(_))
    ));
    let stored = fx.store.load(session.id()).await.unwrap();
    assert_eq!(
        stored.get::<Vec<u64>>("n").unwrap().map(|v| v.len()),
        Some(10)
    );
    assert_eq!(fx.rows().await, 1);
}

async fn the_size_limit_applies_to_the_merged_result_of_concurrent_saves(isolation: Isolation) {
    // `{"a": "x..x", "b": "y..y"}` is 2n + 18 bytes of JSONB text; one key alone is n + 9.
    let fx = Fixture::with(isolation, |c| c.max_data_bytes = 1000).await;
    let mut session = fx.store.new_session().await.unwrap();
    fx.store.save(&mut session).await.unwrap();
    let mut first = fx.store.load(session.id()).await.unwrap();
    let mut second = fx.store.load(session.id()).await.unwrap();
    first.set("a", "x".repeat(495));
    second.set("b", "y".repeat(495));
    fx.store.save(&mut first).await.unwrap();
    fx.statements();
    let err = fx.store.save(&mut second).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("1008 bytes") && m.contains("1000")),
        "{err:?}"
    );
    assert_eq!(fx.statements(), 2, "the update and its check");
    let stored = fx.store.load(session.id()).await.unwrap();
    assert_eq!(stored.get_str("a").map(str::len), Some(495));
    assert_eq!(
        stored.get_str("b"),
        None,
        "the row keeps the first save only"
    );
    assert_eq!(stored.version(), 2);
}
