//! Every conversion between the generated WIT types and the public host types, in one place: records,
//! errors, SQL values, and a session's tracked changes as the guest's `save-request`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::bindings::exports::wasm_sessions::store::store as wit;
use crate::bindings::wasm_sessions::store::sql as wit_sql;
use crate::driver::{RowSet, SqlError, SqlValue};
use crate::error::StoreError;
use crate::session::{Concurrency, Config, Expiry, SameSite, Session, Tracking, UserSession};

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

/// Session data from the guest's JSON object text. The guest passes the database's JSONB through
/// unparsed; anything but an object is an unexpected result.
fn data_from_wit(json: &str) -> Result<BTreeMap<String, Value>, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::UnexpectedResult(format!("session data is not a JSON object: {e}"))
    })
}

/// JSON text of `value` (serializing a `serde_json::Value` cannot fail).
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

pub(crate) fn expiry_to_wit(e: Expiry) -> wit::Expiry {
    match e {
        Expiry::OnInactivity(idle) => {
            wit::Expiry::OnInactivity(i64::try_from(idle.as_secs()).unwrap_or(i64::MAX))
        }
        Expiry::AtDateTime(at) => wit::Expiry::At(micros_from_time(at)),
        Expiry::OnSessionEnd => wit::Expiry::OnSessionEnd,
    }
}

pub(crate) fn expiry_from_wit(e: wit::Expiry) -> Expiry {
    match e {
        wit::Expiry::OnInactivity(secs) => {
            Expiry::OnInactivity(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
        }
        wit::Expiry::At(at) => Expiry::AtDateTime(time_from_micros(at)),
        wit::Expiry::OnSessionEnd => Expiry::OnSessionEnd,
    }
}

pub(crate) fn session_from_wit(s: wit::Session) -> Result<Session, StoreError> {
    let data = data_from_wit(&s.data)?;
    Ok(session_from_wit_with_data(s, data))
}

/// `s` with `data` as its data (`s.data` unread: the copy's own, which the host already holds).
pub(crate) fn session_from_wit_with_data(
    s: wit::Session,
    data: BTreeMap<String, Value>,
) -> Session {
    Session {
        data,
        id: s.id,
        handle: s.handle,
        user_id: s.user_id,
        label: s.label,
        expiry: s.expiry.map(expiry_from_wit),
        created_at: time_from_micros(s.created_at),
        expires_at: time_from_micros(s.expires_at),
        absolute_expires_at: time_from_micros(s.absolute_expires_at),
        updated_at: time_from_micros(s.updated_at),
        version: s.version,
        is_saved: s.is_saved,
        tracking: Tracking::default(),
    }
}

pub(crate) fn session_to_wit(s: &Session) -> wit::Session {
    session_to_wit_with_data(s, json_text(&s.data))
}

/// `s` in the guest's form, with `data` as its data text.
fn session_to_wit_with_data(s: &Session, data: String) -> wit::Session {
    wit::Session {
        id: s.id.clone(),
        handle: s.handle.clone(),
        data,
        user_id: s.user_id,
        label: s.label.clone(),
        expiry: s.expiry.map(expiry_to_wit),
        created_at: micros_from_time(s.created_at),
        expires_at: micros_from_time(s.expires_at),
        absolute_expires_at: micros_from_time(s.absolute_expires_at),
        updated_at: micros_from_time(s.updated_at),
        version: s.version,
        is_saved: s.is_saved,
    }
}

/// The guest's `save-request` for `s`: its state, what it changed and what it saw.
pub(crate) fn save_request(s: &Session, rotate: bool) -> wit::SaveRequest {
    let tracking = &s.tracking;
    let reads = tracking.reads_now();
    let mut set = Vec::new();
    let mut removed = Vec::new();
    for key in tracking.originals.keys() {
        match s.data.get(key) {
            Some(value) => set.push((key.clone(), json_text(value))),
            None if !tracking.cleared => removed.push(key.clone()),
            None => {}
        }
    }
    // The value each touched key had when loaded: its original if it was written, else the current one.
    let loaded = |key: &String| match tracking.originals.get(key) {
        Some(original) => original.as_ref().map(json_text),
        None => s.data.get(key).map(json_text),
    };
    let keys = tracking
        .originals
        .keys()
        .chain(
            reads
                .keys
                .iter()
                .filter(|k| !tracking.originals.contains_key(*k)),
        )
        .map(|key| (key.clone(), loaded(key)))
        .collect();
    let all_data = reads.all.then(|| {
        let mut original = s.data.clone();
        for (key, value) in &tracking.originals {
            match value {
                Some(value) => original.insert(key.clone(), value.clone()),
                None => original.remove(key),
            };
        }
        json_text(&original)
    });
    let user = (reads.user || tracking.user_original.is_some())
        .then(|| tracking.user_original.unwrap_or(s.user_id));
    let expiry = (reads.expiry || tracking.expiry_original.is_some()).then(|| {
        tracking
            .expiry_original
            .unwrap_or(s.expiry)
            .map(expiry_to_wit)
    });
    // A saved session is written by its changes alone (`changes`, `expected`): the guest never reads
    // its whole data then, so it is not serialized on every save; the empty object stands for it. A new
    // session is inserted whole and carries its data.
    let session = if s.is_saved {
        session_to_wit_with_data(s, String::from("{}"))
    } else {
        session_to_wit(s)
    };
    wit::SaveRequest {
        session,
        changes: wit::Changes {
            set,
            removed,
            cleared: tracking.cleared,
            user: tracking.user_original.map(|_| s.user_id),
            label: tracking.label_changed.then(|| s.label.clone()),
            expiry: tracking
                .expiry_original
                .map(|_| s.expiry.map(expiry_to_wit)),
        },
        expected: wit::Expected {
            keys,
            all_data,
            user,
            expiry,
        },
        rotate,
    }
}

pub(crate) fn user_session_from_wit(s: wit::UserSession) -> Result<UserSession, StoreError> {
    Ok(UserSession {
        data: data_from_wit(&s.data)?,
        handle: s.handle,
        user_id: s.user_id,
        label: s.label,
        created_at: time_from_micros(s.created_at),
        expires_at: time_from_micros(s.expires_at),
        updated_at: time_from_micros(s.updated_at),
    })
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
            wit::Concurrency::Merge => Concurrency::Merge,
            wit::Concurrency::Strict => Concurrency::Strict,
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
            Concurrency::Merge => wit::Concurrency::Merge,
            Concurrency::Strict => wit::Concurrency::Strict,
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
        wit_sql::SqlError::Refused(m) => SqlError::Refused(m),
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
        SqlError::Refused(m) => wit_sql::SqlError::Refused(m),
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
        wit_sql::SqlValue::TextArray(a) => SqlValue::TextArray(a),
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
        SqlValue::TextArray(a) => wit_sql::SqlValue::TextArray(a),
    }
}

