//! The SQL seam: what the guest's `sql-query` import runs on. [`PostgresDriver`](crate::PostgresDriver)
//! is the production implementation; an embedder may supply its own (another client, another
//! PostgreSQL-compatible database).

use std::future::Future;
use std::pin::Pin;

/// A typed SQL value, as a statement parameter or a column value in a result.
#[derive(Clone, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`.
    Null,
    /// A `boolean`.
    Boolean(bool),
    /// An integer (`smallint`, `integer`, `bigint`).
    Int64(i64),
    /// A `double precision` or `real`.
    Float64(f64),
    /// Text (`text`, `varchar`, `char`, `name`).
    Text(String),
    /// A JSON document as text (`json`, `jsonb`).
    Json(String),
    /// Microseconds since 1970-01-01T00:00:00Z (`timestamptz`, `timestamp`).
    Timestamp(i64),
    /// Raw bytes (`bytea`).
    Bytes(Vec<u8>),
}

impl std::fmt::Debug for SqlValue {
    // Values may be session data or token hashes: say what kind of value it is, never its content.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlValue::Null => f.write_str("Null"),
            SqlValue::Boolean(_) => f.write_str("Boolean(..)"),
            SqlValue::Int64(_) => f.write_str("Int64(..)"),
            SqlValue::Float64(_) => f.write_str("Float64(..)"),
            SqlValue::Text(s) => write!(f, "Text({} bytes)", s.len()),
            SqlValue::Json(s) => write!(f, "Json({} bytes)", s.len()),
            SqlValue::Timestamp(_) => f.write_str("Timestamp(..)"),
            SqlValue::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
        }
    }
}

/// The outcome of one statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowSet {
    /// Column names, in order.
    pub columns: Vec<String>,
    /// Rows, one value per column.
    pub rows: Vec<Vec<SqlValue>>,
    /// Rows inserted, updated or deleted (or returned, for a query).
    pub rows_affected: u64,
}

/// Why a statement failed, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The database could not be reached, or the connection broke.
    #[error("database connection failed: {0}")]
    ConnectionFailed(String),
    /// A constraint was violated.
    #[error("constraint violation ({sqlstate}): {message}")]
    ConstraintViolation {
        /// The SQLSTATE code, e.g. `23505`.
        sqlstate: String,
        /// The database's message.
        message: String,
    },
    /// A parameter does not fit the statement.
    #[error("bad parameter: {0}")]
    BadParameter(String),
    /// Any other failure of the statement.
    #[error("query failed: {0}")]
    QueryFailed(String),
}

/// The future a [`SqlDriver`] returns.
pub type QueryFuture<'a> = Pin<Box<dyn Future<Output = Result<RowSet, SqlError>> + Send + 'a>>;

/// Runs one parameterized statement (`$1`, `$2`, ...) for the guest.
///
/// Implementations must never interpolate parameters into the statement text.
pub trait SqlDriver: Send + Sync + 'static {
    /// Runs `statement` with `params` and returns its rows and the affected-row count.
    ///
    /// # Errors
    /// A [`SqlError`] that tells connection failures, constraint violations and bad parameters apart.
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a>;
}
