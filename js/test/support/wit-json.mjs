// The JSON form of WIT values (host/src/conformance.rs, conformance/README.md) to and from jco's
// JavaScript values, by type: the types come from `export_signatures` (written by tests/tests/node.rs).
//
// jco 1.35's conventions, as the transpiled bindings use them:
// - record fields in lowerCamelCase (`user-id` -> `userId`); enum cases and variant case names as in WIT;
// - variant: `{ tag, val }` (`val` absent without a payload); enum: the case name;
// - option<T>: `undefined` | the value, except when T is itself an option: `{ tag: 'none' }` |
//   `{ tag: 'some', val }`;
// - s64/u64: BigInt; other integers and floats: numbers; list<u8>: Uint8Array; tuples: arrays;
// - result of an export: the ok value returned, an `err` thrown as `ComponentError` with `payload` (the
//   store's `callExport` turns both into `{ ok }` / `{ err }`).

/** `kebab-case` as jco spells it in JavaScript: `lowerCamelCase`. */
export function camel(name) {
  return name.replace(/-([a-z0-9])/g, (_, c) => c.toUpperCase());
}

const INTEGER_RANGES = {
  s8: [-(2 ** 7), 2 ** 7 - 1],
  u8: [0, 2 ** 8 - 1],
  s16: [-(2 ** 15), 2 ** 15 - 1],
  u16: [0, 2 ** 16 - 1],
  s32: [-(2 ** 31), 2 ** 31 - 1],
  u32: [0, 2 ** 32 - 1],
};

const isInteger = (v) => (typeof v === 'number' && Number.isInteger(v)) || typeof v === 'bigint';

function mismatch(what, expected, got) {
  return new Error(`${what}: expected ${expected}, got ${show(got)}`);
}

/** JSON text of a value that may hold BigInts. */
export function show(value) {
  return JSON.stringify(value, (_, v) => (typeof v === 'bigint' ? Number(v) : v)) ?? String(value);
}

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The JSON form `value` as the jco value of WIT type `type`. */
export function toJco(type, value, what) {
  if (typeof type === 'string') {
    switch (type) {
      case 'bool':
        if (typeof value !== 'boolean') throw mismatch(what, 'a boolean', value);
        return value;
      case 's64':
      case 'u64': {
        if (!isInteger(value)) throw mismatch(what, 'an integer', value);
        const big = BigInt(value);
        const ok = type === 's64' ? big >= -(2n ** 63n) && big < 2n ** 63n : big >= 0n && big < 2n ** 64n;
        if (!ok) throw mismatch(what, `an ${type}`, value);
        return big;
      }
      case 'f32':
      case 'f64':
        if (typeof value !== 'number' && typeof value !== 'bigint') throw mismatch(what, 'a number', value);
        return Number(value);
      case 'char':
      case 'string':
        if (typeof value !== 'string') throw mismatch(what, 'a string', value);
        return value;
      default: {
        const range = INTEGER_RANGES[type];
        if (range === undefined) throw new Error(`${what}: the WIT type ${type} has no JSON form here`);
        if (!isInteger(value) || Number(value) < range[0] || Number(value) > range[1]) {
          throw mismatch(what, `a ${type}`, value);
        }
        return Number(value);
      }
    }
  }
  switch (type.kind) {
    case 'list': {
      if (!Array.isArray(value)) throw mismatch(what, 'an array', value);
      const items = value.map((item) => toJco(type.item, item, what));
      return type.item === 'u8' ? Uint8Array.from(items) : items;
    }
    case 'tuple':
      if (!Array.isArray(value)) throw mismatch(what, 'an array', value);
      if (value.length !== type.items.length) throw mismatch(what, `${type.items.length} elements`, value);
      return type.items.map((t, i) => toJco(t, value[i], what));
    case 'record': {
      if (!isObject(value)) throw mismatch(what, 'an object', value);
      for (const key of Object.keys(value)) {
        if (!type.fields.some((f) => f.name === key)) throw mismatch(what, 'known record fields', value);
      }
      const out = {};
      for (const field of type.fields) {
        out[camel(field.name)] = toJco(field.type, value[field.name] ?? null, `${what}.${field.name}`);
      }
      return out;
    }
    case 'enum':
      if (typeof value !== 'string' || !type.cases.includes(value)) throw mismatch(what, 'a known enum case', value);
      return value;
    case 'variant': {
      let name;
      let payload;
      let hasPayload = false;
      if (typeof value === 'string') {
        name = value;
      } else if (isObject(value) && Object.keys(value).length === 1) {
        [[name, payload]] = Object.entries(value);
        hasPayload = true;
      } else {
        throw mismatch(what, 'a variant case', value);
      }
      const kase = type.cases.find((c) => c.name === name);
      if (kase === undefined) throw mismatch(what, 'a known variant case', value);
      if ((kase.type === null || kase.type === undefined) !== !hasPayload) {
        throw mismatch(what, "the case's payload", value);
      }
      return hasPayload ? { tag: name, val: toJco(kase.type, payload, what) } : { tag: name };
    }
    case 'option': {
      const inner = type.some;
      const nested = typeof inner === 'object' && inner.kind === 'option';
      if (value === null) {
        return nested ? { tag: 'none' } : undefined;
      }
      if (nested) {
        if (isObject(value) && 'some' in value) {
          if (Object.keys(value).length !== 1) throw mismatch(what, '{"some": value}', value);
          return { tag: 'some', val: toJco(inner, value.some, what) };
        }
        return { tag: 'some', val: toJco(inner, value, what) };
      }
      return toJco(inner, value, what);
    }
    case 'result': {
      if (!isObject(value) || Object.keys(value).length !== 1) throw mismatch(what, '{"ok": ..} or {"err": ..}', value);
      if ('ok' in value) {
        return { tag: 'ok', val: type.ok === null ? undefined : toJco(type.ok, value.ok, what) };
      }
      if ('err' in value) {
        return { tag: 'err', val: type.err === null ? undefined : toJco(type.err, value.err, what) };
      }
      throw mismatch(what, '{"ok": ..} or {"err": ..}', value);
    }
    default:
      throw new Error(`${what}: the WIT type ${show(type)} has no JSON form here`);
  }
}

