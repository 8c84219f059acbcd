//! End-to-end tests: the built `wasm-sessions` binary against a fresh database per test, as the runtime
//! role (`--database-url`), with the owner (`--owner-url`) where the schema is changed.
//!
//! Nothing here sleeps to let time pass: a session that must be expired has its deadlines moved into the
//! past through the owner's connection ([`expire`]).

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::{Value, json};
use tokio::process::Command;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");

/// What one run of the binary produced.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Captures exit code and output as text.
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "command failed: {self:#?}");
        self.stdout
    }

    /// Asserts success and parses the single JSON line of stdout.
    fn json(self) -> Value {
        let stdout = self.ok();
        let mut lines = stdout.lines();
        let value = serde_json::from_str(lines.next().expect("one line")).expect("valid JSON");
        assert_eq!(lines.next(), None, "more than one line: {stdout}");
        value
    }
}

/// A command for the binary with a clean environment for logging and the database.
fn command() -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env_remove("RUST_LOG")
        // One compilation cache for every run of the tests, outside the source tree.
        .env(
            "WASM_SESSIONS_CACHE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/wasm-cache"),
        );
    command
}

/// Runs the binary on `db`'s database as the runtime role.
async fn cli(db: &TestDb, args: &[&str]) -> Run {
    let output = command()
        .arg("--database-url")
        .arg(&db.url)
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    Run::from(output)
}

/// Runs the binary on `db`'s database with the runtime role's and the owner's URLs.
async fn cli_with_owner(db: &TestDb, args: &[&str]) -> Run {
    let output = command()
        .arg("--database-url")
        .arg(&db.url)
        .arg("--owner-url")
        .arg(&db.owner_url)
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    Run::from(output)
}

/// Creates a session with `args` added to `create --json`; returns its JSON (`{"token", "session"}`).
async fn create(db: &TestDb, args: &[&str]) -> Value {
    let mut all = vec!["create", "--json"];
    all.extend_from_slice(args);
    cli(db, &all).await.json()
}

/// The `token` field of a new session's JSON.
fn token(created: &Value) -> String {
    created["token"].as_str().expect("token").to_owned()
}

/// The session's handle in a new session's JSON.
fn handle(created: &Value) -> String {
    created["session"]["handle"]
        .as_str()
        .expect("handle")
        .to_owned()
}

/// Moves a stored session's deadlines an hour into the past, as the owner: it is expired from now on,
/// without waiting.
async fn expire(db: &TestDb, handle: &str) {
    let updated = db
        .client()
        .await
        .execute(
            "UPDATE wasm_sessions.sessions SET expires_at = now() - interval '1 hour', \
             absolute_expires_at = now() - interval '1 hour' WHERE id_hash = decode($1, 'hex')",
            &[&handle],
        )
        .await
        .unwrap();
    assert_eq!(updated, 1, "the session {handle} is stored");
}

