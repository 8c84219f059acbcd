//! [`PostgresDriver`]: the production [`SqlDriver`] on a pooled tokio-postgres connection.

use std::error::Error as _;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use postgres_types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::driver::{PrepareFuture, QueryFuture, RowSet, SqlDriver, SqlError, SqlValue};

/// Microseconds between 1970-01-01 (the WIT epoch) and 2000-01-01 (PostgreSQL's).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// Settings for [`PostgresDriver`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The most connections the pool opens.
    pub pool_size: usize,
    /// How long opening a connection may take.
    pub connect_timeout: Duration,
    /// How long a call may wait for a free connection.
    pub wait_timeout: Duration,
    /// How long one statement may take, waiting for a connection included; past it the call fails with
    /// [`SqlError::ConnectionFailed`] instead of hanging on a database that stopped answering.
    pub query_timeout: Duration,
    /// How statements are sent: named prepared statements cached per connection (the default), or
    /// unnamed ones for a transaction-pooling PgBouncer (see [`StatementMode`]).
    pub statement_mode: StatementMode,
}

/// How [`PostgresDriver`] sends a statement to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StatementMode {
    /// A named prepared statement per statement text and connection, cached on the connection: parsed
    /// and planned once, then executed with the parameter types the server declared (a value that does
    /// not fit them is refused unsent). Needs a server connection of its own for each client
    /// connection (PostgreSQL directly, or a session-pooling PgBouncer).
    #[default]
    Prepared,
    /// One unnamed statement per call (`Parse`, `Bind`, `Execute` in one round trip), its parameter
    /// types taken from the values (`SqlValue::Text` as `text`, `Int64` as `bigint`, `Json` as `jsonb`,
    /// `Timestamp` as `timestamptz`, `Null` as `unknown`, which the statement's cast types): nothing
    /// outlives the statement on the server connection, so it works behind PgBouncer in transaction
    /// pooling mode, which does not support named prepared statements. Every statement of the component
    /// casts its parameters explicitly; the cast converts a value of another kind where PostgreSQL has
    /// that cast (e.g. text `'1'` to `bigint`; [`SqlError::BadParameter`] where it has none) instead of
    /// the value being refused unsent, a `timestamp` cast of a timestamp depends on the session's time
    /// zone, and a surplus parameter is not refused. [`SqlDriver::prepare`] prepares and closes the
    /// statement inside a transaction, so that it stays on one server connection.
    Unnamed,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_secs(30),
            statement_mode: StatementMode::Prepared,
        }
    }
}

/// Why a [`PostgresDriver`] could not be created or the schema not migrated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection string could not be parsed.
    #[error("invalid database URL")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("could not build the connection pool")]
    Pool(#[source] deadpool_postgres::BuildError),
    /// No connection could be had.
    #[error("could not connect to PostgreSQL")]
    Connect(#[source] PoolError),
    /// Applying the migrations failed.
    #[error("applying the schema migrations failed")]
    Migrate(#[source] refinery::Error),
}

/// A pooled PostgreSQL connection with a per-connection prepared-statement cache.
#[derive(Clone)]
pub struct PostgresDriver {
    pool: Pool,
    query_timeout: Duration,
    statement_mode: StatementMode,
}

impl std::fmt::Debug for PostgresDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDriver")
            .field("status", &self.pool.status())
            .finish()
    }
}

mod embedded {
    refinery::embed_migrations!("migrations");
}

impl PostgresDriver {
    /// Connects lazily to the database at `url` (a `postgres://` URL or `key=value` string).
    ///
    /// # Errors
    /// [`PostgresError::InvalidUrl`] or [`PostgresError::Pool`]; no connection is opened yet.
    pub fn connect(url: &str, options: &PostgresOptions) -> Result<Self, PostgresError> {
        let config: tokio_postgres::Config = url.parse().map_err(PostgresError::InvalidUrl)?;
        Self::from_config(config, options)
    }

