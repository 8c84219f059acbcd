// Types of @wasm-sessions/node (src/index.js), written by hand. test/types.test.mjs checks that every
// export of index.js is declared here and that nothing else is.
//
// Conventions (as the JavaScript): user ids, timestamps (microseconds since 1970) and versions are
// `bigint`; counts, seconds and sizes are `number`; session data values are JSON values.

/** A JSON value, as session data holds it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object: a session's whole data. */
export type JsonObject = { [key: string]: JsonValue };

/** A point in time: microseconds since 1970 (a bigint or a safe integer number) or a `Date`. */
export type TimestampInput = bigint | number | Date;

/** A user id: a bigint, or a safe integer number (stored as a signed 64-bit integer). */
export type UserIdInput = bigint | number;

/** The `SameSite` cookie attribute. */
export type SameSite = 'lax' | 'strict' | 'none';

/** What a save does after a concurrent write (see `wit/store.wit`, `concurrency`). */
export type Concurrency = 'merge' | 'strict' | 'last-write-wins';

/** A session's expiry mode, as a `Session` reports it (`null` elsewhere: the configuration's policy). */
export type Expiry =
  | { mode: 'on-inactivity'; seconds: number }
  | { mode: 'at'; at: bigint }
  | { mode: 'on-session-end' };

/** A session's expiry mode, as `newSession` and `setExpiry` take it. */
export type ExpiryInput =
  | { mode: 'on-inactivity'; seconds: number | bigint }
  | { mode: 'at'; at: TimestampInput }
  | { mode: 'on-session-end' };

/** The component's `expiry` variant, in jco's form. */
export type WitExpiry = { tag: 'on-inactivity'; val: bigint } | { tag: 'at'; val: bigint } | { tag: 'on-session-end' };

/** A clock: microseconds since 1970. */
export interface Clock {
  now(): bigint | number;
}

/** The configuration in force (`store.config`), in JavaScript spelling. */
export interface StoreConfig {
  readonly cookieName: string;
  /** The absolute session lifetime, in seconds (the cookie's `Max-Age`). */
  readonly maxAge: number;
  readonly httpOnly: boolean;
  readonly secure: boolean;
  readonly sameSite: SameSite;
  readonly domain: string | null;
  readonly path: string;
  /** The idle timeout in seconds, or null for none. */
  readonly idleTimeout: number | null;
  /** The largest session data accepted, in bytes of its JSON text. */
  readonly maxDataBytes: number;
  readonly concurrency: Concurrency;
}

/** Configuration overrides for `createStore` (validated by the component; unknown keys are `invalid-config`). */
export interface ConfigOverrides {
  cookieName?: string;
  /** Seconds. */
  maxAge?: number | bigint;
  httpOnly?: boolean;
  secure?: boolean;
  sameSite?: SameSite;
  domain?: string | null;
  path?: string;
  /** Seconds, or null for none. */
  idleTimeout?: number | bigint | null;
  maxDataBytes?: number;
  concurrency?: Concurrency;
}

/** The component's `config` record, in jco's form (`store.witConfig`). */
export interface WitConfig {
  cookieName: string;
  maxAge: bigint;
  httpOnly: boolean;
  secure: boolean;
  sameSite: SameSite;
  domain?: string;
  path: string;
  idleTimeout?: bigint;
  maxDataBytes: number;
  concurrency: Concurrency;
}

/** The component's `session` record, in jco's form. */
export interface WitSession {
  id: string;
  handle: string;
  /** The data: one JSON object, as text. */
  data: string;
  userId?: bigint;
  label?: string;
  expiry?: WitExpiry;
  createdAt: bigint;
  expiresAt: bigint;
  absoluteExpiresAt: bigint;
  updatedAt: bigint;
  version: bigint;
  isSaved: boolean;
}

/** jco's form of an `option<option<T>>`. */
export type WitOuterOption<T> = { tag: 'some'; val: T | undefined } | { tag: 'none' };

