//! Session lifetime: creating sessions, each expiry mode's deadlines, and when an idle deadline is due to
//! be extended. Every function takes the time (`now`, microseconds since 1970) as an argument.
//!
//! A session's absolute deadline (creation + `max-age`) always caps. Its idle timeout is the
//! `on-inactivity` seconds when it has that mode, else the configured `idle-timeout` (which, as the WIT
//! says, still applies to `at` and `on-session-end`); an `at` deadline is fixed.

use crate::bindings::exports::wasm_sessions::store::store::{Config, Expiry, Session, StoreError};
use crate::config;
use crate::token;

/// The default limit on session data, in bytes of its JSONB text (1 MiB).
pub const DEFAULT_MAX_DATA_BYTES: u32 = 1_048_576;

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// The data of a session that has none: the empty JSON object.
pub const EMPTY_DATA: &str = "{}";

/// `seconds` in microseconds, saturating.
pub fn micros(seconds: i64) -> i64 {
    seconds.saturating_mul(MICROS_PER_SECOND)
}

/// The absolute deadline of a session created at `created_at`: `max_age` seconds later.
pub fn absolute_deadline(created_at: i64, max_age: i64) -> i64 {
    created_at.saturating_add(micros(max_age))
}

/// The idle timeout (seconds) of a session with `expiry` under the configured `idle_timeout`, if any.
pub fn idle_timeout(expiry: Option<&Expiry>, configured: Option<i64>) -> Option<i64> {
    match expiry {
        Some(Expiry::OnInactivity(seconds)) => Some(*seconds),
        None | Some(Expiry::At(_)) | Some(Expiry::OnSessionEnd) => configured,
    }
}

/// The deadline of a session used at `now`: the earliest of its absolute deadline, its `at` time and
/// `now` + its idle timeout.
pub fn deadline(
    absolute: i64,
    expiry: Option<&Expiry>,
    configured_idle: Option<i64>,
    now: i64,
) -> i64 {
    let mut deadline = absolute;
    if let Some(Expiry::At(at)) = expiry {
        deadline = deadline.min(*at);
    }
    if let Some(idle) = idle_timeout(expiry, configured_idle) {
        deadline = deadline.min(now.saturating_add(micros(idle)));
    }
    deadline
}

/// The sliding part of [`deadline`] alone (`now` + idle timeout, capped by an `at` time), or `None` when
/// no idle timeout applies: what a save that keeps the expiry mode moves the idle deadline to (the
/// statement caps it by the stored absolute deadline and never moves it back).
pub fn slide(expiry: Option<&Expiry>, configured_idle: Option<i64>, now: i64) -> Option<i64> {
    idle_timeout(expiry, configured_idle)?;
    Some(deadline(i64::MAX, expiry, configured_idle, now))
}

/// How far ahead of `now` an idle deadline must already be for `load` not to extend it: extensions are
/// written at most once per tenth of the timeout, and at least one second apart.
pub fn touch_threshold(idle_timeout: i64, now: i64) -> i64 {
    let idle = micros(idle_timeout);
    let step = (idle / 10).max(MICROS_PER_SECOND);
    now.saturating_add(idle.saturating_sub(step))
}

/// The deadline `load` extends a session's idle deadline to at `now`, when that is due: an idle timeout
/// applies, the current deadline is nearer than [`touch_threshold`], and the new one is later.
pub fn touch(
    expires_at: i64,
    absolute: i64,
    expiry: Option<&Expiry>,
    configured_idle: Option<i64>,
    now: i64,
) -> Option<i64> {
    let idle = idle_timeout(expiry, configured_idle)?;
    if expires_at >= touch_threshold(idle, now) {
        return None;
    }
    let extended = deadline(absolute, expiry, configured_idle, now);
    (extended > expires_at).then_some(extended)
}

/// Checks a session's expiry mode against the configuration at `now`: `on-inactivity` within
/// `1..=max-age` seconds, `at` in the future. `invalid-data` names the rule broken.
pub fn check_expiry(expiry: &Expiry, config: &Config, now: i64) -> Result<(), StoreError> {
    match expiry {
        Expiry::OnInactivity(seconds) => {
            config::check_idle_timeout("on-inactivity", *seconds, config.max_age)
                .map_err(StoreError::InvalidData)
        }
        Expiry::At(at) if *at <= now => Err(StoreError::InvalidData(
            "an expiry at a point in time must lie in the future".to_string(),
        )),
        Expiry::At(_) | Expiry::OnSessionEnd => Ok(()),
    }
}

/// When the session's cookie should expire: `None` for a browser-session cookie (`on-session-end`), the
/// `at` time capped by the absolute deadline for `at`, else the absolute deadline. The server enforces
/// the idle deadline, so a cookie outlives it and a load that extends it needs no new cookie.
pub fn cookie_deadline(expiry: Option<&Expiry>, absolute: i64) -> Option<i64> {
    match expiry {
        Some(Expiry::OnSessionEnd) => None,
        Some(Expiry::At(at)) => Some(absolute.min(*at)),
        None | Some(Expiry::OnInactivity(_)) => Some(absolute),
    }
}

