//! The HTTP service behind `wasm-sessions serve`: a JSON API over the session store (documented at
//! `/openapi.json`) and a small server-rendered demo app built on [`wasm_sessions::SessionLayer`].
//!
//! The binary's other commands live in the binary target; this library exists so that the service's
//! tests can drive [`serve::router`] without a socket.

pub mod serve;
