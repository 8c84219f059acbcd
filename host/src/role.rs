//! The least-privilege runtime role: the PostgreSQL role every connection but the migrations uses.
//!
//! The schema is applied by its owner (`PostgresDriver::migrate`, connected as the owner). The store, the
//! CLI's commands and `serve` connect as the runtime role, which can do exactly what the component's
//! contract needs and nothing else:
//!
//! - `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS`, a member of no role
//!   (no `pg_*` role either);
//! - `CONNECT` on its database, `USAGE` on the schema `wasm_sessions`, and `SELECT, INSERT, UPDATE, DELETE`
//!   on the table `wasm_sessions.sessions`: nothing on any other table (`refinery_schema_history`
//!   included), no `TRUNCATE`, `REFERENCES` or `TRIGGER`, no `CREATE` anywhere;
//! - no temporary tables: PostgreSQL grants `TEMPORARY` on every database to `PUBLIC` by default, so the
//!   grants **revoke `TEMPORARY` on the database from `PUBLIC`** (every role then needs an explicit grant
//!   to create temporary tables there), and they **revoke `CREATE` on schema `public` from `PUBLIC`**
//!   (PostgreSQL 15 and later already do not grant it; older versions do);
//! - a fixed `search_path` (`pg_catalog` only) for its connections to that database: every statement of
//!   the component is schema-qualified, so no object of another schema can be slipped into its path.
//!
//! [`RuntimeRole`] holds the SQL in one place: [`RuntimeRole::grant_statements`] lists it (the CLI's
//! `grant-runtime-role` prints it, via [`RuntimeRole::grant_script`], for a server the user brings),
//! [`RuntimeRole::apply`] runs it as the owner (the embedded cluster and the test harness), and
//! [`RuntimeRole::runtime_url`] derives the runtime role's connection string from the owner's.

use std::fmt;

use tokio_postgres::error::SqlState;

/// The runtime role's name unless one is chosen: `wasm_sessions_runtime`.
pub const DEFAULT_RUNTIME_ROLE: &str = "wasm_sessions_runtime";

/// The schema the component's table lives in (migration V3).
pub const SESSIONS_SCHEMA: &str = "wasm_sessions";

/// The one table the runtime role may read and write, schema-qualified.
pub const SESSIONS_TABLE: &str = "wasm_sessions.sessions";

/// The longest role name PostgreSQL keeps (`NAMEDATALEN - 1`).
const MAX_NAME_LEN: usize = 63;

/// How often [`RuntimeRole::apply`] runs the grants again after a concurrent catalog update.
const MAX_ATTEMPTS: usize = 20;

/// Why a runtime role could not be described or its connection string derived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// The role name is not `[a-z_][a-z0-9_]{0,62}`, or PostgreSQL reserves it.
    #[error("invalid role name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The owner's connection string could not be rewritten for the runtime role (the message never
    /// repeats the connection string, which may hold a password).
    #[error("cannot derive the runtime role's connection string: {0}")]
    InvalidUrl(&'static str),
}

/// The least-privilege role the store connects as: a validated name and an optional password.
///
/// ```
/// # use wasm_sessions::RuntimeRole;
/// let role = RuntimeRole::default();
/// assert_eq!(role.name(), "wasm_sessions_runtime");
/// let sql = role.grant_statements("app");
/// assert!(sql.iter().any(|s| s == r#"REVOKE TEMPORARY ON DATABASE "app" FROM PUBLIC"#));
/// assert!(RuntimeRole::new("Robert'); DROP TABLE students;--").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RuntimeRole {
    name: String,
    password: Option<String>,
}

impl fmt::Debug for RuntimeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeRole")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for RuntimeRole {
    /// [`DEFAULT_RUNTIME_ROLE`], without a password.
    fn default() -> Self {
        Self {
            name: DEFAULT_RUNTIME_ROLE.to_owned(),
            password: None,
        }
    }
}

