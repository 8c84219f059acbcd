// The conformance suite's format (conformance/README.md, format 1), as the Rust runner
// (tests/tests/conformance.rs) reads it: files, templates, patterns, steps.

import { show } from './wit-json.mjs';

/** The format version the files must declare. */
export const FORMAT = 1;

/** Every scenario starts at 2030-01-01T00:00:00Z. */
export const START_MICROS = 1_893_456_000_000_000n;

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

function onlyKeys(object, allowed, what) {
  const key = Object.keys(object).find((k) => !allowed.includes(k));
  if (key !== undefined) {
    throw new Error(`${what}: unknown key ${JSON.stringify(key)} (allowed: ${allowed.join(', ')})`);
  }
}

function object(value, what) {
  if (!isObject(value)) {
    throw new Error(`${what}: expected an object`);
  }
  return value;
}

function optionalObject(parent, key, what) {
  return parent[key] === undefined ? {} : object(parent[key], `${what}.${key}`);
}

/** A parsed, checked scenario file: `{ file, vars, scenarios: [{ name, config, vars, steps }] }`. */
export function parseSuite(file, value) {
  const top = object(value, 'the file');
  onlyKeys(top, ['format', 'area', 'doc', 'vars', 'scenarios'], 'the file');
  if (top.format !== FORMAT) {
    throw new Error(`"format" must be ${FORMAT}`);
  }
  if (typeof top.area !== 'string') {
    throw new Error('"area" must be a string');
  }
  const vars = optionalObject(top, 'vars', 'the file');
  if (!Array.isArray(top.scenarios)) {
    throw new Error('"scenarios" must be an array');
  }
  const scenarios = [];
  top.scenarios.forEach((scenario, i) => {
    let what = `scenario ${i}`;
    const s = object(scenario, what);
    onlyKeys(s, ['name', 'doc', 'config', 'vars', 'steps'], what);
    if (typeof s.name !== 'string') {
      throw new Error(`${what}: "name" must be a string`);
    }
    if (scenarios.some((other) => other.name === s.name)) {
      throw new Error(`two scenarios are named ${JSON.stringify(s.name)}`);
    }
    what = `scenario ${JSON.stringify(s.name)}`;
    if (!Array.isArray(s.steps)) {
      throw new Error(`${what}: "steps" must be an array`);
    }
    const steps = s.steps.map((step, j) => {
      try {
        return parseStep(step);
      } catch (error) {
        throw new Error(`${what}, step ${j}: ${error.message}`);
      }
    });
    scenarios.push({
      name: s.name,
      config: optionalObject(s, 'config', what),
      vars: optionalObject(s, 'vars', what),
      steps,
    });
  });
  return { file, vars, scenarios };
}

function parseStep(value) {
  const step = object(value, 'the step');
  const kinds = ['call', 'advance', 'rows'].filter((k) => k in step);
  if (kinds.length !== 1) {
    throw new Error('a step has exactly one of "call", "advance", "rows"');
  }
  switch (kinds[0]) {
    case 'call': {
      onlyKeys(step, ['call', 'args', 'expect', 'bind', 'doc'], 'a call');
      if (typeof step.call !== 'string') {
        throw new Error('"call" must be an export name');
      }
      if (step.args !== undefined && !Array.isArray(step.args)) {
        throw new Error('"args" must be an array');
      }
      if (step.bind !== undefined && (typeof step.bind !== 'string' || step.bind === '' || step.bind.includes('.'))) {
        throw new Error('"bind" must be a variable name');
      }
      return { kind: 'call', export: step.call, args: step.args ?? [], expect: step.expect, bind: step.bind };
    }
    case 'advance': {
      onlyKeys(step, ['advance', 'doc'], 'an advance');
      if (typeof step.advance !== 'number' || !(step.advance >= 0)) {
        throw new Error('"advance" must be a non-negative number of seconds');
      }
      // Whole microseconds, as the README says: round(n * 1e6).
      return { kind: 'advance', micros: BigInt(Math.round(step.advance * 1e6)) };
    }
    default: {
      onlyKeys(step, ['rows', 'handle', 'doc'], 'a rows check');
      if (!Number.isInteger(step.rows) || step.rows < 0) {
        throw new Error('"rows" must be a non-negative integer');
      }
      return { kind: 'rows', count: step.rows, handle: step.handle };
    }
  }
}

