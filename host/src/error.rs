//! The errors of the host library.

use crate::driver::SqlError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The token or handle is malformed; no SQL was sent.
    #[error("invalid session id: {0}")]
    InvalidId(String),
    /// No session has that token.
    #[error("session not found")]
    NotFound,
    /// The session has expired; its data is not returned.
    #[error("session expired")]
    Expired,
    /// The configuration breaks a rule a browser or the store enforces.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The session data or an argument cannot be stored.
    #[error("invalid session data: {0}")]
    InvalidData(String),
    /// The database failed.
    #[error("database error")]
    Database(#[source] SqlError),
    /// Another writer saved the session since this copy was loaded (optimistic concurrency); reload it
    /// and reapply the change. Nothing was written.
    #[error("the session was changed by another request; reload it and retry")]
    Conflict,
    /// The database answered with something the guest did not expect.
    #[error("unexpected database result: {0}")]
    UnexpectedResult(String),
    /// The guest used up the fuel one call may burn (it looped or worked far too long) and was stopped.
    /// The host keeps serving other calls.
    #[error("the session component was stopped: it exceeded its per-call fuel")]
    FuelExhausted,
    /// The guest tried to grow its memory past the limit and was stopped. The host keeps serving other
    /// calls.
    #[error(
        "the session component was stopped: it asked for {desired} bytes of memory, the limit is {limit}"
    )]
    MemoryLimit {
        /// The memory size the guest asked for, in bytes.
        desired: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The guest could not be instantiated, trapped, or returned a value the host cannot represent. The
    /// host keeps serving other calls.
    #[error("the session component failed")]
    Guest(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    /// Sorts a failed guest call: the sandbox limits get their own variants, anything else is `Guest`.
    pub(crate) fn guest(error: wasmtime::Error) -> Self {
        if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) {
            return StoreError::FuelExhausted;
        }
        if let Some(limit) = error.downcast_ref::<crate::host::MemoryLimitExceeded>() {
            return StoreError::MemoryLimit {
                desired: limit.desired,
                limit: limit.limit,
            };
        }
        StoreError::Guest(error.into_boxed_dyn_error())
    }
}

/// Why a [`SessionStore`](crate::SessionStore) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The wasmtime engine could not be configured.
    #[error("could not configure the WebAssembly engine")]
    Engine(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The component is not valid or does not match the `session-store` world.
    #[error("could not load the session component")]
    Component(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The configuration was rejected by the guest.
    #[error("invalid configuration")]
    Config(#[source] StoreError),
}

impl BuildError {
    pub(crate) fn engine(error: wasmtime::Error) -> Self {
        BuildError::Engine(error.into_boxed_dyn_error())
    }
    pub(crate) fn component(error: wasmtime::Error) -> Self {
        BuildError::Component(error.into_boxed_dyn_error())
    }
}
