// The JS API on the real component and PostgreSQL, as the runtime role: round trips, typed values, bad
// input as typed errors, the configuration, concurrency, users, cleanup, cookies.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { ManualClock, StoreError, createStore } from '../src/index.js';
import { freshDatabase, withClient } from './support/db.mjs';
import { component } from './support/env.mjs';

const START = 1_893_456_000_000_000n; // 2030-01-01T00:00:00Z
const DAY = 86_400_000_000n;

let db;
let clock;
let store;

before(async () => {
  db = await freshDatabase();
  clock = new ManualClock(START);
  store = await createStore({ connection: db.url, loaded: await component(), clock });
});

after(async () => {
  await store?.close();
  await db?.drop();
});

async function rows(where = '', values = []) {
  return withClient(db.ownerUrl, async (client) => {
    const result = await client.query(`SELECT count(*)::int AS n FROM wasm_sessions.sessions ${where}`, values);
    return result.rows[0].n;
  });
}

/** Asserts that `promise` rejects with a StoreError of `code` (and `kind`); returns the error. */
async function rejectsWith(promise, code, kind) {
  const error = await promise.then(
    () => assert.fail(`expected a ${code} error`),
    (e) => e,
  );
  assert.ok(error instanceof StoreError, `not a StoreError: ${error}`);
  assert.equal(error.code, code, error.message);
  if (kind !== undefined) {
    assert.equal(error.kind, kind, error.message);
  }
  return error;
}

describe('building a store', () => {
  test('the default configuration comes from the component, in JavaScript spelling', () => {
    assert.deepEqual({ ...store.config }, {
      cookieName: 'varel_session',
      maxAge: 86400,
      httpOnly: true,
      secure: true,
      sameSite: 'strict',
      domain: null,
      path: '/',
      idleTimeout: null,
      maxDataBytes: 1048576,
      concurrency: 'merge',
    });
  });

  test('the declared statements are recorded, every one a single data statement', () => {
    assert.ok(store.statements.length > 5);
    assert.ok(Object.isFrozen(store.statements));
    for (const statement of store.statements) {
      assert.match(statement, /wasm_sessions\.sessions/);
    }
  });

  test('overrides are validated by the component', async () => {
    const error = await rejectsWith(
      createStore({ connection: db.url, loaded: await component(), config: { sameSite: 'none', secure: false } }),
      'invalid-config',
    );
    assert.match(error.message, /secure/i);
    await rejectsWith(
      createStore({ connection: db.url, loaded: await component(), config: { cookieNmae: 'x' } }),
      'invalid-config',
    );
    const custom = await createStore({
      connection: db.url,
      loaded: await component(),
      config: { cookieName: 'sid', maxAge: 3600, idleTimeout: 600, domain: 'example.com' },
    });
    try {
      assert.equal(custom.config.cookieName, 'sid');
      assert.equal(custom.config.maxAge, 3600);
      assert.equal(custom.config.idleTimeout, 600);
      const session = await custom.newSession();
      const cookie = await custom.cookieHeader(session);
      assert.match(cookie, /^sid=[0-9a-f]{64}; /);
      assert.match(cookie, /Domain=example\.com/);
      assert.match(cookie, /Max-Age=3600/);
    } finally {
      await custom.close();
    }
  });
});

