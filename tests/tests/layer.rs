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
use wasm_sessions::{Config, SameSite, SessionHandle, SessionLayer, SessionStore, StoreError};
use wasm_sessions_tests::{CountingDriver, TestDb};

/// The store under test, the app wrapped in the layer, and the statement counter.
struct Fixture {
    _db: TestDb,
    store: SessionStore,
    statements: CountingDriver,
}

impl Fixture {
    async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    async fn with_config(edit: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        let db = TestDb::new().await;
        let statements = CountingDriver::new(&db);
        let store = SessionStore::builder(statements.clone())
            .configure(edit)
            .build()
            .await
            .expect("store builds");
        Self {
            _db: db,
            store,
            statements,
        }
    }

    fn app(&self) -> Router {
        app().layer(SessionLayer::new(self.store.clone()))
    }

    fn statements(&self) -> usize {
        self.statements.count()
    }

    /// A saved session with `k=v`; returns its token.
    async fn saved_session(&self) -> String {
        let mut session = self.store.new_session(3600).await.unwrap();
        session.set("k", "v");
        self.store.save(&mut session).await.unwrap();
        session.id
    }
}

/// The handlers: each touches the session in one way.
fn app() -> Router {
    async fn untouched() -> &'static str {
        "ok"
    }
    async fn read(session: SessionHandle) -> Result<String, StoreError> {
        Ok(session.get("k").await?.unwrap_or_default())
    }
    async fn set(
        session: SessionHandle,
        Path((key, value)): Path<(String, String)>,
    ) -> Result<(), StoreError> {
        session.set(key, value).await
    }
    async fn fail(session: SessionHandle) -> Result<StatusCode, StoreError> {
        session.set("k", "written by a failing handler").await?;
        Ok(StatusCode::INTERNAL_SERVER_ERROR)
    }
    async fn login(session: SessionHandle, Path(user): Path<i64>) -> Result<(), StoreError> {
        session.set_user(user).await?;
        session.regenerate_id().await
    }
    async fn logout(session: SessionHandle) -> Result<(), StoreError> {
        session.delete_session().await
    }
    async fn whoami(session: SessionHandle) -> Result<String, StoreError> {
        Ok(match session.user_id().await? {
            Some(user) => format!("user {user}"),
            None => "anonymous".to_owned(),
        })
    }
    Router::new()
        .route("/untouched", get(untouched))
        .route("/read", get(read))
        .route("/set/{key}/{value}", post(set))
        .route("/fail", post(fail))
        .route("/login/{user}", post(login))
        .route("/logout", post(logout))
        .route("/whoami", get(whoami))
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

