//! The component the library ships (`host/component/session-store.wasm`, `BUNDLED_COMPONENT`) is exactly
//! what the sources build to: `tests/build.rs` builds `guest/` with the pinned compiler
//! (`rust-toolchain.toml`), paths remapped, and this test compares the bytes. So a change to `guest/` or
//! `wit/` that is not shipped, or a shipped file that no source produced, fails here.
//!
//! After changing the guest or the WIT, refresh the shipped file and commit it:
//! `WASM_SESSIONS_UPDATE_COMPONENT=1 cargo test --workspace --test shipped_component`.

use std::path::{Path, PathBuf};

use wasm_sessions::BUNDLED_COMPONENT;

const REBUILT: &[u8] = include_bytes!(env!("REBUILT_GUEST_COMPONENT"));

fn shipped_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/component/session-store.wasm")
}

#[test]
fn the_shipped_component_is_what_the_sources_build_to() {
    if BUNDLED_COMPONENT == REBUILT {
        return;
    }
    let update = std::env::var("WASM_SESSIONS_UPDATE_COMPONENT").is_ok_and(|v| v == "1");
    if update {
        std::fs::write(shipped_path(), REBUILT).expect("write the shipped component");
        eprintln!(
            "wrote {} ({} bytes); rebuild and run the tests again, then commit it",
            shipped_path().display(),
            REBUILT.len()
        );
        return;
    }
    let first_difference = BUNDLED_COMPONENT
        .iter()
        .zip(REBUILT)
        .position(|(a, b)| a != b)
        .unwrap_or(BUNDLED_COMPONENT.len().min(REBUILT.len()));
    panic!(
        "host/component/session-store.wasm ({} bytes) is not what guest/ builds to ({} bytes, built with \
         {}; first difference at byte {first_difference}). The library ships that file: after changing \
         guest/ or wit/, run `WASM_SESSIONS_UPDATE_COMPONENT=1 cargo test --workspace --test \
         shipped_component` and commit it. With another compiler than rust-toolchain.toml's, the bytes \
         differ anyway: use the pinned one.",
        BUNDLED_COMPONENT.len(),
        REBUILT.len(),
        env!("GUEST_RUSTC_VERSION"),
    );
}
