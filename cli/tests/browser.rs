//! End to end in a real browser: the built `wasm-sessions serve` on a fresh database, driven in headless
//! Chromium through chromedriver (Debian's `chromium` and `chromium-driver` packages) with fantoccini.
//! Two browsers (separate profiles) sign in as one user: the messages after each action, a device
//! revoked from the other browser (told so, signed out, its cookie gone from Chromium's cookie store),
//! a sign-in without "remember me" kept as a session cookie and a remembered one with an expiry (read
//! from Chromium itself over CDP), and sign-out everywhere. Chromium's own cookie store must hold the
//! `__Host-` cookie as `Secure`, `HttpOnly` and `SameSite=Strict`; and forms that a page of another
//! origin (`http://127.0.0.1:<other port>`) submits to the demo's `/data` and `/login` are refused, with
//! nothing changed: no data stored, no sign-in, the browser's cookie untouched.
//!
//! When the browser is missing, the test installs it with apt-get if it runs as root (CI, containers);
//! otherwise it fails and says how to install it. It never passes without running the browser.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::cookies::Cookie;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use wasm_sessions::StoreError;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");

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

/// Starts `wasm-sessions serve` on `db` and a free port; returns the process and the URL to open, on
/// `localhost` (a potentially trustworthy origin, where Chromium accepts the `Secure` cookie over plain
/// HTTP).
async fn start_server(db: &TestDb) -> (Child, String) {
    let mut child = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env(
            "WASM_SESSIONS_API_TOKEN",
            "browser-test-token-0123456789abcdef0123456789",
        )
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
                return url.replace("://127.0.0.1:", "://localhost:");
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

/// The session cookie as the browser reports it for the page (the demo sets no other cookie), if any.
async fn session_cookie(client: &Client) -> Option<Cookie<'static>> {
    let mut cookies = client.get_all_cookies().await.expect("cookies");
    assert!(cookies.len() <= 1, "one cookie at most: {cookies:?}");
    cookies.pop()
}

/// Every cookie in Chromium's cookie store, straight from the browser over the DevTools protocol
/// (chromedriver's `goog/cdp/execute`): each with `session` (no expiry) and `expires`.
async fn chromium_cookies(webdriver: &str, client: &Client) -> Vec<Value> {
    let session = client
        .session_id()
        .await
        .expect("the session id")
        .expect("a WebDriver session");
    let address = webdriver.strip_prefix("http://").expect("an http URL");
    let body = json!({ "cmd": "Storage.getCookies", "params": {} }).to_string();
    let request = format!(
        "POST /session/{session}/goog/cdp/execute HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to chromedriver");
    stream.write_all(request.as_bytes()).await.expect("send");
    // chromedriver may keep the connection open: read the head, then `Content-Length` bytes.
    let mut response = Vec::new();
    let mut buffer = [0_u8; 8192];
    let body = loop {
        let read = stream.read(&mut buffer).await.expect("receive");
        response.extend_from_slice(&buffer[..read]);
        let text = String::from_utf8_lossy(&response).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("a Content-Length");
            if body.len() >= length || read == 0 {
                break body.to_owned();
            }
        }
        assert!(read > 0, "chromedriver closed the connection early");
    };
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    answer["value"]["cookies"]
        .as_array()
        .unwrap_or_else(|| panic!("no cookies in {answer}"))
        .clone()
}

/// The cookie of the demo's host in Chromium's store, if any.
async fn stored_cookie(webdriver: &str, client: &Client) -> Option<Value> {
    let cookies: Vec<Value> = chromium_cookies(webdriver, client)
        .await
        .into_iter()
        .filter(|c| c["domain"] == "localhost")
        .collect();
    assert!(cookies.len() <= 1, "one cookie at most: {cookies:?}");
    cookies.into_iter().next()
}

/// Asserts that Chromium's own cookie store holds `cookie` as `serve` sets it: `__Host-` prefixed,
/// `Secure`, `HttpOnly`, `SameSite=Strict`, for the host only (no Domain) and `Path=/`.
fn assert_hardened(cookie: &Value) {
    assert!(
        cookie["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("__Host-")),
        "{cookie}"
    );
    assert_eq!(
        cookie["secure"], true,
        "Secure, kept on http://localhost: {cookie}"
    );
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["path"], "/", "{cookie}");
    assert_eq!(cookie["domain"], "localhost", "host-only: {cookie}");
}

