//! Any string as a token or a handle: validation agrees with the definition and never echoes the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_sessions_guest::fuzzing;

fuzz_target!(|id: &str| {
    fuzzing::ids(id);
});
