// The main thread's side of one guest worker: spawning it, running one call at a time within a deadline,
// answering its `sql` and `clock` requests, and replacing it when a call ran out of time.

import { MessageChannel, Worker } from 'node:worker_threads';

import { StoreError } from './errors.js';
import { SqlConnection } from './sql.js';

const WORKER_URL = new URL('./guest-worker.js', import.meta.url);

/** The most bytes one `random-bytes` call may ask for (as the Rust host). */
export const MAX_RANDOM_BYTES = 4096;

/**
 * One guest worker and its database connection. `call` runs one export at a time; the store queues.
 *
 * The deadline covers everything a call does: starting the worker if it must, guest work, and every
 * statement. Past it the call fails with `deadline-exceeded`, a statement in flight is cancelled and its
 * connection closed, and the worker is terminated (a guest spinning in WebAssembly cannot be stopped
 * otherwise); the next call starts a fresh one.
 */
export class Bridge {
  /**
   * @param {object} host
   * @param {object} host.component  `loadComponent`'s result
   * @param {(index: number) => ({ index: number, text: string } | { refused: string })} host.admit  the
   *   boundary: a statement index the component sent, mapped to its declared text, or refused
   * @param {{ now(): bigint } | null} host.clock  a clock of the application's, or null for the system's
   * @param {object} host.sql  `SqlConnection` options
   * @param {object} host.resourceLimits  the worker's JavaScript heap limits
   */
  constructor({ component, admit, clock, sql, resourceLimits }) {
    this.component = component;
    /** The declared statements, once recorded: the worker refuses other indexes itself, without a round trip. */
    this.pinned = [];
    this.admit = admit;
    this.clock = clock;
    this.resourceLimits = resourceLimits;
    this.sql = new SqlConnection(sql);
    this.worker = null;
    this.starting = null;
    this.current = null;
    this.nextId = 1;
    this.closed = false;
  }

