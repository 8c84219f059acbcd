//! Session lifetime and data: creating sessions, expiry, and validating and (de)serializing session data.

use std::collections::BTreeMap;

use crate::bindings::exports::wasm_sessions::store::store::{Session, StoreError};
use crate::config::MAX_AGE_LIMIT;

/// The default limit on serialized session data, in bytes (1 MiB).
pub const DEFAULT_MAX_DATA_BYTES: u32 = 1_048_576;

/// Microseconds in one second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Session data keyed and sorted by key.
pub type Data = BTreeMap<String, String>;

/// Creates an unsaved session with token `id`, created at `now`, whose absolute deadline is `max_age`
/// seconds later and whose idle deadline is `idle_timeout` seconds later (if set).
/// `max_age` must be in `1..=34_560_000`, else `invalid-data`.
pub fn new_session(
    id: String,
    max_age: i64,
    idle_timeout: Option<i64>,
    now: i64,
) -> Result<Session, StoreError> {
    check_max_age(max_age)?;
    let absolute = now.saturating_add(max_age.saturating_mul(MICROS_PER_SECOND));
    Ok(Session {
        id,
        data: Vec::new(),
        user_id: None,
        created_at: now,
        expires_at: active_deadline(absolute, idle_timeout, now),
        absolute_expires_at: absolute,
        updated_at: now,
        version: 0,
        is_saved: false,
    })
}

/// The deadline after activity at `now`: `idle_timeout` seconds on, never past `absolute`.
pub fn active_deadline(absolute: i64, idle_timeout: Option<i64>, now: i64) -> i64 {
    match idle_timeout {
        Some(idle) => absolute.min(now.saturating_add(idle.saturating_mul(MICROS_PER_SECOND))),
        None => absolute,
    }
}

/// How far ahead of `now` an idle deadline must already be for `load` not to extend it: extensions are
/// written at most once per tenth of the timeout, and at least one second apart.
pub fn touch_threshold(idle_timeout: i64, now: i64) -> i64 {
    let idle = idle_timeout.saturating_mul(MICROS_PER_SECOND);
    let step = (idle / 10).max(MICROS_PER_SECOND);
    now.saturating_add(idle.saturating_sub(step))
}

/// Checks a session lifetime in seconds: `1..=34_560_000`, else `invalid-data`.
pub fn check_max_age(max_age: i64) -> Result<(), StoreError> {
    if (1..=MAX_AGE_LIMIT).contains(&max_age) {
        Ok(())
    } else {
        Err(StoreError::InvalidData(format!(
            "max-age must be between 1 and {MAX_AGE_LIMIT} seconds, got {max_age}"
        )))
    }
}

/// Whether a session expiring at `expires_at` has expired at `now` (`now >= expires_at`).
pub fn is_expired(expires_at: i64, now: i64) -> bool {
    now >= expires_at
}

/// Collects the incoming pairs into sorted data; for a repeated key the last value wins.
pub fn to_map(pairs: &[(String, String)]) -> Data {
    pairs.iter().cloned().collect()
}

/// Sorted data back as WIT pairs.
pub fn to_pairs(data: Data) -> Vec<(String, String)> {
    data.into_iter().collect()
}

/// Validates data for storage and returns its JSON object text.
///
/// Keys and values must not contain NUL (PostgreSQL JSONB cannot store it) and the JSON must be at most
/// `max_bytes`. Messages never include the offending key or value.
pub fn encode(data: &Data, max_bytes: u32) -> Result<String, StoreError> {
    for (key, value) in data {
        if key.contains('\0') {
            return Err(StoreError::InvalidData(
                "a session data key contains a NUL character; PostgreSQL JSONB cannot store NUL characters"
                    .to_string(),
            ));
        }
        if value.contains('\0') {
            return Err(StoreError::InvalidData(
                "a session data value contains a NUL character; PostgreSQL JSONB cannot store NUL characters"
                    .to_string(),
            ));
        }
    }
    let json = serde_json::to_string(data)
        .map_err(|e| StoreError::InvalidData(format!("session data cannot be serialized: {e}")))?;
    if json.len() > max_bytes as usize {
        return Err(StoreError::InvalidData(format!(
            "session data serializes to {} bytes of JSON; the limit is {max_bytes}",
            json.len()
        )));
    }
    Ok(json)
}

