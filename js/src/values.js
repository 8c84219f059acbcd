// The PostgreSQL text forms of the `sql-value` variants, converted exactly (no `Date`, no floating-point
// detours): what the Rust host's binary encoding does, in text.

/** Microseconds between 1970-01-01 (the WIT epoch) and 2000-01-01 (PostgreSQL's). */
export const PG_EPOCH_OFFSET_MICROS = 946_684_800_000_000n;

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** PostgreSQL's first valid timestamp (4714-11-24 00:00:00 BC), in microseconds since 2000. */
const PG_MIN_TIMESTAMP = -211_813_488_000_000_000n;
/** PostgreSQL's first timestamp past the range (294277-01-01 00:00:00), in microseconds since 2000. */
const PG_END_TIMESTAMP = 9_223_371_331_200_000_000n;

const MICROS_PER_DAY = 86_400_000_000n;

/** An error the caller reports as `bad-parameter`. */
export class ParamError extends Error {}

/** An error the caller reports as `query-failed`. */
export class DecodeError extends Error {}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian), on numbers: day counts stay far below 2^53.
function civilFromDays(z) {
  z += 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const y = yoe + era * 400;
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return { year: m <= 2 ? y + 1 : y, month: m, day: d };
}

function daysFromCivil(year, month, day) {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const mp = month > 2 ? month - 3 : month + 9;
  const doy = Math.floor((153 * mp + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

const pad = (n, width) => String(n).padStart(width, '0');

/** Floor division and modulo of BigInts. */
function floorDivMod(a, b) {
  let q = a / b;
  let r = a % b;
  if (r < 0n) {
    q -= 1n;
    r += b;
  }
  return [q, r];
}

/**
 * The parameter text for a `timestamp` value (microseconds since 1970), for `timestamptz` and `timestamp`
 * alike: `YYYY-MM-DD HH:MM:SS.ffffff+00` (with ` BC` for years before 1). Like the Rust host's binary
 * encoding, a value so small that its distance to 2000 saturates is `-infinity`; a value outside
 * PostgreSQL's range is refused as the server refuses it (SQLSTATE 22008).
 */
export function timestampParam(micros) {
  const pg = micros - PG_EPOCH_OFFSET_MICROS;
  if (pg <= I64_MIN) {
    return '-infinity';
  }
  if (pg < PG_MIN_TIMESTAMP || pg >= PG_END_TIMESTAMP) {
    throw new ParamError('22008: timestamp out of range');
  }
  const [days, within] = floorDivMod(micros, MICROS_PER_DAY);
  const { year, month, day } = civilFromDays(Number(days));
  const us = Number(within);
  const seconds = Math.floor(us / 1_000_000);
  const fraction = us % 1_000_000;
  const bc = year <= 0;
  const shownYear = bc ? 1 - year : year;
  return (
    `${pad(shownYear, 4)}-${pad(month, 2)}-${pad(day, 2)} ` +
    `${pad(Math.floor(seconds / 3600), 2)}:${pad(Math.floor(seconds / 60) % 60, 2)}:${pad(seconds % 60, 2)}` +
    `.${pad(fraction, 6)}+00${bc ? ' BC' : ''}`
  );
}

const TIMESTAMP_TEXT =
  /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?(?:([+-])(\d{2})(?::(\d{2})(?::(\d{2}))?)?)?( BC)?$/;

/**
 * Microseconds since 1970 from a `timestamptz` or `timestamp` column's text (DateStyle ISO, any time
 * zone offset). `infinity` and `-infinity` become what the Rust host's saturating conversion of
 * PostgreSQL's binary infinities gives.
 */
export function timestampFromText(text) {
  if (text === 'infinity') {
    return I64_MAX;
  }
  if (text === '-infinity') {
    return I64_MIN + PG_EPOCH_OFFSET_MICROS;
  }
  const m = TIMESTAMP_TEXT.exec(text);
  if (m === null) {
    throw new DecodeError(`unexpected timestamp text ${JSON.stringify(text)} (is DateStyle ISO?)`);
  }
  let year = Number(m[1]);
  if (m[12] !== undefined) {
    year = 1 - year;
  }
  const days = daysFromCivil(year, Number(m[2]), Number(m[3]));
  const seconds = Number(m[4]) * 3600 + Number(m[5]) * 60 + Number(m[6]);
  const fraction = m[7] === undefined ? 0n : BigInt(m[7].padEnd(6, '0'));
  let offset = 0;
  if (m[8] !== undefined) {
    offset = Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0);
    if (m[8] === '-') {
      offset = -offset;
    }
  }
  return BigInt(days) * MICROS_PER_DAY + BigInt(seconds - offset) * 1_000_000n + fraction;
}

/** The parameter text of a `double precision` (or, already rounded, `real`) value. */
export function floatParam(value) {
  if (Object.is(value, -0)) {
    return '-0';
  }
  // `String` gives the shortest text that reads back as the same double; NaN and the infinities are
  // spelled as PostgreSQL reads them.
  return String(value);
}

/** A `double precision` or `real` column's text as a number (exact: the server sends the shortest form). */
export function floatFromText(text, isFloat4) {
  const value = Number(text);
  if (Number.isNaN(value) && text !== 'NaN') {
    throw new DecodeError(`unexpected float text ${JSON.stringify(text)}`);
  }
  return isFloat4 ? Math.fround(value) : value;
}

/** A `bytea` column's text (`bytea_output = hex`) as bytes. */
export function byteaFromText(text) {
  if (!text.startsWith('\\x')) {
    throw new DecodeError('bytea not in hex form (is bytea_output hex?)');
  }
  const hex = text.slice(2);
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new DecodeError('malformed bytea hex');
  }
  return new Uint8Array(Buffer.from(hex, 'hex'));
}

/** The parameter text of a one-dimensional `text[]` (every element quoted and escaped). */
export function textArrayParam(items) {
  return `{${items.map((s) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`).join(',')}}`;
}

/**
 * A `text[]`/`varchar[]` column's text as a list of strings. As the Rust host (`Vec<String>`): an array
 * of more than one dimension, or one with a NULL element, cannot be carried.
 */
export function textArrayFromText(text) {
  let i = 0;
  // A lower bound other than 1 is shown as a `[lo:hi]=` prefix; the bound itself is dropped.
  const bounds = /^((?:\[-?\d+:-?\d+\])+)=/.exec(text);
  if (bounds !== null) {
    if (bounds[1].split('[').length > 2) {
      throw new DecodeError('array contains too many dimensions');
    }
    i = bounds[0].length;
  }
  if (text[i] !== '{') {
    throw new DecodeError('malformed array text');
  }
  i += 1;
  const items = [];
  if (text[i] === '}') {
    if (i + 1 !== text.length) {
      throw new DecodeError('malformed array text');
    }
    return items;
  }
  for (;;) {
    if (text[i] === '{') {
      throw new DecodeError('array contains too many dimensions');
    }
    let item = '';
    if (text[i] === '"') {
      i += 1;
      while (text[i] !== '"') {
        if (i >= text.length) {
          throw new DecodeError('malformed array text');
        }
        if (text[i] === '\\') {
          i += 1;
        }
        item += text[i];
        i += 1;
      }
      i += 1;
    } else {
      const start = i;
      while (i < text.length && text[i] !== ',' && text[i] !== '}') {
        i += 1;
      }
      item = text.slice(start, i);
      if (item.toUpperCase() === 'NULL') {
        throw new DecodeError('a NULL array element cannot be carried (text-array has no NULLs)');
      }
    }
    items.push(item);
    if (text[i] === ',') {
      i += 1;
    } else if (text[i] === '}' && i + 1 === text.length) {
      return items;
    } else {
      throw new DecodeError('malformed array text');
    }
  }
}
