//! A hostile implementation of the `session-store` world, for the host's sandbox tests.
//!
//! `statements()` declares exactly these texts (index: statement), as the `pub const`s below:
//!
//! ```text
//! 0  DROP TABLE wasm_sessions.sessions
//! 1  SELECT rolname, rolpassword FROM pg_authid
//! 2  SELECT * FROM public.refinery_schema_history
//! 3  COPY (SELECT 1) TO PROGRAM 'touch /tmp/wasm-sessions-pwned'
//! 4  CREATE TEMP TABLE sessions (id int)
//! 5  SET search_path TO pg_temp
//! 6  BEGIN
//! 7  SELECT pg_sleep(3600)
//! 8  SELECT set_config('search_path', 'nowhere', false)
//! 9  SELECT 1 AS one
//! ```
//!
//! `sql-query` names a statement by its index in that list, so a component can only name what it
//! declared: an undeclared statement has no index, and the attacks on pinning send indexes outside the
//! list. `load(config, id)` runs the attack `id` names and reports what the host answered:
//!
//! - `declared:<n>`: sends index `n` (a declared statement, 0-based, above) once, without parameters;
//! - `undeclared:drop`: sends index 10, one past the list (where a `DROP TABLE` the component did not
//!   declare would have to be);
//! - `undeclared:many`: sends the out-of-range indexes 10 .. 10009 one after the other while the host
//!   refuses them, and stops at the first other answer;
//! - `sleep-in-host`: sends the declared `SELECT pg_sleep(3600)` (index 7);
//! - `loop`: spins forever (for the fuel or epoch limit);
//! - `hoard`: allocates 1 MiB chunks forever (for the memory limit);
//! - `panic`: panics (a trap).
//!
//! The outcome is always an error, so a test can match on the variant:
//!
//! - a statement failed: `database(<the sql-error the host returned>)`, unchanged;
//! - a statement succeeded: `unexpected-result("ran: <statement>")`;
//! - `undeclared:many`, every index refused: `database(refused("<n> of 10000 undeclared statements
//!   refused; the last: <the host's message>"))`; one succeeded: `unexpected-result("ran: index <i>
//!   after <n> refused")`; another error: `database(<it>)`, unchanged;
//! - an unknown attack or statement index: `unexpected-result("no such attack: ...")`.
//!
//! `default-config` (cookie `misbehaving`, max-age 60, secure ...) and `validate-config` behave, so a
//! store can be built; `removal-cookie-header` returns an empty string and `statements` the list above.
//! Every other export answers `unexpected-result("the misbehaving guest does not do this")`.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "session-store" });
}

use bindings::exports::wasm_sessions::store::store::{
    CommitOutcome, CommitRequest, Concurrency, Config, Expiry, Guest, RequestSession, SameSite,
    Session, StoreError, UserSession,
};
use bindings::wasm_sessions::store::sql::{SqlError, sql_query};

/// Declared statement 0.
pub const DROP_TABLE: &str = "DROP TABLE wasm_sessions.sessions";
/// Declared statement 1.
pub const READ_PASSWORDS: &str = "SELECT rolname, rolpassword FROM pg_authid";
/// Declared statement 2.
pub const READ_MIGRATIONS: &str = "SELECT * FROM public.refinery_schema_history";
/// Declared statement 3.
pub const COPY_TO_PROGRAM: &str = "COPY (SELECT 1) TO PROGRAM 'touch /tmp/wasm-sessions-pwned'";
/// Declared statement 4.
pub const SHADOW_TABLE: &str = "CREATE TEMP TABLE sessions (id int)";
/// Declared statement 5.
pub const SET_SEARCH_PATH: &str = "SET search_path TO pg_temp";
/// Declared statement 6.
pub const BEGIN: &str = "BEGIN";
/// Declared statement 7.
pub const SLEEP: &str = "SELECT pg_sleep(3600)";
/// Declared statement 8.
pub const SET_CONFIG: &str = "SELECT set_config('search_path', 'nowhere', false)";
/// Declared statement 9: harmless.
pub const SELECT_ONE: &str = "SELECT 1 AS one";

/// Everything `statements()` declares, in index order.
pub const DECLARED: [&str; 10] = [
    DROP_TABLE,
    READ_PASSWORDS,
    READ_MIGRATIONS,
    COPY_TO_PROGRAM,
    SHADOW_TABLE,
    SET_SEARCH_PATH,
    BEGIN,
    SLEEP,
    SET_CONFIG,
    SELECT_ONE,
];

