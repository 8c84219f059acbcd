//! The store's behaviour, end to end: the bundled guest component on wasmtime, against real PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use wasm_sessions::{
    BuildError, EntropyError, EntropySource, OsEntropy, PostgresDriver, PostgresOptions, SameSite,
    SessionStore, SqlError, StoreError,
};
use wasm_sessions_tests::{CountingDriver, TestDb};

async fn counted_store(db: &TestDb) -> (SessionStore, CountingDriver) {
    let driver = CountingDriver::new(db);
    let store = SessionStore::builder(driver.clone())
        .build()
        .await
        .expect("store builds");
    (store, driver)
}

async fn row_count(db: &TestDb) -> i64 {
    db.client()
        .await
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .expect("count")
        .get(0)
}

fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[tokio::test]
async fn generated_ids_are_64_lower_case_hex_and_distinct() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let id = store.generate_session_id().await.unwrap();
        assert!(is_token(&id), "not a token: {} chars", id.len());
        assert!(seen.insert(id), "an id repeated");
    }
}

/// Entropy that can be told to fail, to stop the guest mid-call.
struct SwitchableEntropy(Arc<AtomicBool>);

impl EntropySource for SwitchableEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(EntropyError("switched off for the test".into()));
        }
        OsEntropy.fill(buf)
    }
}

/// Entropy that returns a fixed pattern, to show ids come from the host's source only.
struct FixedEntropy;

impl EntropySource for FixedEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        buf.fill(0xab);
        Ok(())
    }
}

#[tokio::test]
async fn ids_come_from_the_host_entropy_source_only() {
    let db = TestDb::new().await;
    let store = SessionStore::builder(db.driver())
        .entropy(FixedEntropy)
        .build()
        .await
        .unwrap();
    assert_eq!(store.generate_session_id().await.unwrap(), "ab".repeat(32));
}

#[tokio::test]
async fn a_guest_that_traps_fails_its_call_and_the_host_keeps_serving() {
    let db = TestDb::new().await;
    let off = Arc::new(AtomicBool::new(false));
    let store = SessionStore::builder(db.driver())
        .entropy(SwitchableEntropy(off.clone()))
        .build()
        .await
        .unwrap();
    off.store(true, Ordering::SeqCst);
    let err = store.new_session(60).await.unwrap_err();
    assert!(matches!(err, StoreError::Guest(_)), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the trap is kept as the source"
    );
    off.store(false, Ordering::SeqCst);
    let mut session = store.new_session(60).await.unwrap();
    store.save(&mut session).await.unwrap();
    assert!(store.load(&session.id).await.is_ok());
}

#[tokio::test]
async fn new_session_is_unsaved_and_expires_after_max_age() {
    let db = TestDb::new().await;
    let (store, driver) = counted_store(&db).await;
    driver.take();
    let before = SystemTime::now();
    let session = store.new_session(3600).await.unwrap();
    assert_eq!(driver.take(), 0, "creating a session sends no SQL");
    assert!(is_token(&session.id));
    assert!(!session.is_saved);
    assert!(session.data.is_empty());
    assert_eq!(session.user_id, None);
    let lifetime = session
        .expires_at
        .duration_since(session.created_at)
        .unwrap();
    assert_eq!(lifetime, Duration::from_secs(3600));
    assert!(session.created_at >= before - Duration::from_secs(1));
    assert!(!store.is_expired(&session).await.unwrap());
    assert_eq!(row_count(&db).await, 0);
}

#[tokio::test]
async fn new_session_rejects_a_non_positive_or_too_long_lifetime() {
    let db = TestDb::new().await;
    let store = db.store().await;
    for max_age in [0, -1, i64::MIN, i64::MAX] {
        let err = store.new_session(max_age).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{max_age}: {err:?}"
        );
    }
}

#[tokio::test]
async fn save_then_load_round_trips_data_and_user_in_one_statement_each() {
    let db = TestDb::new().await;
    let (store, driver) = counted_store(&db).await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("theme", "dark");
    session.set(
        "greeting",
        "grüß dich 👋 \"quoted\" \\ ' ; DROP TABLE sessions; --",
    );
    session.set("", "empty key");
    session.set_user(42);
    driver.take();
    store.save(&mut session).await.unwrap();
    assert_eq!(driver.take(), 1, "save is one round trip");
    assert!(session.is_saved);

    let loaded = store.load(&session.id).await.unwrap();
    assert_eq!(driver.take(), 1, "load is one round trip");
    assert_eq!(loaded.data, session.data);
    assert_eq!(loaded.user_id, Some(42));
    assert!(loaded.is_authenticated());
    assert!(loaded.is_saved);
    assert_eq!(loaded.created_at, session.created_at);
    assert_eq!(loaded.expires_at, session.expires_at);
    assert_eq!(loaded.get("theme"), Some("dark"));
}