/// Whether `text` looks like a token or handle: 64 lower-case hex characters.
fn is_token(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Asserts a single-line `error: ...` failure with exit code 1 and returns the line.
fn one_line_error(run: &Run) -> &str {
    assert_eq!(run.code, 1, "expected exit code 1: {run:#?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {run:#?}");
    assert!(lines[0].starts_with("error: "), "{run:#?}");
    lines[0]
}

/// Parses every stdout line as JSON.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[tokio::test]
async fn migrate_as_the_owner_is_idempotent_and_prepares_every_statement() {
    let db = TestDb::new().await;
    let human = cli_with_owner(&db, &["migrate"]).await.ok();
    assert!(
        human.starts_with("migrated; all ")
            && human.contains("statements of the component prepare"),
        "{human}"
    );
    let again = cli_with_owner(&db, &["migrate", "--json"]).await.json();
    assert_eq!(again["migrated"], true);
    assert_eq!(again["as"], "owner");
    assert!(again["prepared"].as_u64().unwrap() >= 10, "{again}");

    // The runtime role cannot run DDL: migrating with its URL alone fails and says what to set.
    let run = cli(&db, &["migrate"]).await;
    let line = one_line_error(&run);
    assert!(line.contains("DATABASE_OWNER_URL"), "{line}");
}

#[tokio::test]
async fn check_prepares_every_statement_as_the_runtime_role_and_names_one_that_does_not_fit() {
    let db = TestDb::new().await;
    let checked = cli(&db, &["check", "--json"]).await.json();
    assert_eq!(checked["as"], "runtime role");
    let prepared = checked["prepared"].as_u64().unwrap();
    let component = command()
        .args(["component", "--json"])
        .output()
        .await
        .unwrap();
    let statements = json_lines(&Run::from(component).ok())
        .iter()
        .filter(|l| l["statement"].is_string())
        .count();
    assert_eq!(prepared, statements as u64);

    // A schema that no longer fits: both `check` and `migrate` name the statement and the cause.
    db.client()
        .await
        .batch_execute("ALTER TABLE wasm_sessions.sessions DROP COLUMN label")
        .await
        .unwrap();
    for run in [
        cli(&db, &["check"]).await,
        cli_with_owner(&db, &["migrate"]).await,
    ] {
        let line = one_line_error(&run);
        assert!(
            line.contains("preparing `") && line.contains("label"),
            "{line}"
        );
    }
}

#[tokio::test]
async fn create_stores_user_label_and_typed_data_and_get_shows_them_by_handle() {
    let db = TestDb::new().await;
    let created = create(
        &db,
        &[
            "--user",
            "7",
            "--label",
            "laptop",
            "--set",
            "a=1",
            "--set",
            "b=x=y",
            "--set",
            "n:=1",
            "--set",
            r#"tags:=["a",{"b":true}]"#,
        ],
    )
    .await;
    let token = token(&created);
    assert!(is_token(&token));
    let session = &created["session"];
    assert!(is_token(session["handle"].as_str().unwrap()));
    assert_ne!(session["handle"], token.as_str());
    assert_eq!(session["user_id"], 7);
    assert_eq!(session["label"], "laptop");
    assert_eq!(session["expiry"], Value::Null);
    assert_eq!(
        session["data"],
        json!({ "a": "1", "b": "x=y", "n": 1, "tags": ["a", { "b": true }] })
    );
    for field in [
        "created_at",
        "expires_at",
        "absolute_expires_at",
        "updated_at",
    ] {
        let stamp = session[field].as_str().expect("timestamp");
        assert!(stamp.ends_with('Z') && stamp.contains('T'), "{stamp}");
    }

    // `get --json` prints the same session object as the API: by handle, without the token.
    let loaded = cli(&db, &["get", &token, "--json"]).await.json();
    assert_eq!(&loaded, session);
    assert!(loaded.get("token").is_none());

    let human = cli(&db, &["get", &token]).await.ok();
    assert!(
        !human.contains(&token),
        "get must not print the token: {human}"
    );
    for expected in [
        r#"b = "x=y""#,
        "n = 1",
        r#"tags = ["a",{"b":true}]"#,
        "label:    laptop",
        "expiry:   the configured policy",
    ] {
        assert!(human.contains(expected), "{expected:?} missing: {human}");
    }
}

#[tokio::test]
async fn create_prints_the_token_alone_on_the_first_line_and_defaults_to_no_user() {
    let db = TestDb::new().await;
    let stdout = cli(&db, &["create"]).await.ok();
    let first = stdout.lines().next().expect("a first line");
    assert!(is_token(first), "{stdout}");
    assert!(stdout.contains("handle:"), "{stdout}");
    let loaded = cli(&db, &["get", first, "--json"]).await.json();
    assert_eq!(loaded["user_id"], Value::Null);
    assert_eq!(loaded["data"], json!({}));
}

#[tokio::test]
async fn create_chooses_the_sessions_own_expiry() {
    let db = TestDb::new().await;
    let fixed = create(&db, &["--expires-in", "60"]).await["session"].clone();
    assert_eq!(fixed["expiry"]["mode"], "at");
    assert_eq!(fixed["expires_at"], fixed["expiry"]["at"]);
    let at = humantime::parse_rfc3339(fixed["expires_at"].as_str().unwrap()).unwrap();
    let created = humantime::parse_rfc3339(fixed["created_at"].as_str().unwrap()).unwrap();
    let lifetime = at.duration_since(created).unwrap().as_secs_f64();
    assert!((59.0..=61.0).contains(&lifetime), "{lifetime}");

    let idle = create(&db, &["--idle-timeout", "600"]).await["session"].clone();
    assert_eq!(
        idle["expiry"],
        json!({ "mode": "on_inactivity", "seconds": 600 })
    );

    let browser = create(&db, &["--browser-session"]).await;
    assert_eq!(
        browser["session"]["expiry"],
        json!({ "mode": "on_session_end" })
    );
    let cookie = cli(&db, &["cookie", &token(&browser)]).await.ok();
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "a browser-session cookie: {cookie}"
    );

    for bad in [
        &["create", "--expires-in", "0"][..],
        &["create", "--expires-in", "86401"],
        &["create", "--expires-in", "5", "--idle-timeout", "5"],
    ] {
        let run = cli(&db, bad).await;
        assert_eq!(run.code, 2, "a usage error: {run:#?}");
    }
}

