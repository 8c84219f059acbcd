// The `sql` import over node-postgres: one connection per guest worker, the value mapping and the error
// classes of the Rust host's `PostgresDriver` (host/src/postgres.rs).
//
// node-postgres decodes binary results through UTF-8 strings (lossy for bytea), so results are read in
// PostgreSQL's text format with every type parser replaced by the identity and converted here, exactly:
// integers to BigInt, timestamps to microseconds without `Date`, json/jsonb as their text, bytea from hex.
// Parameters are checked against the types the server infers for the statement (as the Rust host checks
// them against its prepared statement) and sent as text, except bytea, which goes in binary.

import net from 'node:net';

import pg from 'pg';

import {
  DecodeError,
  ParamError,
  byteaFromText,
  floatFromText,
  floatParam,
  textArrayFromText,
  textArrayParam,
  timestampFromText,
  timestampParam,
} from './values.js';

/** Type OIDs (fixed in PostgreSQL's catalog). */
const OID = {
  BOOL: 16,
  BYTEA: 17,
  NAME: 19,
  INT8: 20,
  INT2: 21,
  INT4: 23,
  TEXT: 25,
  JSON: 114,
  FLOAT4: 700,
  FLOAT8: 701,
  UNKNOWN: 705,
  TEXT_ARRAY: 1009,
  VARCHAR_ARRAY: 1015,
  BPCHAR: 1042,
  VARCHAR: 1043,
  TIMESTAMP: 1114,
  TIMESTAMPTZ: 1184,
  JSONB: 3802,
};

/** Types the Rust host reads and writes as text (`&str`'s `FromSql`/`ToSql`), by OID and by name. */
const TEXT_OIDS = new Set([OID.TEXT, OID.VARCHAR, OID.BPCHAR, OID.NAME, OID.UNKNOWN]);
const TEXT_TYPE_NAMES = new Set(['citext', 'ltree', 'lquery', 'ltxtquery']);

/** Every column arrives as its raw text: the conversion below is the only one. */
const RAW_TYPES = { getTypeParser: () => (text) => text };

/** The name of the server-side prepared statement used to learn a statement's parameter types. */
const DESCRIBE_NAME = 'wasm_sessions_describe';

/** An `sql-error` value, as jco represents the variant. */
const sqlError = (tag, val) => ({ tag, val });

/**
 * The guest-visible class of a node-postgres error, as host/src/postgres.rs `query_error` sorts a
 * tokio-postgres error: by SQLSTATE for an error the server sent (23: constraint-violation; 08 and 57P:
 * connection-failed; 22, 42P18, 42804: bad-parameter; anything else: query-failed), connection-failed for
 * a socket or protocol failure (the server could not be reached, or the connection broke).
 */
export function classifyError(error) {
  if (error instanceof ParamError) {
    return sqlError('bad-parameter', error.message);
  }
  if (error instanceof DecodeError) {
    return sqlError('query-failed', error.message);
  }
  const code = typeof error?.code === 'string' ? error.code : '';
  const fromServer = error instanceof pg.DatabaseError || (/^[0-9A-Z]{5}$/.test(code) && 'severity' in error);
  if (fromServer) {
    const message = error.message;
    if (code.startsWith('23')) {
      return sqlError('constraint-violation', { sqlstate: code, message });
    }
    if (code.startsWith('08') || code.startsWith('57P')) {
      return sqlError('connection-failed', `${code}: ${message}`);
    }
    if (code.startsWith('22') || code === '42P18' || code === '42804') {
      return sqlError('bad-parameter', `${code}: ${message}`);
    }
    return sqlError('query-failed', `${code}: ${message}`);
  }
  // Everything node-postgres raises without a server error is about the connection: a socket error
  // (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND, EPIPE, ...), "Connection terminated", a connection
  // timeout, "Client has encountered a connection error and is not queryable", a TLS failure.
  return sqlError('connection-failed', String(error?.message ?? error));
}

