// The hand-written types (src/index.d.ts) against the module (src/index.js): every export declared, nothing
// declared that is not exported, and the members of the exported classes likewise. No database needed.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import * as api from '../src/index.js';

const js = fileURLToPath(new URL('..', import.meta.url));
const dts = readFileSync(path.join(js, 'src', 'index.d.ts'), 'utf8');

/** The runtime exports the d.ts declares (`export declare const|let|function|class NAME`, `export { … }`). */
function declaredValues(text) {
  const names = new Set();
  for (const m of text.matchAll(/^export\s+declare\s+(?:abstract\s+)?(?:const|let|var|function|class|enum)\s+([A-Za-z_$][\w$]*)/gm)) {
    names.add(m[1]);
  }
  for (const m of text.matchAll(/^export\s*\{([^}]*)\}/gm)) {
    for (const item of m[1].split(',')) {
      const name = item.trim().split(/\s+as\s+/).pop();
      if (name !== '' && !name.startsWith('type ')) {
        names.add(name);
      }
    }
  }
  return names;
}

/** The members a declared class lists: `{ instance, statics }`, methods and properties alike. */
function declaredMembers(text, className) {
  const start = text.search(new RegExp(`^export declare class ${className}\\b`, 'm'));
  assert.notEqual(start, -1, `class ${className} is declared`);
  const end = text.indexOf('\n}', start);
  const body = text.slice(text.indexOf('{', start) + 1, end);
  const instance = new Set();
  const statics = new Set();
  for (const m of body.matchAll(/^ {2}((?:(?:static|private|protected|public|readonly)\s+)*)([A-Za-z_$][\w$]*)\s*[<(?:!]/gm)) {
    if (m[2] === 'constructor') {
      continue;
    }
    (m[1].includes('static') ? statics : instance).add(m[2]);
  }
  return { instance, statics };
}

/** Fields set in a constructor (not on the prototype), from a sample instance. */
const samples = {
  StoreError: () => new api.StoreError('database', 'm', { kind: 'refused', sqlstate: '42501', detail: 'd' }),
  ManualClock: () => new api.ManualClock(0n),
};

describe('src/index.d.ts declares the module', () => {
  test('every export of index.js is declared, and every declared export exists', () => {
    const exported = new Set(Object.keys(api));
    const declared = declaredValues(dts);
    const missing = [...exported].filter((name) => !declared.has(name)).sort();
    const extra = [...declared].filter((name) => !exported.has(name)).sort();
    assert.deepEqual(missing, [], `exported by index.js but not declared in index.d.ts: ${missing.join(', ')}`);
    assert.deepEqual(extra, [], `declared in index.d.ts but not exported by index.js: ${extra.join(', ')}`);
    assert.ok(exported.size >= 20, `${exported.size} exports`);
  });

  test('a class as the module exports it is declared with the members it has', () => {
    const classes = Object.keys(api).filter(
      (name) => typeof api[name] === 'function' && /^class\b/.test(Function.prototype.toString.call(api[name])),
    );
    assert.deepEqual(classes.sort(), ['ManualClock', 'Session', 'Store', 'StoreError']);
    for (const name of classes) {
      const cls = api[name];
      const { instance, statics } = declaredMembers(dts, name);
      const proto = Object.getOwnPropertyNames(cls.prototype).filter((m) => m !== 'constructor');
      const own = Object.getOwnPropertyNames(cls).filter((m) => !['length', 'name', 'prototype'].includes(m));
      const fields = samples[name] ? Object.keys(samples[name]()) : [];
      const undeclared = proto.filter((m) => !instance.has(m));
      assert.deepEqual(undeclared, [], `${name}: members not declared in index.d.ts`);
      assert.deepEqual(own.filter((m) => !statics.has(m)), [], `${name}: static members not declared`);
      const absent = [...instance].filter((m) => !proto.includes(m) && !fields.includes(m));
      assert.deepEqual(absent, [], `${name}: declared in index.d.ts but absent`);
      assert.deepEqual([...statics].filter((m) => !own.includes(m)), [], `${name}: declared statics absent`);
    }
  });

  test('the package points its types at this file', () => {
    const pkg = JSON.parse(readFileSync(path.join(js, 'package.json'), 'utf8'));
    assert.equal(pkg.types, './src/index.d.ts');
    assert.equal(pkg.exports['.'].types, './src/index.d.ts');
    assert.equal(pkg.exports['.'].default, pkg.main);
    assert.ok(pkg.files.includes('src') && pkg.files.includes('component'));
  });
});

describe('the default component', () => {
  test('createStore without a component uses the bundled bindings, or says to pass one', async () => {
    const dir = api.bundledComponentDir();
    if (dir === null) {
      // A checkout: `npm pack` (its prepack step) has not bundled the component.
      assert.equal(existsSync(path.join(js, 'component', 'transpiled', 'jco-options.json')), false);
      await assert.rejects(createStoreWithout(), (error) => {
        assert.ok(error instanceof api.StoreError);
        assert.equal(error.code, 'invalid-config');
        assert.match(error.message, /needs the component: pass `component`/);
        return true;
      });
    } else {
      assert.equal(dir, path.join(js, 'component', 'transpiled') + path.sep);
      assert.ok(existsSync(path.join(dir, 'jco-options.json')));
    }
  });

  test('createStore without a connection is invalid-config', async () => {
    await assert.rejects(api.createStore({}), { name: 'StoreError', code: 'invalid-config' });
  });
});

function createStoreWithout() {
  // Never reaches the database: the component is missing first.
  return api.createStore({ connection: 'postgres://nobody@127.0.0.1:1/none' });
}
