//! The session cookie: building `Set-Cookie` values and reading the token from a `Cookie` header.

use std::time::{Duration, UNIX_EPOCH};

use crate::bindings::exports::wasm_sessions::store::store::{Config, SameSite, StoreError};
use crate::session::MICROS_PER_SECOND;
use crate::{config, token};

/// The `Expires` value of a removal cookie.
const EPOCH_DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
/// The last second an IMF-fixdate can express (9999-12-31T23:59:59Z).
const LAST_HTTP_DATE_SECS: i64 = 253_402_300_799;

/// The `Set-Cookie` value storing `token`, for a session expiring at `expires_at` (µs), seen at `now` (µs).
pub fn set_cookie(
    config: &Config,
    token: &str,
    expires_at: i64,
    now: i64,
    request_is_secure: bool,
) -> Result<String, StoreError> {
    config::validate(config)?;
    token::validate(token, "session token")?;
    let secure = effective_secure(config, request_is_secure)?;
    let max_age = remaining_seconds(expires_at, now);
    let expires = http_date(expires_at);
    Ok(render(config, token, max_age, &expires, secure))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn removal_cookie(config: &Config, request_is_secure: bool) -> Result<String, StoreError> {
    config::validate(config)?;
    let secure = effective_secure(config, request_is_secure)?;
    Ok(render(config, "", 0, EPOCH_DATE, secure))
}

/// Whether the cookie gets `Secure`: the configured value, else the request's scheme.
/// `SameSite=None` without `Secure` is refused.
fn effective_secure(config: &Config, request_is_secure: bool) -> Result<bool, StoreError> {
    let secure = config.secure.unwrap_or(request_is_secure);
    if config.same_site == SameSite::None && !secure {
        return Err(StoreError::InvalidConfig(
            "SameSite=None requires Secure, and the request is not HTTPS".to_string(),
        ));
    }
    Ok(secure)
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

/// Writes the attributes in their fixed order.
fn render(config: &Config, value: &str, max_age: i64, expires: &str, secure: bool) -> String {
    let mut out = format!("{}={}; Path={}", config.cookie_name, value, config.path);
    if let Some(domain) = &config.domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    out.push_str(&format!("; Max-Age={max_age}; Expires={expires}"));
    if config.http_only {
        out.push_str("; HttpOnly");
    }
    if secure {
        out.push_str("; Secure");
    }
    out.push_str(match config.same_site {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    out
}

/// The first valid token in a `Cookie` header under `cookie_name`; `None` when there is none.
///
/// Pairs are split on `;`, trimmed of ASCII whitespace and split at the first `=`; pairs without `=`
/// are skipped, and one pair of double quotes around a value is removed.
pub fn session_id_from_header(cookie_name: &str, header: &str) -> Option<String> {
    header
        .split(';')
        .filter_map(|pair| pair.trim_ascii().split_once('='))
        .filter(|(name, _)| name.trim_ascii() == cookie_name)
        .map(|(_, value)| unquote(value.trim_ascii()))
        .find(|value| token::is_valid(value))
        .map(str::to_string)
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
    use crate::config::default_config;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    /// 2015-10-21T07:28:00Z in microseconds.
    const AT: i64 = 1_445_412_480 * MICROS_PER_SECOND;

    #[test]
    fn set_cookie_default_order() {
        let c = default_config();
        let now = AT - 3600 * MICROS_PER_SECOND;
        let v = set_cookie(&c, TOKEN, AT, now, false).unwrap();
        assert_eq!(
            v,
            format!(
                "varel_session={TOKEN}; Path=/; Max-Age=3600; Expires=Wed, 21 Oct 2015 07:28:00 GMT; HttpOnly; SameSite=Strict"
            )
        );
        let v = set_cookie(&c, TOKEN, AT, now, true).unwrap();
        assert!(v.ends_with("; HttpOnly; Secure; SameSite=Strict"), "{v}");
    }

    #[test]
    fn set_cookie_all_attributes() {
        let mut c = default_config();
        c.domain = Some(".example.com".to_string());
        c.path = "/app".to_string();
        c.http_only = false;
        c.secure = Some(true);
        c.same_site = SameSite::None;
        let v = set_cookie(&c, TOKEN, AT, AT - 1, false).unwrap();
        assert_eq!(
            v,
            format!(
                "varel_session={TOKEN}; Path=/app; Domain=.example.com; Max-Age=1; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure; SameSite=None"
            )
        );
        c.same_site = SameSite::Lax;
        c.secure = Some(false);
        let v = set_cookie(&c, TOKEN, AT, AT, true).unwrap();
        assert!(
            v.ends_with("Max-Age=0; Expires=Wed, 21 Oct 2015 07:28:00 GMT; SameSite=Lax"),
            "{v}"
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
    fn same_site_none_needs_https_when_unset() {
        let mut c = default_config();
        c.same_site = SameSite::None;
        match set_cookie(&c, TOKEN, AT, 0, false) {
            Err(StoreError::InvalidConfig(m)) => {
                assert_eq!(
                    m,
                    "SameSite=None requires Secure, and the request is not HTTPS"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(set_cookie(&c, TOKEN, AT, 0, true).is_ok());
        assert!(removal_cookie(&c, false).is_err());
        assert!(removal_cookie(&c, true).is_ok());
    }

    #[test]
    fn set_cookie_validates() {
        let mut c = default_config();
        assert!(matches!(
            set_cookie(&c, "nope", AT, 0, true),
            Err(StoreError::InvalidId(_))
        ));
        c.path = "x".to_string();
        assert!(matches!(
            set_cookie(&c, TOKEN, AT, 0, true),
            Err(StoreError::InvalidConfig(_))
        ));
        assert!(matches!(
            removal_cookie(&c, true),
            Err(StoreError::InvalidConfig(_))
        ));
    }

    #[test]
    fn removal_cookie_format() {
        let mut c = default_config();
        c.domain = Some("example.com".to_string());
        assert_eq!(
            removal_cookie(&c, true).unwrap(),
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
