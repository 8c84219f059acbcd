//! Property tests across the guest boundary: for any input, the outcome is either success with a
//! faithful round trip or a typed error, never a trap, a panic or a partial write.

mod common;

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use tower::ServiceExt as _;
use wasm_sessions::{BuildError, SameSite, SessionHandle, SessionLayer, SessionStore, StoreError};
use wasm_sessions_tests::TestDb;

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh database and a store on it.
fn store_on_fresh_db(rt: &tokio::runtime::Runtime) -> (TestDb, SessionStore) {
    rt.block_on(async {
        let db = TestDb::new().await;
        let store = common::builder(db.driver()).build().await.unwrap();
        (db, store)
    })
}

/// Strings drawn from all of Unicode, with NUL and quotes and JSON escapes more likely than chance.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[\\x00-\\x1f\"\\\\/]{0,8}",
        "[a-z0-9]{0,12}",
        "\\PC{0,20}",
    ]
}

#[test]
fn any_data_either_round_trips_exactly_or_is_refused_with_nothing_written() {
    let rt = runtime();
    let (db, store) = store_on_fresh_db(&rt);
    let strategy = prop::collection::btree_map(any_text(), any_text(), 0..12);
    runner(96)
        .run(&strategy, |data: BTreeMap<String, String>| {
            rt.block_on(async {
                let mut session = store.new_session().await.unwrap();
                for (key, value) in &data {
                    session.set(key.clone(), value.clone());
                }
                let has_nul = data
                    .iter()
                    .any(|(k, v)| k.contains('\0') || v.contains('\0'));
                match store.save(&mut session).await {
                    Ok(()) => {
                        prop_assert!(!has_nul, "NUL data was accepted");
                        let loaded = store.load(session.id()).await.unwrap();
                        let stored: BTreeMap<String, String> = loaded
                            .data()
                            .iter()
                            .map(|(k, v)| {
                                (k.clone(), v.as_str().unwrap_or("<not a string>").to_owned())
                            })
                            .collect();
                        prop_assert_eq!(stored, data);
                    }
                    Err(StoreError::InvalidData(_)) => {
                        prop_assert!(has_nul, "clean data was refused");
                        prop_assert!(matches!(
                            store.load(session.id()).await,
                            Err(StoreError::NotFound)
                        ));
                    }
                    Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                Ok(())
            })
        })
        .unwrap();
    drop(db);
}

/// A typed value of many JSON kinds at once: numbers (integers and any finite double), a boolean, an
/// array of strings and an object of optional integers.
type Typed = (
    i64,
    u64,
    f64,
    bool,
    Vec<String>,
    BTreeMap<String, Option<i64>>,
);

fn any_typed() -> impl Strategy<Value = Typed> {
    (
        any::<i64>(),
        any::<u64>(),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()),
        any::<bool>(),
        prop::collection::vec(any_text(), 0..4),
        prop::collection::btree_map(any_text(), prop::option::of(any::<i64>()), 0..4),
    )
}

