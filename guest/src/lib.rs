//! The session store component: the `store` interface of `wit/store.wit`, built for wasm32-wasip2.
//!
//! This file is glue only: it binds the WIT world and delegates each export to the modules below.
#![deny(unsafe_op_in_unsafe_fn)]

mod clock;
mod config;
mod cookie;
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
    Config, Guest, Session, StoreError, UserSession,
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

    fn generate_session_id() -> String {
        match token::generate() {
            Ok(token) => token,
            // This export has no error channel, and a token not made of exactly 32 host bytes must
            // never be handed out: trap instead.
            Err(_) => std::process::abort(),
        }
    }

    fn new_session(config: Config, max_age: i64) -> Result<Session, StoreError> {
        session::check_max_age(max_age)?;
        session::new_session(
            token::generate()?,
            max_age,
            config.idle_timeout,
            clock::now_micros(),
        )
    }

    fn is_expired(session: Session) -> bool {
        session::is_expired(session.expires_at, clock::now_micros())
    }

    fn regenerate_id(config: Config, session: Session) -> Result<Session, StoreError> {
        store::regenerate_id(&config, session, clock::now_micros(), token::generate)
    }

    fn save(config: Config, session: Session) -> Result<Session, StoreError> {
        store::save(&config, session, clock::now_micros())
    }

    fn load(config: Config, id: String) -> Result<Session, StoreError> {
        store::load(&config, id, clock::now_micros())
    }

    fn delete(id: String) -> Result<bool, StoreError> {
        store::delete(&id)
    }

    fn cleanup() -> Result<u64, StoreError> {
        store::cleanup(clock::now_micros())
    }

    fn cleanup_batch(cutoff: i64, limit: u32) -> Result<u64, StoreError> {
        store::cleanup_batch(cutoff, limit)
    }

    fn count_expired(cutoff: i64) -> Result<u64, StoreError> {
        store::count_expired(cutoff)
    }

    fn get_user_sessions(user_id: i64) -> Result<Vec<UserSession>, StoreError> {
        store::user_sessions(user_id, clock::now_micros())
    }

    fn delete_user_sessions(user_id: i64) -> Result<u64, StoreError> {
        store::delete_user_sessions(user_id)
    }

    fn delete_user_sessions_except(user_id: i64, keep_id: String) -> Result<u64, StoreError> {
        store::delete_user_sessions_except(user_id, &keep_id)
    }

    fn revoke_session(handle: String) -> Result<bool, StoreError> {
        store::revoke(&handle)
    }

    fn set_cookie_header(
        config: Config,
        session: Session,
        request_is_secure: bool,
    ) -> Result<String, StoreError> {
        cookie::set_cookie(
            &config,
            &session.id,
            session.absolute_expires_at,
            clock::now_micros(),
            request_is_secure,
        )
    }

    fn removal_cookie_header(
        config: Config,
        request_is_secure: bool,
    ) -> Result<String, StoreError> {
        cookie::removal_cookie(&config, request_is_secure)
    }

    fn session_id_from_cookie_header(config: Config, header: String) -> Option<String> {
        cookie::session_id_from_header(&config.cookie_name, &header)
    }
}

#[cfg(target_arch = "wasm32")]
bindings::export!(Component with_types_in bindings);
