//! Per-session expiry (issue 14), end to end on the store's `ManualClock`: `OnInactivity` slides within
//! the absolute lifetime, `AtDateTime` ends at its time, `OnSessionEnd` makes a browser-session cookie
//! while the server still ends the session; the mode is stored with the session; modes the
//! configuration does not allow are refused.

mod common;

use std::time::Duration;

use wasm_sessions::{Config, Expiry, Session, StoreError};

use common::{Fixture, REUSE, secs};

async fn fixture(edit: impl FnOnce(&mut Config) + Send + 'static) -> Fixture {
    Fixture::with(REUSE, edit).await
}

/// A new session with `expiry`, saved.
async fn saved_with(fx: &Fixture, expiry: Expiry) -> Session {
    let mut session = fx.store.new_session_with(Some(expiry)).await.unwrap();
    session.set("k", "v");
    fx.store.save(&mut session).await.unwrap();
    session
}

/// Loads `token`; `Err` when it is expired.
async fn alive(fx: &Fixture, token: &str) -> Result<Session, StoreError> {
    fx.store.load(token).await
}

fn is_expired(outcome: Result<Session, StoreError>) -> bool {
    matches!(outcome, Err(StoreError::Expired))
}

#[tokio::test]
async fn on_inactivity_slides_with_use_and_ends_after_that_long_unused() {
    // The configured idle timeout (30 s) is replaced by the session's 100 s.
    let fx = fixture(|c| {
        c.max_age = 1000;
        c.idle_timeout = Some(30);
    })
    .await;
    let start = fx.now();
    let session = saved_with(&fx, Expiry::OnInactivity(secs(100))).await;
    assert_eq!(session.expires_at(), start + secs(100));
    assert_eq!(session.absolute_expires_at(), start + secs(1000));

    fx.advance(secs(90));
    let used = alive(&fx, session.id()).await.unwrap();
    assert_eq!(used.expires_at(), start + secs(190), "a load extends it");
    fx.advance(secs(99));
    let mut used = alive(&fx, session.id()).await.unwrap();
    assert_eq!(used.expires_at(), start + secs(289));
    fx.advance(secs(5));
    used.set("k", "w");
    fx.store.save(&mut used).await.unwrap();
    assert_eq!(used.expires_at(), start + secs(294), "so does a save");

    fx.advance(secs(100));
    assert!(
        is_expired(alive(&fx, session.id()).await),
        "unused for 100 s"
    );
}

#[tokio::test]
async fn on_inactivity_never_outlives_the_absolute_lifetime() {
    let fx = fixture(|c| c.max_age = 1000).await;
    let session = saved_with(&fx, Expiry::OnInactivity(secs(100))).await;
    let absolute = session.absolute_expires_at();
    while fx.now() + secs(50) < absolute {
        fx.advance(secs(50));
        let used = alive(&fx, session.id()).await.unwrap();
        assert!(used.expires_at() <= absolute);
    }
    fx.clock.set(absolute - Duration::from_micros(1));
    assert_eq!(
        alive(&fx, session.id()).await.unwrap().expires_at(),
        absolute
    );
    fx.clock.set(absolute);
    assert!(
        is_expired(alive(&fx, session.id()).await),
        "used all along, still ends at max-age"
    );
}

#[tokio::test]
async fn at_date_time_ends_at_that_time_and_use_does_not_extend_it() {
    let fx = fixture(|c| c.max_age = 1000).await;
    let start = fx.now();
    let at = start + secs(300);
    let session = saved_with(&fx, Expiry::AtDateTime(at)).await;
    assert_eq!(session.expires_at(), at);
    let cookie = fx.store.cookie_header(&session).await.unwrap();
    assert!(cookie.contains("; Max-Age=300;"), "{cookie}");

    fx.clock.set(at - Duration::from_micros(1));
    fx.statements();
    let mut used = alive(&fx, session.id()).await.unwrap();
    assert_eq!(fx.statements(), 1, "nothing to extend");
    assert_eq!(used.expires_at(), at);
    used.set("k", "w");
    fx.store.save(&mut used).await.unwrap();
    assert_eq!(used.expires_at(), at, "a save does not extend it");
    fx.clock.set(at);
    assert!(is_expired(alive(&fx, session.id()).await));

    // A time past the absolute deadline is capped by it.
    let late = saved_with(&fx, Expiry::AtDateTime(fx.now() + secs(5000))).await;
    assert_eq!(late.expires_at(), late.absolute_expires_at());
    assert_eq!(late.absolute_expires_at(), fx.now() + secs(1000));
    let cookie = fx.store.cookie_header(&late).await.unwrap();
    assert!(cookie.contains("; Max-Age=1000;"), "{cookie}");
    fx.advance(secs(1000));
    assert!(is_expired(alive(&fx, late.id()).await));
}

#[tokio::test]
async fn at_date_time_still_honours_the_configured_idle_timeout() {
    let fx = fixture(|c| {
        c.max_age = 1000;
        c.idle_timeout = Some(60);
    })
    .await;
    let start = fx.now();
    let at = start + secs(300);
    let unused = saved_with(&fx, Expiry::AtDateTime(at)).await;
    let used = saved_with(&fx, Expiry::AtDateTime(at)).await;
    assert_eq!(unused.expires_at(), start + secs(60));

    while fx.now() + secs(50) < at {
        fx.advance(secs(50));
        let loaded = alive(&fx, used.id()).await.unwrap();
        assert!(loaded.expires_at() <= at, "extended, never past its time");
    }
    assert!(is_expired(alive(&fx, unused.id()).await), "unused for 60 s");
    fx.clock.set(at);
    assert!(is_expired(alive(&fx, used.id()).await));
}

