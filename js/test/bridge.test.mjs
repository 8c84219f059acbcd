// The bridge alone, with stand-in bindings instead of the component: each "export" calls one import
// directly, so the imports' host side is tested exactly (entropy limit, clock, refusals, deadlines while
// blocked and while spinning, stale answers, close).

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';

import { Bridge, MAX_RANDOM_BYTES } from '../src/bridge.js';
import { StoreError } from '../src/errors.js';
import { refusal, runnable } from '../src/statements.js';

/** Bindings with jco's `instantiate` signature whose exports exercise the imports. */
const SOURCE = `
export function instantiate(getCoreModule, imports) {
  const sql = imports['wasm-sessions:store/sql'];
  const entropy = imports['wasm-sessions:store/entropy'];
  const clock = imports['wasm-sessions:store/clock'];
  class ComponentError extends Error {
    constructor(payload) { super('err'); Object.defineProperty(this, 'payload', { value: payload }); }
  }
  const store = {
    bytes: (n) => entropy.randomBytes(n),
    now: () => clock.now(),
    query: (index) => {
      try {
        return sql.sqlQuery(index, []);
      } catch (e) {
        if (e && Object.prototype.hasOwnProperty.call(e, 'payload')) throw new ComponentError(e.payload);
        throw e;
      }
    },
    spin: () => { for (;;) {} },
    fail: () => { throw new ComponentError({ tag: 'not-found' }); },
  };
  return { 'wasm-sessions:store/store@0.2.0': store };
}
`;

const component = { source: SOURCE, modules: {}, memoryLimit: 64 * 1024 * 1024 };

const bridges = [];

/**
 * A bridge whose "database" answers after `delayMs` (or never, for Infinity). `statements` are the ones
 * the main thread admits (the store's `admit`, by index), `pinned` the ones the worker is told about.
 */
function bridge({ clock = null, delayMs = 0, statements = ['SELECT 1', 'SELECT 2'], pinned = ['SELECT 1'] } = {}) {
  const sent = [];
  const allowed = runnable(statements);
  const b = new Bridge({
    component,
    clock,
    admit: (index) => {
      const refused = refusal(allowed, index);
      return refused === null ? { index, text: statements[index] } : { refused };
    },
    sql: {
      connection: 'postgres://unused@127.0.0.1:1/x',
      connectTimeoutMs: 100,
      maxResultBytes: 1000,
      describeCache: new Map(),
      typeNames: new Map(),
    },
    resourceLimits: { maxOldGenerationSizeMb: 64 },
  });
  // The SQL side stands in for a database: counts what reaches it.
  b.sql.run = async (index, text) => {
    sent.push(text);
    if (delayMs === Infinity) {
      return new Promise(() => {});
    }
    await new Promise((r) => setTimeout(r, delayMs));
    return { ok: { rows: [[{ tag: 'int64', val: 1n }]], rowsAffected: 1n } };
  };
  b.sql.abandon = () => sent.push('abandoned');
  b.pin(pinned);
  bridges.push(b);
  return { b, sent };
}

after(async () => {
  await Promise.all(bridges.map((b) => b.close()));
});

async function rejection(promise) {
  const error = await promise.then(
    () => assert.fail('expected a rejection'),
    (e) => e,
  );
  assert.ok(error instanceof StoreError, String(error));
  return error;
}