#[tokio::test]
async fn set_and_unset_change_only_their_keys() {
    let db = TestDb::new().await;
    let token = token(&create(&db, &["--set", "keep=1", "--set", "drop=2"]).await);

    let after_set = cli(
        &db,
        &["set", &token, "theme=dark", "keep=one", "n:=2.5", "--json"],
    )
    .await
    .json();
    assert!(after_set.get("token").is_none());
    assert_eq!(
        after_set["data"],
        json!({ "keep": "one", "drop": "2", "theme": "dark", "n": 2.5 })
    );
    cli(&db, &["unset", &token, "drop", "missing"]).await.ok();
    let loaded = cli(&db, &["get", &token, "--json"]).await.json();
    assert_eq!(
        loaded["data"],
        json!({ "keep": "one", "theme": "dark", "n": 2.5 })
    );
}

#[tokio::test]
async fn login_rotates_the_token_and_the_old_one_stops_loading() {
    let db = TestDb::new().await;
    let old = token(&create(&db, &["--set", "cart:=3"]).await);

    let stdout = cli(&db, &["login", &old, "42"]).await.ok();
    let new = stdout.lines().next().expect("the new token").to_owned();
    assert!(is_token(&new), "{stdout}");
    assert_ne!(new, old);

    let failed = cli(&db, &["get", &old]).await;
    let line = one_line_error(&failed);
    assert!(line.contains("not found"), "{line}");
    assert!(!line.contains(&old));

    let loaded = cli(&db, &["get", &new, "--json"]).await.json();
    assert_eq!(loaded["user_id"], 42);
    assert_eq!(loaded["data"]["cart"], 3);
}

#[tokio::test]
async fn login_with_json_reports_the_new_token() {
    let db = TestDb::new().await;
    let old = token(&create(&db, &[]).await);
    let logged_in = cli(&db, &["login", &old, "9", "--json"]).await.json();
    let new = token(&logged_in);
    assert_ne!(new, old);
    assert_eq!(logged_in["session"]["user_id"], 9);
    assert_eq!(
        cli(&db, &["get", &new, "--json"]).await.json()["user_id"],
        9
    );
}

#[tokio::test]
async fn logout_clears_the_user_and_rotates_the_token() {
    let db = TestDb::new().await;
    let old = token(&create(&db, &["--user", "5", "--set", "k=v"]).await);

    let stdout = cli(&db, &["logout", &old]).await.ok();
    let new = stdout.lines().next().expect("the new token").to_owned();
    assert!(is_token(&new));
    assert_ne!(new, old);

    let loaded = cli(&db, &["get", &new, "--json"]).await.json();
    assert_eq!(loaded["user_id"], Value::Null);
    assert_eq!(loaded["data"]["k"], "v");
    assert_eq!(cli(&db, &["get", &old]).await.code, 1);
}