async fn text(response: Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn cookie_for(token: &str) -> String {
    format!("other=1; varel_session={token}")
}

#[tokio::test]
async fn a_handler_that_does_not_touch_the_session_sends_no_sql_and_no_cookie() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let before = fx.statements();
    let response = send(&fx.app(), "GET", "/untouched", Some(&cookie_for(&token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(fx.statements(), before, "no SQL for an untouched session");
    assert_eq!(set_cookie(&response), None);
}

#[tokio::test]
async fn reading_a_session_loads_it_once_and_does_not_save_or_reset_the_cookie() {
    let fx = Fixture::new().await;
    let token = fx.saved_session().await;
    let before = fx.statements();
    let response = send(&fx.app(), "GET", "/read", Some(&cookie_for(&token))).await;
    assert_eq!(set_cookie(&response), None);
    assert_eq!(text(response).await, "v");
    assert_eq!(fx.statements(), before + 1, "one load, no save");
}

#[tokio::test]
async fn a_changed_session_is_saved_and_its_cookie_set_and_an_unchanged_one_is_not() {
    let fx = Fixture::new().await;
    let app = fx.app();
    let response = send(&app, "POST", "/set/k/v1", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = token(&set_cookie(&response).expect("a new session sets its cookie"));
    assert_eq!(fx.store.load(&token).await.unwrap().get("k"), Some("v1"));

    // Setting the value it already has is no change: one load, no save, no cookie.
    let before = fx.statements();
    let response = send(&app, "POST", "/set/k/v1", Some(&cookie_for(&token))).await;
    assert_eq!(set_cookie(&response), None);
    assert_eq!(fx.statements(), before + 1);

    // A real change is saved under the same token.
    let response = send(&app, "POST", "/set/k/v2", Some(&cookie_for(&token))).await;
    let again = token_of(&response);
    assert_eq!(again, token, "a save keeps the id");
    assert_eq!(fx.store.load(&token).await.unwrap().get("k"), Some("v2"));
}

fn token_of(response: &Response) -> String {
    token(&set_cookie(response).expect("Set-Cookie"))
}

#[tokio::test]
async fn a_5xx_response_saves_nothing_and_sets_no_cookie() {
    let fx = Fixture::new().await;
    let app = fx.app();

    let before = fx.statements();
    let response = send(&app, "POST", "/fail", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(set_cookie(&response), None);
    assert_eq!(fx.statements(), before, "a new session is not stored");

    let token = fx.saved_session().await;
    let response = send(&app, "POST", "/fail", Some(&cookie_for(&token))).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(set_cookie(&response), None);
    assert_eq!(fx.store.load(&token).await.unwrap().get("k"), Some("v"));
}

#[tokio::test]
async fn the_cookie_carries_the_configured_attributes() {
    let fx = Fixture::with_config(|c| {
        c.cookie_name = "sid".into();
        c.same_site = SameSite::Lax;
        c.path = "/".into();
        c.max_age = 600;
    })
    .await;
    let response = send(&fx.app(), "POST", "/set/k/v", None).await;
    let cookie = set_cookie(&response).unwrap();
    let attributes: Vec<&str> = cookie.split("; ").collect();
    assert!(attributes[0].starts_with("sid="), "{cookie}");
    assert_eq!(attributes[0].len(), "sid=".len() + 64);
    assert!(attributes.contains(&"Path=/"), "{cookie}");
    assert!(attributes.contains(&"HttpOnly"), "{cookie}");
    assert!(attributes.contains(&"SameSite=Lax"), "{cookie}");
    assert!(
        attributes.contains(&"Max-Age=600") || attributes.contains(&"Max-Age=599"),
        "{cookie}"
    );
    assert!(attributes.iter().any(|a| a.starts_with("Expires=")));
    assert!(!attributes.contains(&"Secure"), "plain HTTP: {cookie}");

    // The layer reads the configured name back.
    let token = token(&cookie);
    let response = send(
        &fx.app(),
        "GET",
        "/read",
        Some(&format!("varel_session=x; sid={token}")),
    )
    .await;
    assert_eq!(text(response).await, "v");
}

#[tokio::test]
async fn login_rotates_the_id_keeps_the_data_and_the_old_id_stops_working() {
    let fx = Fixture::new().await;
    let app = fx.app();
    let anonymous = token_of(&send(&app, "POST", "/set/cart/3", None).await);

    let response = send(&app, "POST", "/login/42", Some(&cookie_for(&anonymous))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let logged_in = token_of(&response);
    assert_ne!(logged_in, anonymous);
    assert!(matches!(
        fx.store.load(&anonymous).await,
        Err(StoreError::NotFound)
    ));
    let session = fx.store.load(&logged_in).await.unwrap();
    assert_eq!(session.user_id, Some(42));
    assert_eq!(session.get("cart"), Some("3"));

    let response = send(&app, "GET", "/whoami", Some(&cookie_for(&logged_in))).await;
    assert_eq!(text(response).await, "user 42");
    let response = send(&app, "GET", "/whoami", Some(&cookie_for(&anonymous))).await;
    assert_eq!(text(response).await, "anonymous");
}

#[tokio::test]
async fn login_without_a_prior_session_stores_a_new_authenticated_one() {
    let fx = Fixture::new().await;
    let response = send(&fx.app(), "POST", "/login/7", None).await;
    let token = token_of(&response);
    assert_eq!(fx.store.load(&token).await.unwrap().user_id, Some(7));
}

#[tokio::test]
async fn logout_deletes_the_session_and_sends_the_removal_cookie() {
    let fx = Fixture::new().await;
    let app = fx.app();
    let token = token_of(&send(&app, "POST", "/login/5", None).await);

    let response = send(&app, "POST", "/logout", Some(&cookie_for(&token))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let removal = set_cookie(&response).expect("a removal cookie");
    assert!(removal.starts_with("varel_session=;"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    assert!(matches!(
        fx.store.load(&token).await,
        Err(StoreError::NotFound)
    ));
}

#[tokio::test]
async fn an_unknown_malformed_or_expired_cookie_gives_a_fresh_session_not_an_error() {
    let fx = Fixture::new().await;
    let app = fx.app();
    let unknown = "ab".repeat(32);
    let mut expiring = fx.store.new_session(1).await.unwrap();
    expiring.set_user(9);
    fx.store.save(&mut expiring).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    for cookie in [
        "varel_session=not-a-token".to_owned(),
        cookie_for(&unknown),
        cookie_for(&expiring.id),
        "varel_session=".to_owned(),
    ] {
        let response = send(&app, "GET", "/whoami", Some(&cookie)).await;
        assert_eq!(response.status(), StatusCode::OK, "{cookie}");
        assert_eq!(set_cookie(&response), None, "nothing changed: {cookie}");
        assert_eq!(text(response).await, "anonymous", "{cookie}");
    }

    // A change on top of a stale cookie stores a new session under a new token.
    let response = send(&app, "POST", "/set/k/v", Some(&cookie_for(&unknown))).await;
    let fresh = token_of(&response);
    assert_ne!(fresh, unknown);
    assert_eq!(fx.store.load(&fresh).await.unwrap().get("k"), Some("v"));
}

#[tokio::test]
async fn x_forwarded_proto_decides_secure_only_when_the_proxy_is_trusted() {
    let fx = Fixture::new().await;
    let request = |uri: &str, proto: Option<&str>| {
        let mut request = Request::builder().method("POST").uri(uri);
        if let Some(proto) = proto {
            request = request.header("x-forwarded-proto", proto);
        }
        request.body(Body::empty()).unwrap()
    };
    let is_secure = |response: &Response| {
        set_cookie(response)
            .unwrap()
            .split("; ")
            .any(|a| a == "Secure")
    };
    let untrusted = app().layer(SessionLayer::new(fx.store.clone()));
    let trusted = app().layer(SessionLayer::new(fx.store.clone()).trust_forwarded_proto(true));

    let response = untrusted
        .clone()
        .oneshot(request("/set/k/v", Some("https")))
        .await
        .unwrap();
    assert!(!is_secure(&response), "an untrusted header is ignored");
    let response = trusted
        .clone()
        .oneshot(request("/set/k/v", Some("https")))
        .await
        .unwrap();
    assert!(is_secure(&response), "a trusted proxy says https");
    let response = trusted
        .clone()
        .oneshot(request("/set/k/v", Some("http")))
        .await
        .unwrap();
    assert!(!is_secure(&response), "a trusted proxy says http");
    let response = untrusted
        .oneshot(request("https://example.com/set/k/v", None))
        .await
        .unwrap();
    assert!(is_secure(&response), "an https request URI is secure");
}

#[tokio::test]
async fn a_configured_secure_flag_wins_over_the_request_scheme() {
    let fx = Fixture::with_config(|c| c.secure = Some(true)).await;
    let response = send(&fx.app(), "POST", "/set/k/v", None).await;
    assert!(set_cookie(&response).unwrap().contains("; Secure"));
}

#[tokio::test]
async fn flush_reports_invalid_data_to_the_handler_which_can_recover() {
    let fx = Fixture::new().await;
    async fn bad(session: SessionHandle) -> Result<String, StoreError> {
        session.set("k", "nul\0byte").await?;
        let outcome = match session.flush().await {
            Err(StoreError::InvalidData(_)) => "rejected".to_owned(),
            other => format!("{other:?}"),
        };
        session.set("k", "fine").await?;
        Ok(outcome)
    }
    let app = Router::new()
        .route("/bad", post(bad))
        .layer(SessionLayer::new(fx.store.clone()));
    let response = send(&app, "POST", "/bad", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let token = token_of(&response);
    assert_eq!(text(response).await, "rejected");
    assert_eq!(fx.store.load(&token).await.unwrap().get("k"), Some("fine"));
}

#[tokio::test]
async fn a_change_that_cannot_be_saved_turns_the_response_into_a_500_without_a_cookie() {
    let fx = Fixture::new().await;
    let app = Router::new()
        .route(
            "/bad",
            post(|session: SessionHandle| async move { session.set("k", "nul\0").await }),
        )
        .layer(SessionLayer::new(fx.store.clone()));
    let response = send(&app, "POST", "/bad", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(set_cookie(&response), None);
}

#[tokio::test]
async fn the_extractor_without_the_layer_is_a_500_that_names_the_problem() {
    async fn handler(_session: SessionHandle) {}
    let app = Router::new().route("/", get(handler));
    let response = send(&app, "GET", "/", None).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(text(response).await.contains("SessionLayer"));
}
