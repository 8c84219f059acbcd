//! No code: this crate only unifies dependency features between the main build and the test build (see
//! its `Cargo.toml`).