#[tokio::test]
async fn saving_again_updates_the_row_and_the_trigger_moves_updated_at() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("n", "1");
    store.save(&mut session).await.unwrap();
    let first = session.clone();
    tokio::time::sleep(Duration::from_millis(20)).await;
    session.set("n", "2");
    session.delete("missing");
    store.save(&mut session).await.unwrap();
    assert_eq!(row_count(&db).await, 1);
    assert_eq!(session.created_at, first.created_at);
    assert!(
        session.updated_at > first.updated_at,
        "the trigger sets updated_at"
    );
    assert_eq!(store.load(&session.id).await.unwrap().get("n"), Some("2"));
}

#[tokio::test]
async fn data_operations_persist_through_the_component() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("a", "1");
    session.set("b", "2");
    store.save(&mut session).await.unwrap();

    let mut loaded = store.load(&session.id).await.unwrap();
    assert_eq!(loaded.delete("a"), Some("1".to_owned()));
    store.save(&mut loaded).await.unwrap();
    let mut loaded = store.load(&session.id).await.unwrap();
    assert_eq!(loaded.get("a"), None);
    assert_eq!(loaded.get("b"), Some("2"));

    loaded.clear();
    loaded.set_user(7);
    store.save(&mut loaded).await.unwrap();
    let mut loaded = store.load(&session.id).await.unwrap();
    assert!(loaded.data.is_empty());
    assert!(loaded.is_authenticated());

    loaded.clear_user();
    store.save(&mut loaded).await.unwrap();
    assert!(!store.load(&session.id).await.unwrap().is_authenticated());
}

#[tokio::test]
async fn the_token_is_never_stored_only_its_sha256() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("k", "v");
    store.save(&mut session).await.unwrap();
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT id_hash = sha256(convert_to($1, 'UTF8')), position($1 in s::text) \
             FROM sessions s",
            &[&session.id],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the key is the token's SHA-256");
    assert_eq!(
        row.get::<_, i32>(1),
        0,
        "the token appears nowhere in the row"
    );
}

#[tokio::test]
async fn load_of_an_unknown_id_is_not_found() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let unknown = "0".repeat(64);
    assert!(matches!(
        store.load(&unknown).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn malformed_ids_are_rejected_without_any_sql() {
    let db = TestDb::new().await;
    let (store, driver) = counted_store(&db).await;
    let long = "a".repeat(65);
    let short = "a".repeat(63);
    let upper = "A".repeat(64);
    let nul = format!("{}\0", "a".repeat(63));
    let unicode = "é".repeat(32);
    let injection = format!("{}' OR '1'='1", "a".repeat(52));
    let cases = ["", &long, &short, &upper, &nul, &unicode, &injection];
    driver.take();
    for id in cases {
        for result in [
            store.load(id).await.map(|_| ()),
            store.delete(id).await.map(|_| ()),
            store.revoke_session(id).await.map(|_| ()),
        ] {
            let err = result.unwrap_err();
            assert!(matches!(&err, StoreError::InvalidId(_)), "{err:?}");
            if id.len() > 8 {
                assert!(
                    !err.to_string().contains(id),
                    "the error must not echo the id"
                );
            }
        }
    }
    assert_eq!(driver.take(), 0, "no SQL for malformed ids");
}

#[tokio::test]
async fn load_rejects_an_expired_session_without_its_data() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(1).await.unwrap();
    session.set("secret", "value");
    store.save(&mut session).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(store.is_expired(&session).await.unwrap());
    assert!(matches!(
        store.load(&session.id).await,
        Err(StoreError::Expired)
    ));
    assert!(matches!(
        store.save(&mut session).await,
        Err(StoreError::Expired)
    ));
    assert!(matches!(
        store.regenerate_id(&mut session).await,
        Err(StoreError::Expired)
    ));
}

#[tokio::test]
async fn delete_removes_the_session_and_says_whether_it_existed() {
    let db = TestDb::new().await;
    let (store, driver) = counted_store(&db).await;
    let mut session = store.new_session(600).await.unwrap();
    store.save(&mut session).await.unwrap();
    driver.take();
    assert!(store.delete(&session.id).await.unwrap());
    assert_eq!(driver.take(), 1, "delete is one round trip");
    assert!(!store.delete(&session.id).await.unwrap());
    assert!(matches!(
        store.load(&session.id).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn regenerate_id_moves_a_saved_session_old_id_gone_new_id_loads() {
    let db = TestDb::new().await;
    let (store, driver) = counted_store(&db).await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("cart", "3 items");
    store.save(&mut session).await.unwrap();
    let old = session.id.clone();
    session.set_user(99);
    driver.take();
    store.regenerate_id(&mut session).await.unwrap();
    assert_eq!(driver.take(), 1, "regenerate is one statement");
    assert_ne!(session.id, old);
    assert!(is_token(&session.id));
    assert!(matches!(store.load(&old).await, Err(StoreError::NotFound)));
    let loaded = store.load(&session.id).await.unwrap();
    assert_eq!(loaded.get("cart"), Some("3 items"));
    assert_eq!(loaded.user_id, Some(99), "the current state is written too");
    assert_eq!(row_count(&db).await, 1);
}

#[tokio::test]
async fn regenerate_id_is_atomic_never_both_ids_never_neither() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    store.save(&mut session).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let client = db.client().await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut observations = 0u32;
            while !done.load(Ordering::SeqCst) || observations < 10 {
                let n: i64 = client
                    .query_one("SELECT count(*) FROM sessions", &[])
                    .await
                    .unwrap()
                    .get(0);
                assert_eq!(n, 1, "exactly one row at every instant");
                observations += 1;
            }
            observations
        })
    };
    for _ in 0..20 {
        let old = session.id.clone();
        store.regenerate_id(&mut session).await.unwrap();
        assert!(matches!(store.load(&old).await, Err(StoreError::NotFound)));
        assert!(store.load(&session.id).await.is_ok());
    }
    done.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() >= 10);
}

