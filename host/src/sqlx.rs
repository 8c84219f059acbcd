//! [`SqlxDriver`]: a [`SqlDriver`] over an application's existing [`sqlx::PgPool`] (feature `sqlx`).
//!
//! The same contract as [`PostgresDriver`](crate::PostgresDriver): the same value mapping (typed
//! parameters checked against the types the server declares for the statement, binary encoding), the
//! same error classes (SQLSTATE `23…` constraint, `08…`/`57P…` connection, `22…`/`42P18`/`42804` bad
//! parameter, anything else query failed), statements prepared once per connection (sqlx's statement
//! cache), and no connection handed back to the pool while an abandoned statement may still run on it.

use std::fmt;

use ::sqlx::encode::IsNull;
use ::sqlx::error::BoxDynError;
use ::sqlx::pool::PoolConnection;
use ::sqlx::postgres::types::Oid;
use ::sqlx::postgres::{
    PgArgumentBuffer, PgArguments, PgPool, PgRow, PgTypeInfo, PgValueFormat, PgValueRef, Postgres,
};
use ::sqlx::{
    Arguments as _, Column as _, Connection as _, Decode, Encode, Executor as _, Row as _,
    Statement as _, Type, TypeInfo as _, ValueRef as _,
};

use crate::driver::{PrepareFuture, QueryFuture, RowSet, SqlDriver, SqlError, SqlValue};

/// Microseconds between 1970-01-01 (the WIT epoch) and 2000-01-01 (PostgreSQL's).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// The type OIDs of PostgreSQL's built-in catalog that the `sql` interface carries (stable across
/// servers, unlike the OIDs of extension types).
mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const JSONB: u32 = 3802;
}

/// Extension types that hold plain text (as `tokio-postgres` accepts them for `&str`).
const TEXT_LIKE_EXTENSIONS: [&str; 4] = ["citext", "ltree", "lquery", "ltxtquery"];

/// Runs the guest's statements on an application's sqlx PostgreSQL pool.
///
/// Most axum applications already hold a [`sqlx::PgPool`]; the session store can share it:
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use wasm_sessions::{SessionStore, SqlxDriver};
///
/// let pool = sqlx::PgPool::connect("postgres://wasm_sessions_runtime@127.0.0.1/app").await?;
/// let store = SessionStore::builder(SqlxDriver::new(pool)).build().await?;
/// # let _ = store; Ok(()) }
/// ```
///
/// The pool should connect as the runtime role ([`RuntimeRole`](crate::RuntimeRole): row privileges on
/// the sessions table only), as [`PostgresDriver`](crate::PostgresDriver) does; the schema is applied by
/// the owner ([`PostgresDriver::migrate`](crate::PostgresDriver::migrate) or the CLI).
///
/// **Abandoned statements.** When a call's deadline passes, the host drops the driver's future, possibly
/// while a statement is running on the server. The connection is then never returned to the pool:
/// it is detached (so the pool may open a replacement at once) and closed gracefully (`Terminate`), and
/// the server ends that backend once the statement finishes. sqlx cannot send PostgreSQL's cancel
/// request, so unlike [`PostgresDriver`](crate::PostgresDriver) the abandoned statement is not cancelled:
/// bound it on the server with `statement_timeout` (e.g.
/// `PgConnectOptions::options([("statement_timeout", "30s")])`).
///
/// Waiting for a connection is bounded by the pool's `acquire_timeout`; a timeout there is
/// [`SqlError::ConnectionFailed`].
#[derive(Clone)]
pub struct SqlxDriver {
    pool: PgPool,
}

impl fmt::Debug for SqlxDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlxDriver")
            .field("size", &self.pool.size())
            .field("idle", &self.pool.num_idle())
            .finish()
    }
}

impl SqlxDriver {
    /// A driver on `pool` (a clone of the application's pool: clones share the connections).
    #[must_use]
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool the driver runs on.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn run(&self, statement: &str, params: &[SqlValue]) -> Result<RowSet, SqlError> {
        let mut guard = InFlight(Some(self.pool.acquire().await.map_err(sql_error)?));
        let outcome = Self::run_on(guard.connection(), statement, params).await;
        guard.finish();
        outcome
    }

