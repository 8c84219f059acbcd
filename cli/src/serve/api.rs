//! The JSON API over the store, under `/api`. Errors are `{"error": CODE, "message": TEXT}` with:
//! 400 `invalid_id` / `invalid_data` / `invalid_request`, 404 `not_found`, 410 `expired`, 415
//! `unsupported_media_type`, 503 `database_unavailable`, 500 `database_error` / `internal`.
//!
//! Tokens travel in the path: this is an administration API for trusted callers (bind it to localhost or
//! put it behind authentication); tokens and data are never logged.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, http};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasm_sessions::{Session, SqlError, StoreError, UserSession};

use super::{AppState, Routes};

/// The machine-readable error codes of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the token or handle is malformed.
    InvalidId,
    /// 400: the data or an argument cannot be stored (NUL characters, too large, bad max age).
    InvalidData,
    /// 400: the request body or a path parameter does not parse.
    InvalidRequest,
    /// 404: no such session or route.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: another request saved the session meanwhile (optimistic concurrency); reload and retry.
    Conflict,
    /// 410: the session has expired.
    Expired,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 503: the database cannot be reached.
    DatabaseUnavailable,
    /// 500: the database failed otherwise.
    DatabaseError,
    /// 500: anything else.
    Internal,
}

/// A typed API error: a status, a code and a message that never contains a token or session data.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The machine-readable code.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, what)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        use StatusCode as S;
        match &error {
            StoreError::InvalidId(_) => {
                Self::new(S::BAD_REQUEST, ErrorCode::InvalidId, error.to_string())
            }
            StoreError::InvalidData(_) | StoreError::InvalidConfig(_) => {
                Self::new(S::BAD_REQUEST, ErrorCode::InvalidData, error.to_string())
            }
            StoreError::NotFound => Self::not_found("session not found"),
            StoreError::Expired => Self::new(S::GONE, ErrorCode::Expired, "session expired"),
            StoreError::Conflict => Self::new(S::CONFLICT, ErrorCode::Conflict, error.to_string()),
            StoreError::Database(SqlError::ConnectionFailed(_)) => {
                tracing::warn!(error = %error, "database unavailable");
                Self::new(
                    S::SERVICE_UNAVAILABLE,
                    ErrorCode::DatabaseUnavailable,
                    "the database is unavailable",
                )
            }
            StoreError::Database(_) => {
                tracing::error!(error = %error, "database error");
                Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    ErrorCode::DatabaseError,
                    "database error",
                )
            }
            _ => {
                tracing::error!(error = %error, "store error");
                Self::new(
                    S::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error",
                )
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "expected a body with Content-Type: application/json",
            ),
            other => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                other.body_text(),
            ),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            rejection.body_text(),
        )
    }
}

/// The error body.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorCode,
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

/// A session as the API shows it (the token only where it is new: create, login, logout).
#[derive(Debug, Serialize)]
struct SessionView {
    user_id: Option<i64>,
    data: BTreeMap<String, String>,
    created_at: String,
    expires_at: String,
    updated_at: String,
}

