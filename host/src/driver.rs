//! The SQL seam: what the guest's `sql-query` import runs on. [`PostgresDriver`](crate::PostgresDriver)
//! is the production implementation; an embedder may supply its own (another client, another
//! PostgreSQL-compatible database).

use std::future::Future;
use std::pin::Pin;

/// A typed SQL value, as a statement parameter or a column value in a result.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
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
    /// A one-dimensional `text[]` without NULL elements.
    TextArray(Vec<String>),
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
            SqlValue::TextArray(a) => write!(f, "TextArray({} elements)", a.len()),
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
    /// Any other failure of the statement (syntax, missing table, no privilege).
    #[error("query failed: {0}")]
    QueryFailed(String),
    /// The host refused to send the statement: not declared by the component (an index outside its
    /// declared list), or not a single data statement. Nothing was sent.
    #[error("statement refused: {0}")]
    Refused(String),
}

/// The future a [`SqlDriver`] returns for a query.
pub type QueryFuture<'a> = Pin<Box<dyn Future<Output = Result<RowSet, SqlError>> + Send + 'a>>;

/// The future a [`SqlDriver`] returns for [`SqlDriver::prepare`].
pub type PrepareFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SqlError>> + Send + 'a>>;

/// Runs one parameterized statement (`$1`, `$2`, ...) for the guest.
///
/// The host calls a driver only with statements the component declared, and only with single data
/// statements (see [`is_data_statement`]); a driver must never interpolate parameters into the text. A
/// driver decides what happens to a connection whose query was abandoned (the call's deadline passed
/// and the future was dropped): it must not hand that connection to a later query while the server may
/// still be running the abandoned statement.
pub trait SqlDriver: Send + Sync + 'static {
    /// Runs `statement` with `params` and returns its rows and the affected-row count.
    ///
    /// # Errors
    /// A [`SqlError`] that tells connection failures, constraint violations and bad parameters apart.
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a>;

    /// Asks the database to parse and plan `statement` without running it, so a statement that does not
    /// fit the schema (or the role's privileges) is reported before traffic arrives.
    ///
    /// # Errors
    /// [`SqlError::QueryFailed`] (or another variant) saying why the database refused it.
    fn prepare<'a>(&'a self, statement: &'a str) -> PrepareFuture<'a>;
}

/// Whether `statement` is one data statement: after whitespace and comments it starts with `SELECT`,
/// `INSERT`, `UPDATE`, `DELETE`, `WITH`, `VALUES` or `TABLE` (case-insensitive). Everything else
/// (transaction control, `SET`, DDL, `COPY`, `DO`, `CALL`, ...) could change a pooled connection's
/// state for later calls, so the drivers refuse it unsent.
#[must_use]
pub fn is_data_statement(statement: &str) -> bool {
    const DATA: [&str; 7] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "VALUES", "TABLE",
    ];
    let Some(rest) = skip_blanks_and_comments(statement) else {
        return false;
    };
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    let next = rest[word.len()..].chars().next();
    // `SELECT(1)` and `SELECT 1` are data statements; `SELECTED` is not a keyword at all.
    let ends_word = next.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'));
    ends_word && DATA.iter().any(|k| k.eq_ignore_ascii_case(&word))
}

/// `text` after leading whitespace, `-- line` comments and (nested) `/* block */` comments; `None` when
/// a block comment never ends.
fn skip_blanks_and_comments(mut text: &str) -> Option<&str> {
    loop {
        text = text.trim_start();
        if let Some(rest) = text.strip_prefix("--") {
            text = rest.find('\n').map_or("", |i| &rest[i + 1..]);
        } else if text.starts_with("/*") {
            let mut depth = 0usize;
            let mut i = 0;
            let bytes = text.as_bytes();
            loop {
                if i + 1 >= bytes.len() {
                    return None;
                }
                match (bytes[i], bytes[i + 1]) {
                    (b'/', b'*') => {
                        depth += 1;
                        i += 2;
                    }
                    (b'*', b'/') => {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => i += 1,
                }
            }
            text = &text[i..];
        } else {
            return Some(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_data_statement;

    #[test]
    fn data_statements_are_recognised_after_blanks_and_comments() {
        for ok in [
            "SELECT 1",
            "select 1",
            "  \n\tSELECT(1)",
            "-- a comment\nINSERT INTO t VALUES (1)",
            "/* a /* nested */ comment */ UPDATE t SET a = 1",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "DELETE FROM t",
            "VALUES (1)",
            "TABLE t",
        ] {
            assert!(is_data_statement(ok), "{ok:?}");
        }
    }

    #[test]
    fn everything_that_can_change_connection_state_is_not_a_data_statement() {
        for bad in [
            "",
            "   ",
            "BEGIN",
            "begin; select 1",
            "START TRANSACTION",
            "COMMIT",
            "SET search_path TO pg_temp",
            "RESET ALL",
            "CREATE TEMP TABLE sessions (id int)",
            "DROP TABLE wasm_sessions.sessions",
            "COPY (SELECT 1) TO PROGRAM 'id'",
            "DO $$ BEGIN END $$",
            "CALL p()",
            "LOCK TABLE t",
            "LISTEN x",
            "DISCARD ALL",
            "PREPARE p AS SELECT 1",
            "SELECTED",
            "SELECT_1",
            "/* unterminated SELECT 1",
            "-- only a comment",
        ] {
            assert!(!is_data_statement(bad), "{bad:?}");
        }
    }
}
