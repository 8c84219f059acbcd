//! The store's behaviour, end to end: the bundled guest component on wasmtime, against real PostgreSQL as
//! the least-privilege runtime role. Every scenario runs in both isolation modes (`name::fresh`,
//! `name::reuse`); time is the store's `ManualClock`, so nothing here sleeps.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::get;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use wasm_sessions::{
    BuildError, Config, EntropyError, EntropySource, Expiry, Isolation, OsEntropy, PostgresDriver,
    PostgresOptions, SameSite, SessionHandle, SessionLayer, SessionStore, SqlError, StoreError,
};
use wasm_sessions_tests::TestDb;

use common::{Fixture, in_both_modes, is_token, secs};

in_both_modes!(
    generated_ids_are_64_lower_case_hex_and_distinct,
    ids_come_from_the_host_entropy_source_only,
    a_guest_that_traps_fails_its_call_and_the_host_keeps_serving,
    new_session_is_unsaved_sends_no_sql_and_expires_after_max_age_by_the_stores_clock,
    new_session_with_refuses_an_expiry_the_configuration_does_not_allow,
    save_then_load_round_trips_data_user_and_label_in_one_statement_each,
    saving_again_updates_the_row_and_updated_at_comes_from_the_stores_clock,
    data_operations_persist_through_the_component,
    the_token_is_never_stored_only_its_sha256_which_is_the_handle,
    load_of_an_unknown_id_is_not_found_in_one_statement,
    malformed_ids_and_handles_are_rejected_without_any_sql,
    an_expired_session_does_not_load_save_or_rotate,
    delete_removes_the_session_and_says_whether_it_existed,
    regenerate_id_moves_a_saved_session_old_id_gone_new_id_loads,
    regenerate_id_is_atomic_never_both_ids_never_neither,
    regenerate_id_of_an_unsaved_session_saves_it_under_a_fresh_token,
    regenerate_id_of_a_session_deleted_meanwhile_is_not_found_and_keeps_the_id,
    user_sessions_are_listed_newest_first_by_handle_and_revocable_one_by_one,
    revoke_session_deletes_only_that_users_session_in_one_statement,
    delete_user_sessions_logs_the_user_out_everywhere_and_counts,
    cleanup_removes_exactly_the_sessions_expired_by_the_stores_clock,
    data_with_nul_characters_is_rejected_and_nothing_is_written,
    oversized_data_is_rejected_unsent_with_the_limit_in_the_message,
    the_data_limit_is_measured_on_the_jsonb_text_postgresql_stores,
    cookie_header_carries_every_configured_attribute_and_counts_down_with_the_clock,
    session_tokens_are_read_from_cookie_headers_and_garbage_is_ignored,
    the_declared_statements_fit_the_schema_as_the_runtime_role,
);

/// Entropy that can be told to fail, which makes the guest trap mid-call.
struct SwitchableEntropy(Arc<AtomicBool>);

impl EntropySource for SwitchableEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(EntropyError("switched off for the test".into()));
        }
        OsEntropy.fill(buf)
    }
}

/// Entropy that returns a fixed pattern, to show tokens come from the host's source only.
struct FixedEntropy;

impl EntropySource for FixedEntropy {
    fn fill(&self, buf: &mut [u8]) -> Result<(), EntropyError> {
        buf.fill(0xab);
        Ok(())
    }
}

/// A saved session with `k=v`.
async fn saved(fx: &Fixture) -> wasm_sessions::Session {
    let mut session = fx.store.new_session().await.unwrap();
    session.set("k", "v");
    fx.store.save(&mut session).await.unwrap();
    session
}

async fn generated_ids_are_64_lower_case_hex_and_distinct(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut seen = HashSet::new();
    for _ in 0..50 {
        let id = fx.store.generate_session_id().await.unwrap();
        assert!(is_token(&id), "not a token: {} chars", id.len());
        assert!(seen.insert(id), "an id repeated");
    }
    assert_eq!(fx.statements(), 0);
}

async fn ids_come_from_the_host_entropy_source_only(isolation: Isolation) {
    let db = TestDb::new().await;
    let store = common::builder(db.driver())
        .entropy(FixedEntropy)
        .isolation(isolation)
        .build()
        .await
        .unwrap();
    assert_eq!(store.generate_session_id().await.unwrap(), "ab".repeat(32));
    let session = store.new_session().await.unwrap();
    assert_eq!(session.id(), "ab".repeat(32));
}

