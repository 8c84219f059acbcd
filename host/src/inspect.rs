//! What a session component imports and exports, read from its binary (no wasm tools needed).

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::BuildError;

/// The names of a component's imports and exports, as the component model sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentWorld {
    /// Imported interfaces, e.g. `wasm-sessions:store/sql@0.1.0`, `wasi:clocks/wall-clock@0.2.x`.
    pub imports: Vec<String>,
    /// Exported interfaces, e.g. `wasm-sessions:store/store@0.1.0`.
    pub exports: Vec<String>,
}

/// Reads the imports and exports of the component in `bytes` (e.g. [`BUNDLED_COMPONENT`](crate::BUNDLED_COMPONENT)).
///
/// # Errors
/// [`BuildError::Component`] when `bytes` is not a valid component.
pub fn component_world(bytes: &[u8]) -> Result<ComponentWorld, BuildError> {
    let engine = Engine::default();
    let component = Component::new(&engine, bytes).map_err(BuildError::component)?;
    let ty = component.component_type();
    let imports = ty
        .imports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports = ty
        .exports(&engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    Ok(ComponentWorld { imports, exports })
}
