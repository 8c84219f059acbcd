//! Any configuration: validation never panics, and a valid one renders, for every expiry mode, a
//! `Set-Cookie` header that parses back to the same cookie.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasm_sessions_guest::fuzzing::{self, RawConfig};

#[derive(Debug, Arbitrary)]
struct Input {
    cookie_name: String,
    max_age: i64,
    http_only: bool,
    secure: bool,
    same_site: u8,
    domain: Option<String>,
    path: String,
    idle_timeout: Option<i64>,
    max_data_bytes: u32,
}

fuzz_target!(|input: Input| {
    let raw = RawConfig {
        cookie_name: input.cookie_name,
        max_age: input.max_age,
        http_only: input.http_only,
        secure: input.secure,
        same_site: input.same_site,
        domain: input.domain,
        path: input.path,
        idle_timeout: input.idle_timeout,
        max_data_bytes: input.max_data_bytes,
    };
    fuzzing::config(raw);
});