/// Decodes stored data: a JSON object whose values are all strings, else `unexpected-result`.
pub fn decode(json: &str) -> Result<Data, StoreError> {
    serde_json::from_str::<Data>(json).map_err(|e| {
        StoreError::UnexpectedResult(format!("session data is not a JSON object of strings: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn new_session_fields() {
        let s = new_session("t".to_string(), 60, None, 1_000).unwrap();
        assert_eq!(s.id, "t");
        assert!(s.data.is_empty());
        assert_eq!(s.user_id, None);
        assert_eq!(s.created_at, 1_000);
        assert_eq!(s.updated_at, 1_000);
        assert_eq!(s.expires_at, 1_000 + 60 * MICROS_PER_SECOND);
        assert!(!s.is_saved);
    }

    #[test]
    fn new_session_max_age_bounds() {
        for bad in [0, -5, MAX_AGE_LIMIT + 1, i64::MIN, i64::MAX] {
            assert!(matches!(
                new_session(String::new(), bad, None, 0),
                Err(StoreError::InvalidData(_))
            ));
        }
        let s = new_session(String::new(), MAX_AGE_LIMIT, None, i64::MAX - 1).unwrap();
        assert_eq!(s.expires_at, i64::MAX);
    }

    #[test]
    fn expiry_is_inclusive() {
        assert!(is_expired(10, 10));
        assert!(is_expired(10, 11));
        assert!(!is_expired(10, 9));
    }

    #[test]
    fn last_duplicate_wins_and_sorted() {
        let map = to_map(&pairs(&[("b", "1"), ("a", "2"), ("b", "3")]));
        assert_eq!(to_pairs(map), pairs(&[("a", "2"), ("b", "3")]));
    }

    #[test]
    fn encode_round_trips() {
        let map = to_map(&pairs(&[("", "empty key"), ("k", "v\"\\\n"), ("ü", "✓")]));
        let json = encode(&map, DEFAULT_MAX_DATA_BYTES).unwrap();
        assert!(json.starts_with('{'));
        assert_eq!(decode(&json).unwrap(), map);
        assert_eq!(encode(&Data::new(), DEFAULT_MAX_DATA_BYTES).unwrap(), "{}");
    }

    #[test]
    fn nul_rejected_without_echo() {
        let secret = "s3cret\0";
        let err = encode(&to_map(&pairs(&[("k", secret)])), DEFAULT_MAX_DATA_BYTES).unwrap_err();
        match err {
            StoreError::InvalidData(m) => {
                assert!(m.contains("value") && m.contains("NUL"), "{m}");
                assert!(!m.contains("s3cret"));
            }
            other => panic!("{other:?}"),
        }
        match encode(&to_map(&pairs(&[("a\0b", "v")])), DEFAULT_MAX_DATA_BYTES).unwrap_err() {
            StoreError::InvalidData(m) => assert!(m.contains("key"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn size_limit() {
        // {"k":"..."} is 8 bytes of framing.
        let fits = "x".repeat(DEFAULT_MAX_DATA_BYTES as usize - 8);
        assert!(encode(&to_map(&pairs(&[("k", &fits)])), DEFAULT_MAX_DATA_BYTES).is_ok());
        let over = "x".repeat(DEFAULT_MAX_DATA_BYTES as usize - 7);
        match encode(&to_map(&pairs(&[("k", &over)])), DEFAULT_MAX_DATA_BYTES).unwrap_err() {
            StoreError::InvalidData(m) => {
                assert!(m.contains("1048577") && m.contains("1048576"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn decode_rejects_non_string_objects() {
        for bad in [
            "",
            "[]",
            "null",
            "\"x\"",
            "{\"a\":1}",
            "{\"a\":null}",
            "{\"a\":{}}",
            "{",
            "{} x",
        ] {
            assert!(
                matches!(decode(bad), Err(StoreError::UnexpectedResult(_))),
                "{bad}"
            );
        }
        let m = decode("{\"a\":\"1\",\"a\":\"2\"}").unwrap();
        assert_eq!(m.get("a").map(String::as_str), Some("2"));
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    #[test]
    fn the_idle_deadline_never_passes_the_absolute_one() {
        let second = MICROS_PER_SECOND;
        assert_eq!(active_deadline(100 * second, None, 0), 100 * second);
        assert_eq!(active_deadline(100 * second, Some(10), 0), 10 * second);
        assert_eq!(
            active_deadline(100 * second, Some(10), 95 * second),
            100 * second
        );
        assert_eq!(
            active_deadline(i64::MAX, Some(i64::MAX), i64::MAX),
            i64::MAX
        );
    }

    #[test]
    fn extensions_are_written_at_most_once_per_tenth_of_the_timeout() {
        let second = MICROS_PER_SECOND;
        // 100 s idle: extend once the deadline is less than 90 s away.
        assert_eq!(touch_threshold(100, 0), 90 * second);
        // Short timeouts still wait at least a second between writes.
        assert_eq!(touch_threshold(2, 0), second);
    }

    #[test]
    fn a_new_session_with_an_idle_timeout_starts_on_its_idle_deadline() {
        let s = new_session(String::new(), 3600, Some(60), 0).unwrap();
        assert_eq!(s.expires_at, 60 * MICROS_PER_SECOND);
        assert_eq!(s.absolute_expires_at, 3600 * MICROS_PER_SECOND);
        assert_eq!(s.version, 0);
    }
}
