//! Cookie and lifetime configuration: the defaults and the rules a configuration must meet.
//!
//! The host validates a configuration once (`validate-config`) when it builds its store; the other
//! exports trust the configuration they are given and do not check it again.

use crate::bindings::exports::wasm_sessions::store::store::{
    Concurrency, Config, SameSite, StoreError,
};
use crate::session::DEFAULT_MAX_DATA_BYTES;

/// The longest session lifetime accepted, in seconds: 400 days, the cap browsers apply to cookies.
pub const MAX_AGE_LIMIT: i64 = 34_560_000;
/// The longest cookie name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// The longest cookie path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// The longest cookie domain accepted, in bytes.
pub const MAX_DOMAIN_LEN: usize = 253;
/// The largest `max-data-bytes` accepted (8 MiB): the guest's memory must hold a few copies of the data.
pub const MAX_DATA_BYTES_LIMIT: u32 = 8 << 20;

/// The default configuration: `varel_session`, one day, `HttpOnly`, `Secure`, `SameSite=Strict`, no
/// domain, path `/`, no idle timeout, 1 MiB of data, key-level (`merge`) concurrency.
pub fn default_config() -> Config {
    Config {
        cookie_name: "varel_session".to_string(),
        max_age: 86_400,
        http_only: true,
        secure: true,
        same_site: SameSite::Strict,
        domain: None,
        path: "/".to_string(),
        idle_timeout: None,
        max_data_bytes: DEFAULT_MAX_DATA_BYTES,
        concurrency: Concurrency::Merge,
    }
}

/// Checks a configuration and returns `invalid-config` naming the first rule it breaks.
pub fn validate(config: &Config) -> Result<(), StoreError> {
    check(config).map_err(StoreError::InvalidConfig)
}

/// The rules, in order; the error is the message for the first one broken.
fn check(config: &Config) -> Result<(), String> {
    check_name(&config.cookie_name)?;
    check_max_age(config.max_age)?;
    if config.same_site == SameSite::None && !config.secure {
        return Err("same-site: SameSite=None requires Secure, but secure is false".to_string());
    }
    check_path(&config.path)?;
    if let Some(domain) = &config.domain {
        check_domain(domain)?;
    }
    check_prefixes(config)?;
    if let Some(idle) = config.idle_timeout {
        check_idle_timeout("idle-timeout", idle, config.max_age)?;
    }
    if !(2..=MAX_DATA_BYTES_LIMIT).contains(&config.max_data_bytes) {
        return Err(format!(
            "max-data-bytes must be between 2 and {MAX_DATA_BYTES_LIMIT}, got {}",
            config.max_data_bytes
        ));
    }
    Ok(())
}

/// Whether `b` is an RFC 7230 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The cookie name is a non-empty RFC 7230 token of at most 256 bytes.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("cookie-name must not be empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "cookie-name is {} bytes; the limit is {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if !name.bytes().all(is_tchar) {
        return Err(
            "cookie-name may contain only letters, digits and !#$%&'*+-.^_`|~ (RFC 7230 token)"
                .to_string(),
        );
    }
    Ok(())
}

/// The max-age rule (the only one): a session lifetime is between one second and 400 days.
pub fn check_max_age(max_age: i64) -> Result<(), String> {
    if (1..=MAX_AGE_LIMIT).contains(&max_age) {
        Ok(())
    } else {
        Err(format!(
            "max-age must be between 1 and {MAX_AGE_LIMIT} seconds (400 days), got {max_age}"
        ))
    }
}

/// The idle-timeout rule, for the configured `idle-timeout` and a session's `on-inactivity` alike
/// (`what` names which): between one second and the lifetime `max_age`.
pub fn check_idle_timeout(what: &str, seconds: i64, max_age: i64) -> Result<(), String> {
    if (1..=max_age).contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "{what} must be between 1 second and max-age ({max_age}), got {seconds}"
        ))
    }
}

/// The path starts with `/`, is at most 1024 bytes and has no `;`, control characters or whitespace.
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("path must start with '/'".to_string());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "path is {} bytes; the limit is {MAX_PATH_LEN}",
            path.len()
        ));
    }
    if path.contains(';') {
        return Err("path must not contain ';'".to_string());
    }
    if !path.is_ascii() {
        return Err("path must be ASCII (RFC 6265)".to_string());
    }
    if path.chars().any(char::is_control) {
        return Err("path must not contain control characters".to_string());
    }
    if path.chars().any(char::is_whitespace) {
        return Err("path must not contain whitespace".to_string());
    }
    Ok(())
}

/// The domain is a non-empty host name of at most 253 bytes, with an optional single leading `.`.
fn check_domain(domain: &str) -> Result<(), String> {
    if domain.is_empty() {
        return Err("domain must not be empty when set".to_string());
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(format!(
            "domain is {} bytes; the limit is {MAX_DOMAIN_LEN}",
            domain.len()
        ));
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err("domain may contain only letters, digits, '.' and '-'".to_string());
    }
    let labels = domain.strip_prefix('.').unwrap_or(domain);
    if labels.split('.').any(str::is_empty) {
        return Err(
            "domain must not have empty labels (a leading '.' is allowed once)".to_string(),
        );
    }
    Ok(())
}