#[tokio::test]
async fn regenerate_id_of_an_unsaved_session_only_changes_the_id() {
    let db = TestDb::new().await;
    let (store, driver) = counted_store(&db).await;
    let mut session = store.new_session(600).await.unwrap();
    let old = session.id.clone();
    driver.take();
    store.regenerate_id(&mut session).await.unwrap();
    assert_eq!(driver.take(), 0);
    assert_ne!(session.id, old);
    assert!(!session.is_saved);
    assert_eq!(row_count(&db).await, 0);
}

#[tokio::test]
async fn regenerate_id_of_a_session_deleted_meanwhile_is_not_found_and_keeps_the_id() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    store.save(&mut session).await.unwrap();
    store.delete(&session.id).await.unwrap();
    let before = session.clone();
    assert!(matches!(
        store.regenerate_id(&mut session).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        session, before,
        "a failed call leaves the session unchanged"
    );
    assert_eq!(row_count(&db).await, 0);
}

#[tokio::test]
async fn user_sessions_are_listed_newest_first_by_handle_and_revocable_one_by_one() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut tokens = Vec::new();
    for i in 0..3 {
        let mut s = store.new_session(600).await.unwrap();
        s.set_user(5);
        s.set("device", format!("d{i}"));
        store.save(&mut s).await.unwrap();
        tokens.push(s.id);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut other = store.new_session(600).await.unwrap();
    other.set_user(6);
    store.save(&mut other).await.unwrap();
    let mut expired = store.new_session(1).await.unwrap();
    expired.set_user(5);
    store.save(&mut expired).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let listed = store.get_user_sessions(5).await.unwrap();
    let devices: Vec<_> = listed.iter().map(|s| s.data["device"].as_str()).collect();
    assert_eq!(devices, ["d2", "d1", "d0"], "unexpired only, newest first");
    for s in &listed {
        assert_eq!(s.user_id, 5);
        assert!(is_token(&s.handle));
        assert!(!tokens.contains(&s.handle), "a handle is not a token");
        assert!(matches!(
            store.load(&s.handle).await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(store.revoke_session(&listed[1].handle).await.unwrap());
    assert!(!store.revoke_session(&listed[1].handle).await.unwrap());
    assert!(matches!(
        store.load(&tokens[1]).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.load(&tokens[0]).await.is_ok());
    assert!(store.load(&tokens[2]).await.is_ok());
    assert!(store.get_user_sessions(404).await.unwrap().is_empty());
}

#[tokio::test]
async fn delete_user_sessions_logs_the_user_out_everywhere_and_counts() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut mine = Vec::new();
    for _ in 0..4 {
        let mut s = store.new_session(600).await.unwrap();
        s.set_user(11);
        store.save(&mut s).await.unwrap();
        mine.push(s.id);
    }
    let mut theirs = store.new_session(600).await.unwrap();
    theirs.set_user(12);
    store.save(&mut theirs).await.unwrap();

    assert_eq!(store.delete_user_sessions(11).await.unwrap(), 4);
    for id in &mine {
        assert!(matches!(store.load(id).await, Err(StoreError::NotFound)));
    }
    assert!(store.load(&theirs.id).await.is_ok());
    assert_eq!(store.delete_user_sessions(11).await.unwrap(), 0);
}

#[tokio::test]
async fn cleanup_removes_exactly_the_expired_rows_across_batches() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let client = db.client().await;
    // 2,500 expired rows (more than two batches) and 30 live ones, written directly.
    client
        .batch_execute(
            "INSERT INTO sessions (id_hash, expires_at) \
             SELECT sha256(('expired' || g)::bytea), now() - make_interval(secs => g) \
             FROM generate_series(1, 2500) g; \
             INSERT INTO sessions (id_hash, expires_at) \
             SELECT sha256(('live' || g)::bytea), now() + interval '1 hour' \
             FROM generate_series(1, 30) g;",
        )
        .await
        .unwrap();
    let mut live = store.new_session(600).await.unwrap();
    store.save(&mut live).await.unwrap();

    assert_eq!(store.cleanup().await.unwrap(), 2500);
    assert_eq!(row_count(&db).await, 31);
    assert!(store.load(&live.id).await.is_ok());
    assert_eq!(store.cleanup().await.unwrap(), 0);
}

#[tokio::test]
async fn data_with_nul_characters_is_rejected_and_nothing_is_written() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("ok", "fine");
    store.save(&mut session).await.unwrap();
    for (key, value) in [("k\0", "v"), ("k", "secr\0et-xyz")] {
        let mut changed = session.clone();
        changed.set(key, value);
        let err = store.save(&mut changed).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidData(m) if m.contains("NUL")),
            "{err:?}"
        );
        assert!(!err.to_string().contains("xyz"), "the value is not echoed");
    }
    let stored = store.load(&session.id).await.unwrap();
    assert_eq!(stored.data, session.data, "the stored session is untouched");
}

