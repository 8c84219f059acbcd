//! Server-side HTTP sessions whose logic runs as a sandboxed WebAssembly component.
//!
//! The guest component (`guest/`, bundled as [`BUNDLED_COMPONENT`]) owns the session policy: token
//! generation, expiry, validation, the SQL it sends, JSON serialization of the data and cookie headers.
//! This library hosts it on wasmtime and supplies its two capabilities: a [`SqlDriver`] (production:
//! [`PostgresDriver`], pooled tokio-postgres) and an [`EntropySource`] (production: [`OsEntropy`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasm_sessions::{PostgresDriver, PostgresOptions, SessionStore};
//!
//! let driver = PostgresDriver::connect("postgres://postgres@127.0.0.1/test", &PostgresOptions::default())?;
//! driver.migrate().await?;
//! let store = SessionStore::builder(driver).build().await?;
//!
//! let mut session = store.new_session(store.config().max_age).await?;
//! session.set("theme", "dark");
//! store.save(&mut session).await?;
//! let cookie = store.set_cookie_header(&session, true).await?;
//! let loaded = store.load(&session.id).await?;
//! assert_eq!(loaded.get("theme"), Some("dark"));
//! # let _ = cookie; Ok(()) }
//! ```

mod bindings;
mod convert;
mod driver;
mod entropy;
mod error;
mod host;
mod inspect;
#[cfg(feature = "tower")]
mod layer;
mod postgres;
mod session;
mod store;

pub use driver::{QueryFuture, RowSet, SqlDriver, SqlError, SqlValue};
pub use entropy::{EntropyError, EntropySource, OsEntropy};
pub use error::{BuildError, StoreError};
pub use inspect::{ComponentWorld, component_world};
#[cfg(feature = "tower")]
pub use layer::{MissingSessionLayer, SessionHandle, SessionLayer, SessionService};
pub use postgres::{PostgresDriver, PostgresError, PostgresOptions};
pub use session::{Concurrency, Config, SameSite, Session, UserSession};
pub use store::{
    BUNDLED_COMPONENT, CleanupProgress, DEFAULT_CLEANUP_BATCH, DEFAULT_FUEL_PER_CALL,
    GUEST_MEMORY_LIMIT, InstanceStats, Isolation, SessionStore, SessionStoreBuilder,
};
