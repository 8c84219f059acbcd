//! HTTP middleware: a tower [`SessionLayer`] and the [`SessionHandle`] extractor for axum handlers
//! (cargo feature `tower`, on by default).
//!
//! For each request the layer only remembers the `Cookie` header; nothing runs until a handler asks for
//! the session. Guest calls per request:
//! - a handler that never touches the session: none;
//! - one that reads it: one (the session loaded straight from the `Cookie` header); none when the request
//!   carries no cookie at all (the session is then empty);
//! - one that changes it: at most two (the load, then one `commit` that writes the change and returns the
//!   `Set-Cookie` value); login rotation and logout likewise.
//!
//! After the handler the layer writes only what changed. When the authenticated user changes, the token
//! rotates in the same write (fixation protection; [`SessionLayer::rotate_on_user_change`] opts out). A
//! pending logout (`delete`) is applied whatever the handler's status; other writes are skipped on a 5xx.
//! A stale cookie (malformed, unknown, expired, revoked) of a request whose handler touched the session is
//! removed. Responses that set a session cookie or depend on a live session say `Cache-Control:
//! no-store`.
//!
//! ```no_run
//! # async fn run(store: wasm_sessions::SessionStore) {
//! use axum::{Router, routing::get};
//! use wasm_sessions::{SessionHandle, SessionLayer, StoreError};
//!
//! async fn visits(session: SessionHandle) -> Result<String, StoreError> {
//!     let n = session.get::<u64>("visits").await?.unwrap_or(0) + 1;
//!     session.insert("visits", n).await?;
//!     Ok(format!("visit {n}"))
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(visits))
//!     .layer(SessionLayer::new(store));
//! # let _ = app; }
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response as AxumResponse};
use http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::StoreError;
use crate::session::{Expiry, Session};
use crate::store::{CookieState, SessionStore};

/// A tower [`Layer`](tower::Layer) that gives every request a lazily loaded session (tower-sessions
/// users: our `SessionManagerLayer`).
///
/// Handlers take a [`SessionHandle`] (an axum extractor, or `request.extensions().get::<SessionHandle>()`
/// in plain tower services).
#[derive(Debug, Clone)]
pub struct SessionLayer {
    store: SessionStore,
    rotate_on_user_change: bool,
}

impl SessionLayer {
    /// A layer over `store`; cookies use `store.config()`.
    #[must_use]
    pub fn new(store: SessionStore) -> Self {
        Self {
            store,
            rotate_on_user_change: true,
        }
    }

    /// Whether a change of the authenticated user (`set_user`, `clear_user`) rotates the token in the
    /// same write (default true: protection against session fixation without the application having to
    /// remember [`SessionHandle::regenerate_id`]). Turn it off only if something else rotates tokens.
    #[must_use]
    pub fn rotate_on_user_change(mut self, rotate: bool) -> Self {
        self.rotate_on_user_change = rotate;
        self
    }
}

impl<S> tower::Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps around an inner service.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    layer: SessionLayer,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for SessionService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let handle = SessionHandle::new(
            self.layer.store.clone(),
            cookie_header(request.headers()),
            self.layer.rotate_on_user_change,
        );
        request.extensions_mut().insert(handle.clone());
        // The clone that was driven to readiness serves this request; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            let server_error = response.status().is_server_error();
            match handle.finish(server_error).await {
                Ok(finished) => {
                    if let Some(set_cookie) = finished.set_cookie {
                        match HeaderValue::try_from(set_cookie) {
                            Ok(value) => {
                                response.headers_mut().append(SET_COOKIE, value);
                            }
                            Err(_) => {
                                tracing::error!("the session cookie is not a valid header value");
                                return Ok(failure(StatusCode::INTERNAL_SERVER_ERROR));
                            }
                        }
                    }
                    if finished.no_store {
                        response
                            .headers_mut()
                            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    }
                }
                Err(error) => {
                    tracing::error!(error = %error, "writing the session failed");
                    let status = StatusCode::from_u16(error.http_answer().status)
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return Ok(failure(status));
                }
            }
            Ok(response)
        })
    }
}

