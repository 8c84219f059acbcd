//! The JSON API of `serve` against a fresh PostgreSQL database per test: every endpoint, the status and
//! body for bad input, and concurrent writes through a real HTTP server. Most requests go straight to
//! the router (`tower::ServiceExt::oneshot`); the concurrency tests serve it on a TCP listener. Every
//! request carries the API's bearer token and an allowed `Host` (the defences themselves are tested in
//! `defences.rs`); session tokens travel in `X-Session-Token`.
//!
//! The store runs on `serve`'s configuration ([`store_config`]: 30 days at most, 30 minutes idle) and a
//! `ManualClock`: expiry is tested by moving the clock, never by sleeping.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use wasm_sessions::{ManualClock, PostgresDriver, PostgresOptions, SessionStore, StoreError};
use wasm_sessions_cli::serve::{
    ApiToken, MAX_AGE_SECS, ServeOptions, openapi_document, route_list, router, store_config,
};
use wasm_sessions_cli::view::rfc3339;
use wasm_sessions_tests::TestDb;

/// The API token of these tests.
const API_TOKEN: &str = "api-test-token-0123456789abcdef0123456789abcdef";

/// The address the router believes it is bound to (oneshot requests name it in `Host`).
const BOUND: &str = "127.0.0.1:8080";

/// `serve`'s options for a server bound to `addr`, with [`API_TOKEN`].
fn options(addr: SocketAddr) -> ServeOptions {
    ServeOptions::new(ApiToken::new(API_TOKEN).unwrap()).allow_address(addr)
}

/// A request to the API: its bearer token and an allowed `Host`.
fn api_request(method: &str, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, BOUND)
        .header(header::AUTHORIZATION, format!("Bearer {API_TOKEN}"))
}

/// The router on a fresh database with a manual clock (kept alive with it).
struct Api {
    _db: TestDb,
    store: SessionStore,
    clock: ManualClock,
    app: Router,
}

impl Api {
    async fn new() -> Self {
        Self::bound_to(BOUND.parse().unwrap()).await
    }

    /// The router of a server bound to `addr`, with `serve`'s store configuration.
    async fn bound_to(addr: SocketAddr) -> Self {
        let db = TestDb::new().await;
        let clock = ManualClock::starting_now();
        let store = SessionStore::builder(db.driver())
            .clock(clock.clone())
            .configure(store_config)
            .build()
            .await
            .expect("store builds");
        let app = router(store.clone(), options(addr));
        Self {
            _db: db,
            store,
            clock,
            app,
        }
    }

    /// Sends a request; `body` is sent as JSON. Returns the status and the JSON body (`null` if empty).
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(method, uri, None, body).await
    }

    /// A request to one session's route (`/api/session` + `suffix`) with `token` in `X-Session-Token`.
    async fn session(
        &self,
        method: &str,
        suffix: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let uri = format!("/api/session{suffix}");
        self.call_as(method, &uri, Some(token), body).await
    }

    /// Sends a request with an optional session token header.
    async fn call_as(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = api_request(method, uri);
        if let Some(token) = token {
            request = request.header("x-session-token", token);
        }
        let request = match body {
            Some(body) => request
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        };
        send(&self.app, request.unwrap()).await
    }

    /// Sends `raw` as the body with `content_type`.
    async fn raw(
        &self,
        method: &str,
        uri: &str,
        content_type: &str,
        raw: &str,
    ) -> (StatusCode, Value) {
        let request = api_request(method, uri)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(raw.to_owned()))
            .unwrap();
        send(&self.app, request).await
    }

    /// Creates a session with `body`; returns its token.
    async fn create(&self, body: Value) -> String {
        let (status, created) = self.call("POST", "/api/sessions", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["token"].as_str().unwrap().to_owned()
    }
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, json_body(status, &bytes))
}

/// The JSON body (`null` when empty).
fn json_body(status: StatusCode, bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(bytes)))
    }
}

