// The store's one error type: the component's `store-error` variants, and the host's own failures, each
// with a stable `code`.

/**
 * Why a store operation failed.
 *
 * `code` is one of
 * - the component's `store-error` cases: `invalid-id`, `not-found`, `expired`, `invalid-config`,
 *   `invalid-data`, `database` (with `kind`, the `sql-error` case: `connection-failed`,
 *   `constraint-violation` (with `sqlstate`), `bad-parameter`, `query-failed`, `refused`),
 *   `unexpected-result`, `conflict`;
 * - the host's: `deadline-exceeded` (the call ran past its deadline and was stopped), `memory-limit`
 *   (the guest ran out of its capped memory), `guest` (it trapped, or its worker died),
 *   `invalid-value` (a session value that is not JSON), `closed` (the store was closed).
 */
export class StoreError extends Error {
  constructor(code, message, details = {}) {
    super(message ?? code);
    this.name = 'StoreError';
    this.code = code;
    Object.assign(this, details);
  }

  /** The error for a component's `store-error` value (jco's `{ tag, val }`). */
  static fromWit(error) {
    switch (error.tag) {
      case 'not-found':
        return new StoreError('not-found', 'session not found');
      case 'expired':
        return new StoreError('expired', 'session expired');
      case 'conflict':
        return new StoreError(
          'conflict',
          'the session was changed by another request; reload it and retry',
        );
      case 'database': {
        const sql = error.val;
        if (sql.tag === 'constraint-violation') {
          return new StoreError(
            'database',
            `database error: constraint violation (${sql.val.sqlstate}): ${sql.val.message}`,
            { kind: sql.tag, sqlstate: sql.val.sqlstate, detail: sql.val.message },
          );
        }
        return new StoreError('database', `database error: ${sql.tag}: ${sql.val}`, {
          kind: sql.tag,
          detail: sql.val,
        });
      }
      case 'invalid-id':
        return new StoreError('invalid-id', `invalid session id: ${error.val}`, { detail: error.val });
      case 'invalid-config':
        return new StoreError('invalid-config', `invalid configuration: ${error.val}`, { detail: error.val });
      case 'invalid-data':
        return new StoreError('invalid-data', `invalid session data: ${error.val}`, { detail: error.val });
      case 'unexpected-result':
        return new StoreError('unexpected-result', `unexpected database result: ${error.val}`, {
          detail: error.val,
        });
      default:
        return new StoreError('unexpected-result', `the component answered an unknown error ${error.tag}`);
    }
  }
}