/** A 64-bit integer as a JSON number when exact, else kept a BigInt (compared by value). */
const int64 = (v) => (Number.isSafeInteger(Number(v)) ? Number(v) : BigInt(v));

/** The jco value `value` of WIT type `type` in the JSON form. */
export function fromJco(type, value) {
  if (typeof type === 'string') {
    switch (type) {
      case 's64':
      case 'u64':
        return int64(value);
      default:
        return value;
    }
  }
  switch (type.kind) {
    case 'list':
      return [...value].map((item) => fromJco(type.item, item));
    case 'tuple':
      return type.items.map((t, i) => fromJco(t, value[i]));
    case 'record':
      return Object.fromEntries(type.fields.map((f) => [f.name, fromJco(f.type, value[camel(f.name)])]));
    case 'enum':
      return value;
    case 'variant': {
      const kase = type.cases.find((c) => c.name === value.tag);
      return kase?.type ? { [value.tag]: fromJco(kase.type, value.val) } : value.tag;
    }
    case 'option': {
      const inner = type.some;
      if (typeof inner === 'object' && inner.kind === 'option') {
        return value.tag === 'none' ? null : { some: fromJco(inner, value.val) };
      }
      return value === undefined || value === null ? null : fromJco(inner, value);
    }
    case 'result':
      return value.tag === 'ok'
        ? { ok: type.ok === null ? null : fromJco(type.ok, value.val) }
        : { err: type.err === null ? null : fromJco(type.err, value.val) };
    default:
      throw new Error(`the WIT type ${show(type)} has no JSON form here`);
  }
}

/**
 * The JSON form of an export's outcome (`{ ok }` / `{ err }` from `store.callExport`) given its
 * signature: `{"ok": ..}` / `{"err": ..}` for a `result` export, the plain value otherwise.
 */
export function resultJson(signature, outcome) {
  const results = signature.results;
  if (results.length === 0) {
    return null;
  }
  const type = results[0];
  if (typeof type === 'object' && type.kind === 'result') {
    if ('err' in outcome) {
      return { err: type.err === null ? null : fromJco(type.err, outcome.err) };
    }
    return { ok: type.ok === null ? null : fromJco(type.ok, outcome.ok) };
  }
  if ('err' in outcome) {
    throw new Error(`an export without a result type answered an error: ${show(outcome.err)}`);
  }
  return fromJco(type, outcome.ok);
}
