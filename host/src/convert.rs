//! Every conversion between the generated WIT types and the public host types, in one place.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::exports::wasm_sessions::store::store as wit;
use crate::bindings::wasm_sessions::store::sql as wit_sql;
use crate::driver::{RowSet, SqlError, SqlValue};
use crate::error::StoreError;
use crate::session::{Concurrency, Config, SameSite, Session, UserSession};

/// Microseconds since the epoch → `SystemTime` (saturating at the representable range).
pub(crate) fn time_from_micros(micros: i64) -> SystemTime {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH.checked_add(magnitude).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(magnitude).unwrap_or(UNIX_EPOCH)
    }
}

/// `SystemTime` → microseconds since the epoch (saturating).
pub(crate) fn micros_from_time(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

fn data_from_wit(pairs: Vec<(String, String)>) -> BTreeMap<String, String> {
    pairs.into_iter().collect()
}

fn data_to_wit(data: &BTreeMap<String, String>) -> Vec<(String, String)> {
    data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn session_from_wit(s: wit::Session) -> Session {
    Session {
        id: s.id,
        data: data_from_wit(s.data),
        user_id: s.user_id,
        created_at: time_from_micros(s.created_at),
        expires_at: time_from_micros(s.expires_at),
        absolute_expires_at: time_from_micros(s.absolute_expires_at),
        updated_at: time_from_micros(s.updated_at),
        version: s.version,
        is_saved: s.is_saved,
    }
}

pub(crate) fn session_to_wit(s: &Session) -> wit::Session {
    wit::Session {
        id: s.id.clone(),
        data: data_to_wit(&s.data),
        user_id: s.user_id,
        created_at: micros_from_time(s.created_at),
        expires_at: micros_from_time(s.expires_at),
        absolute_expires_at: micros_from_time(s.absolute_expires_at),
        updated_at: micros_from_time(s.updated_at),
        version: s.version,
        is_saved: s.is_saved,
    }
}

pub(crate) fn user_session_from_wit(s: wit::UserSession) -> UserSession {
    UserSession {
        handle: s.handle,
        data: data_from_wit(s.data),
        user_id: s.user_id,
        created_at: time_from_micros(s.created_at),
        expires_at: time_from_micros(s.expires_at),
        updated_at: time_from_micros(s.updated_at),
    }
}

pub(crate) fn config_from_wit(c: wit::Config) -> Config {
    Config {
        cookie_name: c.cookie_name,
        max_age: c.max_age,
        http_only: c.http_only,
        secure: c.secure,
        same_site: match c.same_site {
            wit::SameSite::Lax => SameSite::Lax,
            wit::SameSite::Strict => SameSite::Strict,
            wit::SameSite::None => SameSite::None,
        },
        domain: c.domain,
        path: c.path,
        idle_timeout: c.idle_timeout,
        max_data_bytes: c.max_data_bytes,
        concurrency: match c.concurrency {
            wit::Concurrency::Optimistic => Concurrency::Optimistic,
            wit::Concurrency::LastWriteWins => Concurrency::LastWriteWins,
        },
    }
}

pub(crate) fn config_to_wit(c: &Config) -> wit::Config {
    wit::Config {
        cookie_name: c.cookie_name.clone(),
        max_age: c.max_age,
        http_only: c.http_only,
        secure: c.secure,
        same_site: match c.same_site {
            SameSite::Lax => wit::SameSite::Lax,
            SameSite::Strict => wit::SameSite::Strict,
            SameSite::None => wit::SameSite::None,
        },
        domain: c.domain.clone(),
        path: c.path.clone(),
        idle_timeout: c.idle_timeout,
        max_data_bytes: c.max_data_bytes,
        concurrency: match c.concurrency {
            Concurrency::Optimistic => wit::Concurrency::Optimistic,
            Concurrency::LastWriteWins => wit::Concurrency::LastWriteWins,
        },
    }
}

pub(crate) fn store_error_from_wit(e: wit::StoreError) -> StoreError {
    match e {
        wit::StoreError::InvalidId(m) => StoreError::InvalidId(m),
        wit::StoreError::NotFound => StoreError::NotFound,
        wit::StoreError::Expired => StoreError::Expired,
        wit::StoreError::InvalidConfig(m) => StoreError::InvalidConfig(m),
        wit::StoreError::InvalidData(m) => StoreError::InvalidData(m),
        wit::StoreError::Database(e) => StoreError::Database(sql_error_from_wit(e)),
        wit::StoreError::UnexpectedResult(m) => StoreError::UnexpectedResult(m),
        wit::StoreError::Conflict => StoreError::Conflict,
    }
}

pub(crate) fn sql_error_from_wit(e: wit_sql::SqlError) -> SqlError {
    match e {
        wit_sql::SqlError::ConnectionFailed(m) => SqlError::ConnectionFailed(m),
        wit_sql::SqlError::ConstraintViolation(c) => SqlError::ConstraintViolation {
            sqlstate: c.sqlstate,
            message: c.message,
        },
        wit_sql::SqlError::BadParameter(m) => SqlError::BadParameter(m),
        wit_sql::SqlError::QueryFailed(m) => SqlError::QueryFailed(m),
    }
}

pub(crate) fn sql_error_to_wit(e: SqlError) -> wit_sql::SqlError {
    match e {
        SqlError::ConnectionFailed(m) => wit_sql::SqlError::ConnectionFailed(m),
        SqlError::ConstraintViolation { sqlstate, message } => {
            wit_sql::SqlError::ConstraintViolation(wit_sql::ConstraintViolation {
                sqlstate,
                message,
            })
        }
        SqlError::BadParameter(m) => wit_sql::SqlError::BadParameter(m),
        SqlError::QueryFailed(m) => wit_sql::SqlError::QueryFailed(m),
    }
}

pub(crate) fn sql_value_from_wit(v: wit_sql::SqlValue) -> SqlValue {
    match v {
        wit_sql::SqlValue::Null => SqlValue::Null,
        wit_sql::SqlValue::Boolean(b) => SqlValue::Boolean(b),
        wit_sql::SqlValue::Int64(i) => SqlValue::Int64(i),
        wit_sql::SqlValue::Float64(f) => SqlValue::Float64(f),
        wit_sql::SqlValue::Text(s) => SqlValue::Text(s),
        wit_sql::SqlValue::Json(s) => SqlValue::Json(s),
        wit_sql::SqlValue::Timestamp(t) => SqlValue::Timestamp(t),
        wit_sql::SqlValue::Bytes(b) => SqlValue::Bytes(b),
    }
}

fn sql_value_to_wit(v: SqlValue) -> wit_sql::SqlValue {
    match v {
        SqlValue::Null => wit_sql::SqlValue::Null,
        SqlValue::Boolean(b) => wit_sql::SqlValue::Boolean(b),
        SqlValue::Int64(i) => wit_sql::SqlValue::Int64(i),
        SqlValue::Float64(f) => wit_sql::SqlValue::Float64(f),
        SqlValue::Text(s) => wit_sql::SqlValue::Text(s),
        SqlValue::Json(s) => wit_sql::SqlValue::Json(s),
        SqlValue::Timestamp(t) => wit_sql::SqlValue::Timestamp(t),
        SqlValue::Bytes(b) => wit_sql::SqlValue::Bytes(b),
    }
}

pub(crate) fn row_set_to_wit(r: RowSet) -> wit_sql::RowSet {
    wit_sql::RowSet {
        columns: r.columns,
        rows: r
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(sql_value_to_wit).collect())
            .collect(),
        rows_affected: r.rows_affected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip_through_system_time() {
        for micros in [0, 1, -1, 1_700_000_000_123_456, -946_684_800_000_000] {
            assert_eq!(micros_from_time(time_from_micros(micros)), micros);
        }
    }

    #[test]
    fn sql_errors_round_trip_through_wit() {
        let errors = [
            SqlError::ConnectionFailed("down".into()),
            SqlError::ConstraintViolation {
                sqlstate: "23505".into(),
                message: "dup".into(),
            },
            SqlError::BadParameter("p".into()),
            SqlError::QueryFailed("q".into()),
        ];
        for e in errors {
            assert_eq!(sql_error_from_wit(sql_error_to_wit(e.clone())), e);
        }
    }

    #[test]
    fn config_round_trips_through_wit() {
        let config = Config {
            cookie_name: "sid".into(),
            max_age: 60,
            http_only: false,
            secure: Some(true),
            same_site: SameSite::None,
            domain: Some("example.com".into()),
            path: "/app".into(),
            idle_timeout: Some(30),
            max_data_bytes: 4096,
            concurrency: Concurrency::LastWriteWins,
        };
        assert_eq!(config_from_wit(config_to_wit(&config)), config);
    }
}
