//! Builds the guest components from their sources for the tests: the deliberately misbehaving one
//! (`misbehaving-guest/`) for the sandbox-limit tests, as `MISBEHAVING_GUEST_COMPONENT`, and the session
//! store (`../guest`) as `REBUILT_GUEST_COMPONENT`, which `tests/shipped_component.rs` compares with the
//! component the library ships (`host/component/session-store.wasm`). The compiler that built them is
//! `GUEST_RUSTC_VERSION` (`rustc --version`), for that test's message.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ sits in the workspace");
    let watch = [root.join("wit")];
    let misbehaving = wasm_build::build_component(
        &manifest_dir.join("misbehaving-guest"),
        "misbehaving_guest",
        &watch,
    );
    println!(
        "cargo:rustc-env=MISBEHAVING_GUEST_COMPONENT={}",
        misbehaving.display()
    );
    let store = wasm_build::build_component(&root.join("guest"), "wasm_sessions_guest", &watch);
    println!(
        "cargo:rustc-env=REBUILT_GUEST_COMPONENT={}",
        store.display()
    );
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=GUEST_RUSTC_VERSION={version}");
}
