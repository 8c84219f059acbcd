//! The JSON API over the store, under `/api`. Sessions are shown as [`crate::view`] shows them (the CLI's
//! `--json` prints the same objects); a token appears only where it is new (create, login, logout).
//!
//! Every route needs `Authorization: Bearer TOKEN` (checked in front of the router, with the host and
//! cross-site checks: see `guard`), and every response says `Cache-Control: no-store`. A session token
//! never travels in a URL (URLs end up in logs, histories and `Referer` headers): the routes of one
//! session (`/api/session...`) take it in the [`SESSION_TOKEN_HEADER`] header. Handles, which can only
//! revoke, stay in paths.
//!
//! Errors are `{"error": CODE, "message": TEXT}`. A store error takes its status, code and message from
//! [`StoreError::http_answer`] (the one table the tower layer and the demo app use too: 400
//! `invalid_id` / `invalid_data`, 404 `not_found`, 409 `conflict`, 410 `expired`, 503
//! `database_unavailable` / `timeout`, 500 `database_error` / `internal`, server errors without details).
//! The API has codes of its own only for its own errors: 400 `invalid_request` (a body, header or path that
//! does not parse), 415 `unsupported_media_type`, 405 `method_not_allowed`, 404 `not_found` for an
//! unknown route, and the guard's 401 `unauthorized`, 403 `cross_site_request` and 421
//! `misdirected_request`. Tokens and data are never logged.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_sessions::{Expiry, StoreError};

use crate::view::{ExpiryView, NewSessionView, SessionView, UserSessionView};

use super::{AppState, Routes};

/// The API's own error codes (every other code comes from [`StoreError::http_answer`]).
pub mod codes {
    /// 400: the body or a path parameter does not parse, or asks for something contradictory.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// 415: the body is not `application/json`.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// 405: the route exists, but not with this method.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// 404: no such route (the store's "no such session" has the same code).
    pub const NOT_FOUND: &str = "not_found";
    /// 401: no `Authorization: Bearer` header, or not the API's token.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: a state-changing request from another site (`Sec-Fetch-Site` / `Origin`).
    pub const CROSS_SITE_REQUEST: &str = "cross_site_request";
    /// 421: the `Host` header names a host this server does not answer for.
    pub const MISDIRECTED_REQUEST: &str = "misdirected_request";
}

/// The header that carries the session token for the `/api/session...` routes (never the URL).
pub const SESSION_TOKEN_HEADER: &str = "x-session-token";

/// A typed API error: a status, a code and a message that never contains a token or session data.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable code (`snake_case`).
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_request`.
    fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, codes::INVALID_REQUEST, message)
    }
}

impl From<StoreError> for ApiError {
    /// Status, code and message from [`StoreError::http_answer`] and [`StoreError::public_message`];
    /// server errors are logged with their details, which the client does not see.
    fn from(error: StoreError) -> Self {
        let answer = error.http_answer();
        if answer.status >= 500 {
            tracing::error!(error = %error, code = answer.code, "session store error");
        }
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self::new(status, answer.code, error.public_message())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                codes::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with Content-Type: application/json",
            ),
            other => Self::invalid_request(other.body_text()),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::invalid_request(rejection.body_text())
    }
}

/// The error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// `axum::Json` with the API's error body on rejection.
struct ApiJson<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Path` with the API's error body on rejection.
struct ApiPath<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The session token of the request, from the [`SESSION_TOKEN_HEADER`] header (exactly one); the guest
/// checks its form (400 `invalid_id`).
struct SessionToken(String);

impl<S: Send + Sync> FromRequestParts<S> for SessionToken {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts
            .headers
            .get_all(HeaderName::from_static(SESSION_TOKEN_HEADER))
            .iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value
                .to_str()
                .map(|token| Self(token.trim().to_owned()))
                .map_err(|_| ApiError::invalid_request("the X-Session-Token header is not text")),
            (None, _) => Err(ApiError::invalid_request(
                "this route needs the session token in the X-Session-Token header",
            )),
            (Some(_), Some(_)) => Err(ApiError::invalid_request(
                "give one X-Session-Token header, not several",
            )),
        }
    }
}

/// The API routes.
pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::POST, "/api/sessions", create)
        .add(Method::GET, "/api/session", get)
        .add(Method::DELETE, "/api/session", delete)
        .add(Method::PATCH, "/api/session/data", update_data)
        .add(Method::POST, "/api/session/login", login)
        .add(Method::POST, "/api/session/logout", logout)
        .add(Method::GET, "/api/users/{user_id}/sessions", user_sessions)
        .add(Method::DELETE, "/api/users/{user_id}/sessions", revoke_user)
        .add(
            Method::DELETE,
            "/api/users/{user_id}/sessions/{handle}",
            revoke_one,
        )
        .add(Method::POST, "/api/cleanup", cleanup)
}

