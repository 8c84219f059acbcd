//! A hostile implementation of the `session-store` world, for the host's sandbox-limit tests.
//!
//! - `generate-session-id` spins forever (stopped by the per-call fuel limit);
//! - `new-session` allocates without bound (stopped by the memory limit);
//! - `is-expired` panics (a trap);
//! - `default-config` and `validate-config` behave, so a store can be built and keep serving.
//!   Every other export answers `unexpected-result`.

mod bindings {
    wit_bindgen::generate!({ path: "../../wit", world: "session-store" });
}

use bindings::exports::wasm_sessions::store::store::{
    Concurrency, Config, Guest, SameSite, Session, StoreError, UserSession,
};

struct Hostile;

fn refuse<T>() -> Result<T, StoreError> {
    Err(StoreError::UnexpectedResult(
        "the misbehaving guest does not do this".into(),
    ))
}

impl Guest for Hostile {
    fn default_config() -> Config {
        Config {
            cookie_name: "misbehaving".into(),
            max_age: 60,
            http_only: true,
            secure: None,
            same_site: SameSite::Strict,
            domain: None,
            path: "/".into(),
            idle_timeout: None,
            max_data_bytes: 1024,
            concurrency: Concurrency::Optimistic,
        }
    }

    fn validate_config(_: Config) -> Result<(), StoreError> {
        Ok(())
    }

    fn generate_session_id() -> String {
        let mut counter: u64 = 0;
        loop {
            counter = std::hint::black_box(counter.wrapping_add(1));
        }
    }

    fn new_session(_: Config, _: i64) -> Result<Session, StoreError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![1; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }

    fn is_expired(_: Session) -> bool {
        panic!("a guest bug")
    }

    fn regenerate_id(_: Config, _: Session) -> Result<Session, StoreError> {
        refuse()
    }

    fn save(_: Config, _: Session) -> Result<Session, StoreError> {
        refuse()
    }

    fn load(_: Config, _: String) -> Result<Session, StoreError> {
        refuse()
    }

    fn delete(_: String) -> Result<bool, StoreError> {
        refuse()
    }

    fn cleanup() -> Result<u64, StoreError> {
        refuse()
    }

    fn cleanup_batch(_: i64, _: u32) -> Result<u64, StoreError> {
        refuse()
    }

    fn count_expired(_: i64) -> Result<u64, StoreError> {
        refuse()
    }

    fn get_user_sessions(_: i64) -> Result<Vec<UserSession>, StoreError> {
        refuse()
    }

    fn delete_user_sessions(_: i64) -> Result<u64, StoreError> {
        refuse()
    }

    fn delete_user_sessions_except(_: i64, _: String) -> Result<u64, StoreError> {
        refuse()
    }

    fn revoke_session(_: String) -> Result<bool, StoreError> {
        refuse()
    }

    fn set_cookie_header(_: Config, _: Session, _: bool) -> Result<String, StoreError> {
        refuse()
    }

    fn removal_cookie_header(_: Config, _: bool) -> Result<String, StoreError> {
        refuse()
    }

    fn session_id_from_cookie_header(_: Config, _: String) -> Option<String> {
        None
    }
}

bindings::export!(Hostile with_types_in bindings);