/** The component's `save-request` record, in jco's form (what `Session.saveRequest` builds). */
export interface WitSaveRequest {
  session: WitSession;
  changes: {
    set: Array<[string, string]>;
    removed: string[];
    cleared: boolean;
    user: WitOuterOption<bigint>;
    label: WitOuterOption<string>;
    expiry: WitOuterOption<WitExpiry>;
  };
  expected: {
    keys: Array<[string, string | undefined]>;
    allData?: string;
    user: WitOuterOption<bigint>;
    expiry: WitOuterOption<WitExpiry>;
  };
  rotate: boolean;
}

/** The component's `sql-error` variant, in jco's form. */
export type WitSqlError =
  | { tag: 'connection-failed'; val: string }
  | { tag: 'constraint-violation'; val: { sqlstate: string; message: string } }
  | { tag: 'bad-parameter'; val: string }
  | { tag: 'query-failed'; val: string }
  | { tag: 'refused'; val: string };

/** The component's `store-error` variant, in jco's form. */
export type WitStoreError =
  | { tag: 'invalid-id'; val: string }
  | { tag: 'not-found' }
  | { tag: 'expired' }
  | { tag: 'invalid-config'; val: string }
  | { tag: 'invalid-data'; val: string }
  | { tag: 'database'; val: WitSqlError }
  | { tag: 'unexpected-result'; val: string }
  | { tag: 'conflict' };

/** The codes of a `StoreError`: the component's `store-error` cases, then the host's own. */
export type StoreErrorCode =
  | 'invalid-id'
  | 'not-found'
  | 'expired'
  | 'invalid-config'
  | 'invalid-data'
  | 'database'
  | 'unexpected-result'
  | 'conflict'
  | 'deadline-exceeded'
  | 'memory-limit'
  | 'guest'
  | 'invalid-value'
  | 'closed';

/** Why a store operation failed; `code` says which way. */
export declare class StoreError extends Error {
  constructor(code: StoreErrorCode, message?: string, details?: Record<string, unknown>);
  readonly name: 'StoreError';
  readonly code: StoreErrorCode;
  /** For `database`: the `sql-error` case. */
  readonly kind?: WitSqlError['tag'];
  /** For a `database` constraint violation: the five-character SQLSTATE. */
  readonly sqlstate?: string;
  /** The component's message (or the database's, for a constraint violation), when it gave one. */
  readonly detail?: string;
  /** The error for a component's `store-error` value. */
  static fromWit(error: WitStoreError): StoreError;
}

/** A listed session of a user (`getUserSessions`): by handle, never by token. */
export interface UserSession {
  handle: string;
  data: JsonObject;
  userId: bigint;
  label: string | null;
  createdAt: bigint;
  expiresAt: bigint;
  updatedAt: bigint;
}

/** What `Session.toJSON` prints: never the token or the data. */
export interface SessionSummary {
  handle: string;
  keys: number;
  userId: string | null;
  label: string | null;
  expiresAt: string;
  version: string;
  isSaved: boolean;
}

/**
 * A session as the application holds it in memory. It records what was changed and read since it was
 * loaded, so `store.save` sends only the changes.
 */