describe('round trips', () => {
  test('a new session is unsaved, with a fresh token, created now', async () => {
    const a = await store.newSession();
    const b = await store.newSession();
    assert.match(a.id, /^[0-9a-f]{64}$/);
    assert.match(a.handle, /^[0-9a-f]{64}$/);
    assert.notEqual(a.id, b.id);
    assert.equal(a.isSaved, false);
    assert.equal(a.version, 0n);
    assert.equal(a.createdAt, clock.now());
    assert.equal(a.expiresAt, clock.now() + DAY);
    assert.equal(a.absoluteExpiresAt, clock.now() + DAY);
    assert.deepEqual(a.data, {});
    assert.equal(a.userId, null);
    assert.equal(a.expiry, null);
    const before = await rows();
    await store.generateSessionId();
    assert.equal(await rows(), before, 'no SQL for new sessions');
  });

  test('save, load, update, delete', async () => {
    const session = await store.newSession();
    session.set('theme', 'dark');
    session.set('visits', 1);
    session.set('nested', { list: [1, 'two', null, true], deep: { x: 1.5 } });
    session.set('big', 2 ** 53 - 1);
    session.setUser(42n);
    session.setLabel('Firefox on Linux');
    assert.equal(session.hasChanges, true);
    await store.save(session);
    assert.equal(session.isSaved, true);
    assert.equal(session.version, 1n);
    assert.equal(session.hasChanges, false);
    assert.equal(await rows('WHERE id_hash = decode($1, \'hex\')', [session.handle]), 1);

    const loaded = await store.load(session.id);
    assert.deepEqual(loaded.data, {
      theme: 'dark',
      visits: 1,
      nested: { list: [1, 'two', null, true], deep: { x: 1.5 } },
      big: 2 ** 53 - 1,
    });
    assert.equal(loaded.userId, 42n);
    assert.equal(typeof loaded.userId, 'bigint');
    assert.equal(loaded.label, 'Firefox on Linux');
    assert.equal(loaded.createdAt, session.createdAt);
    assert.equal(loaded.expiresAt, session.expiresAt);
    assert.equal(loaded.version, 1n);

    clock.advance(10);
    loaded.set('visits', loaded.get('visits') + 1);
    loaded.remove('theme');
    await store.save(loaded);
    assert.equal(loaded.version, 2n);
    assert.equal(loaded.updatedAt, clock.now());
    const again = await store.load(session.id);
    assert.equal(again.get('visits'), 2);
    assert.equal(again.get('theme'), undefined);
    assert.equal(again.has('nested'), true);

    assert.equal(await store.delete(session.id), true);
    assert.equal(await store.delete(session.id), false);
    await rejectsWith(store.load(session.id), 'not-found');
  });

  test('values the database returns are sent back unchanged (large integers, long decimals)', async () => {
    const session = await store.newSession();
    await store.save(session);
    await withClient(db.ownerUrl, (client) =>
      client.query(
        `UPDATE wasm_sessions.sessions SET data = '{"huge": 123456789012345678901234567890, "exact": 0.1000000000000000000001}'::jsonb WHERE id_hash = decode($1, 'hex')`,
        [session.handle],
      ),
    );
    const loaded = await store.load(session.id);
    // Reading every key makes the whole data part of what the save expects unchanged (merge): the
    // expectation must be the stored text exactly, or the save would conflict.
    assert.deepEqual(loaded.keys().sort(), ['exact', 'huge']);
    loaded.set('other', 1);
    await store.save(loaded);
    const text = await withClient(db.ownerUrl, async (client) => {
      const r = await client.query(`SELECT data::text FROM wasm_sessions.sessions WHERE id_hash = decode($1, 'hex')`, [
        session.handle,
      ]);
      return r.rows[0].data;
    });
    assert.match(text, /"huge": 123456789012345678901234567890/);
    assert.match(text, /"exact": 0\.1000000000000000000001/);
  });

  test('regenerateId moves the session to a fresh token in the same write', async () => {
    const session = await store.newSession();
    session.set('cart', ['apple']);
    await store.save(session);
    const old = session.id;
    session.setUser(7);
    await store.regenerateId(session);
    assert.notEqual(session.id, old);
    await rejectsWith(store.load(old), 'not-found');
    const loaded = await store.load(session.id);
    assert.deepEqual(loaded.get('cart'), ['apple']);
    assert.equal(loaded.userId, 7n);
  });

  test('expiry modes round trip: on-inactivity, at, on-session-end', async () => {
    const idle = await store.newSession({ mode: 'on-inactivity', seconds: 600 });
    assert.deepEqual(idle.expiry, { mode: 'on-inactivity', seconds: 600 });
    assert.equal(idle.expiresAt, clock.now() + 600_000_000n);
    await store.save(idle);
    assert.deepEqual((await store.load(idle.id)).expiry, { mode: 'on-inactivity', seconds: 600 });

    const at = clock.now() + 3_600_000_123n;
    const fixed = await store.newSession({ mode: 'at', at });
    await store.save(fixed);
    const loaded = await store.load(fixed.id);
    assert.deepEqual(loaded.expiry, { mode: 'at', at });
    assert.equal(loaded.expiresAt, at, 'microsecond precision survives the database');

    const browser = await store.newSession({ mode: 'on-session-end' });
    await store.save(browser);
    const cookie = await store.cookieHeader(browser);
    assert.doesNotMatch(cookie, /Max-Age|Expires/);

    clock.advance(3601);
    await rejectsWith(store.load(fixed.id), 'expired');
    await rejectsWith(store.load(idle.id), 'expired');
  });

  test('loadFromCookie: absent, live and stale cookies', async () => {
    const absent = await store.loadFromCookie('');
    assert.equal(absent.cookie, 'absent');
    assert.equal(absent.session.isSaved, false);
    assert.equal(absent.removalCookie, null);

    const session = await store.newSession();
    session.set('k', 'v');
    await store.save(session);
    const live = await store.loadFromCookie(`other=1; varel_session=${session.id}`);
    assert.equal(live.cookie, 'live');
    assert.equal(live.session.id, session.id);
    assert.equal(live.session.get('k'), 'v');

    const stale = await store.loadFromCookie(`varel_session=${'0'.repeat(64)}`);
    assert.equal(stale.cookie, 'stale');
    assert.notEqual(stale.session.id, '0'.repeat(64));
    assert.match(stale.removalCookie, /^varel_session=;/);
  });

  test('commit deletes and writes in one call and returns the Set-Cookie value', async () => {
    const old = await store.newSession();
    await store.save(old);
    const fresh = await store.newSession();
    fresh.set('after', 'logout');
    const outcome = await store.commit({ delete: old.id, save: fresh });
    assert.equal(outcome.deleted, true);
    assert.equal(outcome.session, fresh);
    assert.equal(fresh.isSaved, true);
    assert.match(outcome.setCookie, new RegExp(`^varel_session=${fresh.id};`));
    await rejectsWith(store.load(old.id), 'not-found');

    const logout = await store.commit({ delete: fresh.id });
    assert.equal(logout.session, null);
    assert.equal(logout.setCookie, await store.removalCookieHeader());
  });
});

