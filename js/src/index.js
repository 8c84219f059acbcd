// @wasm-sessions/node: the session-store component (wit/store.wit) hosted in Node.js.
//
// The same component the Rust host runs on wasmtime, transpiled by jco, granted the same three
// capabilities (sql, entropy, clock) and held to the same boundary: only the statements it declared, only
// single data statements, a per-call deadline, a memory cap, at most 4096 random bytes per call.

import { availableParallelism } from 'node:os';

import { Bridge } from './bridge.js';
import { bundledComponentDir, loadComponent } from './component.js';
import { StoreError } from './errors.js';
import {
  Session,
  expiryFromWit,
  expiryToWit,
  timestampToWit,
  userIdToWit,
  userSessionFromWit,
} from './session.js';
import { checkDeclared, refusal, runnable } from './statements.js';
import { DEFAULT_MEMORY_LIMIT } from './wasm-limits.js';

export { StoreError } from './errors.js';
export { Session } from './session.js';
export { isDataStatement } from './statements.js';
export {
  bundledComponentDir,
  loadComponent,
  transpileComponent,
  transpileToDirectory,
  transpileCached,
} from './component.js';
export { DEFAULT_MEMORY_LIMIT } from './wasm-limits.js';
export { MAX_RANDOM_BYTES } from './bridge.js';

/** How long one call may take by default (as the Rust host): guest work and database time together. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;

/** How long opening a database connection may take by default (as the Rust host's driver). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** The largest row set handed to the component by default, in bytes of decoded values. */
export const DEFAULT_MAX_RESULT_BYTES = 16 * 1024 * 1024;

/** Rows one cleanup step removes at most, unless told otherwise (as the Rust host). */
export const DEFAULT_CLEANUP_BATCH = 1000;

/** The system clock, in microseconds since 1970. */
export const systemClock = Object.freeze({
  now: () => BigInt(Date.now()) * 1000n,
});

/** A clock that moves only when told to (for tests), in microseconds since 1970. */
export class ManualClock {
  #now;

  constructor(start = systemClock.now()) {
    this.#now = BigInt(start);
  }

  now() {
    return this.#now;
  }

  /** Sets the time (microseconds since 1970). */
  set(micros) {
    this.#now = BigInt(micros);
  }

  /** Moves the time forward by `seconds` (a number; fractions to the microsecond). */
  advance(seconds) {
    this.#now += BigInt(Math.round(seconds * 1e6));
  }

  /** Moves the time forward by `micros` microseconds. */
  advanceMicros(micros) {
    this.#now += BigInt(micros);
  }
}

/** The configuration keys, in JavaScript spelling, and their WIT conversion. */
const CONFIG_KEYS = {
  cookieName: (v) => v,
  maxAge: (v) => BigInt(v),
  httpOnly: (v) => v,
  secure: (v) => v,
  sameSite: (v) => v,
  domain: (v) => v ?? undefined,
  path: (v) => v,
  idleTimeout: (v) => (v === null || v === undefined ? undefined : BigInt(v)),
  maxDataBytes: (v) => v,
  concurrency: (v) => v,
};

function configFromWit(wit) {
  return Object.freeze({
    cookieName: wit.cookieName,
    maxAge: Number(wit.maxAge),
    httpOnly: wit.httpOnly,
    secure: wit.secure,
    sameSite: wit.sameSite,
    domain: wit.domain ?? null,
    path: wit.path,
    idleTimeout: wit.idleTimeout === undefined ? null : Number(wit.idleTimeout),
    maxDataBytes: wit.maxDataBytes,
    concurrency: wit.concurrency,
  });
}

function applyOverrides(wit, overrides) {
  const out = { ...wit };
  for (const [key, value] of Object.entries(overrides ?? {})) {
    const convert = CONFIG_KEYS[key];
    if (convert === undefined) {
      throw new StoreError('invalid-config', `unknown configuration key ${key}`);
    }
    try {
      out[key] = convert(value);
    } catch {
      throw new StoreError('invalid-config', `${key}: ${String(value)} is not a valid value`);
    }
  }
  return out;
}

/** The cookie state of `loadFromCookie`. */
function requestSessionFromWit(wit) {
  return {
    session: new Session(wit.session),
    cookie: wit.cookie,
    removalCookie: wit.removalCookie ?? null,
  };
}

