// The test environment tests/tests/node.rs provides (see there): the component, the misbehaving guest,
// the exports' signatures, the database, the migrations and the conformance suite.

import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { loadComponent, transpileCached } from '../../src/index.js';

function required(name) {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(
      `${name} is not set: run these tests through \`cargo test -p wasm-sessions-tests --test node\`, ` +
        'which provides the component, the database and the rest',
    );
  }
  return value;
}

export const env = {
  get component() {
    return required('WASM_SESSIONS_COMPONENT');
  },
  get misbehaving() {
    return required('WASM_SESSIONS_MISBEHAVING_COMPONENT');
  },
  get signatures() {
    return required('WASM_SESSIONS_SIGNATURES');
  },
  get database() {
    return required('WASM_SESSIONS_TEST_DATABASE');
  },
  get migrations() {
    return required('WASM_SESSIONS_MIGRATIONS');
  },
  get conformance() {
    return required('WASM_SESSIONS_CONFORMANCE');
  },
  get cache() {
    return process.env.WASM_SESSIONS_JS_CACHE || path.join(tmpdir(), 'wasm-sessions-js-cache');
  },
};

const loaded = new Map();

/**
 * The component at `wasmPath` transpiled by jco into the cache directory (once per component and run)
 * and loaded: what `createStore({ loaded })` takes.
 */
export function component(wasmPath = env.component, options = {}) {
  const key = `${wasmPath}:${options.memoryLimit ?? ''}`;
  if (!loaded.has(key)) {
    loaded.set(
      key,
      transpileCached(readFileSync(wasmPath), env.cache).then((dir) => loadComponent({ dir }, options)),
    );
  }
  return loaded.get(key);
}
