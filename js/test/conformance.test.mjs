// The conformance suite (conformance/README.md) through the JS host: every scenario of every file in
// conformance/scenarios, each export called directly through jco's bindings (`store.callExport`), with
// arguments and results converted between the suite's JSON form and jco's values by the exports' types
// (`export_signatures`, written by tests/tests/node.rs). One database per file, emptied before each
// scenario; a manual clock at 2030-01-01T00:00:00Z; real entropy; the runtime role.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { ManualClock, StoreError, createStore } from '../src/index.js';
import {
  START_MICROS,
  bindable,
  check,
  equal,
  expand,
  isErr,
  parseSuite,
  pattern,
  shorten,
  showPattern,
  stepLabel,
} from './support/conformance.mjs';
import { connect, freshDatabase } from './support/db.mjs';
import { component, env } from './support/env.mjs';
import { camel, resultJson, show, toJco } from './support/wit-json.mjs';

const scenariosDir = path.join(env.conformance, 'scenarios');
const files = existsSync(scenariosDir)
  ? readdirSync(scenariosDir)
      .filter((name) => name.endsWith('.json'))
      .sort()
  : [];
const signatures = JSON.parse(readFileSync(env.signatures, 'utf8'));

/** Calls `name` (WIT spelling) with JSON-form `args`; returns the JSON-form result. */
async function callExport(store, name, args) {
  const signature = signatures[name];
  if (signature === undefined) {
    throw new Error(`no export named ${name}`);
  }
  if (signature.params.length !== args.length) {
    throw new Error(`${name} takes ${signature.params.length} arguments, ${args.length} given`);
  }
  const values = signature.params.map((param, i) => toJco(param.type, args[i], `${name}(${param.name})`));
  let outcome;
  try {
    outcome = await store.callExport(camel(name), ...values);
  } catch (error) {
    if (error instanceof StoreError) {
      throw new Error(`host error: ${error.code}: ${error.message}`);
    }
    throw error;
  }
  return resultJson(signature, outcome);
}

function loadSuite(file) {
  const text = readFileSync(path.join(scenariosDir, file), 'utf8');
  return parseSuite(file.replace(/\.json$/, ''), JSON.parse(text));
}

describe('conformance', { skip: files.length === 0 ? 'conformance/scenarios has no files yet' : false }, () => {
  test('every call names an export, and every export is called by some scenario', (t) => {
    const called = new Set();
    for (const file of files) {
      for (const scenario of loadSuite(file).scenarios) {
        for (const step of scenario.steps) {
          if (step.kind === 'call') {
            assert.ok(step.export in signatures, `${file} / ${scenario.name}: no export named ${step.export}`);
            called.add(step.export);
          }
        }
      }
    }
    const missing = Object.keys(signatures).filter((name) => !called.has(name));
    assert.deepEqual(missing, [], 'exports no scenario calls');
    t.diagnostic(`${files.length} files, ${called.size} exports called`);
  });

  for (const file of files) {
    describe(file, () => {
      const suite = loadSuite(file);
      let db;
      let store;
      let owner;
      let clock;
      let defaults;

      before(async () => {
        db = await freshDatabase();
        clock = new ManualClock(START_MICROS);
        store = await createStore({ connection: db.url, loaded: await component(), clock });
        owner = await connect(db.ownerUrl);
        defaults = await callExport(store, 'default-config', []);
      });

      after(async () => {
        await owner?.end().catch(() => {});
        await store?.close();
        await db?.drop();
      });

      for (const scenario of suite.scenarios) {
        test(scenario.name, async () => {
          await owner.query('DELETE FROM wasm_sessions.sessions');
          clock.set(START_MICROS);
          const scope = { vars: {}, now: START_MICROS };
          const config = { ...defaults };
          for (const [key, value] of Object.entries(scenario.config)) {
            if (!(key in config)) {
              throw new Error(`config: ${JSON.stringify(key)} is no configuration field`);
            }
            config[key] = expand(value, scope);
          }
          const valid = await callExport(store, 'validate-config', [config]);
          if (!equal(valid, { ok: null })) {
            throw new Error(`the scenario's config is invalid: ${show(valid)}`);
          }
          scope.vars.config = config;
          for (const vars of [suite.vars, scenario.vars]) {
            const bound = {};
            for (const [name, value] of Object.entries(vars)) {
              try {
                bound[name] = expand(value, scope);
              } catch (error) {
                throw new Error(`vars.${name}: ${error.message}`);
              }
            }
            Object.assign(scope.vars, bound);
          }
          for (const [index, step] of scenario.steps.entries()) {
            scope.now = clock.now();
            try {
              await runStep(store, owner, clock, scope, step);
            } catch (error) {
              throw new Error(`${suite.file}.json / ${JSON.stringify(scenario.name)} / step ${index} (${stepLabel(step)}): ${error.message}`);
            }
          }
        });
      }
    });
  }
});

async function runStep(store, owner, clock, scope, step) {
  switch (step.kind) {
    case 'advance':
      clock.advanceMicros(step.micros);
      return;
    case 'rows': {
      let result;
      if (step.handle === undefined) {
        result = await owner.query('SELECT count(*)::int AS n FROM wasm_sessions.sessions');
      } else {
        const handle = expand(step.handle, scope);
        if (typeof handle !== 'string') {
          throw new Error(`"handle" must be a string, got ${show(handle)}`);
        }
        result = await owner.query(
          "SELECT count(*)::int AS n FROM wasm_sessions.sessions WHERE id_hash = decode($1, 'hex')",
          [handle],
        );
      }
      const rows = result.rows[0].n;
      if (rows !== step.count) {
        throw new Error(`expected ${step.count} rows, found ${rows}`);
      }
      return;
    }
    default: {
      let args;
      try {
        args = step.args.map((arg) => expand(arg, scope));
      } catch (error) {
        throw new Error(`args: ${error.message}`);
      }
      let expected;
      if (step.expect !== undefined) {
        try {
          expected = pattern(step.expect, scope);
        } catch (error) {
          throw new Error(`expect: ${error.message}`);
        }
      }
      const result = await callExport(store, step.export, args);
      if (expected !== undefined) {
        try {
          check(expected, result, false, '$');
        } catch (error) {
          throw new Error(
            `${error.message}\n    expected: ${shorten(showPattern(expected))}\n    actual:   ${shorten(result)}`,
          );
        }
      } else if (isErr(result)) {
        throw new Error(`expected success, got ${shorten(result)}`);
      }
      if (step.bind !== undefined) {
        scope.vars[step.bind] = bindable(result);
      }
    }
  }
}
