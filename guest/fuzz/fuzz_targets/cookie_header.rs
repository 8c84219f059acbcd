//! Any `Cookie` header, under the default and an arbitrary cookie name: no panic, and a token found is
//! well formed and taken from the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_sessions_guest::fuzzing;

fuzz_target!(|input: (&str, &str)| {
    let (name, header) = input;
    fuzzing::cookie_header("varel_session", header);
    fuzzing::cookie_header(name, header);
});
