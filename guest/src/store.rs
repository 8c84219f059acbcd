//! The SQL the store sends through the host's `sql-query`, and strict decoding of the rows it gets back.

use crate::bindings::exports::wasm_sessions::store::store::{
    Concurrency, Config, Session, StoreError, UserSession,
};
use crate::bindings::wasm_sessions::store::sql::{RowSet, SqlValue, sql_query};
use crate::session::{self, Data};
use crate::token;

/// Rows removed per cleanup batch by `cleanup`.
pub const CLEANUP_BATCH: u32 = 1000;

/// The largest `limit` `cleanup-batch` accepts: one statement never locks more rows than this.
pub const MAX_CLEANUP_BATCH: u32 = 100_000;

const INSERT: &str = "INSERT INTO sessions \
(id_hash, data, user_id, created_at, expires_at, absolute_expires_at) \
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_hash) DO NOTHING \
RETURNING created_at, updated_at, version";
/// `$7` is the version the session was loaded at (optimistic) or NULL (last write wins).
const UPDATE: &str = "UPDATE sessions SET id_hash = $2, data = $3, user_id = $4, expires_at = $5, \
absolute_expires_at = $6, version = version + 1 \
WHERE id_hash = $1 AND ($7::bigint IS NULL OR version = $7) \
RETURNING created_at, updated_at, version";
const SELECT_ONE: &str = "SELECT data, user_id, created_at, expires_at, absolute_expires_at, \
updated_at, version FROM sessions WHERE id_hash = $1";
/// Loads and, when the idle deadline is nearer than the threshold `$4`, extends it to `$3` (capped by
/// the absolute deadline) in the same statement. The extension does not change the version.
const SELECT_ONE_AND_TOUCH: &str = "WITH touched AS (\
UPDATE sessions SET expires_at = LEAST($3, COALESCE(absolute_expires_at, expires_at)) \
WHERE id_hash = $1 AND expires_at > $2 AND expires_at < $4 \
AND COALESCE(absolute_expires_at, expires_at) > expires_at \
RETURNING expires_at, updated_at) \
SELECT s.data, s.user_id, s.created_at, \
COALESCE((SELECT expires_at FROM touched), s.expires_at) AS expires_at, \
s.absolute_expires_at, COALESCE((SELECT updated_at FROM touched), s.updated_at) AS updated_at, \
s.version FROM sessions s WHERE s.id_hash = $1";
const EXISTS: &str = "SELECT version FROM sessions WHERE id_hash = $1";
const DELETE_ONE: &str = "DELETE FROM sessions WHERE id_hash = $1";
const CLEANUP: &str = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions \
WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
const SELECT_USER: &str = "SELECT id_hash, data, created_at, expires_at, updated_at FROM sessions \
WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id_hash";
const DELETE_USER: &str = "DELETE FROM sessions WHERE user_id = $1";
const DELETE_USER_EXCEPT: &str = "DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2";
const COUNT_EXPIRED: &str = "SELECT count(*) AS expired FROM sessions WHERE expires_at <= $1";

/// Runs one statement, mapping a SQL failure to `database`.
fn run(statement: &str, params: &[SqlValue]) -> Result<RowSet, StoreError> {
    sql_query(statement, params).map_err(StoreError::Database)
}

/// A user id as a parameter: `int64`, or `null` when absent.
fn user_param(user_id: Option<i64>) -> SqlValue {
    user_id.map_or(SqlValue::Null, SqlValue::Int64)
}

/// A version as a parameter (versions count saves and stay far below `i64::MAX`).
fn version_param(version: u64) -> SqlValue {
    SqlValue::Int64(i64::try_from(version).unwrap_or(i64::MAX))
}