/** Whether `value` (an `sql-value`) fits a parameter of type `oid` (`name`), as the Rust host checks. */
function fits(value, oid, name) {
  switch (value.tag) {
    case 'null':
      return true;
    case 'boolean':
      return oid === OID.BOOL;
    case 'int64':
      if (oid === OID.INT8) {
        return true;
      }
      if (oid === OID.INT4) {
        return value.val >= -(2n ** 31n) && value.val < 2n ** 31n;
      }
      if (oid === OID.INT2) {
        return value.val >= -(2n ** 15n) && value.val < 2n ** 15n;
      }
      return false;
    case 'float64':
      return oid === OID.FLOAT8 || oid === OID.FLOAT4;
    case 'text':
      return TEXT_OIDS.has(oid) || TEXT_TYPE_NAMES.has(name);
    case 'json':
      return oid === OID.JSON || oid === OID.JSONB;
    case 'timestamp':
      return oid === OID.TIMESTAMPTZ || oid === OID.TIMESTAMP;
    case 'bytes':
      return oid === OID.BYTEA;
    case 'text-array':
      return oid === OID.TEXT_ARRAY || oid === OID.VARCHAR_ARRAY;
    default:
      return false;
  }
}

/** The value node-postgres sends for `value`, already known to fit type `oid`. */
function encode(value, oid) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'boolean':
      return value.val ? 't' : 'f';
    case 'int64':
      return value.val.toString();
    case 'float64':
      // `real`: rounded to single precision first, as the Rust host narrows the f64.
      return floatParam(oid === OID.FLOAT4 ? Math.fround(value.val) : value.val);
    case 'text':
    case 'json':
      return value.val;
    case 'timestamp':
      return timestampParam(value.val);
    case 'bytes':
      // A Buffer goes in binary format: the bytes themselves.
      return Buffer.from(value.val.buffer, value.val.byteOffset, value.val.byteLength);
    case 'text-array':
      return textArrayParam(value.val);
    default:
      throw new ParamError(`unknown sql-value ${value.tag}`);
  }
}

/** Bytes a decoded value accounts for in the result-size limit. */
function weight(value) {
  switch (value.tag) {
    case 'text':
    case 'json':
      return 16 + value.val.length * 2;
    case 'bytes':
      return 16 + value.val.byteLength;
    case 'text-array':
      return 16 + value.val.reduce((n, s) => n + 16 + s.length * 2, 0);
    default:
      return 16;
  }
}

/**
 * One node-postgres connection for one guest worker: at most one statement in flight, connected lazily,
 * replaced after it broke or after a statement on it was abandoned.
 */
export class SqlConnection {
  /**
   * @param {object} options
   * @param {string | object} options.connection  a connection string or a node-postgres client config
   * @param {number} options.connectTimeoutMs  how long opening the connection may take
   * @param {number} options.maxResultBytes  the largest row set handed to the guest
   * @param {Map} options.describeCache  statement text -> parameter types, shared by a store's connections
   * @param {Map} options.typeNames  type OID -> name, shared by a store's connections
   */
  constructor({ connection, connectTimeoutMs, maxResultBytes, describeCache, typeNames }) {
    this.connection = typeof connection === 'string' ? { connectionString: connection } : { ...connection };
    this.connectTimeoutMs = connectTimeoutMs;
    this.maxResultBytes = maxResultBytes;
    this.describeCache = describeCache;
    this.typeNames = typeNames;
    this.client = null;
    this.connecting = null;
    this.inFlight = null;
  }

  /** A connected client, opening one within the deadline when there is none. */
  async connected(deadline) {
    if (this.client !== null) {
      return this.client;
    }
    const remaining = Math.max(1, Math.min(this.connectTimeoutMs, deadline - Date.now()));
    const client = new pg.Client({
      ...this.connection,
      connectionTimeoutMillis: remaining,
      types: RAW_TYPES,
    });
    // An idle connection that breaks must not crash the process: forget it, the next query reconnects.
    client.on('error', () => {
      if (this.client === client) {
        this.client = null;
      }
    });
    client.once('end', () => {
      if (this.client === client) {
        this.client = null;
      }
    });
    this.connecting = client;
    try {
      await client.connect();
      // The text forms the conversion reads: ISO dates, hex bytea, shortest-exact floats (PostgreSQL 12
      // and later; 17 digits before). Host statements, not the guest's: they change no data.
      await client.query(
        "SET DateStyle = 'ISO, YMD'; SET bytea_output = 'hex'; SET extra_float_digits = 3",
      );
    } catch (error) {
      destroy(client);
      throw error;
    } finally {
      this.connecting = null;
    }
    this.client = client;
    return client;
  }