/// An empty response with `status` (replaces a response whose session could not be written).
fn failure<B: Default>(status: StatusCode) -> Response<B> {
    let mut response = Response::new(B::default());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// All `Cookie` headers of the request joined into one (HTTP/2 may send several).
fn cookie_header(headers: &HeaderMap) -> Option<String> {
    let parts: Vec<&str> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The request's session, for handlers: loaded on first use, written after the handler.
///
/// Cheap to clone (all clones share one session). Every method may load the session, so each is `async`
/// and returns the store's error: [`StoreError`] implements [`IntoResponse`] (its status from
/// [`StoreError::http_answer`], no details in the body for server errors), so handlers can use `?`.
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<Shared>,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle").finish_non_exhaustive()
    }
}

struct Shared {
    store: SessionStore,
    rotate_on_user_change: bool,
    state: Mutex<State>,
}

/// What the handle knows, and what the layer must write after the handler.
struct State {
    /// The request's `Cookie` header, until the session is loaded.
    cookie: Option<String>,
    /// Whether a handler asked for the session.
    touched: bool,
    /// The session: loaded, fresh, or `None` when there is none yet (no cookie, or after `delete`);
    /// reading `None` reads an empty session, writing to it creates one.
    session: Option<Session>,
    /// What the request's cookie was.
    cookie_state: CookieState,
    /// The `Set-Cookie` value that removes a stale cookie.
    removal_cookie: Option<String>,
    /// A new token was asked for (login).
    rotate: bool,
    /// A stored session to delete (its token): log out.
    delete: Option<String>,
    /// The session was deleted and nothing stored since: send the removal cookie.
    ended: bool,
    /// The `Set-Cookie` value of an early [`SessionHandle::save`], still to be sent.
    set_cookie: Option<String>,
}

/// What the layer adds to the response.
struct Finished {
    set_cookie: Option<String>,
    no_store: bool,
}

impl SessionHandle {
    fn new(store: SessionStore, cookie: Option<String>, rotate_on_user_change: bool) -> Self {
        Self {
            inner: Arc::new(Shared {
                store,
                rotate_on_user_change,
                state: Mutex::new(State {
                    cookie,
                    touched: false,
                    session: None,
                    cookie_state: CookieState::Absent,
                    removal_cookie: None,
                    rotate: false,
                    delete: None,
                    ended: false,
                    set_cookie: None,
                }),
            }),
        }
    }

