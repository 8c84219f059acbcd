//! The conformance suite (`conformance/`; the format is in `conformance/README.md`): every scenario file
//! run through `SessionStore::call_export` with a manual clock, against real PostgreSQL, once per mode:
//! `<file>::fresh` (a fresh instance per call), `<file>::reuse` (warm instances reused, the default),
//! and `<file>::sqlx` (default isolation over `SqlxDriver`, feature `sqlx`). A file's test runs all of
//! its scenarios and fails with every scenario that failed: file, scenario, step, the path where the
//! result differs, expected and actual.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use wasm_sessions::{Isolation, ManualClock, SessionStore};
use wasm_sessions_tests::TestDb;

/// The format version the files must declare.
const FORMAT: u64 = 1;
/// Every scenario starts at 2030-01-01T00:00:00Z.
const START_MICROS: i64 = 1_893_456_000_000_000;

/// One test per file and mode; `FILES` lists the files (a test checks it against the directory).
macro_rules! suite {
    ($($name:ident => $file:literal),+ $(,)?) => {
        const FILES: &[&str] = &[$($file),+];
        $(
            mod $name {
                use super::Mode;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn fresh() {
                    super::run_file($file, Mode::Fresh).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn reuse() {
                    super::run_file($file, Mode::Reuse).await;
                }

                #[cfg(feature = "sqlx")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlx() {
                    super::run_file($file, Mode::Sqlx).await;
                }
            }
        )+
    };
}

suite! {
    bad_input => "bad-input",
    cleanup => "cleanup",
    concurrency => "concurrency",
    config => "config",
    cookies => "cookies",
    expiry => "expiry",
    ids => "ids",
    lifecycle => "lifecycle",
    regenerate => "regenerate",
    users => "users",
}

/// How a file's scenarios are run.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `PostgresDriver`, a fresh instance per call.
    Fresh,
    /// `PostgresDriver`, warm instances reused (the default isolation).
    Reuse,
    /// `SqlxDriver` over a sqlx pool, the default isolation.
    #[cfg(feature = "sqlx")]
    Sqlx,
}

// ---------------------------------------------------------------------------------------------------
// The files

fn scenarios_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/scenarios")
}

/// A parsed, checked scenario file.
struct Suite {
    file: String,
    vars: Map<String, Value>,
    scenarios: Vec<Scenario>,
}

struct Scenario {
    name: String,
    config: Map<String, Value>,
    vars: Map<String, Value>,
    steps: Vec<Step>,
}

enum Step {
    Call {
        export: String,
        args: Vec<Value>,
        expect: Option<Value>,
        bind: Option<String>,
    },
    Advance {
        micros: i64,
    },
    Rows {
        count: u64,
        handle: Option<Value>,
    },
}

impl Step {
    fn label(&self) -> String {
        match self {
            Step::Call { export, .. } => export.clone(),
            Step::Advance { micros } => format!("advance {micros}us"),
            Step::Rows { .. } => "rows".into(),
        }
    }
}

/// Fails unless `object` has only keys from `allowed`.
fn only_keys(object: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), String> {
    match object.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => Err(format!(
            "{what}: unknown key {key:?} (allowed: {allowed:?})"
        )),
        None => Ok(()),
    }
}

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>, String> {
    value
        .as_object()
        .ok_or_else(|| format!("{what}: expected an object"))
}

fn optional_object(
    parent: &Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Map<String, Value>, String> {
    match parent.get(key) {
        None => Ok(Map::new()),
        Some(value) => object(value, &format!("{what}.{key}")).cloned(),
    }
}

fn load_suite(file: &str) -> Suite {
    let path = scenarios_dir().join(format!("{file}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let value: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}.json is not JSON: {e}"));
    parse_suite(file, &value).unwrap_or_else(|e| panic!("{file}.json: {e}"))
}

fn parse_suite(file: &str, value: &Value) -> Result<Suite, String> {
    let top = object(value, "the file")?;
    only_keys(
        top,
        &["format", "area", "doc", "vars", "scenarios"],
        "the file",
    )?;
    if top.get("format").and_then(Value::as_u64) != Some(FORMAT) {
        return Err(format!("\"format\" must be {FORMAT}"));
    }
    if !top.get("area").is_some_and(Value::is_string) {
        return Err("\"area\" must be a string".into());
    }
    let vars = optional_object(top, "vars", "the file")?;
    let list = top
        .get("scenarios")
        .and_then(Value::as_array)
        .ok_or("\"scenarios\" must be an array")?;
    let mut scenarios = Vec::new();
    for (i, scenario) in list.iter().enumerate() {
        let what = format!("scenario {i}");
        let s = object(scenario, &what)?;
        only_keys(s, &["name", "doc", "config", "vars", "steps"], &what)?;
        let name = s
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{what}: \"name\" must be a string"))?
            .to_owned();
        if scenarios.iter().any(|other: &Scenario| other.name == name) {
            return Err(format!("two scenarios are named {name:?}"));
        }
        let what = format!("scenario {name:?}");
        let steps = s
            .get("steps")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{what}: \"steps\" must be an array"))?
            .iter()
            .enumerate()
            .map(|(j, step)| parse_step(step).map_err(|e| format!("{what}, step {j}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        scenarios.push(Scenario {
            config: optional_object(s, "config", &what)?,
            vars: optional_object(s, "vars", &what)?,
            name,
            steps,
        });
    }
    Ok(Suite {
        file: file.to_owned(),
        vars,
        scenarios,
    })
}

