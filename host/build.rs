//! Builds the guest component (`../guest`) for `wasm32-wasip2` and hands its path to the library as
//! `WASM_SESSIONS_GUEST_COMPONENT`, so `cargo build` / `cargo test` need no manual step.
//!
//! As wasmtime's own `crates/test-programs/artifacts/build.rs` does: a nested cargo with its own target
//! directory (sharing ours would deadlock on the build lock), without the outer build's RUSTFLAGS (coverage
//! or sanitizer flags break the wasm build), and rerun-if-changed from the nested build's dep-info.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("host/ sits in the workspace");
    let guest = root.join("guest");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir.join("guest-target");

    for path in ["guest/Cargo.toml", "guest/Cargo.lock", "guest/src", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
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
        .arg(guest.join("Cargo.toml"))
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
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the guest: {e}"));
    assert!(status.success(), "building the guest component failed");

    let release = target_dir.join(TARGET).join("release");
    let component = release.join("wasm_sessions_guest.wasm");
    assert!(
        component.exists(),
        "the guest build did not produce {}",
        component.display()
    );
    emit_dep_info(&release.join("wasm_sessions_guest.d"));
    println!(
        "cargo:rustc-env=WASM_SESSIONS_GUEST_COMPONENT={}",
        component.display()
    );
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