    /// The state, with the session loaded from the cookie on first use (one guest call, none without a
    /// cookie).
    async fn state(&self) -> Result<tokio::sync::MutexGuard<'_, State>, StoreError> {
        let mut state = self.inner.state.lock().await;
        if !state.touched {
            if let Some(header) = state.cookie.take() {
                let found = self.inner.store.load_from_cookie(&header).await?;
                state.session = Some(found.session);
                state.cookie_state = found.cookie;
                state.removal_cookie = found.removal_cookie;
            }
            state.touched = true;
        }
        Ok(state)
    }

    /// Runs `read` on the session, or on an empty one when there is none.
    async fn read<T>(&self, read: impl FnOnce(&Session) -> T, empty: T) -> Result<T, StoreError> {
        let state = self.state().await?;
        Ok(state.session.as_ref().map_or(empty, read))
    }

    /// Runs `edit` on the session, creating a fresh one first when there is none.
    async fn edit<T>(&self, edit: impl FnOnce(&mut Session) -> T) -> Result<T, StoreError> {
        let mut state = self.state().await?;
        if state.session.is_none() {
            state.session = Some(self.inner.store.new_session().await?);
        }
        Ok(edit(state.session.as_mut().expect("created above")))
    }

    /// The session itself, created when there is none (for the fields every session has).
    async fn existing<T>(&self, read: impl FnOnce(&Session) -> T) -> Result<T, StoreError> {
        self.edit(|s| read(s)).await
    }

    /// The value under `key`, deserialized as `T`; `None` when absent.
    ///
    /// # Errors
    /// The session could not be loaded ([`StoreError::Database`], ...), or
    /// [`StoreError::InvalidValue`] when the value does not deserialize as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.read(|s| s.get(key), Ok(None)).await?
    }

    /// The value under `key` when it is a JSON string.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn get_str(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.read(|s| s.get_str(key).map(str::to_owned), None).await
    }

    /// A copy of all the data (counts as reading every key).
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn data(&self) -> Result<BTreeMap<String, Value>, StoreError> {
        self.read(|s| s.data().clone(), BTreeMap::new()).await
    }

    /// Stores `value` under `key` as real JSON; the session is saved after the handler if this changed
    /// anything. The guest checks the data when it is saved: call [`save`](Self::save) to see that error
    /// in the handler.
    ///
    /// # Errors
    /// The session could not be loaded, or [`StoreError::InvalidValue`] when `value` does not serialize.
    pub async fn insert(
        &self,
        key: impl Into<String>,
        value: impl Serialize,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_value(value).map_err(StoreError::InvalidValue)?;
        let key = key.into();
        self.edit(|s| s.insert(key, value)).await?
    }

    /// Stores the string `value` under `key` (the string API; the same as `insert` of a string).
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), StoreError> {
        let (key, value) = (key.into(), value.into());
        self.edit(|s| s.set(key, value)).await
    }

    /// Removes `key`; returns the value it had.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn remove(&self, key: &str) -> Result<Option<Value>, StoreError> {
        let mut state = self.state().await?;
        Ok(state.session.as_mut().and_then(|s| s.remove(key)))
    }

    /// Removes all data (the user stays).
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn clear(&self) -> Result<(), StoreError> {
        let mut state = self.state().await?;
        if let Some(session) = state.session.as_mut() {
            session.clear();
        }
        Ok(())
    }

    /// The authenticated user, if any.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn user_id(&self) -> Result<Option<i64>, StoreError> {
        self.read(Session::user_id, None).await
    }

    /// Whether a user is set.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn is_authenticated(&self) -> Result<bool, StoreError> {
        self.read(Session::is_authenticated, false).await
    }

    /// Marks the session as authenticated as `user_id`. The token rotates in the same write, unless the
    /// layer was told not to ([`SessionLayer::rotate_on_user_change`]).
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn set_user(&self, user_id: i64) -> Result<(), StoreError> {
        self.edit(|s| s.set_user(user_id)).await
    }

    /// Removes the authenticated user (the token rotates as for [`set_user`](Self::set_user)).
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn clear_user(&self) -> Result<(), StoreError> {
        let mut state = self.state().await?;
        if let Some(session) = state.session.as_mut() {
            session.clear_user();
        }
        Ok(())
    }

    /// The label the application set (e.g. the device), if any.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn label(&self) -> Result<Option<String>, StoreError> {
        self.read(|s| s.label().map(str::to_owned), None).await
    }

    /// Sets the label (e.g. "Chrome on Linux"); session data cannot overwrite it.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn set_label(&self, label: Option<String>) -> Result<(), StoreError> {
        self.edit(|s| s.set_label(label)).await
    }

    /// This session's expiry mode; `None` follows the configuration.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn expiry(&self) -> Result<Option<Expiry>, StoreError> {
        self.read(Session::expiry, None).await
    }

    /// Sets this session's expiry mode (as tower-sessions' `set_expiry`): e.g. "remember me" as
    /// [`Expiry::AtDateTime`], a browser-session cookie as [`Expiry::OnSessionEnd`]. Written after the
    /// handler, with a new `Set-Cookie`.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn set_expiry(&self, expiry: Option<Expiry>) -> Result<(), StoreError> {
        self.edit(|s| s.set_expiry(expiry)).await
    }

    /// The session's opaque handle (as [`UserSession::handle`](crate::UserSession::handle) lists it):
    /// e.g. to mark "this device" in a list of the user's sessions.
    ///
    /// # Errors
    /// The session could not be loaded or created.
    pub async fn handle(&self) -> Result<String, StoreError> {
        self.existing(|s| s.handle().to_owned()).await
    }

    /// When the session was created (the same across [`regenerate_id`](Self::regenerate_id)).
    ///
    /// # Errors
    /// The session could not be loaded or created.
    pub async fn created_at(&self) -> Result<SystemTime, StoreError> {
        self.existing(Session::created_at).await
    }

    /// When the session stops being valid, as of its load.
    ///
    /// # Errors
    /// The session could not be loaded or created.
    pub async fn expires_at(&self) -> Result<SystemTime, StoreError> {
        self.existing(Session::expires_at).await
    }

    /// When the stored row was last written or its idle deadline extended.
    ///
    /// # Errors
    /// The session could not be loaded or created.
    pub async fn updated_at(&self) -> Result<SystemTime, StoreError> {
        self.existing(Session::updated_at).await
    }

    /// Gives the session a new token when the response is written (tower-sessions: `cycle_id`). A
    /// stored session moves to the new token in the same statement that writes its changes; the old
    /// token stops working.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn regenerate_id(&self) -> Result<(), StoreError> {
        let mut state = self.state().await?;
        if state.session.is_some() {
            state.rotate = true;
        }
        Ok(())
    }

    /// Ends the session ("log out here"): deletes it when the response is written, whatever the
    /// handler's status, and removes the cookie. A later change in the same request starts a fresh
    /// session.
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn delete(&self) -> Result<(), StoreError> {
        let mut state = self.state().await?;
        if let Some(old) = state.session.take()
            && old.is_saved()
        {
            state.delete = Some(old.id);
        }
        state.rotate = false;
        state.ended = state.delete.is_some() || state.cookie_state != CookieState::Absent;
        Ok(())
    }

    /// Ends the session, as tower-sessions' `flush` does: the same as [`delete`](Self::delete) (the data
    /// is gone with it). To write changes early, use [`save`](Self::save).
    ///
    /// # Errors
    /// The session could not be loaded.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.delete().await
    }

    /// Writes pending changes now instead of after the handler (the cookie is still set on the
    /// response), so the handler sees a save error such as [`StoreError::InvalidData`] or
    /// [`StoreError::Conflict`]. On error the change stays pending in memory but is not written.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`], [`StoreError::Conflict`], [`StoreError::Database`], ...
    pub async fn save(&self) -> Result<(), StoreError> {
        let mut state = self.state().await?;
        self.write(&mut state).await
    }

    /// Performs the pending delete and save in one guest call (none when there is nothing to do).
    async fn write(&self, state: &mut State) -> Result<(), StoreError> {
        let save = state
            .session
            .as_ref()
            .filter(|s| s.has_changes() || (state.rotate && s.is_saved()));
        if state.delete.is_none() && save.is_none() {
            return Ok(());
        }
        let rotate = save.is_some_and(|s| {
            state.rotate
                || (self.inner.rotate_on_user_change
                    && s.is_saved()
                    && s.tracking.user_original.is_some())
        });
        let outcome = self
            .inner
            .store
            .commit(state.delete.as_deref(), save.map(|s| (s, rotate)))
            .await?;
        state.delete = None;
        if let Some(saved) = outcome.session {
            state.session = Some(saved);
            state.rotate = false;
            state.ended = false;
        }
        if outcome.set_cookie.is_some() {
            state.set_cookie = outcome.set_cookie;
        }
        Ok(())
    }

    /// After the handler: writes what is pending (only the delete after a server error) and says what
    /// the response gets.
    async fn finish(&self, server_error: bool) -> Result<Finished, StoreError> {
        let mut state = self.inner.state.lock().await;
        if !state.touched {
            return Ok(Finished {
                set_cookie: None,
                no_store: false,
            });
        }
        if server_error {
            // A logout must not fail open; anything else waits for a successful response.
            if state.delete.is_some() {
                let delete = state.delete.take();
                let outcome = self.inner.store.commit(delete.as_deref(), None).await?;
                return Ok(Finished {
                    set_cookie: outcome.set_cookie,
                    no_store: true,
                });
            }
            return Ok(Finished {
                set_cookie: None,
                no_store: state.cookie_state == CookieState::Live,
            });
        }
        self.write(&mut state).await?;
        let set_cookie = match state.set_cookie.take() {
            Some(cookie) => Some(cookie),
            None if state.ended || state.cookie_state == CookieState::Stale => {
                match state.removal_cookie.take() {
                    Some(removal) => Some(removal),
                    None => Some(self.inner.store.removal_cookie_header().await?),
                }
            }
            None => None,
        };
        let no_store = set_cookie.is_some() || state.cookie_state == CookieState::Live;
        Ok(Finished {
            set_cookie,
            no_store,
        })
    }
}

/// The [`SessionHandle`] extractor failed: the route is not wrapped in a [`SessionLayer`].
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the route has no SessionLayer")]
pub struct MissingSessionLayer;

impl IntoResponse for MissingSessionLayer {
    fn into_response(self) -> AxumResponse {
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionHandle {
    type Rejection = MissingSessionLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<SessionHandle>()
            .cloned()
            .ok_or(MissingSessionLayer)
    }
}

impl IntoResponse for StoreError {
    /// The status from [`StoreError::http_answer`]; the body is the public message (no details for
    /// server errors).
    fn into_response(self) -> AxumResponse {
        let answer = self.http_answer();
        if answer.status >= 500 {
            tracing::error!(error = %self, "session store error");
        }
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, self.public_message()).into_response()
    }
}