async fn a_guest_that_traps_fails_its_call_and_the_host_keeps_serving(isolation: Isolation) {
    let db = TestDb::new().await;
    let off = Arc::new(AtomicBool::new(false));
    let store = common::builder(db.driver())
        .entropy(SwitchableEntropy(off.clone()))
        .isolation(isolation)
        .build()
        .await
        .unwrap();
    let mut session = store.new_session().await.unwrap();
    session.set("k", "v");
    store.save(&mut session).await.unwrap();

    off.store(true, Ordering::SeqCst);
    let err = store.new_session().await.unwrap_err();
    assert!(matches!(err, StoreError::Guest(_)), "{err:?}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the trap is kept as the source"
    );
    // A rotation draws its token after every check, then traps: nothing is written.
    let mut rotating = session.clone();
    rotating.set("k", "w");
    let err = store.regenerate_id(&mut rotating).await.unwrap_err();
    assert!(matches!(err, StoreError::Guest(_)), "{err:?}");
    assert_eq!(rotating.id(), session.id());

    off.store(false, Ordering::SeqCst);
    let stored = store.load(session.id()).await.unwrap();
    assert_eq!(stored.get_str("k"), Some("v"));
    assert_eq!(stored.version(), session.version());
    let mut fresh = store.new_session().await.unwrap();
    store.save(&mut fresh).await.unwrap();
    assert!(store.load(fresh.id()).await.is_ok());
}

async fn new_session_is_unsaved_sends_no_sql_and_expires_after_max_age_by_the_stores_clock(
    isolation: Isolation,
) {
    let fx = Fixture::new(isolation).await;
    let now = fx.now();
    let session = fx.store.new_session().await.unwrap();
    assert_eq!(fx.statements(), 0, "creating a session sends no SQL");
    assert!(is_token(session.id()));
    assert!(is_token(session.handle()));
    assert_ne!(session.handle(), session.id());
    assert!(!session.is_saved());
    assert_eq!(session.version(), 0);
    assert!(!session.has_changes());
    assert!(session.data().is_empty());
    assert_eq!(session.user_id(), None);
    assert_eq!(session.label(), None);
    assert_eq!(session.expiry(), None);
    assert_eq!(session.created_at(), now);
    assert_eq!(session.updated_at(), now);
    assert_eq!(session.absolute_expires_at(), now + secs(86_400));
    assert_eq!(session.expires_at(), now + secs(86_400));

    assert!(!fx.store.is_expired(&session));
    fx.clock
        .set(session.expires_at() - Duration::from_micros(1));
    assert!(!fx.store.is_expired(&session));
    fx.advance(Duration::from_micros(1));
    assert!(fx.store.is_expired(&session));
    assert_eq!(fx.rows().await, 0);
}

async fn new_session_with_refuses_an_expiry_the_configuration_does_not_allow(isolation: Isolation) {
    let fx = Fixture::with(isolation, |c| c.max_age = 600).await;
    let now = fx.now();
    for expiry in [
        Expiry::OnInactivity(secs(0)),
        Expiry::OnInactivity(Duration::from_millis(999)),
        Expiry::OnInactivity(secs(601)),
        Expiry::AtDateTime(now),
        Expiry::AtDateTime(now - secs(1)),
    ] {
        let err = fx.store.new_session_with(Some(expiry)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{expiry:?}: {err:?}"
        );
    }
    for expiry in [
        Expiry::OnInactivity(secs(1)),
        Expiry::OnInactivity(secs(600)),
        Expiry::AtDateTime(now + secs(1)),
        Expiry::OnSessionEnd,
    ] {
        let session = fx.store.new_session_with(Some(expiry)).await.unwrap();
        assert_eq!(session.expiry(), Some(expiry));
    }
    assert_eq!(fx.statements(), 0);
}

async fn save_then_load_round_trips_data_user_and_label_in_one_statement_each(
    isolation: Isolation,
) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("theme", "dark");
    session.set(
        "greeting",
        "grüß dich 👋 \"quoted\" \\ ' ; DROP TABLE sessions; --",
    );
    session.set("", "empty key");
    session.set_user(42);
    session.set_label(Some("Firefox on Linux".into()));
    assert!(session.has_changes());
    fx.store.save(&mut session).await.unwrap();
    assert_eq!(fx.statements(), 1, "save is one round trip");
    assert!(session.is_saved());
    assert_eq!(session.version(), 1);
    assert!(!session.has_changes());

    let loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(fx.statements(), 1, "load is one round trip");
    assert_eq!(loaded.data(), session.data());
    assert_eq!(loaded.user_id(), Some(42));
    assert!(loaded.is_authenticated());
    assert_eq!(loaded.label(), Some("Firefox on Linux"));
    assert!(loaded.is_saved());
    assert_eq!(loaded.id(), session.id());
    assert_eq!(loaded.handle(), session.handle());
    assert_eq!(loaded.created_at(), session.created_at());
    assert_eq!(loaded.expires_at(), session.expires_at());
    assert_eq!(loaded.absolute_expires_at(), session.absolute_expires_at());
    assert_eq!(loaded.updated_at(), session.updated_at());
    assert_eq!(loaded.version(), session.version());
    assert_eq!(loaded.get_str("theme"), Some("dark"));
    assert_eq!(loaded.get_str(""), Some("empty key"));
}

