//! Session data as JSON text: checking what is written, and building the JSON the statements take.
//!
//! Data is never parsed on the load path: the database's JSONB text is handed through as it is. On the
//! write path every value (and a whole object, for an insert) is checked once and copied in compact form:
//!
//! - it must be valid JSON: `serde_json` parses it into `IgnoredAny`, which walks the text without
//!   building anything (no allocation, no recursion);
//! - one escape-aware scan then copies it without insignificant whitespace and refuses the two things
//!   valid JSON may hold that PostgreSQL's JSONB refuses: a `\u0000` escape (a NUL character) and an
//!   unpaired UTF-16 surrogate escape. `\\u0000` is an escaped backslash followed by text, not a NUL.
//!
//! Keys are plain strings: they must not contain NUL and are JSON-escaped here. Error messages name the
//! rule and never a key or a value.

use serde::de::IgnoredAny;

use crate::bindings::exports::wasm_sessions::store::store::StoreError;

/// The `invalid-data` error for `message`.
fn invalid(message: String) -> StoreError {
    StoreError::InvalidData(message)
}

/// The error for data of `size` bytes of JSON over the limit `limit`.
pub fn too_large(size: u64, limit: u32) -> StoreError {
    invalid(format!(
        "session data is {size} bytes of JSON; the limit is {limit}"
    ))
}

/// Refuses JSON text that is already longer than `limit` bytes. Compact JSON is never longer than the
/// JSONB text PostgreSQL renders from it (which adds a space after each `:` and `,`), so this refuses
/// only what the database would refuse too.
pub fn check_size(json: &str, limit: u32) -> Result<(), StoreError> {
    let size = json.len() as u64;
    if size > u64::from(limit) {
        return Err(too_large(size, limit));
    }
    Ok(())
}

/// Refuses a key with a NUL character (PostgreSQL cannot store it in JSONB or in `text`).
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.contains('\0') {
        return Err(invalid(
            "a session data key contains a NUL character; PostgreSQL cannot store NUL characters"
                .to_string(),
        ));
    }
    Ok(())
}

/// Appends `key` as a JSON string literal, after [`check_key`].
pub fn push_key(out: &mut String, key: &str) -> Result<(), StoreError> {
    check_key(key)?;
    push_escaped(out, key);
    Ok(())
}

/// Appends `text` as a JSON string literal: `"` and `\` escaped, control characters as `\n`, `\t`, ... or
/// `\u00XX`, everything else as it is.
pub fn push_escaped(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, byte) in text.bytes().enumerate() {
        let escape: &str = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so `i` is a character boundary.
        out.push_str(&text[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&text[start..]);
    out.push('"');
}

/// Checks one JSON value text (`what` names it in messages, e.g. "a session data value") and appends
/// its compact form to `out`.
pub fn push_value(out: &mut String, value: &str, what: &str) -> Result<(), StoreError> {
    check_json(value, what)?;
    compact_into(out, value, MAX_DEPTH).map_err(|rule| invalid(format!("{what} {rule}")))
}

/// Checks a whole session data text: valid JSON, a JSON object, storable by JSONB. Returns its compact
/// form.
pub fn compact_object(text: &str, what: &str) -> Result<String, StoreError> {
    check_json(text, what)?;
    if text.trim_start_matches(is_json_space).as_bytes().first() != Some(&b'{') {
        return Err(invalid(format!("{what} must be a JSON object")));
    }
    let mut out = String::with_capacity(text.len());
    // The object itself is one level more than its values.
    compact_into(&mut out, text, MAX_DEPTH + 1)
        .map_err(|rule| invalid(format!("{what} {rule}")))?;
    Ok(out)
}

/// Builds the JSON object `{"key":value,...}` from keys and JSON value texts; for a repeated key the last
/// value wins (as in JSONB). `what` names the values in messages.
pub fn object<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    what: &str,
) -> Result<String, StoreError> {
    let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
    // A stable sort keeps repeated keys in their order; the last of each run wins.
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::from("{");
    let mut overwritten = String::new();
    for (i, &(key, value)) in pairs.iter().enumerate() {
        if pairs.get(i + 1).is_some_and(|next| next.0 == key) {
            // Overwritten by a later value: checked all the same, but not written.
            check_key(key)?;
            push_value(&mut overwritten, value, what)?;
            overwritten.clear();
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        push_key(&mut out, key)?;
        out.push(':');
        push_value(&mut out, value, what)?;
    }
    out.push('}');
    Ok(out)
}

/// Whether `c` is JSON whitespace.
fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Checks that `text` is one valid JSON value, without building it.
fn check_json(text: &str, what: &str) -> Result<(), StoreError> {
    serde_json::from_str::<IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| {
            // The position and category only: serde_json's message may quote the input.
            let kind = match e.classify() {
                serde_json::error::Category::Eof => "ends early",
                _ => "is malformed",
            };
            invalid(format!(
                "{what} is not valid JSON: it {kind} at line {} column {}",
                e.line(),
                e.column()
            ))
        })
}