#[test]
fn any_typed_value_either_round_trips_exactly_or_is_refused_with_nothing_written() {
    let rt = runtime();
    let (db, store) = store_on_fresh_db(&rt);
    runner(96)
        .run(&any_typed(), |value: Typed| {
            rt.block_on(async {
                let mut session = store.new_session().await.unwrap();
                session.insert("v", &value).unwrap();
                let has_nul = value.4.iter().any(|s| s.contains('\0'))
                    || value.5.keys().any(|k| k.contains('\0'));
                match store.save(&mut session).await {
                    Ok(()) => {
                        prop_assert!(!has_nul, "NUL data was accepted");
                        let loaded = store.load(session.id()).await.unwrap();
                        let stored = loaded.get::<Typed>("v").unwrap();
                        prop_assert_eq!(stored, Some(value));
                    }
                    Err(StoreError::InvalidData(_)) => {
                        prop_assert!(has_nul, "clean data was refused");
                        prop_assert!(matches!(
                            store.load(session.id()).await,
                            Err(StoreError::NotFound)
                        ));
                    }
                    Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                Ok(())
            })
        })
        .unwrap();
    drop(db);
}

#[test]
fn any_id_is_either_rejected_as_invalid_or_simply_not_found() {
    let rt = runtime();
    let (db, store) = store_on_fresh_db(&rt);
    let strategy = prop_oneof!["[0-9a-f]{64}", "[0-9a-fA-F]{60,68}", any_text(), "\\PC{64}"];
    runner(128)
        .run(&strategy, |id: String| {
            rt.block_on(async {
                let valid =
                    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                match store.load(&id).await {
                    Err(StoreError::NotFound) => prop_assert!(valid),
                    Err(StoreError::InvalidId(message)) => {
                        prop_assert!(!valid);
                        prop_assert!(id.len() < 8 || !message.contains(&id));
                    }
                    other => return Err(TestCaseError::fail(format!("{other:?}"))),
                }
                Ok(())
            })
        })
        .unwrap();
    drop(db);
}

#[test]
fn any_cookie_header_yields_the_session_it_names_or_a_fresh_one() {
    async fn handle(session: SessionHandle) -> Result<String, StoreError> {
        session.handle().await
    }
    let rt = runtime();
    let (db, store) = store_on_fresh_db(&rt);
    let saved = rt.block_on(async {
        let mut session = store.new_session().await.unwrap();
        store.save(&mut session).await.unwrap();
        session
    });
    let app = Router::new()
        .route("/", get(handle))
        .layer(SessionLayer::new(store.clone()));
    let token = saved.id().to_owned();
    let pair = (
        "(varel_session|other|)",
        prop_oneof![Just(token.clone()), "[0-9a-f]{64}", any_text()],
    )
        .prop_map(|(name, value)| format!("{name}={value}"));
    let strategy = prop::collection::vec(prop_oneof![pair, any_text()], 0..5)
        .prop_map(|parts| parts.join("; "));
    runner(128)
        .run(&strategy, |cookie: String| {
            rt.block_on(async {
                let mut request = Request::builder().uri("/");
                if let Ok(value) = header::HeaderValue::from_str(&cookie) {
                    request = request.header(header::COOKIE, value);
                }
                let response = app
                    .clone()
                    .oneshot(request.body(Body::empty()).unwrap())
                    .await
                    .unwrap();
                prop_assert!(response.status().is_success(), "{}", response.status());
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let seen = String::from_utf8(body.to_vec()).unwrap();
                prop_assert_eq!(seen.len(), 64);
                if seen == saved.handle() {
                    prop_assert!(cookie.contains(&token), "a session the cookie did not name");
                }
                Ok(())
            })
        })
        .unwrap();
    drop(db);
}

#[test]
fn any_config_is_either_refused_with_a_message_or_produces_a_usable_cookie() {
    let rt = runtime();
    let db = rt.block_on(TestDb::new());
    let strategy = (
        prop_oneof![
            "[A-Za-z0-9_-]{1,12}",
            "__(Host|Secure)-[a-z]{1,5}",
            any_text()
        ],
        prop_oneof![Just(86_400i64), -5i64..5, 1i64..40_000_000],
        any::<bool>(),
        prop_oneof![
            Just(SameSite::Lax),
            Just(SameSite::Strict),
            Just(SameSite::None)
        ],
        prop::option::of(prop_oneof!["[a-z]{1,8}\\.(com|org)", any_text()]),
        prop_oneof![Just("/".to_owned()), "/[a-z/]{0,10}", any_text()],
    );
    runner(32)
        .run(
            &strategy,
            |(name, max_age, secure, same_site, domain, path)| {
                rt.block_on(async {
                    let built = common::builder(db.driver())
                        .configure(move |c| {
                            c.cookie_name = name;
                            c.max_age = max_age;
                            c.secure = secure;
                            c.same_site = same_site;
                            c.domain = domain;
                            c.path = path;
                        })
                        .build()
                        .await;
                    match built {
                        Ok(store) => {
                            let session = store.new_session().await.unwrap();
                            let header = store.cookie_header(&session).await.unwrap();
                            let prefix =
                                format!("{}={}; ", store.config().cookie_name, session.id());
                            prop_assert!(header.starts_with(&prefix));
                            prop_assert_eq!(header.contains("; Secure"), store.config().secure);
                        }
                        Err(BuildError::Config(StoreError::InvalidConfig(message))) => {
                            prop_assert!(!message.is_empty());
                        }
                        Err(other) => return Err(TestCaseError::fail(format!("{other:?}"))),
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}