#[tokio::test]
async fn sessions_lists_by_handle_and_revoke_commands_remove_them() {
    let db = TestDb::new().await;
    let first = token(&create(&db, &["--user", "5", "--set", "a=1"]).await);
    let second = token(&create(&db, &["--user", "5", "--label", "phone"]).await);
    create(&db, &["--user", "6"]).await;

    let stdout = cli(&db, &["sessions", "5", "--json"]).await.ok();
    let listed = json_lines(&stdout);
    assert_eq!(listed.len(), 2, "{stdout}");
    for session in &listed {
        assert_eq!(session["user_id"], 5);
        let handle = session["handle"].as_str().expect("handle");
        assert!(is_token(handle));
        assert_ne!(handle, first);
        assert_ne!(handle, second);
    }
    assert!(!stdout.contains(&first) && !stdout.contains(&second));
    assert!(listed.iter().any(|s| s["label"] == "phone"));

    let human = cli(&db, &["sessions", "5"]).await.ok();
    assert_eq!(human.lines().count(), 2, "{human}");
    assert!(human.contains("key(s)"), "{human}");

    let handle = listed[0]["handle"].as_str().expect("handle");
    // Another user's id revokes nothing; a malformed handle is refused by the guest.
    let wrong_user = cli(&db, &["revoke-session", "6", handle, "--json"])
        .await
        .json();
    assert_eq!(wrong_user, json!({ "revoked": false }));
    let malformed = cli(&db, &["revoke-session", "5", "not-a-handle"]).await;
    assert!(
        one_line_error(&malformed).contains("invalid session id"),
        "{malformed:#?}"
    );

    let revoked = cli(&db, &["revoke-session", "5", handle, "--json"])
        .await
        .json();
    assert_eq!(revoked, json!({ "revoked": true }));
    let again = cli(&db, &["revoke-session", "5", handle, "--json"])
        .await
        .json();
    assert_eq!(again, json!({ "revoked": false }));
    let remaining = cli(&db, &["sessions", "5", "--json"]).await.ok();
    assert_eq!(remaining.lines().count(), 1);

    let revoked_all = cli(&db, &["revoke", "5", "--json"]).await.json();
    assert_eq!(revoked_all, json!({ "revoked": 1 }));
    assert_eq!(cli(&db, &["sessions", "5", "--json"]).await.ok(), "");
    assert_eq!(
        cli(&db, &["sessions", "6", "--json"])
            .await
            .ok()
            .lines()
            .count(),
        1
    );
}

#[tokio::test]
async fn delete_reports_whether_the_session_existed() {
    let db = TestDb::new().await;
    let token = token(&create(&db, &[]).await);
    let deleted = cli(&db, &["delete", &token, "--json"]).await.json();
    assert_eq!(deleted, json!({ "deleted": true }));
    let again = cli(&db, &["delete", &token, "--json"]).await.json();
    assert_eq!(again, json!({ "deleted": false }));
    assert_eq!(cli(&db, &["get", &token]).await.code, 1);
}

#[tokio::test]
async fn cleanup_removes_a_session_once_it_expired() {
    let db = TestDb::new().await;
    let brief = create(&db, &["--expires-in", "60"]).await;
    create(&db, &[]).await;
    expire(&db, &handle(&brief)).await;

    let expired = cli(&db, &["get", &token(&brief)]).await;
    assert!(one_line_error(&expired).contains("expired"), "{expired:#?}");

    let removed = cli(&db, &["cleanup", "--json"]).await.json();
    assert_eq!(removed, json!({ "removed": 1 }));
    assert_eq!(
        cli(&db, &["cleanup"]).await.ok(),
        "removed 0 expired session(s)\n"
    );
}

#[tokio::test]
async fn cleanup_in_small_batches_removes_every_expired_session_and_prints_one_json_line() {
    let db = TestDb::new().await;
    for _ in 0..3 {
        let created = create(&db, &[]).await;
        expire(&db, &handle(&created)).await;
    }
    let live = token(&create(&db, &[]).await);

    let removed = cli(&db, &["cleanup", "--batch-size", "2", "--json"]).await;
    assert!(
        removed.stderr.is_empty(),
        "no progress bar off a terminal: {removed:#?}"
    );
    assert_eq!(removed.json(), json!({ "removed": 3 }));
    assert_eq!(cli(&db, &["get", &live]).await.code, 0);
    for bad in ["0", "100001"] {
        let run = cli(&db, &["cleanup", "--batch-size", bad]).await;
        assert_eq!(run.code, 2, "a usage error: {run:#?}");
        assert!(run.stderr.contains("1..=100000"), "{run:#?}");
    }
}