/// Creates an unsaved session created at `now` with the token `new_token` draws (after `expiry` passed
/// its checks), empty data, and the deadlines of `expiry` under `config`.
pub fn new_session(
    config: &Config,
    expiry: Option<Expiry>,
    new_token: impl FnOnce() -> Result<String, StoreError>,
    now: i64,
) -> Result<Session, StoreError> {
    if let Some(expiry) = &expiry {
        check_expiry(expiry, config, now)?;
    }
    let id = new_token()?;
    let absolute = absolute_deadline(now, config.max_age);
    Ok(Session {
        handle: token::handle(&id),
        id,
        data: EMPTY_DATA.to_string(),
        user_id: None,
        label: None,
        expires_at: deadline(absolute, expiry.as_ref(), config.idle_timeout, now),
        expiry,
        created_at: now,
        absolute_expires_at: absolute,
        updated_at: now,
        version: 0,
        is_saved: false,
    })
}

/// Whether a session expiring at `expires_at` has expired at `now` (`now >= expires_at`).
pub fn is_expired(expires_at: i64, now: i64) -> bool {
    now >= expires_at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MAX_AGE_LIMIT, default_config};

    const S: i64 = MICROS_PER_SECOND;
    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn token() -> Result<String, StoreError> {
        Ok(TOKEN.to_string())
    }

    #[test]
    fn new_session_fields() {
        let c = default_config();
        let s = new_session(&c, None, token, 1_000).unwrap();
        assert_eq!(s.id, TOKEN);
        assert_eq!(s.handle, token::handle(TOKEN));
        assert_eq!(s.data, "{}");
        assert_eq!(s.user_id, None);
        assert_eq!(s.label, None);
        assert!(s.expiry.is_none());
        assert_eq!(s.created_at, 1_000);
        assert_eq!(s.updated_at, 1_000);
        assert_eq!(s.expires_at, 1_000 + 86_400 * S);
        assert_eq!(s.absolute_expires_at, 1_000 + 86_400 * S);
        assert_eq!(s.version, 0);
        assert!(!s.is_saved);
    }

    #[test]
    fn new_session_checks_the_expiry_before_drawing_a_token() {
        let c = default_config();
        let never = || -> Result<String, StoreError> { panic!("drew a token") };
        for bad in [
            Expiry::OnInactivity(0),
            Expiry::OnInactivity(-1),
            Expiry::OnInactivity(c.max_age + 1),
            Expiry::At(10),
            Expiry::At(9),
        ] {
            assert!(matches!(
                new_session(&c, Some(bad), never, 10),
                Err(StoreError::InvalidData(_))
            ));
        }
        match new_session(&c, Some(Expiry::OnInactivity(0)), never, 0) {
            Err(StoreError::InvalidData(m)) => assert_eq!(
                m,
                "on-inactivity must be between 1 second and max-age (86400), got 0"
            ),
            other => panic!("{other:?}"),
        }
        assert!(new_session(&c, Some(Expiry::OnInactivity(c.max_age)), token, 0).is_ok());
        assert!(new_session(&c, Some(Expiry::At(11)), token, 10).is_ok());
    }

    #[test]
    fn deadlines_per_expiry_mode() {
        let mut c = default_config();
        c.max_age = 1000;
        let abs = absolute_deadline(0, c.max_age);
        assert_eq!(abs, 1000 * S);
        // No idle timeout configured.
        assert_eq!(deadline(abs, None, None, 0), abs);
        assert_eq!(deadline(abs, Some(&Expiry::OnSessionEnd), None, 0), abs);
        assert_eq!(
            deadline(abs, Some(&Expiry::OnInactivity(60)), None, 0),
            60 * S
        );
        assert_eq!(
            deadline(abs, Some(&Expiry::OnInactivity(60)), None, 990 * S),
            abs
        );
        assert_eq!(deadline(abs, Some(&Expiry::At(500 * S)), None, 0), 500 * S);
        assert_eq!(deadline(abs, Some(&Expiry::At(5000 * S)), None, 0), abs);
        // With a configured idle timeout of 100 s.
        let idle = Some(100);
        assert_eq!(deadline(abs, None, idle, 0), 100 * S);
        assert_eq!(deadline(abs, None, idle, 950 * S), abs);
        assert_eq!(
            deadline(abs, Some(&Expiry::OnSessionEnd), idle, 10 * S),
            110 * S
        );
        // on-inactivity replaces the configured timeout, longer or shorter.
        assert_eq!(
            deadline(abs, Some(&Expiry::OnInactivity(300)), idle, 0),
            300 * S
        );
        assert_eq!(
            deadline(abs, Some(&Expiry::OnInactivity(5)), idle, 0),
            5 * S
        );
        // at: the earliest of the time, the absolute deadline and the configured idle deadline.
        assert_eq!(deadline(abs, Some(&Expiry::At(50 * S)), idle, 0), 50 * S);
        assert_eq!(deadline(abs, Some(&Expiry::At(500 * S)), idle, 0), 100 * S);
        assert_eq!(
            deadline(abs, Some(&Expiry::At(500 * S)), idle, 450 * S),
            500 * S
        );
        // Saturation.
        assert_eq!(
            deadline(
                i64::MAX,
                Some(&Expiry::OnInactivity(i64::MAX)),
                None,
                i64::MAX
            ),
            i64::MAX
        );
    }

    #[test]
    fn new_sessions_start_on_their_deadlines() {
        let mut c = default_config();
        c.max_age = 3600;
        c.idle_timeout = Some(60);
        let s = new_session(&c, None, token, 0).unwrap();
        assert_eq!(s.expires_at, 60 * S);
        assert_eq!(s.absolute_expires_at, 3600 * S);
        let s = new_session(&c, Some(Expiry::OnInactivity(600)), token, 0).unwrap();
        assert_eq!(s.expires_at, 600 * S);
        let s = new_session(&c, Some(Expiry::At(30 * S)), token, 0).unwrap();
        assert_eq!(s.expires_at, 30 * S);
        assert_eq!(s.absolute_expires_at, 3600 * S);
        let s = new_session(&c, Some(Expiry::OnSessionEnd), token, 0).unwrap();
        assert_eq!(s.expires_at, 60 * S);
    }

    #[test]
    fn slides_follow_the_idle_timeout() {
        assert_eq!(slide(None, None, 0), None);
        assert_eq!(slide(Some(&Expiry::OnSessionEnd), None, 0), None);
        assert_eq!(slide(Some(&Expiry::At(5 * S)), None, 0), None);
        assert_eq!(slide(None, Some(10), S), Some(11 * S));
        assert_eq!(
            slide(Some(&Expiry::OnInactivity(3)), Some(10), S),
            Some(4 * S)
        );
        assert_eq!(slide(Some(&Expiry::At(5 * S)), Some(10), S), Some(5 * S));
        assert_eq!(slide(Some(&Expiry::At(50 * S)), Some(10), S), Some(11 * S));
    }

    #[test]
    fn extensions_are_written_at_most_once_per_tenth_of_the_timeout() {
        // 100 s idle: extend once the deadline is less than 90 s away.
        assert_eq!(touch_threshold(100, 0), 90 * S);
        // Short timeouts still wait at least a second between writes.
        assert_eq!(touch_threshold(2, 0), S);
        let abs = 1000 * S;
        assert_eq!(touch(95 * S, abs, None, Some(100), 0), None);
        assert_eq!(touch(89 * S, abs, None, Some(100), 0), Some(100 * S));
        assert_eq!(touch(89 * S, abs, None, None, 0), None);
        assert_eq!(
            touch(89 * S, abs, Some(&Expiry::OnInactivity(100)), None, 0),
            Some(100 * S)
        );
        // Never past the absolute deadline, and never to a deadline that is not later.
        assert_eq!(touch(995 * S, abs, None, Some(100), 950 * S), Some(abs));
        assert_eq!(touch(abs, abs, None, Some(100), 950 * S), None);
        // Nor past an `at` time.
        assert_eq!(
            touch(40 * S, abs, Some(&Expiry::At(50 * S)), Some(100), 0),
            Some(50 * S)
        );
        assert_eq!(
            touch(50 * S, abs, Some(&Expiry::At(50 * S)), Some(100), 0),
            None
        );
    }

    #[test]
    fn cookie_deadlines_per_mode() {
        let abs = 1000 * S;
        assert_eq!(cookie_deadline(None, abs), Some(abs));
        assert_eq!(
            cookie_deadline(Some(&Expiry::OnInactivity(5)), abs),
            Some(abs)
        );
        assert_eq!(
            cookie_deadline(Some(&Expiry::At(10 * S)), abs),
            Some(10 * S)
        );
        assert_eq!(cookie_deadline(Some(&Expiry::At(2000 * S)), abs), Some(abs));
        assert_eq!(cookie_deadline(Some(&Expiry::OnSessionEnd), abs), None);
    }

    #[test]
    fn expiry_is_inclusive() {
        assert!(is_expired(10, 10));
        assert!(is_expired(10, 11));
        assert!(!is_expired(10, 9));
    }

    #[test]
    fn one_max_age_rule() {
        for bad in [0, -1, MAX_AGE_LIMIT + 1] {
            let m = config::check_max_age(bad).unwrap_err();
            assert_eq!(
                m,
                format!(
                    "max-age must be between 1 and {MAX_AGE_LIMIT} seconds (400 days), got {bad}"
                )
            );
        }
        assert!(config::check_max_age(MAX_AGE_LIMIT).is_ok());
    }
}