impl RuntimeRole {
    /// A runtime role named `name`, without a password.
    ///
    /// # Errors
    /// [`RoleError::InvalidName`] unless `name` matches `[a-z_][a-z0-9_]{0,62}` and is not reserved by
    /// PostgreSQL (`pg_*`, `public`, `none`, `current_user`, `current_role`, `session_user`).
    pub fn new(name: impl Into<String>) -> Result<Self, RoleError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Self {
            name,
            password: None,
        })
    }

    /// The same role with a password: [`RuntimeRole::grant_statements`] then sets it (`ALTER ROLE ...
    /// PASSWORD`) and [`RuntimeRole::runtime_url`] puts it in the connection string. Without one, the
    /// server must authenticate the role otherwise (`trust` on a private socket, `peer`, certificates).
    #[must_use]
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// The role's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The role's password, if it has one.
    #[must_use]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The statements that create the role when it is missing and grant it exactly its privileges on
    /// `database`, without terminating semicolons. Run them in order, as one transaction, as the schema's
    /// owner (a role with `CREATEROLE` that owns the database, the schema `wasm_sessions` and the
    /// migration history) connected to `database`, after the migrations.
    ///
    /// They are idempotent and may run concurrently from several connections: the role is created only
    /// when missing, and a concurrent creation of it is caught (`duplicate_object` /
    /// `unique_violation`); two sessions updating the same catalog row at once (the password, the grants
    /// on one table) make one fail with "tuple concurrently updated", which [`RuntimeRole::apply`] runs
    /// again. The first statement refuses (SQLSTATE 55000) to make a role of the owner, a
    /// role that already has `SUPERUSER`, `CREATEDB`, `CREATEROLE`, `REPLICATION` or `BYPASSRLS` (they are
    /// never taken away silently), a role that owns the database, the schema or the table, or to run on
    /// another database than `database`.
    ///
    /// Note that two of them change what **every** role may do in `database`: `REVOKE TEMPORARY ON
    /// DATABASE ... FROM PUBLIC` (PostgreSQL grants temporary tables to everyone by default) and `REVOKE
    /// CREATE ON SCHEMA public FROM PUBLIC` (the default before PostgreSQL 15).
    #[must_use]
    pub fn grant_statements(&self, database: &str) -> Vec<String> {
        self.plan(database)
            .into_iter()
            .map(|(_, sql)| sql)
            .collect()
    }

    /// [`RuntimeRole::grant_statements`] as a script for `psql`: a comment on each statement, the whole
    /// in one transaction (`BEGIN` ... `COMMIT`). It contains the password when the role has one.
    #[must_use]
    pub fn grant_script(&self, database: &str) -> String {
        let mut script = format!(
            "-- The runtime role {role} for database {db}.\n\
             -- It may only SELECT, INSERT, UPDATE and DELETE rows of {SESSIONS_TABLE}.\n\
             -- Run this as the schema's owner (a role with CREATEROLE that owns the database and ran\n\
             -- `wasm-sessions migrate`), connected to {db}.\n\
             -- Note: it revokes TEMPORARY on the database and CREATE on schema public from PUBLIC, that\n\
             -- is from every role (PostgreSQL grants TEMPORARY to PUBLIC by default, and CREATE on\n\
             -- public before version 15).\n",
            role = quote_ident(&self.name),
            db = quote_ident(database),
        );
        if self.password.is_none() {
            script.push_str(&format!(
                "-- No password is set: give the role one (psql: \\password {}) unless the server\n\
                 -- authenticates it otherwise.\n",
                self.name
            ));
        }
        script.push_str("BEGIN;\n");
        for (comment, sql) in self.plan(database) {
            script.push('\n');
            for line in comment.lines() {
                script.push_str(&format!("-- {line}\n"));
            }
            script.push_str(&format!("{sql};\n"));
        }
        script.push_str("\nCOMMIT;\n");
        script
    }

    /// Runs [`RuntimeRole::grant_statements`] on `owner`, a connection of the schema's owner to
    /// `database`, in one transaction (one simple-query batch: all or nothing; do not call it inside a
    /// transaction of your own). A batch that fails because a concurrent session updated the same catalog
    /// row ("tuple concurrently updated", a serialization failure or a deadlock) is run again, up to 20
    /// times.
    ///
    /// # Errors
    /// The first failing statement's error: e.g. the schema `wasm_sessions` does not exist yet (SQLSTATE
    /// 3F000: migrate first), the owner lacks `CREATEROLE`, or the role is refused (SQLSTATE 55000, see
    /// [`RuntimeRole::grant_statements`]).
    pub async fn apply(
        &self,
        owner: &tokio_postgres::Client,
        database: &str,
    ) -> Result<(), tokio_postgres::Error> {
        let batch = self.grant_statements(database).join(";\n");
        let mut attempt = 1;
        loop {
            match owner.batch_execute(&batch).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < MAX_ATTEMPTS && is_concurrent_update(&error) => {
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The runtime role's connection string, derived from the owner's `owner_url`: the same hosts, ports,
    /// database and options, with this role's name and password instead of the owner's (a password the
    /// owner's string carries is never kept). Both forms are accepted: a `postgres://` /
    /// `postgresql://` URL (the result is a URL too; `user` and `password` query parameters are dropped)
    /// and a `key=value` string (the result has every value quoted).
    ///
    /// # Errors
    /// [`RoleError::InvalidUrl`] for a `key=value` string that does not parse.
    pub fn runtime_url(&self, owner_url: &str) -> Result<String, RoleError> {
        let owner_url = owner_url.trim();
        for scheme in ["postgres://", "postgresql://"] {
            if let Some(rest) = owner_url.strip_prefix(scheme) {
                return Ok(self.rewrite_url(scheme, rest));
            }
        }
        self.rewrite_key_values(owner_url)
    }

    fn rewrite_url(&self, scheme: &str, rest: &str) -> String {
        // Like tokio-postgres (and libpq), the credentials end at the first '@'.
        let rest = rest.split_once('@').map_or(rest, |(_, after)| after);
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let kept: Vec<&str> = query
            .split('&')
            .filter(|param| !param.is_empty())
            .filter(|param| {
                let key = param.split_once('=').map_or(*param, |(key, _)| key);
                !matches!(key, "user" | "password")
            })
            .collect();
        let mut url = format!("{scheme}{}", percent_encode(self.name.as_bytes()));
        if let Some(password) = &self.password {
            url.push(':');
            url.push_str(&percent_encode(password.as_bytes()));
        }
        url.push('@');
        url.push_str(location);
        if !kept.is_empty() {
            url.push('?');
            url.push_str(&kept.join("&"));
        }
        url
    }

    fn rewrite_key_values(&self, owner: &str) -> Result<String, RoleError> {
        let mut pairs: Vec<(String, String)> = parse_key_values(owner)?
            .into_iter()
            .filter(|(key, _)| !matches!(key.as_str(), "user" | "password"))
            .collect();
        pairs.push(("user".to_owned(), self.name.clone()));
        if let Some(password) = &self.password {
            pairs.push(("password".to_owned(), password.clone()));
        }
        Ok(pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", quote_key_value(value)))
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// Each statement with the comment `grant_script` prints above it.
    fn plan(&self, database: &str) -> Vec<(&'static str, String)> {
        let role = quote_ident(&self.name);
        let role_literal = quote_literal(&self.name);
        let db = quote_ident(database);
        let db_literal = quote_literal(database);
        let attributes =
            "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS";
        let mut plan = vec![
            (
                "Refuse the wrong database, the owner itself, a role with SUPERUSER, CREATEDB,\n\
                 CREATEROLE, REPLICATION or BYPASSRLS, and a role that owns the database, the schema\n\
                 or the table.",
                do_block(&format!(
                    "DECLARE\n    runtime pg_catalog.oid;\nBEGIN\n    \
                     IF pg_catalog.current_database() <> {db_literal} THEN\n        \
                     RAISE EXCEPTION USING ERRCODE = '55000',\n            MESSAGE = pg_catalog.format(\
                     'connected to database %s, but these grants are for database %s', \
                     pg_catalog.current_database(), {db_literal});\n    END IF;\n    \
                     IF {role_literal} IN (CURRENT_USER, SESSION_USER) THEN\n        \
                     RAISE EXCEPTION USING ERRCODE = '55000',\n            MESSAGE = \
                     'the runtime role must not be the role that applies the grants (the owner)';\n    \
                     END IF;\n    \
                     SELECT oid INTO runtime FROM pg_catalog.pg_roles WHERE rolname = {role_literal};\n    \
                     IF runtime IS NULL THEN\n        RETURN;\n    END IF;\n    \
                     IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE oid = runtime\n            \
                     AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)) THEN\n        \
                     RAISE EXCEPTION USING ERRCODE = '55000',\n            MESSAGE = pg_catalog.format(\
                     'role %s exists with SUPERUSER, CREATEDB, CREATEROLE, REPLICATION or BYPASSRLS; \
                     the runtime role must be a role of its own without them', {role_literal});\n    \
                     END IF;\n    \
                     IF EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = {db_literal} AND datdba = runtime)\n        \
                     OR EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = '{SESSIONS_SCHEMA}' AND nspowner = runtime)\n        \
                     OR EXISTS (SELECT FROM pg_catalog.pg_class\n            WHERE oid = pg_catalog.to_regclass('{SESSIONS_TABLE}') \
                     AND relowner = runtime) THEN\n        \
                     RAISE EXCEPTION USING ERRCODE = '55000',\n            MESSAGE = pg_catalog.format(\
                     'role %s owns the database, the schema {SESSIONS_SCHEMA} or the table {SESSIONS_TABLE}; \
                     the runtime role must own nothing', {role_literal});\n    END IF;\nEND"
                )),
            ),
            (
                "Create the role when it is missing (a concurrent creation is fine).",
                do_block(&format!(
                    "BEGIN\n    \
                     IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_literal}) THEN\n        \
                     CREATE ROLE {role} WITH {attributes};\n    END IF;\n\
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN\n    NULL;\nEND"
                )),
            ),
            (
                "An existing role: make it LOGIN and NOINHERIT (only when it is not already).",
                do_block(&format!(
                    "BEGIN\n    \
                     IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_literal}\n            \
                     AND (rolinherit OR NOT rolcanlogin)) THEN\n        \
                     ALTER ROLE {role} WITH LOGIN NOINHERIT;\n    END IF;\nEND"
                )),
            ),
        ];
        if let Some(password) = &self.password {
            plan.push((
                "Its password.",
                format!(
                    "ALTER ROLE {role} WITH PASSWORD {}",
                    quote_literal(password)
                ),
            ));
        }
        plan.extend([
            (
                "A member of no role (pg_read_all_data, pg_write_all_data and the like included).",
                do_block(&format!(
                    "DECLARE\n    granted record;\nBEGIN\n    \
                     FOR granted IN SELECT g.rolname FROM pg_catalog.pg_auth_members m\n            \
                     JOIN pg_catalog.pg_roles g ON g.oid = m.roleid\n            \
                     JOIN pg_catalog.pg_roles u ON u.oid = m.member\n            \
                     WHERE u.rolname = {role_literal} LOOP\n        \
                     EXECUTE pg_catalog.format('REVOKE %I FROM %I', granted.rolname, {role_literal});\n    \
                     END LOOP;\nEND"
                )),
            ),
            (
                "No CREATE or TEMPORARY on the database; CONNECT only.",
                format!("REVOKE ALL ON DATABASE {db} FROM {role}"),
            ),
            (
                "TEMPORARY is PUBLIC's by default: revoke it from PUBLIC (every role) on this\n\
                 database.",
                format!("REVOKE TEMPORARY ON DATABASE {db} FROM PUBLIC"),
            ),
            (
                "CONNECT explicitly, in case PUBLIC's is revoked.",
                format!("GRANT CONNECT ON DATABASE {db} TO {role}"),
            ),
            (
                "CREATE on schema public was PUBLIC's before PostgreSQL 15: revoke it from PUBLIC\n\
                 (every role).",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
            ),
            (
                "Nothing of its own in schema public (the migration history lives there).",
                format!("REVOKE ALL ON SCHEMA public FROM {role}"),
            ),
            (
                "No table of schema public.",
                format!("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}"),
            ),
            (
                "No sequence of schema public.",
                format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}"),
            ),
            (
                "The schema wasm_sessions: USAGE only (no CREATE), for the role alone.",
                format!("REVOKE ALL ON SCHEMA {SESSIONS_SCHEMA} FROM PUBLIC, {role}"),
            ),
            (
                "USAGE on wasm_sessions.",
                format!("GRANT USAGE ON SCHEMA {SESSIONS_SCHEMA} TO {role}"),
            ),
            (
                "Nothing on the schema's tables but what follows.",
                format!("REVOKE ALL ON ALL TABLES IN SCHEMA {SESSIONS_SCHEMA} FROM PUBLIC, {role}"),
            ),
            (
                "No sequence of wasm_sessions.",
                format!(
                    "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {SESSIONS_SCHEMA} FROM PUBLIC, {role}"
                ),
            ),
            (
                "Row privileges on the sessions table: no TRUNCATE, REFERENCES or TRIGGER.",
                format!("GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE {SESSIONS_TABLE} TO {role}"),
            ),
            (
                "A fixed search_path: every statement of the component is schema-qualified.",
                format!("ALTER ROLE {role} IN DATABASE {db} SET search_path = pg_catalog"),
            ),
        ]);
        plan
    }
}

/// Checks `[a-z_][a-z0-9_]{0,62}` and PostgreSQL's reserved role names.
fn validate_name(name: &str) -> Result<(), RoleError> {
    let invalid = |reason| {
        Err(RoleError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return invalid("it is empty"),
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        Some(_) => return invalid("it must start with a lower-case ASCII letter or '_'"),
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return invalid("only lower-case ASCII letters, digits and '_' are allowed");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("it is longer than 63 characters");
    }
    if name.starts_with("pg_") {
        return invalid("names starting with pg_ are reserved by PostgreSQL");
    }
    if matches!(
        name,
        "public" | "none" | "current_user" | "current_role" | "session_user"
    ) {
        return invalid("PostgreSQL reserves this name");
    }
    Ok(())
}

/// Whether `error` is a catalog row updated by a concurrent session, which running again resolves.
fn is_concurrent_update(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        let code = db.code();
        *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || (*code == SqlState::INTERNAL_ERROR && db.message().contains("concurrently"))
    })
}

/// `ident` as a quoted SQL identifier.
fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// `text` as an SQL string literal, whatever `standard_conforming_strings` is: an `E'...'` string with
/// backslashes and quotes doubled.
fn quote_literal(text: &str) -> String {
    if text.contains('\\') {
        format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// A `DO` block around `body`, dollar-quoted with a tag that does not occur in it.
fn do_block(body: &str) -> String {
    let mut tag = "$grant$".to_owned();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$grant{n}$");
    }
    format!("DO {tag}\n{body}\n{tag}")
}

/// Every byte but the URL-unreserved ones (`A-Z a-z 0-9 - . _ ~`) as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A `key=value` connection string's pairs, by tokio-postgres's (and libpq's) rules: values are bare
/// (up to whitespace) or single-quoted, with `\` escaping the next character in both.
fn parse_key_values(s: &str) -> Result<Vec<(String, String)>, RoleError> {
    let mut pairs = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        if it.next() != Some('=') {
            return Err(RoleError::InvalidUrl("expected key=value pairs"));
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                    None => return Err(RoleError::InvalidUrl("an unterminated quoted value")),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(RoleError::InvalidUrl("a key without a value"));
            }
        }
        pairs.push((key, value));
    }
}

/// `value` single-quoted for a `key=value` string, `\` and `'` escaped.
fn quote_key_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> tokio_postgres::Config {
        url.parse().expect("the derived connection string parses")
    }

    #[test]
    fn names_are_validated() {
        for good in [
            "wasm_sessions_runtime",
            "_r",
            "a",
            "app_rt_2",
            &"a".repeat(63),
        ] {
            assert!(RuntimeRole::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "9a",
            "App",
            "a-b",
            "a b",
            "a\"b",
            "é",
            "pg_monitor",
            "public",
            "none",
            "current_user",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(RuntimeRole::new(bad), Err(RoleError::InvalidName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_password_never_shows_in_debug() {
        let role = RuntimeRole::default().with_password("hunter2");
        assert!(!format!("{role:?}").contains("hunter2"));
    }

    #[test]
    fn the_statements_say_what_the_contract_says() {
        let sql = RuntimeRole::default().grant_statements("my db").join(";\n");
        for expected in [
            "CREATE ROLE \"wasm_sessions_runtime\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE \
             NOINHERIT NOREPLICATION NOBYPASSRLS",
            "EXCEPTION WHEN duplicate_object OR unique_violation",
            "REVOKE TEMPORARY ON DATABASE \"my db\" FROM PUBLIC",
            "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
            "GRANT USAGE ON SCHEMA wasm_sessions TO \"wasm_sessions_runtime\"",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE wasm_sessions.sessions TO \
             \"wasm_sessions_runtime\"",
            "ALTER ROLE \"wasm_sessions_runtime\" IN DATABASE \"my db\" SET search_path = pg_catalog",
        ] {
            assert!(sql.contains(expected), "missing: {expected}\n{sql}");
        }
        assert!(!sql.contains("PASSWORD"));
        let script = RuntimeRole::default().grant_script("my db");
        assert!(script.contains("BEGIN;") && script.trim_end().ends_with("COMMIT;"));
    }

    #[test]
    fn odd_database_names_and_passwords_are_quoted() {
        let role = RuntimeRole::default().with_password("it's a \\ $grant$ secret");
        let sql = role.grant_statements("we\"ird'$grant$db").join(";\n");
        assert!(sql.contains(r#"ON DATABASE "we""ird'$grant$db" FROM PUBLIC"#));
        assert!(sql.contains("= 'we\"ird''$grant$db'"));
        assert!(sql.contains("DO $grant1$"));
        assert!(sql.contains(r"WITH PASSWORD E'it''s a \\ $grant$ secret'"));
    }

    #[test]
    fn the_runtime_url_keeps_the_location_and_replaces_the_credentials() {
        let role = RuntimeRole::new("rt").unwrap().with_password("p@ss:w/rd");
        let url = role
            .runtime_url("postgres://owner:secret@db.example:6432,db2:7000/app?sslmode=disable&user=x&password=y&application_name=a")
            .unwrap();
        assert!(!url.contains("secret") && !url.contains("owner"));
        let c = config(&url);
        assert_eq!(c.get_user(), Some("rt"));
        assert_eq!(c.get_password(), Some(&b"p@ss:w/rd"[..]));
        assert_eq!(c.get_dbname(), Some("app"));
        assert_eq!(c.get_ports(), &[6432, 7000]);
        assert_eq!(c.get_hosts().len(), 2);
        assert_eq!(c.get_application_name(), Some("a"));

        let socket = RuntimeRole::default()
            .runtime_url("postgresql://postgres@%2Frun%2Fpg:5433/postgres")
            .unwrap();
        assert_eq!(
            socket,
            "postgresql://wasm_sessions_runtime@%2Frun%2Fpg:5433/postgres"
        );
        let c = config(&socket);
        assert_eq!(c.get_password(), None);
        assert!(
            matches!(&c.get_hosts()[0], tokio_postgres::config::Host::Unix(p) if p.as_os_str() == "/run/pg")
        );

        let bare = RuntimeRole::default()
            .runtime_url("postgres://h/db")
            .unwrap();
        assert_eq!(bare, "postgres://wasm_sessions_runtime@h/db");
    }

    #[test]
    fn the_runtime_key_value_string_replaces_the_credentials() {
        let role = RuntimeRole::new("rt").unwrap().with_password("a 'b' \\c");
        let url = role
            .runtime_url("host=/tmp port=5433 user=owner password='x y' dbname = 'my db'")
            .unwrap();
        assert!(!url.contains("owner") && !url.contains("x y"));
        let c = config(&url);
        assert_eq!(c.get_user(), Some("rt"));
        assert_eq!(c.get_password(), Some(&b"a 'b' \\c"[..]));
        assert_eq!(c.get_dbname(), Some("my db"));
        assert_eq!(c.get_ports(), &[5433]);
        assert!(role.runtime_url("host=").is_err());
        assert!(role.runtime_url("host='unterminated").is_err());
        assert!(role.runtime_url("justakey").is_err());
    }
}
