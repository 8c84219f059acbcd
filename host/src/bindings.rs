//! The generated bindings for the `session-store` world; nothing outside this crate sees them.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "session-store",
    imports: {
        // Entropy is synchronous, and a host that cannot provide it stops the call (a trap).
        "wasm-sessions:store/entropy.random-bytes": trappable,
        default: async,
    },
    exports: { default: async },
});