export function stepLabel(step) {
  switch (step.kind) {
    case 'call':
      return step.export;
    case 'advance':
      return `advance ${step.micros}us`;
    default:
      return 'rows';
  }
}

// ---------------------------------------------------------------------------------------------------
// Templates: against a scope `{ vars: Map-like object, now: BigInt }`.

function lookup(scope, path) {
  const [name, ...parts] = path.split('.');
  if (!Object.hasOwn(scope.vars, name)) {
    throw new Error(`unbound variable ${JSON.stringify(name)} in \${${path}}`);
  }
  let value = scope.vars[name];
  for (const part of parts) {
    let next;
    if (isObject(value)) {
      next = Object.hasOwn(value, part) ? value[part] : undefined;
    } else if (Array.isArray(value) && /^\d+$/.test(part)) {
      next = value[Number(part)];
    }
    if (next === undefined) {
      throw new Error(`\${${path}}: no ${JSON.stringify(part)} in ${show(value)}`);
    }
    value = next;
  }
  return structuredClone(value);
}

const UNITS = { us: 1n, ms: 1_000n, s: 1_000_000n, m: 60_000_000n, h: 3_600_000_000n, d: 86_400_000_000n };

/** A time expression as microseconds (a BigInt), or `null` when `text` is not one. */
function timeExpression(text, scope) {
  let total;
  let rest;
  if (text.startsWith('$start')) {
    total = START_MICROS;
    rest = text.slice('$start'.length);
  } else if (text.startsWith('$now')) {
    total = scope.now;
    rest = text.slice('$now'.length);
  } else {
    return null;
  }
  if (/^[A-Za-z0-9]/.test(rest)) {
    return null;
  }
  while (rest !== '') {
    const m = /^([+-])(\d+)([A-Za-z]*)/.exec(rest);
    if (m === null) {
      throw new Error(`bad time expression ${JSON.stringify(text)}`);
    }
    const unit = UNITS[m[3]];
    if (unit === undefined) {
      throw new Error(`bad unit in time expression ${JSON.stringify(text)}`);
    }
    total += (m[1] === '-' ? -1n : 1n) * BigInt(m[2]) * unit;
    rest = rest.slice(m[0].length);
  }
  return total;
}

/** Splices every `${path}` in `text` (strings and numbers only). */
function interpolate(text, scope) {
  let out = '';
  let rest = text;
  for (;;) {
    const start = rest.indexOf('${');
    if (start === -1) {
      return out + rest;
    }
    out += rest.slice(0, start);
    const end = rest.indexOf('}', start);
    if (end === -1) {
      throw new Error(`unclosed \${ in ${JSON.stringify(text)}`);
    }
    const path = rest.slice(start + 2, end);
    const value = lookup(scope, path);
    if (typeof value === 'string') {
      out += value;
    } else if (typeof value === 'number' || typeof value === 'bigint') {
      out += String(value);
    } else {
      throw new Error(`\${${path}} is ${show(value)}, which cannot be spliced into a string`);
    }
    rest = rest.slice(end + 1);
  }
}

const NOT_A_TEMPLATE = Symbol('not a template');