fn parse_step(value: &Value) -> Result<Step, String> {
    let step = object(value, "the step")?;
    let kinds: Vec<&str> = ["call", "advance", "rows"]
        .into_iter()
        .filter(|k| step.contains_key(*k))
        .collect();
    match kinds.as_slice() {
        ["call"] => {
            only_keys(step, &["call", "args", "expect", "bind", "doc"], "a call")?;
            let export = step["call"]
                .as_str()
                .ok_or("\"call\" must be an export name")?
                .to_owned();
            let args = match step.get("args") {
                None => Vec::new(),
                Some(Value::Array(args)) => args.clone(),
                Some(_) => return Err("\"args\" must be an array".into()),
            };
            let bind = match step.get("bind") {
                None => None,
                Some(Value::String(name)) if !name.is_empty() && !name.contains('.') => {
                    Some(name.clone())
                }
                Some(_) => return Err("\"bind\" must be a variable name".into()),
            };
            Ok(Step::Call {
                export,
                args,
                expect: step.get("expect").cloned(),
                bind,
            })
        }
        ["advance"] => {
            only_keys(step, &["advance", "doc"], "an advance")?;
            let seconds = step["advance"]
                .as_f64()
                .filter(|s| *s >= 0.0)
                .ok_or("\"advance\" must be a non-negative number of seconds")?;
            // Whole microseconds, as the README says: round(n * 1e6).
            #[allow(clippy::cast_possible_truncation)]
            let micros = (seconds * 1e6).round() as i64;
            Ok(Step::Advance { micros })
        }
        ["rows"] => {
            only_keys(step, &["rows", "handle", "doc"], "a rows check")?;
            let count = step["rows"]
                .as_u64()
                .ok_or("\"rows\" must be a non-negative integer")?;
            Ok(Step::Rows {
                count,
                handle: step.get("handle").cloned(),
            })
        }
        _ => Err("a step has exactly one of \"call\", \"advance\", \"rows\"".into()),
    }
}

// ---------------------------------------------------------------------------------------------------
// Templates

/// What templates are expanded against: the variables and the clock.
struct Scope {
    vars: Map<String, Value>,
    now: i64,
}

/// `${path}`: the variable's value, or the value at a path inside it.
fn lookup(scope: &Scope, path: &str) -> Result<Value, String> {
    let mut parts = path.split('.');
    let name = parts.next().unwrap_or_default();
    let mut value = scope
        .vars
        .get(name)
        .ok_or_else(|| format!("unbound variable {name:?} in ${{{path}}}"))?;
    for part in parts {
        value = match value {
            Value::Object(map) => map.get(part),
            Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| format!("${{{path}}}: no {part:?} in {value}"))?;
    }
    Ok(value.clone())
}

/// A time expression (`$start`, `$now-1us`, `$start+1d+2h`) as microseconds, or `None` when `text` is
/// not one.
fn time_expression(text: &str, scope: &Scope) -> Result<Option<i64>, String> {
    let (mut total, mut rest) = if let Some(rest) = text.strip_prefix("$start") {
        (START_MICROS, rest)
    } else if let Some(rest) = text.strip_prefix("$now") {
        (scope.now, rest)
    } else {
        return Ok(None);
    };
    if rest.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    while !rest.is_empty() {
        let sign = match rest.as_bytes()[0] {
            b'+' => 1,
            b'-' => -1,
            _ => return Err(format!("bad time expression {text:?}")),
        };
        let digits = rest[1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - 1);
        let amount: i64 = rest[1..=digits]
            .parse()
            .map_err(|_| format!("bad time expression {text:?}"))?;
        let after = &rest[1 + digits..];
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let unit = match &after[..unit_len] {
            "us" => 1,
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" => 60_000_000,
            "h" => 3_600_000_000,
            "d" => 86_400_000_000,
            _ => return Err(format!("bad unit in time expression {text:?}")),
        };
        total += sign * amount * unit;
        rest = &after[unit_len..];
    }
    Ok(Some(total))
}

