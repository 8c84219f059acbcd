//! The errors of the host library, and the one table that maps a [`StoreError`] to an HTTP answer.

use std::path::PathBuf;

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
    /// The session data or an argument cannot be stored (size, NUL characters, lifetime).
    #[error("invalid session data: {0}")]
    InvalidData(String),
    /// A value could not be serialized to JSON, or a stored value does not deserialize as the type asked
    /// for.
    #[error("session value does not fit the type")]
    InvalidValue(#[source] serde_json::Error),
    /// The database failed.
    #[error("database error")]
    Database(#[source] SqlError),
    /// Another request changed what this copy read or wrote since it was loaded (see
    /// [`Concurrency`](crate::Concurrency)); reload it and reapply the change. Nothing was written.
    #[error("the session was changed by another request; reload it and retry")]
    Conflict,
    /// The database answered with something the guest did not expect.
    #[error("unexpected database result: {0}")]
    UnexpectedResult(String),
    /// The call ran past its deadline (guest work and database time together) and was stopped; its
    /// instance was discarded. The host keeps serving other calls.
    #[error("the session call did not finish within its deadline of {0:?}")]
    DeadlineExceeded(std::time::Duration),
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

/// How an HTTP service answers a [`StoreError`]: written once, used by the tower layer, the JSON API and
/// the demo app alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpAnswer {
    /// The HTTP status code.
    pub status: u16,
    /// A stable machine-readable code (`snake_case`), e.g. `not_found`.
    pub code: &'static str,
    /// Whether the error's own message may be shown to the client (client errors); otherwise show
    /// [`HttpAnswer::public_message`] and keep the details in the server's log.
    pub show_details: bool,
    /// A message safe to show to anyone.
    pub public_message: &'static str,
}

impl StoreError {
    /// The HTTP answer for this error (one table for every HTTP entry point).
    #[must_use]
    pub fn http_answer(&self) -> HttpAnswer {
        let (status, code, show_details, public_message) = match self {
            StoreError::InvalidId(_) => (400, "invalid_id", true, "invalid session id"),
            StoreError::InvalidData(_) => (400, "invalid_data", true, "invalid session data"),
            StoreError::NotFound => (404, "not_found", true, "session not found"),
            StoreError::Conflict => (409, "conflict", true, "the session was changed meanwhile"),
            StoreError::Expired => (410, "expired", true, "session expired"),
            StoreError::Database(SqlError::ConnectionFailed(_)) => (
                503,
                "database_unavailable",
                false,
                "the database is unavailable",
            ),
            StoreError::DeadlineExceeded(_) => (
                503,
                "timeout",
                false,
                "the session store did not answer in time",
            ),
            StoreError::Database(_) => (500, "database_error", false, "database error"),
            StoreError::InvalidConfig(_)
            | StoreError::InvalidValue(_)
            | StoreError::UnexpectedResult(_)
            | StoreError::MemoryLimit { .. }
            | StoreError::Guest(_) => (500, "internal", false, "internal error"),
        };
        HttpAnswer {
            status,
            code,
            show_details,
            public_message,
        }
    }

    /// The message an HTTP client may see: the error itself for client errors, a generic text otherwise.
    #[must_use]
    pub fn public_message(&self) -> String {
        let answer = self.http_answer();
        if answer.show_details {
            self.to_string()
        } else {
            answer.public_message.to_owned()
        }
    }

    /// Sorts a failed guest call: the sandbox limits get their own variants, anything else is `Guest`.
    pub(crate) fn guest(error: wasmtime::Error, deadline: std::time::Duration) -> Self {
        if error
            .downcast_ref::<crate::host::DeadlinePassed>()
            .is_some()
        {
            return StoreError::DeadlineExceeded(deadline);
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
    /// The compilation cache directory cannot be used safely: wasmtime maps cached code as executable
    /// without verifying it, so a directory another user can write to would let them run code outside
    /// the sandbox.
    #[error("refusing the compilation cache directory {}: {reason}", path.display())]
    UnsafeCacheDir {
        /// The directory (or the ancestor) that failed the check.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// The component is not valid or does not match the `session-store` world.
    #[error("could not load the session component")]
    Component(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The component implements another version of the contract than this host
    /// ([`CONTRACT`](crate::CONTRACT)), or imports an interface this host does not provide.
    #[error("incompatible session component: {0}")]
    Contract(String),
    /// The component declares statements the host will not record (too many, too long, or not data
    /// statements).
    #[error("the component's declared statements are refused: {0}")]
    Statements(String),
    /// The configuration was rejected by the guest, or a call during the build failed.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_one_http_answer_and_server_errors_hide_their_details() {
        let cases = [
            (StoreError::InvalidId("x".into()), 400, "invalid_id"),
            (StoreError::InvalidData("x".into()), 400, "invalid_data"),
            (StoreError::NotFound, 404, "not_found"),
            (StoreError::Conflict, 409, "conflict"),
            (StoreError::Expired, 410, "expired"),
            (
                StoreError::Database(SqlError::ConnectionFailed("10.0.0.1 down".into())),
                503,
                "database_unavailable",
            ),
            (
                StoreError::DeadlineExceeded(std::time::Duration::from_secs(1)),
                503,
                "timeout",
            ),
            (
                StoreError::Database(SqlError::QueryFailed("secret detail".into())),
                500,
                "database_error",
            ),
            (StoreError::UnexpectedResult("x".into()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let answer = error.http_answer();
            assert_eq!((answer.status, answer.code), (status, code), "{error:?}");
            if status >= 500 {
                assert!(!error.public_message().contains("secret"));
                assert!(!error.public_message().contains("10.0.0.1"));
            } else {
                assert_eq!(error.public_message(), error.to_string());
            }
        }
    }
}
