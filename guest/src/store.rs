//! The SQL the store sends through the host's `sql-query`, and strict decoding of the rows it gets back.

use crate::bindings::exports::wasm_sessions::store::store::{Session, StoreError, UserSession};
use crate::bindings::wasm_sessions::store::sql::{RowSet, SqlValue, sql_query};
use crate::session::{self, Data};
use crate::token;

/// Rows removed per cleanup batch by `cleanup`.
pub const CLEANUP_BATCH: u32 = 1000;

/// The largest `limit` `cleanup-batch` accepts: one statement never locks more rows than this.
pub const MAX_CLEANUP_BATCH: u32 = 100_000;

const UPSERT: &str = "INSERT INTO sessions (id_hash, data, user_id, created_at, expires_at) \
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_hash) DO UPDATE SET data = EXCLUDED.data, \
user_id = EXCLUDED.user_id, expires_at = EXCLUDED.expires_at RETURNING created_at, updated_at";
const SELECT_ONE: &str =
    "SELECT data, user_id, created_at, expires_at, updated_at FROM sessions WHERE id_hash = $1";
const DELETE_ONE: &str = "DELETE FROM sessions WHERE id_hash = $1";
const MOVE: &str = "UPDATE sessions SET id_hash = $1, data = $2, user_id = $3, expires_at = $4 \
WHERE id_hash = $5 RETURNING created_at, updated_at";
const CLEANUP: &str = "DELETE FROM sessions WHERE id_hash IN (SELECT id_hash FROM sessions \
WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)";
const SELECT_USER: &str = "SELECT id_hash, data, created_at, expires_at, updated_at FROM sessions \
WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id_hash";
const DELETE_USER: &str = "DELETE FROM sessions WHERE user_id = $1";
const COUNT_EXPIRED: &str = "SELECT count(*) AS expired FROM sessions WHERE expires_at <= $1";

/// Runs one statement, mapping a SQL failure to `database`.
fn run(statement: &str, params: &[SqlValue]) -> Result<RowSet, StoreError> {
    sql_query(statement, params).map_err(StoreError::Database)
}

/// A user id as a parameter: `int64`, or `null` when absent.
fn user_param(user_id: Option<i64>) -> SqlValue {
    user_id.map_or(SqlValue::Null, SqlValue::Int64)
}

/// Inserts or updates the session (one statement); `now` decides expiry. Returns it saved, with the
/// stored timestamps and its data sorted and de-duplicated.
pub fn save(s: Session, now: i64) -> Result<Session, StoreError> {
    let hash = token::validated_hash(&s.id)?;
    let data = session::to_map(&s.data);
    let json = session::encode(&data)?;
    if session::is_expired(s.expires_at, now) {
        return Err(StoreError::Expired);
    }
    let rows = run(
        UPSERT,
        &[
            SqlValue::Bytes(hash.to_vec()),
            SqlValue::Json(json),
            user_param(s.user_id),
            SqlValue::Timestamp(s.created_at),
            SqlValue::Timestamp(s.expires_at),
        ],
    )?;
    let (created_at, updated_at) = stamps(&rows, "save")?;
    Ok(Session {
        data: session::to_pairs(data),
        created_at,
        updated_at,
        is_saved: true,
        ..s
    })
}

/// Loads the session with token `id`; `not-found` without a row, `expired` when it expired by `now`.
pub fn load(id: String, now: i64) -> Result<Session, StoreError> {
    let hash = token::validated_hash(&id)?;
    let rows = run(SELECT_ONE, &[SqlValue::Bytes(hash.to_vec())])?;
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
        updated_at: row.timestamp("updated_at")?,
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

/// Gives the session a fresh token; a saved session is moved to it in one statement.
/// `new_token` draws the token, only once the session has passed validation.
pub fn regenerate_id(
    s: Session,
    now: i64,
    new_token: impl FnOnce() -> Result<String, StoreError>,
) -> Result<Session, StoreError> {
    let old_hash = token::validated_hash(&s.id)?;
    if session::is_expired(s.expires_at, now) {
        return Err(StoreError::Expired);
    }
    if !s.is_saved {
        return Ok(Session {
            id: new_token()?,
            ..s
        });
    }
    let data = session::to_map(&s.data);
    let json = session::encode(&data)?;
    let id = new_token()?;
    let new_hash = token::hash(&id);
    let rows = run(
        MOVE,
        &[
            SqlValue::Bytes(new_hash.to_vec()),
            SqlValue::Json(json),
            user_param(s.user_id),
            SqlValue::Timestamp(s.expires_at),
            SqlValue::Bytes(old_hash.to_vec()),
        ],
    )?;
    if rows.rows.is_empty() {
        return Err(StoreError::NotFound);
    }
    let (created_at, updated_at) = stamps(&rows, "regenerate-id")?;
    Ok(Session {
        id,
        data: session::to_pairs(data),
        created_at,
        updated_at,
        is_saved: true,
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

/// `created_at` and `updated_at` from the single row a `RETURNING` statement gave back.
fn stamps(rows: &RowSet, what: &str) -> Result<(i64, i64), StoreError> {
    if rows.rows.len() != 1 {
        return Err(unexpected(format!(
            "{what} returned {} rows, expected 1",
            rows.rows.len()
        )));
    }
    let row = Row::new(rows, 0)?;
    Ok((row.timestamp("created_at")?, row.timestamp("updated_at")?))
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
