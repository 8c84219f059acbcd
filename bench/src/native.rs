//! The native baseline: what the guest and the host glue do for `new-session`, `load` and `save`, written
//! as plain Rust and sent through the same [`SqlDriver`] (the same `PostgresDriver` pool, the same
//! prepared-statement cache, the same value conversions) with exactly the guest's SQL ([`crate::sql`])
//! and the same kinds of parameters.
//!
//! The work done per operation is the same as the component's, done once: validate the token and hash it
//! (SHA-256), the handle (hex of the hash), the data as JSON text (serialized on save; the database's
//! JSONB text parsed into a map on load and after a write, as the host does with what the guest returns),
//! the checks the guest makes (NUL escapes, size), the expiry decision. The difference between the two
//! is therefore the cost of the sandbox: taking a warm instance, copying values across the component
//! boundary (both ways, and for every SQL call), and running the policy as WebAssembly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use wasm_sessions::{Config, RowSet, SqlDriver, SqlValue, StoreError};

use crate::sql;

/// A session as the native baseline holds it: the same fields as [`wasm_sessions::Session`] (times in
/// microseconds since 1970), and the keys changed since it was loaded or saved (the delta a save sends).
#[derive(Clone, PartialEq)]
pub struct NativeSession {
    /// The token (64 lower-case hex characters).
    pub id: String,
    /// The hex SHA-256 of the token.
    pub handle: String,
    /// The data, parsed.
    pub data: BTreeMap<String, Value>,
    /// The authenticated user.
    pub user_id: Option<i64>,
    /// The label.
    pub label: Option<String>,
    /// Creation time, µs.
    pub created_at: i64,
    /// When the session stops being valid, µs.
    pub expires_at: i64,
    /// The absolute deadline, µs.
    pub absolute_expires_at: i64,
    /// Last write, µs.
    pub updated_at: i64,
    /// The stored version; 0 when unsaved.
    pub version: u64,
    /// Whether the session exists in the database.
    pub is_saved: bool,
    /// Keys written since the last load or save.
    changed: BTreeMap<String, ()>,
    /// Whether the user changed since the last load or save.
    user_changed: bool,
}

impl std::fmt::Debug for NativeSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeSession")
            .field("keys", &self.data.len())
            .field("version", &self.version)
            .field("is_saved", &self.is_saved)
            .finish_non_exhaustive()
    }
}

impl NativeSession {
    /// Stores the string `value` under `key`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = Value::String(value.into());
        if self.data.get(&key) == Some(&value) {
            return;
        }
        self.data.insert(key.clone(), value);
        self.changed.insert(key, ());
    }

    /// Sets the authenticated user.
    pub fn set_user(&mut self, user: Option<i64>) {
        if self.user_id != user {
            self.user_id = user;
            self.user_changed = true;
        }
    }
}

/// The session operations of the benchmark, natively.
#[derive(Clone)]
pub struct NativeStore {
    driver: Arc<dyn SqlDriver>,
    max_age: i64,
    max_data_bytes: u32,
}

impl std::fmt::Debug for NativeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeStore").finish_non_exhaustive()
    }
}

