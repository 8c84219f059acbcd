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
    INSERT, LOAD, REVOKE, STATEMENTS, Statement, TOUCH, UPDATE, UPDATE_KEYS,
    UPDATE_KEYS_UNCONDITIONAL, USER_SESSIONS, WHY_NOT_INSERTED, WHY_NOT_UPDATED,
};

/// The largest `limit` `cleanup-batch` accepts: one statement never locks more rows than this.
pub const MAX_CLEANUP_BATCH: u32 = 100_000;

/// Every statement the component sends, verbatim. Only this module can make a [`Statement`], and only
/// as one of these constants, so `run` can send nothing else; `STATEMENTS` lists them all, in the order
/// that gives each its index (unit tests check that it lists every constant, each at its own index, and
/// that each constant's columns are the ones its text returns).
///
/// All of them name the table schema-qualified, and cast every parameter, so a driver can bind typed
/// parameters without relying on the server's inference.
pub mod statements {
    /// One declared statement: its index in [`STATEMENTS`] (what `sql-query` sends), its name for
    /// messages (the constant's, in lower case with hyphens), its text, and the names of the columns it returns, in order (the host sends no names:
    /// rows are decoded by position, and these name a column in an `unexpected-result`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Statement {
        index: u32,
        name: &'static str,
        text: &'static str,
        columns: &'static [&'static str],
    }

    impl Statement {
        /// The statement's index in [`STATEMENTS`] and in the `statements` export.
        pub const fn index(self) -> u32 {
            self.index
        }

        /// The statement's name in messages.
        pub const fn name(self) -> &'static str {
            self.name
        }

        /// The statement's text, as declared.
        pub const fn text(self) -> &'static str {
            self.text
        }

        /// The names of the columns the statement returns, in order (empty: it returns none).
        pub const fn columns(self) -> &'static [&'static str] {
            self.columns
        }
    }

    /// The columns a session is read back with (`load`, insert and update alike).
    macro_rules! session_columns {
        () => {
            "data, user_id, label, expiry_mode, expiry_value, created_at, expires_at, \
             absolute_expires_at, updated_at, version"
        };
    }

    /// The names of [`session_columns!`], in order.
    pub const SESSION_COLUMNS: &[&str] = &[
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

    /// The columns an update returns: what another request may have changed since the copy was
    /// written. The data comes back only when one did (the version is not `$copy` + 1, `$copy` being
    /// the version the copy was loaded or saved at); else it is null, and the copy's own data (with its
    /// changes) is what is stored. A null `$copy` (last-write-wins) never brings it back: the copy keeps
    /// its own view, as a blind write does. The creation time and absolute deadline never change.
    macro_rules! updated_columns {
        ($copy:literal) => {
            concat!(
                "CASE WHEN ",
                $copy,
                "::bigint IS NULL OR s.version = ",
                $copy,
                "::bigint + 1 THEN NULL ELSE s.data END AS data, ",
                updated_tail!()
            )
        };
    }

    /// [`updated_columns!`] after the data: what an update may change besides it.
    macro_rules! updated_tail {
        () => {
            "s.user_id, s.label, s.expiry_mode, s.expiry_value, s.expires_at, s.updated_at, s.version"
        };
    }

    /// The names of [`updated_columns!`], in order.
    pub const UPDATED_COLUMNS: &[&str] = &[
        "data",
        "user_id",
        "label",
        "expiry_mode",
        "expiry_value",
        "expires_at",
        "updated_at",
        "version",
    ];

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

    /// The idle deadline slid to the placeholder `$deadline` (never earlier than the stored one, never
    /// past the absolute deadline) when the stored expiry mode and value are still `$mode`, `$value`;
    /// else the stored one. The end of a `CASE` (its last `WHEN`, the `ELSE` and `END`).
    macro_rules! slid_deadline {
        ($deadline:literal, $mode:literal, $value:literal) => {
            concat!(
                "WHEN ",
                $deadline,
                "::timestamptz IS NOT NULL AND s.expiry_mode IS NOT DISTINCT FROM ",
                $mode,
                "::text AND s.expiry_value IS NOT DISTINCT FROM ",
                $value,
                "::bigint THEN GREATEST(s.expires_at, LEAST(",
                $deadline,
                "::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at))) ELSE s.expires_at END"
            )
        };
    }

    /// The key-level conditions, each off when its placeholder is null: the version is still
    /// `$version` (`strict`); the keys `$absent` are still absent (`merge`).
    macro_rules! key_conditions {
        ($version:literal, $absent:literal) => {
            concat!(
                "AND (",
                $version,
                "::bigint IS NULL OR s.version = ",
                $version,
                "::bigint) AND (",
                $absent,
                "::text[] IS NULL OR NOT (s.data ?| ",
                $absent,
                "::text[]))"
            )
        };
    }

    /// Unless `$values` is null (`merge`): the keys of the object `$values` still hold exactly those
    /// values, whatever they are (objects and arrays compared whole, key by key in a subquery).
    macro_rules! values_held {
        ($values:literal) => {
            concat!(
                "AND (",
                $values,
                "::jsonb IS NULL OR NOT EXISTS (SELECT 1 FROM jsonb_each(",
                $values,
                "::jsonb) AS e WHERE s.data -> e.key IS DISTINCT FROM e.value))"
            )
        };
    }

    /// Unless `$values` is null (`merge`): the keys of the object `$values`, whose values are all JSON
    /// scalars, still hold those values. Containment is equality for a scalar under a key (an array
    /// would contain a subset), and needs no subquery.
    macro_rules! scalars_held {
        ($values:literal) => {
            concat!(
                "AND (",
                $values,
                "::jsonb IS NULL OR s.data @> ",
                $values,
                "::jsonb)"
            )
        };
    }

    /// The start of the key-change updates, through the expiry check: keys `$3` removed, then `$4` set,
    /// on stored session `$1` at time `$2`, the idle deadline slid (`$5` .. `$7`). Ends with a space.
    macro_rules! keys_update_head {
        () => {
            concat!(
                "UPDATE wasm_sessions.sessions AS s SET data = (s.data - $3::text[]) || $4::jsonb, \
                 expires_at = CASE ",
                slid_deadline!("$5", "$6", "$7"),
                ", updated_at = $2::timestamptz, version = s.version + 1 \
                 WHERE s.id_hash = $1::bytea AND s.expires_at > $2::timestamptz "
            )
        };
    }

    /// The key-change updates' limit: the merged data is at most `$limit` bytes of JSONB text.
    macro_rules! keys_merged_within {
        ($limit:literal) => {
            concat!(
                "AND octet_length(((s.data - $3::text[]) || $4::jsonb)::text) <= ",
                $limit,
                "::bigint"
            )
        };
    }

    /// When `$check`: the user is still `$user` (`merge`).
    macro_rules! user_condition {
        ($check:literal, $user:literal) => {
            concat!(
                "AND (NOT ",
                $check,
                "::boolean OR s.user_id IS NOT DISTINCT FROM ",
                $user,
                "::bigint)"
            )
        };
    }

    /// Loads one session by `$1` id hash.
    pub const LOAD: Statement = Statement {
        index: 0,
        name: "load",
        text: concat!(
            "SELECT ",
            session_columns!(),
            " FROM wasm_sessions.sessions WHERE id_hash = $1::bytea"
        ),
        columns: SESSION_COLUMNS,
    };

    /// Extends the idle deadline of session `$1` (loaded at version `$4`) to `$2`, never past its
    /// absolute deadline, at time `$3`; the version stays.
    pub const TOUCH: Statement = Statement {
        index: 1,
        name: "touch",
        text: "UPDATE wasm_sessions.sessions \
         SET expires_at = LEAST($2::timestamptz, COALESCE(absolute_expires_at, expires_at)), \
         updated_at = $3::timestamptz \
         WHERE id_hash = $1::bytea AND version = $4::bigint \
         AND expires_at > $3::timestamptz AND expires_at < $2::timestamptz \
         RETURNING expires_at, updated_at",
        columns: &["expires_at", "updated_at"],
    };

    /// Inserts a whole new session, version 1, unless its data's JSONB text is over `$11` bytes or the
    /// id hash is taken.
    pub const INSERT: Statement = Statement {
        index: 2,
        name: "insert",
        text: concat!(
            "INSERT INTO wasm_sessions.sessions (id_hash, data, user_id, label, expiry_mode, \
             expiry_value, created_at, expires_at, absolute_expires_at, updated_at, version) \
             SELECT $1::bytea, $2::jsonb, $3::bigint, $4::text, $5::text, $6::bigint, \
             $7::timestamptz, $8::timestamptz, $9::timestamptz, $10::timestamptz, 1 \
             WHERE octet_length($2::jsonb::text) <= $11::bigint \
             ON CONFLICT (id_hash) DO NOTHING RETURNING ",
            session_columns!()
        ),
        columns: SESSION_COLUMNS,
    };

    /// Why [`INSERT`] wrote nothing: `$1` taken, or `$2` over the limit.
    pub const WHY_NOT_INSERTED: Statement = Statement {
        index: 3,
        name: "why-not-inserted",
        text: "SELECT EXISTS (SELECT 1 FROM wasm_sessions.sessions WHERE id_hash = $1::bytea) AS taken, \
         octet_length($2::jsonb::text) AS size",
        columns: &["taken", "size"],
    };

    /// Applies one request's changes to stored session `$1` (moving it to id hash `$2`) at time `$3`,
    /// under the concurrency conditions; see `UpdatePlan::params` for every parameter.
    pub const UPDATE: Statement = Statement {
        index: 4,
        name: "update",
        text: concat!(
            "UPDATE wasm_sessions.sessions AS s SET id_hash = $2::bytea, data = ",
            merged_data!("$4", "$5", "$6"),
            ", user_id = CASE WHEN $7::boolean THEN $8::bigint ELSE s.user_id END, \
             label = CASE WHEN $9::boolean THEN $10::text ELSE s.label END, \
             expiry_mode = CASE WHEN $11::boolean THEN $12::text ELSE s.expiry_mode END, \
             expiry_value = CASE WHEN $11::boolean THEN $13::bigint ELSE s.expiry_value END, \
             expires_at = CASE \
             WHEN $11::boolean THEN LEAST($14::timestamptz, COALESCE(s.absolute_expires_at, s.expires_at)) ",
            slid_deadline!("$15", "$16", "$17"),
            ", updated_at = $3::timestamptz, version = s.version + 1 \
             WHERE s.id_hash = $1::bytea AND s.expires_at > $3::timestamptz ",
            key_conditions!("$18", "$20"),
            " ",
            values_held!("$19"),
            " AND ($21::jsonb IS NULL OR s.data = $21::jsonb) ",
            user_condition!("$22", "$23"),
            " AND (NOT $24::boolean OR (s.expiry_mode IS NOT DISTINCT FROM $25::text \
             AND s.expiry_value IS NOT DISTINCT FROM $26::bigint)) \
             AND octet_length((",
            merged_data!("$4", "$5", "$6"),
            ")::text) <= $27::bigint RETURNING ",
            updated_columns!("$28")
        ),
        columns: UPDATED_COLUMNS,
    };

    /// Applies a request's changes to stored session `$1` at time `$2` when they are key changes alone
    /// (keys `$3` removed, then `$4` set; no clear, no new user, label, expiry or token), under the
    /// key-level conditions only, the values read being scalars: [`UPDATE`] narrowed to what most saves
    /// change, so that PostgreSQL evaluates only these, without a subquery (a save's cost is mostly its
    /// statement); see `UpdatePlan::keys_params`.
    pub const UPDATE_KEYS: Statement = Statement {
        index: 13,
        name: "update-keys",
        text: concat!(
            keys_update_head!(),
            key_conditions!("$8", "$10"),
            " ",
            scalars_held!("$9"),
            " ",
            user_condition!("$11", "$12"),
            " ",
            keys_merged_within!("$13"),
            " RETURNING ",
            updated_columns!("$14")
        ),
        columns: UPDATED_COLUMNS,
    };

    /// [`UPDATE_KEYS`] without conditions, for a save that has none (`last-write-wins`): applies keys
    /// `$3` removed, then `$4` set, to stored session `$1` at time `$2`, sliding the idle deadline
    /// (`$5` .. `$7`) and holding the merged data to `$8` bytes of JSONB text, as `update-keys` does.
    /// The data never comes back (the copy keeps its own view): its column is null, so that the row
    /// reads as [`UPDATED_COLUMNS`]. See `UpdatePlan::unconditional_params`.
    pub const UPDATE_KEYS_UNCONDITIONAL: Statement = Statement {
        index: 14,
        name: "update-keys-unconditional",
        text: concat!(
            keys_update_head!(),
            keys_merged_within!("$8"),
            " RETURNING NULL::jsonb AS data, ",
            updated_tail!()
        ),
        columns: UPDATED_COLUMNS,
    };

    /// Why [`UPDATE`], [`UPDATE_KEYS`] or [`UPDATE_KEYS_UNCONDITIONAL`] wrote nothing: the state of row
    /// `$1` and the size its data would have had with the changes (`$2` cleared, `$3` keys removed,
    /// `$4` keys set).
    pub const WHY_NOT_UPDATED: Statement = Statement {
        index: 5,
        name: "why-not-updated",
        text: concat!(
            "SELECT s.version, s.expires_at, octet_length((",
            merged_data!("$2", "$3", "$4"),
            ")::text) AS merged_size FROM wasm_sessions.sessions AS s WHERE s.id_hash = $1::bytea"
        ),
        columns: &["version", "expires_at", "merged_size"],
    };

    /// Deletes session `$1`.
    pub const DELETE: Statement = Statement {
        index: 6,
        name: "delete",
        text: "DELETE FROM wasm_sessions.sessions WHERE id_hash = $1::bytea",
        columns: &[],
    };

    /// Deletes session `$1` if it belongs to user `$2`.
    pub const REVOKE: Statement = Statement {
        index: 7,
        name: "revoke",
        text: "DELETE FROM wasm_sessions.sessions WHERE id_hash = $1::bytea AND user_id = $2::bigint",
        columns: &[],
    };

    /// Deletes at most `$2` sessions expired by `$1`, oldest first, skipping locked rows.
    pub const CLEANUP_BATCH: Statement = Statement {
        index: 8,
        name: "cleanup-batch",
        text: "DELETE FROM wasm_sessions.sessions WHERE id_hash IN (SELECT id_hash \
         FROM wasm_sessions.sessions WHERE expires_at <= $1::timestamptz ORDER BY expires_at \
         LIMIT $2::bigint FOR UPDATE SKIP LOCKED)",
        columns: &[],
    };

    /// Counts the sessions expired by `$1`.
    pub const COUNT_EXPIRED: Statement = Statement {
        index: 9,
        name: "count-expired",
        text: "SELECT count(*) AS expired FROM wasm_sessions.sessions WHERE expires_at <= $1::timestamptz",
        columns: &["expired"],
    };

    /// Lists user `$1`'s sessions unexpired at `$2`, newest first.
    pub const USER_SESSIONS: Statement = Statement {
        index: 10,
        name: "user-sessions",
        text: "SELECT id_hash, data, label, created_at, expires_at, updated_at \
         FROM wasm_sessions.sessions WHERE user_id = $1::bigint AND expires_at > $2::timestamptz \
         ORDER BY created_at DESC, id_hash",
        columns: &[
            "id_hash",
            "data",
            "label",
            "created_at",
            "expires_at",
            "updated_at",
        ],
    };

    /// Deletes all of user `$1`'s sessions.
    pub const DELETE_USER_SESSIONS: Statement = Statement {
        index: 11,
        name: "delete-user-sessions",
        text: "DELETE FROM wasm_sessions.sessions WHERE user_id = $1::bigint",
        columns: &[],
    };

    /// Deletes all of user `$1`'s sessions but `$2`.
    pub const DELETE_USER_SESSIONS_EXCEPT: Statement = Statement {
        index: 12,
        name: "delete-user-sessions-except",
        text: "DELETE FROM wasm_sessions.sessions WHERE user_id = $1::bigint AND id_hash <> $2::bytea",
        columns: &[],
    };

    /// Every statement above: what `statements()` declares, in index order.
    pub const STATEMENTS: [Statement; 15] = [
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
        UPDATE_KEYS,
        UPDATE_KEYS_UNCONDITIONAL,
    ];
}

