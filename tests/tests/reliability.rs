//! Concurrent writers, idle and absolute timeouts, "log out my other devices", and the bad-input matrix:
//! the bundled component against real PostgreSQL.

use std::collections::BTreeMap;
use std::time::Duration;

use wasm_sessions::{Concurrency, Config, SessionStore, StoreError};
use wasm_sessions_tests::TestDb;

async fn store_with(db: &TestDb, edit: impl FnOnce(&mut Config) + Send + 'static) -> SessionStore {
    SessionStore::builder(db.driver())
        .configure(edit)
        .build()
        .await
        .expect("store builds")
}

#[tokio::test]
async fn a_stale_copy_cannot_overwrite_a_newer_save_under_optimistic_concurrency() {
    let db = TestDb::new().await;
    let store = db.store().await;
    assert_eq!(store.config().concurrency, Concurrency::Optimistic);
    let mut session = store.new_session(600).await.unwrap();
    store.save(&mut session).await.unwrap();

    let mut first = store.load(&session.id).await.unwrap();
    let mut second = store.load(&session.id).await.unwrap();
    first.set("from", "first");
    store.save(&mut first).await.unwrap();
    second.set("other", "second");
    let before = second.clone();
    assert!(matches!(
        store.save(&mut second).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(second, before, "a failed save leaves the copy unchanged");

    let mut fresh = store.load(&session.id).await.unwrap();
    fresh.set("other", "second");
    store.save(&mut fresh).await.unwrap();
    let stored = store.load(&session.id).await.unwrap();
    assert_eq!(stored.get("from"), Some("first"));
    assert_eq!(stored.get("other"), Some("second"));
    assert_eq!(
        stored.version, 2,
        "every update bumps the version (an insert is version 0)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_with_retry_lose_no_write() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    store.save(&mut session).await.unwrap();
    let writers: u32 = 24;
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let store = store.clone();
            let token = session.id.clone();
            tokio::spawn(async move {
                let mut conflicts = 0u32;
                loop {
                    let mut copy = store.load(&token).await.unwrap();
                    copy.set(format!("writer-{i}"), i.to_string());
                    match store.save(&mut copy).await {
                        Ok(()) => return conflicts,
                        Err(StoreError::Conflict) => conflicts += 1,
                        Err(other) => panic!("writer {i}: {other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let stored = store.load(&session.id).await.unwrap();
    for i in 0..writers {
        assert_eq!(
            stored.get(&format!("writer-{i}")),
            Some(i.to_string().as_str())
        );
    }
    assert_eq!(stored.version, u64::from(writers), "one update per writer");
    eprintln!("{writers} writers, {conflicts} conflicts retried, 0 writes lost");
}

#[tokio::test]
async fn last_write_wins_is_available_and_overwrites_as_documented() {
    let db = TestDb::new().await;
    let store = store_with(&db, |c| c.concurrency = Concurrency::LastWriteWins).await;
    let mut session = store.new_session(600).await.unwrap();
    store.save(&mut session).await.unwrap();
    let mut first = store.load(&session.id).await.unwrap();
    let mut second = store.load(&session.id).await.unwrap();
    first.set("from", "first");
    store.save(&mut first).await.unwrap();
    second.set("other", "second");
    store.save(&mut second).await.unwrap();
    let stored = store.load(&session.id).await.unwrap();
    assert_eq!(stored.get("from"), None, "the earlier write is overwritten");
    assert_eq!(stored.get("other"), Some("second"));
}

#[tokio::test]
async fn a_revoked_session_is_never_recreated_by_a_later_save() {
    let db = TestDb::new().await;
    for concurrency in [Concurrency::Optimistic, Concurrency::LastWriteWins] {
        let store = store_with(&db, move |c| c.concurrency = concurrency).await;
        let mut session = store.new_session(600).await.unwrap();
        session.set_user(3);
        store.save(&mut session).await.unwrap();
        store.delete_user_sessions(3).await.unwrap();
        session.set("late", "write");
        assert!(
            matches!(store.save(&mut session).await, Err(StoreError::NotFound)),
            "{concurrency:?}"
        );
        assert!(matches!(
            store.load(&session.id).await,
            Err(StoreError::NotFound)
        ));
    }
}

#[tokio::test]
async fn an_idle_session_expires_after_the_idle_timeout() {
    let db = TestDb::new().await;
    let store = store_with(&db, |c| c.idle_timeout = Some(1)).await;
    let mut session = store.new_session(3600).await.unwrap();
    assert!(session.expires_at < session.absolute_expires_at);
    store.save(&mut session).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(matches!(
        store.load(&session.id).await,
        Err(StoreError::Expired)
    ));
}

#[tokio::test]
async fn use_extends_the_idle_deadline_with_throttled_writes() {
    let db = TestDb::new().await;
    let store = store_with(&db, |c| c.idle_timeout = Some(2)).await;
    let mut session = store.new_session(3600).await.unwrap();
    store.save(&mut session).await.unwrap();
    let mut writes = std::collections::BTreeSet::new();
    let loads = 12;
    for _ in 0..loads {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let loaded = store.load(&session.id).await.unwrap();
        writes.insert(loaded.updated_at);
    }
    // 3.6 s of use outlived the 2 s idle timeout; the deadline was written only now and then.
    assert!(
        writes.len() < loads / 2,
        "{} writes for {loads} loads",
        writes.len()
    );
    assert!(writes.len() >= 2, "the idle deadline was extended");
}

#[tokio::test]
async fn activity_never_extends_the_absolute_lifetime() {
    let db = TestDb::new().await;
    let store = store_with(&db, |c| c.idle_timeout = Some(1)).await;
    let mut session = store.new_session(2).await.unwrap();
    store.save(&mut session).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        match store.load(&session.id).await {
            Ok(_) if started.elapsed() < Duration::from_secs(4) => {}
            other => break other,
        }
    };
    assert!(matches!(outcome, Err(StoreError::Expired)), "{outcome:?}");
    let lived = started.elapsed();
    assert!(lived < Duration::from_millis(2600), "lived {lived:?}");
}

#[tokio::test]
async fn log_out_other_devices_keeps_only_the_current_session() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let mut s = store.new_session(600).await.unwrap();
        s.set_user(21);
        store.save(&mut s).await.unwrap();
        tokens.push(s.id);
    }
    let mut theirs = store.new_session(600).await.unwrap();
    theirs.set_user(22);
    store.save(&mut theirs).await.unwrap();

    let err = store
        .delete_user_sessions_except(21, "not-a-token")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidId(_)));
    assert_eq!(store.get_user_sessions(21).await.unwrap().len(), 3);

    assert_eq!(
        store
            .delete_user_sessions_except(21, &tokens[1])
            .await
            .unwrap(),
        2
    );
    assert!(store.load(&tokens[1]).await.is_ok());
    assert!(matches!(
        store.load(&tokens[0]).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.load(&tokens[2]).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.load(&theirs.id).await.is_ok());
}

#[tokio::test]
async fn the_data_limit_is_configurable() {
    let db = TestDb::new().await;
    let store = store_with(&db, |c| c.max_data_bytes = 64).await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("k", "x".repeat(40));
    store.save(&mut session).await.unwrap();
    session.set("k", "x".repeat(80));
    let err = store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("64")),
        "{err:?}"
    );
    assert_eq!(store.load(&session.id).await.unwrap().data["k"].len(), 40);
}

#[tokio::test]
async fn timeout_and_limit_settings_are_validated() {
    let db = TestDb::new().await;
    type Edit = fn(&mut Config);
    let cases: [(&str, Edit); 5] = [
        ("idle-timeout", |c| c.idle_timeout = Some(0)),
        ("idle-timeout", |c| {
            c.max_age = 60;
            c.idle_timeout = Some(61);
        }),
        ("max-data-bytes", |c| c.max_data_bytes = 0),
        ("max-data-bytes", |c| c.max_data_bytes = u32::MAX),
        ("max-age", |c| c.max_age = 34_560_001),
    ];
    for (word, edit) in cases {
        let err = SessionStore::builder(db.driver())
            .configure(edit)
            .build()
            .await
            .unwrap_err();
        let message = format!("{:#}", anyhow_like(&err));
        assert!(message.contains(word), "{word}: {message}");
    }
}

/// The error and its sources, joined.
fn anyhow_like(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[tokio::test]
async fn huge_keys_and_thousands_of_keys_either_round_trip_or_are_refused_whole() {
    let db = TestDb::new().await;
    let store = db.store().await;

    let mut many = store.new_session(600).await.unwrap();
    let expected: BTreeMap<String, String> = (0..5000)
        .map(|i| (format!("key-{i:05}-ключ"), format!("value {i} ✓")))
        .collect();
    many.data = expected.clone();
    store.save(&mut many).await.unwrap();
    assert_eq!(store.load(&many.id).await.unwrap().data, expected);

    let mut huge = store.new_session(600).await.unwrap();
    huge.set("k".repeat(2 << 20), "v");
    assert!(matches!(
        store.save(&mut huge).await,
        Err(StoreError::InvalidData(_))
    ));
    assert!(matches!(
        store.load(&huge.id).await,
        Err(StoreError::NotFound)
    ));
}