/// Whether `name` starts with `prefix`, compared ASCII case-insensitively as browsers do.
fn has_prefix(name: &str, prefix: &str) -> bool {
    name.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// The `__Secure-` and `__Host-` name prefixes and the attributes browsers demand for them.
fn check_prefixes(config: &Config) -> Result<(), String> {
    let name = &config.cookie_name;
    if has_prefix(name, "__Secure-") && !config.secure {
        return Err(
            "cookie-name with the __Secure- prefix requires Secure, but secure is false"
                .to_string(),
        );
    }
    if has_prefix(name, "__Host-") {
        if !config.secure {
            return Err(
                "cookie-name with the __Host- prefix requires Secure, but secure is false"
                    .to_string(),
            );
        }
        if config.path != "/" {
            return Err("cookie-name with the __Host- prefix requires path \"/\"".to_string());
        }
        if config.domain.is_some() {
            return Err("cookie-name with the __Host- prefix requires no domain".to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(config: &Config) -> String {
        match validate(config) {
            Err(StoreError::InvalidConfig(m)) => m,
            other => panic!("expected invalid-config, got {other:?}"),
        }
    }

    #[test]
    fn default_is_valid_and_as_documented() {
        let c = default_config();
        assert!(validate(&c).is_ok());
        assert_eq!(c.cookie_name, "varel_session");
        assert_eq!(c.max_age, 86_400);
        assert!(c.http_only);
        assert!(c.secure);
        assert_eq!(c.idle_timeout, None);
        assert_eq!(c.max_data_bytes, 1_048_576);
        assert_eq!(c.concurrency, Concurrency::Merge);
        assert_eq!(c.same_site, SameSite::Strict);
        assert_eq!(c.domain, None);
        assert_eq!(c.path, "/");
    }

    #[test]
    fn cookie_name_rules() {
        let mut c = default_config();
        c.cookie_name = String::new();
        assert!(err(&c).contains("cookie-name"));
        c.cookie_name = "a".repeat(257);
        assert!(err(&c).contains("256"));
        c.cookie_name = "a".repeat(256);
        assert!(validate(&c).is_ok());
        for bad in ["a b", "a;b", "a=b", "a,b", "a\"b", "é", "a\u{0}b", "a(b"] {
            c.cookie_name = bad.to_string();
            assert!(err(&c).contains("cookie-name"), "{bad}");
        }
        c.cookie_name = "Az09!#$%&'*+-.^_`|~".to_string();
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn max_age_bounds() {
        let mut c = default_config();
        for bad in [0, -1, i64::MIN, MAX_AGE_LIMIT + 1, i64::MAX] {
            c.max_age = bad;
            assert!(err(&c).contains("max-age"), "{bad}");
        }
        for good in [1, MAX_AGE_LIMIT] {
            c.max_age = good;
            assert!(validate(&c).is_ok());
        }
    }

    #[test]
    fn same_site_none_needs_secure() {
        let mut c = default_config();
        c.same_site = SameSite::None;
        c.secure = false;
        assert!(err(&c).contains("SameSite=None requires Secure"));
        c.secure = true;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn path_rules() {
        let mut c = default_config();
        for bad in [
            "", "app", "/a;b", "/a b", "/a\tb", "/a\u{7f}", "/a\u{a0}", "/café",
        ] {
            c.path = bad.to_string();
            assert!(err(&c).contains("path"), "{bad:?}");
        }
        c.path = format!("/{}", "a".repeat(1024));
        assert!(err(&c).contains("1024"));
        c.path = "/app/x".to_string();
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn domain_rules() {
        let mut c = default_config();
        for bad in [
            "",
            "..example.com",
            "a..b",
            "example.com.",
            ".",
            "ex ample",
            "ex_ample.com",
            "é.com",
        ] {
            c.domain = Some(bad.to_string());
            assert!(err(&c).contains("domain"), "{bad:?}");
        }
        c.domain = Some("a".repeat(254));
        assert!(err(&c).contains("253"));
        for good in ["example.com", ".example.com", "localhost", "a-b.c0"] {
            c.domain = Some(good.to_string());
            assert!(validate(&c).is_ok(), "{good}");
        }
    }

    #[test]
    fn secure_prefix() {
        let mut c = default_config();
        c.cookie_name = "__Secure-id".to_string();
        assert!(validate(&c).is_ok());
        c.secure = false;
        assert!(err(&c).contains("__Secure-"));
        c.cookie_name = "__secure-id".to_string();
        assert!(err(&c).contains("__Secure-"));
        c.secure = true;
        assert!(validate(&c).is_ok());
    }

    #[test]
    fn host_prefix() {
        let mut c = default_config();
        c.cookie_name = "__Host-id".to_string();
        assert!(validate(&c).is_ok());
        c.secure = false;
        assert!(err(&c).contains("Secure"));
        c.secure = true;
        c.path = "/app".to_string();
        assert!(err(&c).contains("path"));
        c.path = "/".to_string();
        c.domain = Some("example.com".to_string());
        assert!(err(&c).contains("domain"));
    }

    #[test]
    fn first_failing_rule_wins() {
        let mut c = default_config();
        c.cookie_name = String::new();
        c.max_age = 0;
        c.path = String::new();
        assert!(err(&c).starts_with("cookie-name"));
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn idle_timeout_must_lie_within_the_lifetime() {
        let mut c = default_config();
        c.idle_timeout = Some(c.max_age);
        assert!(validate(&c).is_ok());
        for bad in [0, -1, c.max_age + 1] {
            c.idle_timeout = Some(bad);
            assert!(
                matches!(validate(&c), Err(StoreError::InvalidConfig(m)) if m.contains("idle-timeout"))
            );
        }
    }

    #[test]
    fn the_data_limit_is_bounded() {
        let mut c = default_config();
        for (limit, ok) in [
            (2, true),
            (MAX_DATA_BYTES_LIMIT, true),
            (1, false),
            (MAX_DATA_BYTES_LIMIT + 1, false),
        ] {
            c.max_data_bytes = limit;
            assert_eq!(validate(&c).is_ok(), ok, "{limit}");
        }
    }
}