/// The body of `POST /api/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    user_id: Option<i64>,
    label: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, Value>,
    /// Ends this many seconds from now (`Expiry::AtDateTime`), capped by the absolute deadline.
    expires_in: Option<u64>,
    /// The session's own expiry mode, as [`SessionView::expiry`] shows it.
    expiry: Option<ExpiryView>,
}

impl CreateRequest {
    /// The expiry the body asks for, against the store's clock.
    fn expiry(&self, app: &AppState) -> Result<Option<Expiry>, ApiError> {
        match (self.expires_in, &self.expiry) {
            (Some(_), Some(_)) => Err(ApiError::invalid_request(
                "give either expires_in or expiry, not both",
            )),
            (Some(seconds), None) => app
                .store
                .now()
                .checked_add(Duration::from_secs(seconds))
                .map(|at| Some(Expiry::AtDateTime(at)))
                .ok_or_else(|| ApiError::invalid_request("expires_in is too large")),
            (None, Some(view)) => Expiry::try_from(view)
                .map(Some)
                .map_err(|e| ApiError::invalid_request(format!("expiry: {e}"))),
            (None, None) => Ok(None),
        }
    }
}

/// `POST /api/sessions`: creates and saves a session → 201 with its token.
async fn create(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<NewSessionView>), ApiError> {
    let store = &app.store;
    let mut session = store.new_session_with(body.expiry(&app)?).await?;
    if let Some(user) = body.user_id {
        session.set_user(user);
    }
    if body.label.is_some() {
        session.set_label(body.label);
    }
    for (key, value) in body.data {
        session.insert(key, value)?;
    }
    store.save(&mut session).await?;
    Ok((StatusCode::CREATED, Json((&session).into())))
}

/// `GET /api/session` (the token in `X-Session-Token`).
async fn get(
    State(app): State<AppState>,
    SessionToken(token): SessionToken,
) -> Result<Json<SessionView>, ApiError> {
    let session = app.store.load(&token).await?;
    Ok(Json((&session).into()))
}

/// `DELETE /api/session` → 204, or 404 when there was no such session.
async fn delete(
    State(app): State<AppState>,
    SessionToken(token): SessionToken,
) -> Result<StatusCode, ApiError> {
    if app.store.delete(&token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(StoreError::NotFound.into())
    }
}

/// The body of `PATCH /api/session/data`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateDataRequest {
    /// Keys to store, each with any JSON value.
    #[serde(default)]
    set: BTreeMap<String, Value>,
    /// Keys to remove.
    #[serde(default)]
    unset: Vec<String>,
    /// Values the request expects the keys to hold (`null`: absent or null); they join the read set,
    /// so the write fails with 409 `conflict` if any of them differs, now or when it is written.
    #[serde(default)]
    expect: BTreeMap<String, Value>,
}

/// Whether the stored `current` value is what the client `expected` (`null` also matches a missing key).
fn as_expected(expected: &Value, current: Option<&Value>) -> bool {
    match current {
        Some(current) => current == expected,
        None => expected.is_null(),
    }
}

/// `PATCH /api/session/data`: removes `unset` and stores `set`, in one write of only those keys
/// (concurrent PATCHes of other keys merge), after checking `expect`.
async fn update_data(
    State(app): State<AppState>,
    SessionToken(token): SessionToken,
    ApiJson(body): ApiJson<UpdateDataRequest>,
) -> Result<Json<SessionView>, ApiError> {
    if let Some(key) = body.unset.iter().find(|k| body.set.contains_key(*k)) {
        return Err(ApiError::invalid_request(format!(
            "the key {key:?} is both in set and in unset"
        )));
    }
    let mut session = app.store.load(&token).await?;
    // Only the expected keys are read (never the whole data) before the write: the guest's merge
    // condition then covers exactly them and the keys written.
    for (key, expected) in &body.expect {
        if !as_expected(expected, session.get_value(key)) {
            return Err(StoreError::Conflict.into());
        }
    }
    for key in &body.unset {
        session.remove(key);
    }
    for (key, value) in body.set {
        session.insert(key, value)?;
    }
    if session.has_changes() {
        app.store.save(&mut session).await?;
    }
    Ok(Json((&session).into()))
}

/// The body of `POST /api/session/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    user_id: i64,
    /// A label for the session (e.g. the device).
    label: Option<String>,
}

