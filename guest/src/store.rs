//! The SQL the store sends through the host's `sql-query`, and strict decoding of the rows it gets back.
//!
//! Every statement is one of the constants in [`statements`], which `statements()` declares to the host.
//! Pure functions plan each write (checks, parameters) and decide what a result means; only the small
//! `run` calls reach the host, so everything else is unit-tested natively.

use crate::bindings::exports::wasm_sessions::store::store::{
    CommitOutcome, CommitRequest, Concurrency, Config, CookieState, Expiry, RequestSession,
    SaveRequest, Session, StoreError, UserSession,
};
use crate::bindings::wasm_sessions::store::sql::{RowSet, SqlValue, sql_query};
use crate::cookie::{self, Found};
use crate::{data, session, token};

use statements::{
    CLEANUP_BATCH, COUNT_EXPIRED, DELETE, DELETE_USER_SESSIONS, DELETE_USER_SESSIONS_EXCEPT,
    INSERT, LOAD, REVOKE, STATEMENTS, Statement, TOUCH, UPDATE, USER_SESSIONS, WHY_NOT_INSERTED,
    WHY_NOT_UPDATED,
};

/// The largest `limit` `cleanup-batch` accepts: one statement never locks more rows than this.
pub const MAX_CLEANUP_BATCH: u32 = 100_000;

/// Every statement the component sends, verbatim. Only this module can make a [`Statement`], and only
/// as one of these constants, so `run` can send nothing else; `STATEMENTS` lists them all (a unit test
/// checks that it lists every constant).
///
/// All of them name the table schema-qualified, and cast every parameter, so a driver can bind typed
/// parameters without relying on the server's inference.
pub mod statements {
    /// One declared statement.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Statement(&'static str);

    impl Statement {
        /// The statement's text, as declared.
        pub const fn text(self) -> &'static str {
            self.0
        }
    }

    /// The columns a session is read back with (`load`, insert and update alike).
    macro_rules! session_columns {
        () => {
            "data, user_id, label, expiry_mode, expiry_value, created_at, expires_at, \
             absolute_expires_at, updated_at, version"
        };
    }

    /// The data after an update's changes, from the placeholders of: cleared, keys removed (`text[]`),
    /// keys set (a `jsonb` object).
    macro_rules! merged_data {
        ($cleared:literal, $removed:literal, $set:literal) => {
            concat!(
                "(CASE WHEN ",
                $cleared,
                "::boolean THEN '{}'::jsonb ELSE s.data - ",
                $removed,
                "::text[] END) || ",
                $set,
                "::jsonb"
            )
        };
    }

    /// Loads one session by `$1` id hash.
    pub const LOAD: Statement = Statement(concat!(
        "SELECT ",
        session_columns!(),
        " FROM wasm_sessions.sessions WHERE id_hash = $1::bytea"
    ));

    /// Extends the idle deadline of session `$1` (loaded at version `$4`) to `$2`, never past its
    /// absolute deadline, at time `$3`; the version stays.
    pub const TOUCH: Statement = Statement(
        "UPDATE wasm_sessions.sessions \
         SET expires_at = LEAST($2::timestamptz, COALESCE(absolute_expires_at, expires_at)), \
         updated_at = $3::timestamptz \
         WHERE id_hash = $1::bytea AND version = $4::bigint \
         AND expires_at > $3::timestamptz AND expires_at < $2::timestamptz \
         RETURNING expires_at, updated_at",
    );

    /// Inserts a whole new session, version 1, unless its data's JSONB text is over `$11` bytes or the
    /// id hash is taken.
    pub const INSERT: Statement = Statement(concat!(
        "INSERT INTO wasm_sessions.sessions (id_hash, data, user_id, label, expiry_mode, \
         expiry_value, created_at, expires_at, absolute_expires_at, updated_at, version) \
         SELECT $1::bytea, $2::jsonb, $3::bigint, $4::text, $5::text, $6::bigint, \
         $7::timestamptz, $8::timestamptz, $9::timestamptz, $10::timestamptz, 1 \
         WHERE octet_length($2::jsonb::text) <= $11::bigint \
         ON CONFLICT (id_hash) DO NOTHING RETURNING ",
        session_columns!()
    ));

    /// Why [`INSERT`] wrote nothing: `$1` taken, or `$2` over the limit.
    pub const WHY_NOT_INSERTED: Statement = Statement(
        "SELECT EXISTS (SELECT 1 FROM wasm_sessions.sessions WHERE id_hash = $1::bytea) AS taken, \
         octet_length($2::jsonb::text) AS size",
    );

    /// Applies one request's changes to stored session `$1` (moving it to id hash `$2`) at time `$3`,
    /// under the concurrency conditions; see `UpdatePlan::params` for every parameter.
    pub const UPDATE: Statement = Statement(concat!(
        "UPDATE wasm_sessions.sessions AS s SET id_hash = $2::bytea, data = ",
        merged_data!("$4", "$5", "$6"),
        ", user_id = CASE WHEN $7::boolean THEN $8::bigint ELSE s.user_id END, \
         label = CASE WHEN $9::boolean THEN $10::text ELSE s.label END, \
         expiry_mode = CASE WHEN $11::boolean THEN $12::text ELSE s.expiry_mode END, \
         expiry_value = CASE WHEN $11::boolean THEN $13::bigint ELSE s.expiry_value END, \
         expires_at = CASE \
         WHEN $11::boolean THEN LEAST($14::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at)) \
         WHEN $15::timestamptz IS NOT NULL AND s.expiry_mode IS NOT DISTINCT FROM $16::text \
         AND s.expiry_value IS NOT DISTINCT FROM $17::bigint \
         THEN GREATEST(s.expires_at, LEAST($15::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at))) \
         ELSE s.expires_at END, \
         updated_at = $3::timestamptz, version = s.version + 1 \
         WHERE s.id_hash = $1::bytea AND s.expires_at > $3::timestamptz \
         AND ($18::bigint IS NULL OR s.version = $18::bigint) \
         AND ($19::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each($19::jsonb) AS e \
         WHERE s.data -> e.key IS DISTINCT FROM e.value)) \
         AND ($20::text[] IS NULL OR NOT (s.data ?| $20::text[])) \
         AND ($21::jsonb IS NULL OR s.data = $21::jsonb) \
         AND (NOT $22::boolean OR s.user_id IS NOT DISTINCT FROM $23::bigint) \
         AND (NOT $24::boolean OR (s.expiry_mode IS NOT DISTINCT FROM $25::text \
         AND s.expiry_value IS NOT DISTINCT FROM $26::bigint)) \
         AND octet_length((",
        merged_data!("$4", "$5", "$6"),
        ")::text) <= $27::bigint RETURNING ",
        session_columns!()
    ));

    /// Why [`UPDATE`] wrote nothing: the state of row `$1` and the size its data would have had with
    /// the changes (`$2` cleared, `$3` keys removed, `$4` keys set).
    pub const WHY_NOT_UPDATED: Statement = Statement(concat!(
        "SELECT s.version, s.expires_at, octet_length((",
        merged_data!("$2", "$3", "$4"),
        ")::text) AS merged_size FROM wasm_sessions.sessions AS s WHERE s.id_hash = $1::bytea"
    ));

    /// Deletes session `$1`.
    pub const DELETE: Statement =
        Statement("DELETE FROM wasm_sessions.sessions WHERE id_hash = $1::bytea");

    /// Deletes session `$1` if it belongs to user `$2`.
    pub const REVOKE: Statement = Statement(
        "DELETE FROM wasm_sessions.sessions WHERE id_hash = $1::bytea AND user_id = $2::bigint",
    );

    /// Deletes at most `$2` sessions expired by `$1`, oldest first, skipping locked rows.
    pub const CLEANUP_BATCH: Statement = Statement(
        "DELETE FROM wasm_sessions.sessions WHERE id_hash IN (SELECT id_hash \
         FROM wasm_sessions.sessions WHERE expires_at <= $1::timestamptz ORDER BY expires_at \
         LIMIT $2::bigint FOR UPDATE SKIP LOCKED)",
    );

    /// Counts the sessions expired by `$1`.
    pub const COUNT_EXPIRED: Statement = Statement(
        "SELECT count(*) AS expired FROM wasm_sessions.sessions WHERE expires_at <= $1::timestamptz",
    );

    /// Lists user `$1`'s sessions unexpired at `$2`, newest first.
    pub const USER_SESSIONS: Statement = Statement(
        "SELECT id_hash, data, label, created_at, expires_at, updated_at \
         FROM wasm_sessions.sessions WHERE user_id = $1::bigint AND expires_at > $2::timestamptz \
         ORDER BY created_at DESC, id_hash",
    );

    /// Deletes all of user `$1`'s sessions.
    pub const DELETE_USER_SESSIONS: Statement =
        Statement("DELETE FROM wasm_sessions.sessions WHERE user_id = $1::bigint");

    /// Deletes all of user `$1`'s sessions but `$2`.
    pub const DELETE_USER_SESSIONS_EXCEPT: Statement = Statement(
        "DELETE FROM wasm_sessions.sessions WHERE user_id = $1::bigint AND id_hash <> $2::bytea",
    );

    /// Every statement above: what `statements()` declares.
    pub const STATEMENTS: [Statement; 13] = [
        LOAD,
        TOUCH,
        INSERT,
        WHY_NOT_INSERTED,
        UPDATE,
        WHY_NOT_UPDATED,
        DELETE,
        REVOKE,
        CLEANUP_BATCH,
        COUNT_EXPIRED,
        USER_SESSIONS,
        DELETE_USER_SESSIONS,
        DELETE_USER_SESSIONS_EXCEPT,
    ];
}

