// Pieces without a database: the statement rule (the Rust host's cases), the exact value conversions, the
// raw JSON members, the memory cap, the session's change tracking.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';

import { isDataStatement } from '../src/statements.js';
import { capMemories } from '../src/wasm-limits.js';
import { Session, objectMembers } from '../src/session.js';
import {
  byteaFromText,
  floatParam,
  textArrayFromText,
  textArrayParam,
  timestampFromText,
  timestampParam,
} from '../src/values.js';
import { StoreError } from '../src/index.js';
import { env } from './support/env.mjs';

describe('isDataStatement (host/src/driver.rs cases)', () => {
  test('data statements are recognised after blanks and comments', () => {
    for (const ok of [
      'SELECT 1',
      'select 1',
      '  \n\tSELECT(1)',
      '-- a comment\nINSERT INTO t VALUES (1)',
      '/* a /* nested */ comment */ UPDATE t SET a = 1',
      'WITH x AS (SELECT 1) SELECT * FROM x',
      'DELETE FROM t',
      'VALUES (1)',
      'TABLE t',
      '\u0085\u3000SELECT 1',
    ]) {
      assert.ok(isDataStatement(ok), JSON.stringify(ok));
    }
  });

  test('everything that can change connection state is not a data statement', () => {
    for (const bad of [
      '',
      '   ',
      'BEGIN',
      'begin; select 1',
      'START TRANSACTION',
      'COMMIT',
      'SET search_path TO pg_temp',
      'RESET ALL',
      'CREATE TEMP TABLE sessions (id int)',
      'DROP TABLE wasm_sessions.sessions',
      "COPY (SELECT 1) TO PROGRAM 'id'",
      'DO $$ BEGIN END $$',
      'CALL p()',
      'LOCK TABLE t',
      'LISTEN x',
      'DISCARD ALL',
      'PREPARE p AS SELECT 1',
      'SELECTED',
      'SELECT_1',
      'SELECT$1',
      '/* unterminated SELECT 1',
      '-- only a comment',
      '\ufeffSELECT 1',
    ]) {
      assert.ok(!isDataStatement(bad), JSON.stringify(bad));
    }
  });
});

describe('values', () => {
  test('timestamps: text and microseconds convert exactly both ways', () => {
    const cases = [
      [0n, '1970-01-01 00:00:00.000000+00'],
      [1n, '1970-01-01 00:00:00.000001+00'],
      [-1n, '1969-12-31 23:59:59.999999+00'],
      [1_893_456_000_000_000n, '2030-01-01 00:00:00.000000+00'],
      [951_782_400_000_000n, '2000-02-29 00:00:00.000000+00'],
      [-62_135_596_800_000_000n, '0001-01-01 00:00:00.000000+00'],
      [-62_135_596_800_000_001n, '0001-12-31 23:59:59.999999+00 BC'],
    ];
    for (const [micros, text] of cases) {
      assert.equal(timestampParam(micros), text);
      assert.equal(timestampFromText(text), micros);
    }
    assert.equal(timestampFromText('2030-01-01 01:30:00+01:30'), 1_893_456_000_000_000n);
    assert.equal(timestampFromText('2030-01-01 00:00:00.5'), 1_893_456_000_500_000n);
    assert.equal(timestampFromText('1900-01-01 00:00:00+00:17:30'), -2_208_989_850_000_000n);
    assert.equal(timestampParam(-(2n ** 63n)), '-infinity');
    assert.throws(() => timestampFromText('01/01/2030'));
  });

  test('floats, bytea, text arrays', () => {
    assert.equal(floatParam(-0), '-0');
    assert.equal(floatParam(0.1), '0.1');
    assert.equal(floatParam(1e21), '1e+21');
    assert.equal(floatParam(NaN), 'NaN');
    assert.equal(floatParam(-Infinity), '-Infinity');
    assert.deepEqual([...byteaFromText('\\x00ff10')], [0, 255, 16]);
    assert.throws(() => byteaFromText('\\000'));
    assert.equal(textArrayParam(['a', 'b"c', 'd\\e', '']), '{"a","b\\"c","d\\\\e",""}');
    assert.deepEqual(textArrayFromText('{a,"b\\"c","d\\\\e","",NULLX,"NULL"}'), ['a', 'b"c', 'd\\e', '', 'NULLX', 'NULL']);
    assert.deepEqual(textArrayFromText('{}'), []);
    assert.deepEqual(textArrayFromText('[0:1]={x,y}'), ['x', 'y']);
    assert.throws(() => textArrayFromText('{a,NULL}'), /NULL/);
    assert.throws(() => textArrayFromText('{{a},{b}}'), /dimensions/);
    assert.throws(() => textArrayFromText('[1:1][1:1]={{a}}'), /dimensions/);
  });
});

