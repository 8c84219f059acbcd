//! `wasm-sessions serve` as a process: it checks the component's statements, prints its URL, answers
//! HTTP, cleans up expired sessions in the background, and exits cleanly on SIGTERM and SIGINT.
//!
//! Nothing here sleeps to let time pass: sessions are expired by moving their deadlines into the past
//! through the owner's connection, and the background cleanup is awaited through its log line.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader, Lines,
};
use tokio::process::{Child, ChildStdout, Command};
use wasm_sessions::StoreError;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");

/// The API token the processes get through the environment (so none generates one).
const API_TOKEN: &str = "serve-test-token-0123456789abcdef0123456789abcdef";

/// `serve` on a free port with `extra` arguments and `RUST_LOG` = `log` (none when `None`); stderr piped.
fn spawn_serve(db: &TestDb, extra: &[&str], log: Option<&str>) -> Child {
    let mut command = Command::new(BIN);
    command
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env_remove("RUST_LOG")
        .env("WASM_SESSIONS_API_TOKEN", API_TOKEN)
        .env(
            "WASM_SESSIONS_CACHE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/wasm-cache"),
        )
        .args([
            "--database-url",
            &db.url,
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    command.spawn().expect("starting serve")
}

/// Starts `serve`; returns the process, its stdout lines after the URL, and the URL.
async fn serve(
    db: &TestDb,
    extra: &[&str],
    log: Option<&str>,
) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut child = spawn_serve(db, extra, log);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("serve prints a line")
        .unwrap()
        .expect("a first line");
    let start = first.find("http://").expect("the first line names the URL");
    let url = first[start..].split_whitespace().next().unwrap().to_owned();
    assert!(first.contains("open it in a browser"), "{first}");
    (child, lines, url)
}

/// A plain HTTP/1.1 GET; returns the status line and the body.
async fn http_get(url: &str, path: &str) -> (String, String) {
    let authority = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// Sends `signal` to the child and checks it exits with status 0 after saying it stopped.
async fn stop_with(
    mut child: Child,
    mut lines: Lines<BufReader<ChildStdout>>,
    signal: &str,
) -> Vec<String> {
    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("serve stops within 20 s")
        .unwrap();
    assert!(status.success(), "{signal}: {status}");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
    rest
}

/// Reads `lines` until one contains `needle` (within 60 s); returns everything read.
async fn wait_for_line(
    lines: &mut Lines<BufReader<impl AsyncRead + Unpin>>,
    needle: &str,
) -> String {
    let mut seen = String::new();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no line with {needle:?}:\n{seen}"
    );
    seen
}

/// Moves a stored session's deadlines an hour into the past, as the owner.
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
    assert_eq!(updated, 1);
}

#[tokio::test]
async fn serve_prints_its_url_answers_and_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await;
    let (child, lines, url) = serve(&db, &[], None).await;
    let (status, body) = http_get(&url, "/openapi.json").await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("\"openapi\""));
    let (status, body) = http_get(&url, "/").await;
    assert!(status.contains("200"), "{status}");
    assert!(body.contains("no passwords"), "the demo says it is a demo");
    stop_with(child, lines, "-TERM").await;
}

#[tokio::test]
async fn serve_deletes_expired_sessions_in_the_background_and_stops_on_sigint() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let mut brief = store.new_session().await.unwrap();
    store.save(&mut brief).await.unwrap();
    let mut lasting = store.new_session().await.unwrap();
    store.save(&mut lasting).await.unwrap();
    expire(&db, brief.handle()).await;
    assert!(matches!(
        store.load(brief.id()).await,
        Err(StoreError::Expired)
    ));

    // The first cleanup runs as soon as the server listens; its log line says it removed something.
    let (mut child, lines, _url) = serve(
        &db,
        &["--cleanup-interval", "1"],
        Some("warn,wasm_sessions_cli=info"),
    )
    .await;
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = wait_for_line(&mut stderr, "cleanup removed expired sessions").await;
    assert!(log.contains("removed=1"), "{log}");
    assert!(matches!(
        store.load(brief.id()).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.load(lasting.id()).await.is_ok());
    stop_with(child, lines, "-INT").await;
}

#[tokio::test]
async fn serve_refuses_to_start_when_a_statement_does_not_fit_the_schema() {
    let db = TestDb::new().await;
    db.client()
        .await
        .batch_execute("ALTER TABLE wasm_sessions.sessions DROP COLUMN label")
        .await
        .unwrap();
    let child = spawn_serve(&db, &[], None);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("serve exits")
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "it never listened: {output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("checking the component's statements") && stderr.contains("label"),
        "{stderr}"
    );
}
