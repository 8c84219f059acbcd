//! The session cookie: building `Set-Cookie` values and reading the token from a `Cookie` header.

use std::time::{Duration, UNIX_EPOCH};

use crate::bindings::exports::wasm_sessions::store::store::{
    Config, SameSite, Session, StoreError,
};
use crate::session::{self, MICROS_PER_SECOND};
use crate::token;

/// The `Expires` value of a removal cookie.
const EPOCH_DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
/// The last second an IMF-fixdate can express (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE_SECS: i64 = 253_402_300_799;

/// The `Set-Cookie` value storing the session's token, seen at `now` (µs).
///
/// The cookie lives until the session's absolute deadline (its `at` time, if earlier); the server
/// enforces any idle deadline. An `on-session-end` session gets a browser-session cookie: no `Max-Age`,
/// no `Expires`. The configuration is trusted (validated once, by `validate-config`).
pub fn set_cookie(config: &Config, session: &Session, now: i64) -> Result<String, StoreError> {
    token::validate(&session.id, "session token")?;
    let lifetime = session::cookie_deadline(session.expiry.as_ref(), session.absolute_expires_at)
        .map(|deadline| (remaining_seconds(deadline, now), http_date(deadline)));
    Ok(render(
        config,
        &session.id,
        lifetime
            .as_ref()
            .map(|(max_age, expires)| (*max_age, expires.as_str())),
    ))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn removal_cookie(config: &Config) -> String {
    render(config, "", Some((0, EPOCH_DATE)))
}

/// Seconds from `now` until `expires_at`, rounded up, never negative.
fn remaining_seconds(expires_at: i64, now: i64) -> i64 {
    let micros = expires_at.saturating_sub(now);
    if micros <= 0 {
        return 0;
    }
    let whole = micros / MICROS_PER_SECOND;
    if micros % MICROS_PER_SECOND == 0 {
        whole
    } else {
        whole.saturating_add(1)
    }
}

/// The IMF-fixdate of a timestamp (µs), clamped to the range an HTTP date can express.
fn http_date(at: i64) -> String {
    let secs = at
        .div_euclid(MICROS_PER_SECOND)
        .clamp(0, LAST_HTTP_DATE_SECS);
    let secs = u64::try_from(secs).unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Writes the attributes in their fixed order; `lifetime` is `Max-Age` and `Expires`, none for a
/// browser-session cookie.
fn render(config: &Config, value: &str, lifetime: Option<(i64, &str)>) -> String {
    let mut out = format!("{}={}; Path={}", config.cookie_name, value, config.path);
    if let Some(domain) = &config.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    if let Some((max_age, expires)) = lifetime {
        out.push_str(&format!("; Max-Age={max_age}; Expires={expires}"));
    }
    if config.http_only {
        out.push_str("; HttpOnly");
    }
    if config.secure {
        out.push_str("; Secure");
    }
    out.push_str(match config.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    out
}

/// What a `Cookie` header holds under the session cookie's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No cookie of that name at all.
    Absent,
    /// Cookies of that name, none of them a well-formed token.
    Malformed,
    /// The first well-formed token under that name.
    Token(String),
}

/// Looks for the session cookie `cookie_name` in a `Cookie` header.
///
/// Pairs are split on `;`, trimmed of ASCII whitespace and split at the first `=`; pairs without `=`
/// are skipped, and one pair of double quotes around a value is removed. The first value under the
/// name that is a well-formed token wins.
pub fn find_session_cookie(cookie_name: &str, header: &str) -> Found {
    let mut found = Found::Absent;
    for value in header
        .split(';')
        .filter_map(|pair| pair.trim_ascii().split_once('='))
        .filter(|(name, _)| name.trim_ascii() == cookie_name)
        .map(|(_, value)| unquote(value.trim_ascii()))
    {
        if token::is_valid(value) {
            return Found::Token(value.to_string());
        }
        found = Found::Malformed;
    }
    found
}

/// The first valid token in a `Cookie` header under `cookie_name`; `None` when there is none.
#[cfg(any(test, fuzzing))]
pub fn session_id_from_header(cookie_name: &str, header: &str) -> Option<String> {
    match find_session_cookie(cookie_name, header) {
        Found::Token(token) => Some(token),
        Found::Absent | Found::Malformed => None,
    }
}

/// Removes one pair of surrounding double quotes, if present.
fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::exports::wasm_sessions::store::store::Expiry;
    use crate::config::default_config;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    /// 2015-10-21T07:28:00Z in microseconds.
    const AT: i64 = 1_445_412_480 * MICROS_PER_SECOND;
    const HOUR: i64 = 3600 * MICROS_PER_SECOND;

    /// A session with `TOKEN`, absolute deadline `AT`, idle deadline an hour earlier.
    fn session(expiry: Option<Expiry>) -> Session {
        Session {
            id: TOKEN.to_string(),
            handle: token::handle(TOKEN),
            data: "{}".to_string(),
            user_id: None,
            label: None,
            expiry,
            created_at: AT - 24 * HOUR,
            expires_at: AT - HOUR,
            absolute_expires_at: AT,
            updated_at: AT - 24 * HOUR,
            version: 1,
            is_saved: true,
        }
    }

    #[test]
    fn set_cookie_default_order() {
        let c = default_config();
        let v = set_cookie(&c, &session(None), AT - HOUR).unwrap();
        assert_eq!(
            v,
            format!(
                "varel_session={TOKEN}; Path=/; Max-Age=3600; Expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly; Secure; SameSite=Strict"
            )
        );
    }

    #[test]
    fn secure_follows_the_configuration_alone() {
        let mut c = default_config();
        c.secure = false;
        let v = set_cookie(&c, &session(None), AT - HOUR).unwrap();
        assert!(v.ends_with("; HttpOnly; SameSite=Strict"), "{v}");
        assert!(!removal_cookie(&c).contains("Secure"));
        c.secure = true;
        assert!(removal_cookie(&c).contains("; Secure;"));
    }

    #[test]
    fn set_cookie_all_attributes() {
        let mut c = default_config();
        c.domain = Some(".example.com".to_string());
        c.path = "/app".to_string();
        c.http_only = false;
        c.same_site = SameSite::None;
        let v = set_cookie(&c, &session(None), AT - 1).unwrap();
        assert_eq!(
            v,
            format!(
                "varel_session={TOKEN}; Path=/app; Domain=.example.com; Max-Age=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure; SameSite=None"
            )
        );
        c.same_site = SameSite::Lax;
        c.secure = false;
        let v = set_cookie(&c, &session(None), AT).unwrap();
        assert!(
            v.ends_with("Max-Age=0; Expires=Wed, 21 Oct 2015 07:28:00 GMT; SameSite=Lax"),
            "{v}"
        );
    }

    #[test]
    fn the_cookie_lives_per_expiry_mode() {
        let c = default_config();
        let now = AT - 2 * HOUR;
        // Sliding sessions: until the absolute deadline, not the idle one.
        for expiry in [None, Some(Expiry::OnInactivity(60))] {
            let v = set_cookie(&c, &session(expiry), now).unwrap();
            assert!(
                v.contains("; Max-Age=7200; Expires=Wed, 21 Oct 2015 07:28:00 GMT;"),
                "{v}"
            );
        }
        // at: until the earlier of the time and the absolute deadline.
        let v = set_cookie(&c, &session(Some(Expiry::At(AT - HOUR))), now).unwrap();
        assert!(
            v.contains("; Max-Age=3600; Expires=Wed, 21 Oct 2015 06:28:00 GMT;"),
            "{v}"
        );
        let v = set_cookie(&c, &session(Some(Expiry::At(AT + HOUR))), now).unwrap();
        assert!(v.contains("; Max-Age=7200; Expires=Wed, 21 Oct 2015 07:28:00 GMT;"));
        // on-session-end: a browser-session cookie.
        let v = set_cookie(&c, &session(Some(Expiry::OnSessionEnd)), now).unwrap();
        assert_eq!(
            v,
            format!("varel_session={TOKEN}; Path=/; HttpOnly; Secure; SameSite=Strict")
        );
    }

    #[test]
    fn max_age_rounds_up_and_clamps() {
        assert_eq!(remaining_seconds(10, 10), 0);
        assert_eq!(remaining_seconds(0, 10), 0);
        assert_eq!(remaining_seconds(1, 0), 1);
        assert_eq!(remaining_seconds(MICROS_PER_SECOND, 0), 1);
        assert_eq!(remaining_seconds(MICROS_PER_SECOND + 1, 0), 2);
        assert_eq!(
            remaining_seconds(i64::MAX, i64::MIN),
            i64::MAX / MICROS_PER_SECOND + 1
        );
        assert_eq!(remaining_seconds(i64::MIN, i64::MAX), 0);
    }

    #[test]
    fn http_date_clamps() {
        assert_eq!(http_date(i64::MIN), EPOCH_DATE);
        assert_eq!(http_date(-1), EPOCH_DATE);
        assert_eq!(http_date(AT + 999_999), "Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(http_date(i64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn set_cookie_validates_the_token_without_echoing_it() {
        let c = default_config();
        let mut s = session(None);
        s.id = "n0t-a-t0ken".to_string();
        match set_cookie(&c, &s, AT) {
            Err(StoreError::InvalidId(m)) => assert!(!m.contains("n0t-a-t0ken"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn removal_cookie_format() {
        let mut c = default_config();
        c.domain = Some("example.com".to_string());
        assert_eq!(
            removal_cookie(&c),
            "varel_session=; Path=/; Domain=example.com; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Strict"
        );
    }

    #[test]
    fn parse_finds_first_valid_token() {
        let name = "varel_session";
        assert_eq!(
            session_id_from_header(name, &format!("varel_session={TOKEN}")).as_deref(),
            Some(TOKEN)
        );
        let h = format!(
            "a=1; garbage; varel_session=bad; varel_session=\"{TOKEN}\";varel_session={OTHER}"
        );
        assert_eq!(session_id_from_header(name, &h).as_deref(), Some(TOKEN));
        let h = format!("  other={TOKEN} ;\tvarel_session = {OTHER}  ");
        assert_eq!(session_id_from_header(name, &h).as_deref(), Some(OTHER));
        let h = format!("VAREL_SESSION={TOKEN}; xvarel_session={TOKEN}");
        assert_eq!(session_id_from_header(name, &h), None);
        let h = format!("varel_session={}", TOKEN.to_uppercase());
        assert_eq!(session_id_from_header(name, &h), None);
        let h = format!("varel_session=\"\"{TOKEN}\"\"");
        assert_eq!(session_id_from_header(name, &h), None);
    }

    #[test]
    fn parse_tells_absent_from_malformed() {
        let name = "varel_session";
        for absent in [
            "",
            "a=1",
            "varel_session",
            "VAREL_SESSION=x",
            "xvarel_session=1",
        ] {
            assert_eq!(
                find_session_cookie(name, absent),
                Found::Absent,
                "{absent:?}"
            );
        }
        for malformed in [
            "varel_session=",
            "varel_session=x",
            "a=1; varel_session=\"\"",
            &format!("varel_session={}", TOKEN.to_uppercase()),
        ] {
            assert_eq!(
                find_session_cookie(name, malformed),
                Found::Malformed,
                "{malformed:?}"
            );
        }
        assert_eq!(
            find_session_cookie(name, &format!("varel_session=x; varel_session={TOKEN}")),
            Found::Token(TOKEN.to_string())
        );
    }

    #[test]
    fn parse_never_panics() {
        let name = "varel_session";
        for h in [
            "",
            ";",
            "=",
            "==;;",
            "varel_session",
            "varel_session=",
            "varel_session=\"",
            "é=ü; ✓",
            "\0",
        ] {
            assert_eq!(session_id_from_header(name, h), None, "{h:?}");
        }
        let huge = "varel_session=x; ".repeat(100_000);
        assert_eq!(session_id_from_header(name, &huge), None);
        let h = format!("{huge}varel_session={TOKEN}");
        assert_eq!(session_id_from_header(name, &h).as_deref(), Some(TOKEN));
    }
}
