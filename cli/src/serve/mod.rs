//! `wasm-sessions serve`: the router (JSON API, OpenAPI document, demo app), the checks in front of it
//! (`guard`: allowed hosts, cross-site requests, the API's bearer token), the store configuration it
//! runs with ([`store_config`]), background cleanup and graceful shutdown.

mod api;
mod auth;
mod guard;
mod openapi;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use wasm_sessions::{Config, SameSite, SessionLayer, SessionStore};

pub use api::{ApiError, SESSION_TOKEN_HEADER, codes};
pub use auth::{ApiToken, InvalidApiToken, generate_token, write_token_file};
pub use guard::HostPattern;
pub use openapi::document as openapi_document;

/// The session cookie's name under `serve`: the `__Host-` prefix makes browsers insist on `Secure`,
/// `Path=/` and no `Domain` (the guest checks the same rules), so no sibling domain or plain-HTTP page can
/// set or shadow it. Browsers keep `Secure` cookies on `http://localhost` and `http://127.0.0.1`, so the
/// demo works over plain HTTP there. (The library's default stays `varel_session`.)
pub const COOKIE_NAME: &str = "__Host-wasm_session";

/// The absolute session lifetime under `serve`: 30 days, so that "remember me" keeps a browser signed in
/// for a month.
pub const MAX_AGE_SECS: i64 = 30 * 86_400;

/// The idle timeout under `serve`: a session that is not remembered ends after 30 minutes without a
/// request (a remembered one has its own sliding expiry of [`MAX_AGE_SECS`]).
pub const IDLE_TIMEOUT_SECS: i64 = 30 * 60;

/// The store configuration `serve` runs with, for [`wasm_sessions::SessionStoreBuilder::configure`]:
/// the one place it is written, used by `serve` and by the tests of the API and the demo.
pub fn store_config(config: &mut Config) {
    config.cookie_name = COOKIE_NAME.to_owned();
    config.secure = true;
    config.http_only = true;
    config.same_site = SameSite::Strict;
    config.path = "/".to_owned();
    config.domain = None;
    config.max_age = MAX_AGE_SECS;
    config.idle_timeout = Some(IDLE_TIMEOUT_SECS);
}

/// What the service needs besides the store: the API's bearer token and the names the `Host` header may
/// carry (see `guard`). There is no default: without an allowed host every request is refused, and
/// [`run`] adds the bound address itself.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    api_token: ApiToken,
    hosts: guard::AllowedHosts,
}

impl ServeOptions {
    /// Options whose API requires `api_token`, with no allowed host yet.
    #[must_use]
    pub fn new(api_token: ApiToken) -> Self {
        Self {
            api_token,
            hosts: guard::AllowedHosts::default(),
        }
    }

    /// Also answers requests whose `Host` is `host` (`--allowed-host`).
    #[must_use]
    pub fn allow_host(mut self, host: HostPattern) -> Self {
        self.hosts.add(host);
        self
    }

    /// Also answers the names of a server bound to `addr`: `IP:port`; for a loopback address also
    /// `localhost:port`, `127.0.0.1:port` and `[::1]:port`; for an unspecified one (every interface) any
    /// IP literal on the port and `localhost:port`.
    #[must_use]
    pub fn allow_address(mut self, addr: SocketAddr) -> Self {
        self.hosts.add_address(addr);
        self
    }
}

/// What every handler shares.
#[derive(Debug, Clone)]
struct AppState {
    store: SessionStore,
}

/// One route: an HTTP method and an axum path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The method.
    pub method: Method,
    /// The path pattern, e.g. `/api/users/{user_id}/sessions`.
    pub path: &'static str,
}

/// Builds the router and the list of its routes in one place, so the list cannot drift from the router
/// (the OpenAPI test checks the document against the list).
struct Routes {
    router: Router<AppState>,
    list: Vec<Route>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            list: Vec::new(),
        }
    }

    fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a routable method");
        self.router = self.router.route(path, on(filter, handler));
        self.list.push(Route { method, path });
        self
    }
}

/// Every route of the service: the JSON API, the OpenAPI document, and the demo app.
fn routes() -> Routes {
    let routes = Routes::new().add(Method::GET, "/openapi.json", openapi::serve);
    let routes = api::routes(routes);
    web::routes(routes)
}

/// The `(method, path)` of every route [`router`] serves.
#[must_use]
pub fn route_list() -> Vec<Route> {
    routes().list
}

/// The whole service on `store`: the JSON API under `/api`, `/openapi.json`, and the demo app at `/`
/// (wrapped in a [`SessionLayer`]), behind the checks of `guard` (outermost, so a refused request never
/// touches a session).
pub fn router(store: SessionStore, options: ServeOptions) -> Router {
    let ServeOptions { api_token, hosts } = options;
    let guard = Arc::new(guard::Guard { hosts, api_token });
    let layer = SessionLayer::new(store.clone());
    routes()
        .router
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
        .with_state(AppState { store })
}

/// A bound listener, before it serves.
#[derive(Debug)]
pub struct Listening {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
}

impl Listening {
    /// The address actually bound (the port chosen for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// Binds `listen` and prints the address it bound on stdout (first line: the URL), with the URLs of the
/// demo, the API and the document.
///
/// # Errors
/// The address cannot be bound.
pub async fn listen(listen: SocketAddr) -> Result<Listening> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    if local.ip().is_unspecified() {
        let here = SocketAddr::new([127, 0, 0, 1].into(), local.port());
        println!(
            "wasm-sessions is serving on http://{local}/ (every interface): on this machine open \
             http://localhost:{}/ in a browser",
            local.port()
        );
        println!(
            "  from elsewhere use this machine's IP address, or a name given with --allowed-host; \
             JSON API http://{here}/api/ (Authorization: Bearer), OpenAPI http://{here}/openapi.json ; \
             Ctrl-C stops"
        );
    } else {
        println!("wasm-sessions is serving on http://{local}/ : open it in a browser");
        println!(
            "  demo app http://{local}/ , JSON API http://{local}/api/ (Authorization: Bearer), \
             OpenAPI http://{local}/openapi.json ; Ctrl-C stops"
        );
    }
    Ok(Listening { listener, local })
}

/// Serves [`router`] on `listening` (its bound address added to the allowed hosts) until SIGINT or
/// SIGTERM, running [`SessionStore::cleanup`] every `cleanup_interval` (never when it is zero).
///
/// # Errors
/// The server fails.
pub async fn run(
    store: SessionStore,
    listening: Listening,
    cleanup_interval: Duration,
    options: ServeOptions,
) -> Result<()> {
    let Listening { listener, local } = listening;
    let options = options.allow_address(local);
    let cleanup = (!cleanup_interval.is_zero())
        .then(|| tokio::spawn(cleanup_loop(store.clone(), cleanup_interval)));
    let served = axum::serve(listener, router(store, options))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP");
    if let Some(cleanup) = cleanup {
        cleanup.abort();
    }
    println!("wasm-sessions stopped");
    served
}

/// Deletes expired sessions every `interval`; failures are logged and retried at the next tick.
async fn cleanup_loop(store: SessionStore, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match store.cleanup().await {
            Ok(0) => tracing::debug!("cleanup: nothing expired"),
            Ok(removed) => tracing::info!(removed, "cleanup removed expired sessions"),
            Err(error) => tracing::warn!(error = %error, "cleanup failed"),
        }
    }
}

/// Resolves at the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    println!("shutting down: finishing the requests in flight");
}