#[tokio::test]
async fn cookie_follows_the_configuration_secure_by_default() {
    let db = TestDb::new().await;
    let token = token(&create(&db, &[]).await);

    let secure = cli(&db, &["cookie", &token]).await.ok();
    let header = secure.trim_end();
    assert!(header.contains(&format!("={token}")), "{header}");
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=",
        "Secure",
    ] {
        assert!(header.contains(attribute), "{attribute} missing: {header}");
    }

    // The request scheme no longer matters: there is no --http.
    let run = cli(&db, &["cookie", &token, "--http"]).await;
    assert_eq!(run.code, 2, "{run:#?}");

    // A second run may fall a second later: Max-Age and Expires count down, the rest is identical.
    let json = cli(&db, &["cookie", &token, "--json"]).await.json();
    let timeless = |h: &str| {
        h.split("; ")
            .filter(|a| !a.starts_with("Max-Age=") && !a.starts_with("Expires="))
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert_eq!(
        timeless(json["set_cookie"].as_str().unwrap()),
        timeless(header)
    );
}

#[tokio::test]
async fn an_invalid_token_fails_on_one_line_without_echoing_it() {
    let db = TestDb::new().await;
    let bogus = "NOT-A-TOKEN-but-a-secret-value";
    for args in [
        vec!["get", bogus],
        vec!["set", bogus, "a=b"],
        vec!["delete", bogus],
        vec!["cookie", bogus],
        vec!["revoke-session", "1", bogus],
    ] {
        let run = cli(&db, &args).await;
        let line = one_line_error(&run);
        assert!(line.contains("invalid session id"), "{line}");
        assert!(!line.contains(bogus), "the token was echoed: {line}");
        assert!(!run.stdout.contains(bogus));
    }
}

#[tokio::test]
async fn a_key_value_argument_without_equals_or_with_bad_json_is_a_usage_error() {
    let db = TestDb::new().await;
    let run = cli(&db, &["create", "--set", "novalue"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("KEY=VALUE"), "{run:#?}");
    let run = cli(&db, &["create", "--set", "n:=not json"]).await;
    assert_eq!(run.code, 2, "{run:#?}");
    assert!(run.stderr.contains("not JSON"), "{run:#?}");
    let token = token(&create(&db, &[]).await);
    assert_eq!(cli(&db, &["set", &token, "novalue"]).await.code, 2);
}

#[tokio::test]
async fn demo_walks_through_the_api_without_printing_whole_tokens() {
    let db = TestDb::new().await;
    let stdout = cli(&db, &["demo"]).await.ok();
    for expected in [
        "cart_items=3 (a number)",
        "both changes stayed (language=en, cart_items=4)",
        "logged in as user 42",
        "no longer loads: session not found",
        "Set-Cookie: ",
        "loading it now gives: session expired",
        "cleanup removed 1 expired session(s)",
        "logged user 42 out everywhere: 1 session(s) deleted",
    ] {
        assert!(stdout.contains(expected), "{expected:?} missing:\n{stdout}");
    }
    let hex_run = stdout
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        hex_run < 64,
        "a whole token or handle was printed:\n{stdout}"
    );

    let json = cli(&db, &["demo", "--json"]).await.ok();
    for line in json.lines() {
        let step: Value = serde_json::from_str(line).expect("JSON line");
        assert!(step["message"].is_string(), "{line}");
    }
}

/// Stops the embedded cluster in a data directory when dropped, even if the test failed.
struct StopCluster(PathBuf);

impl Drop for StopCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(BIN)
            .env_remove("DATABASE_URL")
            .env_remove("DATABASE_OWNER_URL")
            .arg("--data-dir")
            .arg(&self.0)
            .arg("stop-db")
            .output();
    }
}

/// A temporary directory under /tmp that the `postgres` user can traverse (needed when running as root).
fn reachable_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755");
    dir
}

/// Runs the binary with no database URL and the embedded cluster in `data_dir`.
async fn embedded(data_dir: &Path, args: &[&str]) -> Run {
    let output = command()
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .await
        .expect("the binary runs");
    Run::from(output)
}