export declare class Session {
  /** Use `store.newSession()` or `store.load()`; this takes the component's `session` record. */
  constructor(wit: WitSession);
  /** The secret token (64 lower-case hex characters): it belongs in the cookie, never in a log. */
  readonly id: string;
  /** The opaque handle (the hex SHA-256 of the token), as `getUserSessions` lists it. */
  readonly handle: string;
  /** The value under `key` (a fresh copy), or `undefined`; `T` is the caller's claim, not checked. */
  get<T = JsonValue>(key: string): T | undefined;
  /** Whether `key` is set. */
  has(key: string): boolean;
  /** Stores `value` (anything JSON can hold; otherwise `invalid-value`) under `key`. */
  set(key: string, value: unknown): this;
  /** Removes `key`; returns the value it had, or `undefined`. */
  remove(key: string): JsonValue | undefined;
  /** Removes all data (the user stays). */
  clear(): void;
  /** All data as a fresh object (counts as reading every key). */
  readonly data: JsonObject;
  /** The keys, in stored order (counts as reading every key). */
  keys(): string[];
  /** The authenticated user, or null. */
  readonly userId: bigint | null;
  /** Marks the session as authenticated as `userId`; rotate the token at login (`store.regenerateId`). */
  setUser(userId: UserIdInput): void;
  /** Removes the authenticated user. */
  clearUser(): void;
  /** Whether a user is set. */
  readonly isAuthenticated: boolean;
  /** The label the application set (e.g. the device), or null. */
  readonly label: string | null;
  /** Sets the label (at most 256 bytes), or removes it with null. */
  setLabel(label: string | null): void;
  /** This session's expiry mode, or null for the configuration's. */
  readonly expiry: Expiry | null;
  /** Sets this session's expiry mode (null: the configuration's). */
  setExpiry(expiry: ExpiryInput | null): void;
  /** Microseconds since 1970. */
  readonly createdAt: bigint;
  /** When the session stops being valid (microseconds since 1970). */
  readonly expiresAt: bigint;
  /** The absolute deadline (creation + max-age; microseconds since 1970). */
  readonly absoluteExpiresAt: bigint;
  /** When the stored row was last written (microseconds since 1970). */
  readonly updatedAt: bigint;
  /** The stored version this copy was loaded or saved at; 0n when unsaved. */
  readonly version: bigint;
  /** Whether the session exists in the database. */
  readonly isSaved: boolean;
  /** Whether a save would write something. */
  readonly hasChanges: boolean;
  /** Takes over the state of `other` (a fresh copy from the store), dropping the change tracking. */
  replaceWith(other: Session): void;
  /** The component's `session` record. */
  toWit(): WitSession;
  /** The component's `save-request`: the state, what changed, and what was seen. */
  saveRequest(rotate: boolean): WitSaveRequest;
  /** A summary for logs: never the token or the data. */
  toJSON(): SessionSummary;
}

/** The bindings a guest worker runs: `loadComponent`'s result, shareable across stores as `loaded`. */
export interface LoadedComponent {
  /** The bindings' JavaScript source (jco, `instantiation: 'sync'`). */
  source: string;
  /** The compiled core modules, by file name. */
  modules: Record<string, WebAssembly.Module>;
  /** How many core memories were given the `memoryLimit` maximum. */
  cappedMemories: number;
  /** The guest's memory cap, in bytes. */
  memoryLimit: number;
}

/**
 * A component: a path to a `.wasm` component or its bytes (transpiled with jco when loaded, which needs
 * the optional peer dependency `@bytecodealliance/jco`), or `{ dir }` of bindings written by
 * `transpileToDirectory` (no jco needed).
 */
export type ComponentSource = string | URL | Uint8Array | ArrayBuffer | { dir: string };

/** The options of `createStore`. */
export interface CreateStoreOptions {
  /** The runtime role's connection string (node-postgres URL form), or a node-postgres client config. */
  connection?: string | Record<string, unknown>;
  /** An alias of `connection`. */
  connectionString?: string;
  /**
   * The component. Without it (and without `loaded`): the bindings bundled in the package
   * (`bundledComponentDir()`), or `invalid-config` when this copy has none.
   */
  component?: ComponentSource;
  /** Bindings loaded already (`loadComponent`'s result), instead of `component`. */
  loaded?: LoadedComponent;
  /** Configuration overrides, validated by the component. */
  config?: ConfigOverrides;
  /** The clock the component reads (default: the system clock, read in the worker). */
  clock?: Clock;
  /** The deadline of each call, in milliseconds (default `DEFAULT_CALL_TIMEOUT_MS`). */
  callTimeoutMs?: number;
  /** How long opening a connection may take, in milliseconds (default `DEFAULT_CONNECT_TIMEOUT_MS`). */
  connectTimeoutMs?: number;
  /** Guest workers, each with its own connection, running calls in parallel (default 1). */
  workers?: number;
  /** The guest's memory cap in bytes (default `DEFAULT_MEMORY_LIMIT`). */
  memoryLimit?: number;
  /** The largest row set handed to the guest, in bytes (default `DEFAULT_MAX_RESULT_BYTES`). */
  maxResultBytes?: number;
}

/** The session of one HTTP request (`loadFromCookie`). */
export interface RequestSession {
  /** The live session the cookie names, or a fresh unsaved one. */
  session: Session;
  /** What the cookie was: none, a live session's, or malformed/unknown/expired. */
  cookie: 'absent' | 'live' | 'stale';
  /** For a stale cookie, the `Set-Cookie` value that removes it; otherwise null. */
  removalCookie: string | null;
}

