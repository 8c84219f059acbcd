//! Concurrent copies of one session under each concurrency mode, idle and absolute timeouts on the
//! store's clock, "log out my other devices", and the bad-input matrix: the bundled component against
//! real PostgreSQL.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use wasm_sessions::{Concurrency, Config, Expiry, Session, SessionStore, StoreError};

use common::{Fixture, REUSE, secs};

async fn fixture(edit: impl FnOnce(&mut Config) + Send + 'static) -> Fixture {
    Fixture::with(REUSE, edit).await
}

/// A saved session with `k=v`, and its token.
async fn saved(store: &SessionStore) -> String {
    let mut session = store.new_session().await.unwrap();
    session.set("k", "v");
    store.save(&mut session).await.unwrap();
    session.id().to_owned()
}

/// A copy's version and data, read on a clone so that the copy's record of what it read is untouched.
fn snapshot(session: &Session) -> (u64, String) {
    (session.version(), format!("{:?}", session.clone().data()))
}

// ---------------------------------------------------------------------------------------------------
// Key-level concurrency (Merge, the default)

#[tokio::test]
async fn merge_disjoint_changes_of_two_copies_both_land() {
    let fx = fixture(|_| {}).await;
    assert_eq!(fx.store.config().concurrency, Concurrency::Merge);
    let token = saved(&fx.store).await;
    let mut first = fx.store.load(&token).await.unwrap();
    let mut second = fx.store.load(&token).await.unwrap();
    first.set("x", "1");
    first.set_label(Some("laptop".into()));
    second.set("y", "2");
    second.set_user(5);
    second.remove("k");
    fx.store.save(&mut first).await.unwrap();
    fx.store.save(&mut second).await.unwrap();
    // The second save returns the merged row.
    assert_eq!(second.get_str("x"), Some("1"));
    let stored = fx.store.load(&token).await.unwrap();
    assert_eq!(stored.get_str("x"), Some("1"));
    assert_eq!(stored.get_str("y"), Some("2"));
    assert_eq!(stored.get_str("k"), None);
    assert_eq!(stored.user_id(), Some(5));
    assert_eq!(stored.label(), Some("laptop"));
    assert_eq!(stored.version(), 3);
}

