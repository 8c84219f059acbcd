// The `sql` import's driver on real PostgreSQL: every sql-value variant to and from its types, exactly;
// the error classes by SQLSTATE; parameters checked against the types the server infers.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { SqlConnection, classifyError } from '../src/sql.js';
import { freshDatabase, withClient } from './support/db.mjs';

let db;
let sql;
let next = 1000;

const deadline = () => Date.now() + 10_000;

/** Runs `text` with `params` (sql-values) as the owner, on the driver under test. */
const run = (text, params = []) => sql.run(next++, text, params, deadline());

async function ok(text, params) {
  const outcome = await run(text, params);
  assert.ok('ok' in outcome, `${text}: ${JSON.stringify(outcome.err)}`);
  return outcome.ok;
}

async function err(text, params) {
  const outcome = await run(text, params);
  assert.ok('err' in outcome, `${text} succeeded`);
  return outcome.err;
}

/** The one value `SELECT $1::type` gives back for `value`. */
async function echo(type, value) {
  const rows = (await ok(`SELECT $1::${type} AS v`, [value])).rows;
  return rows[0][0];
}

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);
const OFFSET = 946_684_800_000_000n;

before(async () => {
  db = await freshDatabase();
  await withClient(db.ownerUrl, (c) =>
    c.query('CREATE TABLE t (id int PRIMARY KEY, small smallint, r real, name varchar(10), tags text[])'),
  );
  sql = new SqlConnection({
    connection: db.ownerUrl,
    connectTimeoutMs: 5000,
    maxResultBytes: 1 << 20,
    describeCache: new Map(),
    typeNames: new Map(),
  });
});

after(async () => {
  await sql?.close();
  await db?.drop();
});

