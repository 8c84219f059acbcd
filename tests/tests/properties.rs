//! Property tests across the guest boundary: for any input, the outcome is either success with a
//! faithful round trip or a typed error, never a trap, a panic or a partial write.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use wasm_sessions::{BuildError, SameSite, SessionStore, StoreError};
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
    let (db, store) = rt.block_on(async {
        let db = TestDb::new().await;
        let store = db.store().await;
        (db, store)
    });
    let strategy = prop::collection::btree_map(any_text(), any_text(), 0..12);
    runner(96)
        .run(&strategy, |data: BTreeMap<String, String>| {
            rt.block_on(async {
                let mut session = store.new_session(600).await.unwrap();
                session.data = data.clone();
                let has_nul = data
                    .iter()
                    .any(|(k, v)| k.contains('\0') || v.contains('\0'));
                match store.save(&mut session).await {
                    Ok(()) => {
                        prop_assert!(!has_nul, "NUL data was accepted");
                        let loaded = store.load(&session.id).await.unwrap();
                        prop_assert_eq!(loaded.data, data);
                    }
                    Err(StoreError::InvalidData(_)) => {
                        prop_assert!(has_nul, "clean data was refused");
                        prop_assert!(matches!(
                            store.load(&session.id).await,
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
    let (db, store) = rt.block_on(async {
        let db = TestDb::new().await;
        let store = db.store().await;
        (db, store)
    });
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
fn any_cookie_header_yields_nothing_or_a_well_formed_token_it_contains() {
    let rt = runtime();
    let (db, store) = rt.block_on(async {
        let db = TestDb::new().await;
        let store = db.store().await;
        (db, store)
    });
    let pair = (
        "(varel_session|other|)",
        prop_oneof!["[0-9a-f]{64}", any_text()],
    )
        .prop_map(|(name, value)| format!("{name}={value}"));
    let strategy = prop::collection::vec(prop_oneof![pair, any_text()], 0..5)
        .prop_map(|parts| parts.join("; "));
    runner(128)
        .run(&strategy, |header: String| {
            rt.block_on(async {
                if let Some(token) = store.session_id_from_cookie_header(&header).await.unwrap() {
                    prop_assert_eq!(token.len(), 64);
                    prop_assert!(
                        token
                            .bytes()
                            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    );
                    prop_assert!(header.contains(&token));
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
        prop::option::of(any::<bool>()),
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
                    let built = SessionStore::builder(db.driver())
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
                            let session = store.new_session(60).await.unwrap();
                            let header = store.set_cookie_header(&session, true).await.unwrap();
                            let prefix = format!("{}={}; ", store.config().cookie_name, session.id);
                            prop_assert!(header.starts_with(&prefix));
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