/** The value of a template, or NOT_A_TEMPLATE (patterns and plain values). */
function template(value, scope) {
  if (typeof value === 'string') {
    if (value.startsWith('$$')) {
      return value.slice(1);
    }
    if (value.startsWith('${') && value.endsWith('}')) {
      const path = value.slice(2, -1);
      if (!path.includes('{') && !path.includes('}')) {
        return lookup(scope, path);
      }
    }
    const micros = timeExpression(value, scope);
    if (micros !== null) {
      return Number.isSafeInteger(Number(micros)) ? Number(micros) : micros;
    }
    if (value.includes('${')) {
      return interpolate(value, scope);
    }
    return NOT_A_TEMPLATE;
  }
  if (isObject(value) && Object.keys(value).length === 1) {
    const [[key, arg]] = Object.entries(value);
    if (key === '$repeat') {
      const parts = expand(arg, scope);
      if (
        Array.isArray(parts) &&
        parts.length === 2 &&
        typeof parts[0] === 'string' &&
        Number.isInteger(Number(parts[1])) &&
        Number(parts[1]) >= 0
      ) {
        return parts[0].repeat(Number(parts[1]));
      }
      throw new Error(`$repeat takes [string, count], got ${show(parts)}`);
    }
    if (key === '$merge') {
      const parts = expand(arg, scope);
      if (!Array.isArray(parts)) {
        throw new Error('$merge takes an array of objects');
      }
      const merged = {};
      for (const part of parts) {
        if (!isObject(part)) {
          throw new Error(`$merge: ${show(part)} is not an object`);
        }
        Object.assign(merged, part);
      }
      return merged;
    }
  }
  return NOT_A_TEMPLATE;
}

/** Expands a template into a plain value (arguments, `vars`, a `rows` handle). */
export function expand(value, scope) {
  const templated = template(value, scope);
  if (templated !== NOT_A_TEMPLATE) {
    return templated;
  }
  if (typeof value === 'string' && value.startsWith('$')) {
    throw new Error(
      `${JSON.stringify(value)} is no template (a literal string starting with '$' is written "$${value.slice(1)}")`,
    );
  }
  if (isObject(value)) {
    const out = {};
    for (const [key, item] of Object.entries(value)) {
      if (key.startsWith('$')) {
        throw new Error(`unknown template ${JSON.stringify(key)}`);
      }
      out[key] = expand(item, scope);
    }
    return out;
  }
  if (Array.isArray(value)) {
    return value.map((item) => expand(item, scope));
  }
  return value;
}

// ---------------------------------------------------------------------------------------------------
// Patterns

/** An expanded `expect`: `{ kind, ... }`. */
export function pattern(value, scope) {
  const templated = template(value, scope);
  if (templated !== NOT_A_TEMPLATE) {
    return { kind: 'literal', value: templated };
  }
  if (typeof value === 'string' && value.startsWith('$')) {
    switch (value) {
      case '$any':
        return { kind: 'any' };
      case '$string':
        return { kind: 'string' };
      case '$hex64':
        return { kind: 'hex64' };
      default:
        throw new Error(`unknown pattern ${JSON.stringify(value)}`);
    }
  }
  if (isObject(value)) {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0].startsWith('$')) {
      const [[key, arg]] = Object.entries(value);
      switch (key) {
        case '$contains': {
          const needle = expand(arg, scope);
          if (typeof needle !== 'string') {
            throw new Error(`$contains takes a string, got ${show(needle)}`);
          }
          return { kind: 'contains', needle };
        }
        case '$not':
        case '$json':
        case '$exact':
        case '$each':
          return { kind: key.slice(1), inner: pattern(arg, scope) };
        default:
          throw new Error(`unknown pattern ${JSON.stringify(key)}`);
      }
    }
    const fields = [];
    for (const [key, item] of Object.entries(value)) {
      if (key.startsWith('$')) {
        throw new Error(`unknown pattern key ${JSON.stringify(key)}`);
      }
      fields.push([key, pattern(item, scope)]);
    }
    return { kind: 'object', fields };
  }
  if (Array.isArray(value)) {
    return { kind: 'array', items: value.map((item) => pattern(item, scope)) };
  }
  return { kind: 'literal', value };
}

/** The pattern written back as JSON, for messages. */
export function showPattern(p) {
  switch (p.kind) {
    case 'literal':
      return p.value;
    case 'object':
      return Object.fromEntries(p.fields.map(([k, inner]) => [k, showPattern(inner)]));
    case 'array':
      return p.items.map(showPattern);
    case 'any':
    case 'string':
    case 'hex64':
      return `$${p.kind}`;
    case 'contains':
      return { $contains: p.needle };
    default:
      return { [`$${p.kind}`]: showPattern(p.inner) };
  }
}

