//! What a session component imports and exports, read from its binary (no wasm tools needed).

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::BuildError;

/// The contract's version, written once: [`CONTRACT`] and the interface names below are built from it.
macro_rules! contract_version {
    () => {
        "0.2.0"
    };
}

/// The WIT package this host implements (`wit/store.wit`). A component is accepted when it exports the
/// `store` interface of exactly this version and imports nothing but its `sql`, `entropy` and `clock`
/// interfaces of this version. The version rule is in `wit/store.wit`.
pub const CONTRACT: &str = concat!("wasm-sessions:store@", contract_version!());

/// The exported `store` interface's full name, e.g. for looking up an export by name.
pub(crate) const STORE_INTERFACE: &str = concat!("wasm-sessions:store/store@", contract_version!());

/// The package's name, without the version.
const PACKAGE: &str = "wasm-sessions:store";

/// The version part of [`CONTRACT`].
const VERSION: &str = contract_version!();

/// The interfaces the host provides, by name within the package.
const PROVIDED: [&str; 3] = ["sql", "entropy", "clock"];

/// The names of a component's imports and exports, as the component model sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentWorld {
    /// Imported interfaces, e.g. `wasm-sessions:store/sql@0.1.0`, `wasi:clocks/wall-clock@0.2.x`.
    pub imports: Vec<String>,
    /// Exported interfaces, e.g. `wasm-sessions:store/store@0.1.0`.
    pub exports: Vec<String>,
}

impl ComponentWorld {
    /// The version of the contract the component implements: the version of its exported
    /// `wasm-sessions:store/store` interface, if it exports one.
    #[must_use]
    pub fn contract_version(&self) -> Option<&str> {
        self.exports
            .iter()
            .find_map(|name| name.strip_prefix(PACKAGE)?.strip_prefix("/store@"))
    }
}

/// Refuses a component whose contract this host does not implement, naming both versions or the
/// interface it cannot supply.
pub(crate) fn check_contract(world: &ComponentWorld) -> Result<(), BuildError> {
    let version = VERSION;
    let Some(found) = world.contract_version() else {
        return Err(BuildError::Contract(format!(
            "the component does not export {PACKAGE}/store (its exports: {}); this host implements {CONTRACT}",
            list(&world.exports)
        )));
    };
    if found != version {
        return Err(BuildError::Contract(format!(
            "the component implements {PACKAGE}@{found}; this host implements {CONTRACT} (the contract's \
             version must match exactly: see the version rule in wit/store.wit)"
        )));
    }
    for import in &world.imports {
        let provided = PROVIDED
            .iter()
            .any(|name| *import == format!("{PACKAGE}/{name}@{version}"));
        if !provided {
            return Err(BuildError::Contract(format!(
                "the component imports {import}, which this host does not provide (it grants only \
                 {PACKAGE}/{{sql,entropy,clock}}@{version})"
            )));
        }
    }
    Ok(())
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

/// Reads the imports and exports of the component in `bytes` (e.g. [`BUNDLED_COMPONENT`](crate::BUNDLED_COMPONENT)).
///
/// # Errors
/// [`BuildError::Component`] when `bytes` is not a valid component.
pub fn component_world(bytes: &[u8]) -> Result<ComponentWorld, BuildError> {
    let engine = Engine::default();
    let component = Component::new(&engine, bytes).map_err(BuildError::component)?;
    Ok(world_of(&engine, &component))
}

/// The imports and exports of a compiled component.
pub(crate) fn world_of(engine: &Engine, component: &Component) -> ComponentWorld {
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let exports = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    ComponentWorld { imports, exports }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BUNDLED_COMPONENT;

    #[test]
    fn the_wit_package_the_bundled_component_and_the_host_name_one_contract() {
        let wit = include_str!("../wit/store.wit");
        assert!(
            wit.lines()
                .any(|line| line == format!("package {CONTRACT};")),
            "wit/store.wit does not declare `package {CONTRACT};`"
        );
        let world = component_world(BUNDLED_COMPONENT).expect("the bundled component");
        assert_eq!(world.contract_version(), Some(VERSION));
        assert_eq!(STORE_INTERFACE, format!("{PACKAGE}/store@{}", VERSION));
        check_contract(&world).expect("the bundled component is accepted");
    }

    #[test]
    fn another_version_a_missing_export_or_a_foreign_import_is_refused_by_name() {
        let world = |imports: &[&str], exports: &[&str]| ComponentWorld {
            imports: imports.iter().map(|s| (*s).to_owned()).collect(),
            exports: exports.iter().map(|s| (*s).to_owned()).collect(),
        };
        let message = |w: &ComponentWorld| match check_contract(w) {
            Err(BuildError::Contract(message)) => message,
            other => panic!("expected a contract error, got {other:?}"),
        };
        let older = world(
            &["wasm-sessions:store/sql@0.1.0"],
            &["wasm-sessions:store/store@0.1.0"],
        );
        let text = message(&older);
        assert!(text.contains("@0.1.0") && text.contains(CONTRACT), "{text}");
        let text = message(&world(&[], &["other:pkg/thing@1.0.0"]));
        assert!(text.contains("does not export"), "{text}");
        let wasi = world(
            &["wasi:cli/environment@0.2.0"],
            &["wasm-sessions:store/store@0.2.0"],
        );
        let text = message(&wasi);
        assert!(text.contains("wasi:cli/environment@0.2.0"), "{text}");
    }
}
