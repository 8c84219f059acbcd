//! Entry points for the fuzz targets in `guest/fuzz/`: the pure policy code (cookie parsing, id and
//! handle validation, configuration rules and cookie rendering, JSON value checks), callable without a
//! host. Compiled only under `--cfg fuzzing` (cargo-fuzz passes it), so the shipped component has none
//! of it.
//!
//! Each function checks the invariants its target relies on and panics when one breaks, so the fuzzer
//! reports it.

use crate::bindings::exports::wasm_sessions::store::store::{
    Concurrency, Config, Expiry, SameSite, Session, StoreError,
};
use crate::cookie::Found;
use crate::{config, cookie, data, session, token};

/// Parses a `Cookie` header; a token it returns must be well formed and taken from the header, and the
/// three answers (absent, malformed, a token) must agree with the header's pairs.
pub fn cookie_header(cookie_name: &str, header: &str) -> Option<String> {
    let found = cookie::find_session_cookie(cookie_name, header);
    let named = header
        .split(';')
        .filter_map(|pair| pair.trim_ascii().split_once('='))
        .any(|(name, _)| name.trim_ascii() == cookie_name);
    match &found {
        Found::Absent => assert!(!named, "a cookie of the name was missed"),
        Found::Malformed => assert!(named, "a malformed cookie without the name"),
        Found::Token(token) => {
            assert!(named);
            assert!(token::is_valid(token), "a malformed token was accepted");
            assert!(header.contains(token.as_str()), "a token not in the header");
        }
    }
    let token = cookie::session_id_from_header(cookie_name, header);
    assert_eq!(
        token.as_ref(),
        match &found {
            Found::Token(t) => Some(t),
            _ => None,
        }
    );
    token
}

/// Validates `value` as a token and as a handle; both answers must agree with the definition.
pub fn ids(value: &str) -> bool {
    let valid = token::is_valid(value);
    let by_definition = value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    assert_eq!(valid, by_definition);
    assert_eq!(token::validate(value, "id").is_ok(), valid);
    assert_eq!(token::decode_handle(value).is_ok(), valid);
    // The message may depend on the input's shape (its length, where the first bad byte is), never on
    // its content: a same-shaped input of other bytes gets the same message.
    let shape: String = value
        .bytes()
        .map(|b| {
            if matches!(b, b'0'..=b'9' | b'a'..=b'f') {
                '0'
            } else {
                'X'
            }
        })
        .collect();
    assert_eq!(
        format!("{:?}", token::validate(value, "id")),
        format!("{:?}", token::validate(&shape, "id")),
        "the message depends on the id's content"
    );
    valid
}

/// A configuration from raw parts, as the fuzzer draws them.
#[derive(Debug, Clone)]
pub struct RawConfig {
    /// The cookie name.
    pub cookie_name: String,
    /// Lifetime in seconds.
    pub max_age: i64,
    /// `HttpOnly`.
    pub http_only: bool,
    /// `Secure`.
    pub secure: bool,
    /// 0 lax, 1 strict, anything else none.
    pub same_site: u8,
    /// The cookie domain.
    pub domain: Option<String>,
    /// The cookie path.
    pub path: String,
    /// Idle timeout in seconds.
    pub idle_timeout: Option<i64>,
    /// The data limit.
    pub max_data_bytes: u32,
}