  /**
   * Runs declared statement number `index` (`text`) with `params` (`sql-value`s) and returns
   * `{ ok: row-set }` or `{ err: sql-error }`; never throws.
   */
  async run(index, text, params, deadline) {
    let client;
    try {
      client = await this.connected(deadline);
    } catch (error) {
      return { err: classifyError(error) };
    }
    const flight = { client };
    this.inFlight = flight;
    try {
      const types = await this.parameterTypes(client, text);
      if (types.length !== params.length) {
        return {
          err: sqlError(
            'bad-parameter',
            `the statement takes ${types.length} parameters, ${params.length} were given`,
          ),
        };
      }
      const values = [];
      for (const [i, value] of params.entries()) {
        const { oid, name } = types[i];
        if (!fits(value, oid, name)) {
          return {
            err: sqlError(
              'bad-parameter',
              `parameter $${i + 1}: a ${value.tag} value does not fit the type ${name}`,
            ),
          };
        }
        values.push(encode(value, oid));
      }
      // A named statement always takes the extended protocol: one Parse, so one command, and the server
      // keeps it prepared on this connection (as the Rust host's statement cache does).
      const result = await client.query({
        name: `wasm_sessions_${index}`,
        text,
        values,
        rowMode: 'array',
        queryMode: 'extended',
      });
      return { ok: await this.rowSet(client, result) };
    } catch (error) {
      return { err: classifyError(error) };
    } finally {
      if (this.inFlight === flight) {
        this.inFlight = null;
      }
    }
  }

  /** The statement's parameter types as the server infers them (cached per statement text). */
  async parameterTypes(client, text) {
    const cached = this.describeCache.get(text);
    if (cached !== undefined) {
      return cached;
    }
    // `PREPARE` through the extended protocol: a text with two commands fails to parse, nothing runs.
    await client.query({ text: `PREPARE ${DESCRIBE_NAME} AS ${text}`, queryMode: 'extended' });
    try {
      const described = await client.query({
        text:
          'SELECT t.oid::pg_catalog.int8, t.typname::pg_catalog.text ' +
          'FROM pg_catalog.pg_prepared_statements p, ' +
          'pg_catalog.unnest(p.parameter_types) WITH ORDINALITY AS u(ty, n) ' +
          'JOIN pg_catalog.pg_type t ON t.oid = u.ty ' +
          'WHERE p.name = $1 ORDER BY u.n',
        values: [DESCRIBE_NAME],
        rowMode: 'array',
      });
      const types = described.rows.map(([oid, name]) => ({ oid: Number(oid), name }));
      for (const { oid, name } of types) {
        this.typeNames.set(oid, name);
      }
      this.describeCache.set(text, types);
      return types;
    } finally {
      await client.query(`DEALLOCATE ${DESCRIBE_NAME}`);
    }
  }

  /**
   * The `row-set` of a node-postgres result: the values by position, without column names (the component
   * declared the statement, so it knows its columns).
   */
  async rowSet(client, result) {
    const fields = result.fields ?? [];
    if (fields.length === 0) {
      return { rows: [], rowsAffected: BigInt(result.rowCount ?? 0) };
    }
    const decoders = [];
    for (const field of fields) {
      decoders.push(await this.decoder(client, field));
    }
    let bytes = 0;
    const rows = result.rows.map((raw) => {
      const row = raw.map((text, i) => {
        const value = text === null ? { tag: 'null' } : decoders[i](text);
        bytes += weight(value);
        return value;
      });
      if (bytes > this.maxResultBytes) {
        throw new DecodeError(
          `the result is larger than the ${this.maxResultBytes} bytes the host hands to the component`,
        );
      }
      return row;
    });
    return { rows, rowsAffected: BigInt(rows.length) };
  }