/// Asserts a typed error body.
fn assert_error(response: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(response.0, status, "{}", response.1);
    assert_eq!(response.1["error"], code, "{}", response.1);
    assert!(
        response.1["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        response.1
    );
}

/// Whether `text` is 64 lower-case hex characters (a token or handle).
fn is_hex64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

const UNKNOWN: &str = "abababababababababababababababababababababababababababababababab";

#[test]
fn the_openapi_document_names_every_route_of_the_router_and_no_other() {
    let document = openapi_document();
    assert_eq!(document["openapi"], "3.0.3");
    let paths = document["paths"].as_object().unwrap();
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| methods.contains(&k.as_str()))
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = route_list()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    assert_eq!(routed, documented);
    assert!(routed.len() >= 17, "{routed:?}");

    // Every `$ref` resolves.
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&document, &mut all);
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(document["components"]["schemas"][name].is_object(), "{r}");
    }

    // The session's documented fields are the view's.
    let schemas = &document["components"]["schemas"];
    let required = |name: &str| -> BTreeSet<String> {
        schemas[name]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    let properties = |name: &str| -> BTreeSet<String> {
        schemas[name]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for name in ["Session", "UserSession", "NewSession"] {
        assert_eq!(required(name), properties(name), "{name}");
    }
}

#[tokio::test]
async fn openapi_json_serves_the_document() {
    let api = Api::new().await;
    let (status, body) = api.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, openapi_document());
}

