// The Node side of tests/tests/node.rs `a_session_written_by_one_host_loads_in_the_other`: run by the Rust
// test on a database the Rust host also uses (WASM_SESSIONS_URL, the runtime role). Prints `key=value`
// lines the Rust test compares with what the Rust host sees.
//
//   node test/support/interop.mjs read-and-touch <token>   loads the Rust host's session, prints it, sets
//                                                          `seen-by` and saves
//   node test/support/interop.mjs write                    writes a session and prints it

import { createStore } from '../../src/index.js';
import { component } from './env.mjs';

/** JSON with object keys sorted at every level (what the Rust test builds from its BTreeMap). */
function canonical(value) {
  if (Array.isArray(value)) {
    return `[${value.map(canonical).join(',')}]`;
  }
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

function print(session) {
  const expiry = session.expiry;
  const lines = {
    token: session.id,
    handle: session.handle,
    data: canonical(session.data),
    user: session.userId === null ? 'none' : String(session.userId),
    label: session.label ?? 'none',
    expiry: expiry === null ? 'none' : JSON.stringify(expiry, (_, v) => (typeof v === 'bigint' ? String(v) : v)),
    created: String(session.createdAt),
    expires: String(session.expiresAt),
    absolute: String(session.absoluteExpiresAt),
    version: String(session.version),
  };
  for (const [key, value] of Object.entries(lines)) {
    console.log(`${key}=${value}`);
  }
}

const [step, token] = process.argv.slice(2);
const store = await createStore({ connection: process.env.WASM_SESSIONS_URL, loaded: await component() });
try {
  if (step === 'read-and-touch') {
    const session = await store.load(token);
    print(session);
    session.set('seen-by', 'node');
    await store.save(session);
    console.log(`version-after=${session.version}`);
  } else if (step === 'write') {
    const session = await store.newSession();
    session.set('from', 'node');
    session.set('pi', 3.25);
    session.set('list', [1, 2, 3]);
    session.set('nested', { tags: ['x', 'y"z'] });
    session.setUser(8n);
    session.setLabel('node device');
    session.setExpiry({ mode: 'on-inactivity', seconds: 600 });
    await store.save(session);
    print(session);
  } else {
    throw new Error(`unknown step ${step}`);
  }
} finally {
  await store.close();
}