    /// Builds the pool from a parsed configuration.
    ///
    /// # Errors
    /// [`PostgresError::Pool`] when the pool cannot be built.
    pub fn from_config(
        mut config: tokio_postgres::Config,
        options: &PostgresOptions,
    ) -> Result<Self, PostgresError> {
        config.connect_timeout(options.connect_timeout);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(options.wait_timeout))
            .create_timeout(Some(options.connect_timeout))
            .build()
            .map_err(PostgresError::Pool)?;
        Ok(Self {
            pool,
            query_timeout: options.query_timeout,
            statement_mode: options.statement_mode,
        })
    }

    /// Applies the schema in `migrations/` (idempotent; the same code path for the binary and the tests).
    ///
    /// # Errors
    /// [`PostgresError::Connect`] or [`PostgresError::Migrate`].
    pub async fn migrate(&self) -> Result<(), PostgresError> {
        let mut client = self.pool.get().await.map_err(PostgresError::Connect)?;
        let client: &mut tokio_postgres::Client = &mut client;
        embedded::migrations::runner()
            .run_async(client)
            .await
            .map_err(PostgresError::Migrate)?;
        Ok(())
    }

    async fn run(&self, statement: &str, params: &[SqlValue]) -> Result<RowSet, SqlError> {
        let mut guard = InFlight(Some(self.pool.get().await.map_err(pool_error)?));
        let outcome = match self.statement_mode {
            StatementMode::Prepared => Self::run_on(guard.client(), statement, params).await,
            StatementMode::Unnamed => Self::run_unnamed(guard.client(), statement, params).await,
        };
        guard.finish();
        outcome
    }

    async fn run_on(
        client: &Object,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<RowSet, SqlError> {
        let prepared = client
            .prepare_cached(statement)
            .await
            .map_err(query_error)?;
        let types = prepared.params();
        if types.len() != params.len() {
            return Err(SqlError::BadParameter(format!(
                "the statement takes {} parameters, {} were given",
                types.len(),
                params.len()
            )));
        }
        let mut encoded = Vec::with_capacity(params.len());
        for (index, (value, ty)) in params.iter().zip(types).enumerate() {
            check_param(value, ty).map_err(|why| {
                SqlError::BadParameter(format!("parameter ${}: {why}", index + 1))
            })?;
            encoded.push(PgParam(value));
        }
        let refs: Vec<&(dyn ToSql + Sync)> =
            encoded.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        if prepared.columns().is_empty() {
            let rows_affected = client
                .execute(&prepared, &refs)
                .await
                .map_err(query_error)?;
            return Ok(RowSet {
                rows_affected,
                ..RowSet::default()
            });
        }
        let rows = client.query(&prepared, &refs).await.map_err(query_error)?;
        let columns = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
        let rows = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        Ok(RowSet {
            columns,
            rows_affected: rows.len() as u64,
            rows,
        })
    }

    /// [`StatementMode::Unnamed`]: one unnamed statement, each parameter typed after its value.
    async fn run_unnamed(
        client: &Object,
        statement: &str,
        params: &[SqlValue],
    ) -> Result<RowSet, SqlError> {
        use futures_util::TryStreamExt as _;
        let encoded: Vec<PgParam<'_>> = params.iter().map(PgParam).collect();
        let typed = encoded
            .iter()
            .map(|p| (p as &(dyn ToSql + Sync), unnamed_type(p.0)));
        let stream = client
            .query_typed_raw(statement, typed)
            .await
            .map_err(unnamed_error)?;
        let mut stream = std::pin::pin!(stream);
        let mut rows = Vec::new();
        while let Some(row) = stream.try_next().await.map_err(unnamed_error)? {
            rows.push(row);
        }
        let columns = rows.first().map_or_else(Vec::new, |row| {
            row.columns().iter().map(|c| c.name().to_owned()).collect()
        });
        let rows_affected = stream.rows_affected().unwrap_or(rows.len() as u64);
        let rows = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
        Ok(RowSet {
            columns,
            rows,
            rows_affected,
        })
    }

    /// [`StatementMode::Unnamed`]'s check: the statement is prepared and closed inside a transaction
    /// (rolled back), so a pooler keeps every message of it on one server connection and nothing of it
    /// outlives the check.
    async fn prepare_in_transaction(&self, statement: &str) -> Result<(), SqlError> {
        let mut object = self.pool.get().await.map_err(pool_error)?;
        let client: &mut tokio_postgres::Client = &mut object;
        let transaction = client.transaction().await.map_err(query_error)?;
        // Dropping the statement queues its `Close` before the rollback.
        let prepared = transaction.prepare(statement).await.map(drop);
        transaction.rollback().await.map_err(query_error)?;
        prepared.map_err(query_error)
    }
}

/// The type an unnamed statement declares for a parameter: the value's own (the statement's cast
/// converts it); `unknown` for `NULL`, which the server types after the cast.
fn unnamed_type(value: &SqlValue) -> Type {
    match value {
        SqlValue::Null => Type::UNKNOWN,
        SqlValue::Boolean(_) => Type::BOOL,
        SqlValue::Int64(_) => Type::INT8,
        SqlValue::Float64(_) => Type::FLOAT8,
        SqlValue::Text(_) => Type::TEXT,
        SqlValue::Json(_) => Type::JSONB,
        SqlValue::Timestamp(_) => Type::TIMESTAMPTZ,
        SqlValue::Bytes(_) => Type::BYTEA,
        SqlValue::TextArray(_) => Type::TEXT_ARRAY,
    }
}