/// Validates the configuration; a valid one must render, for every expiry mode, a `Set-Cookie` header
/// that a browser parses back into the same name, value and attributes (no stray `;`, no control
/// characters), and a removal cookie that parses as no token.
pub fn config(raw: RawConfig) -> bool {
    let config = Config {
        cookie_name: raw.cookie_name,
        max_age: raw.max_age,
        http_only: raw.http_only,
        secure: raw.secure,
        same_site: match raw.same_site {
            0 => SameSite::Lax,
            1 => SameSite::Strict,
            _ => SameSite::None,
        },
        domain: raw.domain,
        path: raw.path,
        idle_timeout: raw.idle_timeout,
        max_data_bytes: raw.max_data_bytes,
        concurrency: Concurrency::Merge,
    };
    if config::validate(&config).is_err() {
        return false;
    }
    let token = "0123456789abcdef".repeat(4);
    let now = 1_700_000_000_000_000;
    for expiry in [
        None,
        Some(Expiry::OnInactivity(config.max_age)),
        Some(Expiry::At(now + 1)),
        Some(Expiry::OnSessionEnd),
    ] {
        let session: Session =
            session::new_session(&config, expiry, || Ok::<_, StoreError>(token.clone()), now)
                .expect("a valid configuration makes sessions");
        assert!(session.expires_at > now && session.expires_at <= session.absolute_expires_at);
        let header = cookie::set_cookie(&config, &session, now).expect("a valid token renders");
        check_cookie(&config, &header, &token);
        assert_eq!(
            header.contains("; Max-Age="),
            !matches!(session.expiry, Some(Expiry::OnSessionEnd))
        );
    }
    let removal = cookie::removal_cookie(&config);
    assert!(
        !removal.chars().any(char::is_control),
        "a control character"
    );
    assert_eq!(
        cookie::find_session_cookie(&config.cookie_name, &removal),
        Found::Malformed
    );
    true
}

/// A rendered `Set-Cookie` value carries exactly the configured name, value and path.
fn check_cookie(config: &Config, header: &str, token: &str) {
    assert!(!header.chars().any(char::is_control), "a control character");
    let mut parts = header.split("; ");
    assert_eq!(
        parts.next(),
        Some(format!("{}={token}", config.cookie_name).as_str())
    );
    let attributes: Vec<&str> = parts.collect();
    assert!(attributes.contains(&format!("Path={}", config.path).as_str()));
    assert_eq!(attributes.contains(&"Secure"), config.secure);
    for attribute in &attributes {
        assert!(!attribute.contains(';'), "an attribute with ';'");
    }
    assert_eq!(
        cookie::session_id_from_header(&config.cookie_name, header).as_deref(),
        Some(token),
        "the header does not parse back"
    );
}

/// Checks `value` as a session data value: an accepted value is copied as the same JSON, compact and
/// without NUL; a value holding a NUL character is refused; messages never quote the value.
pub fn json_value(value: &str) -> bool {
    let mut out = String::new();
    let result = data::push_value(&mut out, value, "v");
    let parsed = serde_json::from_str::<serde_json::Value>(value).ok();
    match result {
        Ok(()) => {
            // `Value` refuses numbers out of the `f64` range that JSON (and JSONB) allow: compare when
            // it parses either.
            let copied = serde_json::from_str::<serde_json::Value>(&out).ok();
            assert_eq!(copied, parsed, "the copy is another value");
            if let Some(parsed) = &parsed {
                assert!(!has_nul(parsed), "a NUL character was accepted");
            }
            let mut again = String::new();
            data::push_value(&mut again, &out, "v").expect("the copy is accepted");
            assert_eq!(again, out, "the copy is not compact");
            assert!(out.len() <= value.len());
            true
        }
        Err(StoreError::InvalidData(message)) => {
            if let Some(parsed) = &parsed {
                assert!(
                    has_nul(parsed) || message.contains("surrogate"),
                    "valid JSON without NUL was refused: {message}"
                );
            }
            // Only the rule and a position, never the value: with digits removed, one of the templates.
            let shape: String = message.chars().filter(|c| !c.is_ascii_digit()).collect();
            assert!(
                [
                    "v is not valid JSON: it is malformed at line  column ",
                    "v is not valid JSON: it ends early at line  column ",
                    "v contains the escape \\u (a NUL character); PostgreSQL JSONB cannot store NUL characters",
                    "v contains an unpaired UTF- surrogate escape; PostgreSQL JSONB refuses it",
                    "v is not valid JSON",
                ]
                .contains(&shape.as_str()),
                "an unexpected message: {message}"
            );
            false
        }
        Err(other) => panic!("{other:?}"),
    }
}

/// Whether any string (key or value) in `value` holds a NUL character.
fn has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}
