//! Entry points for the fuzz targets in `guest/fuzz/`: the pure policy code (cookie parsing, id and
//! handle validation, configuration rules and cookie rendering), callable without a host.
//!
//! Each function checks the invariants its target relies on and panics when one breaks, so the fuzzer
//! reports it.

use crate::bindings::exports::wasm_sessions::store::store::{Concurrency, Config, SameSite};
use crate::{config, cookie, token};

/// Parses a `Cookie` header; a token it returns must be well formed and taken from the header.
pub fn cookie_header(cookie_name: &str, header: &str) -> Option<String> {
    let found = cookie::session_id_from_header(cookie_name, header);
    if let Some(token) = &found {
        assert!(token::is_valid(token), "a malformed token was accepted");
        assert!(header.contains(token.as_str()), "a token not in the header");
    }
    found
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
    /// `Secure`, or from the request.
    pub secure: Option<bool>,
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

/// Validates the configuration; a valid one must render a `Set-Cookie` header that a browser parses
/// back into the same name, value and attributes (no stray `;`, no control characters).
pub fn config(raw: RawConfig, request_is_secure: bool) -> bool {
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
        concurrency: Concurrency::Optimistic,
    };
    if config::validate(&config).is_err() {
        return false;
    }
    let token = "0123456789abcdef".repeat(4);
    let now = 1_700_000_000_000_000;
    let expires = now + config.max_age * 1_000_000;
    let Ok(header) = cookie::set_cookie(&config, &token, expires, now, request_is_secure) else {
        // Only SameSite=None on a plain request may fail once the configuration is valid.
        assert!(config.same_site == SameSite::None && !request_is_secure);
        return true;
    };
    assert!(!header.chars().any(char::is_control), "a control character");
    let mut parts = header.split("; ");
    assert_eq!(
        parts.next(),
        Some(format!("{}={token}", config.cookie_name).as_str())
    );
    let attributes: Vec<&str> = parts.collect();
    assert!(attributes.contains(&format!("Path={}", config.path).as_str()));
    for attribute in &attributes {
        assert!(!attribute.contains(';'), "an attribute with ';'");
    }
    assert_eq!(
        cookie::session_id_from_header(&config.cookie_name, &header).as_deref(),
        Some(token.as_str()),
        "the header does not parse back"
    );
    true
}
