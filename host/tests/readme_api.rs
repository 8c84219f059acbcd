//! The README's list of the public API (between `<!-- public-api:start -->` and `<!-- public-api:end -->`)
//! names exactly what the code exports: every item `src/lib.rs` re-exports, and for every type with an
//! inherent `impl` block, its public methods. A new, renamed or removed item fails this test until the
//! README says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Api = BTreeMap<String, BTreeSet<String>>;

/// The names `lib.rs` re-exports with `pub use` (the last path segment, or each name in braces).
fn reexports(lib: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = lib;
    while let Some(start) = rest.find("\npub use ") {
        let after = &rest[start + "\npub use ".len()..];
        let end = after.find(';').expect("a `pub use` ends with `;`");
        let path = &after[..end];
        let list = match (path.find('{'), path.rfind('}')) {
            (Some(open), Some(close)) => &path[open + 1..close],
            _ => path.rsplit("::").next().unwrap_or(path),
        };
        for name in list.split(',') {
            let name = name.trim();
            if !name.is_empty() {
                names.insert(name.to_owned());
            }
        }
        rest = &after[end..];
    }
    names
}

/// Public methods of inherent `impl Type {` blocks at the top level of a source file.
fn inherent_methods(source: &str, api: &mut Api) {
    let mut current: Option<String> = None;
    for line in source.lines() {
        if let Some(header) = line.strip_prefix("impl") {
            let header = header.trim_start();
            let header = match header.strip_prefix('<') {
                // `impl<T: Bound> Type<T> {`: skip the generics.
                Some(generic) => generic.split_once("> ").map_or("", |(_, rest)| rest),
                None => header,
            };
            if header.ends_with('{') && !header.contains(" for ") {
                let name: String = header
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                current = Some(name);
                continue;
            }
        }
        if line.starts_with('}') {
            current = None;
        }
        let Some(ty) = &current else { continue };
        let Some(rest) = line.strip_prefix("    pub ") else {
            continue;
        };
        let rest = rest.strip_prefix("const ").unwrap_or(rest);
        let rest = rest.strip_prefix("async ").unwrap_or(rest);
        if let Some(name) = rest.strip_prefix("fn ") {
            let name: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            api.entry(ty.clone()).or_default().insert(name);
        }
    }
}

/// The API the code exports: each re-exported name, with its methods when it has any.
fn code_api(host: &Path) -> Api {
    let lib = fs::read_to_string(host.join("src/lib.rs")).expect("src/lib.rs");
    let exported = reexports(&lib);
    let mut methods = Api::new();
    for entry in fs::read_dir(host.join("src")).expect("src/") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            inherent_methods(
                &fs::read_to_string(&path).expect("a source file"),
                &mut methods,
            );
        }
    }
    exported
        .into_iter()
        .map(|name| {
            let own = methods.remove(&name).unwrap_or_default();
            (name, own)
        })
        .collect()
}

/// The README's list: one line per item, "- `Name`" or "- `Name`: `method`, `method`, ...".
fn readme_api(readme: &str) -> Api {
    let start = readme
        .find("<!-- public-api:start -->")
        .expect("README.md has a `<!-- public-api:start -->` marker");
    let end = readme
        .find("<!-- public-api:end -->")
        .expect("README.md has a `<!-- public-api:end -->` marker");
    let mut api = Api::new();
    for line in readme[start..end].lines() {
        let Some(item) = line.strip_prefix("- `") else {
            continue;
        };
        let (name, rest) = item.split_once('`').expect("a name in backticks");
        let mut methods = BTreeSet::new();
        if let Some(list) = rest.strip_prefix(':') {
            // Only the backticked names before the first " (" or "." count: the rest is prose.
            let list = list.split(" — ").next().unwrap_or(list);
            for part in list.split('`').skip(1).step_by(2) {
                methods.insert(part.trim_end_matches("()").to_owned());
            }
        }
        assert!(
            api.insert(name.to_owned(), methods).is_none(),
            "README.md lists `{name}` twice"
        );
    }
    api
}

#[test]
fn the_readme_lists_exactly_the_public_api() {
    let host = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(host.join("../README.md")).expect("README.md");
    let code = code_api(host);
    let listed = readme_api(&readme);
    assert!(code.len() > 30, "the parser found too little: {code:?}");
    let mut problems = Vec::new();
    for (name, methods) in &code {
        match listed.get(name) {
            None => problems.push(format!("`{name}` is exported but not listed")),
            Some(listed) => {
                for missing in methods.difference(listed) {
                    problems.push(format!("`{name}::{missing}` is public but not listed"));
                }
                for extra in listed.difference(methods) {
                    problems.push(format!("`{name}::{extra}` is listed but not public"));
                }
            }
        }
    }
    for name in listed.keys().filter(|name| !code.contains_key(*name)) {
        problems.push(format!("`{name}` is listed but not exported"));
    }
    assert!(
        problems.is_empty(),
        "README.md's public API list (between the public-api markers) is out of date:\n{}",
        problems.join("\n")
    );
}