impl From<&Session> for SessionView {
    fn from(s: &Session) -> Self {
        Self {
            user_id: s.user_id,
            data: s.data.clone(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// A session with its (new) token.
#[derive(Debug, Serialize)]
struct TokenView {
    token: String,
    session: SessionView,
}

impl From<&Session> for TokenView {
    fn from(s: &Session) -> Self {
        Self {
            token: s.id.clone(),
            session: s.into(),
        }
    }
}

/// A listed session of a user.
#[derive(Debug, Serialize)]
struct UserSessionView {
    handle: String,
    user_id: i64,
    data: BTreeMap<String, String>,
    created_at: String,
    expires_at: String,
    updated_at: String,
}

impl From<&UserSession> for UserSessionView {
    fn from(s: &UserSession) -> Self {
        Self {
            handle: s.handle.clone(),
            user_id: s.user_id,
            data: s.data.clone(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// RFC 3339 with microseconds, UTC.
pub(super) fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// The API routes.
pub(super) fn routes(routes: Routes) -> Routes {
    routes
        .add(Method::POST, "/api/sessions", create)
        .add(Method::GET, "/api/sessions/{token}", get)
        .add(Method::DELETE, "/api/sessions/{token}", delete)
        .add(Method::PATCH, "/api/sessions/{token}/data", update_data)
        .add(Method::POST, "/api/sessions/{token}/login", login)
        .add(Method::POST, "/api/sessions/{token}/logout", logout)
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
    max_age: Option<i64>,
    user_id: Option<i64>,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// `POST /api/sessions`: creates and saves a session → 201 with its token.
async fn create(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<CreateRequest>,
) -> Result<(StatusCode, Json<TokenView>), ApiError> {
    let store = &app.store;
    let mut session = store
        .new_session(body.max_age.unwrap_or(store.config().max_age))
        .await?;
    if let Some(user) = body.user_id {
        session.set_user(user);
    }
    session.data.extend(body.data);
    store.save(&mut session).await?;
    Ok((StatusCode::CREATED, Json((&session).into())))
}

/// `GET /api/sessions/{token}`.
async fn get(
    State(app): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<SessionView>, ApiError> {
    let session = app.store.load(&token).await?;
    Ok(Json((&session).into()))
}

/// `DELETE /api/sessions/{token}` → 204, or 404 when there was no such session.
async fn delete(
    State(app): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    if app.store.delete(&token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("session not found"))
    }
}

/// The body of `PATCH /api/sessions/{token}/data`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateDataRequest {
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    unset: Vec<String>,
}

/// `PATCH /api/sessions/{token}/data`: removes `unset`, then stores `set`; saves once.
async fn update_data(
    State(app): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateDataRequest>,
) -> Result<Json<SessionView>, ApiError> {
    let mut session = app.store.load(&token).await?;
    for key in &body.unset {
        session.delete(key);
    }
    session.data.extend(body.set);
    app.store.save(&mut session).await?;
    Ok(Json((&session).into()))
}

/// The body of `POST /api/sessions/{token}/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    user_id: i64,
}

/// `POST /api/sessions/{token}/login`: sets the user and rotates the token → the new token.
async fn login(
    State(app): State<AppState>,
    ApiPath(token): ApiPath<String>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenView>, ApiError> {
    let mut session = app.store.load(&token).await?;
    session.set_user(body.user_id);
    app.store.regenerate_id(&mut session).await?;
    Ok(Json((&session).into()))
}

/// `POST /api/sessions/{token}/logout`: clears the user and rotates the token → the new token.
async fn logout(
    State(app): State<AppState>,
    ApiPath(token): ApiPath<String>,
) -> Result<Json<TokenView>, ApiError> {
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

/// `DELETE /api/users/{user_id}/sessions/{handle}` → 204; 404 unless the handle names one of the user's
/// unexpired sessions.
async fn revoke_one(
    State(app): State<AppState>,
    ApiPath((user_id, handle)): ApiPath<(i64, String)>,
) -> Result<StatusCode, ApiError> {
    revoke_handle(&app, user_id, &handle).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes `handle` if it belongs to `user_id` (shared with the demo app).
pub(super) async fn revoke_handle(
    app: &AppState,
    user_id: i64,
    handle: &str,
) -> Result<(), ApiError> {
    // A malformed handle is a 400 whoever asks; a well-formed one of another user is not revoked.
    let well_formed = handle.len() == 64
        && handle
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidId,
            "invalid session handle: expected 64 lower-case hex characters",
        ));
    }
    let owned = app.store.get_user_sessions(user_id).await?;
    if !owned.iter().any(|s| s.handle == handle) {
        return Err(ApiError::not_found("no such session for this user"));
    }
    if app.store.revoke_session(handle).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("no such session for this user"))
    }
}

/// `POST /api/cleanup`: deletes expired sessions now.
async fn cleanup(State(app): State<AppState>) -> Result<Json<Deleted>, ApiError> {
    let deleted = app.store.cleanup().await?;
    Ok(Json(Deleted { deleted }))
}

/// Unknown routes: a JSON 404 under `/api`, plain text elsewhere.
pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") || uri.path() == "/api" {
        ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
    } else {
        (http::StatusCode::NOT_FOUND, "not found").into_response()
    }
}

/// A known route with another method: a JSON 405 under `/api`, plain text elsewhere.
pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    if uri.path().starts_with("/api/") {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            format!("{method} is not allowed on {}", uri.path()),
        )
        .into_response()
    } else {
        (http::StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_their_status_and_code() {
        let cases = [
            (
                StoreError::InvalidId("x".into()),
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidId,
            ),
            (
                StoreError::NotFound,
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
            ),
            (StoreError::Expired, StatusCode::GONE, ErrorCode::Expired),
            (
                StoreError::Conflict,
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
            ),
            (
                StoreError::Database(SqlError::ConnectionFailed("down".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::DatabaseUnavailable,
            ),
            (
                StoreError::FuelExhausted,
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status, api.code), (status, code));
        }
    }
}