    async fn run_on(
        conn: &mut PoolConnection<Postgres>,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<RowSet, SqlError> {
        // Prepared once per connection and kept in sqlx's statement cache; the server declares the
        // parameter types (every guest statement casts its parameters).
        let prepared = (&mut **conn).prepare(statement).await.map_err(sql_error)?;
        let types: Vec<PgTypeInfo> = match prepared.parameters() {
            Some(::sqlx::Either::Left(types)) => types.to_vec(),
            _ => {
                return Err(SqlError::QueryFailed(
                    "the server did not describe the statement's parameters".into(),
                ));
            }
        };
        if types.len() != params.len() {
            return Err(SqlError::BadParameter(format!(
                "the statement takes {} parameters, {} were given",
                types.len(),
                params.len()
            )));
        }
        let mut arguments = PgArguments::default();
        for (index, (value, ty)) in params.iter().zip(&types).enumerate() {
            let bad =
                |why: String| SqlError::BadParameter(format!("parameter ${}: {why}", index + 1));
            check_param(value, ty).map_err(bad)?;
            arguments
                .add(Param { value, ty })
                .map_err(|e| bad(e.to_string()))?;
        }
        let columns: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let query = ::sqlx::query_with(statement, arguments);
        if columns.is_empty() {
            let done = (&mut **conn).execute(query).await.map_err(sql_error)?;
            return Ok(RowSet {
                rows_affected: done.rows_affected(),
                ..RowSet::default()
            });
        }
        let rows = (&mut **conn).fetch_all(query).await.map_err(sql_error)?;
        let rows = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        Ok(RowSet {
            columns,
            rows_affected: rows.len() as u64,
            rows,
        })
    }

    async fn prepare_statement(&self, statement: &str) -> Result<(), SqlError> {
        let mut guard = InFlight(Some(self.pool.acquire().await.map_err(sql_error)?));
        let outcome = (&mut **guard.connection())
            .prepare(statement)
            .await
            .map(drop)
            .map_err(sql_error);
        guard.finish();
        outcome
    }
}

impl SqlDriver for SqlxDriver {
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
        Box::pin(self.run(statement, params))
    }

    fn prepare<'a>(&'a self, statement: &'a str) -> PrepareFuture<'a> {
        Box::pin(self.prepare_statement(statement))
    }
}

/// A pooled connection with a statement in flight. Dropped before [`finish`](Self::finish) (the call's
/// deadline passed and its future was dropped), the server may still be running the statement: the
/// connection is detached from the pool, never to serve another query, and closed.
struct InFlight(Option<PoolConnection<Postgres>>);

impl InFlight {
    fn connection(&mut self) -> &mut PoolConnection<Postgres> {
        self.0.as_mut().expect("present until finished")
    }

    /// The statement completed: the connection goes back to the pool.
    fn finish(&mut self) {
        self.0.take();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(pooled) = self.0.take() else {
            return;
        };
        // Out of the pool first: the pool may open a replacement, and nothing else can get this one.
        let connection = pooled.detach();
        tracing::warn!("abandoning a connection with a statement in flight; closing it");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = connection.close().await {
                    tracing::debug!(error = %error, "closing an abandoned connection failed");
                }
            });
        }
        // Without a runtime the connection is dropped here, which closes its socket.
    }
}

/// Sorts a sqlx error into the guest-visible classes, as [`PostgresDriver`](crate::PostgresDriver) does.
fn sql_error(error: ::sqlx::Error) -> SqlError {
    use ::sqlx::Error as E;
    match error {
        E::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message().to_owned();
            if code.starts_with("23") {
                SqlError::ConstraintViolation {
                    sqlstate: code,
                    message,
                }
            } else if code.starts_with("08") || code.starts_with("57P") {
                SqlError::ConnectionFailed(format!("{code}: {message}"))
            } else if code.starts_with("22") || code == "42P18" || code == "42804" {
                SqlError::BadParameter(format!("{code}: {message}"))
            } else {
                SqlError::QueryFailed(format!("{code}: {message}"))
            }
        }
        error @ (E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::Configuration(_)) => SqlError::ConnectionFailed(error.to_string()),
        error @ (E::Encode(_) | E::InvalidArgument(_)) => SqlError::BadParameter(error.to_string()),
        other => SqlError::QueryFailed(other.to_string()),
    }
}

/// The OID of a type the server described, if it is a known one.
fn oid_of(ty: &PgTypeInfo) -> Option<u32> {
    ty.oid().map(|Oid(n)| n)
}

