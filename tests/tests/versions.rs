//! The packages are released together: the crates (`wasm-sessions`, `wasm-sessions-cli`, `embedded-pg`,
//! one workspace version) and the npm package (`js/package.json`) carry the same version, and
//! `CHANGELOG.md` has a section for it (or an `Unreleased` one above it).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_owned()
}

#[test]
fn the_crates_and_the_npm_package_carry_one_version() {
    let crate_version = env!("CARGO_PKG_VERSION");
    let text = std::fs::read_to_string(repo().join("js/package.json")).expect("js/package.json");
    let package: serde_json::Value = serde_json::from_str(&text).expect("package.json is JSON");
    assert_eq!(
        package["version"].as_str(),
        Some(crate_version),
        "js/package.json's version is not the workspace's ({crate_version}): release them together"
    );
    assert_eq!(package["name"].as_str(), Some("@wasm-sessions/node"));
}

#[test]
fn the_changelog_has_a_section_for_this_version() {
    let changelog = std::fs::read_to_string(repo().join("CHANGELOG.md")).expect("CHANGELOG.md");
    let headings: Vec<&str> = changelog
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        headings.first() == Some(&"Unreleased") || headings.first() == Some(&version),
        "CHANGELOG.md's first section is neither `Unreleased` nor `{version}`: {headings:?}"
    );
    assert!(
        headings.contains(&version),
        "CHANGELOG.md has no `## {version}` section: {headings:?}"
    );
}