/// Writes the session: a new one is inserted, a saved one updated (and moved to the token `new_id`
/// returns, when it returns one; it is called only once the session has passed validation).
/// Saving is activity: with an idle timeout the idle deadline moves to `now + idle-timeout`.
fn write(
    config: &Config,
    s: Session,
    now: i64,
    new_id: impl FnOnce() -> Result<Option<String>, StoreError>,
) -> Result<Session, StoreError> {
    let old_hash = token::validated_hash(&s.id)?;
    if session::is_expired(s.expires_at, now) {
        return Err(StoreError::Expired);
    }
    let data = session::to_map(&s.data);
    let json = session::encode(&data, config.max_data_bytes)?;
    let expires_at = session::active_deadline(s.absolute_expires_at, config.idle_timeout, now);
    let id = new_id()?.unwrap_or_else(|| s.id.clone());
    let hash = token::hash(&id);
    let rows = if s.is_saved {
        let expected = match config.concurrency {
            Concurrency::Optimistic => version_param(s.version),
            Concurrency::LastWriteWins => SqlValue::Null,
        };
        run(
            UPDATE,
            &[
                SqlValue::Bytes(old_hash.to_vec()),
                SqlValue::Bytes(hash.to_vec()),
                SqlValue::Json(json),
                user_param(s.user_id),
                SqlValue::Timestamp(expires_at),
                SqlValue::Timestamp(s.absolute_expires_at),
                expected,
            ],
        )?
    } else {
        run(
            INSERT,
            &[
                SqlValue::Bytes(hash.to_vec()),
                SqlValue::Json(json),
                user_param(s.user_id),
                SqlValue::Timestamp(s.created_at),
                SqlValue::Timestamp(expires_at),
                SqlValue::Timestamp(s.absolute_expires_at),
            ],
        )?
    };
    if rows.rows.is_empty() {
        return Err(why_not_written(s.is_saved, old_hash)?);
    }
    let (created_at, updated_at, version) = stamps(&rows, "save")?;
    Ok(Session {
        id,
        data: session::to_pairs(data),
        created_at,
        expires_at,
        updated_at,
        version,
        is_saved: true,
        ..s
    })
}

/// Why a write touched no row: an insert met an existing token (`conflict`); an update found the row
/// gone (`not-found`) or at another version (`conflict`). Only this failure path sends a second statement.
fn why_not_written(was_saved: bool, hash: [u8; 32]) -> Result<StoreError, StoreError> {
    if !was_saved {
        return Ok(StoreError::Conflict);
    }
    let rows = run(EXISTS, &[SqlValue::Bytes(hash.to_vec())])?;
    Ok(if rows.rows.is_empty() {
        StoreError::NotFound
    } else {
        StoreError::Conflict
    })
}

/// Inserts a new session or updates a saved one (one statement on success).
pub fn save(config: &Config, s: Session, now: i64) -> Result<Session, StoreError> {
    write(config, s, now, || Ok(None))
}

/// Loads the session with token `id`; `not-found` without a row, `expired` when it expired by `now`.
/// With an idle timeout, the same statement extends the idle deadline when it is due.
pub fn load(config: &Config, id: String, now: i64) -> Result<Session, StoreError> {
    let hash = token::validated_hash(&id)?;
    let key = SqlValue::Bytes(hash.to_vec());
    let rows = match config.idle_timeout {
        Some(idle) => run(
            SELECT_ONE_AND_TOUCH,
            &[
                key,
                SqlValue::Timestamp(now),
                SqlValue::Timestamp(session::active_deadline(i64::MAX, Some(idle), now)),
                SqlValue::Timestamp(session::touch_threshold(idle, now)),
            ],
        )?,
        None => run(SELECT_ONE, &[key])?,
    };
    let row = match rows.rows.len() {
        0 => return Err(StoreError::NotFound),
        1 => Row::new(&rows, 0)?,
        n => return Err(unexpected(format!("load returned {n} rows for one id"))),
    };
    let expires_at = row.timestamp("expires_at")?;
    if session::is_expired(expires_at, now) {
        return Err(StoreError::Expired);
    }
    Ok(Session {
        id,
        data: session::to_pairs(row.data("data")?),
        user_id: row.user_id("user_id")?,
        created_at: row.timestamp("created_at")?,
        expires_at,
        absolute_expires_at: row
            .optional_timestamp("absolute_expires_at")?
            .unwrap_or(expires_at),
        updated_at: row.timestamp("updated_at")?,
        version: row.version("version")?,
        is_saved: true,
    })
}

/// Deletes the session with token `id`; returns whether a row was removed.
pub fn delete(id: &str) -> Result<bool, StoreError> {
    let hash = token::validated_hash(id)?;
    delete_hash(hash)
}

