//! Builds the guest component (`../guest`) and hands its path to the library as
//! `WASM_SESSIONS_GUEST_COMPONENT` (see the `wasm-build` crate for how).

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace");
    let component = wasm_build::build_component(
        &root.join("guest"),
        "wasm_sessions_guest",
        &[root.join("wit")],
    );
    println!(
        "cargo:rustc-env=WASM_SESSIONS_GUEST_COMPONENT={}",
        component.display()
    );
}
