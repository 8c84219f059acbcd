// The session as a JavaScript application holds it, and its conversion to and from the component's
// records. Like the Rust host's `Session`, it remembers what was changed and read since it was loaded, so
// a save sends only the changes, under the condition that what was read is unchanged (`merge`).

import { StoreError } from './errors.js';

/**
 * The top-level members of a JSON object text, each as `[key, raw value text]`, without re-serializing
 * anything: a value the database returned is sent back byte for byte (a large integer or a long decimal
 * survives, which `JSON.parse` + `JSON.stringify` would round).
 */
export function objectMembers(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) {
      i += 1;
    }
  };
  const fail = () => {
    throw new StoreError('invalid-data', 'session data is not a JSON object');
  };
  const skipString = () => {
    const start = i;
    i += 1;
    while (i < text.length && text[i] !== '"') {
      i += text[i] === '\\' ? 2 : 1;
    }
    if (i >= text.length) {
      fail();
    }
    i += 1;
    return text.slice(start, i);
  };
  ws();
  if (text[i] !== '{') {
    fail();
  }
  i += 1;
  ws();
  const members = [];
  if (text[i] === '}') {
    return members;
  }
  for (;;) {
    ws();
    if (text[i] !== '"') {
      fail();
    }
    const key = JSON.parse(skipString());
    ws();
    if (text[i] !== ':') {
      fail();
    }
    i += 1;
    ws();
    const start = i;
    let depth = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        skipString();
        continue;
      }
      if (c === '{' || c === '[') {
        depth += 1;
      } else if (c === '}' || c === ']') {
        if (depth === 0) {
          break;
        }
        depth -= 1;
      } else if (c === ',' && depth === 0) {
        break;
      }
      i += 1;
    }
    const raw = text.slice(start, i).trim();
    if (raw === '' || i >= text.length) {
      fail();
    }
    members.push([key, raw]);
    if (text[i] === ',') {
      i += 1;
      continue;
    }
    i += 1;
    ws();
    if (i !== text.length) {
      fail();
    }
    return members;
  }
}

/** A JSON object text from `[key, raw value text]` members. */
function objectText(members) {
  return `{${[...members].map(([key, raw]) => `${JSON.stringify(key)}:${raw}`).join(',')}}`;
}

/** The JSON text of an application value (`invalid-value` for what JSON cannot hold). */
function valueText(key, value) {
  let text;
  try {
    text = JSON.stringify(value);
  } catch (error) {
    throw new StoreError('invalid-value', `session value ${JSON.stringify(key)} is not JSON: ${error.message}`);
  }
  if (text === undefined) {
    throw new StoreError('invalid-value', `session value ${JSON.stringify(key)} is not JSON (${typeof value})`);
  }
  return text;
}

/** A user id as the component's `s64`: a BigInt, or a safe integer number. */
export function userIdToWit(userId) {
  if (typeof userId === 'bigint') {
    if (userId < -(2n ** 63n) || userId >= 2n ** 63n) {
      throw new StoreError('invalid-data', 'a user id must fit a signed 64-bit integer');
    }
    return userId;
  }
  if (typeof userId === 'number' && Number.isSafeInteger(userId)) {
    return BigInt(userId);
  }
  throw new StoreError('invalid-data', 'a user id is a BigInt or a safe integer number');
}

/** A timestamp (microseconds since 1970) as `s64`: a BigInt, a safe integer, or a `Date`. */
export function timestampToWit(value, what = 'a timestamp') {
  if (value instanceof Date) {
    return BigInt(value.getTime()) * 1000n;
  }
  if (typeof value === 'bigint') {
    return value;
  }
  if (typeof value === 'number' && Number.isSafeInteger(value)) {
    return BigInt(value);
  }
  throw new StoreError('invalid-data', `${what} is microseconds since 1970 (BigInt or integer) or a Date`);
}