/// Splices every `${path}` in `text` (strings and numbers only).
fn interpolate(text: &str, scope: &Scope) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
        let path = &rest[start + 2..start + end];
        match lookup(scope, path)? {
            Value::String(s) => out.push_str(&s),
            Value::Number(n) => out.push_str(&n.to_string()),
            other => {
                return Err(format!(
                    "${{{path}}} is {other}, which cannot be spliced into a string"
                ));
            }
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The value of a template, or `None` when `value` is not one (patterns and plain values).
fn template(value: &Value, scope: &Scope) -> Result<Option<Value>, String> {
    match value {
        Value::String(text) => {
            if let Some(literal) = text.strip_prefix("$$") {
                return Ok(Some(Value::String(format!("${literal}"))));
            }
            if let Some(path) = text
                .strip_prefix("${")
                .and_then(|t| t.strip_suffix('}'))
                .filter(|p| !p.contains(['{', '}']))
            {
                return lookup(scope, path).map(Some);
            }
            if let Some(micros) = time_expression(text, scope)? {
                return Ok(Some(Value::from(micros)));
            }
            if text.contains("${") {
                return interpolate(text, scope).map(|s| Some(Value::String(s)));
            }
            Ok(None)
        }
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next().expect("one entry");
            match key.as_str() {
                "$repeat" => {
                    let parts = expand(arg, scope)?;
                    match parts.as_array().map(Vec::as_slice) {
                        Some([Value::String(s), Value::Number(n)]) if n.as_u64().is_some() => {
                            let times = usize::try_from(n.as_u64().unwrap_or(0))
                                .map_err(|e| e.to_string())?;
                            Ok(Some(Value::String(s.repeat(times))))
                        }
                        _ => Err(format!("$repeat takes [string, count], got {parts}")),
                    }
                }
                "$merge" => {
                    let parts = expand(arg, scope)?;
                    let mut merged = Map::new();
                    for part in parts.as_array().ok_or("$merge takes an array of objects")? {
                        merged.extend(
                            part.as_object()
                                .ok_or_else(|| format!("$merge: {part} is not an object"))?
                                .clone(),
                        );
                    }
                    Ok(Some(Value::Object(merged)))
                }
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

/// Expands a template into a plain value (arguments, `vars`, a `rows` handle).
fn expand(value: &Value, scope: &Scope) -> Result<Value, String> {
    if let Some(value) = template(value, scope)? {
        return Ok(value);
    }
    Ok(match value {
        Value::String(text) if text.starts_with('$') => {
            return Err(format!(
                "{text:?} is no template (a literal string starting with '$' is written \"$${})",
                &text[1..]
            ));
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                if key.starts_with('$') {
                    return Err(format!("unknown template {key:?}"));
                }
                out.insert(key.clone(), expand(item, scope)?);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| expand(item, scope))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

// ---------------------------------------------------------------------------------------------------
// Patterns

/// An expanded `expect`.
#[derive(Debug)]
enum Pattern {
    /// A value from a template or a plain scalar: equal (objects with the same keys, numbers by value).
    Literal(Value),
    /// An object with at least these keys (exactly these under `$exact`).
    Object(Vec<(String, Pattern)>),
    Array(Vec<Pattern>),
    Any,
    String,
    Hex64,
    Contains(String),
    Not(Box<Pattern>),
    Json(Box<Pattern>),
    Exact(Box<Pattern>),
    Each(Box<Pattern>),
}

fn pattern(value: &Value, scope: &Scope) -> Result<Pattern, String> {
    if let Some(value) = template(value, scope)? {
        return Ok(Pattern::Literal(value));
    }
    Ok(match value {
        Value::String(text) if text.starts_with('$') => match text.as_str() {
            "$any" => Pattern::Any,
            "$string" => Pattern::String,
            "$hex64" => Pattern::Hex64,
            _ => return Err(format!("unknown pattern {text:?}")),
        },
        Value::Object(map) if map.len() == 1 && map.keys().all(|k| k.starts_with('$')) => {
            let (key, arg) = map.iter().next().expect("one entry");
            let inner = || pattern(arg, scope).map(Box::new);
            match key.as_str() {
                "$contains" => match expand(arg, scope)? {
                    Value::String(s) => Pattern::Contains(s),
                    other => return Err(format!("$contains takes a string, got {other}")),
                },
                "$not" => Pattern::Not(inner()?),
                "$json" => Pattern::Json(inner()?),
                "$exact" => Pattern::Exact(inner()?),
                "$each" => Pattern::Each(inner()?),
                _ => return Err(format!("unknown pattern {key:?}")),
            }
        }
        Value::Object(map) => {
            let mut fields = Vec::new();
            for (key, item) in map {
                if key.starts_with('$') {
                    return Err(format!("unknown pattern key {key:?}"));
                }
                fields.push((key.clone(), pattern(item, scope)?));
            }
            Pattern::Object(fields)
        }
        Value::Array(items) => Pattern::Array(
            items
                .iter()
                .map(|item| pattern(item, scope))
                .collect::<Result<_, _>>()?,
        ),
        other => Pattern::Literal(other.clone()),
    })
}

impl Pattern {
    /// The pattern written back as JSON, for messages.
    fn show(&self) -> Value {
        let tagged =
            |tag: &str, inner: Value| Value::Object(Map::from_iter([(tag.to_owned(), inner)]));
        match self {
            Pattern::Literal(v) => v.clone(),
            Pattern::Object(fields) => {
                Value::Object(fields.iter().map(|(k, p)| (k.clone(), p.show())).collect())
            }
            Pattern::Array(items) => Value::Array(items.iter().map(Pattern::show).collect()),
            Pattern::Any => "$any".into(),
            Pattern::String => "$string".into(),
            Pattern::Hex64 => "$hex64".into(),
            Pattern::Contains(s) => tagged("$contains", s.clone().into()),
            Pattern::Not(p) => tagged("$not", p.show()),
            Pattern::Json(p) => tagged("$json", p.show()),
            Pattern::Exact(p) => tagged("$exact", p.show()),
            Pattern::Each(p) => tagged("$each", p.show()),
        }
    }

    /// Matches `actual`; the error says where (`path`) and how it differs.
    fn check(&self, actual: &Value, exact: bool, path: &str) -> Result<(), String> {
        let differ = || {
            Err(format!(
                "at {path}: expected {}, got {}",
                self.show(),
                shorten(actual)
            ))
        };
        match self {
            Pattern::Literal(expected) => {
                if equal(expected, actual) {
                    Ok(())
                } else {
                    differ()
                }
            }
            Pattern::Object(fields) => {
                let Some(object) = actual.as_object() else {
                    return differ();
                };
                for (key, pattern) in fields {
                    match object.get(key) {
                        Some(value) => pattern.check(value, exact, &format!("{path}.{key}"))?,
                        None => {
                            return Err(format!(
                                "at {path}: no key {key:?} in {}",
                                shorten(actual)
                            ));
                        }
                    }
                }
                if exact
                    && let Some(extra) =
                        object.keys().find(|k| !fields.iter().any(|(f, _)| f == *k))
                {
                    return Err(format!(
                        "at {path}: unexpected key {extra:?} in {}",
                        shorten(actual)
                    ));
                }
                Ok(())
            }
            Pattern::Array(items) => {
                let Some(array) = actual.as_array() else {
                    return differ();
                };
                if array.len() != items.len() {
                    return Err(format!(
                        "at {path}: expected {} elements, got {}: {}",
                        items.len(),
                        array.len(),
                        shorten(actual)
                    ));
                }
                for (i, (pattern, value)) in items.iter().zip(array).enumerate() {
                    pattern.check(value, exact, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            Pattern::Any => Ok(()),
            Pattern::String if actual.is_string() => Ok(()),
            Pattern::Hex64
                if actual.as_str().is_some_and(|s| {
                    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                }) =>
            {
                Ok(())
            }
            Pattern::Contains(needle) if actual.as_str().is_some_and(|s| s.contains(needle)) => {
                Ok(())
            }
            Pattern::Not(inner) => {
                if inner.check(actual, exact, path).is_ok() {
                    differ()
                } else {
                    Ok(())
                }
            }
            Pattern::Json(inner) => {
                let Some(text) = actual.as_str() else {
                    return differ();
                };
                match serde_json::from_str::<Value>(text) {
                    Ok(parsed) => inner.check(&parsed, exact, &format!("{path}(json)")),
                    Err(e) => Err(format!("at {path}: not JSON ({e}): {}", shorten(actual))),
                }
            }
            Pattern::Exact(inner) => inner.check(actual, true, path),
            Pattern::Each(inner) => {
                let Some(array) = actual.as_array() else {
                    return differ();
                };
                for (i, value) in array.iter().enumerate() {
                    inner.check(value, exact, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            Pattern::String | Pattern::Hex64 | Pattern::Contains(_) => differ(),
        }
    }
}

/// Deep equality, numbers by value.
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w)))
        }
        _ => a == b,
    }
}

/// A value for a message, cut at 600 characters.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= 600 {
        return text;
    }
    let mut end = 600;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

// ---------------------------------------------------------------------------------------------------
// Running

fn time(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).expect("after 1970"))
}

fn micros_of(time: SystemTime) -> i64 {
    i64::try_from(
        time.duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_micros(),
    )
    .expect("in range")
}

/// What one file's scenarios run on.
struct Harness {
    store: SessionStore,
    clock: ManualClock,
    owner: tokio_postgres::Client,
    defaults: Map<String, Value>,
    // Dropped last: the database goes with it.
    _db: TestDb,
}

async fn harness(mode: Mode) -> Harness {
    use wasm_sessions::Clock as _;
    let db = TestDb::new().await;
    let clock = ManualClock::new(time(START_MICROS));
    let builder = match mode {
        Mode::Fresh => {
            SessionStore::builder(db.driver()).isolation(Isolation::FreshInstancePerCall)
        }
        Mode::Reuse => SessionStore::builder(db.driver()).isolation(Isolation::default()),
        #[cfg(feature = "sqlx")]
        Mode::Sqlx => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(4)
                .connect(&db.url)
                .await
                .unwrap_or_else(|e| panic!("a sqlx pool on {}: {e}", db.url));
            SessionStore::builder(wasm_sessions::SqlxDriver::new(pool))
        }
    };
    let store = builder
        .clock(clock.clone())
        .build()
        .await
        .expect("store builds");
    assert_eq!(micros_of(clock.now()), START_MICROS);
    let defaults = match store.call_export("default-config", &[]).await {
        Ok(Value::Object(config)) => config,
        other => panic!("default-config: {other:?}"),
    };
    let owner = db.client().await;
    Harness {
        store,
        clock,
        owner,
        defaults,
        _db: db,
    }
}

async fn run_file(file: &str, mode: Mode) {
    let suite = load_suite(file);
    let harness = harness(mode).await;
    let mut failures = Vec::new();
    for scenario in &suite.scenarios {
        if let Err(failure) = run_scenario(&harness, &suite, scenario).await {
            failures.push(format!(
                "{}.json / {:?} / {failure}",
                suite.file, scenario.name
            ));
        }
    }
    if !failures.is_empty() {
        let mut report = format!(
            "{} of {} scenarios in {file}.json failed ({mode:?}):\n",
            failures.len(),
            suite.scenarios.len()
        );
        for failure in &failures {
            let _ = write!(report, "\n{failure}\n");
        }
        panic!("{report}");
    }
}

/// The result of an export as a step binds it: `{"ok": v}` gives `v`.
fn bindable(result: &Value) -> Result<Value, String> {
    match result.as_object() {
        Some(map) if map.len() == 1 && map.contains_key("ok") => Ok(map["ok"].clone()),
        Some(map) if map.len() == 1 && map.contains_key("err") => {
            Err(format!("cannot bind an error: {}", shorten(result)))
        }
        _ => Ok(result.clone()),
    }
}

fn is_err(result: &Value) -> bool {
    result
        .as_object()
        .is_some_and(|map| map.len() == 1 && map.contains_key("err"))
}

async fn run_scenario(h: &Harness, suite: &Suite, scenario: &Scenario) -> Result<(), String> {
    use wasm_sessions::Clock as _;
    h.owner
        .batch_execute("DELETE FROM wasm_sessions.sessions")
        .await
        .map_err(|e| format!("emptying the table: {e}"))?;
    h.clock.set(time(START_MICROS));

    // The configuration: the defaults with the scenario's overrides, valid.
    let mut config = h.defaults.clone();
    let mut scope = Scope {
        vars: Map::new(),
        now: START_MICROS,
    };
    for (key, value) in &scenario.config {
        if !config.contains_key(key) {
            return Err(format!("config: {key:?} is no configuration field"));
        }
        config.insert(key.clone(), expand(value, &scope)?);
    }
    let config = Value::Object(config);
    let valid = h
        .store
        .call_export("validate-config", std::slice::from_ref(&config))
        .await
        .map_err(|e| format!("validate-config: host error: {e}"))?;
    if !equal(&valid, &serde_json::json!({ "ok": null })) {
        return Err(format!("the scenario's config is invalid: {valid}"));
    }
    scope.vars.insert("config".into(), config);
    for vars in [&suite.vars, &scenario.vars] {
        let mut bound = Map::new();
        for (name, value) in vars {
            bound.insert(
                name.clone(),
                expand(value, &scope).map_err(|e| format!("vars.{name}: {e}"))?,
            );
        }
        scope.vars.extend(bound);
    }

    for (index, step) in scenario.steps.iter().enumerate() {
        scope.now = micros_of(h.clock.now());
        run_step(h, &mut scope, step)
            .await
            .map_err(|e| format!("step {index} ({}): {e}", step.label()))?;
    }
    Ok(())
}

async fn run_step(h: &Harness, scope: &mut Scope, step: &Step) -> Result<(), String> {
    match step {
        Step::Advance { micros } => {
            h.clock.advance(Duration::from_micros(
                u64::try_from(*micros).expect("non-negative"),
            ));
            Ok(())
        }
        Step::Rows { count, handle } => {
            let rows: i64 = match handle {
                None => h
                    .owner
                    .query_one("SELECT count(*) FROM wasm_sessions.sessions", &[])
                    .await
                    .map(|row| row.get(0)),
                Some(handle) => {
                    let handle = match expand(handle, scope)? {
                        Value::String(handle) => handle,
                        other => return Err(format!("\"handle\" must be a string, got {other}")),
                    };
                    h.owner
                        .query_one(
                            "SELECT count(*) FROM wasm_sessions.sessions WHERE id_hash = decode($1, 'hex')",
                            &[&handle],
                        )
                        .await
                        .map(|row| row.get(0))
                }
            }
            .map_err(|e| format!("counting rows: {e}"))?;
            if u64::try_from(rows).ok() == Some(*count) {
                Ok(())
            } else {
                Err(format!("expected {count} rows, found {rows}"))
            }
        }
        Step::Call {
            export,
            args,
            expect,
            bind,
        } => {
            let args = args
                .iter()
                .map(|arg| expand(arg, scope))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("args: {e}"))?;
            let expect = expect
                .as_ref()
                .map(|e| pattern(e, scope).map_err(|e| format!("expect: {e}")))
                .transpose()?;
            let result = h.store.call_export(export, &args).await.map_err(|e| {
                let mut message = format!("host error: {e}");
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    let _ = write!(message, ": {cause}");
                    source = cause.source();
                }
                message
            })?;
            match &expect {
                Some(pattern) => pattern.check(&result, false, "$").map_err(|diff| {
                    format!(
                        "{diff}\n    expected: {}\n    actual:   {}",
                        shorten(&pattern.show()),
                        shorten(&result)
                    )
                })?,
                None if is_err(&result) => {
                    return Err(format!("expected success, got {}", shorten(&result)));
                }
                None => {}
            }
            if let Some(name) = bind {
                scope.vars.insert(name.clone(), bindable(&result)?);
            }
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The suite itself

#[test]
fn every_scenario_file_is_listed_well_formed_and_every_export_is_called() {
    let mut on_disk: Vec<String> = std::fs::read_dir(scenarios_dir())
        .expect("conformance/scenarios")
        .map(|entry| entry.expect("a directory entry").file_name())
        .filter_map(|name| name.to_str()?.strip_suffix(".json").map(str::to_owned))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|f| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(
        on_disk, listed,
        "FILES must list every file in conformance/scenarios"
    );

    let signatures =
        wasm_sessions::conformance::export_signatures(wasm_sessions::BUNDLED_COMPONENT)
            .expect("the bundled component's signatures");
    let exports: Vec<&String> = signatures.as_object().expect("an object").keys().collect();
    let mut called = std::collections::BTreeSet::new();
    for file in FILES {
        for scenario in load_suite(file).scenarios {
            for step in scenario.steps {
                if let Step::Call { export, .. } = step {
                    assert!(
                        exports.contains(&&export),
                        "{file}.json / {:?}: no export named {export:?}",
                        scenario.name
                    );
                    called.insert(export);
                }
            }
        }
    }
    let missed: Vec<_> = exports.iter().filter(|e| !called.contains(**e)).collect();
    assert!(missed.is_empty(), "exports no scenario calls: {missed:?}");
}

#[test]
fn templates_and_patterns_follow_the_readme() {
    let scope = Scope {
        vars: serde_json::from_value(serde_json::json!({
            "s": { "id": "ab", "n": 3, "list": [1, { "x": "y" }] },
        }))
        .unwrap(),
        now: START_MICROS + 5,
    };
    let json = |v: Value| expand(&v, &scope).unwrap();
    assert_eq!(json("${s.id}".into()), Value::from("ab"));
    assert_eq!(json("${s.list.1.x}".into()), Value::from("y"));
    assert_eq!(json("k=${s.id}; n=${s.n}".into()), Value::from("k=ab; n=3"));
    assert_eq!(json("$start".into()), Value::from(START_MICROS));
    assert_eq!(json("$now-1us".into()), Value::from(START_MICROS + 4));
    assert_eq!(
        json("$start+1d+2h-3s".into()),
        Value::from(START_MICROS + 86_400_000_000 + 7_200_000_000 - 3_000_000)
    );
    assert_eq!(json("$$any".into()), Value::from("$any"));
    assert_eq!(
        json(serde_json::json!({ "$repeat": ["ab", 3] })),
        Value::from("ababab")
    );
    assert_eq!(
        json(serde_json::json!({ "$merge": ["${s}", { "n": 4 }] }))["n"],
        Value::from(4)
    );
    assert!(expand(&"$any".into(), &scope).is_err());
    assert!(expand(&"${nope}".into(), &scope).is_err());

    let check = |p: Value, actual: Value| pattern(&p, &scope).unwrap().check(&actual, false, "$");
    let actual =
        serde_json::json!({ "ok": { "id": "ab", "data": "{\"a\": 1.0, \"b\": [true]}", "n": 3 } });
    assert!(
        check(
            serde_json::json!({ "ok": { "id": "${s.id}" } }),
            actual.clone()
        )
        .is_ok()
    );
    assert!(
        check(
            serde_json::json!({ "ok": { "data": { "$json": { "a": 1 } } } }),
            actual.clone()
        )
        .is_ok()
    );
    assert!(
        check(
            serde_json::json!({ "ok": { "data": { "$json": { "$exact": { "a": 1 } } } } }),
            actual.clone()
        )
        .is_err()
    );
    assert!(
        check(
            serde_json::json!({ "ok": { "n": { "$not": 4 } } }),
            actual.clone()
        )
        .is_ok()
    );
    assert!(check(serde_json::json!({ "err": "$any" }), actual.clone()).is_err());
    let diff = check(serde_json::json!({ "ok": { "n": 4 } }), actual).unwrap_err();
    assert_eq!(diff, "at $.ok.n: expected 4, got 3");
    assert!(check("$hex64".into(), "a".repeat(64).into()).is_ok());
    assert!(check("$hex64".into(), "A".repeat(64).into()).is_err());
    assert!(
        check(
            serde_json::json!({ "$each": { "$contains": "x" } }),
            serde_json::json!(["ax", "xb"])
        )
        .is_ok()
    );
    // A substituted value is literal: a bound object must equal, not merely contain.
    assert!(check("${s}".into(), serde_json::json!({ "id": "ab", "n": 3 })).is_err());
}

/// The second driver against the first: `SqlxDriver` must map values and classify errors exactly as
/// `PostgresDriver` does (the guest cannot tell them apart), and must not hand out a connection whose
/// statement was abandoned.
#[cfg(feature = "sqlx")]
mod sqlx_driver {
    use std::time::{Duration, Instant};

    use sqlx::postgres::PgPoolOptions;
    use wasm_sessions::{SqlDriver, SqlError, SqlValue, SqlxDriver};
    use wasm_sessions_tests::TestDb;

    async fn sqlx_driver(db: &TestDb, connections: u32) -> SqlxDriver {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&db.url)
            .await
            .expect("a sqlx pool");
        SqlxDriver::new(pool)
    }

    /// The same class of outcome: equal rows, or the same error variant (and SQLSTATE).
    fn same(
        a: &Result<wasm_sessions::RowSet, SqlError>,
        b: &Result<wasm_sessions::RowSet, SqlError>,
    ) -> bool {
        match (a, b) {
            (Ok(a), Ok(b)) => a == b,
            (
                Err(SqlError::ConstraintViolation { sqlstate: x, .. }),
                Err(SqlError::ConstraintViolation { sqlstate: y, .. }),
            ) => x == y,
            (Err(a), Err(b)) => std::mem::discriminant(a) == std::mem::discriminant(b),
            _ => false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_row_counts_and_errors_match_the_postgres_driver() {
        // A database per driver, so that the same statements leave both in the same state.
        let (db_a, db_b) = (TestDb::new().await, TestDb::new().await);
        let postgres = db_a.driver();
        let sqlx = sqlx_driver(&db_b, 2).await;
        let insert = "INSERT INTO wasm_sessions.sessions (id_hash, data, expires_at) \
                      SELECT sha256(($1::text || g::text)::bytea), $2::jsonb, $3::timestamptz \
                      FROM generate_series(1, 3) g";
        let cases: Vec<(&str, Vec<SqlValue>)> = vec![
            (
                "SELECT $1::boolean AS b, $2::bigint AS i8, $3::int AS i4, $4::smallint AS i2, \
                 $5::float8 AS f8, $6::real AS f4, $7::text AS t, $8::varchar AS v, $9::jsonb AS jb, \
                 $10::json AS j, $11::timestamptz AS ts, $12::timestamp AS tsl, $13::bytea AS by, \
                 $14::text[] AS ta, $15::varchar[] AS va, $16::text AS n, $17::text[] AS empty",
                vec![
                    SqlValue::Boolean(true),
                    SqlValue::Int64(-9_000_000_000),
                    SqlValue::Int64(7),
                    SqlValue::Int64(-3),
                    SqlValue::Float64(1.5),
                    SqlValue::Float64(0.25),
                    SqlValue::Text("héllo".into()),
                    SqlValue::Text("v".into()),
                    SqlValue::Json(r#"{"a":"b","n":[1,2.5,null]}"#.into()),
                    SqlValue::Json("[1, 2]".into()),
                    SqlValue::Timestamp(1_893_456_000_123_456),
                    SqlValue::Timestamp(-1),
                    SqlValue::Bytes(vec![0, 1, 255]),
                    SqlValue::TextArray(vec!["a".into(), "b,\"c\"".into(), String::new()]),
                    SqlValue::TextArray(vec!["x".into()]),
                    SqlValue::Null,
                    SqlValue::TextArray(Vec::new()),
                ],
            ),
            (
                "SELECT NULL::bigint AS n, NULL::jsonb AS j, NULL::bytea AS b",
                vec![],
            ),
            ("SELECT 'x'::name AS nm, 'y'::char(3) AS c", vec![]),
            (
                insert,
                vec![
                    SqlValue::Text("a".into()),
                    SqlValue::Json("{}".into()),
                    SqlValue::Timestamp(1),
                ],
            ),
            (
                "SELECT count(*) AS n FROM wasm_sessions.sessions WHERE data ?| $1::text[]",
                vec![SqlValue::TextArray(vec!["k".into()])],
            ),
            (
                "UPDATE wasm_sessions.sessions SET data = $1::jsonb RETURNING data",
                vec![SqlValue::Json(r#"{"k": 1}"#.into())],
            ),
            (
                "DELETE FROM wasm_sessions.sessions WHERE expires_at <= $1::timestamptz",
                vec![SqlValue::Timestamp(1)],
            ),
            // Bad parameters: the wrong kind, out of range, not JSON, the wrong count.
            ("SELECT $1::bigint", vec![SqlValue::Text("1".into())]),
            ("SELECT $1::int", vec![SqlValue::Int64(i64::MAX)]),
            ("SELECT $1::smallint", vec![SqlValue::Int64(40_000)]),
            ("SELECT $1::jsonb", vec![SqlValue::Json("{not json".into())]),
            ("SELECT $1::bytea", vec![SqlValue::Boolean(true)]),
            ("SELECT $1::timestamptz", vec![SqlValue::Int64(1)]),
            ("SELECT $1::text[]", vec![SqlValue::Text("a".into())]),
            ("SELECT $1::int", vec![]),
            ("SELECT 1", vec![SqlValue::Int64(1)]),
            // Constraints, with their SQLSTATE.
            (
                insert,
                vec![
                    SqlValue::Text("b".into()),
                    SqlValue::Json("{}".into()),
                    SqlValue::Timestamp(1),
                ],
            ),
            (
                insert,
                vec![
                    SqlValue::Text("b".into()),
                    SqlValue::Json("{}".into()),
                    SqlValue::Timestamp(1),
                ],
            ),
            (
                insert,
                vec![
                    SqlValue::Text("c".into()),
                    SqlValue::Json("[]".into()),
                    SqlValue::Timestamp(1),
                ],
            ),
            (
                insert,
                vec![
                    SqlValue::Text("d".into()),
                    SqlValue::Json("{}".into()),
                    SqlValue::Null,
                ],
            ),
            // Query failures: syntax, a missing table, no privilege, a type the interface cannot carry.
            ("SELEC 1", vec![]),
            ("SELECT * FROM no_such_table", vec![]),
            ("SELECT rolname FROM pg_authid", vec![]),
            ("SELECT '1 day'::interval AS i", vec![]),
            ("SELECT 1 / $1::int AS x", vec![SqlValue::Int64(0)]),
        ];
        for (statement, params) in &cases {
            let a = postgres.query(statement, params).await;
            // The same statement twice over sqlx: once preparing, once from its statement cache.
            let b = sqlx.query(statement, params).await;
            let c = if statement.starts_with("SELECT") {
                sqlx.query(statement, params).await
            } else {
                b.clone()
            };
            assert!(
                same(&a, &b) && same(&b, &c),
                "{statement}\n  postgres: {a:?}\n  sqlx:     {b:?}\n  again:    {c:?}"
            );
        }
        // sqlx again after the failures: the connections are still usable.
        let rows = sqlx.query("SELECT 1::bigint AS one", &[]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Int64(1)]]);
        // And preparing reports a statement that does not fit the schema, as the other driver does.
        assert!(
            sqlx.prepare("SELECT id_hash FROM wasm_sessions.sessions")
                .await
                .is_ok()
        );
        let err = sqlx
            .prepare("SELECT nope FROM wasm_sessions.sessions")
            .await
            .unwrap_err();
        assert!(
            matches!(err, SqlError::QueryFailed(ref m) if m.starts_with("42703")),
            "{err:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_statement_never_holds_up_the_pool() {
        let db = TestDb::new().await;
        // One connection: a later query gets it only if the abandoned one was taken out of the pool.
        let driver = sqlx_driver(&db, 1).await;
        let slow = driver.query(
            "SELECT 1::bigint AS one FROM pg_sleep($1::float8)",
            &[SqlValue::Float64(5.0)],
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(300), slow)
                .await
                .is_err(),
            "the sleep should still be running"
        );
        let started = Instant::now();
        let rows = driver.query("SELECT 2::bigint AS two", &[]).await.unwrap();
        assert_eq!(rows.rows, vec![vec![SqlValue::Int64(2)]]);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the next query waited {:?} behind the abandoned statement",
            started.elapsed()
        );
        assert!(driver.pool().size() <= 1, "{:?}", driver);
    }
}

// ---------------------------------------------------------------------------------------------------
// Through PgBouncer

/// Every file once more through PgBouncer in transaction pooling mode
/// ([`wasm_sessions_tests::pgbouncer::PgBouncer::shared`]), which does not support named prepared
/// statements: `PostgresDriver` with `StatementMode::Unnamed`, the default isolation. One test per file,
/// `through_pgbouncer::<file>`; the list is checked against `FILES`.
mod through_pgbouncer {
    use std::fmt::Write as _;

    use serde_json::Value;
    use wasm_sessions::{
        ManualClock, PostgresDriver, PostgresOptions, SessionStore, StatementMode,
    };
    use wasm_sessions_tests::TestDb;
    use wasm_sessions_tests::pgbouncer::PgBouncer;

    macro_rules! through_pgbouncer {
        ($($name:ident => $file:literal),+ $(,)?) => {
            const LISTED: &[&str] = &[$($file),+];
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    run_file($file).await;
                }
            )+
        };
    }

    through_pgbouncer! {
        bad_input => "bad-input",
        cleanup => "cleanup",
        concurrency => "concurrency",
        config => "config",
        cookies => "cookies",
        expiry => "expiry",
        ids => "ids",
        lifecycle => "lifecycle",
        regenerate => "regenerate",
        users => "users",
    }

    #[test]
    fn every_file_runs_through_pgbouncer() {
        assert_eq!(LISTED, super::FILES);
    }

    /// [`super::run_file`], with the store's driver connected through PgBouncer.
    async fn run_file(file: &str) {
        let suite = super::load_suite(file);
        let db = TestDb::new().await;
        let options = PostgresOptions {
            statement_mode: StatementMode::Unnamed,
            ..PostgresOptions::default()
        };
        let url = PgBouncer::shared().url_for(&db.url);
        let driver = PostgresDriver::connect(&url, &options).expect("a valid URL");
        let clock = ManualClock::new(super::time(super::START_MICROS));
        let store = SessionStore::builder(driver)
            .clock(clock.clone())
            .build()
            .await
            .expect("store builds");
        let defaults = match store.call_export("default-config", &[]).await {
            Ok(Value::Object(config)) => config,
            other => panic!("default-config: {other:?}"),
        };
        let owner = db.client().await;
        let harness = super::Harness {
            store,
            clock,
            owner,
            defaults,
            _db: db,
        };
        let mut failures = String::new();
        let mut failed = 0;
        for scenario in &suite.scenarios {
            if let Err(failure) = super::run_scenario(&harness, &suite, scenario).await {
                failed += 1;
                let _ = write!(
                    failures,
                    "\n{file}.json / {:?} / {failure}\n",
                    scenario.name
                );
            }
        }
        assert!(
            failed == 0,
            "{failed} of {} scenarios in {file}.json failed through PgBouncer:\n{failures}",
            suite.scenarios.len()
        );
    }
}
