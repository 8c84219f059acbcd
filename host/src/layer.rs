//! HTTP middleware: a tower [`SessionLayer`] and the [`SessionHandle`] extractor for axum handlers
//! (cargo feature `tower`, on by default).
//!
//! For each request the layer only remembers the `Cookie` header; nothing runs until a handler asks for
//! the session. The first access parses the cookie (in the guest) and loads the session (one SQL round
//! trip); a missing, malformed, unknown or expired cookie gives a fresh, unsaved session instead of an
//! error. After the handler, the layer writes only what changed: a save (or an id rotation) plus a
//! `Set-Cookie` header, or a delete plus the removal cookie. A 5xx response writes nothing.
//!
//! ```no_run
//! # async fn run(store: wasm_sessions::SessionStore) {
//! use axum::{Router, routing::get};
//! use wasm_sessions::{SessionHandle, SessionLayer, StoreError};
//!
//! async fn visits(session: SessionHandle) -> Result<String, StoreError> {
//!     let n: u64 = session.get("visits").await?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
//!     session.set("visits", n.to_string()).await?;
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
use http::header::{COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tokio::sync::Mutex;

use crate::driver::SqlError;
use crate::error::StoreError;
use crate::session::Session;
use crate::store::SessionStore;

/// A tower [`Layer`](tower::Layer) that gives every request a lazily loaded session.
///
/// Handlers take a [`SessionHandle`] (an axum extractor, or `request.extensions().get::<SessionHandle>()`
/// in plain tower services).
#[derive(Debug, Clone)]
pub struct SessionLayer {
    store: SessionStore,
    trust_forwarded_proto: bool,
}

impl SessionLayer {
    /// A layer over `store`; cookies use `store.config()`.
    #[must_use]
    pub fn new(store: SessionStore) -> Self {
        Self {
            store,
            trust_forwarded_proto: false,
        }
    }

    /// Whether to believe the `X-Forwarded-Proto` request header when deciding `Secure` (only when the
    /// configuration leaves `secure` unset). Turn it on only behind a proxy that sets the header and
    /// strips it from clients; off by default, when only an `https` request URI counts as secure.
    #[must_use]
    pub fn trust_forwarded_proto(mut self, trust: bool) -> Self {
        self.trust_forwarded_proto = trust;
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
        let secure = request_is_secure(&request, self.layer.trust_forwarded_proto);
        let handle = SessionHandle::new(self.layer.store.clone(), cookie_header(request.headers()));
        request.extensions_mut().insert(handle.clone());
        // The clone that was driven to readiness serves this request; the fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(request).await?;
            if response.status().is_server_error() {
                return Ok(response);
            }
            match handle.commit(secure).await {
                Ok(None) => {}
                Ok(Some(set_cookie)) => match HeaderValue::try_from(set_cookie) {
                    Ok(value) => {
                        response.headers_mut().append(SET_COOKIE, value);
                    }
                    Err(_) => {
                        tracing::error!("the session cookie is not a valid header value");
                        return Ok(failure(StatusCode::INTERNAL_SERVER_ERROR));
                    }
                },
                Err(error) => {
                    tracing::error!(error = %error, "writing the session failed");
                    return Ok(failure(status_for(&error)));
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
}

/// 503 when the database cannot be reached, 409 when another request saved the session meanwhile, 500
/// for anything else.
fn status_for(error: &StoreError) -> StatusCode {
    match error {
        StoreError::Database(SqlError::ConnectionFailed(_)) => StatusCode::SERVICE_UNAVAILABLE,
        StoreError::Conflict => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
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

/// Whether the request came over HTTPS: an `https` request URI, or (only when trusted) a first
/// `X-Forwarded-Proto` value of `https`.
fn request_is_secure<B>(request: &Request<B>, trust_forwarded_proto: bool) -> bool {
    if request.uri().scheme_str() == Some("https") {
        return true;
    }
    trust_forwarded_proto
        && request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The request's session, for handlers: the seed's session API, loaded on first use.
///
/// Cheap to clone (all clones share one session). Every method may load the session, so each is `async`
/// and returns the store's error: [`StoreError`] implements [`IntoResponse`] (503 when the database is
/// down, 500 otherwise, no details in the body), so handlers can use `?`.
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
    state: Mutex<State>,
}

/// What the handle knows, and what the layer must write after the handler.
struct State {
    /// The request's `Cookie` header, until the session is loaded.
    cookie: Option<String>,
    /// Whether the request sent our cookie with a well-formed token (known once loaded).
    had_cookie: bool,
    /// The session, once a handler asked for it.
    session: Option<Session>,
    /// The data or user changed since the load (or the last flush).
    changed: bool,
    /// A new id was asked for (login).
    rotate: bool,
    /// The browser's cookie must be (re)written.
    send_cookie: bool,
    /// A stored session to delete when the response is written (its token).
    delete: Option<String>,
    /// The session was deleted and nothing has been stored since: send the removal cookie.
    removed: bool,
}

impl SessionHandle {
    fn new(store: SessionStore, cookie: Option<String>) -> Self {
        Self {
            inner: Arc::new(Shared {
                store,
                state: Mutex::new(State {
                    cookie,
                    had_cookie: false,
                    session: None,
                    changed: false,
                    rotate: false,
                    send_cookie: false,
                    delete: None,
                    removed: false,
                }),
            }),
        }
    }

    /// Runs `f` on the loaded session (loading it first if needed).
    async fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        Ok(f(&mut state))
    }

    /// Loads the session from the cookie, or starts a fresh one.
    async fn ensure_loaded(&self, state: &mut State) -> Result<(), StoreError> {
        if state.session.is_some() {
            return Ok(());
        }
        let store = &self.inner.store;
        let id = match state.cookie.as_deref() {
            Some(header) => store.session_id_from_cookie_header(header).await?,
            None => None,
        };
        let loaded = match id {
            Some(id) => {
                state.had_cookie = true;
                match store.load(&id).await {
                    Ok(session) => Some(session),
                    Err(StoreError::NotFound | StoreError::Expired | StoreError::InvalidId(_)) => {
                        None
                    }
                    Err(other) => return Err(other),
                }
            }
            None => None,
        };
        let session = match loaded {
            Some(session) => session,
            None => store.new_session(store.config().max_age).await?,
        };
        state.cookie = None;
        state.session = Some(session);
        Ok(())
    }

    /// The value stored under `key`.
    ///
    /// # Errors
    /// The session could not be loaded ([`StoreError::Database`], [`StoreError::Guest`]).
    pub async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|s| session(s).get(key).map(str::to_owned)).await
    }

    /// A copy of all the data.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn data(&self) -> Result<BTreeMap<String, String>, StoreError> {
        self.with(|s| session(s).data.clone()).await
    }

    /// Stores `value` under `key`; the session is saved after the handler if this changed anything.
    ///
    /// # Errors
    /// As for [`get`](Self::get). The guest checks the data when it is saved: call
    /// [`flush`](Self::flush) to see that error in the handler.
    pub async fn set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), StoreError> {
        let (key, value) = (key.into(), value.into());
        self.with(|s| {
            if session(s).get(&key) != Some(value.as_str()) {
                session_mut(s).set(key, value);
                s.changed = true;
            }
        })
        .await
    }

    /// Removes `key`; returns the value it had.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn delete(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.with(|s| {
            let old = session_mut(s).delete(key);
            s.changed |= old.is_some();
            old
        })
        .await
    }

    /// Removes all data (the user stays).
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn clear(&self) -> Result<(), StoreError> {
        self.with(|s| {
            if !session(s).data.is_empty() {
                session_mut(s).clear();
                s.changed = true;
            }
        })
        .await
    }

    /// The authenticated user, if any.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn user_id(&self) -> Result<Option<i64>, StoreError> {
        self.with(|s| session(s).user_id).await
    }

    /// Whether a user is set.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn is_authenticated(&self) -> Result<bool, StoreError> {
        self.with(|s| session(s).is_authenticated()).await
    }

    /// Marks the session as authenticated as `user_id`. At login, also call
    /// [`regenerate_id`](Self::regenerate_id).
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn set_user(&self, user_id: i64) -> Result<(), StoreError> {
        self.with(|s| {
            if session(s).user_id != Some(user_id) {
                session_mut(s).set_user(user_id);
                s.changed = true;
            }
        })
        .await
    }

    /// Removes the authenticated user.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn clear_user(&self) -> Result<(), StoreError> {
        self.with(|s| {
            if session(s).user_id.is_some() {
                session_mut(s).clear_user();
                s.changed = true;
            }
        })
        .await
    }

    /// When the session was created (stays the same across [`regenerate_id`](Self::regenerate_id)).
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn created_at(&self) -> Result<SystemTime, StoreError> {
        self.with(|s| session(s).created_at).await
    }

    /// When the session stops being valid.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn expires_at(&self) -> Result<SystemTime, StoreError> {
        self.with(|s| session(s).expires_at).await
    }

    /// Gives the session a new token when the response is written (do this at login, against session
    /// fixation). A stored session moves to the new token in one statement; the old token stops working.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn regenerate_id(&self) -> Result<(), StoreError> {
        self.with(|s| s.rotate = true).await
    }

    /// Deletes the session when the response is written and removes the cookie ("log out here"). Any
    /// later change in the same request starts a fresh session.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    pub async fn delete_session(&self) -> Result<(), StoreError> {
        let store = self.inner.store.clone();
        let mut state = self.inner.state.lock().await;
        self.ensure_loaded(&mut state).await?;
        let old = state.session.take().expect("loaded above");
        if old.is_saved {
            state.delete = Some(old.id);
        }
        state.session = Some(store.new_session(store.config().max_age).await?);
        state.changed = false;
        state.rotate = false;
        state.send_cookie = false;
        state.removed = state.had_cookie || state.delete.is_some();
        Ok(())
    }

    /// Writes pending changes now instead of after the handler (the cookie is still set on the
    /// response), so the handler sees a save error such as [`StoreError::InvalidData`]. On error the
    /// change stays pending in memory but is not written.
    ///
    /// # Errors
    /// [`StoreError::InvalidData`], [`StoreError::Expired`], [`StoreError::Database`], ...
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut state = self.inner.state.lock().await;
        self.write(&mut state).await
    }

    /// Performs the pending delete, rotation and save.
    async fn write(&self, state: &mut State) -> Result<(), StoreError> {
        let store = &self.inner.store;
        if let Some(id) = state.delete.take()
            && let Err(error) = store.delete(&id).await
        {
            state.delete = Some(id);
            return Err(error);
        }
        let Some(current) = state.session.as_ref() else {
            return Ok(());
        };
        if !state.rotate && !state.changed {
            return Ok(());
        }
        let mut session = current.clone();
        if state.rotate {
            // A stored session is moved and written in one statement; an unsaved one only gets a token.
            store.regenerate_id(&mut session).await?;
            if session.is_saved {
                state.changed = false;
            }
        }
        if state.changed || !session.is_saved {
            store.save(&mut session).await?;
        }
        state.session = Some(session);
        state.rotate = false;
        state.changed = false;
        state.send_cookie = true;
        state.removed = false;
        Ok(())
    }

    /// Writes what changed; returns the `Set-Cookie` header value to send, if any.
    async fn commit(&self, secure: bool) -> Result<Option<String>, StoreError> {
        let mut state = self.inner.state.lock().await;
        if state.session.is_none() {
            return Ok(None);
        }
        self.write(&mut state).await?;
        let store = &self.inner.store;
        if state.send_cookie {
            let session = state.session.as_ref().expect("checked above");
            store.set_cookie_header(session, secure).await.map(Some)
        } else if state.removed {
            store.removal_cookie_header(secure).await.map(Some)
        } else {
            Ok(None)
        }
    }
}

fn session(state: &State) -> &Session {
    state.session.as_ref().expect("the session is loaded first")
}

fn session_mut(state: &mut State) -> &mut Session {
    state.session.as_mut().expect("the session is loaded first")
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
    /// 503 when the database cannot be reached, 409 for a concurrent save, otherwise 500; the body
    /// never carries the details.
    fn into_response(self) -> AxumResponse {
        tracing::error!(error = %self, "session store error");
        let status = status_for(&self);
        (
            status,
            status.canonical_reason().unwrap_or("error").to_owned(),
        )
            .into_response()
    }
}
