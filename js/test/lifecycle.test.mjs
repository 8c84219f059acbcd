// No call leaves a worker or a connection hanging: a database that is down or silent answers within the
// deadline with a typed error, `close()` ends everything, and a closed store says so.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';

import { StoreError, createStore, transpileCached } from '../src/index.js';
import { freshDatabase, withClient } from './support/db.mjs';
import { component, env } from './support/env.mjs';

const TOKEN = 'ab'.repeat(32);

let db;

before(async () => {
  db = await freshDatabase();
});

after(async () => {
  await db?.drop();
});

async function failure(promise) {
  const error = await promise.then(
    () => assert.fail('expected an error'),
    (e) => e,
  );
  assert.ok(error instanceof StoreError, String(error));
  return error;
}

describe('a database that is down', () => {
  test('a refused connection is database/connection-failed, at once', async () => {
    const store = await createStore({
      connection: 'postgres://nobody@127.0.0.1:1/nothing',
      loaded: await component(),
      callTimeoutMs: 5000,
    });
    try {
      const started = Date.now();
      const error = await failure(store.load(TOKEN));
      assert.equal(error.code, 'database');
      assert.equal(error.kind, 'connection-failed');
      assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms`);
      // Bad input is still refused without the database.
      assert.equal((await failure(store.load('nope'))).code, 'invalid-id');
      // The store keeps answering the same way, call after call.
      assert.equal((await failure(store.delete(TOKEN))).kind, 'connection-failed');
    } finally {
      await store.close();
    }
  });

  test('a server that accepts but never answers: connection-failed after the connect timeout', async () => {
    const silent = net.createServer(() => {});
    await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address();
    const store = await createStore({
      connection: `postgres://nobody@127.0.0.1:${port}/nothing`,
      loaded: await component(),
      connectTimeoutMs: 300,
      callTimeoutMs: 5000,
    });
    const slow = await createStore({
      connection: `postgres://nobody@127.0.0.1:${port}/nothing`,
      loaded: await component(),
      connectTimeoutMs: 10_000,
      callTimeoutMs: 700,
    });
    try {
      let started = Date.now();
      const error = await failure(store.load(TOKEN));
      assert.equal(error.code, 'database');
      assert.equal(error.kind, 'connection-failed');
      assert.ok(Date.now() - started < 2000);
      // A deadline shorter than the connect timeout wins.
      started = Date.now();
      assert.equal((await failure(slow.load(TOKEN))).code, 'deadline-exceeded');
      assert.ok(Date.now() - started < 1700);
      assert.equal((await failure(slow.load(TOKEN))).code, 'deadline-exceeded', 'and again, not stuck');
    } finally {
      await store.close();
      await slow.close();
      silent.close();
    }
  });
});

describe('close', () => {
  test('a closed store refuses calls with closed, and close is idempotent', async () => {
    const store = await createStore({ connection: db.url, loaded: await component() });
    const session = await store.newSession();
    await store.save(session);
    await store.close();
    assert.equal((await failure(store.load(session.id))).code, 'closed');
    await store.close();
  });

  test('closing during a statement fails the call with closed and cancels the statement', async () => {
    const store = await createStore({
      connection: db.url,
      loaded: await component(env.misbehaving),
      callTimeoutMs: 30_000,
    });
    const call = store.load('sleep-in-host').catch((e) => e);
    // Wait until the statement runs on the server.
    const active = async () =>
      withClient(db.ownerUrl, async (client) => {
        const r = await client.query(
          "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(3600)' AND state = 'active'",
        );
        return r.rows[0].n;
      });
    for (let i = 0; i < 100 && (await active()) === 0; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(await active(), 1);
    await store.close();
    const error = await call;
    assert.ok(error instanceof StoreError);
    assert.equal(error.code, 'closed');
    let left = 1;
    for (let i = 0; i < 50 && left !== 0; i += 1) {
      left = await active();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(left, 0, 'the statement was cancelled');
  });

  test('after close nothing keeps the process alive (workers, connections, timers)', async () => {
    // A child process that uses a store, closes it, and must then exit by itself.
    const script = `
      import { createStore, loadComponent } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
      const loaded = await loadComponent({ dir: process.env.BINDINGS });
      const store = await createStore({ connection: process.env.URL, loaded, workers: 2 });
      const s = await store.newSession();
      s.set('k', 1);
      await store.save(s);
      await store.load(s.id);
      await store.close();
      console.log('closed');
    `;
    const dir = await transpileCached(readFileSync(env.component), env.cache);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, URL: db.url, BINDINGS: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const exited = await new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill();
        resolve(null);
      }, 20_000);
      child.on('exit', (code) => {
        clearTimeout(timer);
        resolve(code);
      });
    });
    assert.equal(exited, 0, `the process did not exit by itself: ${output}`);
    assert.match(output, /closed/);
  });
});

