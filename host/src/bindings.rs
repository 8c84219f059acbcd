//! The generated bindings for the `session-store` world; nothing outside this crate sees them.

wasmtime::component::bindgen!({
    path: "wit",
    world: "session-store",
    imports: {
        // SQL waits on the database: async, so a waiting guest holds no runtime thread.
        "wasm-sessions:store/sql.sql-query": async,
        // Entropy is synchronous, and a host that cannot provide it stops the call (a trap). The clock
        // is a plain synchronous read (the default).
        "wasm-sessions:store/entropy.random-bytes": trappable,
    },
    exports: { default: async },
});