describe('concurrency', () => {
  test('disjoint changes merge; a changed read key conflicts', async () => {
    const session = await store.newSession();
    session.set('a', 1);
    session.set('b', 1);
    await store.save(session);
    const first = await store.load(session.id);
    const second = await store.load(session.id);
    first.set('a', 2);
    second.set('b', 2);
    await store.save(first);
    await store.save(second);
    assert.deepEqual((await store.load(session.id)).data, { a: 2, b: 2 });

    const reader = await store.load(session.id);
    const writer = await store.load(session.id);
    reader.set('c', reader.get('a') + 1);
    writer.set('a', 10);
    await store.save(writer);
    await rejectsWith(store.save(reader), 'conflict');
  });

  test('a saved session deleted meanwhile is not-found, never recreated', async () => {
    const session = await store.newSession();
    await store.save(session);
    const copy = await store.load(session.id);
    await store.delete(session.id);
    copy.set('x', 1);
    await rejectsWith(store.save(copy), 'not-found');
    assert.equal(await rows('WHERE id_hash = decode($1, \'hex\')', [session.handle]), 0);
  });
});

describe('users', () => {
  test('list, revoke, delete others, delete all', async () => {
    const user = 9_007_199_254_740_993n; // past 2^53: only a BigInt holds it
    const tokens = [];
    for (const label of ['phone', 'laptop', 'tablet']) {
      const session = await store.newSession();
      session.setUser(user);
      session.setLabel(label);
      session.set('device', label);
      await store.save(session);
      tokens.push(session);
      clock.advance(1);
    }
    const listed = await store.getUserSessions(user);
    assert.deepEqual(
      listed.map((s) => s.label),
      ['tablet', 'laptop', 'phone'],
      'newest first',
    );
    assert.equal(listed[0].userId, user);
    assert.deepEqual(listed[0].data, { device: 'tablet' });
    assert.equal(listed[0].handle, tokens[2].handle);

    assert.equal(await store.revokeSession(user, tokens[0].handle), true);
    assert.equal(await store.revokeSession(user + 1n, tokens[1].handle), false, "another user's handle");
    assert.equal(await store.deleteUserSessionsExcept(user, tokens[2].id), 1);
    assert.deepEqual(
      (await store.getUserSessions(user)).map((s) => s.handle),
      [tokens[2].handle],
    );
    assert.equal(await store.deleteUserSessions(user), 1);
    assert.deepEqual(await store.getUserSessions(user), []);
    assert.equal(await store.deleteUserSessions(12), 0, 'numbers are accepted for user ids');
  });
});