describe('values', () => {
  test('null, booleans, integers', async () => {
    assert.deepEqual(await echo('text', { tag: 'null' }), { tag: 'null' });
    assert.deepEqual(await echo('boolean', { tag: 'boolean', val: true }), { tag: 'boolean', val: true });
    assert.deepEqual(await echo('boolean', { tag: 'boolean', val: false }), { tag: 'boolean', val: false });
    for (const v of [0n, -1n, I64_MAX, I64_MIN, 9_007_199_254_740_993n]) {
      assert.deepEqual(await echo('bigint', { tag: 'int64', val: v }), { tag: 'int64', val: v });
    }
    assert.deepEqual(await echo('integer', { tag: 'int64', val: -(2n ** 31n) }), { tag: 'int64', val: -(2n ** 31n) });
    assert.deepEqual(await echo('smallint', { tag: 'int64', val: 32767n }), { tag: 'int64', val: 32767n });
  });

  test('floats: double exactly, real as the Rust host narrows it', async () => {
    for (const v of [0, -0, 1.5, 0.1, 1e300, -2.2250738585072014e-308, 5e-324, Number.MAX_VALUE, Infinity, -Infinity]) {
      const back = await echo('double precision', { tag: 'float64', val: v });
      assert.ok(Object.is(back.val, v), `${v} came back as ${back.val}`);
    }
    assert.ok(Number.isNaN((await echo('double precision', { tag: 'float64', val: NaN })).val));
    for (const v of [0.1, 1 / 3, 16777217, 3.4e38]) {
      assert.equal((await echo('real', { tag: 'float64', val: v })).val, Math.fround(v));
    }
    assert.equal((await echo('real', { tag: 'float64', val: 1e300 })).val, Infinity, 'narrowed to infinity, as f64 as f32');
  });

  test('text, json (its text, unparsed), bytes, text arrays', async () => {
    for (const s of ['', 'plain', 'quote " backslash \\ comma , braces {} NULL', 'é ü 日本 🎉']) {
      assert.deepEqual(await echo('text', { tag: 'text', val: s }), { tag: 'text', val: s });
      assert.deepEqual(await echo('text[]', { tag: 'text-array', val: [s, s] }), { tag: 'text-array', val: [s, s] });
    }
    assert.deepEqual(await echo('text[]', { tag: 'text-array', val: [] }), { tag: 'text-array', val: [] });
    assert.deepEqual(await echo('varchar', { tag: 'text', val: 'v' }), { tag: 'text', val: 'v' });
    assert.deepEqual(await echo('name', { tag: 'text', val: 'n' }), { tag: 'text', val: 'n' });
    assert.deepEqual(await echo('json', { tag: 'json', val: '{"b": 1,  "a": [1.50]}' }), {
      tag: 'json',
      val: '{"b": 1,  "a": [1.50]}',
    });
    assert.deepEqual(await echo('jsonb', { tag: 'json', val: '{"b":1,"a":123456789012345678901234567890}' }), {
      tag: 'json',
      val: '{"a": 123456789012345678901234567890, "b": 1}',
    });
    const bytes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const back = await echo('bytea', { tag: 'bytes', val: bytes });
    assert.equal(back.tag, 'bytes');
    assert.deepEqual([...back.val], [...bytes]);
    assert.deepEqual([...(await echo('bytea', { tag: 'bytes', val: new Uint8Array() })).val], []);
  });

  test('timestamps: microseconds since 1970, exactly, for timestamptz and timestamp', async () => {
    const values = [
      0n,
      1n,
      -1n,
      1_893_456_000_123_456n,
      OFFSET,
      -62_135_596_800_000_000n, // 0001-01-01
      -62_135_596_800_000_001n, // 1 BC, the last microsecond
      -210_866_803_200_000_000n, // 4714-11-24 BC: the first microsecond PostgreSQL holds
      I64_MAX, // in year 294247: every s64 past 2000 fits
    ];
    for (const type of ['timestamptz', 'timestamp']) {
      for (const v of values) {
        assert.deepEqual(await echo(type, { tag: 'timestamp', val: v }), { tag: 'timestamp', val: v }, `${type} ${v}`);
      }
    }
    // The server's own rendering agrees (a time zone other than UTC changes nothing).
    const row = (await ok("SELECT '2030-01-01 00:00:00.000001+00'::timestamptz, '1999-12-31 23:59:59.5-01:30'::timestamptz")).rows[0];
    assert.deepEqual(row, [
      { tag: 'timestamp', val: 1_893_456_000_000_001n },
      { tag: 'timestamp', val: 946_684_799_500_000n + 5_400_000_000n },
    ]);
    // The infinities read as the Rust host's saturating conversion gives them.
    const inf = (await ok("SELECT 'infinity'::timestamptz, '-infinity'::timestamptz")).rows[0];
    assert.deepEqual(inf, [
      { tag: 'timestamp', val: I64_MAX },
      { tag: 'timestamp', val: I64_MIN + OFFSET },
    ]);
    // i64::MIN saturates to -infinity on the way in, as in the Rust host.
    assert.deepEqual(await echo('timestamptz', { tag: 'timestamp', val: I64_MIN }), {
      tag: 'timestamp',
      val: I64_MIN + OFFSET,
    });
    const out = await err('SELECT $1::timestamptz', [{ tag: 'timestamp', val: -210_866_803_200_000_001n }]);
    assert.equal(out.tag, 'bad-parameter');
    assert.match(out.val, /^22008: timestamp out of range/);
  });

  test('row sets: rows by position and rows affected, no column names', async () => {
    const inserted = await ok('INSERT INTO t (id, small, r, name, tags) VALUES ($1, $2, $3, $4, $5)', [
      { tag: 'int64', val: 1n },
      { tag: 'int64', val: 7n },
      { tag: 'float64', val: 0.5 },
      { tag: 'text', val: 'one' },
      { tag: 'text-array', val: ['a', 'b'] },
    ]);
    assert.deepEqual(inserted, { rows: [], rowsAffected: 1n });
    await ok('INSERT INTO t (id) VALUES ($1)', [{ tag: 'int64', val: 2n }]);
    const updated = await ok('UPDATE t SET small = small WHERE id > $1', [{ tag: 'int64', val: 0n }]);
    assert.equal(updated.rowsAffected, 2n);
    const selected = await ok('SELECT id, small, r, name, tags, id AS id FROM t ORDER BY id');
    assert.deepEqual(Object.keys(selected), ['rows', 'rowsAffected']);
    assert.deepEqual(selected.rows, [
      [
        { tag: 'int64', val: 1n },
        { tag: 'int64', val: 7n },
        { tag: 'float64', val: 0.5 },
        { tag: 'text', val: 'one' },
        { tag: 'text-array', val: ['a', 'b'] },
        { tag: 'int64', val: 1n },
      ],
      [{ tag: 'int64', val: 2n }, { tag: 'null' }, { tag: 'null' }, { tag: 'null' }, { tag: 'null' }, { tag: 'int64', val: 2n }],
    ]);
    assert.equal(selected.rowsAffected, 2n);
    const returning = await ok('DELETE FROM t WHERE id = $1 RETURNING id', [{ tag: 'int64', val: 2n }]);
    assert.deepEqual(returning, { rows: [[{ tag: 'int64', val: 2n }]], rowsAffected: 1n });
  });

  test('a column type the interface cannot carry, or a NULL array element, is query-failed', async () => {
    const numeric = await err('SELECT 1.5::numeric AS n');
    assert.equal(numeric.tag, 'query-failed');
    assert.match(numeric.val, /column n has type numeric/);
    assert.equal((await err("SELECT ARRAY['a', NULL]::text[] AS a")).tag, 'query-failed');
    assert.equal((await err("SELECT ARRAY[['a']]::text[] AS a")).tag, 'query-failed');
    assert.deepEqual((await ok("SELECT '[2:3]={x,y}'::text[] AS a")).rows[0][0], { tag: 'text-array', val: ['x', 'y'] });
  });
});