/// Every statement text, for the `statements` export.
pub fn statements() -> Vec<String> {
    STATEMENTS.iter().map(|s| s.text().to_string()).collect()
}

/// Runs one declared statement, mapping a SQL failure to `database`.
fn run(statement: Statement, params: &[SqlValue]) -> Result<RowSet, StoreError> {
    sql_query(statement.text(), params).map_err(StoreError::Database)
}

/// An id hash as a parameter.
fn bytes(hash: &[u8; 32]) -> SqlValue {
    SqlValue::Bytes(hash.to_vec())
}

/// A nullable `bigint` parameter.
fn int_or_null(value: Option<i64>) -> SqlValue {
    value.map_or(SqlValue::Null, SqlValue::Int64)
}

/// A nullable `text` parameter.
fn text_or_null(value: Option<String>) -> SqlValue {
    value.map_or(SqlValue::Null, SqlValue::Text)
}

/// A version as a parameter (versions count saves and stay far below `i64::MAX`).
fn version_param(version: u64) -> SqlValue {
    SqlValue::Int64(i64::try_from(version).unwrap_or(i64::MAX))
}

/// The `expiry_mode` and `expiry_value` columns of an expiry mode.
fn expiry_columns(expiry: Option<&Expiry>) -> (SqlValue, SqlValue) {
    match expiry {
        None => (SqlValue::Null, SqlValue::Null),
        Some(Expiry::OnInactivity(seconds)) => (
            SqlValue::Text("on-inactivity".to_string()),
            SqlValue::Int64(*seconds),
        ),
        Some(Expiry::At(at)) => (SqlValue::Text("at".to_string()), SqlValue::Int64(*at)),
        Some(Expiry::OnSessionEnd) => {
            (SqlValue::Text("on-session-end".to_string()), SqlValue::Null)
        }
    }
}

/// The expiry mode stored in the `expiry_mode` and `expiry_value` columns.
fn expiry_from_columns(
    mode: Option<&str>,
    value: Option<i64>,
) -> Result<Option<Expiry>, StoreError> {
    match (mode, value) {
        (None, None) => Ok(None),
        (Some("on-inactivity"), Some(seconds)) => Ok(Some(Expiry::OnInactivity(seconds))),
        (Some("at"), Some(at)) => Ok(Some(Expiry::At(at))),
        (Some("on-session-end"), None) => Ok(Some(Expiry::OnSessionEnd)),
        (Some("on-inactivity" | "at" | "on-session-end") | None, _) => Err(unexpected(
            "columns expiry_mode and expiry_value do not agree".to_string(),
        )),
        (Some(_), _) => Err(unexpected(
            "column expiry_mode is not one of on-inactivity, at, on-session-end".to_string(),
        )),
    }
}

/// The longest label accepted, in bytes: a device name, not a second data store.
pub const MAX_LABEL_BYTES: usize = 256;

