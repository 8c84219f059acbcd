// The boundary's statement rules, as the Rust host applies them (host/src/driver.rs `is_data_statement`,
// host/src/store.rs `check_declared`).

/** The keywords a single data statement may start with (case-insensitive). */
const DATA_KEYWORDS = ['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'WITH', 'VALUES', 'TABLE'];

/** Leading Unicode `White_Space`, as Rust's `str::trim_start` removes it (JavaScript's `\s` differs). */
const LEADING_WHITESPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** The most statements a component may declare. */
export const MAX_DECLARED_STATEMENTS = 256;

/** The longest statement a component may declare, in UTF-8 bytes. */
export const MAX_STATEMENT_BYTES = 16 * 1024;

/**
 * `text` after leading whitespace, `-- line` comments and (nested) `/* block *\/` comments; `null` when a
 * block comment never ends.
 */
function skipBlanksAndComments(text) {
  for (;;) {
    text = text.replace(LEADING_WHITESPACE, '');
    if (text.startsWith('--')) {
      const newline = text.indexOf('\n', 2);
      text = newline === -1 ? '' : text.slice(newline + 1);
    } else if (text.startsWith('/*')) {
      let depth = 0;
      let i = 0;
      for (;;) {
        if (i + 1 >= text.length) {
          return null;
        }
        if (text[i] === '/' && text[i + 1] === '*') {
          depth += 1;
          i += 2;
        } else if (text[i] === '*' && text[i + 1] === '/') {
          depth -= 1;
          i += 2;
          if (depth === 0) {
            break;
          }
        } else {
          i += 1;
        }
      }
      text = text.slice(i);
    } else {
      return text;
    }
  }
}

/**
 * Whether `statement` is one data statement: after whitespace and comments it starts with `SELECT`,
 * `INSERT`, `UPDATE`, `DELETE`, `WITH`, `VALUES` or `TABLE` (case-insensitive), as a whole word.
 * Everything else (transaction control, `SET`, DDL, `COPY`, `DO`, `CALL`, ...) could change the
 * connection's state for later calls, so the host refuses it unsent.
 */
export function isDataStatement(statement) {
  const rest = skipBlanksAndComments(statement);
  if (rest === null) {
    return false;
  }
  const word = /^[A-Za-z]*/.exec(rest)[0];
  const next = rest[word.length];
  // `SELECT(1)` and `SELECT 1` are data statements; `SELECTED` is not a keyword at all.
  const endsWord = next === undefined || !/[A-Za-z0-9_$]/.test(next);
  return endsWord && DATA_KEYWORDS.includes(word.toUpperCase());
}

/**
 * Whether each declared statement may be sent (a single data statement), in the declared order: the rule
 * applied once, when the list is recorded.
 */
export function runnable(statements) {
  return statements.map((statement) => isDataStatement(statement));
}

/**
 * Why statement `index` (what the component's `sql-query` names) may not be sent, given `runnable` (the
 * declared list, as `runnable` maps it): outside the declared list, or not a single data statement
 * (declared all the same). `null` when it may be sent. The messages are the Rust host's.
 */
export function refusal(runnableList, index) {
  if (!Number.isInteger(index) || index < 0 || index >= runnableList.length) {
    return `the component did not declare statement ${index}: it declared ${runnableList.length}`;
  }
  if (!runnableList[index]) {
    return 'only single data statements (SELECT, INSERT, UPDATE, DELETE, WITH) are run';
  }
  return null;
}

/**
 * Refuses a declared statement set the host will not record: too many, too long, or not all strings.
 * Returns an error message, or `null` when the set is acceptable.
 */
export function checkDeclared(statements) {
  if (!Array.isArray(statements) || statements.some((s) => typeof s !== 'string')) {
    return 'statements() did not return a list of strings';
  }
  if (statements.length > MAX_DECLARED_STATEMENTS) {
    return `${statements.length} statements declared; the limit is ${MAX_DECLARED_STATEMENTS}`;
  }
  const long = statements.find((s) => Buffer.byteLength(s, 'utf8') > MAX_STATEMENT_BYTES);
  if (long !== undefined) {
    return `a statement of ${Buffer.byteLength(long, 'utf8')} bytes; the limit is ${MAX_STATEMENT_BYTES}`;
  }
  return null;
}