/** Deep equality, numbers by value (a BigInt equals the number with the same value). */
export function equal(a, b) {
  const numeric = (v) => typeof v === 'number' || typeof v === 'bigint';
  if (numeric(a) && numeric(b)) {
    if (typeof a === 'bigint' || typeof b === 'bigint') {
      const exact = (v) => typeof v === 'bigint' || Number.isInteger(v);
      return exact(a) && exact(b) ? BigInt(a) === BigInt(b) : Number(a) === Number(b);
    }
    return a === b;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  }
  if (isObject(a) && isObject(b)) {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
  }
  return a === b;
}

/** A value for a message, cut at 600 characters. */
export function shorten(value) {
  const text = show(value);
  return text.length <= 600 ? text : `${text.slice(0, 600)}… (${text.length} characters)`;
}

/** Matches `actual`; throws an Error saying where (`path`) and how it differs. */
export function check(p, actual, exact, path) {
  const differ = () => {
    throw new Error(`at ${path}: expected ${show(showPattern(p))}, got ${shorten(actual)}`);
  };
  switch (p.kind) {
    case 'literal':
      if (!equal(p.value, actual)) differ();
      return;
    case 'object': {
      if (!isObject(actual)) differ();
      for (const [key, inner] of p.fields) {
        if (!Object.hasOwn(actual, key)) {
          throw new Error(`at ${path}: no key ${JSON.stringify(key)} in ${shorten(actual)}`);
        }
        check(inner, actual[key], exact, `${path}.${key}`);
      }
      if (exact) {
        const extra = Object.keys(actual).find((k) => !p.fields.some(([f]) => f === k));
        if (extra !== undefined) {
          throw new Error(`at ${path}: unexpected key ${JSON.stringify(extra)} in ${shorten(actual)}`);
        }
      }
      return;
    }
    case 'array':
      if (!Array.isArray(actual)) differ();
      if (actual.length !== p.items.length) {
        throw new Error(`at ${path}: expected ${p.items.length} elements, got ${actual.length}: ${shorten(actual)}`);
      }
      p.items.forEach((inner, i) => check(inner, actual[i], exact, `${path}[${i}]`));
      return;
    case 'any':
      return;
    case 'string':
      if (typeof actual !== 'string') differ();
      return;
    case 'hex64':
      if (typeof actual !== 'string' || !/^[0-9a-f]{64}$/.test(actual)) differ();
      return;
    case 'contains':
      if (typeof actual !== 'string' || !actual.includes(p.needle)) differ();
      return;
    case 'not': {
      let matched = true;
      try {
        check(p.inner, actual, exact, path);
      } catch {
        matched = false;
      }
      if (matched) differ();
      return;
    }
    case 'json': {
      if (typeof actual !== 'string') differ();
      let parsed;
      try {
        parsed = JSON.parse(actual);
      } catch (error) {
        throw new Error(`at ${path}: not JSON (${error.message}): ${shorten(actual)}`);
      }
      check(p.inner, parsed, exact, `${path}(json)`);
      return;
    }
    case 'exact':
      check(p.inner, actual, true, path);
      return;
    case 'each':
      if (!Array.isArray(actual)) differ();
      actual.forEach((value, i) => check(p.inner, value, exact, `${path}[${i}]`));
      return;
    default:
      throw new Error(`unknown pattern kind ${p.kind}`);
  }
}

/** The result of an export as a step binds it: `{"ok": v}` gives `v`. */
export function bindable(result) {
  if (isObject(result) && Object.keys(result).length === 1) {
    if ('ok' in result) {
      return result.ok;
    }
    if ('err' in result) {
      throw new Error(`cannot bind an error: ${shorten(result)}`);
    }
  }
  return result;
}

export function isErr(result) {
  return isObject(result) && Object.keys(result).length === 1 && 'err' in result;
}