/// [`query_error`], except for what the prepared mode refuses unsent as bad parameters: a `Bind` with
/// fewer parameters than the statement uses (SQLSTATE 08P01, a protocol violation, not a broken
/// connection) and a value of a kind the parameter's cast cannot convert (42846).
fn unnamed_error(error: tokio_postgres::Error) -> SqlError {
    match error.as_db_error() {
        Some(db) if matches!(db.code().code(), "08P01" | "42846") => {
            SqlError::BadParameter(format!("{}: {}", db.code().code(), db.message()))
        }
        _ => query_error(error),
    }
}

impl SqlDriver for PostgresDriver {
    fn query<'a>(&'a self, statement: &'a str, params: &'a [SqlValue]) -> QueryFuture<'a> {
        Box::pin(async move {
            tokio::time::timeout(self.query_timeout, self.run(statement, params))
                .await
                .unwrap_or_else(|_| {
                    Err(SqlError::ConnectionFailed(format!(
                        "no answer from the database within {:?}",
                        self.query_timeout
                    )))
                })
        })
    }

    fn prepare<'a>(&'a self, statement: &'a str) -> PrepareFuture<'a> {
        Box::pin(async move {
            if self.statement_mode == StatementMode::Unnamed {
                return self.prepare_in_transaction(statement).await;
            }
            let client = self.pool.get().await.map_err(pool_error)?;
            client
                .prepare_cached(statement)
                .await
                .map(drop)
                .map_err(query_error)
        })
    }
}

/// A pooled connection with a statement in flight. Dropped before [`finish`](Self::finish) (the call's
/// deadline passed and its future was dropped), the server may still be running the statement: the
/// connection is taken out of the pool, so no later query waits behind it, the server is asked to
/// cancel the statement, and the connection closes.
struct InFlight(Option<Object>);

impl InFlight {
    fn client(&self) -> &Object {
        self.0.as_ref().expect("present until finished")
    }

    /// The statement completed: the connection goes back to the pool.
    fn finish(&mut self) {
        self.0.take();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(object) = self.0.take() else {
            return;
        };
        let client = Object::take(object);
        let cancel = client.cancel_token();
        tracing::warn!("abandoning a connection with a statement in flight; cancelling it");
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = cancel.cancel_query(NoTls).await {
                    tracing::warn!(error = %error, "could not cancel an abandoned statement");
                }
            });
        }
    }
}

fn pool_error(error: PoolError) -> SqlError {
    match error {
        PoolError::Backend(e) => query_error(e),
        other => SqlError::ConnectionFailed(other.to_string()),
    }
}

/// Sorts a tokio-postgres error into the guest-visible classes.
fn query_error(error: tokio_postgres::Error) -> SqlError {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        return if code.starts_with("23") {
            SqlError::ConstraintViolation {
                sqlstate: code.to_owned(),
                message: db.message().to_owned(),
            }
        } else if code.starts_with("08") || code.starts_with("57P") {
            SqlError::ConnectionFailed(format!("{code}: {}", db.message()))
        } else if code.starts_with("22") || code == "42P18" || code == "42804" {
            SqlError::BadParameter(format!("{code}: {}", db.message()))
        } else {
            SqlError::QueryFailed(format!("{code}: {}", db.message()))
        };
    }
    if let Some(source) = error.source() {
        if let Some(mismatch) = source.downcast_ref::<ParamMismatch>() {
            return SqlError::BadParameter(mismatch.0.clone());
        }
        if source.downcast_ref::<std::io::Error>().is_some() {
            return SqlError::ConnectionFailed(error.to_string());
        }
    }
    if error.is_closed() {
        return SqlError::ConnectionFailed(error.to_string());
    }
    SqlError::QueryFailed(error.to_string())
}

/// A parameter whose value does not fit the type the statement declares.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ParamMismatch(String);

