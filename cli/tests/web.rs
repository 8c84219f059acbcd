//! The demo app without a browser, through the router on real PostgreSQL (the browser test covers the
//! same flows in Chromium): device labels, relative times on a manual clock, "this device", the message
//! after every action, a revoked browser told so and its cookie removed, HTML error pages, escaping,
//! JSON values, "remember me", and parallel form posts from one session (issue 13.4).
//!
//! The store runs on `serve`'s configuration ([`store_config`]: the `__Host-` cookie, 30 days at most, 30
//! minutes idle), so what is tested here is what `serve` does; requests name an allowed `Host` and carry
//! no `Origin` (the cross-site and host checks are tested in `defences.rs`).

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::json;
use tower::ServiceExt as _;
use wasm_sessions::{
    Config, Expiry, ManualClock, PostgresDriver, PostgresOptions, SessionStore, StoreError,
};
use wasm_sessions_cli::serve::{
    ApiToken, COOKIE_NAME, IDLE_TIMEOUT_SECS, MAX_AGE_SECS, ServeOptions, route_list, router,
    store_config,
};
use wasm_sessions_tests::TestDb;

const CHROME_LINUX: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const HEADLESS: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36";
const FIREFOX_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
const EDGE_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0";
const CURL: &str = "curl/8.5.0";

const DAY: u64 = 86_400;

/// The address the router believes it is bound to; requests name it in `Host`.
const BOUND: &str = "127.0.0.1:8080";

/// The API token (only `every_listed_route_is_served_by_the_router` calls the API).
const API_TOKEN: &str = "web-test-token-0123456789abcdef0123456789abcdef";

/// `serve`'s options for a server bound to [`BOUND`].
fn options() -> ServeOptions {
    ServeOptions::new(ApiToken::new(API_TOKEN).unwrap()).allow_address(BOUND.parse().unwrap())
}

/// The library's lifetimes (one day at most, no idle timeout), for the tests about times and caps.
fn one_day_no_idle(config: &mut Config) {
    config.max_age = DAY as i64;
    config.idle_timeout = None;
}

/// The router on a fresh database, with a store on a manual clock.
struct Demo {
    _db: TestDb,
    store: SessionStore,
    clock: ManualClock,
    app: Router,
}

/// What came back.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    location: Option<String>,
    set_cookie: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Reply {
    /// The value the `Set-Cookie` header stores (empty for a removal cookie).
    fn token(&self) -> Option<&str> {
        let pair = self.set_cookie.as_deref()?.split(';').next()?;
        Some(pair.split_once('=')?.1)
    }

    fn is_html(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("text/html"))
    }
}

impl Demo {
    /// `serve`'s configuration, as it is.
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// `serve`'s configuration, then `edit`.
    async fn with(edit: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        let db = TestDb::new().await;
        let clock = ManualClock::starting_now();
        let store = SessionStore::builder(db.driver())
            .clock(clock.clone())
            .configure(|config| {
                store_config(config);
                edit(config);
            })
            .build()
            .await
            .expect("store builds");
        let app = router(store.clone(), options());
        Self {
            _db: db,
            store,
            clock,
            app,
        }
    }

    fn cookie_name(&self) -> &str {
        &self.store.config().cookie_name
    }

    /// One request: `token` as the session cookie, `form` as a form body (a POST), `agent` as the
    /// `User-Agent`.
    async fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        form: Option<String>,
        agent: Option<&str>,
    ) -> Reply {
        send(
            &self.app,
            self.cookie_name(),
            method,
            uri,
            token,
            form,
            agent,
        )
        .await
    }

    async fn get(&self, uri: &str, token: Option<&str>) -> Reply {
        self.send("GET", uri, token, None, None).await
    }

    async fn post(&self, uri: &str, token: Option<&str>, form: &str) -> Reply {
        self.send("POST", uri, token, Some(form.to_owned()), None)
            .await
    }

    /// Signs in as `user` from `agent`; returns the session token.
    async fn sign_in_from(&self, user: i64, agent: &str, remember: bool) -> String {
        let form = if remember {
            format!("user_id={user}&remember=on")
        } else {
            format!("user_id={user}")
        };
        let reply = self
            .send("POST", "/login", None, Some(form), Some(agent))
            .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        assert_eq!(reply.location.as_deref(), Some("/?m=signed-in"));
        reply.token().expect("a session cookie").to_owned()
    }

    async fn sign_in(&self, user: i64) -> String {
        self.sign_in_from(user, CHROME_LINUX, false).await
    }

    /// The handle of the session with `token`.
    async fn handle(&self, token: &str) -> String {
        self.store.load(token).await.unwrap().handle().to_owned()
    }
}

