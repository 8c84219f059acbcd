//! The native baseline: what the guest does for `new-session`, `save` and `load`, written as plain Rust
//! on the host and sent through the same [`SqlDriver`] (the same `PostgresDriver` pool, the same
//! prepared-statement cache, the same value conversions) with exactly the guest's SQL ([`crate::sql`]).
//! The difference between the two is therefore the cost of the sandbox: instantiation or pool checkout,
//! copying values across the component boundary, and running the policy as WebAssembly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use wasm_sessions::{RowSet, Session, SqlDriver, SqlValue, StoreError};

use crate::sql;

/// The largest serialized session data accepted (the guest's limit).
const MAX_DATA_BYTES: usize = 1_048_576;

/// The session operations of the benchmark, natively.
#[derive(Clone)]
pub struct NativeStore {
    driver: Arc<dyn SqlDriver>,
}

impl std::fmt::Debug for NativeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStore").finish_non_exhaustive()
    }
}

impl NativeStore {
    /// A native store on `driver`.
    pub fn new(driver: Arc<dyn SqlDriver>) -> Self {
        Self { driver }
    }

    /// A fresh token: 32 bytes of OS randomness as lower-case hex (as the guest's `generate-session-id`).
    ///
    /// # Errors
    /// [`StoreError::Guest`] when the OS has no randomness (the component traps then).
    pub fn generate_session_id() -> Result<String, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Guest(Box::new(e)))?;
        Ok(hex(&bytes))
    }

    /// A new, unsaved session that expires `max_age` seconds from now (as `new-session`; no SQL).
    ///
    /// # Errors
    /// [`StoreError::InvalidData`] for a lifetime outside 1..=400 days.
    pub fn new_session(max_age: i64) -> Result<Session, StoreError> {
        if !(1..=34_560_000).contains(&max_age) {
            return Err(StoreError::InvalidData(format!(
                "max-age must be between 1 and 34560000 seconds, got {max_age}"
            )));
        }
        // Microsecond precision, as the guest's clock and the database have.
        let now = time(&SqlValue::Timestamp(micros(SystemTime::now())))?;
        Ok(Session {
            id: Self::generate_session_id()?,
            data: BTreeMap::new(),
            user_id: None,
            created_at: now,
            expires_at: now + Duration::from_secs(max_age.unsigned_abs()),
            absolute_expires_at: now + Duration::from_secs(max_age.unsigned_abs()),
            updated_at: now,
            version: 0,
            is_saved: false,
        })
    }

    /// Inserts a new session ([`sql::INSERT`]) or overwrites a saved one ([`sql::UPDATE`] with no
    /// version check), in one statement, as the guest's `save` under `Concurrency::LastWriteWins` (the
    /// semantics tower-sessions has, which the benchmark compares with).
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], [`StoreError::InvalidData`], [`StoreError::Expired`],
    /// [`StoreError::Database`], [`StoreError::UnexpectedResult`].
    pub async fn save(&self, session: &mut Session) -> Result<(), StoreError> {
        let hash = validated_hash(&session.id)?;
        let json = encode(&session.data)?;
        if SystemTime::now() >= session.expires_at {
            return Err(StoreError::Expired);
        }
        let user = session.user_id.map_or(SqlValue::Null, SqlValue::Int64);
        // No idle timeout: the deadline is the absolute one.
        let expires = SqlValue::Timestamp(micros(session.absolute_expires_at));
        let absolute = SqlValue::Timestamp(micros(session.absolute_expires_at));
        let rows = if session.is_saved {
            self.driver
                .query(
                    sql::UPDATE,
                    &[
                        SqlValue::Bytes(hash.to_vec()),
                        SqlValue::Bytes(hash.to_vec()),
                        SqlValue::Json(json),
                        user,
                        expires,
                        absolute,
                        SqlValue::Null,
                    ],
                )
                .await
        } else {
            self.driver
                .query(
                    sql::INSERT,
                    &[
                        SqlValue::Bytes(hash.to_vec()),
                        SqlValue::Json(json),
                        user,
                        SqlValue::Timestamp(micros(session.created_at)),
                        expires,
                        absolute,
                    ],
                )
                .await
        }
        .map_err(StoreError::Database)?;
        if rows.rows.is_empty() {
            // An insert that met an existing token, or an update of a deleted row.
            return Err(StoreError::Conflict);
        }
        if rows.rows.len() != 1 {
            return Err(StoreError::UnexpectedResult(format!(
                "save returned {} rows, expected 1",
                rows.rows.len()
            )));
        }
        session.created_at = time(column(&rows, "created_at")?)?;
        session.updated_at = time(column(&rows, "updated_at")?)?;
        session.version = version(column(&rows, "version")?)?;
        session.expires_at = session.absolute_expires_at;
        session.is_saved = true;
        Ok(())
    }

    /// Loads the session with token `id` in one statement ([`sql::SELECT_ONE`]), as the guest's `load`.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] (no SQL sent), [`StoreError::NotFound`], [`StoreError::Expired`],
    /// [`StoreError::Database`], [`StoreError::UnexpectedResult`].
    pub async fn load(&self, id: &str) -> Result<Session, StoreError> {
        let hash = validated_hash(id)?;
        let rows = self
            .driver
            .query(sql::SELECT_ONE, &[SqlValue::Bytes(hash.to_vec())])
            .await
            .map_err(StoreError::Database)?;
        match rows.rows.len() {
            0 => return Err(StoreError::NotFound),
            1 => {}
            n => {
                return Err(StoreError::UnexpectedResult(format!(
                    "load returned {n} rows for one id"
                )));
            }
        }
        let expires_at = time(column(&rows, "expires_at")?)?;
        if SystemTime::now() >= expires_at {
            return Err(StoreError::Expired);
        }
        let data = match column(&rows, "data")? {
            SqlValue::Json(text) => serde_json::from_str(text).map_err(|e| {
                StoreError::UnexpectedResult(format!(
                    "session data is not a JSON object of strings: {e}"
                ))
            })?,
            _ => return Err(StoreError::UnexpectedResult("data is not json".into())),
        };
        let user_id = match column(&rows, "user_id")? {
            SqlValue::Int64(v) => Some(*v),
            SqlValue::Null => None,
            _ => return Err(StoreError::UnexpectedResult("user_id is not int64".into())),
        };
        let absolute_expires_at = match column(&rows, "absolute_expires_at")? {
            SqlValue::Null => expires_at,
            other => time(other)?,
        };
        Ok(Session {
            id: id.to_owned(),
            data,
            user_id,
            created_at: time(column(&rows, "created_at")?)?,
            expires_at,
            absolute_expires_at,
            updated_at: time(column(&rows, "updated_at")?)?,
            version: version(column(&rows, "version")?)?,
            is_saved: true,
        })
    }
}