  /** Starts a worker unless one is running; resolves when its instance is ready. */
  start() {
    if (this.worker !== null) {
      return Promise.resolve();
    }
    if (this.starting !== null) {
      return this.starting;
    }
    const signal = new SharedArrayBuffer(4);
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WORKER_URL, {
      workerData: {
        source: this.component.source,
        modules: this.component.modules,
        signal,
        answers: port2,
        hostClock: this.clock !== null,
        maxRandomBytes: MAX_RANDOM_BYTES,
        pinned: this.pinned,
      },
      transferList: [port2],
      resourceLimits: this.resourceLimits,
      // The worker needs no flag of the application's (and `--input-type`, say, would stop it).
      execArgv: [],
    });
    const state = { worker, signal: new Int32Array(signal), answers: port1 };
    this.starting = new Promise((resolve, reject) => {
      let pending = true;
      const fail = (error) => {
        if (!pending) {
          return;
        }
        pending = false;
        this.starting = null;
        worker.terminate().catch(() => {});
        port1.close();
        reject(error);
      };
      worker.once('message', (message) => {
        if (!pending) {
          return;
        }
        if (message.type !== 'ready') {
          fail(new StoreError('guest', `the component could not be instantiated: ${message.message}`));
          return;
        }
        pending = false;
        this.starting = null;
        if (this.closed) {
          worker.terminate().catch(() => {});
          port1.close();
          reject(new StoreError('closed', 'the store is closed'));
          return;
        }
        this.worker = state;
        worker.on('message', (m) => this.onMessage(state, m));
        resolve();
      });
      worker.on('error', (error) => {
        if (pending) {
          fail(new StoreError('guest', `the guest worker failed to start: ${error.message}`));
        } else {
          this.lost(state, error);
        }
      });
      worker.once('exit', (code) => {
        if (pending) {
          fail(new StoreError('guest', `the guest worker exited while starting (code ${code})`));
        } else {
          this.lost(state, new Error(`the guest worker exited (code ${code})`));
        }
      });
    });
    return this.starting;
  }

  /** Records the declared statements (the main thread checks every statement again: `admit`). */
  pin(statements) {
    this.pinned = [...statements];
    this.worker?.worker.postMessage({ type: 'pin', statements: this.pinned });
  }

  /**
   * Calls export `fn` (jco's name) with `args` (jco's values) and resolves with `{ ok: value }` or
   * `{ err: payload }` (the export's `result` error); rejects with a `StoreError` for a failure of the
   * sandbox (deadline, trap, worker lost, closed). The deadline (`Date.now()` milliseconds) defaults to
   * `timeoutMs` from now; a store passes the time the call was made, so waiting for a worker counts.
   */
  async call(fn, args, timeoutMs, deadline = Date.now() + timeoutMs) {
    if (this.closed) {
      throw new StoreError('closed', 'the store is closed');
    }
    if (this.current !== null) {
      throw new Error('one call at a time per bridge');
    }
    const id = this.nextId++;
    let settle;
    const outcome = new Promise((resolve, reject) => {
      settle = { resolve, reject };
    });
    // Settled by `expire` perhaps before anyone awaits it: never an unhandled rejection.
    outcome.catch(() => {});
    const current = { id, deadline, timeoutMs, settle, timer: null, done: false, posted: false };
    this.current = current;
    current.timer = setTimeout(() => this.expire(current), Math.max(0, deadline - Date.now()));
    try {
      await this.start();
    } catch (error) {
      if (current.done) {
        return outcome;
      }
      this.finish(current);
      throw error;
    }
    if (current.done) {
      return outcome;
    }
    current.posted = true;
    this.worker.worker.postMessage({ type: 'call', id, fn, args, deadline });
    return outcome;
  }

  finish(current) {
    clearTimeout(current.timer);
    current.done = true;
    if (this.current === current) {
      this.current = null;
    }
  }

  /** The call's deadline passed: fail it, cancel its statement, replace the worker. */
  expire(current) {
    if (current.done) {
      return;
    }
    this.finish(current);
    if (current.posted) {
      // The guest may be spinning or blocked: its worker goes, with any statement it has in flight.
      this.sql.abandon();
      this.stopWorker();
    }
    current.settle.reject(
      new StoreError(
        'deadline-exceeded',
        `the session call did not finish within its deadline of ${current.timeoutMs} ms`,
      ),
    );
  }

  stopWorker() {
    const state = this.worker;
    this.worker = null;
    if (state !== null) {
      state.worker.terminate().catch(() => {});
      state.answers.close();
    }
  }

  /** The worker died under a call (out of memory, an internal error): fail the call. */
  lost(state, error) {
    if (this.worker !== state) {
      return;
    }
    this.stopWorker();
    const current = this.current;
    if (current !== null) {
      this.finish(current);
      this.sql.abandon();
      current.settle.reject(new StoreError('guest', `the guest worker stopped: ${error.message}`));
    }
  }

  onMessage(state, message) {
    if (message.type === 'host') {
      // `answer` handles every failure of the statement itself; anything else is a host bug that must
      // fail the call, not the process.
      this.answer(state, message).catch((error) => this.lost(state, error));
      return;
    }
    if (message.type !== 'result') {
      return;
    }
    const current = this.current;
    if (current === null || current.id !== message.id) {
      return;
    }
    if (message.trap?.deadline) {
      this.expire(current);
      return;
    }
    this.finish(current);
    if (message.trap !== undefined) {
      const trap = message.trap;
      if (trap.reinstantiate !== undefined) {
        this.stopWorker();
      }
      const limit = this.component.memoryLimit;
      // A failed `memory.grow` leaves the guest nothing but to abort (`unreachable`); a trap with its
      // memory within 1/8 of the cap is reported as the memory limit.
      if (trap.runtime && trap.memory >= limit - limit / 8) {
        current.settle.reject(
          new StoreError(
            'memory-limit',
            `the session component was stopped: it ran out of memory (${trap.memory} bytes in use, the limit is ${limit})`,
            { memory: trap.memory, limit },
          ),
        );
      } else {
        current.settle.reject(new StoreError('guest', `the session component failed: ${trap.name}: ${trap.message}`));
      }
      return;
    }
    if (message.unknown !== undefined) {
      current.settle.reject(new StoreError('invalid-data', message.unknown));
      return;
    }
    current.settle.resolve('ok' in message ? { ok: message.ok } : { err: message.err });
  }

  /** Runs the worker's request and posts the answer, unless the call ended meanwhile. */
  async answer(state, { seq, request }) {
    const current = this.current;
    let answer;
    if (request.op === 'sql') {
      const admitted = this.admit(request.index);
      if ('refused' in admitted) {
        answer = { err: { tag: 'refused', val: admitted.refused } };
      } else if (current === null) {
        answer = { err: { tag: 'connection-failed', val: 'no call in progress' } };
      } else {
        answer = await this.sql.run(admitted.index, admitted.text, request.params, current.deadline);
      }
    } else if (request.op === 'now') {
      try {
        answer = { now: BigInt(this.clock.now()) };
      } catch (error) {
        answer = { now: 0n };
        this.lost(state, new Error(`the clock failed: ${error.message}`));
        return;
      }
    } else {
      return;
    }
    if (this.worker !== state || this.current !== current || current === null || current.done) {
      // The call expired (or the store closed) while the statement ran: the worker is gone.
      return;
    }
    state.answers.postMessage({ seq, answer });
    Atomics.store(state.signal, 0, seq);
    Atomics.notify(state.signal, 0);
  }

  /** Ends the worker and the connection; a call in progress fails with `closed`. */
  async close() {
    this.closed = true;
    const current = this.current;
    if (current !== null) {
      this.finish(current);
      current.settle.reject(new StoreError('closed', 'the store was closed during the call'));
    }
    if (this.starting !== null) {
      await this.starting.catch(() => {});
    }
    const state = this.worker;
    this.worker = null;
    if (state !== null) {
      state.answers.close();
      await state.worker.terminate().catch(() => {});
    }
    await this.sql.close();
  }
}