#[tokio::test]
async fn on_session_end_has_a_browser_session_cookie_but_the_server_still_ends_it() {
    let fx = fixture(|c| {
        c.max_age = 1000;
        c.idle_timeout = Some(60);
    })
    .await;
    let unused = saved_with(&fx, Expiry::OnSessionEnd).await;
    let used = saved_with(&fx, Expiry::OnSessionEnd).await;
    let cookie = fx.store.cookie_header(&used).await.unwrap();
    assert!(
        cookie.starts_with(&format!("varel_session={}; ", used.id())),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    assert_eq!(used.expires_at(), fx.now() + secs(60));

    let absolute = used.absolute_expires_at();
    while fx.now() + secs(50) < absolute {
        fx.advance(secs(50));
        alive(&fx, used.id()).await.unwrap();
    }
    assert!(
        is_expired(alive(&fx, unused.id()).await),
        "the idle timeout ends it"
    );
    fx.clock.set(absolute);
    assert!(
        is_expired(alive(&fx, used.id()).await),
        "the absolute deadline ends it"
    );
}

#[tokio::test]
async fn the_expiry_mode_is_stored_with_the_session_survives_load_and_can_change() {
    let fx = fixture(|c| c.max_age = 1000).await;
    let at = fx.now() + secs(500);
    for (expiry, mode, value) in [
        (Expiry::OnInactivity(secs(120)), "on-inactivity", Some(120)),
        (
            Expiry::AtDateTime(at),
            "at",
            Some(
                i64::try_from(
                    at.duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_micros(),
                )
                .unwrap(),
            ),
        ),
        (Expiry::OnSessionEnd, "on-session-end", None),
    ] {
        let session = saved_with(&fx, expiry).await;
        assert_eq!(session.expiry(), Some(expiry));
        assert_eq!(
            fx.column::<Option<String>>(session.id(), "expiry_mode")
                .await
                .as_deref(),
            Some(mode)
        );
        assert_eq!(
            fx.column::<Option<i64>>(session.id(), "expiry_value").await,
            value
        );
        let loaded = alive(&fx, session.id()).await.unwrap();
        assert_eq!(loaded.expiry(), Some(expiry), "{mode}");
    }

    // Changed on a saved session: a browser session, then back to the configuration's policy.
    let session = saved_with(&fx, Expiry::AtDateTime(at)).await;
    let mut loaded = alive(&fx, session.id()).await.unwrap();
    loaded.set_expiry(Some(Expiry::OnSessionEnd));
    fx.store.save(&mut loaded).await.unwrap();
    let mut loaded = alive(&fx, session.id()).await.unwrap();
    assert_eq!(loaded.expiry(), Some(Expiry::OnSessionEnd));
    assert_eq!(loaded.expires_at(), loaded.absolute_expires_at());
    loaded.set_expiry(None);
    fx.store.save(&mut loaded).await.unwrap();
    let loaded = alive(&fx, session.id()).await.unwrap();
    assert_eq!(loaded.expiry(), None);
    assert_eq!(
        fx.column::<Option<String>>(session.id(), "expiry_mode")
            .await,
        None
    );
    // Through a rotation too.
    let mut rotated = loaded;
    rotated.set_expiry(Some(Expiry::OnInactivity(secs(30))));
    fx.store.regenerate_id(&mut rotated).await.unwrap();
    let loaded = alive(&fx, rotated.id()).await.unwrap();
    assert_eq!(loaded.expiry(), Some(Expiry::OnInactivity(secs(30))));
    assert_eq!(loaded.expires_at(), fx.now() + secs(30));
}

#[tokio::test]
async fn an_expiry_the_configuration_does_not_allow_is_invalid_data_and_writes_nothing() {
    let fx = fixture(|c| c.max_age = 600).await;
    let session = saved_with(&fx, Expiry::OnSessionEnd).await;
    let now = fx.now();
    fx.statements();
    for bad in [
        Expiry::OnInactivity(secs(601)),
        Expiry::OnInactivity(secs(0)),
        Expiry::AtDateTime(now),
        Expiry::AtDateTime(now - secs(60)),
    ] {
        let err = fx.store.new_session_with(Some(bad)).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{bad:?}: {err:?}"
        );

        let mut changed = alive(&fx, session.id()).await.unwrap();
        fx.statements();
        changed.set_expiry(Some(bad));
        let err = fx.store.save(&mut changed).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{bad:?}: {err:?}"
        );
        assert_eq!(fx.statements(), 0, "{bad:?}: refused unsent");

        let mut fresh = fx.store.new_session().await.unwrap();
        fresh.set_expiry(Some(bad));
        let err = fx.store.save(&mut fresh).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidData(_)),
            "{bad:?}: {err:?}"
        );
    }
    // A time that was in the future when chosen, but has passed by the save.
    let mut late = fx
        .store
        .new_session_with(Some(Expiry::AtDateTime(fx.now() + secs(10))))
        .await
        .unwrap();
    fx.advance(secs(10));
    let err = fx.store.save(&mut late).await.unwrap_err();
    assert!(matches!(err, StoreError::InvalidData(_)), "{err:?}");
    assert_eq!(fx.rows().await, 1, "only the valid session is stored");
    assert_eq!(
        alive(&fx, session.id()).await.unwrap().expiry(),
        Some(Expiry::OnSessionEnd)
    );
}