/// Whether a text value fits `ty` (the types `tokio-postgres` accepts for `&str`).
fn accepts_text(ty: &PgTypeInfo) -> bool {
    matches!(
        oid_of(ty),
        Some(oid::TEXT | oid::VARCHAR | oid::BPCHAR | oid::NAME | oid::UNKNOWN)
    ) || TEXT_LIKE_EXTENSIONS.contains(&ty.name())
}

/// Checks that `value` fits the parameter type `ty` the server declared.
fn check_param(value: &SqlValue, ty: &PgTypeInfo) -> Result<(), String> {
    let oid = oid_of(ty);
    let fits = match value {
        SqlValue::Null => true,
        SqlValue::Boolean(_) => oid == Some(oid::BOOL),
        SqlValue::Int64(v) => match oid {
            Some(oid::INT8) => true,
            Some(oid::INT4) => i32::try_from(*v).is_ok(),
            Some(oid::INT2) => i16::try_from(*v).is_ok(),
            _ => false,
        },
        SqlValue::Float64(_) => matches!(oid, Some(oid::FLOAT8 | oid::FLOAT4)),
        SqlValue::Text(_) => accepts_text(ty),
        SqlValue::Json(_) => matches!(oid, Some(oid::JSON | oid::JSONB)),
        SqlValue::Timestamp(_) => matches!(oid, Some(oid::TIMESTAMPTZ | oid::TIMESTAMP)),
        SqlValue::Bytes(_) => oid == Some(oid::BYTEA),
        SqlValue::TextArray(_) => matches!(oid, Some(oid::TEXT_ARRAY | oid::VARCHAR_ARRAY)),
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "a {} value does not fit the type {}",
            kind_name(value),
            ty.name()
        ))
    }
}

fn kind_name(value: &SqlValue) -> &'static str {
    match value {
        SqlValue::Null => "null",
        SqlValue::Boolean(_) => "boolean",
        SqlValue::Int64(_) => "int64",
        SqlValue::Float64(_) => "float64",
        SqlValue::Text(_) => "text",
        SqlValue::Json(_) => "json",
        SqlValue::Timestamp(_) => "timestamp",
        SqlValue::Bytes(_) => "bytes",
        SqlValue::TextArray(_) => "text-array",
    }
}

/// A [`SqlValue`] bound as the type the server declared for its parameter (checked by
/// [`check_param`] first), in PostgreSQL's binary format.
struct Param<'a> {
    value: &'a SqlValue,
    ty: &'a PgTypeInfo,
}

impl Type<Postgres> for Param<'_> {
    fn type_info() -> PgTypeInfo {
        // Only a fallback: every value says its type through `produces`.
        PgTypeInfo::with_oid(Oid(oid::UNKNOWN))
    }

    fn compatible(_: &PgTypeInfo) -> bool {
        true
    }
}

impl Encode<'_, Postgres> for Param<'_> {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        let oid = oid_of(self.ty);
        match self.value {
            SqlValue::Null => return Ok(IsNull::Yes),
            SqlValue::Boolean(v) => buf.push(u8::from(*v)),
            SqlValue::Int64(v) => match oid {
                Some(oid::INT2) => buf.extend_from_slice(&i16::try_from(*v)?.to_be_bytes()),
                Some(oid::INT4) => buf.extend_from_slice(&i32::try_from(*v)?.to_be_bytes()),
                _ => buf.extend_from_slice(&v.to_be_bytes()),
            },
            // Narrowing to `real` is the caller's choice of column type.
            #[allow(clippy::cast_possible_truncation)]
            SqlValue::Float64(v) if oid == Some(oid::FLOAT4) => {
                buf.extend_from_slice(&(*v as f32).to_be_bytes());
            }
            SqlValue::Float64(v) => buf.extend_from_slice(&v.to_be_bytes()),
            SqlValue::Text(v) => buf.extend_from_slice(v.as_bytes()),
            SqlValue::Json(v) => {
                if oid == Some(oid::JSONB) {
                    buf.push(1);
                }
                buf.extend_from_slice(v.as_bytes());
            }
            SqlValue::Timestamp(v) => {
                buf.extend_from_slice(&v.saturating_sub(PG_EPOCH_OFFSET_MICROS).to_be_bytes());
            }
            SqlValue::Bytes(v) => buf.extend_from_slice(v),
            SqlValue::TextArray(items) => {
                let element = if oid == Some(oid::VARCHAR_ARRAY) {
                    oid::VARCHAR
                } else {
                    oid::TEXT
                };
                encode_text_array(buf, items, element)?;
            }
        }
        Ok(IsNull::No)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.ty.clone())
    }
}

