//! The library half of the `wasm-sessions` CLI: the HTTP service behind `wasm-sessions serve` (a JSON API
//! over the session store, documented at `/openapi.json`, and a small server-rendered demo app built on
//! [`wasm_sessions::SessionLayer`]), and the one JSON [`view`] of a session that the API and the CLI's
//! `--json` output share.
//!
//! The binary's commands live in the binary target; this library exists so that the service's tests can
//! drive [`serve::router`] without a socket, and so that both front ends print sessions alike.

pub mod serve;
pub mod view;
