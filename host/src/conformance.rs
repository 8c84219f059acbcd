//! Support for the conformance suite (`conformance/`): any export of the `store` interface called by
//! name with its arguments as JSON, on the store's own instances (so pinning, the clock, the deadline and
//! the limits apply exactly as for the typed calls), and the exports' signatures as JSON.
//!
//! The JSON form of WIT values, shared with every other host's runner:
//! - `bool`, integers, floats, `string`: JSON booleans, numbers and strings; `list` and `tuple`: arrays;
//! - `record`: an object keyed by the WIT field names (kebab-case);
//! - `enum` and a `variant` case without payload: the case name as a string; a `variant` case with a
//!   payload: `{"case-name": payload}`;
//! - `option`: `null` for none, the value for some, except `{"some": value}` when the payload is itself an
//!   option;
//! - `result`: `{"ok": value}` or `{"err": value}` (`null` for an absent payload).
//!
//! Not a stable API: it exists for the test suites.

use serde_json::{Map, Value};
use wasmtime::component::types::{ComponentFunc, Type};
use wasmtime::component::{Component, Val};

use crate::error::StoreError;

/// The interface every store export lives in.
pub(crate) use crate::inspect::STORE_INTERFACE;

/// A JSON argument or result that does not fit the export's WIT type.
fn mismatch(what: &str, expected: &str, got: &Value) -> StoreError {
    StoreError::InvalidData(format!("{what}: expected {expected}, got {got}"))
}

/// `value` as the WIT type `ty`.
pub(crate) fn to_val(ty: &Type, value: &Value, what: &str) -> Result<Val, StoreError> {
    let int = |v: &Value| v.as_i64().ok_or_else(|| mismatch(what, "an integer", v));
    let unsigned = |v: &Value| {
        v.as_u64()
            .ok_or_else(|| mismatch(what, "an unsigned integer", v))
    };
    Ok(match ty {
        Type::Bool => Val::Bool(
            value
                .as_bool()
                .ok_or_else(|| mismatch(what, "a boolean", value))?,
        ),
        Type::S32 => {
            Val::S32(i32::try_from(int(value)?).map_err(|_| mismatch(what, "an s32", value))?)
        }
        Type::S64 => Val::S64(int(value)?),
        Type::U8 => {
            Val::U8(u8::try_from(unsigned(value)?).map_err(|_| mismatch(what, "a u8", value))?)
        }
        Type::U32 => {
            Val::U32(u32::try_from(unsigned(value)?).map_err(|_| mismatch(what, "a u32", value))?)
        }
        Type::U64 => Val::U64(unsigned(value)?),
        Type::Float64 => Val::Float64(
            value
                .as_f64()
                .ok_or_else(|| mismatch(what, "a number", value))?,
        ),
        Type::String => Val::String(
            value
                .as_str()
                .ok_or_else(|| mismatch(what, "a string", value))?
                .to_owned(),
        ),
        Type::List(list) => {
            let items = value
                .as_array()
                .ok_or_else(|| mismatch(what, "an array", value))?;
            let inner = list.ty();
            Val::List(
                items
                    .iter()
                    .map(|item| to_val(&inner, item, what))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Tuple(tuple) => {
            let items = value
                .as_array()
                .ok_or_else(|| mismatch(what, "an array", value))?;
            let types: Vec<Type> = tuple.types().collect();
            if items.len() != types.len() {
                return Err(mismatch(what, &format!("{} elements", types.len()), value));
            }
            Val::Tuple(
                types
                    .iter()
                    .zip(items)
                    .map(|(ty, item)| to_val(ty, item, what))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Record(record) => {
            let object = value
                .as_object()
                .ok_or_else(|| mismatch(what, "an object", value))?;
            for key in object.keys() {
                if !record.fields().any(|f| f.name == key) {
                    return Err(mismatch(what, "known record fields", value));
                }
            }
            let mut fields = Vec::new();
            for field in record.fields() {
                let field_value = object.get(field.name).unwrap_or(&Value::Null);
                let inner = format!("{what}.{}", field.name);
                fields.push((
                    field.name.to_owned(),
                    to_val(&field.ty, field_value, &inner)?,
                ));
            }
            Val::Record(fields)
        }
        Type::Enum(cases) => {
            let name = value
                .as_str()
                .ok_or_else(|| mismatch(what, "an enum case name", value))?;
            if !cases.names().any(|n| n == name) {
                return Err(mismatch(what, "a known enum case", value));
            }
            Val::Enum(name.to_owned())
        }
        Type::Variant(variant) => {
            let (name, payload) = match value {
                Value::String(name) => (name.as_str(), None),
                Value::Object(object) if object.len() == 1 => {
                    let (name, payload) = object.iter().next().expect("one entry");
                    (name.as_str(), Some(payload))
                }
                other => return Err(mismatch(what, "a variant case", other)),
            };
            let case = variant
                .cases()
                .find(|c| c.name == name)
                .ok_or_else(|| mismatch(what, "a known variant case", value))?;
            let payload = match (case.ty, payload) {
                (None, None) => None,
                (Some(ty), Some(payload)) => Some(Box::new(to_val(&ty, payload, what)?)),
                _ => return Err(mismatch(what, "the case's payload", value)),
            };
            Val::Variant(name.to_owned(), payload)
        }
        Type::Option(option) => {
            let inner = option.ty();
            match (value, &inner) {
                (Value::Null, _) => Val::Option(None),
                (Value::Object(object), Type::Option(_)) => {
                    let some = object
                        .get("some")
                        .filter(|_| object.len() == 1)
                        .ok_or_else(|| mismatch(what, "{\"some\": value}", value))?;
                    Val::Option(Some(Box::new(to_val(&inner, some, what)?)))
                }
                (value, inner) => Val::Option(Some(Box::new(to_val(inner, value, what)?))),
            }
        }
        Type::Result(result) => {
            let object = value
                .as_object()
                .filter(|o| o.len() == 1)
                .ok_or_else(|| mismatch(what, "{\"ok\": ..} or {\"err\": ..}", value))?;
            let payload = |ty: Option<Type>, v: &Value| match ty {
                Some(ty) => to_val(&ty, v, what).map(|v| Some(Box::new(v))),
                None => Ok(None),
            };
            if let Some(ok) = object.get("ok") {
                Val::Result(Ok(payload(result.ok(), ok)?))
            } else if let Some(err) = object.get("err") {
                Val::Result(Err(payload(result.err(), err)?))
            } else {
                return Err(mismatch(what, "{\"ok\": ..} or {\"err\": ..}", value));
            }
        }
        other => {
            return Err(StoreError::InvalidData(format!(
                "{what}: the WIT type {other:?} has no JSON form here"
            )));
        }
    })
}

/// `val` in the JSON form.
pub(crate) fn to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) => Value::from(*n),
        Val::U64(n) => Value::from(*n),
        Val::Float32(n) => Value::from(*n),
        Val::Float64(n) => Value::from(*n),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(to_json).collect())
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), to_json(v)))
                .collect(),
        ),
        Val::Enum(name) => Value::String(name.clone()),
        Val::Variant(name, None) => Value::String(name.clone()),
        Val::Variant(name, Some(payload)) => {
            Value::Object(Map::from_iter([(name.clone(), to_json(payload))]))
        }
        Val::Option(None) => Value::Null,
        Val::Option(Some(inner)) => match inner.as_ref() {
            Val::Option(_) => Value::Object(Map::from_iter([("some".to_owned(), to_json(inner))])),
            other => to_json(other),
        },
        Val::Result(Ok(payload)) => Value::Object(Map::from_iter([(
            "ok".to_owned(),
            payload.as_deref().map_or(Value::Null, to_json),
        )])),
        Val::Result(Err(payload)) => Value::Object(Map::from_iter([(
            "err".to_owned(),
            payload.as_deref().map_or(Value::Null, to_json),
        )])),
        other => Value::String(format!("<{other:?}>")),
    }
}