/**
 * Builds a store: loads the component, starts its worker(s), asks it for its default configuration
 * (unless given whole), applies `config` overrides, has the component validate them, and records the
 * statements it declares (the only ones it may send).
 *
 * @param {object} options
 * @param {string | object} options.connection  the runtime role's connection string (node-postgres
 *   URL form) or a node-postgres client config; `connectionString` is accepted as an alias
 * @param {string | URL | Uint8Array | ArrayBuffer | { dir: string }} [options.component]  the component: a
 *   `.wasm` path or its bytes (transpiled with jco now) or `{ dir }` of bindings written by
 *   `transpileToDirectory`; loaded bindings may be passed as `loaded` instead (`loadComponent`'s result,
 *   to share one across stores). Neither: the bindings bundled in the package (`bundledComponentDir()`),
 *   `invalid-config` when there are none
 * @param {object} [options.config]  configuration overrides, in JavaScript spelling (`cookieName`,
 *   `maxAge` seconds, `httpOnly`, `secure`, `sameSite`, `domain`, `path`, `idleTimeout` seconds or null,
 *   `maxDataBytes`, `concurrency`)
 * @param {{ now(): bigint }} [options.clock]  the clock the component reads (microseconds since 1970);
 *   default the system clock, read in the worker
 * @param {number} [options.callTimeoutMs]  the deadline of each call (default 30 s)
 * @param {number} [options.connectTimeoutMs]  (default 5 s; never past the call's deadline)
 * @param {number} [options.workers]  guest workers, each with its own connection: calls in parallel
 *   (default 1)
 * @param {number} [options.memoryLimit]  the guest's memory cap in bytes (default 64 MiB)
 * @param {number} [options.maxResultBytes]  the largest row set handed to the guest (default 16 MiB)
 */