#[tokio::test]
async fn oversized_data_is_rejected_with_the_limit_in_the_message() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut session = store.new_session(600).await.unwrap();
    session.set("blob", "x".repeat(1 << 20));
    let err = store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("1048576")),
        "{err:?}"
    );
    assert_eq!(row_count(&db).await, 0);

    session.set("blob", "x".repeat(512 << 10));
    store.save(&mut session).await.unwrap();
    assert_eq!(
        store.load(&session.id).await.unwrap().data["blob"].len(),
        512 << 10
    );
}

#[tokio::test]
async fn the_default_config_matches_the_seed() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let c = store.config();
    assert_eq!(c.cookie_name, "varel_session");
    assert_eq!(c.max_age, 86400);
    assert!(c.http_only);
    assert_eq!(c.secure, None);
    assert_eq!(c.same_site, SameSite::Strict);
    assert_eq!(c.domain, None);
    assert_eq!(c.path, "/");
}

#[tokio::test]
async fn invalid_configs_are_rejected_when_the_store_is_built() {
    let db = TestDb::new().await;
    type Edit = fn(&mut wasm_sessions::Config);
    let cases: [(&str, Edit); 9] = [
        ("max-age", |c| c.max_age = 0),
        ("max-age", |c| c.max_age = -5),
        ("cookie", |c| c.cookie_name = String::new()),
        ("cookie", |c| c.cookie_name = "bad name".into()),
        ("cookie", |c| c.cookie_name = "semi;colon".into()),
        ("Secure", |c| {
            c.same_site = SameSite::None;
            c.secure = Some(false);
        }),
        ("path", |c| c.path = "relative".into()),
        ("domain", |c| c.domain = Some("bad domain;".into())),
        ("__Host-", |c| {
            c.cookie_name = "__Host-sid".into();
            c.domain = Some("example.com".into());
        }),
    ];
    for (word, edit) in cases {
        let err = SessionStore::builder(db.driver())
            .configure(edit)
            .build()
            .await
            .unwrap_err();
        match err {
            BuildError::Config(StoreError::InvalidConfig(message)) => assert!(
                message.to_lowercase().contains(&word.to_lowercase()),
                "{word}: {message}"
            ),
            other => panic!("{word}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn set_cookie_header_carries_every_configured_attribute() {
    let db = TestDb::new().await;
    let store = SessionStore::builder(db.driver())
        .configure(|c| {
            c.cookie_name = "sid".into();
            c.domain = Some("example.com".into());
            c.path = "/app".into();
            c.same_site = SameSite::Lax;
        })
        .build()
        .await
        .unwrap();
    let session = store.new_session(3600).await.unwrap();
    let header = store.set_cookie_header(&session, true).await.unwrap();
    let parts: Vec<&str> = header.split("; ").collect();
    assert_eq!(parts[0], format!("sid={}", session.id));
    for attribute in [
        "Path=/app",
        "Domain=example.com",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
    ] {
        assert!(
            parts.contains(&attribute),
            "{attribute} missing in {header}"
        );
    }
    let max_age: i64 = parts
        .iter()
        .find_map(|p| p.strip_prefix("Max-Age="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((3595..=3600).contains(&max_age), "{max_age}");
    assert!(
        parts
            .iter()
            .any(|p| p.starts_with("Expires=") && p.ends_with(" GMT"))
    );

    let plain = store.set_cookie_header(&session, false).await.unwrap();
    assert!(
        !plain.split("; ").any(|p| p == "Secure"),
        "Secure follows the request"
    );

    let removal = store.removal_cookie_header(true).await.unwrap();
    assert!(removal.starts_with("sid=; "));
    assert!(removal.contains("Max-Age=0"));
    assert!(removal.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"));
}

#[tokio::test]
async fn same_site_none_needs_a_secure_request_when_secure_is_unset() {
    let db = TestDb::new().await;
    let store = SessionStore::builder(db.driver())
        .configure(|c| c.same_site = SameSite::None)
        .build()
        .await
        .unwrap();
    let session = store.new_session(60).await.unwrap();
    assert!(store.set_cookie_header(&session, true).await.is_ok());
    assert!(matches!(
        store.set_cookie_header(&session, false).await,
        Err(StoreError::InvalidConfig(_))
    ));
}

#[tokio::test]
async fn session_id_is_read_from_cookie_headers_and_garbage_is_ignored() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let token = store.generate_session_id().await.unwrap();
    let other = store.generate_session_id().await.unwrap();
    let cases = [
        (format!("varel_session={token}"), Some(&token)),
        (format!("a=b; varel_session={token}; c=d"), Some(&token)),
        (format!("varel_session=\"{token}\""), Some(&token)),
        (
            format!("varel_session=nothex; varel_session={token}"),
            Some(&token),
        ),
        (
            format!("varel_session={token}; varel_session={other}"),
            Some(&token),
        ),
        (format!("other_session={token}"), None),
        ("varel_session".to_owned(), None),
        ("=;;;==; varel_session=\u{0}\u{7f}é".to_owned(), None),
        (String::new(), None),
        ("x".repeat(100_000), None),
    ];
    for (header, expected) in cases {
        let found = store.session_id_from_cookie_header(&header).await.unwrap();
        assert_eq!(found.as_ref(), expected, "{:.60}", header);
    }
}

#[tokio::test]
async fn a_database_that_is_unreachable_gives_a_connection_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        wait_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    };
    let driver =
        PostgresDriver::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), &options)
            .unwrap();
    let store = SessionStore::builder(driver).build().await.unwrap();
    let mut session = store.new_session(60).await.unwrap();
    let started = std::time::Instant::now();
    let err = store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Database(SqlError::ConnectionFailed(_))),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10), "fails fast");
    assert!(!session.is_saved);
}