  /** The conversion of one column's text, by its type (what host/src/postgres.rs `decode_value` maps). */
  async decoder(client, field) {
    const column = field.name;
    const failing = (convert) => (text) => {
      try {
        return convert(text);
      } catch (error) {
        throw new DecodeError(`column ${column}: ${error.message}`);
      }
    };
    switch (field.dataTypeID) {
      case OID.BOOL:
        return (text) => ({ tag: 'boolean', val: text === 't' });
      case OID.INT2:
      case OID.INT4:
      case OID.INT8:
        return (text) => ({ tag: 'int64', val: BigInt(text) });
      case OID.FLOAT4:
        return failing((text) => ({ tag: 'float64', val: floatFromText(text, true) }));
      case OID.FLOAT8:
        return failing((text) => ({ tag: 'float64', val: floatFromText(text, false) }));
      case OID.JSON:
      case OID.JSONB:
        return (text) => ({ tag: 'json', val: text });
      case OID.TIMESTAMP:
      case OID.TIMESTAMPTZ:
        return failing((text) => ({ tag: 'timestamp', val: timestampFromText(text) }));
      case OID.BYTEA:
        return failing((text) => ({ tag: 'bytes', val: byteaFromText(text) }));
      case OID.TEXT_ARRAY:
      case OID.VARCHAR_ARRAY:
        return failing((text) => ({ tag: 'text-array', val: textArrayFromText(text) }));
      default:
        break;
    }
    if (TEXT_OIDS.has(field.dataTypeID)) {
      return (text) => ({ tag: 'text', val: text });
    }
    const name = await this.typeName(client, field.dataTypeID);
    if (TEXT_TYPE_NAMES.has(name)) {
      return (text) => ({ tag: 'text', val: text });
    }
    throw new DecodeError(`column ${column} has type ${name}, which the sql interface cannot carry`);
  }

  /** The name of type `oid` (looked up once). */
  async typeName(client, oid) {
    if (!this.typeNames.has(oid)) {
      const found = await client.query({
        text: 'SELECT typname::pg_catalog.text FROM pg_catalog.pg_type WHERE oid = $1',
        values: [String(oid)],
        rowMode: 'array',
      });
      this.typeNames.set(oid, found.rows[0]?.[0] ?? `oid ${oid}`);
    }
    return this.typeNames.get(oid);
  }

  /**
   * The call's deadline passed: a statement still in flight is cancelled on the server (a cancel
   * request, as the Rust host sends one) and its connection closed, so no later statement waits behind
   * it. An idle connection is kept.
   */
  abandon() {
    const pending = this.connecting;
    if (pending !== null) {
      this.connecting = null;
      destroy(pending);
    }
    const flight = this.inFlight;
    if (flight === null) {
      return;
    }
    this.inFlight = null;
    if (this.client === flight.client) {
      this.client = null;
    }
    sendCancel(flight.client);
    destroy(flight.client);
  }

  /** Closes the connection (a statement in flight is cancelled first). */
  async close() {
    this.abandon();
    const client = this.client;
    this.client = null;
    if (client !== null) {
      await Promise.race([client.end().catch(() => {}), new Promise((r) => setTimeout(r, 1000).unref())]);
      destroy(client);
    }
  }
}

/** Closes `client`'s socket at once (a pending query fails with a connection error, ignored). */
function destroy(client) {
  try {
    client.connection?.stream?.destroy();
  } catch {
    // Already closed.
  }
}

/**
 * Asks the server to cancel whatever `client`'s backend is running: PostgreSQL's CancelRequest (the
 * backend's process id and secret key on a new connection; no authentication, no reply).
 */
function sendCancel(client) {
  const { processID, secretKey } = client;
  if (processID == null || secretKey == null) {
    return;
  }
  const params = client.connectionParameters ?? {};
  const host = params.host ?? 'localhost';
  const port = params.port ?? 5432;
  const target = host.startsWith('/') ? { path: `${host}/.s.PGSQL.${port}` } : { host, port };
  const message = Buffer.alloc(16);
  message.writeInt32BE(16, 0);
  message.writeInt32BE(80877102, 4);
  message.writeInt32BE(processID | 0, 8);
  message.writeInt32BE(secretKey | 0, 12);
  const socket = net.connect(target);
  socket.setTimeout(5000, () => socket.destroy());
  socket.on('error', () => socket.destroy());
  socket.on('connect', () => socket.end(message));
  socket.unref();
}