/// A driver's row set as the guest receives it: the values by position, without the column names (the
/// guest declared the statement, so it knows its columns; names would be lowered into guest memory as
/// one string each, on every call).
pub(crate) fn row_set_to_wit(r: RowSet) -> wit_sql::RowSet {
    wit_sql::RowSet {
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
            SqlError::Refused("r".into()),
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
            secure: true,
            same_site: SameSite::None,
            domain: Some("example.com".into()),
            path: "/app".into(),
            idle_timeout: Some(30),
            max_data_bytes: 4096,
            concurrency: Concurrency::LastWriteWins,
        };
        assert_eq!(config_from_wit(config_to_wit(&config)), config);
    }

    #[test]
    fn expiry_round_trips_through_wit() {
        for e in [
            Expiry::OnInactivity(Duration::from_secs(90)),
            Expiry::AtDateTime(time_from_micros(1_700_000_000_000_001)),
            Expiry::OnSessionEnd,
        ] {
            assert_eq!(expiry_from_wit(expiry_to_wit(e)), e);
        }
    }

    fn loaded() -> Session {
        session_from_wit(wit::Session {
            id: "t".into(),
            handle: "h".into(),
            data: r#"{"a":1,"b":"x","c":[1]}"#.into(),
            user_id: Some(7),
            label: None,
            expiry: None,
            created_at: 0,
            expires_at: 10,
            absolute_expires_at: 10,
            updated_at: 0,
            version: 3,
            is_saved: true,
        })
        .unwrap()
    }

    #[test]
    fn a_save_request_carries_only_the_changes_and_what_was_seen_before_them() {
        let mut s = loaded();
        let _ = s.get::<i64>("a");
        let _ = s.get_str("missing");
        s.set("b", "y");
        s.remove("c");
        s.insert("d", 2).unwrap();
        let request = save_request(&s, false);
        assert_eq!(
            request.changes.set,
            [("b".into(), "\"y\"".into()), ("d".into(), "2".into())]
        );
        assert_eq!(request.changes.removed, ["c"]);
        assert!(!request.changes.cleared);
        assert_eq!(request.changes.user, None);
        let expected: BTreeMap<_, _> = request.expected.keys.into_iter().collect();
        assert_eq!(expected["a"].as_deref(), Some("1"));
        assert_eq!(expected["b"].as_deref(), Some("\"x\""));
        assert_eq!(expected["c"].as_deref(), Some("[1]"));
        assert_eq!(expected["d"], None);
        assert_eq!(expected["missing"], None);
        assert_eq!(request.expected.all_data, None);
        assert_eq!(request.expected.user, None);
    }

    #[test]
    fn reading_everything_expects_the_data_as_loaded_and_a_user_change_expects_the_old_user() {
        let mut s = loaded();
        s.set("a", "changed");
        let _ = s.data();
        s.set_user(8);
        let request = save_request(&s, true);
        assert_eq!(
            request.expected.all_data.as_deref(),
            Some(r#"{"a":1,"b":"x","c":[1]}"#)
        );
        assert_eq!(request.expected.user, Some(Some(7)));
        assert_eq!(request.changes.user, Some(Some(8)));
        assert!(request.rotate);
    }

    #[test]
    fn a_cleared_session_sends_cleared_and_only_what_was_set_after() {
        let mut s = loaded();
        s.clear();
        s.set("z", "1");
        let request = save_request(&s, false);
        assert!(request.changes.cleared);
        assert!(request.changes.removed.is_empty());
        assert_eq!(request.changes.set, [("z".into(), "\"1\"".into())]);
    }
}
