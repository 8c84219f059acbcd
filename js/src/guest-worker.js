// The guest worker: one instance of the session-store component, on a thread of its own.
//
// The component's imports are synchronous, and the `sql` import needs node-postgres, which is
// asynchronous. This thread runs the guest and blocks in `Atomics.wait` while the main thread (whose
// event loop stays free) runs the statement; the answer comes back over a MessagePort, read with
// `receiveMessageOnPort` once the main thread has stored the request's sequence number in the shared
// word and notified. One request is in flight at a time (the guest is single-threaded), a wait never
// outlasts the call's deadline, and a guest that spins is stopped by the main thread terminating this
// thread: nothing else can interrupt WebAssembly running on a thread.

import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';

import { refusal as statementRefusal, runnable } from './statements.js';

const { source, modules, signal, answers, hostClock, maxRandomBytes } = workerData;

/**
 * The declared statements, by index: whether each may be sent (a single data statement), decided once
 * when they are pinned. The boundary is checked here first, so a refusal costs no round trip, and again
 * on the main thread before anything is sent (`admit`); the messages are the Rust host's.
 */
let pinned = runnable(workerData.pinned);

/** `signal[0]`: the sequence number of the last request the main thread answered. */
const answered = new Int32Array(signal);

/** A call ran past its deadline while the guest waited for the host. */
class DeadlineTrap extends Error {
  constructor() {
    super('the call ran past its deadline while waiting for the host');
    this.name = 'DeadlineTrap';
  }
}

let sequence = 0;
let deadline = 0;

/** Sends `request` to the main thread and blocks until it answers (or the call's deadline passes). */
function ask(request) {
  sequence = (sequence + 1) | 0;
  const mine = sequence;
  parentPort.postMessage({ type: 'host', seq: mine, request });
  for (;;) {
    const seen = Atomics.load(answered, 0);
    if (seen === mine) {
      break;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      throw new DeadlineTrap();
    }
    Atomics.wait(answered, 0, seen, remaining);
  }
  // The answer was posted before the notification; drop any stale one of an earlier request.
  for (;;) {
    const message = receiveMessageOnPort(answers);
    if (message === undefined) {
      throw new Error('the host bridge lost an answer');
    }
    if (message.message.seq === mine) {
      return message.message.answer;
    }
  }
}

// The system clock in microseconds: the wall clock at the start of each call, advanced by the
// monotonic clock within it (Date has millisecond precision only).
let wallAtCall = 0n;
let monotonicAtCall = 0;

function systemNow() {
  const elapsed = BigInt(Math.floor((performance.now() - monotonicAtCall) * 1000));
  return wallAtCall + elapsed;
}

/**
 * A `sql-error` thrown as jco expects an import's `err`: a value with an own `payload` (a plain object:
 * no stack trace is captured for an answer that is not a failure of the host).
 */
function sqlErr(payload) {
  return { payload };
}

const imports = {
  sql: {
    sqlQuery(index, params) {
      const refused = statementRefusal(pinned, index);
      if (refused !== null) {
        throw sqlErr({ tag: 'refused', val: refused });
      }
      const answer = ask({ op: 'sql', index, params });
      if ('ok' in answer) {
        return answer.ok;
      }
      throw sqlErr(answer.err);
    },
  },
  entropy: {
    randomBytes(len) {
      if (len > maxRandomBytes) {
        // A trap, as in the Rust host: asking for more is a guest bug.
        throw new Error(`random-bytes asked for ${len} bytes; the limit is ${maxRandomBytes}`);
      }
      return randomFillSync(new Uint8Array(len));
    },
  },
  clock: {
    now() {
      return hostClock ? BigInt(ask({ op: 'now' }).now) : systemNow();
    },
  },
};

// jco looks the interfaces up by name without the version (1.35); both spellings are given.
const importObject = {};
for (const [name, functions] of Object.entries(imports)) {
  importObject[`wasm-sessions:store/${name}`] = functions;
  importObject[`wasm-sessions:store/${name}@0.2.0`] = functions;
}

const { instantiate } = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);

/** The store interface of the current instance, and the memories its core instances export. */
let store = null;
let memories = [];

function instantiateGuest() {
  memories = [];
  const root = instantiate(
    (name) => {
      const module = modules[name];
      if (module === undefined) {
        throw new Error(`the bindings ask for an unknown core module ${name}`);
      }
      return module;
    },
    importObject,
    (module, coreImports) => {
      const instance = new WebAssembly.Instance(module, coreImports);
      for (const value of Object.values(instance.exports)) {
        if (value instanceof WebAssembly.Memory) {
          memories.push(value);
        }
      }
      return instance;
    },
  );
  store = root['wasm-sessions:store/store@0.2.0'] ?? root.store;
  if (store === undefined) {
    throw new Error('the component does not export wasm-sessions:store/store@0.2.0');
  }
}

function isComponentError(error) {
  return (
    error instanceof Error &&
    error.constructor?.name === 'ComponentError' &&
    Object.prototype.hasOwnProperty.call(error, 'payload')
  );
}

function memoryInUse() {
  return memories.reduce((n, m) => n + m.buffer.byteLength, 0);
}

function call({ id, fn, args, deadline: callDeadline }) {
  deadline = callDeadline;
  wallAtCall = BigInt(Date.now()) * 1000n;
  monotonicAtCall = performance.now();
  const func = store[fn];
  if (typeof func !== 'function') {
    parentPort.postMessage({ type: 'result', id, unknown: `no export named ${fn}` });
    return;
  }
  try {
    const value = func(...args);
    parentPort.postMessage({ type: 'result', id, ok: value });
  } catch (error) {
    if (isComponentError(error)) {
      parentPort.postMessage({ type: 'result', id, err: error.payload });
      return;
    }
    // A trap, an import that threw, or a value jco could not convert: this instance is never used
    // again (its memory and jco's bookkeeping may be inconsistent).
    const trap = {
      message: String(error?.message ?? error),
      name: String(error?.name ?? 'Error'),
      deadline: error instanceof DeadlineTrap,
      runtime: error instanceof WebAssembly.RuntimeError,
      memory: memoryInUse(),
    };
    try {
      instantiateGuest();
    } catch (instantiation) {
      trap.reinstantiate = String(instantiation?.message ?? instantiation);
    }
    parentPort.postMessage({ type: 'result', id, trap });
  }
}

try {
  instantiateGuest();
} catch (error) {
  parentPort.postMessage({ type: 'failed', message: String(error?.message ?? error) });
  process.exit(1);
}

parentPort.on('message', (message) => {
  if (message.type === 'call') {
    call(message);
  } else if (message.type === 'pin') {
    pinned = runnable(message.statements);
  }
});
parentPort.postMessage({ type: 'ready', memory: memoryInUse() });
