// A fresh PostgreSQL database for a test file, made as the Rust harness makes one: created by the
// server's owner, migrated by running migrations/V*.sql in order as that owner, the runtime role granted
// its row privileges with the statements of `RuntimeRole::grant_statements` (written by
// tests/tests/node.rs for a placeholder database name, replaced here), and used as the runtime role.

import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

import pg from 'pg';

import { env } from './env.mjs';

let settings = null;

function database() {
  settings ??= JSON.parse(readFileSync(env.database, 'utf8'));
  return settings;
}

/** A plain client (the caller ends it). */
export async function connect(url) {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

/** Runs `fn` with a client on `url`, then ends it. */
export async function withClient(url, fn) {
  const client = await connect(url);
  try {
    return await fn(client);
  } finally {
    await client.end().catch(() => {});
  }
}

/** The migrations, in version order: `[name, sql]`. */
function migrations() {
  return readdirSync(env.migrations)
    .map((name) => ({ name, match: /^V(\d+)__.*\.sql$/.exec(name) }))
    .filter(({ match }) => match !== null)
    .sort((a, b) => Number(a.match[1]) - Number(b.match[1]))
    .map(({ name }) => [name, readFileSync(path.join(env.migrations, name), 'utf8')]);
}

/** Whether `error` is a concurrent catalog update that running the grants again resolves. */
function concurrentUpdate(error) {
  return (
    ['40001', '40P01'].includes(error.code) ||
    (error.code === 'XX000' && /tuple concurrently (updated|deleted)/.test(error.message))
  );
}

/**
 * A new database: `{ name, url (the runtime role), ownerUrl, drop() }`.
 */
export async function freshDatabase() {
  const { serverUrl, ownerUrl, runtimeUrl, placeholder, grants } = database();
  const name = `wsjs_${randomBytes(8).toString('hex')}`;
  const render = (text) => text.replaceAll(placeholder, name);
  await withClient(serverUrl, (admin) => admin.query(`CREATE DATABASE ${name}`));
  const owner = render(ownerUrl);
  await withClient(owner, async (client) => {
    for (const [file, sql] of migrations()) {
      try {
        await client.query(`BEGIN;\n${sql}\nCOMMIT;`);
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw new Error(`migration ${file}: ${error.message}`);
      }
    }
    // As `RuntimeRole::apply`: one batch, again after a concurrent catalog update.
    const batch = `BEGIN;\n${grants.map(render).join(';\n')};\nCOMMIT;`;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await client.query(batch);
        break;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        if (attempt >= 20 || !concurrentUpdate(error)) {
          throw new Error(`granting the runtime role: ${error.message}`);
        }
      }
    }
  });
  return {
    name,
    url: render(runtimeUrl),
    ownerUrl: owner,
    async drop() {
      await withClient(serverUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).catch(
        () => {},
      );
    },
  };
}
