//! The JavaScript host (`js/`): the same built component run by Node.js through jco, over node-postgres,
//! against the same PostgreSQL as the other suites.
//!
//! - `the_javascript_host_passes_its_tests_and_the_conformance_suite` runs `node --test` on
//!   `js/test/*.test.mjs`: the JS host's own tests (round trips, typed values, bad input, the boundary with
//!   the misbehaving guest, deadlines, a database that is down, `close`) and the conformance runner, which
//!   runs every scenario of `conformance/scenarios/` through the JS host.
//! - `a_session_written_by_one_host_loads_in_the_other` writes a session through the Rust host and one
//!   through the Node host on the same table, and loads each in the other.
//!
//! What the JS tests need comes from here, so there is one source for each: the bundled component (written
//! to a temporary file), the misbehaving guest, the exports' signatures
//! (`wasm_sessions::conformance::export_signatures`), and the database: the server URL (the owner), and
//! the runtime role's grants (`RuntimeRole::grant_statements`) and URL for a placeholder database name,
//! which the JS harness replaces with the name of each database it creates.
//!
//! Node.js 20 or later and npm must be on `PATH` (set `WASM_SESSIONS_SKIP_NODE_TESTS=1` to skip these
//! tests where they are not). `js/node_modules` (ignored by git) is installed with `npm ci` from the
//! committed `js/package-lock.json` unless a stamp in it says it was installed from this lockfile; npm's
//! cache stays in `~/.npm`. Everything else lives in a temporary directory removed afterwards
//! (`WASM_SESSIONS_NODE_KEEP_FIXTURES=1` keeps it and prints the environment for running
//! `node --test` by hand in `js/`).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasm_sessions::{BUNDLED_COMPONENT, Expiry};
use wasm_sessions_tests::{TestDb, runtime_role, server_url, with_database};

/// The database name the grants and URLs are rendered for; the JS harness substitutes its own.
const PLACEHOLDER_DB: &str = "wasm_sessions_js_placeholder_db";

/// The misbehaving guest of the sandbox tests, for the JS host's boundary tests.
const MISBEHAVING: &[u8] = include_bytes!(env!("MISBEHAVING_GUEST_COMPONENT"));

/// How long the whole JS suite may take.
const SUITE_TIMEOUT: Duration = Duration::from_secs(20 * 60);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

fn js_dir() -> PathBuf {
    repo().join("js")
}

fn skipped() -> bool {
    let skip =
        std::env::var("WASM_SESSIONS_SKIP_NODE_TESTS").is_ok_and(|v| !v.is_empty() && v != "0");
    if skip {
        eprintln!("WASM_SESSIONS_SKIP_NODE_TESTS is set: the JavaScript host is not tested");
    }
    skip
}

/// A directory of its own under the system's temporary directory, removed when dropped (unless
/// `WASM_SESSIONS_NODE_KEEP_FIXTURES` is set: then it stays, for running the JS tests by hand).
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "wasm-sessions-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::env::var_os("WASM_SESSIONS_NODE_KEEP_FIXTURES").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Runs `command` with a timeout; returns whether it succeeded, and its stdout followed by its stderr.
fn run(mut command: Command, timeout: Duration) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e} (are Node.js and npm on PATH?)"));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break Some(status);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    match status {
        Some(status) => (status.success(), text),
        None => (false, format!("{text}\n(killed after {timeout:?})")),
    }
}

/// `js/node_modules`, installed with `npm ci` unless it matches the lockfile already. Runs once per
/// process; a lock file keeps two test processes from installing at once.
fn node_modules() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    let ready = READY.get_or_init(|| {
        let js = js_dir();
        let lockfile = std::fs::read(js.join("package-lock.json"))
            .map_err(|e| format!("reading js/package-lock.json: {e}"))?;
        let mut hasher = DefaultHasher::new();
        lockfile.hash(&mut hasher);
        let stamp = format!("{:016x}\n", hasher.finish());
        let stamp_path = js.join("node_modules").join(".wasm-sessions-installed");
        let installed = || std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
        if installed() {
            return Ok(());
        }
        let mut path_hasher = DefaultHasher::new();
        js.hash(&mut path_hasher);
        let lock = std::env::temp_dir().join(format!(
            "wasm-sessions-npm-ci-{:016x}.lock",
            path_hasher.finish()
        ));
        let started = Instant::now();
        loop {
            match std::fs::File::create_new(&lock) {
                Ok(_) => break,
                Err(_) if started.elapsed() < Duration::from_secs(600) => {
                    // Another process installs; a lock older than 15 minutes is stale.
                    let stale = std::fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(900));
                    if stale {
                        let _ = std::fs::remove_file(&lock);
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(format!("waiting for {}: {e}", lock.display())),
            }
        }
        let outcome = if installed() {
            Ok(())
        } else {
            let mut npm = Command::new("npm");
            npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&js);
            let (ok, output) = run(npm, Duration::from_secs(900));
            if ok {
                std::fs::write(&stamp_path, &stamp)
                    .map_err(|e| format!("writing {}: {e}", stamp_path.display()))
            } else {
                Err(format!("npm ci in js/ failed:\n{output}"))
            }
        };
        let _ = std::fs::remove_file(&lock);
        outcome
    });
    if let Err(why) = ready {
        panic!("{why}");
    }
}