/// A one-dimensional array of text elements (type `element`), without NULLs, in the binary format.
fn encode_text_array(
    buf: &mut PgArgumentBuffer,
    items: &[String],
    element: u32,
) -> Result<(), BoxDynError> {
    let count = i32::try_from(items.len())?;
    buf.extend_from_slice(&1_i32.to_be_bytes()); // dimensions
    buf.extend_from_slice(&0_i32.to_be_bytes()); // no NULL elements
    buf.extend_from_slice(&element.to_be_bytes());
    buf.extend_from_slice(&count.to_be_bytes()); // length of the dimension
    buf.extend_from_slice(&1_i32.to_be_bytes()); // lower bound
    for item in items {
        buf.extend_from_slice(&i32::try_from(item.len())?.to_be_bytes());
        buf.extend_from_slice(item.as_bytes());
    }
    Ok(())
}

fn decode_row(row: &PgRow) -> Result<Vec<SqlValue>, SqlError> {
    (0..row.len()).map(|i| decode_value(row, i)).collect()
}

fn decode_value(row: &PgRow, index: usize) -> Result<SqlValue, SqlError> {
    let name = row.columns()[index].name().to_owned();
    let failed = |e: BoxDynError| SqlError::QueryFailed(format!("column {name}: {e}"));
    let value = row
        .try_get_raw(index)
        .map_err(|e| SqlError::QueryFailed(format!("column {name}: {e}")))?;
    if value.is_null() {
        return Ok(SqlValue::Null);
    }
    let ty = value.type_info().into_owned();
    fn decoded<'r, T: Decode<'r, Postgres>>(value: PgValueRef<'r>) -> Result<T, BoxDynError> {
        T::decode(value)
    }
    let decoded = match oid_of(&ty) {
        Some(oid::BOOL) => decoded::<bool>(value).map(SqlValue::Boolean),
        Some(oid::INT2) => decoded::<i16>(value).map(|v| SqlValue::Int64(v.into())),
        Some(oid::INT4) => decoded::<i32>(value).map(|v| SqlValue::Int64(v.into())),
        Some(oid::INT8) => decoded::<i64>(value).map(SqlValue::Int64),
        Some(oid::FLOAT4) => decoded::<f32>(value).map(|v| SqlValue::Float64(v.into())),
        Some(oid::FLOAT8) => decoded::<f64>(value).map(SqlValue::Float64),
        Some(oid::JSON | oid::JSONB) => json_text(&value, oid_of(&ty) == Some(oid::JSONB))
            .map(|text| SqlValue::Json(text.to_owned())),
        Some(oid::TIMESTAMP | oid::TIMESTAMPTZ) => micros(&value).map(SqlValue::Timestamp),
        Some(oid::BYTEA) => decoded::<Vec<u8>>(value).map(SqlValue::Bytes),
        Some(oid::TEXT_ARRAY | oid::VARCHAR_ARRAY) => {
            decoded::<Vec<String>>(value).map(SqlValue::TextArray)
        }
        _ if accepts_text(&ty) => value.as_str().map(|s| SqlValue::Text(s.to_owned())),
        _ => return Err(unsupported(&name, &ty)),
    };
    decoded.map_err(failed)
}

fn unsupported(name: &str, ty: &PgTypeInfo) -> SqlError {
    SqlError::QueryFailed(format!(
        "column {name} has type {}, which the sql interface cannot carry",
        ty.name()
    ))
}

/// A `json`/`jsonb` value as its text.
fn json_text<'r>(value: &PgValueRef<'r>, jsonb: bool) -> Result<&'r str, BoxDynError> {
    let raw = value.as_bytes()?;
    let text = match value.format() {
        PgValueFormat::Binary if jsonb => match raw.split_first() {
            Some((1, rest)) => rest,
            _ => return Err("unsupported jsonb version".into()),
        },
        _ => raw,
    };
    Ok(std::str::from_utf8(text)?)
}

/// A `timestamp`/`timestamptz` value (binary format) as microseconds since 1970.
fn micros(value: &PgValueRef<'_>) -> Result<i64, BoxDynError> {
    if value.format() != PgValueFormat::Binary {
        return Err("a timestamp in text format".into());
    }
    let raw: [u8; 8] = value.as_bytes()?.try_into()?;
    Ok(i64::from_be_bytes(raw).saturating_add(PG_EPOCH_OFFSET_MICROS))
}
