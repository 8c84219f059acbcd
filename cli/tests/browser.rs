//! End to end in a real browser: the built `wasm-sessions serve` on a fresh database, driven in headless
//! Chromium through chromedriver (Debian's `chromium` and `chromium-driver` packages) with fantoccini.
//!
//! When the browser is missing, the test installs it with apt-get if it runs as root (CI, containers);
//! otherwise it fails and says how to install it. It never passes without running the browser.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use wasm_sessions::StoreError;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");
const COOKIE: &str = "varel_session";

/// `name` on `PATH`, if it is there.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The chromium and chromedriver binaries, installing Debian's packages first when they are missing and
/// this process may (root, apt-get present).
fn browser_binaries() -> (PathBuf, PathBuf) {
    let find = || Some((on_path("chromium")?, on_path("chromedriver")?));
    if let Some(found) = find() {
        return found;
    }
    let how = "install them with `sudo apt-get install chromium chromium-driver` (Debian/Ubuntu)";
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    let Some(apt) = on_path("apt-get") else {
        panic!(
            "the browser test needs chromium and chromedriver, and apt-get is not available: {how}"
        );
    };
    assert!(
        is_root,
        "the browser test needs chromium and chromedriver; not root, so not installing them: {how}"
    );
    eprintln!("browser test: installing chromium and chromium-driver with apt-get");
    for args in [
        &["update"][..],
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "chromium",
            "chromium-driver",
        ][..],
    ] {
        let status = std::process::Command::new(&apt)
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .expect("running apt-get");
        assert!(
            status.success(),
            "apt-get {args:?} failed ({status}): {how}"
        );
    }
    find()
        .unwrap_or_else(|| panic!("apt-get ran but chromium/chromedriver are still missing: {how}"))
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts chromedriver on a free port and waits until it accepts connections.
async fn start_chromedriver(chromedriver: &Path) -> (Child, String) {
    let port = free_port();
    let child = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting chromedriver");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return (child, format!("http://127.0.0.1:{port}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start listening on port {port}");
}

/// A new headless Chromium with its own profile: a separate browser context with its own cookies.
async fn browser(webdriver: &str, chromium: &Path, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        &format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": chromium, "args": args }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .expect("a chromedriver session")
}

/// Starts `wasm-sessions serve` on `db` and a free port; returns the process and the URL it printed.
async fn start_server(db: &TestDb) -> (Child, String) {
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
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting wasm-sessions serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(start) = line.find("http://") {
                let url: String = line[start..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                return url;
            }
        }
        panic!("serve exited without printing its URL");
    })
    .await
    .expect("serve prints its URL");
    // Keep draining stdout so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

/// The session cookie as the browser stored it, if any.
async fn session_cookie(client: &Client) -> Option<Cookie<'static>> {
    client
        .get_all_cookies()
        .await
        .expect("cookies")
        .into_iter()
        .find(|c| c.name() == COOKIE)
}

/// Waits until the page's `#status` paragraph contains `text`.
async fn wait_for_status(client: &Client, text: &str) {
    for _ in 0..100 {
        if let Ok(status) = client.find(Locator::Id("status")).await
            && status.text().await.is_ok_and(|t| t.contains(text))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = client.source().await.unwrap_or_default();
    panic!("the page never said {text:?}:\n{source}");
}

/// Types into the input `#id`.
async fn fill(client: &Client, id: &str, text: &str) {
    let input = client.find(Locator::Id(id)).await.expect("the input");
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("typing");
}

/// Clicks the button `#id`.
async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
}

/// Signs in as `user` through the form.
async fn sign_in(client: &Client, user: &str) {
    fill(client, "user-id", user).await;
    click(client, "login").await;
    wait_for_status(client, &format!("Signed in as user {user}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_gets_a_new_id_and_is_signed_out_everywhere_from_another_browser() {
    let (chromium, chromedriver) = browser_binaries();
    let db = TestDb::new().await;
    let store = db.store().await;
    let (mut server, url) = start_server(&db).await;
    let (_driver, webdriver) = start_chromedriver(&chromedriver).await;
    let profiles = tempfile::tempdir().expect("a temporary directory");

    let run = async {
        // Browser A: keep something in an anonymous session first, so there is an id to compare.
        let a = browser(&webdriver, &chromium, &profiles.path().join("a")).await;
        a.goto(&url).await.expect("open the demo");
        wait_for_status(&a, "not signed in").await;
        assert!(
            session_cookie(&a).await.is_none(),
            "no cookie before anything is stored"
        );
        fill(&a, "key", "cart").await;
        fill(&a, "value", "3 items").await;
        click(&a, "add").await;
        wait_for_status(&a, "not signed in").await;
        let anonymous = session_cookie(&a)
            .await
            .expect("a cookie once data is stored");

        // The cookie's attributes, as the browser stored them.
        assert_eq!(anonymous.name(), COOKIE);
        assert_eq!(anonymous.value().len(), 64);
        assert_eq!(anonymous.http_only(), Some(true));
        assert_eq!(
            anonymous.same_site().map(|s| s.to_string()),
            Some("Strict".into())
        );
        assert_eq!(anonymous.path(), Some("/"));
        assert_ne!(
            anonymous.secure(),
            Some(true),
            "plain http://127.0.0.1 is not Secure"
        );
        let script_sees = a
            .execute("return document.cookie;", vec![])
            .await
            .expect("run a script");
        assert!(
            !script_sees.as_str().unwrap_or_default().contains(COOKIE),
            "HttpOnly hides the cookie from scripts: {script_sees}"
        );

        // Sign in: the id changes, the data stays, the old id is dead.
        sign_in(&a, "42").await;
        let signed_in = session_cookie(&a).await.expect("the session cookie");
        assert_ne!(
            signed_in.value(),
            anonymous.value(),
            "the id changes at login"
        );
        assert_eq!(signed_in.http_only(), Some(true));
        let page = a.source().await.unwrap();
        assert!(page.contains("3 items"), "the data survives the login");
        assert!(matches!(
            store.load(anonymous.value()).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store.load(signed_in.value()).await.unwrap().user_id,
            Some(42)
        );

        // Browser B, a separate profile: signs in as the same user and sees both devices.
        let b = browser(&webdriver, &chromium, &profiles.path().join("b")).await;
        b.goto(&url).await.expect("open the demo");
        wait_for_status(&b, "not signed in").await;
        sign_in(&b, "42").await;
        let devices = b
            .find_all(Locator::Css("#devices tr.device"))
            .await
            .unwrap();
        assert_eq!(devices.len(), 2, "both browsers are listed");
        assert_ne!(
            session_cookie(&b).await.unwrap().value(),
            signed_in.value(),
            "two browsers, two sessions"
        );

        // B signs out everywhere; B's cookie is removed and A is signed out on its next request.
        click(&b, "logout-everywhere").await;
        wait_for_status(&b, "not signed in").await;
        assert!(
            session_cookie(&b).await.is_none(),
            "the removal cookie deleted it"
        );
        a.goto(&url).await.expect("reload");
        wait_for_status(&a, "not signed in").await;
        assert!(store.get_user_sessions(42).await.unwrap().is_empty());

        a.close().await.expect("close browser A");
        b.close().await.expect("close browser B");
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser scenario finishes within 4 minutes");
    server.kill().await.ok();
}