/// What the JS tests read: the component, the misbehaving guest, the signatures, the database.
struct Fixtures {
    scratch: Scratch,
    env: Vec<(String, PathBuf)>,
}

fn fixtures() -> Fixtures {
    let scratch = Scratch::new("node");
    let component = scratch.write("wasm_sessions_guest.component.wasm", BUNDLED_COMPONENT);
    let misbehaving = scratch.write("misbehaving_guest.component.wasm", MISBEHAVING);
    let signatures = wasm_sessions::conformance::export_signatures(BUNDLED_COMPONENT)
        .expect("the bundled component exports the store interface");
    let signatures = scratch.write("signatures.json", signatures.to_string().as_bytes());

    let server = server_url();
    let role = runtime_role();
    let owner_template = with_database(&server, PLACEHOLDER_DB);
    let runtime_template = role
        .runtime_url(&owner_template)
        .expect("the runtime URL derives from the owner's");
    let grants = role
        .grant_statements(PLACEHOLDER_DB)
        .iter()
        .map(|s| json_string(s))
        .collect::<Vec<_>>()
        .join(",\n    ");
    let database = format!(
        "{{\n  \"serverUrl\": {},\n  \"ownerUrl\": {},\n  \"runtimeUrl\": {},\n  \"placeholder\": {},\n  \"role\": {},\n  \"grants\": [\n    {grants}\n  ]\n}}\n",
        json_string(&server),
        json_string(&owner_template),
        json_string(&runtime_template),
        json_string(PLACEHOLDER_DB),
        json_string(role.name()),
    );
    let database = scratch.write("database.json", database.as_bytes());
    let cache = scratch.0.join("cache");
    let env = vec![
        ("WASM_SESSIONS_COMPONENT".to_owned(), component),
        (
            "WASM_SESSIONS_MISBEHAVING_COMPONENT".to_owned(),
            misbehaving,
        ),
        ("WASM_SESSIONS_SIGNATURES".to_owned(), signatures),
        ("WASM_SESSIONS_TEST_DATABASE".to_owned(), database),
        (
            "WASM_SESSIONS_MIGRATIONS".to_owned(),
            repo().join("migrations"),
        ),
        (
            "WASM_SESSIONS_CONFORMANCE".to_owned(),
            repo().join("conformance"),
        ),
        ("WASM_SESSIONS_JS_CACHE".to_owned(), cache),
    ];
    if std::env::var_os("WASM_SESSIONS_NODE_KEEP_FIXTURES").is_some() {
        for (key, value) in &env {
            eprintln!("export {key}={}", value.display());
        }
    }
    Fixtures { scratch, env }
}

fn node(fixtures: &Fixtures) -> Command {
    let mut command = Command::new("node");
    command.current_dir(js_dir());
    for (key, value) in &fixtures.env {
        command.env(key, value);
    }
    command.env("NODE_NO_WARNINGS", "1");
    command
}

#[test]
fn the_javascript_host_passes_its_tests_and_the_conformance_suite() {
    if skipped() {
        return;
    }
    node_modules();
    let fixtures = fixtures();
    let mut files: Vec<String> = std::fs::read_dir(js_dir().join("test"))
        .expect("js/test")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("test/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no js/test/*.test.mjs");
    let mut command = node(&fixtures);
    command
        .args(["--test", "--test-reporter=spec", "--test-concurrency=2"])
        .args(&files);
    let (ok, output) = run(command, SUITE_TIMEOUT);
    drop(fixtures.scratch);
    assert!(ok, "the JavaScript host's tests failed:\n{output}");
    // The summary (tests, pass, fail, ...) for `cargo test -- --nocapture`.
    let summary: Vec<&str> = output.lines().filter(|l| l.starts_with('ℹ')).collect();
    println!("{}", summary.join("\n"));
}

