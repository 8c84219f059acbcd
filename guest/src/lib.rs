//! The session store component: the `store` interface of `wit/store.wit`, built for
//! `wasm32-unknown-unknown` (no WASI: the component imports only `sql`, `entropy` and `clock`).
//!
//! This file is glue only: it binds the WIT world and delegates each export to the modules below, reading
//! the host's clock once per call and passing the time down, so the policy code stays pure and testable.
#![deny(unsafe_op_in_unsafe_fn)]

mod clock;
mod config;
mod cookie;
mod data;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod session;
mod store;
mod token;

/// Bindings generated from `wit/store.wit` (world `session-store`).
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "session-store",
    });
}

use bindings::exports::wasm_sessions::store::store::{
    CommitOutcome, CommitRequest, Config, Expiry, Guest, RequestSession, Session, StoreError,
    UserSession,
};

/// The exported component.
// Only the wasm build exports it: a native build (unit tests, fuzzing) links the policy code alone.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl Guest for Component {
    fn default_config() -> Config {
        config::default_config()
    }

    fn validate_config(config: Config) -> Result<(), StoreError> {
        config::validate(&config)
    }

    fn statements() -> Vec<String> {
        store::statements()
    }

    fn generate_session_id() -> Result<String, StoreError> {
        token::generate()
    }

    fn new_session(config: Config, expiry: Option<Expiry>) -> Result<Session, StoreError> {
        session::new_session(&config, expiry, token::generate, clock::now())
    }

    fn load(config: Config, id: String) -> Result<Session, StoreError> {
        store::load(&config, id, clock::now())
    }

    fn load_from_cookie(
        config: Config,
        cookie_header: String,
    ) -> Result<RequestSession, StoreError> {
        store::load_from_cookie(&config, &cookie_header, clock::now(), token::generate)
    }

    fn commit(config: Config, request: CommitRequest) -> Result<CommitOutcome, StoreError> {
        store::commit(&config, request, clock::now(), token::generate)
    }

    fn delete(id: String) -> Result<bool, StoreError> {
        store::delete(&id)
    }

    fn cleanup_batch(cutoff: i64, limit: u32) -> Result<u64, StoreError> {
        store::cleanup_batch(cutoff, limit)
    }

    fn count_expired(cutoff: i64) -> Result<u64, StoreError> {
        store::count_expired(cutoff)
    }

    fn get_user_sessions(user_id: i64) -> Result<Vec<UserSession>, StoreError> {
        store::user_sessions(user_id, clock::now())
    }

    fn delete_user_sessions(user_id: i64) -> Result<u64, StoreError> {
        store::delete_user_sessions(user_id)
    }

    fn delete_user_sessions_except(user_id: i64, keep_id: String) -> Result<u64, StoreError> {
        store::delete_user_sessions_except(user_id, &keep_id)
    }

    fn revoke_session(user_id: i64, handle: String) -> Result<bool, StoreError> {
        store::revoke(user_id, &handle)
    }

    fn cookie_header(config: Config, session: Session) -> Result<String, StoreError> {
        cookie::set_cookie(&config, &session, clock::now())
    }

    fn removal_cookie_header(config: Config) -> String {
        cookie::removal_cookie(&config)
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