#[tokio::test]
async fn a_component_that_is_not_a_session_store_is_refused_at_build() {
    let db = TestDb::new().await;
    for bytes in [b"not wasm".to_vec(), b"(component)".to_vec()] {
        let err = SessionStore::builder(db.driver())
            .component(bytes)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::Component(_)), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_each_get_their_own_instance() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut s = store.new_session(600).await.unwrap();
                s.set("i", i.to_string());
                store.save(&mut s).await.unwrap();
                let loaded = store.load(&s.id).await.unwrap();
                assert_eq!(loaded.get("i"), Some(i.to_string().as_str()));
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(row_count(&db).await, 64);
}

#[test]
fn the_component_imports_only_sql_entropy_and_the_wasi_basics_std_needs() {
    let world = wasm_sessions::component_world(wasm_sessions::BUNDLED_COMPONENT).unwrap();
    assert!(
        world
            .imports
            .iter()
            .any(|i| i == "wasm-sessions:store/sql@0.1.0")
    );
    assert!(
        world
            .imports
            .iter()
            .any(|i| i == "wasm-sessions:store/entropy@0.1.0")
    );
    for import in &world.imports {
        let allowed = import.starts_with("wasm-sessions:store/")
            || import.starts_with("wasi:cli/")
            || import.starts_with("wasi:io/")
            || import.starts_with("wasi:clocks/");
        assert!(allowed, "unexpected import {import}");
        for forbidden in ["filesystem", "sockets", "http", "random"] {
            assert!(!import.contains(forbidden), "{import}");
        }
    }
    assert_eq!(world.exports, ["wasm-sessions:store/store@0.1.0"]);
}