/// `POST /api/session/login`: sets the user and rotates the token, in one write → the new token.
async fn login(
    State(app): State<AppState>,
    SessionToken(token): SessionToken,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<NewSessionView>, ApiError> {
    let mut session = app.store.load(&token).await?;
    session.set_user(body.user_id);
    if body.label.is_some() {
        session.set_label(body.label);
    }
    app.store.regenerate_id(&mut session).await?;
    Ok(Json((&session).into()))
}

/// `POST /api/session/logout`: clears the user and rotates the token → the new token.
async fn logout(
    State(app): State<AppState>,
    SessionToken(token): SessionToken,
) -> Result<Json<NewSessionView>, ApiError> {
    let mut session = app.store.load(&token).await?;
    session.clear_user();
    app.store.regenerate_id(&mut session).await?;
    Ok(Json((&session).into()))
}

/// The body of `GET /api/users/{user_id}/sessions`.
#[derive(Debug, Serialize)]
struct UserSessionsView {
    sessions: Vec<UserSessionView>,
}

/// `GET /api/users/{user_id}/sessions`: unexpired sessions, newest first.
async fn user_sessions(
    State(app): State<AppState>,
    ApiPath(user_id): ApiPath<i64>,
) -> Result<Json<UserSessionsView>, ApiError> {
    let list = app.store.get_user_sessions(user_id).await?;
    Ok(Json(UserSessionsView {
        sessions: list.iter().map(Into::into).collect(),
    }))
}

/// A count of deleted sessions.
#[derive(Debug, Serialize)]
struct Deleted {
    deleted: u64,
}

/// `DELETE /api/users/{user_id}/sessions`: logs the user out everywhere.
async fn revoke_user(
    State(app): State<AppState>,
    ApiPath(user_id): ApiPath<i64>,
) -> Result<Json<Deleted>, ApiError> {
    let deleted = app.store.delete_user_sessions(user_id).await?;
    Ok(Json(Deleted { deleted }))
}

/// `DELETE /api/users/{user_id}/sessions/{handle}` → 204; 404 unless the handle names a session of this
/// user (one guest statement; the guest validates the handle: 400 `invalid_id`).
async fn revoke_one(
    State(app): State<AppState>,
    ApiPath((user_id, handle)): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    if app.store.revoke_session(user_id, &handle).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(StoreError::NotFound.into())
    }
}

/// `POST /api/cleanup`: deletes expired sessions now (the store's one batched cleanup loop).
async fn cleanup(State(app): State<AppState>) -> Result<Json<Deleted>, ApiError> {
    let deleted = app.store.cleanup().await?;
    Ok(Json(Deleted { deleted }))
}

/// Unknown routes: a JSON 404 under `/api`, the demo's HTML page elsewhere.
pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/api" {
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            format!("no route for {method} {}", uri.path()),
        )
        .into_response()
    } else {
        super::web::not_found_page()
    }
}

/// A known route with another method: a JSON 405 under `/api`, the demo's HTML page elsewhere.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {}", uri.path()),
        )
        .into_response()
    } else {
        super::web::method_not_allowed_page()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_sessions::SqlError;

    #[test]
    fn store_errors_follow_the_one_table() {
        let errors = [
            StoreError::InvalidId("x".into()),
            StoreError::InvalidData("too large".into()),
            StoreError::NotFound,
            StoreError::Conflict,
            StoreError::Expired,
            StoreError::Database(SqlError::ConnectionFailed("10.0.0.1 refused".into())),
            StoreError::Database(SqlError::QueryFailed("secret detail".into())),
            StoreError::DeadlineExceeded(Duration::from_secs(1)),
            StoreError::UnexpectedResult("secret detail".into()),
        ];
        for error in errors {
            let answer = error.http_answer();
            let message = error.public_message();
            let api = ApiError::from(error);
            assert_eq!(api.status.as_u16(), answer.status);
            assert_eq!(api.code, answer.code);
            assert_eq!(api.message, message);
            assert!(!api.message.contains("secret") && !api.message.contains("10.0.0.1"));
        }
        assert_eq!(ApiError::from(StoreError::Expired).status, StatusCode::GONE);
    }

    #[test]
    fn null_expects_a_missing_key_or_null() {
        assert!(as_expected(&Value::Null, None));
        assert!(as_expected(&Value::Null, Some(&Value::Null)));
        assert!(!as_expected(&Value::Null, Some(&Value::from(0))));
        assert!(as_expected(&Value::from(3), Some(&Value::from(3))));
        assert!(!as_expected(&Value::from(3), Some(&Value::from("3"))));
        assert!(!as_expected(&Value::from(3), None));
    }
}