export async function createStore(options = {}) {
  const connection = options.connection ?? options.connectionString;
  if (connection === undefined) {
    throw new StoreError('invalid-config', 'createStore needs a connection (the runtime role\'s URL)');
  }
  const memoryLimit = options.memoryLimit ?? DEFAULT_MEMORY_LIMIT;
  const component =
    options.loaded ??
    (await loadComponent(options.component ?? defaultComponent(), { memoryLimit }));
  const store = new Store({
    component,
    connection,
    clock: options.clock ?? null,
    callTimeoutMs: options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    maxResultBytes: options.maxResultBytes ?? DEFAULT_MAX_RESULT_BYTES,
    workers: Math.max(1, Math.min(options.workers ?? 1, availableParallelism() * 4)),
  });
  try {
    await store.bootstrap(options.config);
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}

/** The bundled bindings, when this copy of the package has them (a packed one does). */
function defaultComponent() {
  const dir = bundledComponentDir();
  if (dir === null) {
    throw new StoreError(
      'invalid-config',
      'createStore needs the component: pass `component` (a .wasm path, its bytes, or { dir } of ' +
        'transpiled bindings) or `loaded`; this copy of @wasm-sessions/node bundles none (`npm pack` ' +
        'bundles it)',
    );
  }
  return { dir };
}

/** The session store: every operation runs in the component. Close it with `close()`. */
export class Store {
  #bridges;
  #idle;
  #queue = [];
  #statements = [];
  #runnable = [];
  #wit = null;
  #config = null;
  #clock;
  #callTimeoutMs;
  #closed = false;

  /** Use `createStore`. */
  constructor({ component, connection, clock, callTimeoutMs, connectTimeoutMs, maxResultBytes, workers }) {
    this.#clock = clock;
    this.#callTimeoutMs = callTimeoutMs;
    const describeCache = new Map();
    const typeNames = new Map();
    const admit = (index) => this.#admit(index);
    this.#bridges = Array.from(
      { length: workers },
      () =>
        new Bridge({
          component,
          admit,
          clock,
          sql: { connection, connectTimeoutMs, maxResultBytes, describeCache, typeNames },
          // The JavaScript heap of a worker (its WebAssembly memory is capped separately).
          resourceLimits: { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 32 },
        }),
    );
    this.#idle = [...this.#bridges];
  }

  /**
   * The boundary: the component names a statement by its index in the list it declared; an index
   * outside that list, or a statement that is not a single data statement, is refused unsent (as the
   * Rust host, with the same messages). Otherwise the index maps to the declared text.
   */
  #admit(index) {
    const refused = refusal(this.#runnable, index);
    if (refused !== null) {
      return { refused };
    }
    return { index, text: this.#statements[index] };
  }

  /** Asks the component for its defaults, validates the configuration, records the statements. */
  async bootstrap(overrides) {
    // Every worker starts now, so the first calls do not pay for it.
    await Promise.all(this.#bridges.map((bridge) => bridge.start()));
    // Until the statements are recorded the set is empty: the bootstrap calls may send no SQL.
    const defaults = await this.#expect('defaultConfig');
    const wit = applyOverrides(defaults, overrides);
    await this.#expect('validateConfig', wit);
    const statements = await this.#expect('statements');
    const problem = checkDeclared(statements);
    if (problem !== null) {
      throw new StoreError('invalid-config', `the component's statements: ${problem}`);
    }
    this.#statements = Object.freeze([...statements]);
    this.#runnable = runnable(this.#statements);
    for (const bridge of this.#bridges) {
      bridge.pin(this.#statements);
    }
    this.#wit = wit;
    this.#config = configFromWit(wit);
  }

  /**
   * Calls export `fn` (jco's camelCase name, e.g. `loadFromCookie`, `delete`) with jco's values, on an
   * idle worker, within the deadline. Resolves `{ ok: value }` or `{ err: store-error }`; rejects with a
   * `StoreError` for a failure of the sandbox (deadline, trap, closed).
   */
  async callExport(fn, ...args) {
    if (this.#closed) {
      throw new StoreError('closed', 'the store is closed');
    }
    // The deadline runs from now: time spent waiting for a free worker counts, as waiting for a pooled
    // connection counts in the Rust host.
    const deadline = Date.now() + this.#callTimeoutMs;
    const bridge = this.#idle.pop() ?? (await new Promise((resolve) => this.#queue.push(resolve)));
    try {
      return await bridge.call(fn, args, this.#callTimeoutMs, deadline);
    } finally {
      const next = this.#queue.shift();
      if (next !== undefined) {
        next(bridge);
      } else {
        this.#idle.push(bridge);
      }
    }
  }

  /** Calls `fn` and returns its `ok` value, throwing the `StoreError` of an `err`. */
  async #expect(fn, ...args) {
    const outcome = await this.callExport(fn, ...args);
    if ('err' in outcome) {
      throw StoreError.fromWit(outcome.err);
    }
    return outcome.ok;
  }

  /** The configuration in force (validated by the component). */
  get config() {
    return this.#config;
  }

  /** The configuration in the component's form (jco values), as the exports take it. */
  get witConfig() {
    return this.#wit;
  }

  /** The statements the component declared, verbatim: the only ones this host sends for it. */
  get statements() {
    return this.#statements;
  }

  /** The store's clock (microseconds since 1970). */
  now() {
    return BigInt((this.#clock ?? systemClock).now());
  }

  /** A fresh token: 64 lower-case hex characters. */
  generateSessionId() {
    return this.#expect('generateSessionId');
  }

  /** A new, unsaved session with a fresh token, created now, with `expiry` (default: the configuration's). */
  async newSession(expiry = null) {
    return new Session(await this.#expect('newSession', this.#wit, expiryToWit(expiry)));
  }

  /** Loads the session with token `id` (`invalid-id`, `not-found`, `expired`, `database`). */
  async load(id) {
    return new Session(await this.#expect('load', this.#wit, String(id)));
  }

  /**
   * The session a request's `Cookie` header names, or a fresh unsaved one:
   * `{ session, cookie: 'absent' | 'live' | 'stale', removalCookie: string | null }`.
   */
  async loadFromCookie(cookieHeader) {
    return requestSessionFromWit(await this.#expect('loadFromCookie', this.#wit, String(cookieHeader ?? '')));
  }

  /**
   * Writes what `session` changed in one statement and refreshes it in place (with what other requests
   * merged meanwhile; under last-write-wins it keeps its own data); a new session is inserted whole.
   * Returns the session.
   */
  async save(session) {
    return this.#write(session, false);
  }

  /** Gives the session a fresh token and writes it (at login, against session fixation). */
  async regenerateId(session) {
    return this.#write(session, true);
  }

  async #write(session, rotate) {
    const outcome = await this.commit({ save: session, rotate });
    if (outcome.session === null) {
      throw new StoreError('unexpected-result', 'the component wrote no session for a save');
    }
    return session;
  }

  /**
   * The end of a request in one call: deletes the session with token `delete` (if given), then writes
   * `save` (if given; refreshed in place, moved to a fresh token when `rotate`). Returns
   * `{ session, deleted, setCookie }` (`setCookie`: the `Set-Cookie` value for the response, or null).
   */
  async commit({ delete: deleteId = null, save = null, rotate = false } = {}) {
    if (save !== null && !(save instanceof Session)) {
      throw new StoreError('invalid-data', 'commit saves a Session of this store');
    }
    const request = {
      delete: deleteId === null ? undefined : String(deleteId),
      save: save === null ? undefined : save.saveRequest(Boolean(rotate)),
    };
    const outcome = await this.#expect('commit', this.#wit, request);
    let written = null;
    if (outcome.session !== undefined) {
      written = new Session(outcome.session);
      if (save !== null) {
        save.replaceWith(written);
        written = save;
      }
    }
    return { session: written, deleted: outcome.deleted, setCookie: outcome.setCookie ?? null };
  }

  /** Deletes the session with token `id`; returns whether it existed. */
  delete(id) {
    return this.#expect('delete', String(id));
  }

  /**
   * Deletes the sessions expired by now (the store's clock) in steps of `batchSize` rows (one statement
   * each), calling `onProgress({ removedInBatch, removedTotal, batches })` after every step; returns how
   * many were removed.
   */
  async cleanup({ batchSize = DEFAULT_CLEANUP_BATCH, onProgress } = {}) {
    const cutoff = this.now();
    let removedTotal = 0;
    let batches = 0;
    for (;;) {
      const removed = await this.cleanupBatch(cutoff, batchSize);
      removedTotal += removed;
      batches += 1;
      onProgress?.({ removedInBatch: removed, removedTotal, batches });
      if (removed < batchSize) {
        return removedTotal;
      }
    }
  }

  /** One cleanup step: deletes at most `limit` sessions expired at or before `cutoff`; returns the count. */
  async cleanupBatch(cutoff, limit) {
    if (!Number.isInteger(limit) || limit < 0 || limit > 0xffffffff) {
      throw new StoreError('invalid-data', 'a cleanup limit is a whole number of rows');
    }
    return Number(await this.#expect('cleanupBatch', timestampToWit(cutoff, 'a cutoff'), limit));
  }

  /** How many sessions expired at or before `cutoff` (microseconds, BigInt, or a Date). */
  async countExpired(cutoff) {
    return Number(await this.#expect('countExpired', timestampToWit(cutoff, 'a cutoff')));
  }

  /** The user's unexpired sessions, newest first: `{ handle, data, userId, label, createdAt, expiresAt, updatedAt }`. */
  async getUserSessions(userId) {
    const listed = await this.#expect('getUserSessions', userIdToWit(userId));
    return listed.map(userSessionFromWit);
  }

  /** Deletes every session of the user; returns how many. */
  async deleteUserSessions(userId) {
    return Number(await this.#expect('deleteUserSessions', userIdToWit(userId)));
  }

  /** Deletes every session of the user but the one with token `keepId`; returns how many. */
  async deleteUserSessionsExcept(userId, keepId) {
    return Number(await this.#expect('deleteUserSessionsExcept', userIdToWit(userId), String(keepId)));
  }

  /** Deletes the user's session with this handle; returns whether it existed. */
  revokeSession(userId, handle) {
    return this.#expect('revokeSession', userIdToWit(userId), String(handle));
  }

  /** The `Set-Cookie` value that stores the session's token. */
  cookieHeader(session) {
    if (!(session instanceof Session)) {
      throw new StoreError('invalid-data', 'cookieHeader takes a Session of this store');
    }
    return this.#expect('cookieHeader', this.#wit, session.toWit());
  }

  /** The `Set-Cookie` value that removes the session cookie. */
  removalCookieHeader() {
    return this.#expect('removalCookieHeader', this.#wit);
  }

  /**
   * Ends every worker and closes every connection; calls in progress or queued fail with `closed`.
   * Idempotent.
   */
  async close() {
    this.#closed = true;
    const queued = this.#queue.splice(0);
    await Promise.all(this.#bridges.map((bridge) => bridge.close()));
    // A queued caller gets a closed bridge: its call fails with `closed`.
    for (const resolve of queued) {
      resolve(this.#bridges[0]);
    }
  }
}

export { expiryFromWit, expiryToWit };