#[tokio::test]
async fn without_a_database_url_the_embedded_cluster_serves_and_stop_db_stops_it() {
    let dir = reachable_tempdir();
    let data_dir = dir.path().join("pgdata");
    let _stop = StopCluster(data_dir.clone());

    let created = embedded(&data_dir, &["create", "--set", "a=1"]).await;
    assert_eq!(created.code, 0, "{created:#?}");
    assert!(
        created.stderr.contains("using the embedded PostgreSQL in")
            && created
                .stderr
                .contains(&*dir.path().file_name().unwrap().to_string_lossy())
            && created.stderr.contains("DATABASE_URL"),
        "{created:#?}"
    );
    let token = created.stdout.lines().next().expect("token").to_owned();
    assert!(is_token(&token));

    // The second command reuses the running cluster and its data.
    let loaded = embedded(&data_dir, &["get", &token, "--json"]).await;
    assert_eq!(loaded.code, 0, "{loaded:#?}");
    let loaded: Value = serde_json::from_str(loaded.stdout.trim()).expect("JSON");
    assert_eq!(loaded["data"]["a"], "1");

    // `migrate` and `check` there run as the runtime role (the grants come with the migrations).
    let migrated = embedded(&data_dir, &["migrate", "--json"]).await;
    assert_eq!(migrated.code, 0, "{migrated:#?}");
    let migrated: Value = serde_json::from_str(migrated.stdout.trim()).expect("JSON");
    assert_eq!(migrated["as"], "runtime role");
    assert_eq!(embedded(&data_dir, &["check"]).await.code, 0);

    let stopped = embedded(&data_dir, &["stop-db", "--json"]).await.json();
    assert_eq!(stopped["stopped"], true);
    let again = embedded(&data_dir, &["stop-db"]).await.ok();
    assert!(again.contains("was not running"), "{again}");
}

#[tokio::test]
async fn without_postgres_binaries_or_a_url_the_error_names_database_url() {
    let dir = reachable_tempdir();
    let output = command()
        .env("PG_BIN_DIR", "/nonexistent")
        .arg("--data-dir")
        .arg(dir.path().join("pgdata"))
        .arg("get")
        .arg("0".repeat(64))
        .output()
        .await
        .expect("the binary runs");
    let run = Run::from(output);
    let line = one_line_error(&run);
    assert!(line.contains("DATABASE_URL"), "{line}");
}

#[tokio::test]
async fn an_empty_or_unreachable_database_url_is_a_one_line_error_naming_it() {
    let empty = command()
        .env("DATABASE_URL", "")
        .args(["get", &"0".repeat(64)])
        .output()
        .await
        .unwrap();
    let run = Run::from(empty);
    let line = one_line_error(&run);
    assert!(
        line.contains("DATABASE_URL") && line.contains("empty"),
        "{line}"
    );

    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = command()
        .env("DATABASE_URL", format!("postgres://u@127.0.0.1:{port}/db"))
        .args(["get", &"0".repeat(64)])
        .output()
        .await
        .unwrap();
    let run = Run::from(refused);
    let line = one_line_error(&run);
    assert!(
        line.contains(&format!("127.0.0.1:{port}"))
            && line.contains("connection refused")
            && line.contains("DATABASE_URL"),
        "{line}"
    );
}

#[tokio::test]
async fn component_lists_the_imports_exports_and_declared_statements_without_a_database() {
    let dir = reachable_tempdir();
    let data_dir = dir.path().join("pgdata");
    let output = command()
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["component", "--json"])
        .output()
        .await
        .expect("the binary runs");
    let run = Run::from(output);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(!data_dir.exists(), "no cluster was started");
    let lines = json_lines(&run.stdout);
    let imports: Vec<&str> = lines.iter().filter_map(|v| v["import"].as_str()).collect();
    let exports: Vec<&str> = lines.iter().filter_map(|v| v["export"].as_str()).collect();
    let statements: Vec<&str> = lines
        .iter()
        .filter_map(|v| v["statement"].as_str())
        .collect();
    let mut sorted = imports.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        [
            "wasm-sessions:store/clock@0.2.0",
            "wasm-sessions:store/entropy@0.2.0",
            "wasm-sessions:store/sql@0.2.0",
        ],
        "the three capabilities and nothing else (no WASI)"
    );
    assert_eq!(exports, ["wasm-sessions:store/store@0.2.0"]);
    assert!(statements.len() >= 10, "{statements:?}");
    assert!(
        statements
            .iter()
            .all(|s| s.contains("wasm_sessions.sessions") && !s.contains('\n')),
        "{statements:?}"
    );

    let human = command().arg("component").output().await.unwrap();
    let human = Run::from(human).ok();
    assert_eq!(
        human
            .lines()
            .filter(|l| l.starts_with("statement "))
            .count(),
        statements.len()
    );
}