fn check_param(value: &SqlValue, ty: &Type) -> Result<(), String> {
    let fits = match value {
        SqlValue::Null => true,
        SqlValue::Boolean(_) => *ty == Type::BOOL,
        SqlValue::Int64(v) => match *ty {
            Type::INT8 => true,
            Type::INT4 => i32::try_from(*v).is_ok(),
            Type::INT2 => i16::try_from(*v).is_ok(),
            _ => false,
        },
        SqlValue::Float64(_) => matches!(*ty, Type::FLOAT8 | Type::FLOAT4),
        SqlValue::Text(_) => <&str as ToSql>::accepts(ty),
        SqlValue::Json(_) => matches!(*ty, Type::JSON | Type::JSONB),
        SqlValue::Timestamp(_) => matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP),
        SqlValue::Bytes(_) => *ty == Type::BYTEA,
        SqlValue::TextArray(_) => matches!(*ty, Type::TEXT_ARRAY | Type::VARCHAR_ARRAY),
    };
    if fits {
        Ok(())
    } else {
        Err(format!(
            "a {} value does not fit the type {ty}",
            kind_name(value)
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

/// A [`SqlValue`] encoded as the type the server declared for its parameter.
#[derive(Debug)]
struct PgParam<'a>(&'a SqlValue);

impl ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match (self.0, ty) {
            (SqlValue::Null, _) => return Ok(IsNull::Yes),
            (SqlValue::Boolean(v), _) => v.to_sql(ty, out)?,
            (SqlValue::Int64(v), &Type::INT2) => i16::try_from(*v)?.to_sql(ty, out)?,
            (SqlValue::Int64(v), &Type::INT4) => i32::try_from(*v)?.to_sql(ty, out)?,
            (SqlValue::Int64(v), _) => v.to_sql(ty, out)?,
            // Narrowing to `real` is the caller's choice of column type.
            #[allow(clippy::cast_possible_truncation)]
            (SqlValue::Float64(v), &Type::FLOAT4) => (*v as f32).to_sql(ty, out)?,
            (SqlValue::Float64(v), _) => v.to_sql(ty, out)?,
            (SqlValue::Text(v), _) => v.as_str().to_sql(ty, out)?,
            (SqlValue::Json(v), &Type::JSONB) => {
                out.put_u8(1);
                out.put_slice(v.as_bytes());
                IsNull::No
            }
            (SqlValue::Json(v), _) => {
                out.put_slice(v.as_bytes());
                IsNull::No
            }
            (SqlValue::Timestamp(v), _) => {
                out.put_i64(v.saturating_sub(PG_EPOCH_OFFSET_MICROS));
                IsNull::No
            }
            (SqlValue::Bytes(v), _) => v.as_slice().to_sql(ty, out)?,
            (SqlValue::TextArray(v), _) => v.to_sql(ty, out)?,
        };
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `check_param`, which knows the variant.
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        check_param(self.0, ty).map_err(|why| Box::new(ParamMismatch(why)))?;
        self.to_sql(ty, out)
    }
}

/// A `json`/`jsonb` column read as its text.
struct JsonText(String);

impl<'a> FromSql<'a> for JsonText {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, rest)) => rest,
                _ => return Err("unsupported jsonb version".into()),
            }
        } else {
            raw
        };
        Ok(JsonText(std::str::from_utf8(text)?.to_owned()))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

/// A `timestamp`/`timestamptz` column read as microseconds since 1970.
struct Micros(i64);

impl<'a> FromSql<'a> for Micros {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let pg = i64::from_be_bytes(raw.try_into()?);
        Ok(Micros(pg.saturating_add(PG_EPOCH_OFFSET_MICROS)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP)
    }
}

fn decode_row(row: &Row) -> Result<Vec<SqlValue>, SqlError> {
    (0..row.len()).map(|i| decode_value(row, i)).collect()
}

fn decode_value(row: &Row, index: usize) -> Result<SqlValue, SqlError> {
    let column = &row.columns()[index];
    let failed =
        |e: tokio_postgres::Error| SqlError::QueryFailed(format!("column {}: {e}", column.name()));
    fn or_null<T>(value: Option<T>, f: impl FnOnce(T) -> SqlValue) -> SqlValue {
        value.map_or(SqlValue::Null, f)
    }
    let value = match *column.type_() {
        Type::BOOL => or_null(row.try_get(index).map_err(failed)?, SqlValue::Boolean),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(index).map_err(failed)?, |v| {
            SqlValue::Int64(v.into())
        }),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(index).map_err(failed)?, |v| {
            SqlValue::Int64(v.into())
        }),
        Type::INT8 => or_null(row.try_get(index).map_err(failed)?, SqlValue::Int64),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(index).map_err(failed)?, |v| {
            SqlValue::Float64(v.into())
        }),
        Type::FLOAT8 => or_null(row.try_get(index).map_err(failed)?, SqlValue::Float64),
        Type::JSON | Type::JSONB => or_null(
            row.try_get::<_, Option<JsonText>>(index).map_err(failed)?,
            |v| SqlValue::Json(v.0),
        ),
        Type::TIMESTAMPTZ | Type::TIMESTAMP => or_null(
            row.try_get::<_, Option<Micros>>(index).map_err(failed)?,
            |v| SqlValue::Timestamp(v.0),
        ),
        Type::BYTEA => or_null(row.try_get(index).map_err(failed)?, SqlValue::Bytes),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => {
            or_null(row.try_get(index).map_err(failed)?, SqlValue::TextArray)
        }
        ref ty if <&str as FromSql>::accepts(ty) => {
            or_null(row.try_get(index).map_err(failed)?, SqlValue::Text)
        }
        ref ty => {
            return Err(SqlError::QueryFailed(format!(
                "column {} has type {ty}, which the sql interface cannot carry",
                column.name()
            )));
        }
    };
    Ok(value)
}