/// Deletes the session whose handle is `handle`; returns whether a row was removed.
pub fn revoke(handle: &str) -> Result<bool, StoreError> {
    let hash = token::decode_handle(handle)?;
    delete_hash(hash)
}

/// Deletes the row keyed by `hash`.
fn delete_hash(hash: [u8; 32]) -> Result<bool, StoreError> {
    let rows = run(DELETE_ONE, &[SqlValue::Bytes(hash.to_vec())])?;
    Ok(rows.rows_affected > 0)
}

/// Gives the session a fresh token; a saved session is moved to it, with its current state, in one
/// statement. `new_token` draws the token, only once the session has passed validation.
pub fn regenerate_id(
    config: &Config,
    s: Session,
    now: i64,
    new_token: impl FnOnce() -> Result<String, StoreError>,
) -> Result<Session, StoreError> {
    if s.is_saved {
        return write(config, s, now, || new_token().map(Some));
    }
    token::validated_hash(&s.id)?;
    if session::is_expired(s.expires_at, now) {
        return Err(StoreError::Expired);
    }
    Ok(Session {
        id: new_token()?,
        ..s
    })
}

/// Deletes sessions that expired by `cutoff`, 1000 at a time, until a batch removes fewer.
pub fn cleanup(cutoff: i64) -> Result<u64, StoreError> {
    let mut total: u64 = 0;
    loop {
        let removed = cleanup_batch(cutoff, CLEANUP_BATCH)?;
        total = total.saturating_add(removed);
        if removed < u64::from(CLEANUP_BATCH) {
            return Ok(total);
        }
    }
}

/// Deletes at most `limit` sessions that expired by `cutoff`, oldest first, in one statement.
pub fn cleanup_batch(cutoff: i64, limit: u32) -> Result<u64, StoreError> {
    if limit == 0 {
        return Ok(0);
    }
    if limit > MAX_CLEANUP_BATCH {
        return Err(StoreError::InvalidData(format!(
            "a cleanup batch of {limit} rows is over the limit of {MAX_CLEANUP_BATCH}"
        )));
    }
    let rows = run(
        CLEANUP,
        &[SqlValue::Timestamp(cutoff), SqlValue::Int64(limit.into())],
    )?;
    Ok(rows.rows_affected)
}

/// Counts the sessions that expired by `cutoff`.
pub fn count_expired(cutoff: i64) -> Result<u64, StoreError> {
    let rows = run(COUNT_EXPIRED, &[SqlValue::Timestamp(cutoff)])?;
    if rows.rows.len() != 1 {
        return Err(unexpected(format!(
            "count-expired returned {} rows, expected 1",
            rows.rows.len()
        )));
    }
    match Row::new(&rows, 0)?.get("expired")? {
        SqlValue::Int64(n) => u64::try_from(*n)
            .map_err(|_| unexpected(format!("count-expired returned a negative count {n}"))),
        other => Err(wrong("expired", "int64", other)),
    }
}

/// Lists the user's sessions unexpired at `now`, newest first.
pub fn user_sessions(user_id: i64, now: i64) -> Result<Vec<UserSession>, StoreError> {
    let rows = run(
        SELECT_USER,
        &[SqlValue::Int64(user_id), SqlValue::Timestamp(now)],
    )?;
    (0..rows.rows.len())
        .map(|i| {
            let row = Row::new(&rows, i)?;
            Ok(UserSession {
                handle: token::handle_from_hash(&row.hash("id_hash")?),
                data: session::to_pairs(row.data("data")?),
                user_id,
                created_at: row.timestamp("created_at")?,
                expires_at: row.timestamp("expires_at")?,
                updated_at: row.timestamp("updated_at")?,
            })
        })
        .collect()
}

/// Deletes all of the user's sessions; returns how many were removed.
pub fn delete_user_sessions(user_id: i64) -> Result<u64, StoreError> {
    Ok(run(DELETE_USER, &[SqlValue::Int64(user_id)])?.rows_affected)
}

/// Deletes all of the user's sessions but the one with token `keep_id`; returns how many were removed.
pub fn delete_user_sessions_except(user_id: i64, keep_id: &str) -> Result<u64, StoreError> {
    let keep = token::validated_hash(keep_id)?;
    let rows = run(
        DELETE_USER_EXCEPT,
        &[SqlValue::Int64(user_id), SqlValue::Bytes(keep.to_vec())],
    )?;
    Ok(rows.rows_affected)
}

