// The boundary, with the misbehaving guest of the Rust sandbox tests (tests/misbehaving-guest): what it
// may send, what the runtime role refuses, and the sandbox's limits (deadline, memory, traps).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { StoreError, createStore } from '../src/index.js';
import { freshDatabase, withClient } from './support/db.mjs';
import { component, env } from './support/env.mjs';

const CALL_TIMEOUT_MS = 1500;

let db;
let hostile;
let honest;
let witness;

before(async () => {
  db = await freshDatabase();
  hostile = await createStore({
    connection: db.url,
    loaded: await component(env.misbehaving),
    callTimeoutMs: CALL_TIMEOUT_MS,
  });
  honest = await createStore({ connection: db.url, loaded: await component() });
  witness = await honest.newSession();
  witness.set('before', 'the attacks');
  await honest.save(witness);
});

after(async () => {
  await hostile?.close();
  await honest?.close();
  await db?.drop();
});

/** The error the misbehaving guest reports for attack `name` (its `load` always fails). */
async function attack(name) {
  return hostile.load(name).then(
    () => assert.fail('the misbehaving guest never succeeds'),
    (error) => {
      assert.ok(error instanceof StoreError, String(error));
      return error;
    },
  );
}

/** The honest store still reads and writes, and nothing was lost. */
async function assertIntact() {
  const loaded = await honest.load(witness.id);
  assert.equal(loaded.get('before'), 'the attacks');
  const session = await honest.newSession();
  session.set('after', 'the attack');
  await honest.save(session);
  assert.equal((await honest.load(session.id)).get('after'), 'the attack');
}

const refused = (error) => error.code === 'database' && error.kind === 'refused';

describe('only declared single data statements are sent', () => {
  test('the host records exactly the ten declared statements', () => {
    assert.equal(hostile.statements.length, 10);
    assert.ok(hostile.statements.includes('DROP TABLE wasm_sessions.sessions'));
  });

  test('an index past the declared list is refused unsent', async () => {
    const error = await attack('undeclared:drop');
    assert.ok(refused(error), error.message);
    assert.equal(error.detail, 'the component did not declare statement 10: it declared 10');
    await assertIntact();
  });

  test('ten thousand distinct undeclared indexes are all refused', async () => {
    // Its own store: 10000 import calls through jco's glue take most of a second, close to the short
    // deadline the other attacks use.
    const patient = await createStore({ connection: db.url, loaded: await component(env.misbehaving) });
    try {
      const error = await patient.load('undeclared:many').catch((e) => e);
      assert.ok(refused(error), error.message);
      assert.match(error.detail, /^10000 of 10000/);
    } finally {
      await patient.close();
    }
    await assertIntact();
  });

  test('declared statements that are not single data statements are refused unsent', async () => {
    for (const [index, what] of [
      [0, 'DROP TABLE'],
      [3, 'COPY TO PROGRAM'],
      [4, 'CREATE TEMP TABLE'],
      [5, 'SET search_path'],
      [6, 'BEGIN'],
    ]) {
      const error = await attack(`declared:${index}`);
      assert.ok(refused(error), `${what}: ${error.message}`);
      assert.match(error.detail, /only single data statements/);
    }
    await assertIntact();
  });

  test('what the role may not read is denied by the database', async () => {
    const authid = await attack('declared:1');
    assert.equal(authid.code, 'database');
    assert.equal(authid.kind, 'query-failed');
    assert.match(authid.detail, /^42501: permission denied/);
    // The JS harness runs the migrations without refinery, so its history table does not exist here.
    const history = await attack('declared:2');
    assert.equal(history.kind, 'query-failed');
    assert.match(history.detail, /^(42501: permission denied|42P01: relation "public.refinery_schema_history" does not exist)/);
  });

  test('a setting changed through a SELECT cannot redirect the schema-qualified statements', async () => {
    const error = await attack('declared:8');
    assert.equal(error.code, 'unexpected-result', 'set_config itself runs');
    await assertIntact();
  });
});

describe('the sandbox limits', () => {
  test('pg_sleep past the deadline fails the call, cancels the statement, and the next call works', async () => {
    const started = Date.now();
    const error = await attack('sleep-in-host');
    const elapsed = Date.now() - started;
    assert.equal(error.code, 'deadline-exceeded', error.message);
    assert.ok(elapsed >= CALL_TIMEOUT_MS - 50 && elapsed < CALL_TIMEOUT_MS + 1000, `took ${elapsed} ms`);
    let sleeping = -1;
    for (let i = 0; i < 50 && sleeping !== 0; i += 1) {
      sleeping = await withClient(db.ownerUrl, async (client) => {
        const r = await client.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3600)' AND state = 'active'",
        );
        return r.rows[0].n;
      });
      if (sleeping !== 0) {
        await sleep(100);
      }
    }
    assert.equal(sleeping, 0, 'the abandoned statement is still running');
    const harmless = await attack('declared:9');
    assert.equal(harmless.code, 'unexpected-result', 'the bridge serves the next call');
    assert.match(harmless.detail, /ran: SELECT 1 AS one/);
  });

  test('an endless loop is stopped by the deadline and the store keeps serving', async () => {
    const started = Date.now();
    const error = await attack('loop');
    assert.equal(error.code, 'deadline-exceeded');
    assert.ok(Date.now() - started < CALL_TIMEOUT_MS + 1000);
    assert.equal(await hostile.removalCookieHeader(), '');
    await assertIntact();
  });

  test('a guest that allocates without bound is stopped by its memory limit', async () => {
    const error = await attack('hoard');
    assert.equal(error.code, 'memory-limit', error.message);
    assert.ok(error.limit === 64 * 1024 * 1024);
    assert.equal(await hostile.removalCookieHeader(), '');
    await assertIntact();
  });

  test('a guest that panics is a guest error, not a crash', async () => {
    const error = await attack('panic');
    assert.equal(error.code, 'guest', error.message);
    const again = await attack('declared:9');
    assert.equal(again.code, 'unexpected-result', 'a fresh instance serves the next call');
  });

  test('with two workers, other calls are served while a hostile one spins', async () => {
    const pair = await createStore({
      connection: db.url,
      loaded: await component(env.misbehaving),
      callTimeoutMs: CALL_TIMEOUT_MS,
      workers: 2,
    });
    try {
      const spinning = pair.load('loop').catch((e) => e);
      let served = 0;
      const until = Date.now() + CALL_TIMEOUT_MS / 2;
      while (Date.now() < until) {
        assert.equal(await pair.removalCookieHeader(), '');
        served += 1;
      }
      assert.ok(served > 0);
      assert.equal((await spinning).code, 'deadline-exceeded');
    } finally {
      await pair.close();
    }
  });
});
