//! The host's clock (the `clock` import): every expiry decision is taken against it.
//!
//! The component has no clock of its own (no WASI): it asks the host once per export call and passes the
//! time down as an argument, so everything below the glue in `lib.rs` is a pure function of `now`.

/// The current time as microseconds since 1970-01-01T00:00:00Z, as the host reads it.
pub fn now() -> i64 {
    crate::bindings::wasm_sessions::store::clock::now()
}