/// A second origin, `http://127.0.0.1:<port>` (another site than the demo's `http://localhost:<port>`):
/// `/data` and `/login` are pages whose form posts itself, at once, to the demo's route of that name.
async fn start_other_site(demo: &str) -> (tokio::task::JoinHandle<()>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let demo = demo.trim_end_matches('/').to_owned();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let demo = demo.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0_u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte).await {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let fields = if head.starts_with("GET /login ") {
                    ("/login", r#"<input name="user_id" value="666">"#)
                } else {
                    (
                        "/data",
                        r#"<input name="key" value="evil"><input name="value" value="from another site">"#,
                    )
                };
                let page = format!(
                    r#"<!doctype html><html><body><form id="f" method="post" action="{demo}{}">{}</form><script>document.getElementById("f").submit();</script></body></html>"#,
                    fields.0, fields.1
                );
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (task, origin)
}

/// The text of the element `#id`, once it contains `text` (the page may still be loading).
async fn wait_for(client: &Client, id: &str, text: &str) {
    for _ in 0..100 {
        if let Ok(element) = client.find(Locator::Id(id)).await
            && element.text().await.is_ok_and(|t| t.contains(text))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = client.source().await.unwrap_or_default();
    panic!("#{id} never said {text:?}:\n{source}");
}

/// Waits until the page's `#status` paragraph contains `text`.
async fn wait_for_status(client: &Client, text: &str) {
    wait_for(client, "status", text).await;
}

/// Waits until the page's message line contains `text`.
async fn wait_for_message(client: &Client, text: &str) {
    wait_for(client, "message", text).await;
}

/// Types into the input `#id`.
async fn fill(client: &Client, id: &str, text: &str) {
    let input = client.find(Locator::Id(id)).await.expect("the input");
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("typing");
}

/// Clicks the element `locator`.
async fn click_on(client: &Client, locator: Locator<'_>) {
    client
        .find(locator)
        .await
        .expect("the button")
        .click()
        .await
        .expect("click");
}

/// Clicks the button `#id`.
async fn click(client: &Client, id: &str) {
    click_on(client, Locator::Id(id)).await;
}

/// Signs in as `user` through the form, ticking "remember me" if asked.
async fn sign_in(client: &Client, user: &str, remember: bool) {
    fill(client, "user-id", user).await;
    if remember {
        click(client, "remember").await;
    }
    click(client, "login").await;
    wait_for_message(client, "You are signed in").await;
    wait_for_status(client, &format!("Signed in as user {user}")).await;
}

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    i64::try_from(now.as_secs()).unwrap()
}

/// Says on stderr how far the scenario got (shown when the test fails).
fn step(what: &str) {
    eprintln!("browser test: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_sign_in_revoke_each_other_and_sign_out_everywhere_with_a_message_each_time() {
    let (chromium, chromedriver) = browser_binaries();
    let db = TestDb::new().await;
    let store = db.store().await;
    let (mut server, url) = start_server(&db).await;
    let (_driver, webdriver) = start_chromedriver(&chromedriver).await;
    let profiles = tempfile::tempdir().expect("a temporary directory");

    let run = async {
        step("browser A, anonymous data");
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
        wait_for_message(&a, "Saved in the session").await;
        wait_for_status(&a, "not signed in").await;
        let anonymous = session_cookie(&a)
            .await
            .expect("a cookie once data is stored");

        step("cookie attributes");
        // The cookie's attributes, as the browser stored them.
        let name = anonymous.name().to_owned();
        assert_eq!(name, "__Host-wasm_session", "serve's cookie");
        assert_eq!(anonymous.value().len(), 64);
        assert_eq!(anonymous.http_only(), Some(true));
        assert_eq!(
            anonymous.same_site().map(|s| s.to_string()),
            Some("Strict".into())
        );
        assert_eq!(anonymous.path(), Some("/"));
        assert_eq!(
            anonymous.secure(),
            Some(true),
            "Secure, kept by Chromium on http://localhost"
        );
        let script_sees = a
            .execute("return document.cookie;", vec![])
            .await
            .expect("run a script");
        assert!(
            !script_sees.as_str().unwrap_or_default().contains(&name),
            "HttpOnly hides the cookie from scripts: {script_sees}"
        );
        let stored = stored_cookie(&webdriver, &a)
            .await
            .expect("in Chromium's store");
        assert_hardened(&stored);
        assert_eq!(stored["value"], anonymous.value());

        step("another site posts forms to the demo");
        // A page of another origin submits forms to /data and /login: refused, nothing changes.
        let (other_site, other) = start_other_site(&url).await;
        for (path, refused) in [("/data", "key"), ("/login", "sign-in")] {
            a.goto(&format!("{other}{path}"))
                .await
                .expect("open the other site");
            wait_for(&a, "error", "another site").await;
            let stored = stored_cookie(&webdriver, &a)
                .await
                .unwrap_or_else(|| panic!("the cookie survives the {refused} form"));
            assert_eq!(
                stored["value"],
                anonymous.value(),
                "{path}: the cookie is untouched"
            );
        }
        other_site.abort();
        let session = store.load(anonymous.value()).await.unwrap();
        assert_eq!(
            session.get_str("evil"),
            None,
            "nothing stored from the other site"
        );
        assert_eq!(session.user_id(), None, "not signed in by the other site");
        assert!(store.get_user_sessions(666).await.unwrap().is_empty());
        a.goto(&url).await.expect("back to the demo");
        wait_for_status(&a, "not signed in").await;
        assert!(a.source().await.unwrap().contains("3 items"));

        step("A signs in without remember-me");
        // Sign in without "remember me": the id changes, the data stays, the old id is dead, and
        // Chromium keeps the cookie for this browser session only.
        sign_in(&a, "42", false).await;
        let signed_in = session_cookie(&a).await.expect("the session cookie");
        assert_ne!(
            signed_in.value(),
            anonymous.value(),
            "the id changes at login"
        );
        assert_eq!(signed_in.http_only(), Some(true));
        assert_eq!(signed_in.expires(), None, "WebDriver reports no expiry");
        let stored = stored_cookie(&webdriver, &a)
            .await
            .expect("in Chromium's store");
        assert_eq!(stored["value"], signed_in.value());
        assert_eq!(stored["session"], true, "a session cookie: {stored}");
        assert_hardened(&stored);
        let page = a.source().await.unwrap();
        assert!(page.contains("3 items"), "the data survives the login");
        assert!(page.contains("This session: not remembered"));
        assert!(matches!(
            store.load(anonymous.value()).await,
            Err(StoreError::NotFound)
        ));
        let session = store.load(signed_in.value()).await.unwrap();
        assert_eq!(session.user_id(), Some(42));
        let label = session.label().expect("a device label").to_owned();
        assert!(
            label.starts_with("Chrome") && label.ends_with("on Linux"),
            "{label}"
        );
        let shown = a
            .find(Locator::Id("device"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(shown, label);

        step("B signs in with remember-me");
        // Browser B, a separate profile: signs in as the same user with "remember me", sees both
        // devices, and gets a cookie that Chromium keeps with an expiry.
        let b = browser(&webdriver, &chromium, &profiles.path().join("b")).await;
        b.goto(&url).await.expect("open the demo");
        wait_for_status(&b, "not signed in").await;
        sign_in(&b, "42", true).await;
        let remembered = session_cookie(&b).await.expect("the session cookie");
        assert_ne!(
            remembered.value(),
            signed_in.value(),
            "two browsers, two sessions"
        );
        let expiry = remembered
            .expires_datetime()
            .expect("a remembered cookie has an expiry")
            .unix_timestamp();
        assert!(expiry > unix_now() + 3_600, "{expiry}");
        let stored = stored_cookie(&webdriver, &b)
            .await
            .expect("in Chromium's store");
        assert_eq!(stored["session"], false, "a persistent cookie: {stored}");
        assert_hardened(&stored);
        assert!(stored["expires"].as_f64().unwrap() > (unix_now() + 3_600) as f64);
        assert!(
            b.source()
                .await
                .unwrap()
                .contains("This session: remembered")
        );
        let devices = b
            .find_all(Locator::Css("#devices tr.device"))
            .await
            .unwrap();
        assert_eq!(devices.len(), 2, "both browsers are listed");
        let here = b
            .find_all(Locator::Css("#devices tr.this-device"))
            .await
            .unwrap();
        assert_eq!(here.len(), 1, "one of them is this device");

        step("B revokes A");
        // B signs A out; A learns why on its next request, and its cookie is gone from Chromium.
        click_on(&b, Locator::Css("#devices button.revoke")).await;
        wait_for_message(&b, "That device is signed out").await;
        assert_eq!(
            b.find_all(Locator::Css("#devices tr.device"))
                .await
                .unwrap()
                .len(),
            1
        );
        a.goto(&url).await.expect("reload");
        wait_for_message(&a, "ended from another device").await;
        wait_for_status(&a, "not signed in").await;
        assert!(
            session_cookie(&a).await.is_none(),
            "the removal cookie deleted it"
        );
        assert!(
            stored_cookie(&webdriver, &a).await.is_none(),
            "nothing left in Chromium's store"
        );

        step("A signs in again, adds and removes a value");
        // A signs in again and keeps, then removes, a value.
        sign_in(&a, "42", false).await;
        fill(&a, "key", "theme").await;
        fill(&a, "value", "dark").await;
        click(&a, "add").await;
        wait_for_message(&a, "Saved in the session").await;
        click_on(&a, Locator::Css("#data button.remove")).await;
        wait_for_message(&a, "Removed from the session").await;
        assert!(!a.source().await.unwrap().contains("dark"));

        step("B signs out everywhere");
        // B signs out everywhere: B's cookie is removed, and A is told on its next request.
        click(&b, "logout-everywhere").await;
        wait_for_message(&b, "You are signed out everywhere").await;
        wait_for_status(&b, "not signed in").await;
        assert!(
            session_cookie(&b).await.is_none(),
            "the removal cookie deleted it"
        );
        assert!(stored_cookie(&webdriver, &b).await.is_none());
        a.goto(&url).await.expect("reload");
        wait_for_message(&a, "ended from another device").await;
        wait_for_status(&a, "not signed in").await;
        assert!(session_cookie(&a).await.is_none());
        assert!(store.get_user_sessions(42).await.unwrap().is_empty());

        step("A signs out here");
        // Sign out here.
        sign_in(&a, "7", false).await;
        click(&a, "logout").await;
        wait_for_message(&a, "You are signed out on this device").await;
        wait_for_status(&a, "not signed in").await;
        assert!(session_cookie(&a).await.is_none());
        assert!(store.get_user_sessions(7).await.unwrap().is_empty());

        a.close().await.expect("close browser A");
        b.close().await.expect("close browser B");
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser scenario finishes within 4 minutes");
    server.kill().await.ok();
}
