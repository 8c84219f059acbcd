//! The HTTP defences of `wasm-sessions serve`, one test each, against the real process over real TCP
//! (hand-written HTTP/1.1, so every header is exactly what the test says): the API's bearer token
//! (anonymous and wrong tokens), the generated token (printed once, file 0600), the refusal to listen on
//! a non-loopback address without a configured token, the `Host` allow-list (DNS rebinding), cross-site
//! requests refused on the demo (sign-in included) and the API, session fixation (a planted cookie is
//! dead after sign-in), and `Cache-Control: no-store` on the API. The browser test checks the cookie's
//! attributes and a cross-site form in Chromium itself.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use wasm_sessions::StoreError;
use wasm_sessions_tests::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_wasm-sessions");

/// The token given to `serve` through `WASM_SESSIONS_API_TOKEN` (unless a test wants one generated).
const API_TOKEN: &str = "defence-test-token-0123456789abcdef0123456789abcdef";

/// `serve`'s session cookie.
const COOKIE: &str = "__Host-wasm_session";

/// `wasm-sessions serve` with `args` after `serve`; `token`: the API token in the environment (none:
/// generated); `state_home`: `XDG_STATE_HOME` (where a generated token is written).
fn command(db_url: &str, args: &[&str], token: Option<&str>, state_home: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_OWNER_URL")
        .env_remove("RUST_LOG")
        .env_remove("WASM_SESSIONS_API_TOKEN")
        .env("XDG_STATE_HOME", state_home)
        .env(
            "WASM_SESSIONS_CACHE_DIR",
            concat!(env!("CARGO_TARGET_TMPDIR"), "/wasm-cache"),
        )
        .args(["--database-url", db_url, "serve"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("WASM_SESSIONS_API_TOKEN", token);
    }
    command
}

/// A running `serve`: the process, its stdout after the first line, the first line, and `host:port`.
struct Serve {
    _child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    first: String,
    addr: String,
}

impl Serve {
    /// Starts `serve` on 127.0.0.1 and a free port with [`API_TOKEN`].
    async fn start(db: &TestDb) -> Self {
        let state = tempfile::tempdir().unwrap();
        Self::start_with(
            db,
            &["--listen", "127.0.0.1:0"],
            Some(API_TOKEN),
            state.path(),
        )
        .await
    }

    async fn start_with(db: &TestDb, args: &[&str], token: Option<&str>, state: &Path) -> Self {
        let mut child = command(&db.url, args, token, state)
            .spawn()
            .expect("starting serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("serve prints a line")
            .unwrap()
            .expect("a first line");
        let start = first.find("http://").expect("the first line names the URL") + 7;
        let addr = first[start..].split('/').next().unwrap().to_owned();
        Self {
            _child: child,
            lines,
            first,
            addr,
        }
    }

    /// The port it listens on.
    fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Where to connect (the bound address; 127.0.0.1 for a bind on every interface).
    fn connect_to(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }

    /// A request from a well-behaved, same-origin client: `Host` is the address printed.
    fn request(&self, method: &str, path: &str) -> Req {
        Req {
            connect: self.connect_to(),
            method: method.to_owned(),
            path: path.to_owned(),
            headers: vec![("Host".to_owned(), self.addr.clone())],
            body: String::new(),
        }
    }

    /// An API request with the right bearer token.
    fn api(&self, method: &str, path: &str) -> Req {
        self.request(method, path)
            .header("Authorization", &format!("Bearer {API_TOKEN}"))
    }
}

/// One HTTP/1.1 request, written by hand.
struct Req {
    connect: String,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces (or, with `None`, removes) the `Host` header.
    fn host(mut self, host: Option<&str>) -> Self {
        self.headers.retain(|(n, _)| n != "Host");
        if let Some(host) = host {
            self.headers.push(("Host".to_owned(), host.to_owned()));
        }
        self
    }

    fn json(self, body: &Value) -> Self {
        let mut req = self.header("Content-Type", "application/json");
        req.body = body.to_string();
        req
    }

    fn form(self, body: &str) -> Self {
        let mut req = self.header("Content-Type", "application/x-www-form-urlencoded");
        req.body = body.to_owned();
        req
    }

    fn cookie(self, token: &str) -> Self {
        self.header("Cookie", &format!("{COOKIE}={token}"))
    }

    async fn send(self) -> Reply {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut stream = tokio::net::TcpStream::connect(&self.connect).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(self.body.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
            .await
            .expect("an answer within 30 s")
            .unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: body.to_owned(),
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }

    /// The session token a `Set-Cookie` stores, if any.
    fn cookie_token(&self) -> Option<&str> {
        let value = self.header("set-cookie")?;
        let pair = value.split(';').next()?;
        pair.strip_prefix(&format!("{COOKIE}="))
    }
}

/// Asserts a JSON 401 with the bearer challenge and no caching.
fn assert_unauthorized(reply: &Reply, invalid_token: bool) {
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.json()["error"], "unauthorized", "{reply:?}");
    let challenge = reply.header("www-authenticate").expect("a challenge");
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(
        challenge.contains("invalid_token"),
        invalid_token,
        "{challenge}"
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn an_anonymous_api_call_is_401_on_every_route_and_the_document_stays_public() {
    let db = TestDb::new().await;
    let serve = Serve::start(&db).await;
    for (method, path) in [
        ("POST", "/api/sessions"),
        ("GET", "/api/session"),
        ("GET", "/api/users/42/sessions"),
        ("DELETE", "/api/users/42/sessions"),
        ("POST", "/api/cleanup"),
        ("GET", "/api/no-such-route"),
        ("GET", "/api"),
    ] {
        let reply = serve
            .request(method, path)
            .json(&json!({ "user_id": 42 }))
            .send()
            .await;
        assert_unauthorized(&reply, false);
        assert!(reply.cookie_token().is_none());
    }
    // Another scheme is no bearer token.
    let reply = serve
        .request("GET", "/api/users/42/sessions")
        .header("Authorization", &format!("Basic {API_TOKEN}"))
        .send()
        .await;
    assert_unauthorized(&reply, false);
    assert!(
        db.store()
            .await
            .get_user_sessions(42)
            .await
            .unwrap()
            .is_empty()
    );

    let reply = serve.request("GET", "/openapi.json").send().await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["components"]["securitySchemes"]["bearerAuth"].is_object());
}

#[tokio::test]
async fn a_wrong_api_token_is_401_and_the_right_one_gets_an_uncached_answer() {
    let db = TestDb::new().await;
    let serve = Serve::start(&db).await;
    let mut near = API_TOKEN.to_owned();
    near.pop();
    near.push('X');
    for wrong in [
        near.as_str(),
        &API_TOKEN[1..],
        &format!("{API_TOKEN}0"),
        "x",
    ] {
        let reply = serve
            .request("POST", "/api/sessions")
            .header("Authorization", &format!("Bearer {wrong}"))
            .json(&json!({ "user_id": 42 }))
            .send()
            .await;
        assert_unauthorized(&reply, true);
    }
    assert!(
        db.store()
            .await
            .get_user_sessions(42)
            .await
            .unwrap()
            .is_empty()
    );

    let reply = serve
        .api("POST", "/api/sessions")
        .json(&json!({ "user_id": 42 }))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(
        reply.header("cache-control"),
        Some("no-store"),
        "it carries a token"
    );
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    // The session token goes in a header, never the URL.
    let reply = serve
        .api("GET", "/api/session")
        .header("X-Session-Token", &token)
        .send()
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json()["user_id"], 42);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let reply = serve.api("GET", "/api/session").send().await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "invalid_request");
    let reply = serve
        .api("GET", &format!("/api/sessions/{token}"))
        .send()
        .await;
    assert_eq!(reply.status, 404, "no route takes a token in the path");
}

#[tokio::test]
async fn a_generated_token_is_printed_once_written_0600_and_works() {
    use std::os::unix::fs::PermissionsExt as _;
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    let mut serve = Serve::start_with(&db, &["--listen", "127.0.0.1:0"], None, state.path()).await;
    let mut printed = None;
    for _ in 0..5 {
        let line = serve.lines.next_line().await.unwrap().expect("a line");
        if let Some((_, token)) = line.split_once("API token (generated") {
            printed = Some(token.rsplit(' ').next().unwrap().to_owned());
            assert!(line.contains("mode 0600"), "{line}");
            break;
        }
    }
    let printed = printed.expect("serve prints the generated token");
    assert_eq!(printed.len(), 64);
    assert!(printed.bytes().all(|b| b.is_ascii_hexdigit()));

    let file = state.path().join("wasm-sessions/api-token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", file.display());
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), printed);
    let dir_mode = std::fs::metadata(file.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);

    let reply = serve
        .request("POST", "/api/sessions")
        .header("Authorization", &format!("Bearer {printed}"))
        .json(&json!({}))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    let reply = serve
        .request("POST", "/api/sessions")
        .json(&json!({}))
        .send()
        .await;
    assert_unauthorized(&reply, false);
}