/// The deepest nesting of arrays and objects a value may have. The data object adds one level, and hosts
/// parse the stored data back (serde_json stops at 128 levels): data the store accepts always loads.
pub const MAX_DEPTH: usize = 64;

/// Copies valid JSON `text` to `out` without whitespace outside strings, refusing a `\u0000` escape or
/// an unpaired surrogate escape in any string (keys included) and nesting deeper than `max_depth`. The
/// error completes "`what` ...".
pub fn compact_into(out: &mut String, text: &str, max_depth: usize) -> Result<(), &'static str> {
    const NUL: &str = "contains the escape \\u0000 (a NUL character); PostgreSQL JSONB cannot store NUL characters";
    const SURROGATE: &str =
        "contains an unpaired UTF-16 surrogate escape; PostgreSQL JSONB refuses it";
    const MALFORMED: &str = "is not valid JSON";
    const TOO_DEEP: &str = "nests arrays and objects too deep (64 levels in a value at most)";
    let bytes = text.as_bytes();
    out.reserve(text.len());
    let mut start = 0;
    let mut i = 0;
    let mut in_string = false;
    let mut depth = 0usize;
    while i < bytes.len() {
        let byte = bytes[i];
        if in_string {
            match byte {
                b'"' => in_string = false,
                b'\\' => {
                    if bytes.get(i + 1) == Some(&b'u') {
                        let unit = hex4(bytes, i + 2).ok_or(MALFORMED)?;
                        match unit {
                            0 => return Err(NUL),
                            0xd800..=0xdbff => {
                                // A high surrogate must be followed at once by a low one.
                                let low = (bytes.get(i + 6) == Some(&b'\\')
                                    && bytes.get(i + 7) == Some(&b'u'))
                                .then(|| hex4(bytes, i + 8))
                                .flatten();
                                if !matches!(low, Some(0xdc00..=0xdfff)) {
                                    return Err(SURROGATE);
                                }
                                i += 12;
                                continue;
                            }
                            0xdc00..=0xdfff => return Err(SURROGATE),
                            _ => {
                                i += 6;
                                continue;
                            }
                        }
                    }
                    // Any other escape is two bytes: `\"`, `\\`, `\/`, `\b`, ...
                    i += 2;
                    continue;
                }
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max_depth {
                        return Err(TOO_DEEP);
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                b' ' | b'\t' | b'\n' | b'\r' => {
                    // Whitespace is ASCII, so `i` is a character boundary.
                    out.push_str(&text[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    if in_string {
        return Err(MALFORMED);
    }
    out.push_str(&text[start..]);
    Ok(())
}

/// The value of the four hex digits at `bytes[at..at + 4]`.
fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u16, |acc, &d| {
        let v = char::from(d).to_digit(16)?;
        Some((acc << 4) | v as u16)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(err: StoreError) -> String {
        match err {
            StoreError::InvalidData(m) => m,
            other => panic!("expected invalid-data, got {other:?}"),
        }
    }

    fn compact(text: &str) -> Result<String, &'static str> {
        let mut out = String::new();
        compact_into(&mut out, text, usize::MAX).map(|()| out)
    }

    #[test]
    fn keys_are_escaped_as_serde_json_does() {
        for key in [
            "",
            "plain",
            "quote\"back\\slash",
            "new\nline\r\ttab",
            "\u{8}\u{c}\u{1}\u{1f}\u{7f}",
            "ü ✓ 😀",
            "</script>",
        ] {
            let mut out = String::new();
            push_key(&mut out, key).unwrap();
            assert_eq!(out, serde_json::to_string(key).unwrap(), "{key:?}");
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), key);
        }
    }

    #[test]
    fn keys_with_nul_are_refused_without_echo() {
        let m = message(push_key(&mut String::new(), "s3cret\0").unwrap_err());
        assert!(m.contains("key") && m.contains("NUL"), "{m}");
        assert!(!m.contains("s3cret"));
    }

    #[test]
    fn values_must_be_json_and_messages_never_quote_them() {
        for bad in [
            "",
            "s3cret",
            "\"s3cret",
            "{\"s3cret\":}",
            "[1,]",
            "01",
            "1 2",
            "\"a\u{1}\"",
            "{'a':1}",
            "NaN",
            "\"\\x\"",
        ] {
            let m =
                message(push_value(&mut String::new(), bad, "a session data value").unwrap_err());
            assert!(
                m.starts_with("a session data value is not valid JSON"),
                "{bad:?}: {m}"
            );
            assert!(!m.contains("s3cret"), "{m}");
        }
        // Neither check recurses: deep nesting cannot overflow the guest's stack; and nesting past
        // `MAX_DEPTH` is refused, so every host can parse the data back.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(push_value(&mut String::new(), &deep, "v").is_err());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(99_999));
        assert!(push_value(&mut String::new(), &deep, "v").is_err());
        let limit = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(push_value(&mut String::new(), &limit, "v").is_ok());
        let over = format!("[{limit}]");
        let m = message(push_value(&mut String::new(), &over, "v").unwrap_err());
        assert!(m.contains("64 levels"), "{m}");
        let object = format!("{{\"k\":{limit}}}");
        assert!(compact_object(&object, "data").is_ok());
        assert!(compact_object(&format!("{{\"k\":{over}}}"), "data").is_err());
    }

    #[test]
    fn values_are_copied_compact() {
        for (value, compacted) in [
            ("1", "1"),
            (" -1.5e3 ", "-1.5e3"),
            ("true", "true"),
            ("null", "null"),
            ("\"a b\"", "\"a b\""),
            ("[ 1 , 2 ,\n\t3 ]", "[1,2,3]"),
            (
                "{ \"k\" : \"v \\\" }\" , \"n\": [ {} ] }",
                "{\"k\":\"v \\\" }\",\"n\":[{}]}",
            ),
            ("\"ü ✓\"", "\"ü ✓\""),
        ] {
            let mut out = String::new();
            push_value(&mut out, value, "v").unwrap();
            assert_eq!(out, compacted);
            let a: serde_json::Value = serde_json::from_str(value).unwrap();
            let b: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn the_nul_scanner_knows_escapes() {
        // A real NUL escape, anywhere in any string (keys too), in any case of hex digits.
        for bad in [
            "\"\\u0000\"",
            "\"abc\\u0000def\"",
            "{\"\\u0000\":1}",
            "[1, {\"a\": [\"x\", \"\\u0000\"]}]",
            "\"\\\\\\u0000\"",
        ] {
            assert!(compact(bad).unwrap_err().contains("NUL"), "{bad}");
            let m =
                message(push_value(&mut String::new(), bad, "a session data value").unwrap_err());
            assert!(
                m.starts_with("a session data value contains the escape \\u0000"),
                "{m}"
            );
        }
        // An escaped backslash followed by the text `u0000` is no NUL; neither are other escapes.
        for good in [
            "\"\\\\u0000\"",
            "\"\\\\\\\\u0000\"",
            "\"\\u0001\\u00e9\\u2028\"",
            "\"u0000\"",
            "\"\\\"\\u0030\"",
            "\"\\/\\b\\f\\n\\r\\t\"",
        ] {
            assert_eq!(compact(good).unwrap(), good, "{good}");
            assert!(push_value(&mut String::new(), good, "v").is_ok(), "{good}");
        }
    }

    #[test]
    fn unpaired_surrogate_escapes_are_refused() {
        for bad in [
            "\"\\ud800\"",
            "\"\\ud800x\"",
            "\"\\ud800\\u0041\"",
            "\"\\udc00\"",
            "\"\\uDFFF\\uD800\"",
            "\"\\ud800\\ud800\"",
        ] {
            assert!(compact(bad).unwrap_err().contains("surrogate"), "{bad}");
        }
        assert_eq!(compact("\"\\ud83d\\ude00\"").unwrap(), "\"\\ud83d\\ude00\"");
        assert_eq!(compact("\"\\uD83D\\uDE00\"").unwrap(), "\"\\uD83D\\uDE00\"");
    }

    #[test]
    fn the_scanner_never_panics_on_truncated_input() {
        for bad in ["\"\\u", "\"\\u00", "\"\\ud800\\u", "\"abc", "\"\\", "\"é"] {
            assert!(compact(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn objects_are_built_with_the_last_duplicate_winning() {
        assert_eq!(object([], "v").unwrap(), "{}");
        let json = object(
            [
                ("b", "1"),
                ("a", " \"x\" "),
                ("b", "[2, 3]"),
                ("q\"", "null"),
            ],
            "v",
        )
        .unwrap();
        assert_eq!(json, "{\"a\":\"x\",\"b\":[2,3],\"q\\\"\":null}");
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["b"], serde_json::json!([2, 3]));
        // An overwritten value is not written, but it must be valid all the same.
        assert!(object([("k", "bad"), ("k", "1")], "v").is_err());
        assert!(object([("k", "1"), ("k\0", "1")], "v").is_err());
        assert!(object([("k", "\"\\u0000\"")], "v").is_err());
    }

    #[test]
    fn whole_data_must_be_an_object() {
        assert_eq!(compact_object(" {} ", "the session data").unwrap(), "{}");
        assert_eq!(
            compact_object("{ \"a\" : { \"b\" : [ ] } }", "the session data").unwrap(),
            "{\"a\":{\"b\":[]}}"
        );
        for bad in ["[]", "1", "\"{}\"", "null", " [ {} ]"] {
            let m = message(compact_object(bad, "the session data").unwrap_err());
            assert_eq!(m, "the session data must be a JSON object", "{bad}");
        }
        assert!(compact_object("{\"a\":\"\\u0000\"}", "the session data").is_err());
        assert!(compact_object("{", "the session data").is_err());
    }

    #[test]
    fn the_size_check_counts_bytes() {
        assert!(check_size("{}", 2).is_ok());
        let m = message(check_size("{\"a\":1}", 6).unwrap_err());
        assert_eq!(m, "session data is 7 bytes of JSON; the limit is 6");
        // Multi-byte characters count in bytes.
        assert!(check_size("\"é\"", 3).is_err());
    }
}