#[tokio::test]
async fn create_returns_201_with_a_token_handle_user_typed_data_and_expiry() {
    let api = Api::new().await;
    let (status, body) = api
        .call(
            "POST",
            "/api/sessions",
            Some(json!({
                "expires_in": 60, "user_id": 7, "label": "laptop",
                "data": { "theme": "dark", "n": 1, "tags": ["a"], "nested": { "ok": true } }
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap();
    assert!(is_hex64(token));
    let session = &body["session"];
    let handle = session["handle"].as_str().unwrap();
    assert!(is_hex64(handle) && handle != token);
    assert_eq!(session["user_id"], 7);
    assert_eq!(session["label"], "laptop");
    assert_eq!(
        session["data"],
        json!({ "theme": "dark", "n": 1, "tags": ["a"], "nested": { "ok": true } })
    );
    let in_a_minute = rfc3339(api.store.now() + Duration::from_secs(60));
    assert_eq!(
        session["expiry"],
        json!({ "mode": "at", "at": in_a_minute })
    );
    assert_eq!(session["expires_at"], in_a_minute);
    for field in [
        "created_at",
        "expires_at",
        "absolute_expires_at",
        "updated_at",
    ] {
        assert!(session[field].as_str().unwrap().ends_with('Z'), "{field}");
    }

    // GET shows the same object (values stay typed), without the token.
    let (status, loaded) = api.session("GET", "", token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&loaded, session);

    // An empty object takes the defaults: no user, the configured expiry (`serve`'s: 30 minutes idle,
    // 30 days at most).
    let now = api.store.now();
    let (status, body) = api.call("POST", "/api/sessions", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["session"]["user_id"], Value::Null);
    assert_eq!(body["session"]["expiry"], Value::Null);
    assert_eq!(
        body["session"]["expires_at"],
        rfc3339(now + Duration::from_secs(30 * 60))
    );
    assert_eq!(
        body["session"]["absolute_expires_at"],
        rfc3339(now + Duration::from_secs(MAX_AGE_SECS as u64))
    );

    // The other expiry modes, as the view shows them.
    for expiry in [
        json!({ "mode": "on_inactivity", "seconds": 600 }),
        json!({ "mode": "on_session_end" }),
    ] {
        let (status, body) = api
            .call(
                "POST",
                "/api/sessions",
                Some(json!({ "expiry": expiry.clone() })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["session"]["expiry"], expiry);
    }
}

#[tokio::test]
async fn create_rejects_bad_input_with_typed_errors() {
    let api = Api::new().await;
    let bad = |body| api.call("POST", "/api/sessions", Some(body));
    // The guest's rules: 400 invalid_data.
    for body in [
        json!({ "expires_in": 0 }),
        json!({ "expiry": { "mode": "on_inactivity", "seconds": 0 } }),
        json!({ "expiry": { "mode": "on_inactivity", "seconds": MAX_AGE_SECS + 1 } }),
        json!({ "expiry": { "mode": "at", "at": "2001-01-01T00:00:00Z" } }),
        json!({ "data": { "k": "nul\u{0}" } }),
        json!({ "data": { "big": "x".repeat(1_100_000) } }),
    ] {
        assert_error(&bad(body).await, StatusCode::BAD_REQUEST, "invalid_data");
    }
    // The API's own: 400 invalid_request.
    for body in [
        json!({ "user_id": "seven" }),
        json!({ "colour": "red" }),
        json!({ "expires_in": 60, "expiry": { "mode": "on_session_end" } }),
        json!({ "expiry": { "mode": "at", "at": "tomorrow" } }),
        json!({ "expiry": { "mode": "never" } }),
        json!({ "expires_in": -1 }),
        json!({ "expires_in": u64::MAX }),
    ] {
        assert_error(&bad(body).await, StatusCode::BAD_REQUEST, "invalid_request");
    }
    assert_error(
        &api.raw("POST", "/api/sessions", "application/json", "{not json")
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &api.raw("POST", "/api/sessions", "text/plain", "{}").await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
}

#[tokio::test]
async fn get_returns_the_session_by_handle_and_400_404_410_for_bad_tokens() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "a": "1" } })).await;
    let (status, body) = api.session("GET", "", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!({ "a": "1" }));
    assert!(body.get("token").is_none(), "get never echoes the token");
    assert!(!body.to_string().contains(&token));

    assert_error(
        &api.session("GET", "", "not-a-token", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    // The token travels in `X-Session-Token` only: exactly one such header.
    assert_error(
        &api.call("GET", "/api/session", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let twice = send(
        &api.app,
        api_request("GET", "/api/session")
            .header("x-session-token", &token)
            .header("x-session-token", UNKNOWN)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&twice, StatusCode::BAD_REQUEST, "invalid_request");
    assert_error(
        &api.session("GET", "", UNKNOWN, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let short = api.create(json!({ "expires_in": 1 })).await;
    api.clock.advance(Duration::from_secs(2));
    let expired = api.session("GET", "", &short, None).await;
    assert_error(&expired, StatusCode::GONE, "expired");
    assert!(expired.1.get("data").is_none());
    assert_eq!(
        expired.1["message"],
        StoreError::Expired.public_message(),
        "the message comes from the store's table"
    );
}

#[tokio::test]
async fn patch_data_sets_typed_values_and_unsets_in_one_write_and_refuses_bad_data() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "a": "1", "b": "2" } })).await;
    let (status, body) = api
        .session(
            "PATCH",
            "/data",
            &token,
            Some(json!({ "set": { "c": [1, 2], "a": 10, "n": null }, "unset": ["b", "missing"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({ "a": 10, "c": [1, 2], "n": null }));
    let (_, stored) = api.session("GET", "", &token, None).await;
    assert_eq!(stored["data"], body["data"]);

    assert_error(
        &api.session(
            "PATCH",
            "/data",
            &token,
            Some(json!({ "set": { "k\u{0}": "v" } })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_data",
    );
    for bad in [
        json!({ "set": ["not", "a", "map"] }),
        json!({ "set": { "a": 1 }, "unset": ["a"] }),
        json!({ "replace": {} }),
    ] {
        assert_error(
            &api.session("PATCH", "/data", &token, Some(bad)).await,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
    let (_, unchanged) = api.session("GET", "", &token, None).await;
    assert_eq!(unchanged["data"], stored["data"]);
    assert_error(
        &api.session("PATCH", "/data", UNKNOWN, Some(json!({})))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn patch_with_expect_writes_only_when_the_keys_hold_the_expected_values() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "n": 1 } })).await;
    let conflict = api
        .session(
            "PATCH",
            "/data",
            &token,
            Some(json!({ "set": { "n": 5 }, "expect": { "n": 4 } })),
        )
        .await;
    assert_error(&conflict, StatusCode::CONFLICT, "conflict");
    assert_eq!(conflict.1["message"], StoreError::Conflict.public_message());
    let (status, body) = api
        .session(
            "PATCH",
            "/data",
            &token,
            Some(json!({ "set": { "n": 2 }, "expect": { "n": 1, "absent": null } })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({ "n": 2 }));
}

#[tokio::test]
async fn login_rotates_the_token_and_logout_clears_the_user_and_rotates_again() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "cart": 3 } })).await;
    let (status, body) = api
        .session(
            "POST",
            "/login",
            &token,
            Some(json!({ "user_id": 42, "label": "phone" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let logged_in = body["token"].as_str().unwrap().to_owned();
    assert_ne!(logged_in, token);
    assert_eq!(body["session"]["user_id"], 42);
    assert_eq!(body["session"]["label"], "phone");
    assert_eq!(body["session"]["data"], json!({ "cart": 3 }));
    assert_error(
        &api.session("GET", "", &token, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, body) = api.session("POST", "/logout", &logged_in, None).await;
    assert_eq!(status, StatusCode::OK);
    let logged_out = body["token"].as_str().unwrap();
    assert_ne!(logged_out, logged_in);
    assert_eq!(body["session"]["user_id"], Value::Null);
    assert_eq!(body["session"]["data"], json!({ "cart": 3 }));

    assert_error(
        &api.session(
            "POST",
            "/login",
            logged_out,
            Some(json!({ "user_id": "x" })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &api.session("POST", "/logout", UNKNOWN, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.session("POST", "/login", "short", Some(json!({ "user_id": 1 })))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
}

#[tokio::test]
async fn login_on_an_expired_session_is_410() {
    let api = Api::new().await;
    let token = api.create(json!({ "expires_in": 5 })).await;
    api.clock.advance(Duration::from_secs(6));
    assert_error(
        &api.session("POST", "/login", &token, Some(json!({ "user_id": 1 })))
            .await,
        StatusCode::GONE,
        "expired",
    );
}

#[tokio::test]
async fn delete_is_204_then_404_and_400_for_a_malformed_token() {
    let api = Api::new().await;
    let token = api.create(json!({})).await;
    assert_eq!(
        api.session("DELETE", "", &token, None).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert_error(
        &api.session("DELETE", "", &token, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.session("DELETE", "", "zzz", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
}

#[tokio::test]
async fn a_users_sessions_are_listed_newest_first_revoked_one_by_handle_or_all() {
    let api = Api::new().await;
    let first = api
        .create(json!({ "user_id": 5, "data": { "n": 1 } }))
        .await;
    api.clock.advance(Duration::from_secs(1));
    let _second = api
        .create(json!({ "user_id": 5, "data": { "n": 2 }, "label": "tablet" }))
        .await;
    let other = api.create(json!({ "user_id": 6 })).await;

    let (status, body) = api.call("GET", "/api/users/5/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["data"]["n"], 2, "newest first");
    assert_eq!(sessions[0]["label"], "tablet");
    assert!(sessions.iter().all(|s| s["user_id"] == 5));
    assert!(sessions.iter().all(|s| s.get("token").is_none()));
    let newest = sessions[0]["handle"].as_str().unwrap().to_owned();

    // Another user's handle is not revoked through this user.
    let (_, six) = api.call("GET", "/api/users/6/sessions", None).await;
    let six_handle = six["sessions"][0]["handle"].as_str().unwrap().to_owned();
    assert_error(
        &api.call(
            "DELETE",
            &format!("/api/users/5/sessions/{six_handle}"),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(api.session("GET", "", &other, None).await.0, StatusCode::OK);
    // The guest checks the handle's form.
    for malformed in ["not-a-handle", &UNKNOWN.to_uppercase()] {
        assert_error(
            &api.call(
                "DELETE",
                &format!("/api/users/5/sessions/{malformed}"),
                None,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid_id",
        );
    }

    assert_eq!(
        api.call("DELETE", &format!("/api/users/5/sessions/{newest}"), None)
            .await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    let (_, body) = api.call("GET", "/api/users/5/sessions", None).await;
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);

    let (status, body) = api.call("DELETE", "/api/users/5/sessions", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "deleted": 1 })));
    assert_error(
        &api.session("GET", "", &first, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, body) = api.call("GET", "/api/users/5/sessions", None).await;
    assert_eq!(body, json!({ "sessions": [] }));

    assert_error(
        &api.call("GET", "/api/users/five/sessions", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &api.call("DELETE", "/api/users/five/sessions", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn cleanup_deletes_only_expired_sessions_and_returns_the_count() {
    let api = Api::new().await;
    let live = api.create(json!({})).await;
    api.create(json!({ "expires_in": 10 })).await;
    api.create(json!({ "expiry": { "mode": "on_inactivity", "seconds": 10 } }))
        .await;
    api.clock.advance(Duration::from_secs(11));
    let (status, body) = api.call("POST", "/api/cleanup", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "deleted": 2 })));
    assert_eq!(api.session("GET", "", &live, None).await.0, StatusCode::OK);
    let (_, body) = api.call("POST", "/api/cleanup", None).await;
    assert_eq!(body, json!({ "deleted": 0 }));
}

#[tokio::test]
async fn unknown_api_routes_are_404_and_wrong_methods_405_as_typed_json() {
    let api = Api::new().await;
    assert_error(
        &api.call("GET", "/api/nothing", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.call("PUT", "/api/cleanup", None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
}

#[tokio::test]
async fn a_database_that_is_down_is_503_database_unavailable() {
    // Nothing listens on port 1; the pool connects lazily, so the store builds and every call fails.
    let driver = PostgresDriver::connect(
        "postgres://postgres@127.0.0.1:1/none?connect_timeout=2",
        &PostgresOptions::default(),
    )
    .unwrap();
    let store = SessionStore::builder(driver)
        .configure(store_config)
        .build()
        .await
        .unwrap();
    let app = router(store, options(BOUND.parse().unwrap()));
    for (method, uri) in [("GET", "/api/session"), ("POST", "/api/cleanup")] {
        let (status, body) = send(
            &app,
            api_request(method, uri)
                .header("x-session-token", UNKNOWN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "database_unavailable");
        assert_eq!(body["message"], "the database is unavailable");
        assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    }
}

/// The router served on a real TCP listener, and an HTTP client for it.
struct Server {
    _api: Api,
    addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = Api::bound_to(addr).await;
        let app = api.app.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            _api: api,
            addr,
            client,
            task,
        }
    }

    /// One request over HTTP; returns the status and the JSON body.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        call(&self.client, self.addr, method, path, None, body).await
    }

    /// One request to a session's route (`/api/session` + `suffix`) over HTTP.
    async fn session(
        &self,
        method: &str,
        suffix: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let path = format!("/api/session{suffix}");
        call(&self.client, self.addr, method, &path, Some(token), body).await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request over HTTP with the API's token and, when given, a session token in `X-Session-Token`.
async fn call(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header(header::AUTHORIZATION, format!("Bearer {API_TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header("x-session-token", token);
    }
    let request = request
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .unwrap();
    let response = client.request(request).await.expect("an HTTP response");
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, json_body(status, &bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_patches_of_distinct_keys_over_http_all_succeed_and_all_keys_stay() {
    const PATCHES: usize = 64;
    let server = Server::start().await;
    let (status, created) = server
        .call(
            "POST",
            "/api/sessions",
            Some(json!({ "data": { "base": true } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = created["token"].as_str().unwrap().to_owned();

    // Every request is sent at once, after all tasks are ready.
    let start = Arc::new(tokio::sync::Barrier::new(PATCHES));
    let mut tasks = Vec::new();
    for i in 0..PATCHES {
        let (client, addr, token, start) = (
            server.client.clone(),
            server.addr,
            token.clone(),
            start.clone(),
        );
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let body = json!({ "set": { format!("k{i:02}"): { "i": i, "tags": ["x"] } } });
            call(
                &client,
                addr,
                "PATCH",
                "/api/session/data",
                Some(&token),
                Some(body),
            )
            .await
        }));
    }
    for task in tasks {
        let (status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK, "no PATCH may conflict: {body}");
    }

    let (status, stored) = server.session("GET", "", &token, None).await;
    assert_eq!(status, StatusCode::OK);
    let data = stored["data"].as_object().unwrap();
    assert_eq!(data.len(), PATCHES + 1, "{stored}");
    assert_eq!(data["base"], true);
    for i in 0..PATCHES {
        assert_eq!(
            data[&format!("k{i:02}")],
            json!({ "i": i, "tags": ["x"] }),
            "k{i:02}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_read_then_increment_over_http_with_expect_never_loses_an_increment() {
    const CLIENTS: usize = 8;
    const INCREMENTS: u64 = 5;
    let server = Server::start().await;
    let (_, created) = server
        .call(
            "POST",
            "/api/sessions",
            Some(json!({ "data": { "other": 1 } })),
        )
        .await;
    let token = created["token"].as_str().unwrap().to_owned();

    let start = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let (client, addr, token, start) = (
            server.client.clone(),
            server.addr,
            token.clone(),
            start.clone(),
        );
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut conflicts = 0u64;
            let mut done = 0;
            while done < INCREMENTS {
                // Read, then write the value + 1 under the condition that it is still the value read.
                let (status, session) =
                    call(&client, addr, "GET", "/api/session", Some(&token), None).await;
                assert_eq!(status, StatusCode::OK, "{session}");
                let seen = session["data"]["n"].clone();
                let next = seen.as_u64().unwrap_or(0) + 1;
                let body = json!({
                    "set": { "n": next, format!("last_{client_no}"): next },
                    "expect": { "n": seen },
                });
                let (status, answer) = call(
                    &client,
                    addr,
                    "PATCH",
                    "/api/session/data",
                    Some(&token),
                    Some(body),
                )
                .await;
                match status {
                    StatusCode::OK => done += 1,
                    StatusCode::CONFLICT => {
                        assert_eq!(answer["error"], "conflict");
                        conflicts += 1;
                    }
                    other => panic!("{other}: {answer}"),
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }

    let (_, stored) = server.session("GET", "", &token, None).await;
    assert_eq!(
        stored["data"]["n"],
        json!(CLIENTS as u64 * INCREMENTS),
        "every increment counted ({conflicts} conflicts retried): {stored}"
    );
    assert_eq!(stored["data"]["other"], 1);
    for client_no in 0..CLIENTS {
        assert!(stored["data"][format!("last_{client_no}")].is_u64());
    }
}