describe('the bridge', () => {
  test('entropy: exactly the bytes asked for, up to 4096; more is a trap', async () => {
    const { b } = bridge();
    for (const n of [0, 1, 32, MAX_RANDOM_BYTES]) {
      const { ok } = await b.call('bytes', [n], 5000);
      assert.ok(ok instanceof Uint8Array);
      assert.equal(ok.length, n);
    }
    const a = (await b.call('bytes', [32], 5000)).ok;
    const c = (await b.call('bytes', [32], 5000)).ok;
    assert.notDeepEqual([...a], [...c]);
    const error = await rejection(b.call('bytes', [MAX_RANDOM_BYTES + 1], 5000));
    assert.equal(error.code, 'guest');
    assert.match(error.message, /random-bytes asked for 4097 bytes; the limit is 4096/);
    assert.equal((await b.call('bytes', [1], 5000)).ok.length, 1, 'usable afterwards');
  });

  test('clock: the system clock in microseconds, or the application clock', async () => {
    const { b } = bridge();
    const before = BigInt(Date.now()) * 1000n;
    const { ok } = await b.call('now', [], 5000);
    assert.equal(typeof ok, 'bigint');
    assert.ok(ok >= before - 1000n && ok <= BigInt(Date.now()) * 1000n + 1000n);
    const { b: manual } = bridge({ clock: { now: () => 1_893_456_000_000_001n } });
    assert.equal((await manual.call('now', [], 5000)).ok, 1_893_456_000_000_001n);
  });

  test('statements by index: a pinned one is sent as its text; others are refused in the worker and again on the main thread', async () => {
    const { b, sent } = bridge();
    const { ok } = await b.call('query', [0], 5000);
    assert.deepEqual(ok, { rows: [[{ tag: 'int64', val: 1n }]], rowsAffected: 1n }, 'no column names');
    for (const index of [2, 4294967295]) {
      const undeclared = await b.call('query', [index], 5000);
      assert.deepEqual(undeclared.err, {
        tag: 'refused',
        val: `the component did not declare statement ${index}: it declared 1`,
      });
    }
    // Declared to the main thread but not pinned in the worker: refused before the round trip.
    const unpinned = await b.call('query', [1], 5000);
    assert.equal(unpinned.err.tag, 'refused');
    assert.deepEqual(sent, ['SELECT 1']);
    // Pinned in the worker but not admitted by the main thread: refused there, unsent.
    const { b: other, sent: otherSent } = bridge({ statements: ['SELECT 1'], pinned: ['SELECT 1', 'SELECT 3'] });
    const refusedByMain = await other.call('query', [1], 5000);
    assert.deepEqual(refusedByMain.err, { tag: 'refused', val: 'the component did not declare statement 1: it declared 1' });
    // Declared and pinned, but not a single data statement: refused in the worker, unsent.
    const { b: third, sent: thirdSent } = bridge({ statements: ['SET x = 1'], pinned: ['SET x = 1'] });
    const notData = await third.call('query', [0], 5000);
    assert.deepEqual(notData.err, {
      tag: 'refused',
      val: 'only single data statements (SELECT, INSERT, UPDATE, DELETE, WITH) are run',
    });
    assert.deepEqual(otherSent, []);
    assert.deepEqual(thirdSent, []);
  });

  test('an export error is a value; an unknown export is invalid-data', async () => {
    const { b } = bridge();
    assert.deepEqual(await b.call('fail', [], 5000), { err: { tag: 'not-found' } });
    assert.equal((await rejection(b.call('nope', [], 5000))).code, 'invalid-data');
  });

  test('a deadline while the guest waits for the database: deadline-exceeded, the statement abandoned, the next call served', async () => {
    const { b, sent } = bridge({ delayMs: Infinity });
    await b.call('bytes', [1], 10_000); // the worker is up: the short deadline is all the call's
    const started = Date.now();
    const error = await rejection(b.call('query', [0], 300));
    assert.equal(error.code, 'deadline-exceeded');
    assert.ok(Date.now() - started < 1300);
    assert.deepEqual(sent, ['SELECT 1', 'abandoned']);
    assert.equal((await b.call('bytes', [4], 5000)).ok.length, 4, 'a fresh worker serves the next call');
  });

  test('a late answer after the deadline is dropped, not delivered to the next call', async () => {
    const { b } = bridge({ delayMs: 500 });
    await b.call('bytes', [1], 10_000);
    assert.equal((await rejection(b.call('query', [0], 200))).code, 'deadline-exceeded');
    await new Promise((r) => setTimeout(r, 400));
    const fresh = await b.call('query', [0], 5000);
    assert.equal(fresh.ok.rowsAffected, 1n);
  });

  test('a spinning guest is stopped at the deadline and the bridge stays usable', async () => {
    const { b } = bridge();
    await b.call('bytes', [1], 10_000);
    const started = Date.now();
    assert.equal((await rejection(b.call('spin', [], 300))).code, 'deadline-exceeded');
    assert.ok(Date.now() - started < 1300);
    assert.equal((await b.call('bytes', [2], 5000)).ok.length, 2);
  });

  test('close ends the worker; a call in progress and later calls fail with closed', async () => {
    const { b } = bridge({ delayMs: Infinity });
    const pending = rejection(b.call('query', [0], 10_000));
    await new Promise((r) => setTimeout(r, 100));
    await b.close();
    assert.equal((await pending).code, 'closed');
    assert.equal(b.worker, null);
    assert.equal((await rejection(b.call('bytes', [1], 1000))).code, 'closed');
  });
});
