//! Compiles a guest crate to a component from a build script, so `cargo build` / `cargo test` need no
//! manual step: a `wasm32-unknown-unknown` core module (std without WASI, so it imports only what its WIT
//! world imports), turned into a component by `wit-component` from the component type that
//! `wit_bindgen::generate!` embeds in the module.
//!
//! As wasmtime's own `crates/test-programs/artifacts/build.rs` does: a nested cargo with its own target
//! directory (sharing ours would deadlock on the build lock), without the outer build's RUSTFLAGS (coverage
//! or sanitizer flags break the wasm build), and rerun-if-changed from the nested build's dep-info. Paths
//! are remapped, so the bytes depend only on the sources and the compiler (the host crate ships the
//! component it produces, and a test rebuilds it and compares).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

/// Builds the `cdylib` crate in `crate_dir` for `wasm32-unknown-unknown` (release profile) into a target
/// directory of its own under `OUT_DIR`, turns the core module `<artifact>.wasm` into a component
/// written next to it as `<artifact>.component.wasm`, tells cargo to rerun the calling build script when
/// any of its sources or `watch` paths change, and returns the component's path.
///
/// # Panics
/// When the target cannot be installed, the build fails or the module cannot be made a component: a
/// build script has no other way to fail.
#[must_use]
pub fn build_component(crate_dir: &Path, artifact: &str, watch: &[PathBuf]) -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir.join(format!("{artifact}-target"));

    for path in ["Cargo.toml", "Cargo.lock", "src"] {
        println!("cargo:rerun-if-changed={}", crate_dir.join(path).display());
    }
    for path in watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    ensure_target_installed();

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
        "CARGO_LLVM_COV_TARGET_DIR",
        "LLVM_PROFILE_FILE",
    ] {
        build.env_remove(var);
    }
    build.env("CARGO_ENCODED_RUSTFLAGS", reproducible_flags(crate_dir));
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build a component: {e}"));
    assert!(
        status.success(),
        "building the component in {} failed",
        crate_dir.display()
    );

    let release = target_dir.join(TARGET).join("release");
    let module = release.join(format!("{artifact}.wasm"));
    let core = std::fs::read(&module)
        .unwrap_or_else(|e| panic!("the build did not produce {}: {e}", module.display()));
    let component = release.join(format!("{artifact}.component.wasm"));
    std::fs::write(&component, componentize(&core, &module))
        .unwrap_or_else(|e| panic!("could not write {}: {e}", component.display()));
    emit_dep_info(&release.join(format!("{artifact}.d")));
    component
}

/// Flags that keep machine paths out of the module (panic locations name source files), so the same
/// sources and compiler give the same bytes in any checkout and on any machine: the guest's directory
/// becomes `/guest`, cargo's home (the registry's sources) `/cargo`. Joined by 0x1f as
/// `CARGO_ENCODED_RUSTFLAGS` wants.
fn reproducible_flags(crate_dir: &Path) -> String {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let mut flags = vec![format!(
        "--remap-path-prefix={}=/guest",
        crate_dir.display()
    )];
    if let Some(home) = cargo_home {
        flags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    flags.join("\x1f")
}

/// Turns a core module (built with `wit_bindgen::generate!`, which embeds the component type) into a
/// validated component. `path` names the module in the panic message.
fn componentize(core: &[u8], path: &Path) -> Vec<u8> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("could not make {} a component: {e:?}", path.display()))
}

/// `rust-toolchain.toml` names the target, but rustup does not install it when auto-install is off.
fn ensure_target_installed() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if sysroot.is_some_and(|root| root.join("lib/rustlib").join(TARGET).exists()) {
        return;
    }
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        _ => panic!(
            "the {TARGET} target is missing and `rustup target add {TARGET}` failed; install it and rebuild"
        ),
    }
}

/// Re-runs this script when any source file of the guest build changes.
fn emit_dep_info(path: &Path) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let Some((_, deps)) = text.split_once(": ") else {
        return;
    };
    // Paths are separated by spaces; a space inside a path is escaped as `\ `.
    let mut current = String::new();
    let mut chars = deps.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&' ') => {
                current.push(' ');
                chars.next();
            }
            ' ' | '\n' => {
                if !current.is_empty() {
                    println!("cargo:rerun-if-changed={current}");
                    current.clear();
                }
            }
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        println!("cargo:rerun-if-changed={current}");
    }
}
