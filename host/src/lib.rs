//! Server-side HTTP sessions whose logic runs as a sandboxed WebAssembly component.
//!
//! The guest component (`guest/`, bundled as [`BUNDLED_COMPONENT`]) owns the session policy: token
//! generation, expiry, validation, the SQL it sends, the data's JSON and cookie headers. This library
//! hosts it on wasmtime and grants it exactly three capabilities, nothing else (no WASI): running the SQL
//! statements it declared through a [`SqlDriver`] (production: [`PostgresDriver`], pooled
//! tokio-postgres, as a role that can only read and write the sessions table), entropy from an
//! [`EntropySource`] (production: [`OsEntropy`]), and the time from a [`Clock`] (production:
//! [`SystemClock`]; tests: [`ManualClock`]). Every call runs within a deadline.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use wasm_sessions::{PostgresDriver, PostgresOptions, SessionStore};
//!
//! let driver = PostgresDriver::connect("postgres://wasm_sessions_runtime@127.0.0.1/test", &PostgresOptions::default())?;
//! let store = SessionStore::builder(driver).build().await?;
//!
//! let mut session = store.new_session().await?;
//! session.insert("theme", "dark")?;
//! session.insert("visits", 1)?;
//! store.save(&mut session).await?;
//! let cookie = store.cookie_header(&session).await?;
//! let loaded = store.load(session.id()).await?;
//! assert_eq!(loaded.get::<u32>("visits")?, Some(1));
//! # let _ = cookie; Ok(()) }
//! ```

mod bindings;
mod clock;
#[doc(hidden)]
pub mod conformance;
mod convert;
mod driver;
mod entropy;
mod error;
mod host;
mod inspect;
#[cfg(feature = "tower")]
mod layer;
mod postgres;
mod role;
mod session;
#[cfg(feature = "sqlx")]
mod sqlx;
mod store;

#[cfg(feature = "sqlx")]
pub use self::sqlx::SqlxDriver;
pub use clock::{Clock, ManualClock, SystemClock};
pub use driver::{
    PrepareFuture, QueryFuture, RowSet, SqlDriver, SqlError, SqlValue, is_data_statement,
};
pub use entropy::{EntropyError, EntropySource, OsEntropy};
pub use error::{BuildError, HttpAnswer, StoreError};
pub use inspect::{CONTRACT, ComponentWorld, component_world};
#[cfg(feature = "tower")]
pub use layer::{MissingSessionLayer, SessionHandle, SessionLayer, SessionService};
pub use postgres::{PostgresDriver, PostgresError, PostgresOptions, StatementMode};
pub use role::{DEFAULT_RUNTIME_ROLE, RoleError, RuntimeRole, SESSIONS_SCHEMA, SESSIONS_TABLE};
pub use session::{Concurrency, Config, Expiry, SameSite, Session, UserSession};
pub use store::{
    BUNDLED_COMPONENT, CleanupProgress, DEFAULT_CALL_TIMEOUT, DEFAULT_CLEANUP_BATCH,
    GUEST_MEMORY_LIMIT, InstanceStats, Isolation, MAX_CLEANUP_BATCH, SessionStore,
    SessionStoreBuilder,
};