/// Not declared: the first index past [`DECLARED`].
pub const UNDECLARED: u32 = DECLARED.len() as u32;

/// How many undeclared indexes `undeclared:many` sends at most (from [`UNDECLARED`] on).
pub const MANY: u32 = 10_000;

struct Hostile;

fn refuse<T>() -> Result<T, StoreError> {
    Err(StoreError::UnexpectedResult(
        "the misbehaving guest does not do this".into(),
    ))
}

/// The index of declared statement `text`.
fn index_of(text: &str) -> u32 {
    DECLARED
        .iter()
        .position(|s| *s == text)
        .unwrap_or(DECLARED.len()) as u32
}

/// Sends statement `index` once and reports the host's answer.
fn send(index: u32) -> StoreError {
    match sql_query(index, &[]) {
        Ok(_) => StoreError::UnexpectedResult(format!(
            "ran: {}",
            DECLARED
                .get(index as usize)
                .copied()
                .unwrap_or("an undeclared index")
        )),
        Err(e) => StoreError::Database(e),
    }
}

/// Sends distinct undeclared indexes while the host refuses them.
fn send_many() -> StoreError {
    let mut last = String::new();
    for i in 0..MANY {
        let index = UNDECLARED + i;
        match sql_query(index, &[]) {
            Ok(_) => {
                return StoreError::UnexpectedResult(format!(
                    "ran: index {index} after {i} refused"
                ));
            }
            Err(SqlError::Refused(message)) => last = message,
            Err(other) => return StoreError::Database(other),
        }
    }
    StoreError::Database(SqlError::Refused(format!(
        "{MANY} of {MANY} undeclared statements refused; the last: {last}"
    )))
}

/// Runs the attack `id` names.
fn attack(id: &str) -> StoreError {
    match id {
        "undeclared:drop" => send(UNDECLARED),
        "undeclared:many" => send_many(),
        "sleep-in-host" => send(index_of(SLEEP)),
        "loop" => {
            let mut counter: u64 = 0;
            loop {
                counter = std::hint::black_box(counter.wrapping_add(1));
            }
        }
        "hoard" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("a guest bug"),
        _ => match id
            .strip_prefix("declared:")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| (*n as usize) < DECLARED.len())
        {
            Some(index) => send(index),
            None => StoreError::UnexpectedResult(format!("no such attack: {id}")),
        },
    }
}

impl Guest for Hostile {
    fn default_config() -> Config {
        Config {
            cookie_name: "misbehaving".into(),
            max_age: 60,
            http_only: true,
            secure: true,
            same_site: SameSite::Strict,
            domain: None,
            path: "/".into(),
            idle_timeout: None,
            max_data_bytes: 1024,
            concurrency: Concurrency::Merge,
        }
    }

    fn validate_config(_: Config) -> Result<(), StoreError> {
        Ok(())
    }

    fn statements() -> Vec<String> {
        DECLARED.iter().map(|s| s.to_string()).collect()
    }

    fn generate_session_id() -> Result<String, StoreError> {
        refuse()
    }

    fn new_session(_: Config, _: Option<Expiry>) -> Result<Session, StoreError> {
        refuse()
    }

    fn load(_: Config, id: String) -> Result<Session, StoreError> {
        Err(attack(&id))
    }

    fn load_from_cookie(_: Config, _: String) -> Result<RequestSession, StoreError> {
        refuse()
    }

    fn commit(_: Config, _: CommitRequest) -> Result<CommitOutcome, StoreError> {
        refuse()
    }

    fn delete(_: String) -> Result<bool, StoreError> {
        refuse()
    }

    fn cleanup_batch(_: i64, _: u32) -> Result<u64, StoreError> {
        refuse()
    }

    fn count_expired(_: i64) -> Result<u64, StoreError> {
        refuse()
    }

    fn get_user_sessions(_: i64) -> Result<Vec<UserSession>, StoreError> {
        refuse()
    }

    fn delete_user_sessions(_: i64) -> Result<u64, StoreError> {
        refuse()
    }

    fn delete_user_sessions_except(_: i64, _: String) -> Result<u64, StoreError> {
        refuse()
    }

    fn revoke_session(_: i64, _: String) -> Result<bool, StoreError> {
        refuse()
    }

    fn cookie_header(_: Config, _: Session) -> Result<String, StoreError> {
        refuse()
    }

    fn removal_cookie_header(_: Config) -> String {
        String::new()
    }
}

bindings::export!(Hostile with_types_in bindings);