/** What `commit` writes. */
export interface CommitRequest {
  /** The token of a stored session to delete first (log out). */
  delete?: string | null;
  /** A session to write after that (refreshed in place). */
  save?: Session | null;
  /** Move the saved session to a fresh token. */
  rotate?: boolean;
}

/** What `commit` did. */
export interface CommitOutcome {
  /** The written session (the one passed as `save`, refreshed), or null. */
  session: Session | null;
  /** Whether the session to delete existed. */
  deleted: boolean;
  /** The `Set-Cookie` value for the response, or null. */
  setCookie: string | null;
}

/** Reported after every step of `cleanup`. */
export interface CleanupProgress {
  removedInBatch: number;
  removedTotal: number;
  batches: number;
}

/** The options of `cleanup`. */
export interface CleanupOptions {
  /** Rows one step removes at most (default `DEFAULT_CLEANUP_BATCH`). */
  batchSize?: number;
  onProgress?: (progress: CleanupProgress) => void;
}

/** The outcome of `callExport`: the export's `result`, in jco's form. */
export type ExportOutcome = { ok: unknown } | { err: WitStoreError };

/** The session store: every operation runs in the component. Close it with `close()`. */
export declare class Store {
  /** Use `createStore`. */
  private constructor();
  /** Asks the component for its defaults, validates the configuration, records the statements (`createStore` does). */
  bootstrap(overrides?: ConfigOverrides): Promise<void>;
  /**
   * Calls export `fn` (jco's camelCase name, e.g. `loadFromCookie`) with jco's values, within the deadline.
   * Rejects with a `StoreError` for a failure of the sandbox (deadline, trap, closed).
   */
  callExport(fn: string, ...args: unknown[]): Promise<ExportOutcome>;
  /** The configuration in force (validated by the component). */
  readonly config: StoreConfig;
  /** The configuration in the component's form, as the exports take it. */
  readonly witConfig: WitConfig;
  /** The statements the component declared, verbatim: the only ones this host sends for it. */
  readonly statements: readonly string[];
  /** The store's clock (microseconds since 1970). */
  now(): bigint;
  /** A fresh token: 64 lower-case hex characters. */
  generateSessionId(): Promise<string>;
  /** A new, unsaved session with a fresh token, created now, with `expiry` (default: the configuration's). */
  newSession(expiry?: ExpiryInput | null): Promise<Session>;
  /** Loads the session with token `id` (`invalid-id`, `not-found`, `expired`, `database`). */
  load(id: string): Promise<Session>;
  /** The session a request's `Cookie` header names, or a fresh unsaved one. */
  loadFromCookie(cookieHeader: string | null | undefined): Promise<RequestSession>;
  /** Writes what `session` changed (a new one whole) and refreshes it in place; returns it. */
  save(session: Session): Promise<Session>;
  /** Gives the session a fresh token and writes it (at login, against session fixation); returns it. */
  regenerateId(session: Session): Promise<Session>;
  /** The end of a request in one call: deletes `delete`, then writes `save`. */
  commit(request?: CommitRequest): Promise<CommitOutcome>;
  /** Deletes the session with token `id`; resolves whether it existed. */
  delete(id: string): Promise<boolean>;
  /** Deletes the sessions expired by now (the store's clock), step by step; resolves how many. */
  cleanup(options?: CleanupOptions): Promise<number>;
  /** One cleanup step: deletes at most `limit` sessions expired at or before `cutoff`; resolves the count. */
  cleanupBatch(cutoff: TimestampInput, limit: number): Promise<number>;
  /** How many sessions expired at or before `cutoff`. */
  countExpired(cutoff: TimestampInput): Promise<number>;
  /** The user's unexpired sessions, newest first. */
  getUserSessions(userId: UserIdInput): Promise<UserSession[]>;
  /** Deletes every session of the user; resolves how many. */
  deleteUserSessions(userId: UserIdInput): Promise<number>;
  /** Deletes every session of the user but the one with token `keepId`; resolves how many. */
  deleteUserSessionsExcept(userId: UserIdInput, keepId: string): Promise<number>;
  /** Deletes the user's session with this handle; resolves whether it existed. */
  revokeSession(userId: UserIdInput, handle: string): Promise<boolean>;
  /** The `Set-Cookie` value that stores the session's token. */
  cookieHeader(session: Session): Promise<string>;
  /** The `Set-Cookie` value that removes the session cookie. */
  removalCookieHeader(): Promise<string>;
  /** Ends every worker and closes every connection; calls in progress or queued fail with `closed`. Idempotent. */
  close(): Promise<void>;
}