describe('raw JSON members', () => {
  test('top-level members keep their text', () => {
    assert.deepEqual(objectMembers('{}'), []);
    assert.deepEqual(objectMembers(' { } '), []);
    assert.deepEqual(objectMembers('{"a": 1, "b\\"": [1, {"c": "}"}], "d": 123456789012345678901234567890}'), [
      ['a', '1'],
      ['b"', '[1, {"c": "}"}]'],
      ['d', '123456789012345678901234567890'],
    ]);
    for (const bad of ['', '[]', '{"a"}', '{"a": }', '{"a": 1', '{"a": 1} x', '"s"']) {
      assert.throws(() => objectMembers(bad), StoreError, bad);
    }
  });
});

describe('the session tracks what a save must send (as the Rust host)', () => {
  const wit = {
    id: 'a'.repeat(64),
    handle: 'b'.repeat(64),
    data: '{"keep": 1, "drop": 2, "read": {"x": 1}}',
    userId: 5n,
    label: undefined,
    expiry: undefined,
    createdAt: 1n,
    expiresAt: 2n,
    absoluteExpiresAt: 2n,
    updatedAt: 1n,
    version: 3n,
    isSaved: true,
  };

  test('nothing changed, nothing read: an empty request', () => {
    const request = new Session(wit).saveRequest(false);
    assert.deepEqual(request.changes, {
      set: [],
      removed: [],
      cleared: false,
      user: { tag: 'none' },
      label: { tag: 'none' },
      expiry: { tag: 'none' },
    });
    assert.deepEqual(request.expected, { keys: [], allData: undefined, user: { tag: 'none' }, expiry: { tag: 'none' } });
    assert.equal(request.session.data, '{"keep":1,"drop":2,"read":{"x": 1}}');
  });

  test('sets, removes, reads, the user and the expiry', () => {
    const s = new Session(wit);
    s.get('read');
    s.set('new', [1]);
    s.set('keep', 1); // unchanged: not a change
    s.remove('drop');
    s.remove('absent');
    s.setUser(6);
    s.setLabel('phone');
    s.setExpiry({ mode: 'on-inactivity', seconds: 60 });
    const { changes, expected } = s.saveRequest(true);
    assert.deepEqual(changes.set, [['new', '[1]']]);
    assert.deepEqual(changes.removed, ['drop']);
    assert.deepEqual(changes.user, { tag: 'some', val: 6n });
    assert.deepEqual(changes.label, { tag: 'some', val: 'phone' });
    assert.deepEqual(changes.expiry, { tag: 'some', val: { tag: 'on-inactivity', val: 60n } });
    assert.deepEqual(expected.keys, [
      ['drop', '2'],
      ['new', undefined],
      ['read', '{"x": 1}'],
    ]);
    assert.equal(expected.allData, undefined);
    assert.deepEqual(expected.user, { tag: 'some', val: 5n });
    assert.deepEqual(expected.expiry, { tag: 'some', val: undefined });
  });

  test('clear and reading all data', () => {
    const s = new Session(wit);
    assert.deepEqual(s.data, { keep: 1, drop: 2, read: { x: 1 } });
    s.clear();
    s.set('fresh', true);
    s.clearUser();
    const { changes, expected } = s.saveRequest(false);
    assert.equal(changes.cleared, true);
    assert.deepEqual(changes.set, [['fresh', 'true']]);
    assert.deepEqual(changes.removed, [], 'cleared keys are not listed as removed');
    assert.deepEqual(changes.user, { tag: 'some', val: undefined });
    assert.equal(expected.allData, '{"keep":1,"drop":2,"read":{"x": 1}}');
  });
});

describe('the memory cap', () => {
  test('every defined memory of the component gets the 64 MiB maximum', async () => {
    const { transpileComponent } = await import('../src/component.js');
    const files = await transpileComponent(readFileSync(env.component));
    let capped = 0;
    for (const [name, bytes] of Object.entries(files)) {
      if (!name.endsWith('.wasm')) {
        continue;
      }
      const out = capMemories(bytes, 64 * 1024 * 1024);
      capped += out.capped;
      const module = await WebAssembly.compile(out.bytes);
      for (const d of WebAssembly.Module.exports(module)) {
        assert.ok(d.name !== undefined);
      }
      // Idempotent: a second pass finds nothing above the cap.
      assert.equal(capMemories(out.bytes, 64 * 1024 * 1024).capped, 0);
    }
    assert.ok(capped >= 1, 'the component defines a memory');
  });

  test('a memory with a lower maximum keeps it; a module without memory is unchanged', () => {
    // (module (memory 1 2))
    const small = Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 4, 1, 1, 1, 2);
    assert.equal(capMemories(small).capped, 0);
    assert.deepEqual([...capMemories(small).bytes], [...small]);
    // (module (memory 1))
    const open = Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 3, 1, 0, 1);
    const capped = capMemories(open, 2 * 65536);
    assert.equal(capped.capped, 1);
    assert.deepEqual([...capped.bytes], [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 4, 1, 1, 1, 2]);
    const empty = Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0);
    assert.deepEqual([...capMemories(empty).bytes], [...empty]);
  });
});