/// Runs the binary with its stdout a pipe whose reader is already gone; returns the run.
async fn with_closed_stdout(args: &[&str]) -> Run {
    let mut child = command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    // Close the read end before the binary writes anything: its first write fails with EPIPE.
    drop(child.stdout.take());
    Run::from(child.wait_with_output().await.unwrap())
}

#[tokio::test]
async fn a_closed_stdout_pipe_ends_quietly_with_exit_code_zero() {
    let db = TestDb::new().await;
    for args in [
        vec!["component"],
        vec!["--database-url", &db.url, "create"],
        vec!["--database-url", &db.url, "demo", "--json"],
    ] {
        let run = with_closed_stdout(&args).await;
        assert_eq!(run.code, 0, "{args:?}: {run:#?}");
        assert!(run.stderr.is_empty(), "{args:?}: {run:#?}");
    }

    // And as a shell pipeline: `create | head -1` prints the token and succeeds.
    let script = "set -o pipefail; \"$0\" --database-url \"$1\" create --set a=1 | head -1; \
                  \"$0\" component | head -1";
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(BIN)
        .arg(&db.url)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env_remove("RUST_LOG")
        .env(
            "WASM_SESSIONS_CACHE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/wasm-cache"),
        )
        .output()
        .await
        .unwrap();
    let run = Run::from(output);
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stderr.is_empty(), "{run:#?}");
    let mut lines = run.stdout.lines();
    assert!(is_token(lines.next().unwrap()), "{run:#?}");
    assert!(lines.next().unwrap().starts_with("import "), "{run:#?}");
}

#[tokio::test]
async fn trace_level_cli_logs_contain_no_token_and_no_session_data() {
    let db = TestDb::new().await;
    let filter = "trace,cranelift_codegen=off,cranelift_frontend=off,regalloc2=off,\
                  wasmtime_internal_cranelift=off";
    let run = |args: Vec<String>| {
        let url = db.url.clone();
        async move {
            let output = command()
                .env("RUST_LOG", filter)
                .arg("--database-url")
                .arg(url)
                .args(args)
                .output()
                .await
                .expect("the binary runs");
            Run::from(output)
        }
    };
    let secret = "correct-horse-battery-staple";
    let created = run(vec![
        "create".into(),
        "--user".into(),
        "9".into(),
        "--set".into(),
        format!("hint={secret}"),
    ])
    .await;
    assert_eq!(created.code, 0, "{created:#?}");
    let token = created.stdout.lines().next().unwrap().to_owned();
    let mut stderr = created.stderr.clone();
    for args in [
        vec!["get".to_owned(), token.clone()],
        vec![
            "set".to_owned(),
            token.clone(),
            format!("again:=\"{secret}\""),
        ],
        vec!["cookie".to_owned(), token.clone()],
        vec!["login".to_owned(), token.clone(), "9".to_owned()],
    ] {
        let r = run(args).await;
        assert_eq!(r.code, 0, "{r:#?}");
        stderr.push_str(&r.stderr);
    }
    assert!(stderr.contains("session."), "the spans were logged");
    assert!(!stderr.contains(&token), "a token appears in the logs");
    assert!(!stderr.contains(secret), "session data appears in the logs");
    assert!(
        !stderr.contains('\u{1b}'),
        "no colour codes in a log that is not a terminal"
    );
}

#[tokio::test]
async fn revoke_except_logs_out_the_other_devices_only() {
    let db = TestDb::new().await;
    let mine = token(&create(&db, &["--user", "31"]).await);
    let other = token(&create(&db, &["--user", "31"]).await);
    let revoked = cli(&db, &["revoke", "31", "--except", &mine, "--json"])
        .await
        .json();
    assert_eq!(revoked, json!({ "revoked": 1 }));
    assert_eq!(cli(&db, &["get", &mine]).await.code, 0);
    let gone = cli(&db, &["get", &other]).await;
    assert!(one_line_error(&gone).contains("not found"), "{gone:#?}");
}
