//! The JSON API of `serve` against a fresh PostgreSQL database per test: every endpoint, and the status
//! and body for bad input. Requests go straight to the router (`tower::ServiceExt::oneshot`).

use std::collections::BTreeSet;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;
use wasm_sessions::{PostgresDriver, PostgresOptions, SessionStore};
use wasm_sessions_cli::serve::{ServeOptions, openapi_document, route_list, router};
use wasm_sessions_tests::TestDb;

/// The router on a fresh database (kept alive with it).
struct Api {
    _db: TestDb,
    app: Router,
}

impl Api {
    async fn new() -> Self {
        let db = TestDb::new().await;
        let app = router(db.store().await, ServeOptions::default());
        Self { _db: db, app }
    }

    /// Sends a request; `body` is sent as JSON. Returns the status and the JSON body (`null` if empty).
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let request = Request::builder().method(method).uri(uri);
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
        let request = Request::builder()
            .method(method)
            .uri(uri)
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
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)))
    };
    (status, body)
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
}

#[tokio::test]
async fn openapi_json_serves_the_document() {
    let api = Api::new().await;
    let (status, body) = api.call("GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, openapi_document());
}

#[tokio::test]
async fn create_returns_201_with_a_token_user_and_data() {
    let api = Api::new().await;
    let (status, body) = api
        .call(
            "POST",
            "/api/sessions",
            Some(json!({ "max_age": 60, "user_id": 7, "data": { "theme": "dark" } })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["token"].as_str().unwrap().len(), 64);
    assert_eq!(body["session"]["user_id"], 7);
    assert_eq!(body["session"]["data"], json!({ "theme": "dark" }));
    for field in ["created_at", "expires_at", "updated_at"] {
        assert!(body["session"][field].as_str().unwrap().ends_with('Z'));
    }

    // An empty object takes the defaults.
    let (status, body) = api.call("POST", "/api/sessions", Some(json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["session"]["user_id"], Value::Null);
}

#[tokio::test]
async fn create_rejects_bad_input_with_typed_errors() {
    let api = Api::new().await;
    let bad = |body| api.call("POST", "/api/sessions", Some(body));
    assert_error(
        &bad(json!({ "max_age": 0 })).await,
        StatusCode::BAD_REQUEST,
        "invalid_data",
    );
    assert_error(
        &bad(json!({ "data": { "k": "nul\u{0}" } })).await,
        StatusCode::BAD_REQUEST,
        "invalid_data",
    );
    assert_error(
        &bad(json!({ "user_id": "seven" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &bad(json!({ "colour": "red" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
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
async fn get_returns_the_session_and_400_404_410_for_bad_tokens() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "a": "1" } })).await;
    let (status, body) = api
        .call("GET", &format!("/api/sessions/{token}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"], json!({ "a": "1" }));
    assert!(body.get("token").is_none(), "get never echoes the token");

    assert_error(
        &api.call("GET", "/api/sessions/not-a-token", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    assert_error(
        &api.call("GET", &format!("/api/sessions/{UNKNOWN}"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let short = api.create(json!({ "max_age": 1 })).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = api
        .call("GET", &format!("/api/sessions/{short}"), None)
        .await;
    assert_error(&expired, StatusCode::GONE, "expired");
    assert!(expired.1.get("data").is_none());
}

#[tokio::test]
async fn patch_data_sets_and_unsets_in_one_save_and_refuses_bad_data() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "a": "1", "b": "2" } })).await;
    let uri = format!("/api/sessions/{token}/data");
    let (status, body) = api
        .call(
            "PATCH",
            &uri,
            Some(json!({ "set": { "c": "3", "a": "10" }, "unset": ["b"] })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"], json!({ "a": "10", "c": "3" }));
    let (_, stored) = api
        .call("GET", &format!("/api/sessions/{token}"), None)
        .await;
    assert_eq!(stored["data"], json!({ "a": "10", "c": "3" }));

    assert_error(
        &api.call("PATCH", &uri, Some(json!({ "set": { "k\u{0}": "v" } })))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_data",
    );
    assert_error(
        &api.call("PATCH", &uri, Some(json!({ "set": ["not", "a", "map"] })))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let (_, unchanged) = api
        .call("GET", &format!("/api/sessions/{token}"), None)
        .await;
    assert_eq!(unchanged["data"], json!({ "a": "10", "c": "3" }));
    assert_error(
        &api.call(
            "PATCH",
            &format!("/api/sessions/{UNKNOWN}/data"),
            Some(json!({})),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn login_rotates_the_token_and_logout_clears_the_user_and_rotates_again() {
    let api = Api::new().await;
    let token = api.create(json!({ "data": { "cart": "3" } })).await;
    let (status, body) = api
        .call(
            "POST",
            &format!("/api/sessions/{token}/login"),
            Some(json!({ "user_id": 42 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let logged_in = body["token"].as_str().unwrap().to_owned();
    assert_ne!(logged_in, token);
    assert_eq!(body["session"]["user_id"], 42);
    assert_eq!(body["session"]["data"], json!({ "cart": "3" }));
    assert_error(
        &api.call("GET", &format!("/api/sessions/{token}"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let (status, body) = api
        .call("POST", &format!("/api/sessions/{logged_in}/logout"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let logged_out = body["token"].as_str().unwrap();
    assert_ne!(logged_out, logged_in);
    assert_eq!(body["session"]["user_id"], Value::Null);
    assert_eq!(body["session"]["data"], json!({ "cart": "3" }));

    assert_error(
        &api.call(
            "POST",
            &format!("/api/sessions/{logged_out}/login"),
            Some(json!({ "user_id": "x" })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_error(
        &api.call("POST", &format!("/api/sessions/{UNKNOWN}/logout"), None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.call(
            "POST",
            "/api/sessions/short/login",
            Some(json!({ "user_id": 1 })),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
}

#[tokio::test]
async fn login_on_an_expired_session_is_410() {
    let api = Api::new().await;
    let token = api.create(json!({ "max_age": 1 })).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_error(
        &api.call(
            "POST",
            &format!("/api/sessions/{token}/login"),
            Some(json!({ "user_id": 1 })),
        )
        .await,
        StatusCode::GONE,
        "expired",
    );
}

#[tokio::test]
async fn delete_is_204_then_404_and_400_for_a_malformed_token() {
    let api = Api::new().await;
    let token = api.create(json!({})).await;
    let uri = format!("/api/sessions/{token}");
    assert_eq!(
        api.call("DELETE", &uri, None).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert_error(
        &api.call("DELETE", &uri, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &api.call("DELETE", "/api/sessions/zzz", None).await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
}

#[tokio::test]
async fn a_users_sessions_are_listed_newest_first_revoked_one_by_handle_or_all() {
    let api = Api::new().await;
    let first = api
        .create(json!({ "user_id": 5, "data": { "n": "1" } }))
        .await;
    let _second = api
        .create(json!({ "user_id": 5, "data": { "n": "2" } }))
        .await;
    let other = api.create(json!({ "user_id": 6 })).await;

    let (status, body) = api.call("GET", "/api/users/5/sessions", None).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["data"]["n"], "2", "newest first");
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
    assert_eq!(
        api.call("GET", &format!("/api/sessions/{other}"), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_error(
        &api.call("DELETE", "/api/users/5/sessions/not-a-handle", None)
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );

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
        &api.call("GET", &format!("/api/sessions/{first}"), None)
            .await,
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
    api.create(json!({ "max_age": 1 })).await;
    api.create(json!({ "max_age": 1 })).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = api.call("POST", "/api/cleanup", None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "deleted": 2 })));
    assert_eq!(
        api.call("GET", &format!("/api/sessions/{live}"), None)
            .await
            .0,
        StatusCode::OK
    );
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
    let store = SessionStore::builder(driver).build().await.unwrap();
    let app = router(store, ServeOptions::default());
    let (status, body) = send(
        &app,
        Request::builder()
            .method("GET")
            .uri(format!("/api/sessions/{UNKNOWN}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "database_unavailable");
    let (status, body) = send(
        &app,
        Request::builder()
            .method("POST")
            .uri("/api/cleanup")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}