async fn saving_again_updates_the_row_and_updated_at_comes_from_the_stores_clock(
    isolation: Isolation,
) {
    let fx = Fixture::new(isolation).await;
    // Ten days ahead of the database's clock: every time in the row must be the store's.
    fx.advance(secs(10 * 86_400));
    let mut session = fx.store.new_session().await.unwrap();
    session.set("n", "1");
    fx.store.save(&mut session).await.unwrap();
    let created = fx.now();
    assert_eq!(session.updated_at(), created);
    assert_eq!(
        fx.column::<SystemTime>(session.id(), "updated_at").await,
        created
    );
    assert_eq!(
        fx.column::<SystemTime>(session.id(), "created_at").await,
        created
    );

    fx.advance(secs(5));
    session.set("n", "2");
    assert!(session.remove("missing").is_none());
    fx.statements();
    fx.store.save(&mut session).await.unwrap();
    assert_eq!(fx.statements(), 1);
    assert_eq!(fx.rows().await, 1);
    assert_eq!(session.created_at(), created);
    assert_eq!(
        session.updated_at(),
        created + secs(5),
        "no trigger: the store's clock"
    );
    assert_eq!(
        fx.column::<SystemTime>(session.id(), "updated_at").await,
        created + secs(5)
    );
    assert_eq!(session.version(), 2);
    let loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(loaded.get_str("n"), Some("2"));
    assert_eq!(loaded.updated_at(), created + secs(5));
}

async fn data_operations_persist_through_the_component(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("a", "1");
    session.set("b", "2");
    fx.store.save(&mut session).await.unwrap();

    let mut loaded = fx.store.load(session.id()).await.unwrap();
    let removed = loaded.remove("a");
    assert_eq!(removed.as_ref().and_then(|v| v.as_str()), Some("1"));
    fx.store.save(&mut loaded).await.unwrap();
    let mut loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(loaded.get_str("a"), None);
    assert_eq!(loaded.get_str("b"), Some("2"));

    loaded.clear();
    loaded.set_user(7);
    fx.store.save(&mut loaded).await.unwrap();
    let mut loaded = fx.store.load(session.id()).await.unwrap();
    assert!(loaded.is_empty());
    assert!(loaded.is_authenticated());

    loaded.clear_user();
    loaded.set_label(Some("phone".into()));
    fx.store.save(&mut loaded).await.unwrap();
    let mut loaded = fx.store.load(session.id()).await.unwrap();
    assert!(!loaded.is_authenticated());
    assert_eq!(loaded.label(), Some("phone"));

    loaded.set_label(None);
    fx.store.save(&mut loaded).await.unwrap();
    assert_eq!(fx.store.load(session.id()).await.unwrap().label(), None);
}