#[tokio::test]
async fn merge_a_copy_whose_read_or_written_key_changed_gets_a_conflict_and_writes_nothing() {
    let fx = fixture(|_| {}).await;
    let token = saved(&fx.store).await;
    let reader = fx.store.load(&token).await.unwrap();
    let writer = fx.store.load(&token).await.unwrap();
    let mut other = fx.store.load(&token).await.unwrap();
    other.set("k", "theirs");
    fx.store.save(&mut other).await.unwrap();

    // Read `k`, then write another key from it: a lost update if saved.
    let mut reader = reader;
    let seen = reader.get_str("k").unwrap().to_owned();
    reader.set("derived", format!("{seen}+mine"));
    let before = snapshot(&reader);
    fx.statements();
    assert!(matches!(
        fx.store.save(&mut reader).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(fx.statements(), 2, "the update and its check");
    assert_eq!(snapshot(&reader), before);
    assert!(
        reader.has_changes(),
        "a failed save leaves the copy unchanged"
    );

    // Write `k` without reading it: the key it writes was changed under it.
    let mut writer = writer;
    writer.set("k", "mine");
    assert!(matches!(
        fx.store.save(&mut writer).await,
        Err(StoreError::Conflict)
    ));
    let stored = fx.store.load(&token).await.unwrap();
    assert_eq!(stored.get_str("k"), Some("theirs"));
    assert_eq!(stored.get_str("derived"), None);
    assert_eq!(stored.version(), 2);

    // Reloaded, the same change commits.
    let mut retry = fx.store.load(&token).await.unwrap();
    let seen = retry.get_str("k").unwrap().to_owned();
    retry.set("derived", format!("{seen}+mine"));
    fx.store.save(&mut retry).await.unwrap();
    assert_eq!(retry.get_str("derived"), Some("theirs+mine"));
}

#[tokio::test]
async fn merge_a_copy_that_read_a_key_as_absent_conflicts_when_it_was_added_meanwhile() {
    let fx = fixture(|_| {}).await;
    let token = saved(&fx.store).await;
    let mut mine = fx.store.load(&token).await.unwrap();
    assert_eq!(mine.get_str("cart"), None);
    let mut other = fx.store.load(&token).await.unwrap();
    other.set("cart", "1 item");
    fx.store.save(&mut other).await.unwrap();
    mine.set("checkout", "empty cart");
    assert!(matches!(
        fx.store.save(&mut mine).await,
        Err(StoreError::Conflict)
    ));
    // A key removed meanwhile that this copy read as present conflicts too.
    let mut mine = fx.store.load(&token).await.unwrap();
    assert_eq!(mine.get_str("cart"), Some("1 item"));
    let mut other = fx.store.load(&token).await.unwrap();
    other.remove("cart");
    fx.store.save(&mut other).await.unwrap();
    mine.set("checkout", "1 item");
    assert!(matches!(
        fx.store.save(&mut mine).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        fx.store.load(&token).await.unwrap().get_str("checkout"),
        None
    );
}

#[tokio::test]
async fn merge_a_user_or_expiry_change_conflicts_with_a_copy_that_read_it() {
    let fx = fixture(|_| {}).await;
    let token = saved(&fx.store).await;

    let mut reader = fx.store.load(&token).await.unwrap();
    let mut blind = fx.store.load(&token).await.unwrap();
    assert!(!reader.is_authenticated(), "reads the user");
    let mut login = fx.store.load(&token).await.unwrap();
    login.set_user(5);
    fx.store.save(&mut login).await.unwrap();
    reader.set("greeting", "hello, anonymous");
    assert!(matches!(
        fx.store.save(&mut reader).await,
        Err(StoreError::Conflict)
    ));
    // A copy that never looked at the user merges.
    blind.set("theme", "dark");
    fx.store.save(&mut blind).await.unwrap();
    assert_eq!(blind.user_id(), Some(5));

    let mut reader = fx.store.load(&token).await.unwrap();
    assert_eq!(reader.expiry(), None);
    let mut other = fx.store.load(&token).await.unwrap();
    other.set_expiry(Some(Expiry::OnSessionEnd));
    fx.store.save(&mut other).await.unwrap();
    reader.set("remember", "me");
    assert!(matches!(
        fx.store.save(&mut reader).await,
        Err(StoreError::Conflict)
    ));

    // A copy that read all data conflicts with any change to it.
    let mut all = fx.store.load(&token).await.unwrap();
    let _ = all.data().len();
    let mut other = fx.store.load(&token).await.unwrap();
    other.set("unrelated", "x");
    fx.store.save(&mut other).await.unwrap();
    all.set("summary", "1 key");
    assert!(matches!(
        fx.store.save(&mut all).await,
        Err(StoreError::Conflict)
    ));
    let stored = fx.store.load(&token).await.unwrap();
    assert_eq!(stored.get_str("greeting"), None);
    assert_eq!(stored.get_str("remember"), None);
    assert_eq!(stored.get_str("summary"), None);
    assert_eq!(stored.get_str("theme"), Some("dark"));
}

// ---------------------------------------------------------------------------------------------------
// Whole-session (Strict) and no check (LastWriteWins)

#[tokio::test]
async fn strict_refuses_a_copy_after_any_concurrent_save() {
    let fx = fixture(|c| c.concurrency = Concurrency::Strict).await;
    let token = saved(&fx.store).await;
    let mut first = fx.store.load(&token).await.unwrap();
    let mut second = fx.store.load(&token).await.unwrap();
    first.set("from", "first");
    fx.store.save(&mut first).await.unwrap();
    second.set("other", "second");
    let before = snapshot(&second);
    assert!(matches!(
        fx.store.save(&mut second).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(snapshot(&second), before);

    let mut fresh = fx.store.load(&token).await.unwrap();
    fresh.set("other", "second");
    fx.store.save(&mut fresh).await.unwrap();
    let stored = fx.store.load(&token).await.unwrap();
    assert_eq!(stored.get_str("from"), Some("first"));
    assert_eq!(stored.get_str("other"), Some("second"));
    assert_eq!(
        stored.version(),
        3,
        "an insert is version 1, every update adds one"
    );
}

#[tokio::test]
async fn an_idle_extension_is_not_a_save_and_does_not_refuse_a_strict_copy() {
    let fx = fixture(|c| {
        c.concurrency = Concurrency::Strict;
        c.idle_timeout = Some(100);
    })
    .await;
    let token = saved(&fx.store).await;
    let mut copy = fx.store.load(&token).await.unwrap();
    fx.advance(secs(50));
    fx.statements();
    let touched = fx.store.load(&token).await.unwrap();
    assert_eq!(
        fx.statements(),
        2,
        "another request's load extended the idle deadline"
    );
    assert_eq!(touched.version(), copy.version());
    copy.set("k", "w");
    fx.store.save(&mut copy).await.unwrap();
    assert_eq!(copy.version(), 2);
    assert_eq!(copy.expires_at(), fx.now() + secs(100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_under_strict_with_retry_lose_no_write() {
    let fx = fixture(|c| c.concurrency = Concurrency::Strict).await;
    let token = saved(&fx.store).await;
    let writers: u64 = 24;
    let tasks: Vec<_> = (0..writers)
        .map(|i| {
            let (store, token) = (fx.store.clone(), token.clone());
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
    let stored = fx.store.load(&token).await.unwrap();
    for i in 0..writers {
        assert_eq!(
            stored.get_str(&format!("writer-{i}")),
            Some(i.to_string().as_str())
        );
    }
    assert_eq!(stored.version(), 1 + writers, "one update per writer");
    eprintln!("{writers} writers, {conflicts} conflicts retried, 0 writes lost");
}

#[tokio::test]
async fn last_write_wins_applies_each_delta_without_conditions() {
    let fx = fixture(|c| c.concurrency = Concurrency::LastWriteWins).await;
    let token = saved(&fx.store).await;
    let mut first = fx.store.load(&token).await.unwrap();
    let mut second = fx.store.load(&token).await.unwrap();
    assert_eq!(first.get_str("k"), Some("v"));
    let _ = first.user_id();
    second.set("k", "theirs");
    second.set("y", "2");
    second.set_user(9);
    fx.store.save(&mut second).await.unwrap();
    // What `first` read changed: saved anyway, its change over the stored row.
    first.set("k", "mine");
    first.set("x", "1");
    fx.store.save(&mut first).await.unwrap();
    // The copy keeps its own data, as a blind write does (the other request's key is not read back);
    // the row's user, deadlines and version come back.
    assert_eq!(first.get_str("y"), None);
    assert_eq!(
        (first.get_str("k"), first.get_str("x")),
        (Some("mine"), Some("1"))
    );
    assert_eq!((first.user_id(), first.version()), (Some(9), 3));
    let stored = fx.store.load(&token).await.unwrap();
    assert_eq!(
        stored.get_str("k"),
        Some("mine"),
        "the last write of a key wins"
    );
    assert_eq!(stored.get_str("x"), Some("1"));
    assert_eq!(
        stored.get_str("y"),
        Some("2"),
        "a key it did not change is kept"
    );
    assert_eq!(stored.user_id(), Some(9));
    assert_eq!(stored.version(), 3);
}

#[tokio::test]
async fn a_session_deleted_meanwhile_is_not_found_and_never_recreated_in_every_mode() {
    let fx = fixture(|_| {}).await;
    for concurrency in [
        Concurrency::Merge,
        Concurrency::Strict,
        Concurrency::LastWriteWins,
    ] {
        let store = fx.store_with(move |c| c.concurrency = concurrency).await;
        for rotate in [false, true] {
            let mut session = store.new_session().await.unwrap();
            session.set_user(3);
            store.save(&mut session).await.unwrap();
            let mut other = store.new_session().await.unwrap();
            other.set_user(3);
            store.save(&mut other).await.unwrap();
            let mut other_copy = store.load(other.id()).await.unwrap();
            // Revoked by "log out everywhere", or deleted directly.
            store.delete_user_sessions(3).await.unwrap();
            session.set("late", "write");
            let outcome = if rotate {
                store.regenerate_id(&mut session).await
            } else {
                store.save(&mut session).await
            };
            assert!(
                matches!(outcome, Err(StoreError::NotFound)),
                "{concurrency:?}, rotate {rotate}: {outcome:?}"
            );
            other_copy.set("late", "write");
            assert!(matches!(
                store.save(&mut other_copy).await,
                Err(StoreError::NotFound)
            ));
            assert!(matches!(
                store.load(session.id()).await,
                Err(StoreError::NotFound)
            ));
            assert_eq!(fx.rows().await, 0, "{concurrency:?}: recreated");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Idle and absolute timeouts, on the store's clock

#[tokio::test]
async fn an_idle_session_expires_after_the_idle_timeout() {
    let fx = fixture(|c| c.idle_timeout = Some(60)).await;
    let mut session = fx.store.new_session().await.unwrap();
    assert_eq!(session.expires_at(), fx.now() + secs(60));
    assert!(session.expires_at() < session.absolute_expires_at());
    fx.store.save(&mut session).await.unwrap();
    fx.advance(secs(60) - Duration::from_micros(1));
    let other = saved(&fx.store).await;
    fx.advance(Duration::from_micros(1));
    assert!(matches!(
        fx.store.load(session.id()).await,
        Err(StoreError::Expired)
    ));
    fx.advance(secs(59));
    assert!(fx.store.load(&other).await.is_ok(), "used 59 s ago: alive");
}

#[tokio::test]
async fn use_extends_the_idle_deadline_with_writes_at_most_once_per_tenth_of_the_timeout() {
    let fx = fixture(|c| c.idle_timeout = Some(100)).await;
    let token = saved(&fx.store).await;
    let started = fx.now();
    let mut writes = Vec::new();
    let mut updated = fx.store.load(&token).await.unwrap().updated_at();
    let loads = 60;
    fx.statements();
    for _ in 0..loads {
        fx.advance(secs(3));
        let loaded = fx.store.load(&token).await.unwrap();
        let statements = fx.statements();
        assert!(loaded.expires_at() > fx.now(), "used every 3 s, never idle");
        if loaded.updated_at() != updated {
            assert_eq!(statements, 2, "a load that extends writes once");
            assert_eq!(loaded.updated_at(), fx.now());
            assert_eq!(loaded.expires_at(), fx.now() + secs(100));
            updated = loaded.updated_at();
            writes.push(updated);
        } else {
            assert_eq!(statements, 1, "a load that does not extend only reads");
        }
    }
    // 180 s of use outlived the 100 s idle timeout, with a write at most every 10 s.
    assert!(fx.now() > started + secs(100));
    assert!(writes.len() >= 2, "the idle deadline was extended");
    for pair in writes.windows(2) {
        let apart = pair[1].duration_since(pair[0]).unwrap();
        assert!(apart >= secs(10), "two writes {apart:?} apart");
    }
    assert!(
        writes.len() <= 18,
        "{} writes for {loads} loads",
        writes.len()
    );

    // Unused for the timeout after the last extension: expired.
    let deadline = fx.store.load(&token).await.unwrap().expires_at();
    fx.clock.set(deadline);
    assert!(matches!(
        fx.store.load(&token).await,
        Err(StoreError::Expired)
    ));
}

#[tokio::test]
async fn activity_never_extends_the_absolute_lifetime() {
    let fx = fixture(|c| {
        c.max_age = 20;
        c.idle_timeout = Some(10);
    })
    .await;
    let token = saved(&fx.store).await;
    let absolute = fx.store.load(&token).await.unwrap().absolute_expires_at();
    assert_eq!(absolute, fx.now() + secs(20));
    while fx.now() + secs(3) < absolute {
        fx.advance(secs(3));
        let loaded = fx.store.load(&token).await.unwrap();
        assert!(loaded.expires_at() <= absolute);
        assert_eq!(loaded.absolute_expires_at(), absolute);
    }
    fx.clock.set(absolute - Duration::from_micros(1));
    let mut used = fx.store.load(&token).await.unwrap();
    assert_eq!(
        used.expires_at(),
        absolute,
        "extended only up to the deadline"
    );
    used.set("k", "w");
    fx.store.save(&mut used).await.unwrap();
    assert_eq!(
        used.expires_at(),
        absolute,
        "a save does not move it either"
    );
    fx.clock.set(absolute);
    assert!(matches!(
        fx.store.load(&token).await,
        Err(StoreError::Expired)
    ));
}

// ---------------------------------------------------------------------------------------------------
// Devices, limits and bad input

#[tokio::test]
async fn log_out_other_devices_keeps_only_the_current_session() {
    let fx = fixture(|_| {}).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let mut s = fx.store.new_session().await.unwrap();
        s.set_user(21);
        fx.store.save(&mut s).await.unwrap();
        tokens.push(s.id().to_owned());
    }
    let mut theirs = fx.store.new_session().await.unwrap();
    theirs.set_user(22);
    fx.store.save(&mut theirs).await.unwrap();

    fx.statements();
    let err = fx
        .store
        .delete_user_sessions_except(21, "not-a-token")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidId(_)));
    assert_eq!(
        fx.statements(),
        0,
        "nothing is deleted for a malformed token"
    );
    assert_eq!(fx.store.get_user_sessions(21).await.unwrap().len(), 3);

    assert_eq!(
        fx.store
            .delete_user_sessions_except(21, &tokens[1])
            .await
            .unwrap(),
        2
    );
    assert!(fx.store.load(&tokens[1]).await.is_ok());
    for gone in [&tokens[0], &tokens[2]] {
        assert!(matches!(
            fx.store.load(gone).await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(fx.store.load(theirs.id()).await.is_ok());
}

#[tokio::test]
async fn the_data_limit_is_configurable() {
    let fx = fixture(|c| c.max_data_bytes = 64).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("k", "x".repeat(40));
    fx.store.save(&mut session).await.unwrap();
    session.set("k", "x".repeat(80));
    let err = fx.store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("the limit is 64")),
        "{err:?}"
    );
    let stored = fx.store.load(session.id()).await.unwrap();
    assert_eq!(stored.get_str("k").map(str::len), Some(40));
}

#[tokio::test]
async fn timeout_and_limit_settings_are_validated() {
    let db = wasm_sessions_tests::TestDb::new().await;
    type Edit = fn(&mut Config);
    let cases: [(&str, Edit); 6] = [
        ("idle-timeout", |c| c.idle_timeout = Some(0)),
        ("idle-timeout", |c| {
            c.max_age = 60;
            c.idle_timeout = Some(61);
        }),
        ("max-data-bytes", |c| c.max_data_bytes = 0),
        ("max-data-bytes", |c| c.max_data_bytes = 8 * 1024 * 1024 + 1),
        ("max-age", |c| c.max_age = 34_560_001),
        ("max-age", |c| c.max_age = i64::MIN),
    ];
    for (word, edit) in cases {
        let err = common::builder(db.driver())
            .configure(edit)
            .build()
            .await
            .unwrap_err();
        let message = with_sources(&err);
        assert!(message.contains(word), "{word}: {message}");
    }
}

/// The error and its sources, joined.
fn with_sources(err: &dyn std::error::Error) -> String {
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
    let fx = fixture(|_| {}).await;
    let mut many = fx.store.new_session().await.unwrap();
    let expected: Vec<(String, String)> = (0..5000)
        .map(|i| (format!("key-{i:05}-ключ"), format!("value {i} ✓")))
        .collect();
    for (key, value) in &expected {
        many.set(key.clone(), value.clone());
    }
    fx.store.save(&mut many).await.unwrap();
    let loaded = fx.store.load(many.id()).await.unwrap();
    let stored: Vec<(String, String)> = loaded
        .data()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(stored, expected);
    let keys: BTreeSet<_> = loaded.data().keys().cloned().collect();
    assert_eq!(keys.len(), 5000);

    let mut huge = fx.store.new_session().await.unwrap();
    huge.set("k".repeat(2 << 20), "v");
    assert!(matches!(
        fx.store.save(&mut huge).await,
        Err(StoreError::InvalidData(_))
    ));
    assert!(matches!(
        fx.store.load(huge.id()).await,
        Err(StoreError::NotFound)
    ));
    // A saved session does not take it either, and keeps its data.
    let mut loaded = loaded;
    loaded.set("k".repeat(2 << 20), "v");
    assert!(matches!(
        fx.store.save(&mut loaded).await,
        Err(StoreError::InvalidData(_))
    ));
    assert_eq!(fx.store.load(many.id()).await.unwrap().data().len(), 5000);
}