describe('parameters are checked against the types the server infers', () => {
  test('a value of the wrong kind, out of range, or the wrong count is bad-parameter, unsent', async () => {
    const cases = [
      ['SELECT $1::bigint', [{ tag: 'text', val: '1' }], /a text value does not fit the type int8/],
      ['SELECT $1::text', [{ tag: 'int64', val: 1n }], /an? int64 value does not fit the type text/],
      ['SELECT $1::integer', [{ tag: 'int64', val: 2n ** 31n }], /does not fit the type int4/],
      ['SELECT $1::smallint', [{ tag: 'int64', val: -(2n ** 15n) - 1n }], /int2/],
      ['SELECT $1::bytea', [{ tag: 'text', val: 'x' }], /bytea/],
      ['SELECT $1::jsonb', [{ tag: 'text', val: '{}' }], /jsonb/],
      ['SELECT $1::timestamptz', [{ tag: 'int64', val: 1n }], /timestamptz/],
      ['SELECT $1::text, $2::text', [{ tag: 'text', val: 'x' }], /takes 2 parameters, 1 were given/],
    ];
    for (const [text, params, message] of cases) {
      const error = await err(text, params);
      assert.equal(error.tag, 'bad-parameter', text);
      assert.match(error.val, message, text);
    }
  });

  test('what the server refuses to parse in a value is bad-parameter too (22xxx)', async () => {
    const json = await err('SELECT $1::jsonb', [{ tag: 'json', val: '{not json' }]);
    assert.equal(json.tag, 'bad-parameter');
    assert.match(json.val, /^22P02: /);
    const nul = await err('SELECT $1::text', [{ tag: 'text', val: 'a\u0000b' }]);
    assert.equal(nul.tag, 'bad-parameter');
  });
});

describe('errors by SQLSTATE', () => {
  test('constraint violations carry the SQLSTATE', async () => {
    await ok('INSERT INTO t (id) VALUES ($1)', [{ tag: 'int64', val: 10n }]);
    const duplicate = await err('INSERT INTO t (id) VALUES ($1)', [{ tag: 'int64', val: 10n }]);
    assert.equal(duplicate.tag, 'constraint-violation');
    assert.equal(duplicate.val.sqlstate, '23505');
    const notNull = await err('INSERT INTO t (id) VALUES ($1)', [{ tag: 'null' }]);
    assert.equal(notNull.val.sqlstate, '23502');
  });

  test('a missing table or a syntax error is query-failed; 42P18 is bad-parameter', async () => {
    assert.match((await err('SELECT * FROM missing')).val, /^42P01: /);
    assert.equal((await err('SELEC 1')).tag, 'query-failed');
    assert.equal((await err('SELECT $1')).tag, 'bad-parameter');
  });

  test('two commands in one statement never run (one Parse, extended protocol)', async () => {
    const error = await err('SELECT 1; DELETE FROM t');
    assert.equal(error.tag, 'query-failed');
    assert.match(error.val, /^42601: cannot insert multiple commands/);
    const count = (await ok('SELECT count(*)::int8 FROM t')).rows[0][0];
    assert.ok(count.val > 0n);
  });

  test('classification of errors without a server answer', () => {
    for (const message of ['connect ECONNREFUSED 127.0.0.1:1', 'Connection terminated unexpectedly']) {
      const error = Object.assign(new Error(message), { code: 'ECONNREFUSED' });
      assert.deepEqual(classifyError(error), { tag: 'connection-failed', val: message });
    }
    const serverGone = Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
      severity: 'FATAL',
    });
    assert.equal(classifyError(serverGone).tag, 'connection-failed');
    const auth = Object.assign(new Error('password authentication failed'), { code: '28P01', severity: 'FATAL' });
    assert.equal(classifyError(auth).tag, 'query-failed', 'as the Rust host: not an 08/57P code');
    const cast = Object.assign(new Error('datatype mismatch'), { code: '42804', severity: 'ERROR' });
    assert.equal(classifyError(cast).tag, 'bad-parameter');
  });

  test('a result larger than the limit is query-failed', async () => {
    const small = new SqlConnection({
      connection: db.ownerUrl,
      connectTimeoutMs: 5000,
      maxResultBytes: 1000,
      describeCache: new Map(),
      typeNames: new Map(),
    });
    try {
      const outcome = await small.run(1, "SELECT repeat('x', 2000) AS big", [], deadline());
      assert.equal(outcome.err?.tag, 'query-failed');
      assert.match(outcome.err.val, /larger than the 1000 bytes/);
      assert.ok('ok' in (await small.run(2, 'SELECT 1 AS one', [], deadline())), 'the connection stays usable');
    } finally {
      await small.close();
    }
  });
});
