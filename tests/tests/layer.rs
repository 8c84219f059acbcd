//! `SessionLayer` and the `SessionHandle` extractor: an axum router on the real component and a fresh
//! PostgreSQL database per test, driven request by request with `tower::ServiceExt::oneshot`.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use wasm_sessions::{
    Config, Expiry, Isolation, ManualClock, SameSite, SessionHandle, SessionLayer, SessionStore,
    StoreError,
};
use wasm_sessions_tests::{CountingDriver, TestDb};

/// The store under test, the app wrapped in the layer, its clock and the statement counter.
struct Fixture {
    db: TestDb,
    store: SessionStore,
    clock: ManualClock,
    statements: CountingDriver,
    rotate_on_user_change: bool,
}

impl Fixture {
    async fn new() -> Self {
        Self::with(|_| {}, Isolation::default()).await
    }

    async fn with(edit: impl FnOnce(&mut Config) + Send + 'static, isolation: Isolation) -> Self {
        let db = TestDb::new().await;
        let statements = CountingDriver::new(&db);
        let clock = ManualClock::starting_now();
        let store = SessionStore::builder(statements.clone())
            .clock(clock.clone())
            .isolation(isolation)
            .configure(edit)
            .build()
            .await
            .expect("store builds");
        Self {
            db,
            store,
            clock,
            statements,
            rotate_on_user_change: true,
        }
    }

    fn app(&self) -> Router {
        app(self.store.clone()).layer(
            SessionLayer::new(self.store.clone()).rotate_on_user_change(self.rotate_on_user_change),
        )
    }

    fn statements(&self) -> usize {
        self.statements.count()
    }

    fn guest_calls(&self) -> u64 {
        self.store.instance_stats().calls
    }

    /// A saved session with `k=v`; returns its token.
    async fn saved_session(&self) -> String {
        let mut session = self.store.new_session().await.unwrap();
        session.set("k", "v");
        self.store.save(&mut session).await.unwrap();
        session.id().to_owned()
    }
}

/// The handlers: each touches the session in one way.
fn app(store: SessionStore) -> Router {
    async fn untouched() -> &'static str {
        "ok"
    }
    async fn read(session: SessionHandle) -> Result<String, StoreError> {
        Ok(session.get_str("k").await?.unwrap_or_default())
    }
    async fn set(
        session: SessionHandle,
        Path((key, value)): Path<(String, String)>,
    ) -> Result<(), StoreError> {
        session.set(key, value).await
    }
    async fn count(session: SessionHandle) -> Result<String, StoreError> {
        let n = session.get::<u64>("n").await?.unwrap_or(0) + 1;
        session.insert("n", n).await?;
        Ok(n.to_string())
    }
    async fn fail(session: SessionHandle) -> Result<StatusCode, StoreError> {
        session.set("k", "written by a failing handler").await?;
        Ok(StatusCode::INTERNAL_SERVER_ERROR)
    }
    async fn login(session: SessionHandle, Path(user): Path<i64>) -> Result<(), StoreError> {
        session.set_user(user).await
    }
    async fn logout(session: SessionHandle) -> Result<(), StoreError> {
        session.delete().await
    }
    async fn logout_failing(session: SessionHandle) -> Result<StatusCode, StoreError> {
        session.delete().await?;
        Ok(StatusCode::INTERNAL_SERVER_ERROR)
    }
    async fn whoami(session: SessionHandle) -> Result<String, StoreError> {
        Ok(match session.user_id().await? {
            Some(user) => format!("user {user}"),
            None => "anonymous".to_owned(),
        })
    }
    async fn browser_session(session: SessionHandle) -> Result<(), StoreError> {
        session.set_expiry(Some(Expiry::OnSessionEnd)).await
    }
    async fn save_early(session: SessionHandle) -> Result<String, StoreError> {
        session.set("big", "x".repeat(2000)).await?;
        match session.save().await {
            Err(StoreError::InvalidData(_)) => {
                session.remove("big").await?;
                session.set("small", "ok").await?;
                Ok("recovered".into())
            }
            other => other.map(|()| "saved".into()),
        }
    }
    async fn handle(session: SessionHandle) -> Result<String, StoreError> {
        session.handle().await
    }
    /// Reads `k`, lets another request change it meanwhile, then writes it: a lost update if saved.
    async fn race(
        session: SessionHandle,
        axum::Extension(store): axum::Extension<SessionStore>,
        Path(token): Path<String>,
    ) -> Result<(), StoreError> {
        let seen = session.get_str("k").await?.unwrap_or_default();
        let mut other = store.load(&token).await?;
        other.set("k", "raced");
        store.save(&mut other).await?;
        session.set("k", format!("{seen}+mine")).await
    }
    Router::new()
        .route("/untouched", get(untouched))
        .route("/read", get(read))
        .route("/set/{key}/{value}", post(set))
        .route("/count", post(count))
        .route("/fail", post(fail))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/logout-failing", post(logout_failing))
        .route("/whoami", get(whoami))
        .route("/browser-session", post(browser_session))
        .route("/save-early", post(save_early))
        .route("/handle", get(handle))
        .route("/race/{token}", post(race))
        .layer(axum::Extension(store))
}