#[tokio::test]
async fn a_non_loopback_listen_without_a_configured_token_exits_with_the_reason() {
    let state = tempfile::tempdir().unwrap();
    // Checked before anything connects: the database URL leads nowhere.
    let nowhere = "postgres://nobody@127.0.0.1:1/nothing";
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:8080"] {
        let output = command(nowhere, &["--listen", listen], None, state.path())
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        assert!(output.stdout.is_empty(), "it never listened: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "refusing to listen on {listen} without an API token"
            )) && stderr.contains("WASM_SESSIONS_API_TOKEN"),
            "{stderr}"
        );
    }
    assert!(
        !state.path().join("wasm-sessions").exists(),
        "no token generated"
    );

    // A token that is too short is refused without being echoed.
    let output = command(
        nowhere,
        &["--listen", "0.0.0.0:0"],
        Some("hunter2"),
        state.path(),
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 32 characters"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_listen_on_every_interface_with_a_token_prints_the_address_it_bound() {
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start_with(
        &db,
        &["--listen", "0.0.0.0:0"],
        Some(API_TOKEN),
        state.path(),
    )
    .await;
    assert!(
        serve
            .first
            .contains(&format!("http://0.0.0.0:{}/", serve.port())),
        "{}",
        serve.first
    );
    // An IP literal cannot be rebound: allowed on the bound port; a name is not.
    let reply = serve
        .request("GET", "/")
        .host(Some(&serve.connect_to()))
        .send()
        .await;
    assert_eq!(reply.status, 200);
    let reply = serve
        .request("GET", "/")
        .host(Some(&format!("rebound.example:{}", serve.port())))
        .send()
        .await;
    assert_eq!(reply.status, 421);
}

