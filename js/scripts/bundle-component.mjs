// The `prepack` step: bundles the session-store component into the package, so `createStore` needs no
// `component` and no jco at run time.
//
//   node scripts/bundle-component.mjs [component.wasm]
//
// Copies the component the Rust crate ships (`host/component/session-store.wasm`, or the path given) to
// `component/session-store.wasm` and transpiles it with this package's own `transpileToDirectory` into
// `component/transpiled/` (then loads it once, as `createStore` would). `component/` is ignored by git.

import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadComponent, transpileToDirectory } from '../src/component.js';

const js = fileURLToPath(new URL('..', import.meta.url));
const source = path.resolve(process.argv[2] ?? path.join(js, '..', 'host', 'component', 'session-store.wasm'));
const out = path.join(js, 'component');

let bytes;
try {
  bytes = await readFile(source);
} catch (error) {
  console.error(
    `bundle-component: cannot read the component ${source} (${error.code ?? error.message}); ` +
      'the Rust crate ships it at host/component/session-store.wasm',
  );
  process.exit(1);
}
// `\0asm`, then a version whose layer (bytes 6-7) is 1: a component, not a core module.
if (bytes.length < 8 || bytes.readUInt32BE(0) !== 0x0061736d || bytes.readUInt16LE(6) !== 1) {
  console.error(`bundle-component: ${source} (${bytes.length} bytes) is not a WebAssembly component`);
  process.exit(1);
}

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await copyFile(source, path.join(out, 'session-store.wasm'));
const dir = await transpileToDirectory(bytes, path.join(out, 'transpiled'));
const loaded = await loadComponent({ dir });
console.error(
  `bundle-component: ${path.relative(js, source)} (${bytes.length} bytes) -> component/session-store.wasm, ` +
    `component/transpiled/ (${Object.keys(loaded.modules).length} core modules)`,
);