/// Refuses a label over [`MAX_LABEL_BYTES`] or with a NUL character (PostgreSQL `text` cannot hold it).
fn check_label(label: Option<&str>) -> Result<(), StoreError> {
    if let Some(len) = label.map(str::len).filter(|len| *len > MAX_LABEL_BYTES) {
        return Err(StoreError::InvalidData(format!(
            "the label is {len} bytes; the limit is {MAX_LABEL_BYTES}"
        )));
    }
    if label.is_some_and(|l| l.contains('\0')) {
        return Err(StoreError::InvalidData(
            "the label contains a NUL character; PostgreSQL cannot store NUL characters"
                .to_string(),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Loading

/// Loads the session with token `id` at `now`: `not-found` without a row, `expired` when it expired.
/// When its idle deadline is due to be extended, a second statement extends it.
pub fn load(config: &Config, id: String, now: i64) -> Result<Session, StoreError> {
    let hash = token::validated_hash(&id)?;
    let rows = run(LOAD, &[bytes(&hash)])?;
    let row = match rows.rows.len() {
        0 => return Err(StoreError::NotFound),
        1 => Row::new(&rows, 0)?,
        n => return Err(unexpected(format!("load returned {n} rows for one id"))),
    };
    let mut session = session_from_row(&row, id, &hash)?;
    if session::is_expired(session.expires_at, now) {
        return Err(StoreError::Expired);
    }
    if let Some(extended) = session::touch(
        session.expires_at,
        session.absolute_expires_at,
        session.expiry.as_ref(),
        config.idle_timeout,
        now,
    ) {
        let touched = run(
            TOUCH,
            &[
                bytes(&hash),
                SqlValue::Timestamp(extended),
                SqlValue::Timestamp(now),
                version_param(session.version),
            ],
        )?;
        apply_touch(&mut session, &touched)?;
    }
    Ok(session)
}

/// Takes the new deadline from the touch's result; no row means another request wrote the session
/// meanwhile, and the loaded copy stands.
fn apply_touch(session: &mut Session, rows: &RowSet) -> Result<(), StoreError> {
    match rows.rows.len() {
        0 => Ok(()),
        1 => {
            let row = Row::new(rows, 0)?;
            session.expires_at = row.timestamp("expires_at")?;
            session.updated_at = row.timestamp("updated_at")?;
            Ok(())
        }
        n => Err(unexpected(format!(
            "the idle extension returned {n} rows for one id"
        ))),
    }
}

/// The HTTP path: the session the `Cookie` header names, or a fresh unsaved one (drawn by `new_token`)
/// when the cookie is absent or stale; a stale cookie also gets its removal `Set-Cookie` value.
pub fn load_from_cookie(
    config: &Config,
    header: &str,
    now: i64,
    new_token: impl FnOnce() -> Result<String, StoreError>,
) -> Result<RequestSession, StoreError> {
    let state = match cookie::find_session_cookie(&config.cookie_name, header) {
        Found::Token(id) => match load(config, id, now) {
            Ok(session) => {
                return Ok(RequestSession {
                    session,
                    cookie: CookieState::Live,
                    removal_cookie: None,
                });
            }
            Err(StoreError::NotFound | StoreError::Expired) => CookieState::Stale,
            Err(e) => return Err(e),
        },
        Found::Malformed => CookieState::Stale,
        Found::Absent => CookieState::Absent,
    };
    let removal_cookie = (state == CookieState::Stale).then(|| cookie::removal_cookie(config));
    Ok(RequestSession {
        session: session::new_session(config, None, new_token, now)?,
        cookie: state,
        removal_cookie,
    })
}

// ---------------------------------------------------------------------------------------------------
// Writing

/// The end of a request: deletes, writes (with a token `new_token` draws when rotating, once every
/// check passed) and builds the `Set-Cookie` value.
pub fn commit(
    config: &Config,
    request: CommitRequest,
    now: i64,
    new_token: impl FnOnce() -> Result<String, StoreError>,
) -> Result<CommitOutcome, StoreError> {
    let delete = request
        .delete
        .as_deref()
        .map(token::validated_hash)
        .transpose()?;
    let plan = request
        .save
        .map(|save| plan_save(config, save, now))
        .transpose()?;
    let plan = match plan {
        Some(mut plan) => {
            if plan.rotate {
                plan.token = new_token()?;
                plan.hash = token::hash(&plan.token);
            }
            Some(plan)
        }
        None => None,
    };
    let deleted = match delete {
        Some(hash) => run(DELETE, &[bytes(&hash)])?.rows_affected > 0,
        None => false,
    };
    let session = plan.map(|plan| execute(plan, config, now)).transpose()?;
    let set_cookie = match &session {
        Some(written) => Some(cookie::set_cookie(config, written, now)?),
        None if delete.is_some() => Some(cookie::removal_cookie(config)),
        None => None,
    };
    Ok(CommitOutcome {
        session,
        deleted,
        set_cookie,
    })
}

/// A checked write, ready to send.
#[derive(Debug)]
struct Plan {
    /// The token the session is written under (replaced before sending when rotating).
    token: String,
    /// The SHA-256 of `token` (hashed once: the statement's key and the written session's handle).
    hash: [u8; 32],
    /// Whether to move the session to a fresh token.
    rotate: bool,
    /// The statement and its parameters.
    kind: PlanKind,
}

/// An insert or an update.
#[derive(Debug)]
enum PlanKind {
    /// A new session, inserted whole.
    Insert(InsertPlan),
    /// A saved session, updated by its changes.
    Update(UpdatePlan),
}

/// The values of an [`INSERT`].
#[derive(Debug)]
struct InsertPlan {
    data: String,
    user_id: Option<i64>,
    label: Option<String>,
    expiry: Option<Expiry>,
    created_at: i64,
    expires_at: i64,
    absolute_expires_at: i64,
}

/// The values of an [`UPDATE`].
#[derive(Debug, Default)]
struct UpdatePlan {
    old_hash: [u8; 32],
    cleared: bool,
    removed: Vec<String>,
    /// The keys set, as one compact JSON object.
    set: String,
    user: Option<Option<i64>>,
    label: Option<Option<String>>,
    /// The new expiry mode and the deadline it sets, when it changed.
    expiry: Option<(Option<Expiry>, i64)>,
    /// When the mode stays: the slid idle deadline, and the mode it was computed under.
    slide: Option<(i64, Option<Expiry>)>,
    /// `strict`: the version the session was loaded at.
    version: Option<u64>,
    /// `merge`: keys that must still hold these values (a JSON object).
    expect_values: Option<String>,
    /// `merge`: keys that must still be absent.
    expect_absent: Option<Vec<String>>,
    /// `merge`: the whole data as loaded.
    expect_data: Option<String>,
    /// `merge`: the user as loaded.
    expect_user: Option<Option<i64>>,
    /// `merge`: the expiry mode as loaded.
    expect_expiry: Option<Option<Expiry>>,
}

/// Checks a save request and plans its one statement. Nothing is drawn or sent here.
fn plan_save(config: &Config, save: SaveRequest, now: i64) -> Result<Plan, StoreError> {
    let SaveRequest {
        session: s,
        changes,
        expected,
        rotate,
    } = save;
    let old_hash = token::validated_hash(&s.id)?;
    let kind = if !s.is_saved {
        if let Some(expiry) = &s.expiry {
            session::check_expiry(expiry, config, now)?;
        }
        check_label(s.label.as_deref())?;
        let data = data::compact_object(&s.data, "the session data")?;
        data::check_size(&data, config.max_data_bytes)?;
        // A session cannot have been created in the future: a later `created-at` would stretch its
        // absolute deadline past `max-age` from now.
        let created_at = s.created_at.min(now);
        let absolute = s
            .absolute_expires_at
            .min(session::absolute_deadline(created_at, config.max_age));
        let expires_at = session::deadline(absolute, s.expiry.as_ref(), config.idle_timeout, now);
        if session::is_expired(expires_at, now) {
            return Err(StoreError::Expired);
        }
        PlanKind::Insert(InsertPlan {
            data,
            user_id: s.user_id,
            label: s.label,
            expiry: s.expiry,
            created_at,
            expires_at,
            absolute_expires_at: absolute,
        })
    } else {
        let set = data::object(
            changes.set.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            "a session data value",
        )?;
        data::check_size(&set, config.max_data_bytes)?;
        for key in &changes.removed {
            data::check_key(key)?;
        }
        if let Some(label) = &changes.label {
            check_label(label.as_deref())?;
        }
        let expiry = match changes.expiry {
            Some(new) => {
                if let Some(expiry) = &new {
                    session::check_expiry(expiry, config, now)?;
                }
                let deadline = session::deadline(
                    s.absolute_expires_at,
                    new.as_ref(),
                    config.idle_timeout,
                    now,
                );
                Some((new, deadline))
            }
            None => None,
        };
        let slide = match expiry {
            Some(_) => None,
            None => session::slide(s.expiry.as_ref(), config.idle_timeout, now)
                .map(|deadline| (deadline, s.expiry)),
        };
        let mut plan = UpdatePlan {
            old_hash,
            cleared: changes.cleared,
            removed: changes.removed,
            set,
            user: changes.user,
            label: changes.label,
            expiry,
            slide,
            ..UpdatePlan::default()
        };
        match config.concurrency {
            Concurrency::Merge => {
                let mut absent = Vec::new();
                let mut present = Vec::new();
                for (key, value) in &expected.keys {
                    match value {
                        Some(value) => present.push((key.as_str(), value.as_str())),
                        None => {
                            data::check_key(key)?;
                            absent.push(key.clone());
                        }
                    }
                }
                if !present.is_empty() {
                    plan.expect_values = Some(data::object(present, "an expected value")?);
                }
                if !absent.is_empty() {
                    plan.expect_absent = Some(absent);
                }
                plan.expect_data = expected
                    .all_data
                    .as_deref()
                    .map(|all| data::compact_object(all, "the expected data"))
                    .transpose()?;
                plan.expect_user = expected.user;
                plan.expect_expiry = expected.expiry;
            }
            Concurrency::Strict => plan.version = Some(s.version),
            Concurrency::LastWriteWins => {}
        }
        PlanKind::Update(plan)
    };
    Ok(Plan {
        token: s.id,
        hash: old_hash,
        rotate,
        kind,
    })
}

impl InsertPlan {
    /// The parameters of [`INSERT`] for id hash `hash` at `now`.
    fn params(&self, hash: &[u8; 32], now: i64, limit: u32) -> Vec<SqlValue> {
        let (mode, value) = expiry_columns(self.expiry.as_ref());
        vec![
            bytes(hash),
            SqlValue::Json(self.data.clone()),
            int_or_null(self.user_id),
            text_or_null(self.label.clone()),
            mode,
            value,
            SqlValue::Timestamp(self.created_at),
            SqlValue::Timestamp(self.expires_at),
            SqlValue::Timestamp(self.absolute_expires_at),
            SqlValue::Timestamp(now),
            SqlValue::Int64(limit.into()),
        ]
    }
}

impl UpdatePlan {
    /// The parameters of [`UPDATE`] moving the session to id hash `hash` at `now`:
    ///
    /// | | |
    /// | --- | --- |
    /// | `$1` `$2` `$3` | old id hash, new id hash, now |
    /// | `$4` `$5` `$6` | cleared, keys removed (`text[]`), keys set (a `jsonb` object) |
    /// | `$7` `$8` | user changed, new user |
    /// | `$9` `$10` | label changed, new label |
    /// | `$11` .. `$14` | expiry changed, new mode, new value, the deadline it sets |
    /// | `$15` .. `$17` | slid idle deadline (null: none) and the mode, value it assumes stored |
    /// | `$18` | `strict`: the version loaded (null otherwise) |
    /// | `$19` .. `$21` | `merge`: keys with their values, keys absent, whole data (null: no check) |
    /// | `$22` `$23` | `merge`: check the user, the user loaded |
    /// | `$24` .. `$26` | `merge`: check the expiry, the mode and value loaded |
    /// | `$27` | the data limit in bytes of JSONB text |
    fn params(&self, hash: &[u8; 32], now: i64, limit: u32) -> Vec<SqlValue> {
        let (expiry_changed, new_mode, new_value, new_deadline) = match &self.expiry {
            Some((expiry, deadline)) => {
                let (mode, value) = expiry_columns(expiry.as_ref());
                (true, mode, value, SqlValue::Timestamp(*deadline))
            }
            None => (false, SqlValue::Null, SqlValue::Null, SqlValue::Null),
        };
        let (slide, slide_mode, slide_value) = match &self.slide {
            Some((deadline, expiry)) => {
                let (mode, value) = expiry_columns(expiry.as_ref());
                (SqlValue::Timestamp(*deadline), mode, value)
            }
            None => (SqlValue::Null, SqlValue::Null, SqlValue::Null),
        };
        let (expected_mode, expected_value) = match &self.expect_expiry {
            Some(expiry) => expiry_columns(expiry.as_ref()),
            None => (SqlValue::Null, SqlValue::Null),
        };
        vec![
            bytes(&self.old_hash),
            bytes(hash),
            SqlValue::Timestamp(now),
            SqlValue::Boolean(self.cleared),
            SqlValue::TextArray(self.removed.clone()),
            SqlValue::Json(self.set.clone()),
            SqlValue::Boolean(self.user.is_some()),
            int_or_null(self.user.flatten()),
            SqlValue::Boolean(self.label.is_some()),
            text_or_null(self.label.clone().flatten()),
            SqlValue::Boolean(expiry_changed),
            new_mode,
            new_value,
            new_deadline,
            slide,
            slide_mode,
            slide_value,
            self.version.map_or(SqlValue::Null, version_param),
            self.expect_values
                .clone()
                .map_or(SqlValue::Null, SqlValue::Json),
            self.expect_absent
                .clone()
                .map_or(SqlValue::Null, SqlValue::TextArray),
            self.expect_data
                .clone()
                .map_or(SqlValue::Null, SqlValue::Json),
            SqlValue::Boolean(self.expect_user.is_some()),
            int_or_null(self.expect_user.flatten()),
            SqlValue::Boolean(self.expect_expiry.is_some()),
            expected_mode,
            expected_value,
            SqlValue::Int64(limit.into()),
        ]
    }

    /// The parameters of [`WHY_NOT_UPDATED`].
    fn why_params(&self) -> Vec<SqlValue> {
        vec![
            bytes(&self.old_hash),
            SqlValue::Boolean(self.cleared),
            SqlValue::TextArray(self.removed.clone()),
            SqlValue::Json(self.set.clone()),
        ]
    }
}

/// Sends a planned write: one statement, and one more only when it wrote nothing, to say why.
fn execute(plan: Plan, config: &Config, now: i64) -> Result<Session, StoreError> {
    let hash = plan.hash;
    let limit = config.max_data_bytes;
    let rows = match &plan.kind {
        PlanKind::Insert(insert) => run(INSERT, &insert.params(&hash, now, limit))?,
        PlanKind::Update(update) => run(UPDATE, &update.params(&hash, now, limit))?,
    };
    if rows.rows.is_empty() {
        return Err(match &plan.kind {
            PlanKind::Insert(insert) => why_not_inserted(
                &run(
                    WHY_NOT_INSERTED,
                    &[bytes(&hash), SqlValue::Json(insert.data.clone())],
                )?,
                limit,
            )?,
            PlanKind::Update(update) => {
                why_not_updated(&run(WHY_NOT_UPDATED, &update.why_params())?, now, limit)?
            }
        });
    }
    written(&rows, plan.token, &hash)
}

/// The session a write's `RETURNING` row describes, under `token`.
fn written(rows: &RowSet, token: String, hash: &[u8; 32]) -> Result<Session, StoreError> {
    if rows.rows.len() != 1 {
        return Err(unexpected(format!(
            "the write returned {} rows, expected 1",
            rows.rows.len()
        )));
    }
    session_from_row(&Row::new(rows, 0)?, token, hash)
}

/// What [`WHY_NOT_INSERTED`] says: the token is taken (`conflict`), else the data is over the limit.
fn why_not_inserted(rows: &RowSet, limit: u32) -> Result<StoreError, StoreError> {
    let row = single(rows, "the insert check")?;
    if row.boolean("taken")? {
        return Ok(StoreError::Conflict);
    }
    let size = row.count("size")?;
    Ok(if size > u64::from(limit) {
        data::too_large(size, limit)
    } else {
        // Taken when the insert ran, and deleted since.
        StoreError::Conflict
    })
}

/// What [`WHY_NOT_UPDATED`] says: gone (`not-found`), expired at `now`, merged data over the limit
/// (`invalid-data`), else a concurrent change (`conflict`).
fn why_not_updated(rows: &RowSet, now: i64, limit: u32) -> Result<StoreError, StoreError> {
    if rows.rows.is_empty() {
        return Ok(StoreError::NotFound);
    }
    let row = single(rows, "the update check")?;
    row.version("version")?;
    if session::is_expired(row.timestamp("expires_at")?, now) {
        return Ok(StoreError::Expired);
    }
    let size = row.count("merged_size")?;
    Ok(if size > u64::from(limit) {
        data::too_large(size, limit)
    } else {
        StoreError::Conflict
    })
}

// ---------------------------------------------------------------------------------------------------
// Deleting, listing, counting

/// Deletes the session with token `id`; returns whether a row was removed.
pub fn delete(id: &str) -> Result<bool, StoreError> {
    let hash = token::validated_hash(id)?;
    Ok(run(DELETE, &[bytes(&hash)])?.rows_affected > 0)
}

/// Deletes user `user_id`'s session with handle `handle`; returns whether a row was removed.
pub fn revoke(user_id: i64, handle: &str) -> Result<bool, StoreError> {
    let hash = token::decode_handle(handle)?;
    Ok(run(REVOKE, &[bytes(&hash), SqlValue::Int64(user_id)])?.rows_affected > 0)
}

/// Checks a cleanup batch size: `1..=100000`.
fn check_cleanup_limit(limit: u32) -> Result<(), StoreError> {
    if limit == 0 {
        return Err(StoreError::InvalidData(
            "a cleanup batch must remove at least one row".to_string(),
        ));
    }
    if limit > MAX_CLEANUP_BATCH {
        return Err(StoreError::InvalidData(format!(
            "a cleanup batch of {limit} rows is over the limit of {MAX_CLEANUP_BATCH}"
        )));
    }
    Ok(())
}

/// Deletes at most `limit` sessions that expired by `cutoff`, oldest first, in one statement.
pub fn cleanup_batch(cutoff: i64, limit: u32) -> Result<u64, StoreError> {
    check_cleanup_limit(limit)?;
    let rows = run(
        CLEANUP_BATCH,
        &[SqlValue::Timestamp(cutoff), SqlValue::Int64(limit.into())],
    )?;
    Ok(rows.rows_affected)
}

/// Counts the sessions that expired by `cutoff`.
pub fn count_expired(cutoff: i64) -> Result<u64, StoreError> {
    let rows = run(COUNT_EXPIRED, &[SqlValue::Timestamp(cutoff)])?;
    single(&rows, "count-expired")?.count("expired")
}

/// Lists the user's sessions unexpired at `now`, newest first.
pub fn user_sessions(user_id: i64, now: i64) -> Result<Vec<UserSession>, StoreError> {
    let rows = run(
        USER_SESSIONS,
        &[SqlValue::Int64(user_id), SqlValue::Timestamp(now)],
    )?;
    user_sessions_from_rows(&rows, user_id)
}

/// Decodes [`USER_SESSIONS`] rows.
fn user_sessions_from_rows(rows: &RowSet, user_id: i64) -> Result<Vec<UserSession>, StoreError> {
    (0..rows.rows.len())
        .map(|i| {
            let row = Row::new(rows, i)?;
            Ok(UserSession {
                handle: token::handle_from_hash(&row.hash("id_hash")?),
                data: row.json("data")?,
                user_id,
                label: row.optional_text("label")?,
                created_at: row.timestamp("created_at")?,
                expires_at: row.timestamp("expires_at")?,
                updated_at: row.timestamp("updated_at")?,
            })
        })
        .collect()
}

/// Deletes all of the user's sessions; returns how many were removed.
pub fn delete_user_sessions(user_id: i64) -> Result<u64, StoreError> {
    Ok(run(DELETE_USER_SESSIONS, &[SqlValue::Int64(user_id)])?.rows_affected)
}

/// Deletes all of the user's sessions but the one with token `keep_id`; returns how many were removed.
pub fn delete_user_sessions_except(user_id: i64, keep_id: &str) -> Result<u64, StoreError> {
    let keep = token::validated_hash(keep_id)?;
    let rows = run(
        DELETE_USER_SESSIONS_EXCEPT,
        &[SqlValue::Int64(user_id), bytes(&keep)],
    )?;
    Ok(rows.rows_affected)
}

// ---------------------------------------------------------------------------------------------------
// Decoding

/// The session a row of the session columns describes, under token `id` whose SHA-256 is `hash` (the
/// caller hashed it already: one SHA-256 per operation). The data is the database's JSONB text, passed
/// through unparsed.
fn session_from_row(row: &Row<'_>, id: String, hash: &[u8; 32]) -> Result<Session, StoreError> {
    let expires_at = row.timestamp("expires_at")?;
    let expiry = expiry_from_columns(
        row.optional_text("expiry_mode")?.as_deref(),
        row.optional_int("expiry_value")?,
    )?;
    Ok(Session {
        handle: token::handle_from_hash(hash),
        id,
        data: row.json("data")?,
        user_id: row.optional_int("user_id")?,
        label: row.optional_text("label")?,
        expiry,
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

/// The only row of `rows` (`what` names the statement in the error).
fn single<'a>(rows: &'a RowSet, what: &str) -> Result<Row<'a>, StoreError> {
    if rows.rows.len() != 1 {
        return Err(unexpected(format!(
            "{what} returned {} rows, expected 1",
            rows.rows.len()
        )));
    }
    Row::new(rows, 0)
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

    /// A non-negative `int64` column holding a count or a size.
    fn count(&self, name: &str) -> Result<u64, StoreError> {
        self.version(name)
    }

    /// A nullable `int64` column.
    fn optional_int(&self, name: &str) -> Result<Option<i64>, StoreError> {
        match self.get(name)? {
            SqlValue::Int64(v) => Ok(Some(*v)),
            SqlValue::Null => Ok(None),
            other => Err(wrong(name, "int64 or null", other)),
        }
    }

    /// A nullable `text` column.
    fn optional_text(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.get(name)? {
            SqlValue::Text(t) => Ok(Some(t.clone())),
            SqlValue::Null => Ok(None),
            other => Err(wrong(name, "text or null", other)),
        }
    }

    /// A `boolean` column.
    fn boolean(&self, name: &str) -> Result<bool, StoreError> {
        match self.get(name)? {
            SqlValue::Boolean(b) => Ok(*b),
            other => Err(wrong(name, "boolean", other)),
        }
    }

    /// A `json` column, as its text.
    fn json(&self, name: &str) -> Result<String, StoreError> {
        match self.get(name)? {
            SqlValue::Json(text) => Ok(text.clone()),
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

/// The kind of a value, for messages (never its content).
fn kind(value: &SqlValue) -> &'static str {
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

/// The error for a column holding the wrong kind of value (named by variant, never by content).
fn wrong(name: &str, expected: &str, got: &SqlValue) -> StoreError {
    unexpected(format!(
        "column {name} is {}, expected {expected}",
        kind(got)
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::bindings::exports::wasm_sessions::store::store::{Changes, Expected};
    use crate::config::default_config;
    use crate::session::MICROS_PER_SECOND as S;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    const OTHER: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    const NOW: i64 = 1_700_000_000 * S;
    /// This file up to its tests.
    fn source() -> &'static str {
        let text = include_str!("store.rs");
        &text[..text.find("#[cfg(test)]").unwrap()]
    }

    // -- the statements -------------------------------------------------------------------------------

    /// The source of the `statements` module.
    fn statements_source() -> &'static str {
        let start = source().find("pub mod statements {").unwrap();
        let end = source()[start..].find("\n}\n").unwrap();
        &source()[start..start + end]
    }

    /// The identifier at the start of `text`.
    fn ident(text: &str) -> &str {
        let end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(text.len());
        &text[..end]
    }

    /// The names of the `pub const NAME: Statement` items.
    fn defined() -> BTreeSet<&'static str> {
        statements_source()
            .match_indices("pub const ")
            .map(|(i, m)| &statements_source()[i + m.len()..])
            .filter(|rest| rest[ident(rest).len()..].starts_with(": Statement ="))
            .map(ident)
            .collect()
    }

    #[test]
    fn statements_lists_every_statement_once() {
        let defined = defined();
        let source = statements_source();
        let list_start = source.find("pub const STATEMENTS: [Statement; ").unwrap();
        let list = &source[list_start..];
        let list = &list[list.find("= [").unwrap() + 3..list.find("];").unwrap()];
        let listed: BTreeSet<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        assert_eq!(listed, defined);
        assert_eq!(STATEMENTS.len(), defined.len());
        let texts: BTreeSet<&str> = STATEMENTS.iter().map(|s| s.text()).collect();
        assert_eq!(texts.len(), STATEMENTS.len(), "two statements share a text");
        assert_eq!(
            statements(),
            STATEMENTS
                .iter()
                .map(|s| s.text().to_string())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn statements_are_made_only_as_the_declared_constants() {
        let defined = defined();
        // The field is private to the module, so only it can make one: once per constant.
        let constructions =
            source().matches("Statement(").count() - source().matches("struct Statement(").count();
        assert_eq!(constructions, defined.len());
        for name in defined {
            let head = format!("pub const {name}: Statement =");
            let at = statements_source().find(&head).unwrap() + head.len();
            assert!(
                statements_source()[at..]
                    .trim_start()
                    .starts_with("Statement("),
                "{name}"
            );
        }
    }

    #[test]
    fn run_is_only_called_with_a_declared_statement() {
        let defined = defined();
        let source = source();
        let calls: Vec<&str> = source
            .match_indices("run(")
            .filter(|(i, _)| {
                let before = &source[..*i];
                !before.ends_with("fn ")
                    && !before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            })
            .map(|(i, m)| ident(source[i + m.len()..].trim_start()))
            .collect();
        // load, touch, delete in commit, insert, update, the two checks, delete, revoke, cleanup,
        // count, list, and the two user deletes.
        assert!(calls.len() >= 14, "{calls:?}");
        for name in calls {
            assert!(
                defined.contains(name),
                "run({name}, ..) sends an undeclared statement"
            );
        }
    }

    /// The cast of each parameter `$n` of `statement`, checking that every `$n` has one, always the same.
    fn casts(statement: &str) -> BTreeMap<usize, String> {
        let mut casts: BTreeMap<usize, String> = BTreeMap::new();
        for (i, _) in statement.match_indices('$') {
            let rest = &statement[i + 1..];
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let n: usize = rest[..digits].parse().expect("a placeholder number");
            let rest = &rest[digits..];
            let cast = rest
                .strip_prefix("::")
                .unwrap_or_else(|| panic!("${n} has no cast in {statement}"));
            let end = cast
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '[' || c == ']'))
                .unwrap_or(cast.len());
            let cast = cast[..end].to_string();
            if let Some(seen) = casts.insert(n, cast.clone()) {
                assert_eq!(seen, cast, "${n} has two casts in {statement}");
            }
        }
        if let Some((&max, _)) = casts.last_key_value() {
            assert_eq!(
                casts.len(),
                max,
                "placeholders skip a number in {statement}"
            );
        }
        casts
    }

    #[test]
    fn every_statement_is_schema_qualified_and_casts_every_parameter() {
        for statement in STATEMENTS {
            let text = statement.text();
            casts(text);
            assert!(!text.contains(';'), "{text}");
            assert!(!text.contains("  "), "{text}");
            for (i, _) in text.match_indices("sessions") {
                assert!(
                    text[..i].ends_with("wasm_sessions.") || text[..i].ends_with("wasm_"),
                    "an unqualified table name in {text}"
                );
            }
            assert!(text.contains("wasm_sessions.sessions"), "{text}");
        }
    }

    /// Checks that `params` fit `statement`: one per placeholder, each of the kind its cast names.
    fn check_params(statement: Statement, params: &[SqlValue]) {
        let casts = casts(statement.text());
        assert_eq!(params.len(), casts.len(), "{}", statement.text());
        for (n, cast) in casts {
            let value = &params[n - 1];
            let fits = matches!(
                (cast.as_str(), value),
                (_, SqlValue::Null)
                    | ("bytea", SqlValue::Bytes(_))
                    | ("jsonb", SqlValue::Json(_))
                    | ("bigint", SqlValue::Int64(_))
                    | ("timestamptz", SqlValue::Timestamp(_))
                    | ("text", SqlValue::Text(_))
                    | ("text[]", SqlValue::TextArray(_))
                    | ("boolean", SqlValue::Boolean(_))
            );
            assert!(fits, "${n} is {cast} but gets {}", kind(value));
        }
    }

    // -- planning writes --------------------------------------------------------------------------------

    fn session(saved: bool) -> Session {
        Session {
            id: TOKEN.to_string(),
            handle: token::handle(TOKEN),
            data: "{}".to_string(),
            user_id: None,
            label: None,
            expiry: None,
            created_at: NOW - 10 * S,
            expires_at: NOW - 10 * S + 86_400 * S,
            absolute_expires_at: NOW - 10 * S + 86_400 * S,
            updated_at: NOW - 10 * S,
            version: u64::from(saved) * 3,
            is_saved: saved,
        }
    }

    fn no_changes() -> Changes {
        Changes {
            set: Vec::new(),
            removed: Vec::new(),
            cleared: false,
            user: None,
            label: None,
            expiry: None,
        }
    }

    fn nothing_expected() -> Expected {
        Expected {
            keys: Vec::new(),
            all_data: None,
            user: None,
            expiry: None,
        }
    }

    fn save(session: Session, changes: Changes, expected: Expected) -> SaveRequest {
        SaveRequest {
            session,
            changes,
            expected,
            rotate: false,
        }
    }

    fn invalid_data(result: Result<Plan, StoreError>) -> String {
        match result {
            Err(StoreError::InvalidData(m)) => m,
            other => panic!("expected invalid-data, got {other:?}"),
        }
    }

    fn insert_plan(plan: Plan) -> InsertPlan {
        match plan.kind {
            PlanKind::Insert(insert) => insert,
            PlanKind::Update(_) => panic!("an update"),
        }
    }

    fn update_plan(plan: Plan) -> UpdatePlan {
        match plan.kind {
            PlanKind::Update(update) => update,
            PlanKind::Insert(_) => panic!("an insert"),
        }
    }

    #[test]
    fn a_created_at_in_the_future_cannot_stretch_the_lifetime_and_labels_are_bounded() {
        let c = default_config();
        let mut s = session(false);
        s.created_at = NOW + 365 * 86_400 * S;
        s.absolute_expires_at = NOW + 366 * 86_400 * S;
        let insert =
            insert_plan(plan_save(&c, save(s, no_changes(), nothing_expected()), NOW).unwrap());
        assert_eq!(insert.created_at, NOW);
        assert_eq!(insert.absolute_expires_at, NOW + c.max_age * S);

        let mut s = session(false);
        s.label = Some("x".repeat(MAX_LABEL_BYTES));
        assert!(plan_save(&c, save(s.clone(), no_changes(), nothing_expected()), NOW).is_ok());
        s.label = Some("x".repeat(MAX_LABEL_BYTES + 1));
        match plan_save(&c, save(s, no_changes(), nothing_expected()), NOW) {
            Err(StoreError::InvalidData(m)) => assert!(m.contains("label"), "{m}"),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn a_new_session_is_inserted_whole() {
        let c = default_config();
        let mut s = session(false);
        s.data = "{ \"a\" : [1, 2], \"b\": {\"c\": null} }".to_string();
        s.user_id = Some(7);
        s.label = Some("laptop".to_string());
        s.expiry = Some(Expiry::OnInactivity(60));
        // Changes and expectations do not matter for an insert.
        let mut changes = no_changes();
        changes.removed = vec!["x\0".to_string()];
        let plan = plan_save(&c, save(s, changes, nothing_expected()), NOW).unwrap();
        assert_eq!(plan.token, TOKEN);
        assert_eq!(plan.hash, token::hash(TOKEN));
        let insert = insert_plan(plan);
        assert_eq!(insert.data, "{\"a\":[1,2],\"b\":{\"c\":null}}");
        assert_eq!(insert.created_at, NOW - 10 * S);
        assert_eq!(insert.absolute_expires_at, NOW - 10 * S + 86_400 * S);
        assert_eq!(insert.expires_at, NOW + 60 * S);
        let params = insert.params(&token::hash(OTHER), NOW, c.max_data_bytes);
        check_params(INSERT, &params);
        assert!(matches!(&params[0], SqlValue::Bytes(b) if b[..] == token::hash(OTHER)));
        assert!(matches!(&params[4], SqlValue::Text(m) if m == "on-inactivity"));
        assert!(matches!(params[5], SqlValue::Int64(60)));
        assert!(matches!(params[9], SqlValue::Timestamp(NOW)));
        assert!(matches!(params[10], SqlValue::Int64(1_048_576)));
        check_params(
            WHY_NOT_INSERTED,
            &[
                bytes(&token::hash(TOKEN)),
                SqlValue::Json(insert.data.clone()),
            ],
        );
    }

    #[test]
    fn an_insert_is_capped_by_max_age_and_checked() {
        let mut c = default_config();
        c.max_age = 100;
        // The absolute deadline the session claims is capped by the configuration.
        let insert = insert_plan(
            plan_save(
                &c,
                save(session(false), no_changes(), nothing_expected()),
                NOW,
            )
            .unwrap(),
        );
        assert_eq!(insert.absolute_expires_at, NOW + 90 * S);
        assert_eq!(insert.expires_at, NOW + 90 * S);
        // Past its deadline: expired, nothing sent.
        assert!(matches!(
            plan_save(
                &c,
                save(session(false), no_changes(), nothing_expected()),
                NOW + 90 * S
            ),
            Err(StoreError::Expired)
        ));
        let mut s = session(false);
        s.expiry = Some(Expiry::At(NOW));
        let m = invalid_data(plan_save(
            &c,
            save(s, no_changes(), nothing_expected()),
            NOW,
        ));
        assert!(m.contains("future"), "{m}");
        for (data, rule) in [
            ("[]", "the session data must be a JSON object"),
            (
                "{\"k\":\"s3cret\\u0000\"}",
                "the session data contains the escape \\u0000",
            ),
            ("{\"k\": s3cret}", "the session data is not valid JSON"),
        ] {
            let mut s = session(false);
            s.data = data.to_string();
            let m = invalid_data(plan_save(
                &c,
                save(s, no_changes(), nothing_expected()),
                NOW,
            ));
            assert!(m.starts_with(rule), "{m}");
            assert!(!m.contains("s3cret"), "{m}");
        }
        let mut s = session(false);
        s.label = Some("a\0b".to_string());
        assert!(
            invalid_data(plan_save(
                &c,
                save(s, no_changes(), nothing_expected()),
                NOW
            ))
            .contains("label")
        );
        c.max_data_bytes = 10;
        let mut s = session(false);
        s.data = "{\"k\": \"0123456\"}".to_string();
        assert_eq!(
            invalid_data(plan_save(
                &c,
                save(s, no_changes(), nothing_expected()),
                NOW
            )),
            "session data is 15 bytes of JSON; the limit is 10"
        );
    }

    #[test]
    fn an_update_applies_only_the_changes() {
        let mut c = default_config();
        c.concurrency = Concurrency::LastWriteWins;
        let changes = Changes {
            set: vec![
                ("b".to_string(), " [1, 2] ".to_string()),
                ("a\"".to_string(), "\"x\"".to_string()),
            ],
            removed: vec!["gone".to_string()],
            cleared: true,
            user: Some(Some(42)),
            label: Some(None),
            expiry: None,
        };
        let plan = plan_save(&c, save(session(true), changes, nothing_expected()), NOW).unwrap();
        let update = update_plan(plan);
        assert_eq!(update.set, "{\"a\\\"\":\"x\",\"b\":[1,2]}");
        let params = update.params(&token::hash(OTHER), NOW, 1000);
        check_params(UPDATE, &params);
        check_params(WHY_NOT_UPDATED, &update.why_params());
        assert!(matches!(&params[0], SqlValue::Bytes(b) if b[..] == token::hash(TOKEN)));
        assert!(matches!(&params[1], SqlValue::Bytes(b) if b[..] == token::hash(OTHER)));
        assert!(matches!(params[3], SqlValue::Boolean(true)));
        assert!(matches!(&params[4], SqlValue::TextArray(k) if k == &["gone".to_string()]));
        assert!(matches!(
            (&params[6], &params[7]),
            (SqlValue::Boolean(true), SqlValue::Int64(42))
        ));
        assert!(matches!(
            (&params[8], &params[9]),
            (SqlValue::Boolean(true), SqlValue::Null)
        ));
        // Expiry kept, no idle timeout: no slide.
        assert!(matches!(params[10], SqlValue::Boolean(false)));
        assert!(matches!(params[14], SqlValue::Null));
        // Last write wins: no condition at all.
        assert!(params[17..21].iter().all(|p| matches!(p, SqlValue::Null)));
        assert!(matches!(params[21], SqlValue::Boolean(false)));
        assert!(matches!(params[23], SqlValue::Boolean(false)));
        assert!(matches!(params[26], SqlValue::Int64(1000)));
    }

    #[test]
    fn an_update_moves_the_deadline_by_the_expiry() {
        let mut c = default_config();
        c.idle_timeout = Some(600);
        // Mode kept: the idle deadline slides, assuming the mode the copy has.
        let mut s = session(true);
        s.expiry = Some(Expiry::OnInactivity(60));
        let update =
            update_plan(plan_save(&c, save(s, no_changes(), nothing_expected()), NOW).unwrap());
        assert!(update.expiry.is_none());
        let params = update.params(&token::hash(TOKEN), NOW, 1000);
        check_params(UPDATE, &params);
        assert!(matches!(params[14], SqlValue::Timestamp(t) if t == NOW + 60 * S));
        assert!(matches!(&params[15], SqlValue::Text(m) if m == "on-inactivity"));
        assert!(matches!(params[16], SqlValue::Int64(60)));
        // Mode changed: the deadline it sets, no slide.
        let mut changes = no_changes();
        changes.expiry = Some(Some(Expiry::At(NOW + 30 * S)));
        let update = update_plan(
            plan_save(&c, save(session(true), changes, nothing_expected()), NOW).unwrap(),
        );
        let params = update.params(&token::hash(TOKEN), NOW, 1000);
        check_params(UPDATE, &params);
        assert!(matches!(params[10], SqlValue::Boolean(true)));
        assert!(matches!(&params[11], SqlValue::Text(m) if m == "at"));
        assert!(matches!(params[12], SqlValue::Int64(t) if t == NOW + 30 * S));
        assert!(matches!(params[13], SqlValue::Timestamp(t) if t == NOW + 30 * S));
        assert!(matches!(params[14], SqlValue::Null));
        // Back to the configuration's policy.
        let mut changes = no_changes();
        changes.expiry = Some(None);
        let update = update_plan(
            plan_save(&c, save(session(true), changes, nothing_expected()), NOW).unwrap(),
        );
        let params = update.params(&token::hash(TOKEN), NOW, 1000);
        assert!(matches!(
            (&params[11], &params[12]),
            (SqlValue::Null, SqlValue::Null)
        ));
        assert!(matches!(params[13], SqlValue::Timestamp(t) if t == NOW + 600 * S));
        // A new mode is checked.
        for bad in [
            Expiry::At(NOW),
            Expiry::OnInactivity(0),
            Expiry::OnInactivity(86_401),
        ] {
            let mut changes = no_changes();
            changes.expiry = Some(Some(bad));
            invalid_data(plan_save(
                &c,
                save(session(true), changes, nothing_expected()),
                NOW,
            ));
        }
    }

    #[test]
    fn merge_checks_what_the_request_saw() {
        let c = default_config();
        let expected = Expected {
            keys: vec![
                ("seen".to_string(), Some(" {\"n\": 1} ".to_string())),
                ("missing".to_string(), None),
            ],
            all_data: Some("{ \"seen\": {\"n\": 1} }".to_string()),
            user: Some(None),
            expiry: Some(Some(Expiry::OnSessionEnd)),
        };
        let update =
            update_plan(plan_save(&c, save(session(true), no_changes(), expected), NOW).unwrap());
        let params = update.params(&token::hash(TOKEN), NOW, 1000);
        check_params(UPDATE, &params);
        assert!(matches!(params[17], SqlValue::Null));
        assert!(matches!(&params[18], SqlValue::Json(j) if j == "{\"seen\":{\"n\":1}}"));
        assert!(matches!(&params[19], SqlValue::TextArray(k) if k == &["missing".to_string()]));
        assert!(matches!(&params[20], SqlValue::Json(j) if j == "{\"seen\":{\"n\":1}}"));
        assert!(matches!(
            (&params[21], &params[22]),
            (SqlValue::Boolean(true), SqlValue::Null)
        ));
        assert!(matches!(params[23], SqlValue::Boolean(true)));
        assert!(
            matches!((&params[24], &params[25]), (SqlValue::Text(m), SqlValue::Null) if m == "on-session-end")
        );
        // Nothing seen: no condition.
        let update = update_plan(
            plan_save(
                &c,
                save(session(true), no_changes(), nothing_expected()),
                NOW,
            )
            .unwrap(),
        );
        let params = update.params(&token::hash(TOKEN), NOW, 1000);
        assert!(params[17..21].iter().all(|p| matches!(p, SqlValue::Null)));
        // Expected values are checked like written ones.
        let expected = Expected {
            keys: vec![("k".to_string(), Some("\"\\u0000\"".to_string()))],
            ..nothing_expected()
        };
        invalid_data(plan_save(
            &c,
            save(session(true), no_changes(), expected),
            NOW,
        ));
        let expected = Expected {
            all_data: Some("[]".to_string()),
            ..nothing_expected()
        };
        invalid_data(plan_save(
            &c,
            save(session(true), no_changes(), expected),
            NOW,
        ));
    }

    #[test]
    fn strict_checks_the_version_alone() {
        let mut c = default_config();
        c.concurrency = Concurrency::Strict;
        let expected = Expected {
            keys: vec![("k".to_string(), None)],
            ..nothing_expected()
        };
        let update =
            update_plan(plan_save(&c, save(session(true), no_changes(), expected), NOW).unwrap());
        let params = update.params(&token::hash(TOKEN), NOW, 1000);
        assert!(matches!(params[17], SqlValue::Int64(3)));
        assert!(params[18..21].iter().all(|p| matches!(p, SqlValue::Null)));
        assert!(matches!(params[21], SqlValue::Boolean(false)));
    }

    #[test]
    fn update_changes_are_checked_without_echo() {
        let c = default_config();
        let mut changes = no_changes();
        changes.set = vec![("k".to_string(), "s3cret".to_string())];
        let m = invalid_data(plan_save(
            &c,
            save(session(true), changes, nothing_expected()),
            NOW,
        ));
        assert!(
            m.starts_with("a session data value is not valid JSON"),
            "{m}"
        );
        assert!(!m.contains("s3cret"));
        let mut changes = no_changes();
        changes.set = vec![("s3cret\0".to_string(), "1".to_string())];
        let m = invalid_data(plan_save(
            &c,
            save(session(true), changes, nothing_expected()),
            NOW,
        ));
        assert!(!m.contains("s3cret") && m.contains("NUL"), "{m}");
        let mut changes = no_changes();
        changes.removed = vec!["a\0".to_string()];
        invalid_data(plan_save(
            &c,
            save(session(true), changes, nothing_expected()),
            NOW,
        ));
        let mut changes = no_changes();
        changes.label = Some(Some("\0".to_string()));
        invalid_data(plan_save(
            &c,
            save(session(true), changes, nothing_expected()),
            NOW,
        ));
        // What is set alone is already over the limit: refused before any SQL.
        let mut c = default_config();
        c.max_data_bytes = 8;
        let mut changes = no_changes();
        changes.set = vec![("k".to_string(), "\"abcd\"".to_string())];
        assert_eq!(
            invalid_data(plan_save(
                &c,
                save(session(true), changes, nothing_expected()),
                NOW
            )),
            "session data is 12 bytes of JSON; the limit is 8"
        );
        // The token is checked first.
        let mut s = session(true);
        s.id = "nope".to_string();
        assert!(matches!(
            plan_save(&c, save(s, no_changes(), nothing_expected()), NOW),
            Err(StoreError::InvalidId(_))
        ));
    }

    #[test]
    fn commit_checks_everything_before_drawing_a_token_or_sending_sql() {
        let c = default_config();
        let never = || -> Result<String, StoreError> { panic!("drew a token") };
        let mut changes = no_changes();
        changes.set = vec![("k".to_string(), "not json".to_string())];
        let mut request = save(session(true), changes, nothing_expected());
        request.rotate = true;
        // `run` is unreachable natively: reaching it would panic.
        let result = commit(
            &c,
            CommitRequest {
                delete: Some(OTHER.to_string()),
                save: Some(request),
            },
            NOW,
            never,
        );
        assert!(matches!(result, Err(StoreError::InvalidData(_))));
        let result = commit(
            &c,
            CommitRequest {
                delete: Some("bad".to_string()),
                save: None,
            },
            NOW,
            never,
        );
        assert!(matches!(result, Err(StoreError::InvalidId(_))));
    }

    // -- why a write wrote nothing --------------------------------------------------------------------

    fn rows(columns: &[&str], rows: Vec<Vec<SqlValue>>) -> RowSet {
        RowSet {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows_affected: rows.len() as u64,
            rows,
        }
    }

    fn checked(result: Result<StoreError, StoreError>) -> String {
        format!("{:?}", result.unwrap())
    }

    #[test]
    fn why_an_insert_wrote_nothing() {
        let check = |taken, size| {
            why_not_inserted(
                &rows(
                    &["taken", "size"],
                    vec![vec![SqlValue::Boolean(taken), SqlValue::Int64(size)]],
                ),
                100,
            )
        };
        assert!(matches!(check(true, 1000), Ok(StoreError::Conflict)));
        assert!(matches!(check(false, 100), Ok(StoreError::Conflict)));
        match check(false, 101) {
            Ok(StoreError::InvalidData(m)) => {
                assert_eq!(m, "session data is 101 bytes of JSON; the limit is 100")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            why_not_inserted(&rows(&["taken", "size"], vec![]), 100),
            Err(StoreError::UnexpectedResult(_))
        ));
    }

    #[test]
    fn why_an_update_wrote_nothing() {
        let columns = ["version", "expires_at", "merged_size"];
        let check = |expires_at, size| {
            why_not_updated(
                &rows(
                    &columns,
                    vec![vec![
                        SqlValue::Int64(4),
                        SqlValue::Timestamp(expires_at),
                        SqlValue::Int64(size),
                    ]],
                ),
                NOW,
                100,
            )
        };
        assert!(matches!(
            why_not_updated(&rows(&columns, vec![]), NOW, 100),
            Ok(StoreError::NotFound)
        ));
        assert!(matches!(check(NOW, 1000), Ok(StoreError::Expired)));
        assert!(matches!(check(NOW + 1, 100), Ok(StoreError::Conflict)));
        assert_eq!(
            checked(check(NOW + 1, 250)),
            format!("{:?}", data::too_large(250, 100))
        );
        assert!(matches!(
            why_not_updated(
                &rows(&columns, vec![vec![SqlValue::Int64(4), SqlValue::Null, SqlValue::Int64(1)]]),
                NOW,
                100
            ),
            Err(StoreError::UnexpectedResult(m)) if m == "column expires_at is null, expected timestamp"
        ));
    }

    // -- decoding -------------------------------------------------------------------------------------

    const COLUMNS: [&str; 10] = [
        "data",
        "user_id",
        "label",
        "expiry_mode",
        "expiry_value",
        "created_at",
        "expires_at",
        "absolute_expires_at",
        "updated_at",
        "version",
    ];

    fn row(values: [SqlValue; 10]) -> RowSet {
        rows(&COLUMNS, vec![values.to_vec()])
    }

    fn good_row() -> [SqlValue; 10] {
        [
            SqlValue::Json("{\"a\": 1}".to_string()),
            SqlValue::Int64(7),
            SqlValue::Text("phone".to_string()),
            SqlValue::Text("on-inactivity".to_string()),
            SqlValue::Int64(60),
            SqlValue::Timestamp(1),
            SqlValue::Timestamp(3),
            SqlValue::Timestamp(4),
            SqlValue::Timestamp(2),
            SqlValue::Int64(5),
        ]
    }

    fn decode(rows: &RowSet) -> Result<Session, StoreError> {
        session_from_row(&Row::new(rows, 0)?, TOKEN.to_string(), &token::hash(TOKEN))
    }

    fn unexpected_message(result: Result<Session, StoreError>) -> String {
        match result {
            Err(StoreError::UnexpectedResult(m)) => m,
            other => panic!("expected unexpected-result, got {other:?}"),
        }
    }

    #[test]
    fn a_session_row_decodes_with_its_data_unparsed() {
        let s = decode(&row(good_row())).unwrap();
        assert_eq!(s.id, TOKEN);
        assert_eq!(s.handle, token::handle(TOKEN));
        assert_eq!(s.data, "{\"a\": 1}");
        assert_eq!(s.user_id, Some(7));
        assert_eq!(s.label.as_deref(), Some("phone"));
        assert!(matches!(s.expiry, Some(Expiry::OnInactivity(60))));
        assert_eq!(
            (
                s.created_at,
                s.expires_at,
                s.absolute_expires_at,
                s.updated_at
            ),
            (1, 3, 4, 2)
        );
        assert_eq!(s.version, 5);
        assert!(s.is_saved);
        // Columns are found by name, in any order.
        let mut reversed = row(good_row());
        reversed.columns.reverse();
        reversed.rows[0].reverse();
        assert_eq!(decode(&reversed).unwrap().version, 5);
        // Nullable columns; an old row without an absolute deadline ends at its expiry.
        let mut values = good_row();
        for i in [1, 2, 3, 4, 7] {
            values[i] = SqlValue::Null;
        }
        let s = decode(&row(values)).unwrap();
        assert_eq!((s.user_id, s.label, s.absolute_expires_at), (None, None, 3));
        assert!(s.expiry.is_none());
    }

    #[test]
    fn wrong_kinds_name_the_column_and_kind_never_the_content() {
        for (i, value, message) in [
            (
                0,
                SqlValue::Text("s3cret".to_string()),
                "column data is text, expected json",
            ),
            (
                1,
                SqlValue::Text("s3cret".to_string()),
                "column user_id is text, expected int64 or null",
            ),
            (
                2,
                SqlValue::Bytes(b"s3cret".to_vec()),
                "column label is bytes, expected text or null",
            ),
            (
                5,
                SqlValue::Null,
                "column created_at is null, expected timestamp",
            ),
            (
                7,
                SqlValue::Float64(1.5),
                "column absolute_expires_at is float64, expected timestamp or null",
            ),
            (9, SqlValue::Int64(-1), "column version is negative"),
            (
                9,
                SqlValue::TextArray(vec!["s3cret".to_string()]),
                "column version is text-array, expected int64",
            ),
            (
                4,
                SqlValue::Json("1".to_string()),
                "column expiry_value is json, expected int64 or null",
            ),
        ] {
            let mut values = good_row();
            values[i] = value;
            let m = unexpected_message(decode(&row(values)));
            assert_eq!(m, message);
            assert!(!m.contains("s3cret"));
        }
    }

    #[test]
    fn the_expiry_columns_must_agree() {
        for (mode, value, expected) in [
            (None, None, "none"),
            (Some("on-inactivity"), Some(5), "Expiry::OnInactivity(5)"),
            (Some("at"), Some(9), "Expiry::At(9)"),
            (Some("on-session-end"), None, "Expiry::OnSessionEnd"),
        ] {
            let expiry = expiry_from_columns(mode, value).unwrap();
            let shown = expiry
                .as_ref()
                .map_or("none".to_string(), |e| format!("{e:?}"));
            assert_eq!(shown, expected);
            let (m, v) = expiry_columns(expiry.as_ref());
            assert_eq!(
                format!("{:?}", (m, v)),
                format!(
                    "{:?}",
                    (
                        mode.map_or(SqlValue::Null, |m| SqlValue::Text(m.to_string())),
                        value.map_or(SqlValue::Null, SqlValue::Int64)
                    )
                )
            );
        }
        for (mode, value) in [
            (None, Some(1)),
            (Some("at"), None),
            (Some("on-inactivity"), None),
            (Some("on-session-end"), Some(1)),
            (Some("s3cret"), Some(1)),
            (Some("AT"), Some(1)),
        ] {
            match expiry_from_columns(mode, value) {
                Err(StoreError::UnexpectedResult(m)) => assert!(!m.contains("s3cret"), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_result_shapes_are_unexpected() {
        let mut short = row(good_row());
        short.rows[0].pop();
        assert_eq!(
            unexpected_message(decode(&short)),
            "row 0 has 9 values for 10 columns"
        );
        let mut renamed = row(good_row());
        renamed.columns[0] = "payload".to_string();
        assert_eq!(
            unexpected_message(decode(&renamed)),
            "column data is missing from the result"
        );
        assert!(matches!(
            written(
                &rows(&COLUMNS, vec![]),
                TOKEN.to_string(),
                &token::hash(TOKEN)
            ),
            Err(StoreError::UnexpectedResult(_))
        ));
        assert!(written(&row(good_row()), TOKEN.to_string(), &token::hash(TOKEN)).is_ok());
    }

    #[test]
    fn touch_results_update_the_deadline() {
        let mut s = decode(&row(good_row())).unwrap();
        apply_touch(&mut s, &rows(&["expires_at", "updated_at"], vec![])).unwrap();
        assert_eq!((s.expires_at, s.updated_at), (3, 2));
        apply_touch(
            &mut s,
            &rows(
                &["expires_at", "updated_at"],
                vec![vec![SqlValue::Timestamp(30), SqlValue::Timestamp(20)]],
            ),
        )
        .unwrap();
        assert_eq!((s.expires_at, s.updated_at, s.version), (30, 20, 5));
        let two = vec![SqlValue::Timestamp(30), SqlValue::Timestamp(20)];
        assert!(
            apply_touch(
                &mut s,
                &rows(&["expires_at", "updated_at"], vec![two.clone(), two])
            )
            .is_err()
        );
    }

    #[test]
    fn user_sessions_decode_with_handles() {
        let hash = token::hash(TOKEN);
        let listed = user_sessions_from_rows(
            &rows(
                &[
                    "id_hash",
                    "data",
                    "label",
                    "created_at",
                    "expires_at",
                    "updated_at",
                ],
                vec![vec![
                    bytes(&hash),
                    SqlValue::Json("{}".to_string()),
                    SqlValue::Null,
                    SqlValue::Timestamp(1),
                    SqlValue::Timestamp(3),
                    SqlValue::Timestamp(2),
                ]],
            ),
            9,
        )
        .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, token::handle(TOKEN));
        assert_eq!(listed[0].user_id, 9);
        assert_eq!(listed[0].data, "{}");
        let bad = user_sessions_from_rows(
            &rows(
                &[
                    "id_hash",
                    "data",
                    "label",
                    "created_at",
                    "expires_at",
                    "updated_at",
                ],
                vec![vec![
                    SqlValue::Bytes(vec![1; 31]),
                    SqlValue::Json("{}".to_string()),
                    SqlValue::Null,
                    SqlValue::Timestamp(1),
                    SqlValue::Timestamp(3),
                    SqlValue::Timestamp(2),
                ]],
            ),
            9,
        );
        assert!(
            matches!(bad, Err(StoreError::UnexpectedResult(m)) if m == "column id_hash has 31 bytes, expected 32")
        );
    }

    // -- checks before any SQL ------------------------------------------------------------------------

    #[test]
    fn ids_and_limits_are_checked_before_any_sql() {
        let c = default_config();
        assert!(matches!(
            load(&c, "nope".to_string(), NOW),
            Err(StoreError::InvalidId(_))
        ));
        assert!(matches!(delete("nope"), Err(StoreError::InvalidId(_))));
        assert!(
            matches!(revoke(1, &TOKEN.to_uppercase()), Err(StoreError::InvalidId(m)) if m.starts_with("session handle"))
        );
        assert!(matches!(
            delete_user_sessions_except(1, ""),
            Err(StoreError::InvalidId(_))
        ));
        match cleanup_batch(0, 0) {
            Err(StoreError::InvalidData(m)) => {
                assert_eq!(m, "a cleanup batch must remove at least one row")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cleanup_batch(0, MAX_CLEANUP_BATCH + 1),
            Err(StoreError::InvalidData(_))
        ));
        assert!(check_cleanup_limit(1).is_ok());
        assert!(check_cleanup_limit(MAX_CLEANUP_BATCH).is_ok());
    }

    #[test]
    fn a_request_without_a_usable_cookie_gets_a_fresh_session_without_sql() {
        let c = default_config();
        let fresh = || Ok(OTHER.to_string());
        let absent = load_from_cookie(&c, "a=1; b=2", NOW, fresh).unwrap();
        assert_eq!(absent.cookie, CookieState::Absent);
        assert_eq!(absent.removal_cookie, None);
        assert_eq!(absent.session.id, OTHER);
        assert!(!absent.session.is_saved);
        assert!(absent.session.expiry.is_none());
        assert_eq!(absent.session.created_at, NOW);
        let stale = load_from_cookie(&c, "varel_session=garbage", NOW, fresh).unwrap();
        assert_eq!(stale.cookie, CookieState::Stale);
        assert_eq!(stale.removal_cookie, Some(cookie::removal_cookie(&c)));
        assert_eq!(stale.session.id, OTHER);
    }
}
