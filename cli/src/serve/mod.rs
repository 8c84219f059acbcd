//! `wasm-sessions serve`: the router (JSON API, OpenAPI document, demo app), background cleanup and
//! graceful shutdown.

mod api;
mod openapi;
mod web;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{MethodFilter, on};
use wasm_sessions::{SessionLayer, SessionStore};

pub use api::{ApiError, ErrorCode};
pub use openapi::document as openapi_document;

/// How the service treats its requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeOptions {
    /// Believe `X-Forwarded-Proto` when deciding the cookie's `Secure` attribute (behind a TLS proxy).
    pub trust_forwarded_proto: bool,
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
    /// The path pattern, e.g. `/api/sessions/{token}`.
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
/// (wrapped in a [`SessionLayer`]).
pub fn router(store: SessionStore, options: ServeOptions) -> Router {
    let layer =
        SessionLayer::new(store.clone()).trust_forwarded_proto(options.trust_forwarded_proto);
    routes()
        .router
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(layer)
        .with_state(AppState { store })
}

/// Serves [`router`] on `listen` until SIGINT or SIGTERM, running [`SessionStore::cleanup`] every
/// `cleanup_interval` (never when it is zero). Prints the URL to open on stdout once listening.
///
/// # Errors
/// The address cannot be bound, or the server fails.
pub async fn run(
    store: SessionStore,
    listen: SocketAddr,
    cleanup_interval: Duration,
    options: ServeOptions,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let host = if local.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), local.port())
    } else {
        local
    };
    println!("wasm-sessions is serving on http://{host}/ : open it in a browser");
    println!(
        "  demo app http://{host}/ , JSON API http://{host}/api/ , OpenAPI http://{host}/openapi.json ; Ctrl-C stops"
    );

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
