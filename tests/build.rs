//! Builds the deliberately misbehaving component (`misbehaving-guest/`) for the sandbox-limit tests and
//! hands its path to them as `MISBEHAVING_GUEST_COMPONENT`.

use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("tests/ sits in the workspace");
    let component = wasm_build::build_component(
        &manifest_dir.join("misbehaving-guest"),
        "misbehaving_guest",
        &[root.join("wit")],
    );
    println!(
        "cargo:rustc-env=MISBEHAVING_GUEST_COMPONENT={}",
        component.display()
    );
}