/// The JSON description of a WIT type: a name for primitives (`"s64"`, `"string"`, ...), else an object
/// with `kind` and its parts. Another host's runner uses it to build its own values from the JSON form.
fn type_json(ty: &Type) -> Value {
    let kind = |kind: &str, extra: Value| {
        let mut object = Map::from_iter([("kind".to_owned(), Value::from(kind))]);
        if let Value::Object(more) = extra {
            object.extend(more);
        }
        Value::Object(object)
    };
    match ty {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(list) => kind("list", serde_json::json!({ "item": type_json(&list.ty()) })),
        Type::Tuple(tuple) => kind(
            "tuple",
            serde_json::json!({ "items": tuple.types().map(|t| type_json(&t)).collect::<Vec<_>>() }),
        ),
        Type::Record(record) => kind(
            "record",
            serde_json::json!({ "fields": record
                .fields()
                .map(|f| serde_json::json!({ "name": f.name, "type": type_json(&f.ty) }))
                .collect::<Vec<_>>() }),
        ),
        Type::Enum(cases) => kind(
            "enum",
            serde_json::json!({ "cases": cases.names().collect::<Vec<_>>() }),
        ),
        Type::Variant(variant) => kind(
            "variant",
            serde_json::json!({ "cases": variant
                .cases()
                .map(|c| serde_json::json!({ "name": c.name, "type": c.ty.as_ref().map(type_json) }))
                .collect::<Vec<_>>() }),
        ),
        Type::Option(option) => kind(
            "option",
            serde_json::json!({ "some": type_json(&option.ty()) }),
        ),
        Type::Result(result) => kind(
            "result",
            serde_json::json!({
                "ok": result.ok().as_ref().map(type_json),
                "err": result.err().as_ref().map(type_json),
            }),
        ),
        other => Value::String(format!("unsupported: {other:?}")),
    }
}

fn func_json(func: &ComponentFunc) -> Value {
    serde_json::json!({
        "params": func
            .params()
            .map(|(name, ty)| serde_json::json!({ "name": name, "type": type_json(&ty) }))
            .collect::<Vec<_>>(),
        "results": func.results().map(|ty| type_json(&ty)).collect::<Vec<_>>(),
    })
}

/// The signatures of every export of the `store` interface of the component in `bytes`, as JSON: `{
/// "load": {"params": [{"name", "type"}], "results": [type]}, ... }`.
///
/// # Errors
/// [`crate::BuildError::Component`] when `bytes` is not a component exporting the `store` interface.
pub fn export_signatures(bytes: &[u8]) -> Result<Value, crate::BuildError> {
    use wasmtime::component::types::ComponentItem;
    let engine = wasmtime::Engine::default();
    let component = Component::new(&engine, bytes).map_err(crate::BuildError::component)?;
    let ty = component.component_type();
    let mut out = Map::new();
    for (name, item) in ty.exports(&engine) {
        if name != STORE_INTERFACE {
            continue;
        }
        if let ComponentItem::ComponentInstance(instance) = item.ty {
            for (func_name, func) in instance.exports(&engine) {
                if let ComponentItem::ComponentFunc(func) = func.ty {
                    out.insert(func_name.to_owned(), func_json(&func));
                }
            }
        }
    }
    if out.is_empty() {
        return Err(crate::BuildError::Component(
            format!("the component does not export {STORE_INTERFACE}").into(),
        ));
    }
    Ok(Value::Object(out))
}
