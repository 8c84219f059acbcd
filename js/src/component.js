// Turning the session-store component into what a guest worker runs: jco's JavaScript bindings (sync
// instantiation, the imports passed in as an object) and the compiled core modules, each core memory
// capped at the guest memory limit.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { DEFAULT_MEMORY_LIMIT, capMemories } from './wasm-limits.js';

/** The bindings' name: jco writes `guest.js` and `guest.core*.wasm`. */
const NAME = 'guest';

/** The jco options every transpile uses (recorded in a transpiled directory's `jco-options.json`). */
export const TRANSPILE_OPTIONS = Object.freeze({
  name: NAME,
  // `instantiate(getCoreModule, imports, instantiateCore)`, synchronous: the imports are plain functions
  // of the worker, and a trapped instance is replaced without awaiting anything.
  instantiation: 'sync',
  noTypescript: true,
  quiet: true,
});

/** Where the packed package keeps the component's pre-transpiled bindings (written by `npm pack`). */
const BUNDLED_DIR = new URL('../component/transpiled/', import.meta.url);

/**
 * The directory of the component bindings bundled in this package (transpiled when it was packed), or
 * `null` when there are none (a repository checkout: `npm pack` writes them, in its `prepack` step).
 * `createStore` uses them when given no `component`.
 */
export function bundledComponentDir() {
  const dir = fileURLToPath(BUNDLED_DIR);
  // Written last by `transpileToDirectory`: its presence marks a complete directory.
  return existsSync(path.join(dir, 'jco-options.json')) ? dir : null;
}

/** jco's `transpile`, or a clear error when the optional peer dependency is not installed. */
async function loadJco() {
  try {
    return await import('@bytecodealliance/jco');
  } catch (error) {
    if (error?.code === 'ERR_MODULE_NOT_FOUND' && String(error.message).includes('@bytecodealliance/jco')) {
      throw new Error(
        'transpiling a component needs @bytecodealliance/jco 1.35 (an optional peer dependency of ' +
          '@wasm-sessions/node): install it (`npm install @bytecodealliance/jco@~1.35.0`), or pass ' +
          '{ dir } of bindings transpiled beforehand, or no component at all to use the bundled one',
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * Transpiles the component `bytes` with jco (in memory) and returns its files: `{ name: Uint8Array }`.
 * jco is loaded only here, so a host that loads pre-transpiled bindings (`{ dir }`, or the bundled ones)
 * never needs it; without it this fails with an error saying to install it.
 */
export async function transpileComponent(bytes) {
  const { transpile } = await loadJco();
  const { files, imports } = await transpile(toBytes(bytes), { ...TRANSPILE_OPTIONS });
  const expected = ['wasm-sessions:store/clock', 'wasm-sessions:store/entropy', 'wasm-sessions:store/sql'];
  const unexpected = imports.filter((name) => !expected.includes(name.replace(/@[^@]*$/, '')));
  if (unexpected.length > 0) {
    throw new Error(`the component imports more than sql, entropy and clock: ${unexpected.join(', ')}`);
  }
  return files;
}

/**
 * Transpiles the component `bytes` into `dir` (created; replaced when it exists), for
 * `createStore({ component: { dir } })` without jco at run time.
 */
export async function transpileToDirectory(bytes, dir) {
  return writeFiles(await transpileComponent(bytes), dir, { replace: true });
}

/**
 * Transpiles `bytes` into a directory of `cacheRoot` named after the component's SHA-256, unless it is
 * there already. Processes may race: the first complete directory wins, the others are discarded.
 */
export async function transpileCached(bytes, cacheRoot) {
  const digest = createHash('sha256').update(toBytes(bytes)).digest('hex').slice(0, 32);
  const dir = path.join(cacheRoot, `component-${digest}`);
  try {
    await readFile(path.join(dir, 'jco-options.json'));
    return dir;
  } catch {
    return writeFiles(await transpileComponent(bytes), dir, { replace: false });
  }
}

/** Writes `files` into a staging directory and renames it to `dir` (so `dir` is never half written). */
async function writeFiles(files, dir, { replace }) {
  const staging = `${dir}.tmp-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2)}`;
  await mkdir(staging, { recursive: true });
  try {
    for (const [name, content] of Object.entries(files)) {
      const target = path.join(staging, name);
      await mkdir(path.dirname(target), { recursive: true });
      await writeFile(target, content);
    }
    // Written last: its presence marks a complete directory.
    await writeFile(path.join(staging, 'jco-options.json'), JSON.stringify(TRANSPILE_OPTIONS));
    if (replace) {
      await rm(dir, { recursive: true, force: true });
    }
    try {
      await rename(staging, dir);
    } catch (error) {
      if (replace || !['ENOTEMPTY', 'EEXIST'].includes(error.code)) {
        throw error;
      }
      // Another process finished first with the same content.
    }
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return dir;
}

function toBytes(bytes) {
  if (bytes instanceof Uint8Array) {
    return bytes;
  }
  if (bytes instanceof ArrayBuffer) {
    return new Uint8Array(bytes);
  }
  throw new TypeError('the component must be bytes (Uint8Array, Buffer or ArrayBuffer)');
}

/**
 * What a guest worker runs: the bindings' source text and the compiled core modules by file name.
 *
 * `source` is one of:
 * - a path to a `.wasm` component, or its bytes (`Uint8Array`/`Buffer`): transpiled now, in memory;
 * - `{ dir }`: a directory written by `transpileToDirectory` (or `jco transpile --instantiation sync`).
 *
 * Every memory a core module defines is capped at `memoryLimit` bytes.
 */
export async function loadComponent(source, { memoryLimit = DEFAULT_MEMORY_LIMIT } = {}) {
  let files;
  if (typeof source === 'string' || source instanceof URL) {
    files = await transpileComponent(await readFile(source));
  } else if (source instanceof Uint8Array || source instanceof ArrayBuffer) {
    files = await transpileComponent(source);
  } else if (source !== null && typeof source === 'object' && typeof source.dir === 'string') {
    files = {};
    for (const name of await readdir(source.dir)) {
      if (name.endsWith('.js') || name.endsWith('.wasm')) {
        files[name] = await readFile(path.join(source.dir, name));
      }
    }
  } else {
    throw new TypeError('component: a path to a .wasm component, its bytes, or { dir } of transpiled bindings');
  }
  const scripts = Object.keys(files).filter((name) => name.endsWith('.js') && !name.includes('/'));
  if (scripts.length !== 1) {
    throw new Error(`expected one JavaScript file in the bindings, found ${scripts.length}`);
  }
  const modules = {};
  let capped = 0;
  for (const [name, bytes] of Object.entries(files)) {
    if (!name.endsWith('.wasm')) {
      continue;
    }
    const limited = capMemories(bytes, memoryLimit);
    capped += limited.capped;
    modules[name] = await WebAssembly.compile(limited.bytes);
  }
  return {
    source: Buffer.from(files[scripts[0]]).toString('utf8'),
    modules,
    cappedMemories: capped,
    memoryLimit,
  };
}