async fn send(
    app: &Router,
    cookie_name: &str,
    method: &str,
    uri: &str,
    token: Option<&str>,
    form: Option<String>,
    agent: Option<&str>,
) -> Reply {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, BOUND);
    if uri.starts_with("/api/") {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {API_TOKEN}"));
    }
    if let Some(token) = token {
        builder = builder.header(header::COOKIE, format!("{cookie_name}={token}"));
    }
    if let Some(agent) = agent {
        builder = builder.header(header::USER_AGENT, agent);
    }
    let body = match form {
        Some(form) => {
            builder = builder.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            Body::from(form)
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(builder.body(body).unwrap())
        .await
        .unwrap();
    let headers = response.headers();
    let header = |name| {
        headers
            .get(name)
            .map(|v: &header::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let (location, set_cookie, content_type) = (
        header(header::LOCATION),
        header(header::SET_COOKIE),
        header(header::CONTENT_TYPE),
    );
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        location,
        set_cookie,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The text of the page's message line, if it has one.
fn message(page: &str) -> Option<&str> {
    let start = page.find(r#"id="message" role="status">"#)?;
    let rest = &page[start..];
    let text = &rest[rest.find('>')? + 1..];
    Some(&text[..text.find("</p>")?])
}

/// The text of the page's error line, if it has one.
fn error(page: &str) -> Option<&str> {
    let start = page.find(r#"id="error" role="alert">"#)?;
    let rest = &page[start..];
    let text = &rest[rest.find('>')? + 1..];
    Some(&text[..text.find("</p>")?])
}

/// The rows of the devices table.
fn device_rows(page: &str) -> Vec<&str> {
    page.split(r#"<tr class="device"#)
        .skip(1)
        .map(|row| &row[..row.find("</tr>").unwrap()])
        .collect()
}

fn form_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char);
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

#[tokio::test]
async fn device_labels_come_from_the_user_agent_and_session_data_cannot_overwrite_them() {
    let demo = Demo::new().await;
    let agents = [
        (CHROME_LINUX, "Chrome on Linux"),
        (HEADLESS, "Chrome (headless) on Linux"),
        (FIREFOX_WINDOWS, "Firefox on Windows"),
        (SAFARI_IPHONE, "Safari on iPhone"),
        (EDGE_MAC, "Edge on macOS"),
        (CURL, "curl"),
    ];
    let mut tokens = Vec::new();
    for (agent, label) in agents {
        let token = demo.sign_in_from(5, agent, false).await;
        let session = demo.store.load(&token).await.unwrap();
        assert_eq!(session.label(), Some(label), "{agent}");
        tokens.push(token);
    }
    let curl = tokens.last().unwrap();

    // A data key named `device` is just data: the label stays.
    let reply = demo
        .post("/data", Some(curl), "key=device&value=Evil+Laptop")
        .await;
    assert_eq!(reply.location.as_deref(), Some("/?m=added"));
    assert_eq!(demo.store.load(curl).await.unwrap().label(), Some("curl"));

    let page = demo.get("/", Some(curl)).await.body;
    assert!(
        page.contains(r#"on <span id="device">curl</span>"#),
        "{page}"
    );
    let rows = device_rows(&page);
    assert_eq!(rows.len(), agents.len());
    for (_, label) in agents {
        assert!(
            rows.iter()
                .any(|row| row.contains(&format!(r#"<td class="label">{label}</td>"#))),
            "{label} is listed"
        );
    }
    assert!(
        !rows.iter().any(|row| row.contains("Evil")),
        "the data key is not a label"
    );
    assert!(page.contains("Evil Laptop"), "it is shown as data");
}

#[tokio::test]
async fn times_are_relative_to_the_store_clock_with_the_absolute_time_in_a_time_element() {
    let demo = Demo::with(one_day_no_idle).await;
    let signed_in_at = demo.store.now();
    let token = demo.sign_in(6).await;
    let expires = demo.store.load(&token).await.unwrap().expires_at();
    assert_eq!(expires, signed_in_at + Duration::from_secs(DAY));

    let page = demo.get("/", Some(&token)).await.body;
    let rows = device_rows(&page);
    assert!(
        rows[0].contains(r#"class="activity"><span class="rel">just now</span>"#),
        "{}",
        rows[0]
    );

    demo.clock.advance(Duration::from_secs(2 * 60));
    let page = demo.get("/", Some(&token)).await.body;
    let row = device_rows(&page)[0];
    assert!(
        row.contains(r#"class="activity"><span class="rel">2 minutes ago</span>"#),
        "{row}"
    );
    assert!(
        row.contains(r#"class="expires"><span class="rel">in 23 hours</span>"#),
        "{row}"
    );
    // The absolute times, for the browser's local time (and readable without JavaScript).
    assert!(
        row.contains(&format!(
            r#"<time class="abs" datetime="{}">"#,
            rfc3339(expires)
        )),
        "{row}"
    );
    assert!(
        row.contains(&format!(
            r#"<time class="abs" datetime="{}">"#,
            rfc3339(signed_in_at)
        )),
        "{row}"
    );
    assert!(row.contains(" UTC</time>"), "{row}");
    assert!(page.contains("toLocaleString"), "the script localizes them");

    demo.clock.advance(Duration::from_secs(3 * 3_600));
    let page = demo.get("/", Some(&token)).await.body;
    let row = device_rows(&page)[0];
    assert!(row.contains(">3 hours ago<"), "{row}");
    assert!(row.contains(">in 20 hours<"), "{row}");
}

#[tokio::test]
async fn this_device_is_marked_by_handle_even_when_two_sessions_start_at_the_same_instant() {
    let demo = Demo::new().await;
    let laptop = demo.sign_in(3).await;
    let phone = demo.sign_in(3).await;
    let (laptop_session, phone_session) = (
        demo.store.load(&laptop).await.unwrap(),
        demo.store.load(&phone).await.unwrap(),
    );
    assert_eq!(
        laptop_session.created_at(),
        phone_session.created_at(),
        "the clock stood still"
    );

    let page = demo.get("/", Some(&phone)).await.body;
    let rows = device_rows(&page);
    assert_eq!(rows.len(), 2);
    let here: Vec<_> = rows.iter().filter(|r| r.contains("this device")).collect();
    assert_eq!(here.len(), 1, "{page}");
    assert!(here[0].starts_with(" this-device"));
    assert!(
        !here[0].contains("/devices/revoke"),
        "no revoke button for this device"
    );
    assert!(page.contains(&format!(r#"value="{}""#, laptop_session.handle())));
    assert!(!page.contains(&format!(r#"value="{}""#, phone_session.handle())));
}

#[tokio::test]
async fn every_action_ends_with_its_message() {
    let demo = Demo::new().await;
    let expect = async |reply: Reply, code: &str, token: Option<&str>, text: &str| {
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
        let location = format!("/?m={code}");
        assert_eq!(reply.location.as_deref(), Some(location.as_str()));
        let page = demo.get(&location, token).await.body;
        let shown = message(&page).unwrap_or_else(|| panic!("no message for {code}: {page}"));
        assert!(shown.contains(text), "{code}: {shown}");
    };

    let reply = demo
        .send(
            "POST",
            "/login",
            None,
            Some("user_id=11".into()),
            Some(CURL),
        )
        .await;
    let token = reply.token().unwrap().to_owned();
    expect(reply, "signed-in", Some(&token), "You are signed in").await;

    let reply = demo.post("/data", Some(&token), "key=a&value=1").await;
    expect(reply, "added", Some(&token), "Saved in the session").await;
    let reply = demo
        .post("/data", Some(&token), "action=remove&key=a")
        .await;
    expect(reply, "removed", Some(&token), "Removed from the session").await;
    assert_eq!(demo.store.load(&token).await.unwrap().get_str("a"), None);

    let other = demo.sign_in(11).await;
    let handle = demo.handle(&other).await;
    let reply = demo
        .post("/devices/revoke", Some(&token), &format!("handle={handle}"))
        .await;
    expect(reply, "revoked", Some(&token), "That device is signed out").await;

    let reply = demo.post("/logout", Some(&token), "").await;
    assert_eq!(reply.token(), Some(""), "the cookie is removed");
    expect(
        reply,
        "signed-out",
        None,
        "You are signed out on this device",
    )
    .await;

    let first = demo.sign_in(12).await;
    let second = demo.sign_in(12).await;
    let reply = demo.post("/logout-everywhere", Some(&first), "").await;
    assert_eq!(reply.token(), Some(""));
    expect(
        reply,
        "signed-out-everywhere",
        None,
        "You are signed out everywhere",
    )
    .await;
    assert!(matches!(
        demo.store.load(&second).await,
        Err(StoreError::NotFound)
    ));

    // Codes only: an unknown one shows nothing, and nothing from the address is echoed.
    for uri in [
        "/?m=bogus",
        "/?m=%3Cscript%3Ealert(1)%3C/script%3E",
        "/?x=1",
    ] {
        let page = demo.get(uri, None).await.body;
        assert_eq!(message(&page), None, "{uri}");
        assert!(!page.contains("bogus") && !page.contains("alert(1)"));
    }
}

#[tokio::test]
async fn a_browser_whose_session_was_revoked_is_told_so_and_its_cookie_is_removed() {
    let demo = Demo::new().await;
    let laptop = demo.sign_in(3).await;
    let phone = demo.sign_in(3).await;
    let stranger = demo.sign_in(4).await;
    let removal = format!("{}=;", demo.cookie_name());

    // Not the phone's to revoke, or not a handle at all: a readable page, nothing revoked.
    let stranger_handle = demo.handle(&stranger).await;
    let reply = demo
        .post(
            "/devices/revoke",
            Some(&phone),
            &format!("handle={stranger_handle}"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.is_html());
    assert!(
        error(&reply.body).is_some_and(|e| e.contains("not one of your sessions")),
        "{}",
        reply.body
    );
    assert_eq!(demo.store.load(&stranger).await.unwrap().user_id(), Some(4));
    let reply = demo
        .post("/devices/revoke", Some(&phone), "handle=not-a-handle")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(error(&reply.body).is_some_and(|e| e.contains("not a session handle")));

    let laptop_handle = demo.handle(&laptop).await;
    let reply = demo
        .post(
            "/devices/revoke",
            Some(&phone),
            &format!("handle={laptop_handle}"),
        )
        .await;
    assert_eq!(reply.location.as_deref(), Some("/?m=revoked"));
    assert!(matches!(
        demo.store.load(&laptop).await,
        Err(StoreError::NotFound)
    ));

    // The laptop comes back: told why, signed out, and its cookie removed by the same response.
    let reply = demo.get("/", Some(&laptop)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        message(&reply.body).is_some_and(|m| m.contains("ended from another device")),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("You are not signed in"));
    let cookie = reply.set_cookie.as_deref().expect("a removal cookie");
    assert!(
        cookie.starts_with(&removal) && cookie.contains("Max-Age=0"),
        "{cookie}"
    );
    // A form from the revoked browser starts no new session: the message, and the cookie removed.
    let reply = demo.post("/data", Some(&laptop), "key=k&value=v").await;
    assert_eq!(reply.location.as_deref(), Some("/?m=ended"));
    assert!(reply.set_cookie.as_deref().unwrap().starts_with(&removal));
    let reply = demo.post("/logout-everywhere", Some(&laptop), "").await;
    assert_eq!(reply.location.as_deref(), Some("/?m=ended"));
    assert_eq!(
        demo.store.get_user_sessions(3).await.unwrap().len(),
        1,
        "the phone is still signed in"
    );
    // Once the cookie is gone, the page is a plain sign-in page.
    let reply = demo.get("/", None).await;
    assert_eq!(message(&reply.body), None);
    assert_eq!(reply.set_cookie, None);

    // An expired session and a cookie that is no token get their own messages.
    let old = demo.sign_in(5).await;
    demo.clock.advance(Duration::from_secs(DAY + 1));
    let reply = demo.get("/", Some(&old)).await;
    assert!(
        message(&reply.body).is_some_and(|m| m.contains("expired")),
        "{}",
        reply.body
    );
    assert!(reply.set_cookie.as_deref().unwrap().starts_with(&removal));
    let reply = demo.get("/", Some("nonsense")).await;
    assert!(message(&reply.body).is_some_and(|m| m.contains("does not accept")));
    assert!(reply.set_cookie.as_deref().unwrap().starts_with(&removal));

    // A live session without a label (made through the library, not the demo) is not mistaken for one.
    let mut unlabelled = demo.store.new_session().await.unwrap();
    unlabelled.insert("from", "the library").unwrap();
    demo.store.save(&mut unlabelled).await.unwrap();
    let reply = demo.get("/", Some(unlabelled.id())).await;
    assert_eq!(message(&reply.body), None, "{}", reply.body);
    assert!(reply.body.contains("the library"));
    assert_eq!(reply.set_cookie, None);
}

#[tokio::test]
async fn a_too_large_form_gets_an_html_413_with_a_way_back() {
    let demo = Demo::new().await;
    let token = demo.sign_in(7).await;
    let huge = format!("key=big&value={}", "x".repeat(3 << 20));
    let reply = demo.post("/data", Some(&token), &huge).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(reply.is_html(), "{reply:?}");
    assert!(reply.body.contains("too large"), "{}", reply.body);
    assert!(reply.body.contains(r#"<a id="home" href="/">"#));
    assert_eq!(demo.store.load(&token).await.unwrap().get_str("big"), None);
}

/// Needs the router's fallback to answer paths outside `/api` with the demo's HTML 404.
#[tokio::test]
async fn an_unknown_page_gets_an_html_404_and_the_api_keeps_its_json_404() {
    let demo = Demo::new().await;
    let reply = demo.get("/no-such-page", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(reply.is_html(), "{reply:?}");
    assert!(reply.body.contains(r#"href="/""#));
    // The JSON API keeps its JSON 404.
    let reply = demo.get("/api/no-such-route", None).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert!(
        reply
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:?}"
    );
}

#[tokio::test]
async fn a_store_failure_gets_an_html_page_with_the_public_message_only() {
    // The database is unreachable: the status from the one table, the public message only.
    let driver = PostgresDriver::connect(
        "postgres://nobody@127.0.0.1:1/nothing",
        &PostgresOptions {
            connect_timeout: Duration::from_secs(2),
            ..PostgresOptions::default()
        },
    )
    .unwrap();
    let down = SessionStore::builder(driver)
        .configure(store_config)
        .build()
        .await
        .unwrap();
    let app = router(down.clone(), options());
    let reply = send(
        &app,
        &down.config().cookie_name,
        "GET",
        "/",
        Some(&"ab".repeat(32)),
        None,
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.is_html());
    assert!(
        error(&reply.body).is_some_and(|e| e.contains("The database is unavailable")),
        "{}",
        reply.body
    );
    assert!(!reply.body.contains("127.0.0.1") && !reply.body.contains(":1/"));
}

#[tokio::test]
async fn long_keys_and_values_are_escaped_shortened_and_wrap() {
    let demo = Demo::new().await;
    let token = demo.sign_in(8).await;
    let key = format!("<script>alert('k')</script>{}", "k".repeat(400));
    let value = format!("\"><img src=x onerror=alert(1)>{}", "v".repeat(5_000));
    let form = format!("key={}&value={}", form_encode(&key), form_encode(&value));
    let reply = demo.post("/data", Some(&token), &form).await;
    assert_eq!(reply.location.as_deref(), Some("/?m=added"));
    assert_eq!(
        demo.store.load(&token).await.unwrap().get_str(&key),
        Some(value.as_str())
    );

    let page = demo.get("/", Some(&token)).await.body;
    assert!(!page.contains("<script>alert"), "the key is escaped");
    assert!(!page.contains("<img src=x"), "the value is escaped");
    assert!(page.contains("&lt;script&gt;alert(&#39;k&#39;)&lt;/script&gt;"));
    assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    let length = value.chars().count();
    assert!(
        page.contains(&format!("({length} characters in all)")),
        "the value is cut"
    );
    assert!(page.contains("overflow-wrap: anywhere"));
    assert!(page.contains("max-width: 56rem"));

    // The remove button carries the whole key.
    let reply = demo
        .post(
            "/data",
            Some(&token),
            &format!("action=remove&key={}", form_encode(&key)),
        )
        .await;
    assert_eq!(reply.location.as_deref(), Some("/?m=removed"));
    assert_eq!(demo.store.load(&token).await.unwrap().get_str(&key), None);
}

#[tokio::test]
async fn strings_show_as_text_and_other_json_values_as_compact_json() {
    let demo = Demo::new().await;
    let token = demo.sign_in(9).await;
    demo.post("/data", Some(&token), "key=s&value=%7B%22a%22%3A+1%7D")
        .await;
    let reply = demo
        .post(
            "/data",
            Some(&token),
            "key=j&value=%7B%22a%22%3A+%5B1%2C+2%5D%7D&json=on",
        )
        .await;
    assert_eq!(reply.location.as_deref(), Some("/?m=added"));
    let session = demo.store.load(&token).await.unwrap();
    assert_eq!(session.get_str("s"), Some(r#"{"a": 1}"#));
    assert_eq!(
        session.get::<serde_json::Value>("j").unwrap(),
        Some(json!({"a": [1, 2]}))
    );

    let page = demo.get("/", Some(&token)).await.body;
    assert!(page.contains(r#"<div class="value">{&quot;a&quot;: 1}</div>"#));
    assert!(page.contains(r#"<div class="value json">{&quot;a&quot;:[1,2]}</div>"#));

    let reply = demo
        .post("/data", Some(&token), "key=bad&value=%7Bbad&json=on")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(error(&reply.body).is_some_and(|e| e.contains("not valid JSON")));
    assert_eq!(
        demo.store
            .load(&token)
            .await
            .unwrap()
            .get::<serde_json::Value>("bad")
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn remember_me_chooses_a_browser_session_cookie_or_a_remembered_one() {
    // What serve configures for "remember me" to mean something: 30 days at most, 30 minutes idle.
    let demo = Demo::new().await;
    let config = demo.store.config();
    assert_eq!(config.max_age, 30 * DAY as i64);
    assert_eq!((MAX_AGE_SECS, IDLE_TIMEOUT_SECS), (30 * DAY as i64, 1_800));
    assert_eq!(config.idle_timeout, Some(1_800));
    assert_eq!(config.cookie_name, COOKIE_NAME);
    assert!(COOKIE_NAME.starts_with("__Host-") && config.secure && config.domain.is_none());

    let page = demo.get("/", None).await.body;
    assert!(page.contains("Without “remember me”"));
    assert!(
        page.contains("Ends when you close the browser (or after 30 minutes without activity), or at the latest"),
        "{page}"
    );
    assert!(page.contains("With “remember me”"));
    assert!(
        page.contains(
            r#"Kept when the browser closes. Expires <span class="rel">in 30 days</span>"#
        )
    );

    let reply = demo
        .send(
            "POST",
            "/login",
            None,
            Some("user_id=21".into()),
            Some(CURL),
        )
        .await;
    let cookie = reply.set_cookie.clone().unwrap();
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "a browser-session cookie: {cookie}"
    );
    let session_only = reply.token().unwrap().to_owned();
    assert_eq!(
        demo.store.load(&session_only).await.unwrap().expiry(),
        Some(Expiry::OnSessionEnd)
    );
    let page = demo.get("/", Some(&session_only)).await.body;
    assert!(page.contains("This session: not remembered"), "{page}");
    assert!(page.contains("Remembered (sign in with “remember me”)"));

    let reply = demo
        .send(
            "POST",
            "/login",
            None,
            Some("user_id=21&remember=on".into()),
            Some(CURL),
        )
        .await;
    let cookie = reply.set_cookie.clone().unwrap();
    assert!(
        cookie.contains(&format!("Max-Age={}", 30 * DAY)),
        "{cookie}"
    );
    let remembered = reply.token().unwrap().to_owned();
    assert_eq!(
        demo.store.load(&remembered).await.unwrap().expiry(),
        Some(Expiry::OnInactivity(Duration::from_secs(30 * DAY)))
    );
    let page = demo.get("/", Some(&remembered)).await.body;
    assert!(page.contains("This session: remembered"), "{page}");
    assert!(page.contains("Not remembered (sign in without “remember me”)"));

    // 31 minutes later the session-only sign-in has expired on the server; the remembered one has not.
    demo.clock.advance(Duration::from_secs(31 * 60));
    let reply = demo.get("/", Some(&session_only)).await;
    assert!(message(&reply.body).is_some_and(|m| m.contains("expired")));
    let page = demo.get("/", Some(&remembered)).await.body;
    assert!(page.contains("Signed in as user"));

    // The configured max age caps "remember me".
    let short = Demo::with(one_day_no_idle).await;
    let reply = short
        .send(
            "POST",
            "/login",
            None,
            Some("user_id=1&remember=on".into()),
            None,
        )
        .await;
    let cookie = reply.set_cookie.unwrap();
    assert!(cookie.contains(&format!("Max-Age={DAY}")), "{cookie}");
}

/// Issue 13.4 through the demo: form posts of distinct keys from one session merge instead of
/// conflicting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_parallel_posts_of_distinct_keys_from_one_session_all_succeed() {
    let demo = Demo::new().await;
    let token = demo.sign_in(13).await;
    let mut posts = tokio::task::JoinSet::new();
    for i in 0..32 {
        let (app, name, token) = (
            demo.app.clone(),
            demo.cookie_name().to_owned(),
            token.clone(),
        );
        posts.spawn(async move {
            let form = format!("key=k{i}&value=v{i}");
            send(&app, &name, "POST", "/data", Some(&token), Some(form), None).await
        });
    }
    let mut statuses = Vec::new();
    while let Some(reply) = posts.join_next().await {
        let reply = reply.unwrap();
        statuses.push((reply.status, reply.location));
    }
    assert!(
        statuses
            .iter()
            .all(|(s, l)| *s == StatusCode::SEE_OTHER && l.as_deref() == Some("/?m=added")),
        "{statuses:?}"
    );
    let session = demo.store.load(&token).await.unwrap();
    for i in 0..32 {
        assert_eq!(
            session.get_str(&format!("k{i}")),
            Some(format!("v{i}").as_str())
        );
    }
}

#[tokio::test]
async fn bad_form_input_shows_an_error_on_the_page_and_stores_nothing() {
    let demo = Demo::new().await;
    let reply = demo.post("/login", None, "user_id=alice").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.set_cookie, None);
    assert!(error(&reply.body).is_some_and(|e| e.contains("whole number")));

    let token = demo.sign_in(8).await;
    let reply = demo
        .post("/data", Some(&token), "key=k&value=nul%00byte")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        error(&reply.body).is_some_and(|e| e.contains("Not stored")),
        "{}",
        reply.body
    );
    assert_eq!(demo.store.load(&token).await.unwrap().get_str("k"), None);

    let reply = demo.post("/data", Some(&token), "key=k&value=v").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(
        demo.store.load(&token).await.unwrap().get_str("k"),
        Some("v")
    );

    // A form that does not parse: an HTML page, not a bare text.
    let reply = demo.post("/data", Some(&token), "value=no-key").await;
    assert!(reply.status.is_client_error());
    assert!(reply.is_html());
    assert!(reply.body.contains(r#"href="/""#));
}

#[tokio::test]
async fn signing_out_here_deletes_only_this_session() {
    let demo = Demo::new().await;
    let here = demo.sign_in(9).await;
    let elsewhere = demo.sign_in(9).await;
    let reply = demo.post("/logout", Some(&here), "").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.token(), Some(""), "the removal cookie empties it");
    assert!(matches!(
        demo.store.load(&here).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        demo.store.load(&elsewhere).await.unwrap().user_id(),
        Some(9)
    );
}

#[tokio::test]
async fn every_listed_route_is_served_by_the_router() {
    let demo = Demo::new().await;
    for route in route_list() {
        let path = route
            .path
            .replace("{token}", &"ab".repeat(32))
            .replace("{handle}", &"cd".repeat(32))
            .replace("{user_id}", "1");
        let reply = demo
            .send(route.method.as_str(), &path, None, None, None)
            .await;
        assert_ne!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{route:?}");
        assert!(
            !reply.body.contains("no route for") && reply.body != "not found",
            "{route:?} is not routed: {} {}",
            reply.status,
            reply.body
        );
    }
}