#[tokio::test]
async fn a_request_for_a_foreign_host_is_refused_before_anything_happens() {
    let db = TestDb::new().await;
    let state = tempfile::tempdir().unwrap();
    let serve = Serve::start_with(
        &db,
        &[
            "--listen",
            "127.0.0.1:0",
            "--allowed-host",
            "sessions.example.com",
        ],
        Some(API_TOKEN),
        state.path(),
    )
    .await;
    let port = serve.port();
    // A page of evil.example whose name now resolves to 127.0.0.1 (DNS rebinding).
    for host in [
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("localhost:{}", port.wrapping_add(1)),
        "10.0.0.1".to_owned(),
    ] {
        let reply = serve.request("GET", "/").host(Some(&host)).send().await;
        assert_eq!(reply.status, 421, "{host}: {reply:?}");
        assert!(reply.body.contains("Wrong host"), "{}", reply.body);
        let reply = serve
            .api("GET", "/api/users/1/sessions")
            .host(Some(&host))
            .send()
            .await;
        assert_eq!(reply.status, 421, "{host}");
        assert_eq!(reply.json()["error"], "misdirected_request");
        let reply = serve
            .request("POST", "/data")
            .host(Some(&host))
            .form("key=k&value=v")
            .send()
            .await;
        assert_eq!(reply.status, 421, "{host}");
        assert!(reply.cookie_token().is_none(), "no session was started");
    }
    let reply = serve.request("GET", "/").host(None).send().await;
    assert_eq!(reply.status, 400, "no Host: {reply:?}");

    // The names that are this server.
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        "sessions.example.com".to_owned(),
        "sessions.example.com:443".to_owned(),
    ] {
        let reply = serve.request("GET", "/").host(Some(&host)).send().await;
        assert_eq!(reply.status, 200, "{host}");
    }
}