/**
 * Builds a store: loads the component (by default the bundled one), starts its worker(s), applies and
 * validates the configuration, records the statements the component declares. Rejects with `invalid-config`
 * without a connection, or without a component when the package bundles none.
 */
export declare function createStore(options: CreateStoreOptions): Promise<Store>;

/** The system clock, in microseconds since 1970. */
export declare const systemClock: Readonly<{ now(): bigint }>;

/** A clock that moves only when told to (for tests), in microseconds since 1970. */
export declare class ManualClock implements Clock {
  /** Starts at `start` (microseconds since 1970; default now). */
  constructor(start?: bigint | number | string);
  now(): bigint;
  /** Sets the time (microseconds since 1970). */
  set(micros: bigint | number | string): void;
  /** Moves the time forward by `seconds` (fractions to the microsecond). */
  advance(seconds: number): void;
  /** Moves the time forward by `micros` microseconds. */
  advanceMicros(micros: bigint | number | string): void;
}

/**
 * Whether `statement` is one data statement (after whitespace and comments: `SELECT`, `INSERT`, `UPDATE`,
 * `DELETE`, `WITH`, `VALUES` or `TABLE`); the host refuses anything else unsent.
 */
export declare function isDataStatement(statement: string): boolean;

/**
 * The directory of the component bindings bundled in this package (transpiled by `npm pack`), or null when
 * there are none (a repository checkout). `createStore` uses them when given no component.
 */
export declare function bundledComponentDir(): string | null;

/**
 * Loads a component into what a guest worker runs, every core memory capped at `memoryLimit` bytes
 * (default `DEFAULT_MEMORY_LIMIT`). A path or bytes are transpiled now (needs jco).
 */
export declare function loadComponent(
  source: ComponentSource,
  options?: { memoryLimit?: number },
): Promise<LoadedComponent>;

/**
 * Transpiles the component `bytes` with jco, in memory; resolves its files by name. Needs the optional peer
 * dependency `@bytecodealliance/jco` (a clear error without it).
 */
export declare function transpileComponent(bytes: Uint8Array | ArrayBuffer): Promise<Record<string, Uint8Array>>;

/** Transpiles the component `bytes` into `dir` (replaced when it exists); resolves `dir`. Needs jco. */
export declare function transpileToDirectory(bytes: Uint8Array | ArrayBuffer, dir: string): Promise<string>;

/**
 * Transpiles `bytes` into a directory of `cacheRoot` named after the component's SHA-256, unless it is there
 * already; resolves that directory. Needs jco when it is not cached.
 */
export declare function transpileCached(bytes: Uint8Array | ArrayBuffer, cacheRoot: string): Promise<string>;

/** The guest's memory cap by default, in bytes (64 MiB). */
export declare const DEFAULT_MEMORY_LIMIT: number;

/** The most bytes one `random-bytes` call may ask for (4096). */
export declare const MAX_RANDOM_BYTES: number;

/** How long one call may take by default, in milliseconds (30 s). */
export declare const DEFAULT_CALL_TIMEOUT_MS: number;

/** How long opening a database connection may take by default, in milliseconds (5 s). */
export declare const DEFAULT_CONNECT_TIMEOUT_MS: number;

/** The largest row set handed to the component by default, in bytes of decoded values (16 MiB). */
export declare const DEFAULT_MAX_RESULT_BYTES: number;

/** Rows one cleanup step removes at most by default (1000). */
export declare const DEFAULT_CLEANUP_BATCH: number;

/** An expiry mode in the component's form (`undefined` for none). */
export declare function expiryToWit(expiry: ExpiryInput | null | undefined): WitExpiry | undefined;

/** An expiry mode from the component's form (`null` for none). */
export declare function expiryFromWit(expiry: WitExpiry | null | undefined): Expiry | null;