/**
 * A session's expiry mode, in JavaScript:
 * - `{ mode: 'on-inactivity', seconds }`: sliding, after that many seconds without use;
 * - `{ mode: 'at', at }`: at that time (microseconds since 1970 as a BigInt; a Date is accepted);
 * - `{ mode: 'on-session-end' }`: with the browser session;
 * - `null`: the configuration's policy.
 */
export function expiryToWit(expiry) {
  if (expiry === null || expiry === undefined) {
    return undefined;
  }
  switch (expiry.mode) {
    case 'on-inactivity': {
      const seconds = expiry.seconds;
      if (!(typeof seconds === 'bigint' || Number.isSafeInteger(seconds))) {
        throw new StoreError('invalid-data', 'on-inactivity takes whole seconds');
      }
      return { tag: 'on-inactivity', val: BigInt(seconds) };
    }
    case 'at':
      return { tag: 'at', val: timestampToWit(expiry.at, 'an expiry time') };
    case 'on-session-end':
      return { tag: 'on-session-end' };
    default:
      throw new StoreError('invalid-data', "an expiry mode is 'on-inactivity', 'at' or 'on-session-end'");
  }
}

export function expiryFromWit(expiry) {
  if (expiry === undefined || expiry === null) {
    return null;
  }
  switch (expiry.tag) {
    case 'on-inactivity':
      return { mode: 'on-inactivity', seconds: Number(expiry.val) };
    case 'at':
      return { mode: 'at', at: expiry.val };
    default:
      return { mode: 'on-session-end' };
  }
}

const sameExpiry = (a, b) =>
  a === b ||
  (a !== null &&
    b !== null &&
    a.mode === b.mode &&
    String(a.seconds ?? '') === String(b.seconds ?? '') &&
    String(a.at ?? '') === String(b.at ?? ''));

/** jco's form of `option<option<T>>`: the outer option tagged. */
const some = (val) => ({ tag: 'some', val });
const none = { tag: 'none' };

/**
 * A session as the application holds it in memory. Times are microseconds since 1970 as BigInt
 * (`new Date(Number(s.expiresAt / 1000n))` for a Date), user ids BigInt, the version a BigInt.
 *
 * Data values are JSON values: `get` returns a fresh copy (change it and `set` it back), `set` stores the
 * value's JSON. The session records what it changed and read, for `save`.
 */
export class Session {
  #id;
  #handle;
  /** key -> raw JSON text of the value */
  #data;
  #userId;
  #label;
  #expiry;
  #times;
  #version;
  #isSaved;
  #tracking;

