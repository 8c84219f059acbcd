//! A host refuses a component whose contract it does not implement, before running any of it, with an
//! error that names both versions. The component here is the bundled one with its contract version
//! rewritten in place (`@0.2.0` → `@0.9.0` in every import and export name), which is otherwise valid.
//! No database is needed: building a store sends no SQL (the URL points nowhere).

use wasm_sessions::{
    BUNDLED_COMPONENT, BuildError, CONTRACT, PostgresDriver, PostgresOptions, SessionStore,
    component_world,
};

fn nowhere() -> PostgresDriver {
    PostgresDriver::connect(
        "postgres://nobody@127.0.0.1:1/nothing",
        &PostgresOptions::default(),
    )
    .expect("a lazily connecting driver")
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length).
fn rewrite(bytes: &[u8], from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let mut count = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            count += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    (out, count)
}

#[tokio::test]
async fn the_bundled_component_builds_and_another_contract_version_is_refused_by_name() {
    let version = CONTRACT.rsplit('@').next().expect("a versioned contract");
    assert_eq!(
        component_world(BUNDLED_COMPONENT)
            .expect("the bundled component")
            .contract_version(),
        Some(version)
    );
    SessionStore::builder(nowhere())
        .build()
        .await
        .expect("the bundled component builds without a database");

    let (other, count) = rewrite(
        BUNDLED_COMPONENT,
        format!("@{version}").as_bytes(),
        b"@0.9.0",
    );
    assert!(count >= 4, "the names of three imports and one export");
    let world = component_world(&other).expect("the rewritten component is still valid");
    assert_eq!(world.contract_version(), Some("0.9.0"));
    let error = SessionStore::builder(nowhere())
        .component(other)
        .build()
        .await
        .expect_err("a component of another contract version");
    let BuildError::Contract(message) = &error else {
        panic!("expected BuildError::Contract, got {error:?}");
    };
    assert!(
        message.contains("wasm-sessions:store@0.9.0") && message.contains(CONTRACT),
        "{message}"
    );
}