impl NativeStore {
    /// A native store on `driver` with the lifetime and data limit of `config` (the component's
    /// configuration; last-write-wins, no idle timeout, as the benchmark configures the component).
    pub fn new(driver: Arc<dyn SqlDriver>, config: &Config) -> Self {
        Self {
            driver,
            max_age: config.max_age,
            max_data_bytes: config.max_data_bytes,
        }
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

    /// A new, unsaved session created now (as `new-session`; no SQL).
    ///
    /// # Errors
    /// As [`generate_session_id`](Self::generate_session_id).
    pub fn new_session(&self) -> Result<NativeSession, StoreError> {
        let now = now_micros();
        let id = Self::generate_session_id()?;
        let absolute = now.saturating_add(self.max_age.saturating_mul(1_000_000));
        Ok(NativeSession {
            handle: hex(&Sha256::digest(id.as_bytes())),
            id,
            data: BTreeMap::new(),
            user_id: None,
            label: None,
            created_at: now,
            expires_at: absolute,
            absolute_expires_at: absolute,
            updated_at: now,
            version: 0,
            is_saved: false,
            changed: BTreeMap::new(),
            user_changed: false,
        })
    }

    /// Writes the session in one statement: a new one is inserted whole ([`sql::INSERT`]), a saved one
    /// gets its changes ([`sql::UPDATE_KEYS_UNCONDITIONAL`] for keys alone, else [`sql::UPDATE`];
    /// last-write-wins: no conditions, and the copy keeps its own data), and the stored row comes back.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`], [`StoreError::InvalidData`], [`StoreError::Expired`],
    /// [`StoreError::Conflict`], [`StoreError::NotFound`], [`StoreError::Database`],
    /// [`StoreError::UnexpectedResult`].
    pub async fn save(&self, session: &mut NativeSession) -> Result<(), StoreError> {
        let hash = validated_hash(&session.id)?;
        let now = now_micros();
        let limit = SqlValue::Int64(self.max_data_bytes.into());
        let rows = if session.is_saved {
            let mut set = BTreeMap::new();
            let mut removed = Vec::new();
            for key in session.changed.keys() {
                match session.data.get(key) {
                    Some(value) => {
                        set.insert(key.as_str(), value);
                    }
                    None => removed.push(key.clone()),
                }
            }
            let set = self.encode(&set)?;
            if !session.user_changed {
                let params = [
                    SqlValue::Bytes(hash.to_vec()),
                    SqlValue::Timestamp(now),
                    SqlValue::TextArray(removed),
                    SqlValue::Json(set),
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    limit,
                ];
                self.query(sql::UPDATE_KEYS_UNCONDITIONAL, &params).await?
            } else {
                let params = [
                    SqlValue::Bytes(hash.to_vec()),
                    SqlValue::Bytes(hash.to_vec()),
                    SqlValue::Timestamp(now),
                    SqlValue::Boolean(false),
                    SqlValue::TextArray(removed),
                    SqlValue::Json(set),
                    SqlValue::Boolean(true),
                    session.user_id.map_or(SqlValue::Null, SqlValue::Int64),
                    SqlValue::Boolean(false),
                    SqlValue::Null,
                    SqlValue::Boolean(false),
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Null,
                    SqlValue::Boolean(false),
                    SqlValue::Null,
                    SqlValue::Boolean(false),
                    SqlValue::Null,
                    SqlValue::Null,
                    limit,
                    SqlValue::Null,
                ];
                self.query(sql::UPDATE, &params).await?
            }
        } else {
            let data = self.encode(&session.data)?;
            let absolute = session.absolute_expires_at.min(
                session
                    .created_at
                    .saturating_add(self.max_age.saturating_mul(1_000_000)),
            );
            if now >= absolute {
                return Err(StoreError::Expired);
            }
            let params = [
                SqlValue::Bytes(hash.to_vec()),
                SqlValue::Json(data),
                session.user_id.map_or(SqlValue::Null, SqlValue::Int64),
                session.label.clone().map_or(SqlValue::Null, SqlValue::Text),
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Timestamp(session.created_at),
                SqlValue::Timestamp(absolute),
                SqlValue::Timestamp(absolute),
                SqlValue::Timestamp(now),
                limit,
            ];
            self.query(sql::INSERT, &params).await?
        };
        match rows.rows.len() {
            0 if session.is_saved => return Err(StoreError::NotFound),
            0 => return Err(StoreError::Conflict),
            1 => {}
            n => {
                return Err(StoreError::UnexpectedResult(format!(
                    "the write returned {n} rows, expected 1"
                )));
            }
        }
        if session.is_saved {
            apply_update_row(&rows, session)
        } else {
            *session = session_from_row(&rows, std::mem::take(&mut session.id), &hash)?;
            Ok(())
        }
    }

    /// Loads the session with token `id` in one statement ([`sql::LOAD`]), as the guest's `load`.
    ///
    /// # Errors
    /// [`StoreError::InvalidId`] (no SQL sent), [`StoreError::NotFound`], [`StoreError::Expired`],
    /// [`StoreError::Database`], [`StoreError::UnexpectedResult`].
    pub async fn load(&self, id: &str) -> Result<NativeSession, StoreError> {
        let hash = validated_hash(id)?;
        let rows = self
            .query(sql::LOAD, &[SqlValue::Bytes(hash.to_vec())])
            .await?;
        match rows.rows.len() {
            0 => return Err(StoreError::NotFound),
            1 => {}
            n => {
                return Err(StoreError::UnexpectedResult(format!(
                    "load returned {n} rows for one id"
                )));
            }
        }
        let session = session_from_row(&rows, id.to_owned(), &hash)?;
        if now_micros() >= session.expires_at {
            return Err(StoreError::Expired);
        }
        Ok(session)
    }

    async fn query(&self, statement: &str, params: &[SqlValue]) -> Result<RowSet, StoreError> {
        self.driver
            .query(statement, params)
            .await
            .map_err(StoreError::Database)
    }

    /// JSON object text with the guest's checks: no NUL character, at most `max_data_bytes`.
    fn encode<V: serde::Serialize>(&self, data: &V) -> Result<String, StoreError> {
        let json = serde_json::to_string(data).map_err(|e| {
            StoreError::InvalidData(format!("session data cannot be serialized: {e}"))
        })?;
        if json.contains("\\u0000") {
            return Err(StoreError::InvalidData(
                "session data contains a NUL character".into(),
            ));
        }
        if json.len() > self.max_data_bytes as usize {
            return Err(StoreError::InvalidData(format!(
                "session data is {} bytes of JSON; the limit is {}",
                json.len(),
                self.max_data_bytes
            )));
        }
        Ok(json)
    }
}

/// The current time in microseconds since 1970.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
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

/// The session the only row of a load or a write describes, under token `id` with hash `hash`. By
/// position, as the guest decodes it: `data, user_id, label, expiry_mode, expiry_value, created_at,
/// expires_at, absolute_expires_at, updated_at, version` (`bench/src/sql.rs`).
fn session_from_row(
    rows: &RowSet,
    id: String,
    hash: &[u8; 32],
) -> Result<NativeSession, StoreError> {
    let [
        data,
        user_id,
        label,
        expiry_mode,
        expiry_value,
        created_at,
        expires_at,
        absolute_expires_at,
        updated_at,
        version,
    ] = rows
        .rows
        .first()
        .and_then(|r| <&[SqlValue; 10]>::try_from(r.as_slice()).ok())
        .ok_or_else(|| unexpected("a malformed row"))?;
    let time = |name: &str, value: &SqlValue| match value {
        SqlValue::Timestamp(t) => Ok(*t),
        _ => Err(unexpected(&format!("column {name} is not a timestamp"))),
    };
    let data = match data {
        SqlValue::Json(text) => serde_json::from_str(text)
            .map_err(|e| unexpected(&format!("session data is not a JSON object: {e}")))?,
        _ => return Err(unexpected("column data is not json")),
    };
    let user_id = match user_id {
        SqlValue::Int64(v) => Some(*v),
        SqlValue::Null => None,
        _ => return Err(unexpected("column user_id is not int64")),
    };
    let label = match label {
        SqlValue::Text(v) => Some(v.clone()),
        SqlValue::Null => None,
        _ => return Err(unexpected("column label is not text")),
    };
    if !matches!(
        (expiry_mode, expiry_value),
        (SqlValue::Null, SqlValue::Null)
    ) {
        return Err(unexpected("per-session expiry modes are not benchmarked"));
    }
    let expires_at = time("expires_at", expires_at)?;
    let absolute_expires_at = match absolute_expires_at {
        SqlValue::Null => expires_at,
        other => time("absolute_expires_at", other)?,
    };
    let version = match version {
        SqlValue::Int64(v) => u64::try_from(*v).map_err(|_| unexpected("a negative version"))?,
        _ => return Err(unexpected("column version is not int64")),
    };
    Ok(NativeSession {
        id,
        handle: hex(hash),
        data,
        user_id,
        label,
        created_at: time("created_at", created_at)?,
        expires_at,
        absolute_expires_at,
        updated_at: time("updated_at", updated_at)?,
        version,
        is_saved: true,
        changed: BTreeMap::new(),
        user_changed: false,
    })
}

/// Takes what an update's only row returns (`data` null: the copy's own stands; `user_id, label,
/// expiry_mode, expiry_value, expires_at, updated_at, version`) into the copy it wrote, as the guest does.
fn apply_update_row(rows: &RowSet, session: &mut NativeSession) -> Result<(), StoreError> {
    let [
        data,
        user_id,
        label,
        expiry_mode,
        expiry_value,
        expires_at,
        updated_at,
        version,
    ] = rows
        .rows
        .first()
        .and_then(|r| <&[SqlValue; 8]>::try_from(r.as_slice()).ok())
        .ok_or_else(|| unexpected("a malformed row"))?;
    if !matches!(
        (expiry_mode, expiry_value),
        (SqlValue::Null, SqlValue::Null)
    ) {
        return Err(unexpected("per-session expiry modes are not benchmarked"));
    }
    let time = |name: &str, value: &SqlValue| match value {
        SqlValue::Timestamp(t) => Ok(*t),
        _ => Err(unexpected(&format!("column {name} is not a timestamp"))),
    };
    match data {
        SqlValue::Json(text) => {
            session.data = serde_json::from_str(text)
                .map_err(|e| unexpected(&format!("session data is not a JSON object: {e}")))?;
        }
        SqlValue::Null => {}
        _ => return Err(unexpected("column data is not json")),
    }
    session.user_id = match user_id {
        SqlValue::Int64(v) => Some(*v),
        SqlValue::Null => None,
        _ => return Err(unexpected("column user_id is not int64")),
    };
    session.label = match label {
        SqlValue::Text(v) => Some(v.clone()),
        SqlValue::Null => None,
        _ => return Err(unexpected("column label is not text")),
    };
    session.expires_at = time("expires_at", expires_at)?;
    session.updated_at = time("updated_at", updated_at)?;
    session.version = match version {
        SqlValue::Int64(v) => u64::try_from(*v).map_err(|_| unexpected("a negative version"))?,
        _ => return Err(unexpected("column version is not int64")),
    };
    session.changed.clear();
    session.user_changed = false;
    Ok(())
}

fn unexpected(message: &str) -> StoreError {
    StoreError::UnexpectedResult(message.to_owned())
}