describe('cleanup', () => {
  test('removes exactly the expired sessions, in batches, by the store clock', async () => {
    await withClient(db.ownerUrl, (client) => client.query('DELETE FROM wasm_sessions.sessions'));
    for (let i = 0; i < 5; i += 1) {
      await store.save(await store.newSession({ mode: 'on-inactivity', seconds: 60 }));
    }
    const keeper = await store.newSession();
    await store.save(keeper);
    clock.advance(61);
    assert.equal(await store.countExpired(clock.now()), 5);
    const steps = [];
    assert.equal(await store.cleanup({ batchSize: 2, onProgress: (p) => steps.push(p) }), 5);
    assert.deepEqual(
      steps.map((s) => s.removedInBatch),
      [2, 2, 1],
    );
    assert.equal(await rows(), 1);
    await store.load(keeper.id);
    await rejectsWith(store.cleanupBatch(clock.now(), 0), 'invalid-data');
  });
});

describe('bad input answers with typed errors', () => {
  test('malformed tokens and handles are invalid-id, and send no SQL', async () => {
    for (const bad of ['', 'abc', 'Z'.repeat(64), '0'.repeat(63), `${'a'.repeat(64)} `, 'A'.repeat(64)]) {
      await rejectsWith(store.load(bad), 'invalid-id');
      await rejectsWith(store.delete(bad), 'invalid-id');
    }
    await rejectsWith(store.revokeSession(1, 'nope'), 'invalid-id');
    await rejectsWith(store.deleteUserSessionsExcept(1, 'nope'), 'invalid-id');
  });

  test('oversized data is invalid-data and writes nothing', async () => {
    const small = await createStore({ connection: db.url, loaded: await component(), config: { maxDataBytes: 1024 } });
    try {
      const session = await small.newSession();
      session.set('blob', 'x'.repeat(2000));
      const before = await rows();
      await rejectsWith(small.save(session), 'invalid-data');
      assert.equal(await rows(), before);
      assert.equal(session.isSaved, false, 'a failed save leaves the session unchanged');
    } finally {
      await small.close();
    }
  });

  test('NUL characters are invalid-data; values JSON cannot hold are invalid-value', async () => {
    const session = await store.newSession();
    session.set('nul', 'a\u0000b');
    await rejectsWith(store.save(session), 'invalid-data');
    assert.throws(() => session.set('n', 1n), (e) => e instanceof StoreError && e.code === 'invalid-value');
    assert.throws(() => session.set('f', () => 1), (e) => e instanceof StoreError && e.code === 'invalid-value');
    assert.throws(() => session.setUser(1.5), (e) => e instanceof StoreError && e.code === 'invalid-data');
    assert.throws(() => session.setUser(2n ** 63n), (e) => e instanceof StoreError && e.code === 'invalid-data');
  });

  test('an expiry the configuration does not allow is invalid-data', async () => {
    await rejectsWith(store.newSession({ mode: 'on-inactivity', seconds: 86401 }), 'invalid-data');
    await rejectsWith(store.newSession({ mode: 'on-inactivity', seconds: 0 }), 'invalid-data');
    await rejectsWith(store.newSession({ mode: 'at', at: clock.now() - 1n }), 'invalid-data');
    await rejectsWith(store.newSession({ mode: 'sometime' }), 'invalid-data');
  });
});