/// Sends one request to `app` with an optional `Cookie` header.
async fn send(app: &Router, method: &str, uri: &str, cookie: Option<&str>) -> Response {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// The response's single `Set-Cookie` header, if any.
fn set_cookie(response: &Response) -> Option<String> {
    let mut all = response.headers().get_all(header::SET_COOKIE).iter();
    let first = all.next().map(|v| v.to_str().unwrap().to_owned());
    assert!(all.next().is_none(), "more than one Set-Cookie");
    first
}

/// The token in a `Set-Cookie` value (`name=token; ...`).
fn token(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_owned()
}

fn token_of(response: &Response) -> String {
    token(&set_cookie(response).expect("a Set-Cookie header"))
}

async fn text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn cookie_for(token: &str) -> String {
    format!("other=1; varel_session={token}")
}

fn no_store(response: &Response) -> bool {
    response
        .headers()
        .get(header::CACHE_CONTROL)
        .is_some_and(|v| v == "no-store")
}

/// Guest calls per kind of request, in one isolation mode; fails if any grows.
async fn guest_calls_per_request(isolation: Isolation) {
    let fx = Fixture::with(|_| {}, isolation).await;
    let app = fx.app();
    let token = fx.saved_session().await;
    let cookie = cookie_for(&token);
    let calls = |fx: &Fixture| {
        let now = fx.guest_calls();
        move |fx: &Fixture| fx.guest_calls() - now
    };

    let before = calls(&fx);
    send(&app, "GET", "/untouched", Some(&cookie)).await;
    assert_eq!(before(&fx), 0, "untouched");

    let before = calls(&fx);
    let response = send(&app, "GET", "/read", Some(&cookie)).await;
    assert_eq!(text(response).await, "v");
    assert_eq!(before(&fx), 1, "read");

    let before = calls(&fx);
    let response = send(&app, "GET", "/read", None).await;
    assert_eq!(text(response).await, "");
    assert_eq!(before(&fx), 0, "read without a cookie");

    let before = calls(&fx);
    let response = send(&app, "POST", "/set/k/w", Some(&cookie)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(before(&fx), 2, "change");

    let before = calls(&fx);
    let response = send(&app, "POST", "/set/k/w", None).await;
    let fresh = token_of(&response);
    assert_eq!(before(&fx), 2, "change without a cookie");

    let before = calls(&fx);
    let response = send(&app, "POST", "/login/7", Some(&cookie_for(&fresh))).await;
    let rotated = token_of(&response);
    assert_ne!(rotated, fresh);
    assert_eq!(before(&fx), 2, "login");

    let before = calls(&fx);
    let response = send(&app, "POST", "/logout", Some(&cookie_for(&rotated))).await;
    assert!(set_cookie(&response).unwrap().contains("Max-Age=0"));
    assert_eq!(before(&fx), 2, "logout");

    let before = calls(&fx);
    let response = send(&app, "GET", "/read", Some(&cookie_for(&"0".repeat(64)))).await;
    assert!(set_cookie(&response).unwrap().contains("Max-Age=0"));
    assert_eq!(before(&fx), 1, "read with a stale cookie, removed");
}

#[tokio::test]
async fn guest_calls_per_request_with_warm_instances() {
    guest_calls_per_request(Isolation::default()).await;
}

#[tokio::test]
async fn guest_calls_per_request_with_a_fresh_instance_per_call() {
    guest_calls_per_request(Isolation::FreshInstancePerCall).await;
}

#[tokio::test]
async fn a_handler_that_does_not_touch_the_session_sends_no_sql_and_no_cookie() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let before = fx.statements();
    let response = send(&fx.app(), "GET", "/untouched", Some(&cookie_for(&token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fx.statements(), before);
    assert!(set_cookie(&response).is_none());
    assert!(!no_store(&response));
}

#[tokio::test]
async fn reading_a_session_loads_it_once_and_does_not_save_or_reset_the_cookie() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let before = fx.statements();
    let response = send(&fx.app(), "GET", "/read", Some(&cookie_for(&token))).await;
    assert!(set_cookie(&response).is_none());
    assert!(
        no_store(&response),
        "a page built from a live session is not cached"
    );
    assert_eq!(text(response).await, "v");
    assert_eq!(fx.statements() - before, 1);
}

#[tokio::test]
async fn a_changed_session_is_saved_with_one_statement_and_its_cookie_set() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let before = fx.statements();
    let response = send(&fx.app(), "POST", "/set/k/w", Some(&cookie_for(&token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(no_store(&response));
    assert_eq!(token_of(&response), token);
    assert_eq!(fx.statements() - before, 2, "one load, one save");
    let loaded = fx.store.load(&token).await.unwrap();
    assert_eq!(loaded.get_str("k"), Some("w"));

    // Setting the same value again changes nothing: no save, no cookie.
    let before = fx.statements();
    let response = send(&fx.app(), "POST", "/set/k/w", Some(&cookie_for(&token))).await;
    assert!(set_cookie(&response).is_none());
    assert_eq!(fx.statements() - before, 1);
}

#[tokio::test]
async fn typed_values_are_json_numbers_in_the_row_and_a_counter_counts() {
    let fx = Fixture::new().await;
    let app = fx.app();
    let response = send(&app, "POST", "/count", None).await;
    let token = token_of(&response);
    assert_eq!(text(response).await, "1");
    for expected in 2..=4 {
        let response = send(&app, "POST", "/count", Some(&cookie_for(&token))).await;
        assert_eq!(text(response).await, expected.to_string());
    }
    let n: i64 = fx
        .db
        .client()
        .await
        .query_one(
            "SELECT (data->>'n')::bigint FROM wasm_sessions.sessions WHERE jsonb_typeof(data->'n') = 'number'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 4);
}

#[tokio::test]
async fn a_5xx_response_saves_nothing_and_sets_no_cookie() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let response = send(&fx.app(), "POST", "/fail", Some(&cookie_for(&token))).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(set_cookie(&response).is_none());
    let loaded = fx.store.load(&token).await.unwrap();
    assert_eq!(loaded.get_str("k"), Some("v"));
}

#[tokio::test]
async fn a_logout_in_a_failing_handler_still_deletes_the_session() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let response = send(
        &fx.app(),
        "POST",
        "/logout-failing",
        Some(&cookie_for(&token)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(set_cookie(&response).unwrap().contains("Max-Age=0"));
    assert!(matches!(
        fx.store.load(&token).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn the_cookie_carries_the_configured_attributes_and_secure_by_default() {
    let fx = Fixture::new().await;
    let response = send(&fx.app(), "POST", "/set/a/b", None).await;
    let cookie = set_cookie(&response).unwrap();
    for attribute in [
        "Path=/",
        "Max-Age=86400",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }

    let fx = Fixture::with(
        |c| {
            c.cookie_name = "sid".into();
            c.path = "/app".into();
            c.domain = Some("example.com".into());
            c.same_site = SameSite::Lax;
            c.http_only = false;
            c.secure = false;
            c.max_age = 600;
        },
        Isolation::default(),
    )
    .await;
    let response = send(&fx.app(), "POST", "/set/a/b", None).await;
    let cookie = set_cookie(&response).unwrap();
    assert!(cookie.starts_with("sid="), "{cookie}");
    for attribute in [
        "Path=/app",
        "Domain=example.com",
        "Max-Age=600",
        "SameSite=Lax",
    ] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains("HttpOnly") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test]
async fn a_browser_session_cookie_has_no_max_age_or_expires() {
    let fx = Fixture::new().await;
    let response = send(&fx.app(), "POST", "/browser-session", None).await;
    let cookie = set_cookie(&response).unwrap();
    assert!(
        !cookie.contains("Max-Age") && !cookie.contains("Expires"),
        "{cookie}"
    );
    let token = token(&cookie);
    let loaded = fx.store.load(&token).await.unwrap();
    assert_eq!(loaded.expiry(), Some(Expiry::OnSessionEnd));
}

#[tokio::test]
async fn login_rotates_the_token_in_the_same_write_and_a_planted_token_dies() {
    let fx = Fixture::new().await;
    // An attacker's own, saved session, planted in the victim's browser.
    let planted = fx.saved_session().await;
    let before = fx.statements();
    let response = send(&fx.app(), "POST", "/login/42", Some(&cookie_for(&planted))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rotated = token_of(&response);
    assert_ne!(rotated, planted);
    assert_eq!(fx.statements() - before, 2, "one load, one rotating save");
    assert!(matches!(
        fx.store.load(&planted).await,
        Err(StoreError::NotFound)
    ));
    let loaded = fx.store.load(&rotated).await.unwrap();
    assert_eq!(loaded.user_id(), Some(42));
    assert_eq!(loaded.get_str("k"), Some("v"), "the data moves with it");
}

#[tokio::test]
async fn rotation_on_user_change_can_be_turned_off() {
    let mut fx = Fixture::new().await;
    fx.rotate_on_user_change = false;
    let token = fx.saved_session().await;
    let response = send(&fx.app(), "POST", "/login/42", Some(&cookie_for(&token))).await;
    assert_eq!(token_of(&response), token);
}

#[tokio::test]
async fn logout_deletes_the_session_and_sends_the_removal_cookie() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let response = send(&fx.app(), "POST", "/logout", Some(&cookie_for(&token))).await;
    let cookie = set_cookie(&response).unwrap();
    assert!(cookie.starts_with("varel_session=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
    assert!(matches!(
        fx.store.load(&token).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn a_stale_cookie_is_removed_when_the_session_is_touched_and_left_alone_otherwise() {
    let fx = Fixture::with(|c| c.max_age = 60, Isolation::default()).await;
    let expired = fx.saved_session().await;
    fx.clock.advance(Duration::from_secs(61));
    let unknown = "0".repeat(64);
    for cookie in [
        cookie_for(&expired),
        cookie_for(&unknown),
        cookie_for("not-a-token"),
    ] {
        let response = send(&fx.app(), "GET", "/whoami", Some(&cookie)).await;
        let removal = set_cookie(&response).expect("the stale cookie is removed");
        assert!(removal.contains("Max-Age=0"), "{removal}");
        assert_eq!(text(response).await, "anonymous");

        let response = send(&fx.app(), "GET", "/untouched", Some(&cookie)).await;
        assert!(set_cookie(&response).is_none(), "untouched: nothing sent");

        // A saved new session replaces the stale cookie.
        let response = send(&fx.app(), "POST", "/set/a/b", Some(&cookie)).await;
        let fresh = token_of(&response);
        assert_ne!(fresh, unknown);
        assert_ne!(fresh, expired);
    }
}

#[tokio::test]
async fn save_reports_invalid_data_to_the_handler_which_can_recover() {
    let fx = Fixture::with(|c| c.max_data_bytes = 1000, Isolation::default()).await;
    let response = send(&fx.app(), "POST", "/save-early", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = token_of(&response);
    assert_eq!(text(response).await, "recovered");
    let loaded = fx.store.load(&token).await.unwrap();
    assert_eq!(loaded.get_str("small"), Some("ok"));
    assert_eq!(loaded.get_str("big"), None);
}

#[tokio::test]
async fn a_change_that_cannot_be_saved_turns_the_response_into_an_error_without_a_cookie() {
    let fx = Fixture::with(|c| c.max_data_bytes = 100, Isolation::default()).await;
    let value = "x".repeat(200);
    let response = send(&fx.app(), "POST", &format!("/set/k/{value}"), None).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(set_cookie(&response).is_none());
}

#[tokio::test]
async fn a_concurrent_change_of_the_same_key_is_a_409_and_disjoint_changes_merge() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    // Another request changed `k` after this copy was loaded.
    let stale = fx.store.load(&token).await.unwrap();
    let mut other = fx.store.load(&token).await.unwrap();
    other.set("k", "theirs");
    fx.store.save(&mut other).await.unwrap();
    let mut mine = stale.clone();
    mine.set("k", "mine");
    assert!(matches!(
        fx.store.save(&mut mine).await,
        Err(StoreError::Conflict)
    ));
    let mut disjoint = stale;
    disjoint.set("j", "also");
    fx.store.save(&mut disjoint).await.unwrap();
    assert_eq!(disjoint.get_str("k"), Some("theirs"));
    assert_eq!(disjoint.get_str("j"), Some("also"));

    // Through the layer: a handler whose read was changed under it gets a 409 and writes nothing.
    let response = send(
        &fx.app(),
        "POST",
        &format!("/race/{token}"),
        Some(&cookie_for(&token)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(set_cookie(&response).is_none());
    let loaded = fx.store.load(&token).await.unwrap();
    assert_eq!(loaded.get_str("k"), Some("raced"));
}

#[tokio::test]
async fn the_handle_is_the_one_user_listings_show() {
    let fx = Fixture::new().await;
    let response = send(&fx.app(), "POST", "/login/5", None).await;
    let token = token_of(&response);
    let response = send(&fx.app(), "GET", "/handle", Some(&cookie_for(&token))).await;
    let handle = text(response).await;
    let listed = fx.store.get_user_sessions(5).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].handle, handle);
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500_that_names_the_problem() {
    async fn handler(_session: SessionHandle) {}
    let app: Router = Router::new().route("/", get(handler));
    let response = send(&app, "GET", "/", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text(response).await.contains("SessionLayer"));
}