async fn the_token_is_never_stored_only_its_sha256_which_is_the_handle(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("k", "v");
    session.set_user(3);
    fx.store.save(&mut session).await.unwrap();
    let row = fx
        .db
        .client()
        .await
        .query_one(
            "SELECT id_hash = sha256(convert_to($1, 'UTF8')), encode(id_hash, 'hex'), \
             position($1 in s::text) FROM wasm_sessions.sessions s",
            &[&session.id()],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the key is the token's SHA-256");
    assert_eq!(row.get::<_, String>(1), session.handle());
    assert_eq!(
        row.get::<_, i32>(2),
        0,
        "the token appears nowhere in the row"
    );
}

async fn load_of_an_unknown_id_is_not_found_in_one_statement(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let unknown = "0".repeat(64);
    assert!(matches!(
        fx.store.load(&unknown).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(fx.statements(), 1);
}

async fn malformed_ids_and_handles_are_rejected_without_any_sql(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let long = "a".repeat(65);
    let short = "a".repeat(63);
    let upper = "A".repeat(64);
    let nul = format!("{}\0", "a".repeat(63));
    let unicode = "é".repeat(32);
    let injection = format!("{}' OR '1'='1", "a".repeat(52));
    let cases = ["", &long, &short, &upper, &nul, &unicode, &injection];
    fx.statements();
    for id in cases {
        for result in [
            fx.store.load(id).await.map(|_| ()),
            fx.store.delete(id).await.map(|_| ()),
            fx.store.revoke_session(1, id).await.map(|_| ()),
            fx.store
                .delete_user_sessions_except(1, id)
                .await
                .map(|_| ()),
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
    assert_eq!(fx.statements(), 0, "no SQL for malformed ids");
}

async fn an_expired_session_does_not_load_save_or_rotate(isolation: Isolation) {
    let fx = Fixture::with(isolation, |c| c.max_age = 60).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("secret", "value");
    fx.store.save(&mut session).await.unwrap();
    assert_eq!(session.expires_at(), fx.now() + secs(60));

    fx.clock
        .set(session.expires_at() - Duration::from_micros(1));
    assert!(
        fx.store.load(session.id()).await.is_ok(),
        "alive until the deadline"
    );
    fx.clock.set(session.expires_at());
    assert!(fx.store.is_expired(&session));
    assert!(matches!(
        fx.store.load(session.id()).await,
        Err(StoreError::Expired)
    ));
    session.set("late", "write");
    assert!(matches!(
        fx.store.save(&mut session).await,
        Err(StoreError::Expired)
    ));
    assert!(matches!(
        fx.store.regenerate_id(&mut session).await,
        Err(StoreError::Expired)
    ));
    assert_eq!(fx.column::<i64>(session.id(), "version").await, 1);
    assert_eq!(fx.rows().await, 1, "an expired row stays until cleanup");
}

async fn delete_removes_the_session_and_says_whether_it_existed(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let session = saved(&fx).await;
    fx.statements();
    assert!(fx.store.delete(session.id()).await.unwrap());
    assert_eq!(fx.statements(), 1, "delete is one round trip");
    assert!(!fx.store.delete(session.id()).await.unwrap());
    assert!(matches!(
        fx.store.load(session.id()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(fx.rows().await, 0);
}

async fn regenerate_id_moves_a_saved_session_old_id_gone_new_id_loads(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("cart", "3 items");
    fx.store.save(&mut session).await.unwrap();
    let old = session.clone();
    fx.advance(secs(3));
    session.set_user(99);
    fx.statements();
    fx.store.regenerate_id(&mut session).await.unwrap();
    assert_eq!(fx.statements(), 1, "regenerate is one statement");
    assert_ne!(session.id(), old.id());
    assert_ne!(session.handle(), old.handle());
    assert!(is_token(session.id()));
    assert_eq!(session.created_at(), old.created_at());
    assert_eq!(session.absolute_expires_at(), old.absolute_expires_at());
    assert!(matches!(
        fx.store.load(old.id()).await,
        Err(StoreError::NotFound)
    ));
    let loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(loaded.get_str("cart"), Some("3 items"));
    assert_eq!(loaded.user_id(), Some(99), "the changes are written too");
    assert_eq!(loaded.version(), 2);
    assert_eq!(fx.rows().await, 1);
}

async fn regenerate_id_is_atomic_never_both_ids_never_neither(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = saved(&fx).await;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let client = fx.db.client().await;
        let done = done.clone();
        tokio::spawn(async move {
            let mut observations = 0u32;
            while !done.load(Ordering::SeqCst) || observations < 10 {
                let n: i64 = client
                    .query_one("SELECT count(*) FROM wasm_sessions.sessions", &[])
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
        let old = session.id().to_owned();
        fx.store.regenerate_id(&mut session).await.unwrap();
        assert!(matches!(
            fx.store.load(&old).await,
            Err(StoreError::NotFound)
        ));
        assert!(fx.store.load(session.id()).await.is_ok());
    }
    done.store(true, Ordering::SeqCst);
    assert!(watcher.await.unwrap() >= 10);
}

async fn regenerate_id_of_an_unsaved_session_saves_it_under_a_fresh_token(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("k", "v");
    let old = session.id().to_owned();
    fx.store.regenerate_id(&mut session).await.unwrap();
    assert_eq!(fx.statements(), 1, "one insert under the new token");
    assert_ne!(session.id(), old);
    assert!(session.is_saved());
    assert_eq!(session.version(), 1);
    assert_eq!(fx.rows().await, 1);
    assert!(matches!(
        fx.store.load(&old).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        fx.store.load(session.id()).await.unwrap().get_str("k"),
        Some("v")
    );
}

async fn regenerate_id_of_a_session_deleted_meanwhile_is_not_found_and_keeps_the_id(
    isolation: Isolation,
) {
    let fx = Fixture::new(isolation).await;
    let mut session = saved(&fx).await;
    fx.store.delete(session.id()).await.unwrap();
    session.set("k", "changed");
    let before = session.clone();
    assert!(matches!(
        fx.store.regenerate_id(&mut session).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        session.id(),
        before.id(),
        "a failed call leaves the session unchanged"
    );
    assert_eq!(session.version(), before.version());
    assert!(session.is_saved());
    assert!(session.has_changes());
    assert_eq!(session.data(), before.data());
    assert_eq!(fx.rows().await, 0, "never recreated");
}

async fn user_sessions_are_listed_newest_first_by_handle_and_revocable_one_by_one(
    isolation: Isolation,
) {
    let fx = Fixture::new(isolation).await;
    let mut mine = Vec::new();
    for i in 0..3 {
        let mut s = fx.store.new_session().await.unwrap();
        s.set_user(5);
        s.set("device", format!("d{i}"));
        s.set_label(Some(format!("device {i}")));
        fx.store.save(&mut s).await.unwrap();
        mine.push(s);
        fx.advance(secs(1));
    }
    let mut other = fx.store.new_session().await.unwrap();
    other.set_user(6);
    fx.store.save(&mut other).await.unwrap();
    let mut expired = fx
        .store
        .new_session_with(Some(Expiry::AtDateTime(fx.now() + secs(10))))
        .await
        .unwrap();
    expired.set_user(5);
    fx.store.save(&mut expired).await.unwrap();
    fx.advance(secs(10));

    let listed = fx.store.get_user_sessions(5).await.unwrap();
    let devices: Vec<_> = listed.iter().map(|s| s.data["device"].as_str()).collect();
    assert_eq!(
        devices,
        [Some("d2"), Some("d1"), Some("d0")],
        "unexpired only, newest first"
    );
    let labels: Vec<_> = listed.iter().map(|s| s.label.as_deref()).collect();
    assert_eq!(
        labels,
        [Some("device 2"), Some("device 1"), Some("device 0")]
    );
    for (listed, session) in listed.iter().zip(mine.iter().rev()) {
        assert_eq!(listed.user_id, 5);
        assert_eq!(listed.handle, session.handle());
        assert_eq!(listed.created_at, session.created_at());
        assert_eq!(listed.expires_at, session.expires_at());
        assert!(is_token(&listed.handle));
        assert_ne!(listed.handle, session.id(), "a handle is not a token");
        assert!(matches!(
            fx.store.load(&listed.handle).await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(fx.store.revoke_session(5, &listed[1].handle).await.unwrap());
    assert!(!fx.store.revoke_session(5, &listed[1].handle).await.unwrap());
    assert!(matches!(
        fx.store.load(mine[1].id()).await,
        Err(StoreError::NotFound)
    ));
    assert!(fx.store.load(mine[0].id()).await.is_ok());
    assert!(fx.store.load(mine[2].id()).await.is_ok());
    assert!(fx.store.get_user_sessions(404).await.unwrap().is_empty());
}

async fn revoke_session_deletes_only_that_users_session_in_one_statement(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut first = fx.store.new_session().await.unwrap();
    first.set_user(1);
    fx.store.save(&mut first).await.unwrap();
    let mut second = fx.store.new_session().await.unwrap();
    second.set_user(2);
    fx.store.save(&mut second).await.unwrap();
    let anonymous = saved(&fx).await;
    fx.statements();

    assert!(
        !fx.store.revoke_session(2, first.handle()).await.unwrap(),
        "another user's handle deletes nothing"
    );
    assert_eq!(fx.statements(), 1, "one statement, no check-then-act");
    assert!(
        !fx.store
            .revoke_session(1, anonymous.handle())
            .await
            .unwrap()
    );
    assert!(
        !fx.store.revoke_session(1, first.id()).await.unwrap(),
        "a token is not a handle"
    );
    assert_eq!(fx.rows().await, 3);

    fx.statements();
    assert!(fx.store.revoke_session(1, first.handle()).await.unwrap());
    assert_eq!(fx.statements(), 1);
    assert!(matches!(
        fx.store.load(first.id()).await,
        Err(StoreError::NotFound)
    ));
    assert!(fx.store.load(second.id()).await.is_ok());
    assert!(fx.store.load(anonymous.id()).await.is_ok());

    let handle = second.handle();
    let upper = handle.to_uppercase();
    let long = format!("{handle}0");
    fx.statements();
    for bad in ["", &handle[..63], upper.as_str(), &long, &"g".repeat(64)] {
        assert!(
            matches!(
                fx.store.revoke_session(2, bad).await,
                Err(StoreError::InvalidId(_))
            ),
            "{bad:?}"
        );
    }
    assert_eq!(fx.statements(), 0, "no SQL for a malformed handle");
    assert!(fx.store.load(second.id()).await.is_ok());
}

async fn delete_user_sessions_logs_the_user_out_everywhere_and_counts(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut mine = Vec::new();
    for _ in 0..4 {
        let mut s = fx.store.new_session().await.unwrap();
        s.set_user(11);
        fx.store.save(&mut s).await.unwrap();
        mine.push(s);
    }
    let mut theirs = fx.store.new_session().await.unwrap();
    theirs.set_user(12);
    fx.store.save(&mut theirs).await.unwrap();

    fx.statements();
    assert_eq!(fx.store.delete_user_sessions(11).await.unwrap(), 4);
    assert_eq!(fx.statements(), 1);
    for s in &mine {
        assert!(matches!(
            fx.store.load(s.id()).await,
            Err(StoreError::NotFound)
        ));
    }
    assert!(fx.store.load(theirs.id()).await.is_ok());
    assert_eq!(fx.store.delete_user_sessions(11).await.unwrap(), 0);
}

async fn cleanup_removes_exactly_the_sessions_expired_by_the_stores_clock(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    // 25 rows expired by the store's clock and 30 that expire an hour after it, written directly.
    fx.db
        .client()
        .await
        .execute(
            "INSERT INTO wasm_sessions.sessions (id_hash, expires_at) \
             SELECT sha256(('row' || g)::bytea), \
             CASE WHEN g <= 25 THEN $1::timestamptz - make_interval(secs => g) \
             ELSE $1::timestamptz + interval '1 hour' END \
             FROM generate_series(1, 55) g",
            &[&fx.now()],
        )
        .await
        .unwrap();
    let live = saved(&fx).await;

    assert_eq!(fx.store.count_expired(fx.now()).await.unwrap(), 25);
    assert_eq!(fx.store.cleanup().await.unwrap(), 25);
    assert_eq!(fx.rows().await, 31);
    assert_eq!(fx.store.cleanup().await.unwrap(), 0);
    // An hour later by the store's clock (not the database's), the 30 have expired too.
    fx.advance(secs(3600));
    assert_eq!(fx.store.cleanup().await.unwrap(), 30);
    assert_eq!(fx.rows().await, 1);
    assert!(fx.store.load(live.id()).await.is_ok());
}

async fn data_with_nul_characters_is_rejected_and_nothing_is_written(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("ok", "fine");
    fx.store.save(&mut session).await.unwrap();
    fx.statements();

    type Edit = fn(&mut wasm_sessions::Session);
    let edits: [(&str, Edit); 5] = [
        ("a key", |s| s.set("k\0", "v")),
        ("a value", |s| s.set("k", "secr\0et-xyz")),
        ("a string in an object", |s| {
            s.insert("o", BTreeMap::from([("s", "secr\0et-xyz")]))
                .unwrap();
        }),
        ("a key in an object", |s| {
            s.insert("o", BTreeMap::from([("k\0xyz", 1)])).unwrap();
        }),
        ("the label", |s| s.set_label(Some("secr\0et-xyz".into()))),
    ];
    for (what, edit) in edits {
        let mut changed = session.clone();
        edit(&mut changed);
        let err = fx.store.save(&mut changed).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidData(m) if m.contains("NUL")),
            "{what}: {err:?}"
        );
        assert!(
            !err.to_string().contains("xyz"),
            "{what}: the value is echoed"
        );
        assert_eq!(fx.statements(), 0, "{what}: refused unsent");

        // The same data in a new session is refused too, and no row appears.
        let mut fresh = fx.store.new_session().await.unwrap();
        edit(&mut fresh);
        let err = fx.store.save(&mut fresh).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidData(_)),
            "{what}: {err:?}"
        );
        assert_eq!(fx.statements(), 0, "{what}: refused unsent");
    }
    let stored = fx.store.load(session.id()).await.unwrap();
    assert_eq!(
        stored.data(),
        session.data(),
        "the stored session is untouched"
    );
    assert_eq!(stored.version(), 1);
    assert_eq!(fx.rows().await, 1);
}

async fn oversized_data_is_rejected_unsent_with_the_limit_in_the_message(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let mut session = fx.store.new_session().await.unwrap();
    session.set("blob", "x".repeat(1 << 20));
    let err = fx.store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("1048576")),
        "{err:?}"
    );
    assert_eq!(fx.statements(), 0);
    assert_eq!(fx.rows().await, 0);

    session.set("blob", "x".repeat(512 << 10));
    fx.store.save(&mut session).await.unwrap();
    let loaded = fx.store.load(session.id()).await.unwrap();
    assert_eq!(loaded.get_str("blob").map(str::len), Some(512 << 10));
}

async fn the_data_limit_is_measured_on_the_jsonb_text_postgresql_stores(isolation: Isolation) {
    let fx = Fixture::with(isolation, |c| c.max_data_bytes = 100).await;
    // `{"k": "xx...x"}` is n + 9 bytes of JSONB text (PostgreSQL writes a space after the colon) and
    // n + 8 compact: with n = 92 the compact JSON fits the limit, the stored text does not.
    let mut session = fx.store.new_session().await.unwrap();
    session.set("k", "x".repeat(92));
    let err = fx.store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m == "session data is 101 bytes of JSON; the limit is 100"),
        "{err:?}"
    );
    assert_eq!(
        fx.statements(),
        2,
        "the database measured it: the insert and its check"
    );
    assert_eq!(fx.rows().await, 0);

    session.set("k", "x".repeat(91));
    fx.store.save(&mut session).await.unwrap();
    assert_eq!(
        fx.column::<i32>(session.id(), "octet_length(data::text)")
            .await,
        100,
        "exactly the limit is accepted"
    );
    fx.statements();
    session.set("k", "x".repeat(92));
    let err = fx.store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::InvalidData(m) if m.contains("101 bytes")),
        "{err:?}"
    );
    assert_eq!(fx.statements(), 2, "the update and its check");
    let stored = fx.store.load(session.id()).await.unwrap();
    assert_eq!(stored.get_str("k").map(str::len), Some(91));
    assert_eq!(stored.version(), 1);
}

async fn cookie_header_carries_every_configured_attribute_and_counts_down_with_the_clock(
    isolation: Isolation,
) {
    let fx = Fixture::with(isolation, |c| {
        c.cookie_name = "sid".into();
        c.domain = Some("example.com".into());
        c.path = "/app".into();
        c.same_site = SameSite::Lax;
        c.max_age = 3600;
    })
    .await;
    let session = fx.store.new_session().await.unwrap();
    let header = fx.store.cookie_header(&session).await.unwrap();
    let parts: Vec<&str> = header.split("; ").collect();
    assert_eq!(parts[0], format!("sid={}", session.id()));
    for attribute in [
        "Path=/app",
        "Domain=example.com",
        "Max-Age=3600",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
    ] {
        assert!(
            parts.contains(&attribute),
            "{attribute} missing in {header}"
        );
    }
    assert!(
        parts
            .iter()
            .any(|p| p.starts_with("Expires=") && p.ends_with(" GMT")),
        "{header}"
    );

    fx.advance(secs(600));
    let later = fx.store.cookie_header(&session).await.unwrap();
    assert!(later.contains("; Max-Age=3000;"), "{later}");

    let removal = fx.store.removal_cookie_header().await.unwrap();
    assert!(removal.starts_with("sid=; "), "{removal}");
    assert!(removal.contains("Max-Age=0"));
    assert!(removal.contains("Expires=Thu, 01 Jan 1970 00:00:00 GMT"));
    assert_eq!(fx.statements(), 0, "cookies need no SQL");

    let plain = fx
        .store_with(|c| {
            c.secure = false;
            c.http_only = false;
        })
        .await;
    let header = plain.cookie_header(&session).await.unwrap();
    assert!(
        !header.split("; ").any(|p| p == "Secure" || p == "HttpOnly"),
        "{header}"
    );
}

/// The layer's view of a request's session: the handle of the session its `Cookie` header named, or of
/// a fresh one.
async fn handle_seen_for(app: &Router, cookie: &str) -> String {
    let mut request = Request::builder().uri("/");
    if let Ok(value) = header::HeaderValue::from_bytes(cookie.as_bytes()) {
        request = request.header(header::COOKIE, value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

async fn session_tokens_are_read_from_cookie_headers_and_garbage_is_ignored(isolation: Isolation) {
    async fn handle(session: SessionHandle) -> Result<String, StoreError> {
        session.handle().await
    }
    let fx = Fixture::new(isolation).await;
    let app = Router::new()
        .route("/", get(handle))
        .layer(SessionLayer::new(fx.store.clone()));
    let token = saved(&fx).await;
    let other = saved(&fx).await;
    let t = token.id();
    let o = other.id();
    let cases = [
        (format!("varel_session={t}"), Some(&token)),
        (format!("a=b; varel_session={t}; c=d"), Some(&token)),
        (format!("varel_session=\"{t}\""), Some(&token)),
        (format!(" varel_session = {t} "), Some(&token)),
        (
            format!("varel_session=nothex; varel_session={t}"),
            Some(&token),
        ),
        (
            format!("varel_session={t}; varel_session={o}"),
            Some(&token),
        ),
        (format!("other_session={t}"), None),
        (format!("varel_session={}", t.to_uppercase()), None),
        ("varel_session".to_owned(), None),
        ("=;;;==; varel_session=é".to_owned(), None),
        (String::new(), None),
        ("x".repeat(100_000), None),
    ];
    for (cookie, expected) in cases {
        let seen = handle_seen_for(&app, &cookie).await;
        match expected {
            Some(session) => assert_eq!(seen, session.handle(), "{cookie:.80}"),
            None => {
                assert!(is_token(&seen), "{cookie:.80}");
                assert_ne!(seen, token.handle(), "{cookie:.80}");
                assert_ne!(seen, other.handle(), "{cookie:.80}");
            }
        }
    }
}

async fn the_declared_statements_fit_the_schema_as_the_runtime_role(isolation: Isolation) {
    let fx = Fixture::new(isolation).await;
    let statements = fx.store.statements();
    assert!(!statements.is_empty());
    for statement in statements {
        assert!(
            statement.contains(wasm_sessions::SESSIONS_TABLE),
            "{statement}"
        );
        assert!(wasm_sessions::is_data_statement(statement), "{statement}");
    }
    fx.store.check_statements().await.unwrap();
    assert_eq!(fx.statements(), 0, "preparing runs nothing");

    // A schema the statements no longer fit is reported, naming the statement.
    fx.db
        .client()
        .await
        .batch_execute("ALTER TABLE wasm_sessions.sessions RENAME COLUMN label TO device")
        .await
        .unwrap();
    // A fresh store, so that no pooled connection has the statements prepared already.
    let store = common::builder(fx.db.driver())
        .isolation(isolation)
        .build()
        .await
        .unwrap();
    let err = store.check_statements().await.unwrap_err();
    match &err {
        StoreError::Database(SqlError::QueryFailed(m)) => {
            assert!(m.contains("preparing `") && m.contains("label"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_default_config_is_secure_and_matches_the_seed() {
    let db = TestDb::new().await;
    let store = common::builder(db.driver()).build().await.unwrap();
    let c = store.config();
    assert_eq!(c.cookie_name, "varel_session");
    assert_eq!(c.max_age, 86_400);
    assert!(c.http_only);
    assert!(c.secure, "Secure by default");
    assert_eq!(c.same_site, SameSite::Strict);
    assert_eq!(c.domain, None);
    assert_eq!(c.path, "/");
    assert_eq!(c.idle_timeout, None);
    assert_eq!(c.max_data_bytes, 1_048_576);
    assert_eq!(c.concurrency, wasm_sessions::Concurrency::Merge);
}

#[tokio::test]
async fn invalid_configs_are_rejected_when_the_store_is_built() {
    let db = TestDb::new().await;
    type Edit = fn(&mut Config);
    let cases: [(&str, Edit); 13] = [
        ("max-age", |c| c.max_age = 0),
        ("max-age", |c| c.max_age = -5),
        ("cookie-name", |c| c.cookie_name = String::new()),
        ("cookie-name", |c| c.cookie_name = "bad name".into()),
        ("cookie-name", |c| c.cookie_name = "semi;colon".into()),
        ("SameSite=None requires Secure", |c| {
            c.same_site = SameSite::None;
            c.secure = false;
        }),
        ("path", |c| c.path = "relative".into()),
        ("domain", |c| c.domain = Some("bad domain;".into())),
        ("__Host-", |c| {
            c.cookie_name = "__Host-sid".into();
            c.domain = Some("example.com".into());
        }),
        ("__Secure-", |c| {
            c.cookie_name = "__Secure-sid".into();
            c.secure = false;
        }),
        ("idle-timeout", |c| c.idle_timeout = Some(0)),
        ("max-data-bytes", |c| c.max_data_bytes = 1),
        ("max-data-bytes", |c| c.max_data_bytes = u32::MAX),
    ];
    for (word, edit) in cases {
        let err = common::builder(db.driver())
            .configure(edit)
            .build()
            .await
            .unwrap_err();
        match err {
            BuildError::Config(StoreError::InvalidConfig(message)) => {
                assert!(message.contains(word), "{word}: {message}")
            }
            other => panic!("{word}: {other:?}"),
        }
    }
    // SameSite=None is fine with Secure (the default).
    let store = common::builder(db.driver())
        .configure(|c| c.same_site = SameSite::None)
        .build()
        .await
        .unwrap();
    let session = store.new_session().await.unwrap();
    let header = store.cookie_header(&session).await.unwrap();
    assert!(
        header.contains("; Secure") && header.contains("SameSite=None"),
        "{header}"
    );
}

#[tokio::test]
async fn a_database_that_is_unreachable_gives_a_typed_connection_error() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = PostgresOptions {
        connect_timeout: secs(2),
        wait_timeout: secs(2),
        ..PostgresOptions::default()
    };
    let driver =
        PostgresDriver::connect(&format!("postgres://postgres@127.0.0.1:{port}/x"), &options)
            .unwrap();
    let store = common::builder(driver).build().await.unwrap();
    let mut session = store.new_session().await.unwrap();
    let err = store.save(&mut session).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Database(SqlError::ConnectionFailed(_))),
        "{err:?}"
    );
    assert_eq!(err.http_answer().status, 503);
    assert!(!session.is_saved());
    let err = store.load(session.id()).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Database(SqlError::ConnectionFailed(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_component_that_is_not_a_session_store_is_refused_at_build() {
    let db = TestDb::new().await;
    // Not wasm; a component in text form (no text support is compiled in); a core module.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    for bytes in [b"not wasm".to_vec(), b"(component)".to_vec(), core_module] {
        let err = SessionStore::builder(db.driver())
            .component(bytes)
            .build()
            .await
            .unwrap_err();
        assert!(matches!(err, BuildError::Component(_)), "{err:?}");
    }
}

#[test]
fn the_component_imports_exactly_sql_entropy_and_clock_and_exports_the_store() {
    let world = wasm_sessions::component_world(wasm_sessions::BUNDLED_COMPONENT).unwrap();
    let mut imports = world.imports.clone();
    imports.sort();
    assert_eq!(
        imports,
        [
            "wasm-sessions:store/clock@0.2.0",
            "wasm-sessions:store/entropy@0.2.0",
            "wasm-sessions:store/sql@0.2.0",
        ],
        "no WASI, nothing else"
    );
    assert_eq!(world.exports, ["wasm-sessions:store/store@0.2.0"]);
}
