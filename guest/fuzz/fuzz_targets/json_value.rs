//! Any string as a session data value: the JSON check never panics, an accepted value is copied as the
//! same JSON in compact form, and a value with a NUL character is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_sessions_guest::fuzzing;

fuzz_target!(|value: &str| {
    fuzzing::json_value(value);
});