  /** Use `store.newSession()` or `store.load()`; this takes the component's `session` record. */
  constructor(wit) {
    this.#id = wit.id;
    this.#handle = wit.handle;
    this.#data = new Map(objectMembers(wit.data));
    this.#userId = wit.userId ?? null;
    this.#label = wit.label ?? null;
    this.#expiry = expiryFromWit(wit.expiry);
    this.#times = {
      createdAt: wit.createdAt,
      expiresAt: wit.expiresAt,
      absoluteExpiresAt: wit.absoluteExpiresAt,
      updatedAt: wit.updatedAt,
    };
    this.#version = wit.version;
    this.#isSaved = wit.isSaved;
    this.#tracking = Session.#freshTracking();
  }

  static #freshTracking() {
    return {
      originals: new Map(),
      cleared: false,
      userOriginal: undefined,
      labelChanged: false,
      expiryOriginal: undefined,
      reads: { keys: new Set(), all: false, user: false, expiry: false },
    };
  }

  /** The secret token (64 lower-case hex characters): it belongs in the cookie, never in a log. */
  get id() {
    return this.#id;
  }

  /** The opaque handle (the hex SHA-256 of the token), as `getUserSessions` lists it. */
  get handle() {
    return this.#handle;
  }

  /** The value under `key` (a fresh copy), or `undefined`. */
  get(key) {
    this.#tracking.reads.keys.add(key);
    const raw = this.#data.get(key);
    return raw === undefined ? undefined : JSON.parse(raw);
  }

  /** Whether `key` is set. */
  has(key) {
    this.#tracking.reads.keys.add(key);
    return this.#data.has(key);
  }

  /** Stores `value` (anything JSON can hold) under `key`. */
  set(key, value) {
    if (typeof key !== 'string') {
      throw new StoreError('invalid-value', 'a session key is a string');
    }
    const text = valueText(key, value);
    const old = this.#data.get(key);
    if (old === text) {
      return this;
    }
    if (!this.#tracking.originals.has(key)) {
      this.#tracking.originals.set(key, old ?? null);
    }
    this.#data.set(key, text);
    return this;
  }

  /** Removes `key`; returns the value it had, or `undefined`. */
  remove(key) {
    const old = this.#data.get(key);
    if (old === undefined) {
      return undefined;
    }
    if (!this.#tracking.originals.has(key)) {
      this.#tracking.originals.set(key, old);
    }
    this.#data.delete(key);
    return JSON.parse(old);
  }

  /** Removes all data (the user stays). */
  clear() {
    if (this.#data.size === 0 && this.#tracking.originals.size === 0) {
      return;
    }
    for (const [key, raw] of this.#data) {
      if (!this.#tracking.originals.has(key)) {
        this.#tracking.originals.set(key, raw);
      }
    }
    this.#data.clear();
    this.#tracking.cleared = true;
  }

  /** All data as a fresh object (counts as reading every key). */
  get data() {
    this.#tracking.reads.all = true;
    return JSON.parse(objectText(this.#data));
  }

  /** The keys, in stored order (counts as reading every key). */
  keys() {
    this.#tracking.reads.all = true;
    return [...this.#data.keys()];
  }

  /** The authenticated user (a BigInt), or null. */
  get userId() {
    this.#tracking.reads.user = true;
    return this.#userId;
  }

  /** Marks the session as authenticated as `userId` (BigInt or safe integer); rotate the token at login. */
  setUser(userId) {
    this.#changeUser(userIdToWit(userId));
  }

  /** Removes the authenticated user. */
  clearUser() {
    this.#changeUser(null);
  }

  #changeUser(user) {
    if (this.#userId !== user) {
      if (this.#tracking.userOriginal === undefined) {
        this.#tracking.userOriginal = this.#userId;
      }
      this.#userId = user;
    }
  }

  get isAuthenticated() {
    return this.userId !== null;
  }

  /** The label the application set (e.g. the device), or null. */
  get label() {
    return this.#label;
  }

  setLabel(label) {
    if (label !== null && typeof label !== 'string') {
      throw new StoreError('invalid-data', 'a label is a string or null');
    }
    if (this.#label !== label) {
      this.#label = label;
      this.#tracking.labelChanged = true;
    }
  }

  /** This session's expiry mode (see `expiryToWit`), or null for the configuration's. */
  get expiry() {
    this.#tracking.reads.expiry = true;
    return this.#expiry === null ? null : { ...this.#expiry };
  }

  setExpiry(expiry) {
    const normalized = expiryFromWit(expiryToWit(expiry));
    if (!sameExpiry(this.#expiry, normalized)) {
      if (this.#tracking.expiryOriginal === undefined) {
        this.#tracking.expiryOriginal = this.#expiry;
      }
      this.#expiry = normalized;
    }
  }

  get createdAt() {
    return this.#times.createdAt;
  }

  get expiresAt() {
    return this.#times.expiresAt;
  }

  get absoluteExpiresAt() {
    return this.#times.absoluteExpiresAt;
  }

  get updatedAt() {
    return this.#times.updatedAt;
  }

  get version() {
    return this.#version;
  }

  get isSaved() {
    return this.#isSaved;
  }

  /** Whether a save would write something. */
  get hasChanges() {
    const t = this.#tracking;
    return (
      t.originals.size > 0 || t.cleared || t.userOriginal !== undefined || t.labelChanged || t.expiryOriginal !== undefined
    );
  }

  /** Takes over the state of `other` (a fresh copy from the store), dropping the change tracking. */
  replaceWith(other) {
    this.#id = other.#id;
    this.#handle = other.#handle;
    this.#data = other.#data;
    this.#userId = other.#userId;
    this.#label = other.#label;
    this.#expiry = other.#expiry;
    this.#times = other.#times;
    this.#version = other.#version;
    this.#isSaved = other.#isSaved;
    this.#tracking = Session.#freshTracking();
  }

  /** The component's `session` record. */
  toWit() {
    return {
      id: this.#id,
      handle: this.#handle,
      data: objectText(this.#data),
      userId: this.#userId ?? undefined,
      label: this.#label ?? undefined,
      expiry: expiryToWit(this.#expiry),
      createdAt: this.#times.createdAt,
      expiresAt: this.#times.expiresAt,
      absoluteExpiresAt: this.#times.absoluteExpiresAt,
      updatedAt: this.#times.updatedAt,
      version: this.#version,
      isSaved: this.#isSaved,
    };
  }

  /** The component's `save-request`: the state, what changed, and what was seen (as the Rust host). */
  saveRequest(rotate) {
    const t = this.#tracking;
    const changedKeys = [...t.originals.keys()].sort();
    const set = [];
    const removed = [];
    for (const key of changedKeys) {
      const raw = this.#data.get(key);
      if (raw !== undefined) {
        set.push([key, raw]);
      } else if (!t.cleared) {
        removed.push(key);
      }
    }
    const loaded = (key) => (t.originals.has(key) ? (t.originals.get(key) ?? undefined) : this.#data.get(key));
    const readOnly = [...t.reads.keys].filter((key) => !t.originals.has(key)).sort();
    const keys = [...changedKeys, ...readOnly].map((key) => [key, loaded(key)]);
    let allData;
    if (t.reads.all) {
      const original = new Map(this.#data);
      for (const [key, raw] of t.originals) {
        if (raw === null) {
          original.delete(key);
        } else {
          original.set(key, raw);
        }
      }
      allData = objectText(original);
    }
    const userLoaded = t.userOriginal !== undefined ? t.userOriginal : this.#userId;
    const expiryLoaded = t.expiryOriginal !== undefined ? t.expiryOriginal : this.#expiry;
    return {
      session: this.toWit(),
      changes: {
        set,
        removed,
        cleared: t.cleared,
        user: t.userOriginal !== undefined ? some(this.#userId ?? undefined) : none,
        label: t.labelChanged ? some(this.#label ?? undefined) : none,
        expiry: t.expiryOriginal !== undefined ? some(expiryToWit(this.#expiry)) : none,
      },
      expected: {
        keys,
        allData,
        user: t.reads.user || t.userOriginal !== undefined ? some(userLoaded ?? undefined) : none,
        expiry: t.reads.expiry || t.expiryOriginal !== undefined ? some(expiryToWit(expiryLoaded)) : none,
      },
      rotate,
    };
  }

  /** Never prints the token or the data. */
  toJSON() {
    return {
      handle: this.#handle,
      keys: this.#data.size,
      userId: this.#userId === null ? null : String(this.#userId),
      label: this.#label,
      expiresAt: String(this.#times.expiresAt),
      version: String(this.#version),
      isSaved: this.#isSaved,
    };
  }

  [Symbol.for('nodejs.util.inspect.custom')]() {
    return `Session ${JSON.stringify(this.toJSON())}`;
  }
}

/** A stored session as listed for its user. */
export function userSessionFromWit(wit) {
  return {
    handle: wit.handle,
    data: JSON.parse(wit.data),
    userId: wit.userId,
    label: wit.label ?? null,
    createdAt: wit.createdAt,
    expiresAt: wit.expiresAt,
    updatedAt: wit.updatedAt,
  };
}