#[tokio::test]
async fn cross_site_posts_are_refused_on_the_demo_sign_in_included_and_on_the_api() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let serve = Serve::start(&db).await;
    let here = format!("http://{}", serve.addr);

    // A signed-in browser.
    let reply = serve
        .request("POST", "/login")
        .header("Origin", &here)
        .header("Sec-Fetch-Site", "same-origin")
        .form("user_id=42")
        .send()
        .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let token = reply.cookie_token().expect("a session").to_owned();

    // Another site posts a form: told apart by Sec-Fetch-Site, else by Origin.
    let cross: [&[(&str, &str)]; 4] = [
        &[
            ("Sec-Fetch-Site", "cross-site"),
            ("Origin", "http://evil.example"),
        ],
        &[
            ("Sec-Fetch-Site", "same-site"),
            ("Origin", "http://sub.localhost"),
        ],
        &[("Origin", "http://evil.example")],
        &[("Origin", "null")],
    ];
    for headers in cross {
        let with = |mut req: Req| {
            for (name, value) in headers {
                req = req.header(name, value);
            }
            req
        };
        let reply = with(serve.request("POST", "/data"))
            .cookie(&token)
            .form("key=evil&value=1")
            .send()
            .await;
        assert_eq!(reply.status, 403, "{headers:?}: {reply:?}");
        assert!(reply.body.contains("another site"), "{}", reply.body);
        assert!(reply.cookie_token().is_none());
        let reply = with(serve.request("POST", "/logout"))
            .cookie(&token)
            .send()
            .await;
        assert_eq!(reply.status, 403);
        // Login CSRF: signing the victim's browser in as the attacker.
        let reply = with(serve.request("POST", "/login"))
            .form("user_id=666")
            .send()
            .await;
        assert_eq!(reply.status, 403, "{headers:?}");
        assert!(
            reply.cookie_token().is_none(),
            "no session for the attacker's user"
        );
        // The API, even with the right bearer token.
        let reply = with(serve.api("POST", "/api/sessions"))
            .json(&json!({ "user_id": 666 }))
            .send()
            .await;
        assert_eq!(reply.status, 403, "{headers:?}");
        assert_eq!(reply.json()["error"], "cross_site_request");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
    }
    let session = store.load(&token).await.expect("still signed in");
    assert_eq!(session.user_id(), Some(42));
    assert_eq!(session.get_str("evil"), None, "nothing was stored");
    assert!(store.get_user_sessions(666).await.unwrap().is_empty());

    // Same-origin forms, and clients that are no browser (no Origin, no Sec-Fetch-Site), still work.
    let reply = serve
        .request("POST", "/data")
        .header("Origin", &here)
        .cookie(&token)
        .form("key=mine&value=1")
        .send()
        .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let reply = serve
        .request("POST", "/data")
        .cookie(&token)
        .form("key=curl&value=1")
        .send()
        .await;
    assert_eq!(reply.status, 303);
    let session = store.load(&token).await.unwrap();
    assert_eq!(session.get_str("mine"), Some("1"));
    assert_eq!(session.get_str("curl"), Some("1"));
}

#[tokio::test]
async fn a_planted_session_cookie_is_dead_after_sign_in() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let serve = Serve::start(&db).await;

    // The attacker gets a session of their own from the demo...
    let reply = serve
        .request("POST", "/data")
        .form("key=planted&value=yes")
        .send()
        .await;
    assert_eq!(reply.status, 303);
    let planted = reply.cookie_token().expect("a session cookie").to_owned();
    assert!(store.load(&planted).await.is_ok());

    // ...and plants its cookie in the victim's browser, who then signs in.
    let reply = serve
        .request("POST", "/login")
        .cookie(&planted)
        .form("user_id=7")
        .send()
        .await;
    assert_eq!(reply.status, 303, "{reply:?}");
    let signed_in = reply.cookie_token().expect("a new cookie").to_owned();
    assert_ne!(signed_in, planted, "the token rotates at sign-in");
    assert!(
        matches!(store.load(&planted).await, Err(StoreError::NotFound)),
        "the planted token is dead"
    );
    assert_eq!(store.load(&signed_in).await.unwrap().user_id(), Some(7));

    // With the planted cookie, the attacker is not signed in.
    let reply = serve.request("GET", "/").cookie(&planted).send().await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.body.contains("You are not signed in"),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("Signed in as user"));
}

#[tokio::test]
async fn the_session_cookie_is_host_prefixed_secure_httponly_and_strict() {
    let db = TestDb::new().await;
    let serve = Serve::start(&db).await;
    let reply = serve
        .request("POST", "/login")
        .form("user_id=3&remember=on")
        .send()
        .await;
    let cookie = reply.header("set-cookie").expect("a cookie").to_owned();
    assert!(cookie.starts_with(&format!("{COOKIE}=")), "{cookie}");
    for attribute in [
        "Secure",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=2592000",
    ] {
        assert!(
            cookie.split("; ").any(|a| a == attribute),
            "{attribute} in {cookie}"
        );
    }
    assert!(!cookie.contains("Domain"), "{cookie}");
    assert_eq!(reply.header("cache-control"), Some("no-store"));
}