/// Lower-case hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Checks a token (64 lower-case hex characters) and returns the SHA-256 of its text.
fn validated_hash(token: &str) -> Result<[u8; 32], StoreError> {
    if token.len() != 64
        || !token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(StoreError::InvalidId(
            "session token must be 64 lower-case hex characters".into(),
        ));
    }
    Ok(Sha256::digest(token.as_bytes()).into())
}

/// The data as JSON object text, with the guest's checks (no NUL, at most 1 MiB).
fn encode(data: &BTreeMap<String, String>) -> Result<String, StoreError> {
    if data
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(StoreError::InvalidData(
            "session data contains a NUL character".into(),
        ));
    }
    let json = serde_json::to_string(data)
        .map_err(|e| StoreError::InvalidData(format!("session data cannot be serialized: {e}")))?;
    if json.len() > MAX_DATA_BYTES {
        return Err(StoreError::InvalidData(format!(
            "session data serializes to {} bytes of JSON; the limit is {MAX_DATA_BYTES}",
            json.len()
        )));
    }
    Ok(json)
}

/// The value of column `name` in the first row.
fn column<'a>(rows: &'a RowSet, name: &str) -> Result<&'a SqlValue, StoreError> {
    rows.columns
        .iter()
        .position(|c| c == name)
        .and_then(|i| rows.rows.first()?.get(i))
        .ok_or_else(|| StoreError::UnexpectedResult(format!("column {name} is missing")))
}

/// A `timestamp` value as a `SystemTime`.
fn time(value: &SqlValue) -> Result<SystemTime, StoreError> {
    match value {
        SqlValue::Timestamp(us) if *us >= 0 => {
            Ok(UNIX_EPOCH + Duration::from_micros(us.unsigned_abs()))
        }
        SqlValue::Timestamp(us) => Ok(UNIX_EPOCH - Duration::from_micros(us.unsigned_abs())),
        _ => Err(StoreError::UnexpectedResult("not a timestamp".into())),
    }
}

/// A non-negative `int64` version.
fn version(value: &SqlValue) -> Result<u64, StoreError> {
    match value {
        SqlValue::Int64(v) => {
            u64::try_from(*v).map_err(|_| StoreError::UnexpectedResult("a negative version".into()))
        }
        _ => Err(StoreError::UnexpectedResult("version is not int64".into())),
    }
}

/// Microseconds since the epoch (saturating).
fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}