/// Every statement text, for the `statements` export.
pub fn statements() -> Vec<String> {
    STATEMENTS.iter().map(|s| s.text().to_string()).collect()
}

/// Runs one declared statement (named to the host by its index), mapping a SQL failure to `database`.
fn run(statement: Statement, params: &[SqlValue]) -> Result<RowSet, StoreError> {
    sql_query(statement.index(), params).map_err(StoreError::Database)
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
        1 => Row::new(&rows, 0, LOAD)?,
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
            let [expires_at, updated_at] = Row::new(rows, 0, TOUCH)?.cells()?;
            session.expires_at = expires_at.timestamp()?;
            session.updated_at = updated_at.timestamp()?;
            Ok(())
        }
        n => Err(unexpected(format!("touch returned {n} rows for one id"))),
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
    let (session, data_stored) = match plan.map(|plan| execute(plan, config, now)).transpose()? {
        Some((session, data_stored)) => (Some(session), data_stored),
        None => (None, false),
    };
    let set_cookie = match &session {
        Some(written) => Some(cookie::set_cookie(config, written, now)?),
        None if delete.is_some() => Some(cookie::removal_cookie(config)),
        None => None,
    };
    Ok(CommitOutcome {
        session,
        data_stored,
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
    Update(Box<UpdatePlan>),
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
    /// `merge`: whether a value in `expect_values` is an object or an array (which only [`UPDATE`]
    /// compares exactly).
    expect_containers: bool,
    /// The version the copy was loaded or saved at, when the stored data is to come back if another
    /// request wrote since (null under last-write-wins: the copy keeps its own data).
    copy_version: Option<u64>,
    /// The copy's data (with its changes) and its fixed times: what the written session is made of
    /// where the update does not return them.
    copy: WrittenCopy,
}

/// What a saved copy already knows of itself: its data after its changes (JSON object text, as the host
/// sent it), its creation time and absolute deadline (which no update changes).
#[derive(Debug, Default)]
struct WrittenCopy {
    data: String,
    created_at: i64,
    absolute_expires_at: i64,
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
            copy_version: (config.concurrency != Concurrency::LastWriteWins).then_some(s.version),
            copy: WrittenCopy {
                data: s.data,
                created_at: s.created_at,
                absolute_expires_at: s.absolute_expires_at,
            },
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
                plan.expect_containers = present
                    .iter()
                    .any(|(_, value)| value.trim_start().starts_with(['{', '[']));
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
        PlanKind::Update(Box::new(plan))
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
    /// | `$28` | the copy's version, when the data is to come back if another request wrote since |
    fn params(&self, hash: &[u8; 32], now: i64, limit: u32) -> Vec<SqlValue> {
        let (expiry_changed, new_mode, new_value, new_deadline) = match &self.expiry {
            Some((expiry, deadline)) => {
                let (mode, value) = expiry_columns(expiry.as_ref());
                (true, mode, value, SqlValue::Timestamp(*deadline))
            }
            None => (false, SqlValue::Null, SqlValue::Null, SqlValue::Null),
        };
        let (expected_mode, expected_value) = match &self.expect_expiry {
            Some(expiry) => expiry_columns(expiry.as_ref()),
            None => (SqlValue::Null, SqlValue::Null),
        };
        let mut params = vec![
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
        ];
        params.extend(self.slide_params());
        params.extend(self.key_condition_params());
        params.push(
            self.expect_data
                .clone()
                .map_or(SqlValue::Null, SqlValue::Json),
        );
        params.extend(self.user_condition_params());
        params.extend([
            SqlValue::Boolean(self.expect_expiry.is_some()),
            expected_mode,
            expected_value,
            SqlValue::Int64(limit.into()),
            self.copy_version_param(),
        ]);
        params
    }

    /// Whether [`UPDATE_KEYS`] can apply this plan moving the session to id hash `hash`: it changes
    /// keys alone, keeps the token, and its conditions are at most the version, keys' scalar values,
    /// keys' absence and the user.
    fn keys_only(&self, hash: &[u8; 32]) -> bool {
        !self.cleared
            && self.user.is_none()
            && self.label.is_none()
            && self.expiry.is_none()
            && self.expect_data.is_none()
            && self.expect_expiry.is_none()
            && !self.expect_containers
            && self.old_hash == *hash
    }

    /// The parameters of [`UPDATE_KEYS`] at `now` (for a plan that is [`keys_only`](Self::keys_only)):
    ///
    /// | | |
    /// | --- | --- |
    /// | `$1` `$2` | id hash, now |
    /// | `$3` `$4` | keys removed (`text[]`), keys set (a `jsonb` object) |
    /// | `$5` .. `$7` | slid idle deadline (null: none) and the mode, value it assumes stored |
    /// | `$8` | `strict`: the version loaded (null otherwise) |
    /// | `$9` `$10` | `merge`: keys with their values, keys absent (null: no check) |
    /// | `$11` `$12` | `merge`: check the user, the user loaded |
    /// | `$13` | the data limit in bytes of JSONB text |
    /// | `$14` | the copy's version, when the data is to come back if another request wrote since |
    fn keys_params(&self, now: i64, limit: u32) -> Vec<SqlValue> {
        let mut params = self.keys_head_params(now);
        params.extend(self.key_condition_params());
        params.extend(self.user_condition_params());
        params.extend([SqlValue::Int64(limit.into()), self.copy_version_param()]);
        params
    }

    /// Whether this plan has no condition at all (`last-write-wins`: no version, no values or absent
    /// keys, no user to check, no data to bring back), so that [`UPDATE_KEYS_UNCONDITIONAL`] applies it
    /// when it is also [`keys_only`](Self::keys_only).
    fn unconditional(&self) -> bool {
        self.version.is_none()
            && self.expect_values.is_none()
            && self.expect_absent.is_none()
            && self.expect_user.is_none()
            && self.copy_version.is_none()
    }

    /// The parameters of [`UPDATE_KEYS_UNCONDITIONAL`] at `now`: [`keys_params`](Self::keys_params)
    /// without the conditions' (`$1` .. `$7` as there, `$8` the data limit).
    fn unconditional_params(&self, now: i64, limit: u32) -> Vec<SqlValue> {
        let mut params = self.keys_head_params(now);
        params.push(SqlValue::Int64(limit.into()));
        params
    }

    /// The parameters of `keys_update_head!` at `now` (`$1` .. `$7` of both key-change updates): id
    /// hash, now, keys removed, keys set, and the slide's.
    fn keys_head_params(&self, now: i64) -> Vec<SqlValue> {
        let mut params = vec![
            bytes(&self.old_hash),
            SqlValue::Timestamp(now),
            SqlValue::TextArray(self.removed.clone()),
            SqlValue::Json(self.set.clone()),
        ];
        params.extend(self.slide_params());
        params
    }

    /// The parameter of `updated_columns!`: the copy's version, or null when its data is not to come
    /// back.
    fn copy_version_param(&self) -> SqlValue {
        self.copy_version.map_or(SqlValue::Null, version_param)
    }

    /// The parameters of `slid_deadline!`: the slid idle deadline and the expiry mode and value it
    /// assumes stored (nulls: no slide).
    fn slide_params(&self) -> [SqlValue; 3] {
        match &self.slide {
            Some((deadline, expiry)) => {
                let (mode, value) = expiry_columns(expiry.as_ref());
                [SqlValue::Timestamp(*deadline), mode, value]
            }
            None => [SqlValue::Null, SqlValue::Null, SqlValue::Null],
        }
    }

    /// The parameters of `key_conditions!`: the version loaded (`strict`), keys with their values and
    /// keys absent (`merge`); null where the mode does not check.
    fn key_condition_params(&self) -> [SqlValue; 3] {
        [
            self.version.map_or(SqlValue::Null, version_param),
            self.expect_values
                .clone()
                .map_or(SqlValue::Null, SqlValue::Json),
            self.expect_absent
                .clone()
                .map_or(SqlValue::Null, SqlValue::TextArray),
        ]
    }

    /// The parameters of `user_condition!`: whether to check the user, and the user loaded.
    fn user_condition_params(&self) -> [SqlValue; 2] {
        [
            SqlValue::Boolean(self.expect_user.is_some()),
            int_or_null(self.expect_user.flatten()),
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

/// Sends a planned write: one statement, and one more only when it wrote nothing, to say why. Returns
/// the written session and whether its data is the stored data (else the copy's own, unread).
fn execute(plan: Plan, config: &Config, now: i64) -> Result<(Session, bool), StoreError> {
    let hash = plan.hash;
    let limit = config.max_data_bytes;
    let (statement, rows) = match &plan.kind {
        PlanKind::Insert(insert) => (INSERT, run(INSERT, &insert.params(&hash, now, limit))?),
        PlanKind::Update(update) if update.keys_only(&hash) && update.unconditional() => (
            UPDATE_KEYS_UNCONDITIONAL,
            run(
                UPDATE_KEYS_UNCONDITIONAL,
                &update.unconditional_params(now, limit),
            )?,
        ),
        PlanKind::Update(update) if update.keys_only(&hash) => (
            UPDATE_KEYS,
            run(UPDATE_KEYS, &update.keys_params(now, limit))?,
        ),
        PlanKind::Update(update) => (UPDATE, run(UPDATE, &update.params(&hash, now, limit))?),
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
    let copy = match plan.kind {
        PlanKind::Insert(_) => None,
        PlanKind::Update(update) => Some(update.copy),
    };
    written(&rows, statement, plan.token, &hash, copy)
}

/// The session the `RETURNING` row of write `statement` describes, under `token`: an insert's whole
/// row, or an update's row over the `copy` it wrote; and whether its data is the stored data.
fn written(
    rows: &RowSet,
    statement: Statement,
    token: String,
    hash: &[u8; 32],
    copy: Option<WrittenCopy>,
) -> Result<(Session, bool), StoreError> {
    let row = single(rows, statement)?;
    match copy {
        None => Ok((session_from_row(&row, token, hash)?, true)),
        Some(copy) => session_from_update_row(&row, token, hash, copy),
    }
}

/// What [`WHY_NOT_INSERTED`] says: the token is taken (`conflict`), else the data is over the limit.
fn why_not_inserted(rows: &RowSet, limit: u32) -> Result<StoreError, StoreError> {
    let [taken, size] = single(rows, WHY_NOT_INSERTED)?.cells()?;
    if taken.boolean()? {
        return Ok(StoreError::Conflict);
    }
    let size = size.count()?;
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
    let [version, expires_at, merged_size] = single(rows, WHY_NOT_UPDATED)?.cells()?;
    version.count()?;
    if session::is_expired(expires_at.timestamp()?, now) {
        return Ok(StoreError::Expired);
    }
    let size = merged_size.count()?;
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
    count_from(&run(COUNT_EXPIRED, &[SqlValue::Timestamp(cutoff)])?)
}

/// The count [`COUNT_EXPIRED`] returned.
fn count_from(rows: &RowSet) -> Result<u64, StoreError> {
    let [expired] = single(rows, COUNT_EXPIRED)?.cells()?;
    expired.count()
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
            let [id_hash, data, label, created_at, expires_at, updated_at] =
                Row::new(rows, i, USER_SESSIONS)?.cells()?;
            Ok(UserSession {
                handle: token::handle_from_hash(&id_hash.hash()?),
                data: data.json()?,
                user_id,
                label: label.optional_text()?,
                created_at: created_at.timestamp()?,
                expires_at: expires_at.timestamp()?,
                updated_at: updated_at.timestamp()?,
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

/// The session a row of [`SESSION_COLUMNS`](statements::SESSION_COLUMNS) describes (of `load` or the
/// insert), under token `id` whose SHA-256 is `hash` (the caller hashed it already: one
/// SHA-256 per operation). The data is the database's JSONB text, passed through unparsed.
fn session_from_row(row: &Row<'_>, id: String, hash: &[u8; 32]) -> Result<Session, StoreError> {
    // By position, in the order of `SESSION_COLUMNS`.
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
    ] = row.cells()?;
    let expires_at = expires_at.timestamp()?;
    let expiry = expiry_from_columns(
        expiry_mode.optional_text()?.as_deref(),
        expiry_value.optional_int()?,
    )?;
    Ok(Session {
        handle: token::handle_from_hash(hash),
        id,
        data: data.json()?,
        user_id: user_id.optional_int()?,
        label: label.optional_text()?,
        expiry,
        created_at: created_at.timestamp()?,
        expires_at,
        absolute_expires_at: absolute_expires_at
            .optional_timestamp()?
            .unwrap_or(expires_at),
        updated_at: updated_at.timestamp()?,
        version: version.count()?,
        is_saved: true,
    })
}

/// The session an update's row of [`UPDATED_COLUMNS`](statements::UPDATED_COLUMNS) describes, under
/// token `id` whose SHA-256 is `hash`: the stored data when the row returns it (another request wrote
/// meanwhile), else the copy's own, and the copy's fixed times; and whether the data is the stored one.
fn session_from_update_row(
    row: &Row<'_>,
    id: String,
    hash: &[u8; 32],
    copy: WrittenCopy,
) -> Result<(Session, bool), StoreError> {
    // By position, in the order of `UPDATED_COLUMNS`.
    let [
        data,
        user_id,
        label,
        expiry_mode,
        expiry_value,
        expires_at,
        updated_at,
        version,
    ] = row.cells()?;
    let expiry = expiry_from_columns(
        expiry_mode.optional_text()?.as_deref(),
        expiry_value.optional_int()?,
    )?;
    let stored = data.optional_json()?;
    let data_stored = stored.is_some();
    let session = Session {
        handle: token::handle_from_hash(hash),
        id,
        data: stored.unwrap_or(copy.data),
        user_id: user_id.optional_int()?,
        label: label.optional_text()?,
        expiry,
        created_at: copy.created_at,
        expires_at: expires_at.timestamp()?,
        absolute_expires_at: copy.absolute_expires_at,
        updated_at: updated_at.timestamp()?,
        version: version.count()?,
        is_saved: true,
    };
    Ok((session, data_stored))
}

/// The only row `statement` returned.
fn single(rows: &RowSet, statement: Statement) -> Result<Row<'_>, StoreError> {
    if rows.rows.len() != 1 {
        return Err(unexpected(format!(
            "{} returned {} rows, expected 1",
            statement.name(),
            rows.rows.len()
        )));
    }
    Row::new(rows, 0, statement)
}

/// An `unexpected-result` error.
fn unexpected(msg: String) -> StoreError {
    StoreError::UnexpectedResult(msg)
}

/// One result row of a declared statement: exactly one value per column the statement declares.
struct Row<'a> {
    statement: Statement,
    values: &'a [SqlValue],
}

impl<'a> Row<'a> {
    /// Row `index` of `rows`, which `statement` returned.
    fn new(rows: &'a RowSet, index: usize, statement: Statement) -> Result<Self, StoreError> {
        let values = rows
            .rows
            .get(index)
            .ok_or_else(|| unexpected(format!("{}: row {index} is missing", statement.name())))?;
        if values.len() != statement.columns().len() {
            return Err(unexpected(format!(
                "{}: row {index} has {} values for {} columns",
                statement.name(),
                values.len(),
                statement.columns().len()
            )));
        }
        Ok(Row { statement, values })
    }

    /// The row's values by position, each knowing its column for messages. `N` is the statement's
    /// column count (a unit test decodes every statement that returns rows).
    fn cells<const N: usize>(&self) -> Result<[Cell<'a>; N], StoreError> {
        if self.values.len() != N {
            return Err(unexpected(format!(
                "{}: decoded as {N} columns, declared with {}",
                self.statement.name(),
                self.values.len()
            )));
        }
        let (statement, values) = (self.statement, self.values);
        Ok(std::array::from_fn(|position| Cell {
            statement,
            position,
            value: &values[position],
        }))
    }
}

/// One value of a [`Row`], with the column it is in (for messages: never its content).
#[derive(Clone, Copy)]
struct Cell<'a> {
    statement: Statement,
    position: usize,
    value: &'a SqlValue,
}

impl Cell<'_> {
    /// The column's name, from the statement's declared columns.
    fn name(self) -> &'static str {
        self.statement
            .columns()
            .get(self.position)
            .copied()
            .unwrap_or("?")
    }

    /// The error for a value of the wrong kind (named by variant, never by content).
    fn wrong(self, expected: &str) -> StoreError {
        self.invalid(&format!("is {}, expected {expected}", kind(self.value)))
    }

    /// The error for a value that breaks a rule (`what` says which).
    fn invalid(self, what: &str) -> StoreError {
        unexpected(format!(
            "{}: column {} ({}) {what}",
            self.statement.name(),
            self.position + 1,
            self.name()
        ))
    }

    /// A `timestamp` column.
    fn timestamp(self) -> Result<i64, StoreError> {
        match self.value {
            SqlValue::Timestamp(t) => Ok(*t),
            _ => Err(self.wrong("timestamp")),
        }
    }

    /// A nullable `timestamp` column.
    fn optional_timestamp(self) -> Result<Option<i64>, StoreError> {
        match self.value {
            SqlValue::Timestamp(t) => Ok(Some(*t)),
            SqlValue::Null => Ok(None),
            _ => Err(self.wrong("timestamp or null")),
        }
    }

    /// A non-negative `int64` column: a version, a count or a size.
    fn count(self) -> Result<u64, StoreError> {
        match self.value {
            SqlValue::Int64(v) => u64::try_from(*v).map_err(|_| self.invalid("is negative")),
            _ => Err(self.wrong("int64")),
        }
    }

    /// A nullable `int64` column.
    fn optional_int(self) -> Result<Option<i64>, StoreError> {
        match self.value {
            SqlValue::Int64(v) => Ok(Some(*v)),
            SqlValue::Null => Ok(None),
            _ => Err(self.wrong("int64 or null")),
        }
    }

    /// A nullable `text` column.
    fn optional_text(self) -> Result<Option<String>, StoreError> {
        match self.value {
            SqlValue::Text(t) => Ok(Some(t.clone())),
            SqlValue::Null => Ok(None),
            _ => Err(self.wrong("text or null")),
        }
    }

    /// A `boolean` column.
    fn boolean(self) -> Result<bool, StoreError> {
        match self.value {
            SqlValue::Boolean(b) => Ok(*b),
            _ => Err(self.wrong("boolean")),
        }
    }

    /// A `json` column, as its text.
    fn json(self) -> Result<String, StoreError> {
        match self.value {
            SqlValue::Json(text) => Ok(text.clone()),
            _ => Err(self.wrong("json")),
        }
    }

    /// A nullable `json` column, as its text.
    fn optional_json(self) -> Result<Option<String>, StoreError> {
        match self.value {
            SqlValue::Json(text) => Ok(Some(text.clone())),
            SqlValue::Null => Ok(None),
            _ => Err(self.wrong("json or null")),
        }
    }

    /// A 32-byte `bytes` column.
    fn hash(self) -> Result<[u8; 32], StoreError> {
        match self.value {
            SqlValue::Bytes(b) => <[u8; 32]>::try_from(b.as_slice())
                .map_err(|_| self.invalid(&format!("has {} bytes, expected 32", b.len()))),
            _ => Err(self.wrong("bytes")),
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
        // The list order is the index `run` sends: each statement sits at its own index.
        let names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        for (i, (statement, name)) in STATEMENTS.iter().zip(names).enumerate() {
            assert_eq!(statement.index() as usize, i, "{name} is listed at {i}");
            // Its name in messages is the constant's.
            assert_eq!(statement.name(), name.to_lowercase().replace('_', "-"));
        }
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
        // The fields are private to the module, so only it can make one: once per constant.
        let constructions = source().matches("Statement {").count()
            - source().matches("struct Statement {").count()
            - source().matches("impl Statement {").count();
        assert_eq!(constructions, defined.len());
        for name in defined {
            let head = format!("pub const {name}: Statement =");
            let at = statements_source().find(&head).unwrap() + head.len();
            assert!(
                statements_source()[at..]
                    .trim_start()
                    .starts_with("Statement {"),
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

    /// `text` split at the commas outside parentheses.
    fn top_level_items(text: &str) -> Vec<&str> {
        let (mut depth, mut start, mut items) = (0usize, 0, Vec::new());
        for (i, c) in text.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(text[start..i].trim());
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(text[start..].trim());
        items
    }

    /// The names of the columns `text` returns, read from its `RETURNING` list or its outer `SELECT`
    /// list: each item's alias (`AS name`), or the column it names (`s.version` is `version`).
    fn returned_columns(text: &str) -> Vec<&str> {
        let list = if let Some(at) = text.rfind(" RETURNING ") {
            &text[at + " RETURNING ".len()..]
        } else if let Some(rest) = text.strip_prefix("SELECT ") {
            // Up to the first FROM outside parentheses.
            let mut depth = 0usize;
            let mut end = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ if depth == 0 && rest[i..].starts_with(" FROM ") => {
                        end = i;
                        break;
                    }
                    _ => {}
                }
            }
            &rest[..end]
        } else {
            return Vec::new();
        };
        top_level_items(list)
            .into_iter()
            .map(|item| {
                let name = match item.rfind(" AS ") {
                    Some(at) => &item[at + " AS ".len()..],
                    None => item.rsplit('.').next().unwrap(),
                };
                assert_eq!(
                    ident(name),
                    name,
                    "an unnamed result column `{item}` in {text}"
                );
                name
            })
            .collect()
    }

    #[test]
    fn every_statement_declares_the_columns_its_text_returns() {
        for statement in STATEMENTS {
            assert_eq!(
                returned_columns(statement.text()),
                statement.columns(),
                "{}",
                statement.name()
            );
        }
        // The two that return a whole session return the same columns, and so do the three updates,
        // which decoding reads by position.
        for statement in [LOAD, INSERT] {
            assert_eq!(statement.columns(), statements::SESSION_COLUMNS);
        }
        for statement in [UPDATE, UPDATE_KEYS, UPDATE_KEYS_UNCONDITIONAL] {
            assert_eq!(statement.columns(), statements::UPDATED_COLUMNS);
        }
        assert!(DELETE.columns().is_empty() && CLEANUP_BATCH.columns().is_empty());
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
            PlanKind::Update(update) => *update,
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
    fn key_changes_alone_take_the_narrow_statement() {
        let keys = Changes {
            set: vec![("a".to_string(), "1".to_string())],
            removed: vec!["gone".to_string()],
            ..no_changes()
        };
        let seen = Expected {
            keys: vec![
                ("a".to_string(), Some("0".to_string())),
                ("missing".to_string(), None),
            ],
            user: Some(Some(7)),
            ..nothing_expected()
        };
        let mut c = default_config();
        c.idle_timeout = Some(600);
        let same = token::hash(TOKEN);
        // Merge, with keys and the user seen, and an idle deadline to slide: the narrow statement.
        let update = update_plan(
            plan_save(&c, save(session(true), keys.clone(), seen.clone()), NOW).unwrap(),
        );
        assert!(update.keys_only(&same));
        let params = update.keys_params(NOW, 1000);
        check_params(UPDATE_KEYS, &params);
        assert!(matches!(&params[0], SqlValue::Bytes(b) if b[..] == same));
        assert!(matches!(params[1], SqlValue::Timestamp(NOW)));
        assert!(matches!(&params[2], SqlValue::TextArray(k) if k == &["gone".to_string()]));
        assert!(matches!(&params[3], SqlValue::Json(j) if j == "{\"a\":1}"));
        assert!(matches!(params[4], SqlValue::Timestamp(t) if t == NOW + 600 * S));
        assert!(matches!(
            (&params[5], &params[6]),
            (SqlValue::Null, SqlValue::Null)
        ));
        assert!(matches!(params[7], SqlValue::Null));
        assert!(matches!(&params[8], SqlValue::Json(j) if j == "{\"a\":0}"));
        assert!(matches!(&params[9], SqlValue::TextArray(k) if k == &["missing".to_string()]));
        assert!(matches!(
            (&params[10], &params[11]),
            (SqlValue::Boolean(true), SqlValue::Int64(7))
        ));
        assert!(matches!(params[12], SqlValue::Int64(1000)));
        // The stored data comes back if another request wrote after version 3, the copy's.
        assert!(matches!(params[13], SqlValue::Int64(3)));
        assert!(!update.unconditional());
        // Rotating the token needs the general statement.
        assert!(!update.keys_only(&token::hash(OTHER)));
        // Strict: the version, nothing else.
        c.concurrency = Concurrency::Strict;
        let update = update_plan(
            plan_save(&c, save(session(true), keys.clone(), seen.clone()), NOW).unwrap(),
        );
        assert!(update.keys_only(&same));
        let params = update.keys_params(NOW, 1000);
        check_params(UPDATE_KEYS, &params);
        assert!(matches!(params[7], SqlValue::Int64(_)));
        assert!(params[8..10].iter().all(|p| matches!(p, SqlValue::Null)));
        assert!(matches!(params[10], SqlValue::Boolean(false)));
        assert!(!update.unconditional());
        // Merge with nothing read still brings the data back when another request wrote.
        c.concurrency = Concurrency::Merge;
        let update = update_plan(
            plan_save(
                &c,
                save(session(true), keys.clone(), nothing_expected()),
                NOW,
            )
            .unwrap(),
        );
        assert!(update.keys_only(&same) && !update.unconditional());
        // Last write wins: no condition, no slide without an idle timeout.
        c.concurrency = Concurrency::LastWriteWins;
        c.idle_timeout = None;
        let update = update_plan(
            plan_save(&c, save(session(true), keys.clone(), seen.clone()), NOW).unwrap(),
        );
        assert!(update.keys_only(&same));
        let params = update.keys_params(NOW, 1000);
        check_params(UPDATE_KEYS, &params);
        assert!(params[4..10].iter().all(|p| matches!(p, SqlValue::Null)));
        assert!(matches!(params[10], SqlValue::Boolean(false)));
        // ... and the copy keeps its own data: none comes back.
        assert!(matches!(params[13], SqlValue::Null));
        // So it takes the statement without conditions: the same first seven parameters, the limit.
        assert!(update.unconditional());
        let unconditional = update.unconditional_params(NOW, 1000);
        check_params(UPDATE_KEYS_UNCONDITIONAL, &unconditional);
        assert_eq!(
            format!("{:?}", &unconditional[..7]),
            format!("{:?}", &params[..7])
        );
        assert!(matches!(unconditional[7], SqlValue::Int64(1000)));
        // With an idle timeout it slides, as the conditional statement does.
        c.idle_timeout = Some(600);
        let sliding = update_plan(
            plan_save(&c, save(session(true), keys.clone(), seen.clone()), NOW).unwrap(),
        );
        assert!(sliding.unconditional());
        let unconditional = sliding.unconditional_params(NOW, 1000);
        assert!(matches!(unconditional[4], SqlValue::Timestamp(t) if t == NOW + 600 * S));
        let conditional = sliding.keys_params(NOW, 1000);
        assert_eq!(
            format!("{:?}", &unconditional[..7]),
            format!("{:?}", &conditional[..7])
        );
        c.idle_timeout = None;
        let params = update.params(&same, NOW, 1000);
        check_params(UPDATE, &params);
        assert!(matches!(params[27], SqlValue::Null));
        // Anything beyond keys, or a condition the narrow statement lacks: the general one.
        c.concurrency = Concurrency::Merge;
        let read_whole = |value: &str| Expected {
            keys: vec![("a".to_string(), Some(value.to_string()))],
            ..seen.clone()
        };
        let general: [(Changes, Expected); 8] = [
            // A value read that is an object or an array is compared whole, which containment does not.
            (keys.clone(), read_whole(" {\"n\": 1}")),
            (keys.clone(), read_whole("[1, 2]")),
            (
                Changes {
                    cleared: true,
                    ..keys.clone()
                },
                seen.clone(),
            ),
            (
                Changes {
                    user: Some(Some(1)),
                    ..keys.clone()
                },
                seen.clone(),
            ),
            (
                Changes {
                    label: Some(Some("x".to_string())),
                    ..keys.clone()
                },
                seen.clone(),
            ),
            (
                Changes {
                    expiry: Some(None),
                    ..keys.clone()
                },
                seen.clone(),
            ),
            (
                keys.clone(),
                Expected {
                    all_data: Some("{}".to_string()),
                    ..seen.clone()
                },
            ),
            (
                keys.clone(),
                Expected {
                    expiry: Some(None),
                    ..seen.clone()
                },
            ),
        ];
        for (changes, expected) in general {
            let update =
                update_plan(plan_save(&c, save(session(true), changes, expected), NOW).unwrap());
            assert!(!update.keys_only(&same), "{update:?}");
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

    /// A row set as the host sends it: rows of values by position, no column names.
    fn rows(rows: Vec<Vec<SqlValue>>) -> RowSet {
        RowSet {
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
                &rows(vec![vec![SqlValue::Boolean(taken), SqlValue::Int64(size)]]),
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
            why_not_inserted(&rows(vec![]), 100),
            Err(StoreError::UnexpectedResult(m)) if m == "why-not-inserted returned 0 rows, expected 1"
        ));
        // Swapped columns are wrong kinds, named by position and declared name.
        assert!(matches!(
            why_not_inserted(&rows(vec![vec![SqlValue::Int64(1), SqlValue::Boolean(true)]]), 100),
            Err(StoreError::UnexpectedResult(m))
                if m == "why-not-inserted: column 1 (taken) is int64, expected boolean"
        ));
    }

    #[test]
    fn why_an_update_wrote_nothing() {
        let check = |expires_at, size| {
            why_not_updated(
                &rows(vec![vec![
                    SqlValue::Int64(4),
                    SqlValue::Timestamp(expires_at),
                    SqlValue::Int64(size),
                ]]),
                NOW,
                100,
            )
        };
        assert!(matches!(
            why_not_updated(&rows(vec![]), NOW, 100),
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
                &rows(vec![vec![SqlValue::Int64(4), SqlValue::Null, SqlValue::Int64(1)]]),
                NOW,
                100
            ),
            Err(StoreError::UnexpectedResult(m))
                if m == "why-not-updated: column 2 (expires_at) is null, expected timestamp"
        ));
        assert!(matches!(
            why_not_updated(&rows(vec![vec![SqlValue::Int64(4), SqlValue::Timestamp(NOW)]]), NOW, 100),
            Err(StoreError::UnexpectedResult(m))
                if m == "why-not-updated: row 0 has 2 values for 3 columns"
        ));
    }

    // -- decoding -------------------------------------------------------------------------------------

    fn row(values: [SqlValue; 10]) -> RowSet {
        rows(vec![values.to_vec()])
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
        session_from_row(
            &Row::new(rows, 0, LOAD)?,
            TOKEN.to_string(),
            &token::hash(TOKEN),
        )
    }

    fn unexpected_message<T: std::fmt::Debug>(result: Result<T, StoreError>) -> String {
        match result {
            Err(StoreError::UnexpectedResult(m)) => m,
            other => panic!("expected unexpected-result, got {other:?}"),
        }
    }

    #[test]
    fn a_session_row_decodes_by_position_with_its_data_unparsed() {
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
        // Positions follow the declared columns: the timestamps in another order are other deadlines.
        let mut swapped = good_row();
        swapped.swap(6, 7);
        let s = decode(&row(swapped)).unwrap();
        assert_eq!((s.expires_at, s.absolute_expires_at), (4, 3));
        // Values in another order are wrong kinds, never silently misread.
        let mut reversed = good_row();
        reversed.reverse();
        assert_eq!(
            unexpected_message(decode(&row(reversed))),
            "load: column 7 (expires_at) is text, expected timestamp"
        );
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
    fn wrong_kinds_name_the_statement_column_and_kind_never_the_content() {
        for (i, value, message) in [
            (
                0,
                SqlValue::Text("s3cret".to_string()),
                "load: column 1 (data) is text, expected json",
            ),
            (
                1,
                SqlValue::Text("s3cret".to_string()),
                "load: column 2 (user_id) is text, expected int64 or null",
            ),
            (
                2,
                SqlValue::Bytes(b"s3cret".to_vec()),
                "load: column 3 (label) is bytes, expected text or null",
            ),
            (
                3,
                SqlValue::Int64(1),
                "load: column 4 (expiry_mode) is int64, expected text or null",
            ),
            (
                4,
                SqlValue::Json("1".to_string()),
                "load: column 5 (expiry_value) is json, expected int64 or null",
            ),
            (
                5,
                SqlValue::Null,
                "load: column 6 (created_at) is null, expected timestamp",
            ),
            (
                6,
                SqlValue::Int64(3),
                "load: column 7 (expires_at) is int64, expected timestamp",
            ),
            (
                7,
                SqlValue::Float64(1.5),
                "load: column 8 (absolute_expires_at) is float64, expected timestamp or null",
            ),
            (
                8,
                SqlValue::Boolean(true),
                "load: column 9 (updated_at) is boolean, expected timestamp",
            ),
            (
                9,
                SqlValue::Int64(-1),
                "load: column 10 (version) is negative",
            ),
            (
                9,
                SqlValue::TextArray(vec!["s3cret".to_string()]),
                "load: column 10 (version) is text-array, expected int64",
            ),
        ] {
            let mut values = good_row();
            values[i] = value;
            let m = unexpected_message(decode(&row(values)));
            assert_eq!(m, message);
            assert!(!m.contains("s3cret"));
            // Each message names the column this position declares.
            assert!(
                m.contains(&format!("({})", statements::SESSION_COLUMNS[i])),
                "{m}"
            );
        }
        // The writes name themselves.
        let mut values = good_row();
        values[5] = SqlValue::Null;
        assert_eq!(
            unexpected_message(written(
                &row(values),
                INSERT,
                TOKEN.to_string(),
                &token::hash(TOKEN),
                None
            )),
            "insert: column 6 (created_at) is null, expected timestamp"
        );
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
            "load: row 0 has 9 values for 10 columns"
        );
        let mut long = row(good_row());
        long.rows[0].push(SqlValue::Null);
        assert_eq!(
            unexpected_message(decode(&long)),
            "load: row 0 has 11 values for 10 columns"
        );
        assert_eq!(
            unexpected_message(written(
                &rows(vec![]),
                INSERT,
                TOKEN.to_string(),
                &token::hash(TOKEN),
                None
            )),
            "insert returned 0 rows, expected 1"
        );
        let two = rows(vec![good_row().to_vec(), good_row().to_vec()]);
        assert_eq!(
            unexpected_message(written(
                &two,
                UPDATE,
                TOKEN.to_string(),
                &token::hash(TOKEN),
                Some(WrittenCopy::default())
            )),
            "update returned 2 rows, expected 1"
        );
        assert!(
            written(
                &row(good_row()),
                INSERT,
                TOKEN.to_string(),
                &token::hash(TOKEN),
                None
            )
            .is_ok()
        );
        assert_eq!(
            unexpected_message(count_from(&rows(vec![vec![SqlValue::Int64(-3)]]))),
            "count-expired: column 1 (expired) is negative"
        );
        assert_eq!(
            unexpected_message(count_from(&rows(vec![vec![]]))),
            "count-expired: row 0 has 0 values for 1 columns"
        );
        assert_eq!(
            count_from(&rows(vec![vec![SqlValue::Int64(3)]])).unwrap(),
            3
        );
    }

    /// Every statement that returns rows is decoded with as many values as it declares columns.
    #[test]
    fn every_decoder_reads_the_columns_its_statement_declares() {
        let row_of = |statement: Statement| {
            let mut good = Vec::new();
            for name in statement.columns() {
                good.push(match *name {
                    "data" => SqlValue::Json("{}".to_string()),
                    "id_hash" => bytes(&token::hash(TOKEN)),
                    "taken" => SqlValue::Boolean(false),
                    "version" | "size" | "merged_size" | "expired" => SqlValue::Int64(1),
                    "user_id" | "label" | "expiry_mode" | "expiry_value" => SqlValue::Null,
                    _ => SqlValue::Timestamp(NOW + S),
                });
            }
            rows(vec![good])
        };
        let mut s = decode(&row(good_row())).unwrap();
        for statement in STATEMENTS {
            let rows = row_of(statement);
            let decoded = match statement {
                LOAD | INSERT => written(
                    &rows,
                    statement,
                    TOKEN.to_string(),
                    &token::hash(TOKEN),
                    None,
                )
                .map(drop),
                UPDATE | UPDATE_KEYS | UPDATE_KEYS_UNCONDITIONAL => written(
                    &rows,
                    statement,
                    TOKEN.to_string(),
                    &token::hash(TOKEN),
                    Some(WrittenCopy::default()),
                )
                .map(drop),
                TOUCH => apply_touch(&mut s, &rows),
                WHY_NOT_INSERTED => why_not_inserted(&rows, 100).map(drop),
                WHY_NOT_UPDATED => why_not_updated(&rows, NOW, 100).map(drop),
                COUNT_EXPIRED => count_from(&rows).map(drop),
                USER_SESSIONS => user_sessions_from_rows(&rows, 9).map(drop),
                _ => {
                    assert!(statement.columns().is_empty(), "{}", statement.name());
                    continue;
                }
            };
            assert!(decoded.is_ok(), "{}: {decoded:?}", statement.name());
        }
    }

    #[test]
    fn an_update_returns_the_stored_data_only_when_another_request_wrote() {
        let copy = || WrittenCopy {
            data: "{\"mine\":1}".to_string(),
            created_at: 11,
            absolute_expires_at: 99,
        };
        let updated = |data: SqlValue| {
            rows(vec![vec![
                data,
                SqlValue::Int64(7),
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Null,
                SqlValue::Timestamp(50),
                SqlValue::Timestamp(40),
                SqlValue::Int64(4),
            ]])
        };
        let hash = token::hash(TOKEN);
        // Nobody else wrote: the copy's data, with the row's user, deadline, time and version.
        let (s, stored) = written(
            &updated(SqlValue::Null),
            UPDATE_KEYS,
            TOKEN.to_string(),
            &hash,
            Some(copy()),
        )
        .unwrap();
        assert!(!stored);
        assert_eq!(s.data, "{\"mine\":1}");
        assert_eq!((s.user_id, s.version, s.is_saved), (Some(7), 4, true));
        assert_eq!(
            (
                s.created_at,
                s.expires_at,
                s.absolute_expires_at,
                s.updated_at
            ),
            (11, 50, 99, 40)
        );
        assert_eq!(s.handle, token::handle(TOKEN));
        // Someone did: the merged data as stored.
        let (s, stored) = written(
            &updated(SqlValue::Json("{\"mine\": 1, \"theirs\": 2}".to_string())),
            UPDATE,
            TOKEN.to_string(),
            &hash,
            Some(copy()),
        )
        .unwrap();
        assert!(stored);
        assert_eq!(s.data, "{\"mine\": 1, \"theirs\": 2}");
        // Anything else in the data column is unexpected.
        assert_eq!(
            unexpected_message(written(
                &updated(SqlValue::Text("{}".to_string())),
                UPDATE,
                TOKEN.to_string(),
                &hash,
                Some(copy()),
            )),
            "update: column 1 (data) is text, expected json or null"
        );
    }

    #[test]
    fn touch_results_update_the_deadline() {
        let mut s = decode(&row(good_row())).unwrap();
        apply_touch(&mut s, &rows(vec![])).unwrap();
        assert_eq!((s.expires_at, s.updated_at), (3, 2));
        apply_touch(
            &mut s,
            &rows(vec![vec![SqlValue::Timestamp(30), SqlValue::Timestamp(20)]]),
        )
        .unwrap();
        assert_eq!((s.expires_at, s.updated_at, s.version), (30, 20, 5));
        let two = vec![SqlValue::Timestamp(30), SqlValue::Timestamp(20)];
        assert_eq!(
            unexpected_message(apply_touch(&mut s, &rows(vec![two.clone(), two]))),
            "touch returned 2 rows for one id"
        );
        assert_eq!(
            unexpected_message(apply_touch(
                &mut s,
                &rows(vec![vec![SqlValue::Timestamp(30), SqlValue::Null]])
            )),
            "touch: column 2 (updated_at) is null, expected timestamp"
        );
    }

    #[test]
    fn user_sessions_decode_with_handles() {
        let hash = token::hash(TOKEN);
        let listed = user_sessions_from_rows(
            &rows(vec![vec![
                bytes(&hash),
                SqlValue::Json("{}".to_string()),
                SqlValue::Null,
                SqlValue::Timestamp(1),
                SqlValue::Timestamp(3),
                SqlValue::Timestamp(2),
            ]]),
            9,
        )
        .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].handle, token::handle(TOKEN));
        assert_eq!(listed[0].user_id, 9);
        assert_eq!(listed[0].data, "{}");
        assert_eq!(
            (
                listed[0].created_at,
                listed[0].expires_at,
                listed[0].updated_at
            ),
            (1, 3, 2)
        );
        let bad = user_sessions_from_rows(
            &rows(vec![vec![
                SqlValue::Bytes(vec![1; 31]),
                SqlValue::Json("{}".to_string()),
                SqlValue::Null,
                SqlValue::Timestamp(1),
                SqlValue::Timestamp(3),
                SqlValue::Timestamp(2),
            ]]),
            9,
        );
        assert_eq!(
            unexpected_message(bad),
            "user-sessions: column 1 (id_hash) has 31 bytes, expected 32"
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