fn micros(t: SystemTime) -> i64 {
    i64::try_from(
        t.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros(),
    )
    .expect("fits")
}

/// Runs `js/test/support/interop.mjs` (`step` and its arguments) on `db` and returns its `key=value` lines.
fn interop(fixtures: &Fixtures, db: &TestDb, args: &[&str]) -> HashMap<String, String> {
    let mut command = node(fixtures);
    command
        .arg("test/support/interop.mjs")
        .args(args)
        .env("WASM_SESSIONS_URL", &db.url);
    let (ok, output) = run(command, Duration::from_secs(120));
    assert!(ok, "the Node host failed:\n{output}");
    output
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_written_by_one_host_loads_in_the_other() {
    if skipped() {
        return;
    }
    node_modules();
    let fixtures = fixtures();
    let db = TestDb::new().await;
    let store = db.store().await;

    // Rust writes; Node loads it, sees the same data, user, label and times, and changes it.
    let mut written = store.new_session().await.unwrap();
    written.insert("from", "rust").unwrap();
    written.insert("n", 42).unwrap();
    written.insert("list", [1, 2, 3]).unwrap();
    written.insert("nested", nested_object()).unwrap();
    written.set_user(7);
    written.set_label(Some("rust device".into()));
    store.save(&mut written).await.unwrap();
    let seen =
        tokio::task::block_in_place(|| interop(&fixtures, &db, &["read-and-touch", written.id()]));
    assert_eq!(seen["data"], canonical(&written));
    assert_eq!(seen["user"], "7");
    assert_eq!(seen["label"], "rust device");
    assert_eq!(seen["expiry"], "none");
    assert_eq!(seen["created"], micros(written.created_at()).to_string());
    assert_eq!(seen["expires"], micros(written.expires_at()).to_string());
    assert_eq!(
        seen["absolute"],
        micros(written.absolute_expires_at()).to_string()
    );
    assert_eq!(seen["version"], written.version().to_string());
    let touched = store.load(written.id()).await.unwrap();
    assert_eq!(touched.get_str("seen-by"), Some("node"));
    assert_eq!(touched.get::<i64>("n").unwrap(), Some(42));
    assert_eq!(touched.version().to_string(), seen["version-after"]);
    assert_eq!(touched.user_id(), Some(7));

    // Node writes; Rust loads it with the same data, user, label, expiry and times.
    let wrote = tokio::task::block_in_place(|| interop(&fixtures, &db, &["write"]));
    let loaded = store.load(&wrote["token"]).await.unwrap();
    assert_eq!(canonical(&loaded), wrote["data"]);
    assert_eq!(loaded.get_str("from"), Some("node"));
    assert_eq!(loaded.get::<f64>("pi").unwrap(), Some(3.25));
    assert_eq!(loaded.user_id(), Some(8));
    assert_eq!(loaded.label(), Some("node device"));
    assert_eq!(
        loaded.expiry(),
        Some(Expiry::OnInactivity(Duration::from_secs(600)))
    );
    assert_eq!(micros(loaded.created_at()).to_string(), wrote["created"]);
    assert_eq!(micros(loaded.expires_at()).to_string(), wrote["expires"]);
    assert_eq!(
        micros(loaded.absolute_expires_at()).to_string(),
        wrote["absolute"]
    );
    assert_eq!(loaded.version().to_string(), wrote["version"]);
    assert_eq!(loaded.handle(), wrote["handle"]);
    let listed = store.get_user_sessions(8).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, wrote["handle"]);
    drop(fixtures.scratch);
}

/// An object inside the data (a map serializes as a JSON object; this crate has no JSON dependency).
fn nested_object() -> std::collections::BTreeMap<String, Vec<String>> {
    std::collections::BTreeMap::from([("tags".to_owned(), vec!["a".to_owned(), "b\"c".to_owned()])])
}

/// The session's data as compact JSON with sorted keys (what interop.mjs prints for the same data).
fn canonical(session: &wasm_sessions::Session) -> String {
    let members: Vec<String> = session
        .data()
        .iter()
        .map(|(key, value)| format!("{}:{value}", json_string(key)))
        .collect();
    format!("{{{}}}", members.join(","))
}
