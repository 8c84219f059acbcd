//! `wasm-sessions serve` as a process: it prints its URL, answers HTTP, cleans up expired sessions in
//! the background, and exits cleanly on SIGTERM and SIGINT.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use wasm_sessions::StoreError;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");

/// Starts `serve` on a free port; returns the process, its stdout lines after the URL, and the URL.
async fn serve(db: &TestDb, extra: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>, String) {
    let mut child = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
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
        .kill_on_drop(true)
        .spawn()
        .expect("starting serve");
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

#[tokio::test]
async fn serve_prints_its_url_answers_and_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await;
    let (child, lines, url) = serve(&db, &[]).await;
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
    let mut brief = store.new_session(1).await.unwrap();
    store.save(&mut brief).await.unwrap();
    let mut lasting = store.new_session(3600).await.unwrap();
    store.save(&mut lasting).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(matches!(
        store.load(&brief.id).await,
        Err(StoreError::Expired)
    ));

    let (child, lines, _url) = serve(&db, &["--cleanup-interval", "1"]).await;
    let mut gone = false;
    for _ in 0..100 {
        if matches!(store.load(&brief.id).await, Err(StoreError::NotFound)) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the background cleanup removed the expired session");
    assert!(store.load(&lasting.id).await.is_ok());
    stop_with(child, lines, "-INT").await;
}
