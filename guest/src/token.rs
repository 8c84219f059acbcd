//! Session tokens and handles: generation, validation, hashing and hex encoding.
//!
//! A token is 32 bytes from the host's `random-bytes`, as 64 lower-case hex characters. The database
//! keys a session by the SHA-256 of the token's ASCII text; the hex of that hash is the session's handle.

use sha2::{Digest, Sha256};

use crate::bindings::exports::wasm_sessions::store::store::StoreError;
use crate::bindings::wasm_sessions::store::entropy::random_bytes;

/// Bytes of entropy in a token.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token or handle in hex characters.
pub const HEX_LEN: usize = TOKEN_BYTES * 2;

/// Generates a fresh token from exactly 32 bytes of the host's `random-bytes`.
///
/// A host that answers with any other length is broken; the token is refused (`unexpected-result`)
/// rather than stretched or padded from another source.
pub fn generate() -> Result<String, StoreError> {
    let bytes = random_bytes(TOKEN_BYTES as u32);
    from_entropy(&bytes)
}

/// Turns the host's answer to `random-bytes(32)` into a token, refusing any other length.
pub fn from_entropy(bytes: &[u8]) -> Result<String, StoreError> {
    if bytes.len() != TOKEN_BYTES {
        return Err(StoreError::UnexpectedResult(format!(
            "random-bytes({TOKEN_BYTES}) returned {} bytes",
            bytes.len()
        )));
    }
    Ok(encode_hex(bytes))
}

/// Encodes bytes as lower-case hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Checks that `value` is exactly 64 lower-case hex characters; `what` names it in the error
/// (e.g. "session token"). The message never contains the value itself.
pub fn validate(value: &str, what: &str) -> Result<(), StoreError> {
    if value.len() != HEX_LEN {
        return Err(StoreError::InvalidId(format!(
            "{what} must be {HEX_LEN} lower-case hex characters, got {} bytes",
            value.len()
        )));
    }
    if let Some(pos) = value
        .bytes()
        .position(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(StoreError::InvalidId(format!(
            "{what} must contain only lower-case hex digits [0-9a-f]; byte {pos} is not one"
        )));
    }
    Ok(())
}

/// Whether `value` is a well-formed token (64 lower-case hex characters).
pub fn is_valid(value: &str) -> bool {
    validate(value, "token").is_ok()
}

/// Validates a token and returns the SHA-256 of its ASCII bytes: the table key.
pub fn validated_hash(token: &str) -> Result<[u8; 32], StoreError> {
    validate(token, "session token")?;
    Ok(hash(token))
}

/// SHA-256 of the token's ASCII bytes (the `id_hash` column).
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The handle of a token: the lower-case hex of its SHA-256.
pub fn handle(token: &str) -> String {
    encode_hex(&hash(token))
}

/// The handle for a stored `id_hash`: its lower-case hex.
pub fn handle_from_hash(hash: &[u8; 32]) -> String {
    encode_hex(hash)
}

/// Validates a handle and decodes it back to the 32-byte hash it encodes.
pub fn decode_handle(handle: &str) -> Result<[u8; 32], StoreError> {
    validate(handle, "session handle")?;
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(handle.as_bytes().chunks_exact(2)) {
        *slot = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
    }
    Ok(out)
}

/// The value of one validated lower-case hex digit.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn message(err: StoreError) -> String {
        match err {
            StoreError::InvalidId(m) => m,
            other => panic!("expected invalid-id, got {other:?}"),
        }
    }

    #[test]
    fn token_from_entropy_needs_exactly_32_bytes() {
        let t = from_entropy(&[0xab; 32]).unwrap();
        assert_eq!(t, "ab".repeat(32));
        assert!(is_valid(&t));
        assert!(matches!(
            from_entropy(&[1; 31]),
            Err(StoreError::UnexpectedResult(_))
        ));
        assert!(matches!(
            from_entropy(&[1; 33]),
            Err(StoreError::UnexpectedResult(_))
        ));
    }

    #[test]
    fn hex_encodes_lower_case() {
        assert_eq!(encode_hex(&[0x00, 0xab, 0xff, 0x10]), "00abff10");
        assert_eq!(encode_hex(&[0u8; 32]).len(), HEX_LEN);
    }

    #[test]
    fn accepts_well_formed_token() {
        assert!(validate(TOKEN, "session token").is_ok());
        assert!(is_valid(TOKEN));
    }

    #[test]
    fn rejects_wrong_length_without_echoing() {
        let short = "abc123";
        let m = message(validate(short, "session token").unwrap_err());
        assert!(m.contains("got 6 bytes"), "{m}");
        assert!(!m.contains(short));
        assert!(!is_valid(""));
        assert!(!is_valid(&format!("{TOKEN}0")));
    }

    #[test]
    fn rejects_upper_case_and_non_hex_without_echoing() {
        let upper = TOKEN.to_uppercase();
        let m = message(validate(&upper, "session token").unwrap_err());
        assert!(!m.contains(&upper));
        assert!(m.contains("lower-case hex"), "{m}");
        let mut bad = TOKEN.to_string();
        bad.replace_range(63..64, "g");
        assert!(!is_valid(&bad));
        // 64 bytes but multi-byte characters: rejected, no panic.
        let wide = "é".repeat(32);
        assert_eq!(wide.len(), 64);
        assert!(!is_valid(&wide));
    }

    #[test]
    fn hash_is_sha256_of_ascii() {
        // SHA-256("abc")
        assert_eq!(
            encode_hex(&hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(handle_from_hash(&hash(TOKEN)), encode_hex(&hash(TOKEN)));
        assert_eq!(handle(TOKEN), encode_hex(&hash(TOKEN)));
        assert_eq!(validated_hash(TOKEN).unwrap(), hash(TOKEN));
        assert!(validated_hash("nope").is_err());
    }

    #[test]
    fn handle_round_trips() {
        let h = handle_from_hash(&hash(TOKEN));
        assert_eq!(h.len(), HEX_LEN);
        assert_eq!(decode_handle(&h).unwrap(), hash(TOKEN));
        let m = message(decode_handle("XYZ").unwrap_err());
        assert!(m.starts_with("session handle"), "{m}");
    }
}