/// `created_at`, `updated_at` and `version` from the single row a `RETURNING` statement gave back.
fn stamps(rows: &RowSet, what: &str) -> Result<(i64, i64, u64), StoreError> {
    if rows.rows.len() != 1 {
        return Err(unexpected(format!(
            "{what} returned {} rows, expected 1",
            rows.rows.len()
        )));
    }
    let row = Row::new(rows, 0)?;
    Ok((
        row.timestamp("created_at")?,
        row.timestamp("updated_at")?,
        row.version("version")?,
    ))
}

/// An `unexpected-result` error.
fn unexpected(msg: String) -> StoreError {
    StoreError::UnexpectedResult(msg)
}

/// One result row, with its values looked up by column name.
struct Row<'a> {
    columns: &'a [String],
    values: &'a [SqlValue],
}

impl<'a> Row<'a> {
    /// Row `index` of `rows`, which must have one value per column.
    fn new(rows: &'a RowSet, index: usize) -> Result<Self, StoreError> {
        let values = rows
            .rows
            .get(index)
            .ok_or_else(|| unexpected(format!("row {index} is missing")))?;
        if values.len() != rows.columns.len() {
            return Err(unexpected(format!(
                "row {index} has {} values for {} columns",
                values.len(),
                rows.columns.len()
            )));
        }
        Ok(Row {
            columns: &rows.columns,
            values,
        })
    }

    /// The value of column `name`.
    fn get(&self, name: &str) -> Result<&'a SqlValue, StoreError> {
        self.columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| unexpected(format!("column {name} is missing from the result")))
    }

    /// A `timestamp` column.
    fn timestamp(&self, name: &str) -> Result<i64, StoreError> {
        match self.get(name)? {
            SqlValue::Timestamp(t) => Ok(*t),
            other => Err(wrong(name, "timestamp", other)),
        }
    }

    /// A nullable `timestamp` column.
    fn optional_timestamp(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.get(name)? {
            SqlValue::Timestamp(t) => Ok(Some(*t)),
            SqlValue::Null => Ok(None),
            other => Err(wrong(name, "timestamp or null", other)),
        }
    }

    /// A non-negative `int64` column holding a version.
    fn version(&self, name: &str) -> Result<u64, StoreError> {
        match self.get(name)? {
            SqlValue::Int64(v) => {
                u64::try_from(*v).map_err(|_| unexpected(format!("column {name} is negative")))
            }
            other => Err(wrong(name, "int64", other)),
        }
    }

    /// A nullable `int64` column.
    fn user_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.get(name)? {
            SqlValue::Int64(v) => Ok(Some(*v)),
            SqlValue::Null => Ok(None),
            other => Err(wrong(name, "int64 or null", other)),
        }
    }

    /// A `json` column holding session data.
    fn data(&self, name: &str) -> Result<Data, StoreError> {
        match self.get(name)? {
            SqlValue::Json(text) => session::decode(text),
            other => Err(wrong(name, "json", other)),
        }
    }

    /// A 32-byte `bytes` column.
    fn hash(&self, name: &str) -> Result<[u8; 32], StoreError> {
        match self.get(name)? {
            SqlValue::Bytes(b) => <[u8; 32]>::try_from(b.as_slice()).map_err(|_| {
                unexpected(format!("column {name} has {} bytes, expected 32", b.len()))
            }),
            other => Err(wrong(name, "bytes", other)),
        }
    }
}

/// The error for a column holding the wrong kind of value (named by variant, never by content).
fn wrong(name: &str, expected: &str, got: &SqlValue) -> StoreError {
    let kind = match got {
        SqlValue::Null => "null",
        SqlValue::Boolean(_) => "boolean",
        SqlValue::Int64(_) => "int64",
        SqlValue::Float64(_) => "float64",
        SqlValue::Text(_) => "text",
        SqlValue::Json(_) => "json",
        SqlValue::Timestamp(_) => "timestamp",
        SqlValue::Bytes(_) => "bytes",
    };
    unexpected(format!("column {name} is {kind}, expected {expected}"))
}
