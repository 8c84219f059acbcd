// The guest's memory limit, enforced by the engine: every memory a core module defines gets a maximum
// (the Rust host's `GUEST_MEMORY_LIMIT`, 64 MiB, unless told otherwise), so `memory.grow` past it fails
// inside the guest instead of taking the host's memory.

/** The Rust host's limit: 64 MiB. */
export const DEFAULT_MEMORY_LIMIT = 64 * 1024 * 1024;

const PAGE = 64 * 1024;
const MEMORY_SECTION = 5;

function readLeb(bytes, offset) {
  let result = 0n;
  let shift = 0n;
  for (;;) {
    const byte = bytes[offset];
    if (byte === undefined) {
      throw new Error('truncated LEB128 in the core module');
    }
    offset += 1;
    result |= BigInt(byte & 0x7f) << shift;
    shift += 7n;
    if ((byte & 0x80) === 0) {
      return [result, offset];
    }
  }
}

function writeLeb(value) {
  const out = [];
  let v = BigInt(value);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) {
      byte |= 0x80;
    }
    out.push(byte);
  } while (v !== 0n);
  return out;
}

/**
 * `bytes` (a core WebAssembly module) with every defined memory capped at `limitBytes` (rounded down to
 * whole 64 KiB pages). A memory whose existing maximum is lower keeps it. Returns the bytes and how
 * many memories were capped; a module without a memory section is returned unchanged.
 */
export function capMemories(bytes, limitBytes = DEFAULT_MEMORY_LIMIT) {
  const input = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  if (input.length < 8 || input[0] !== 0 || input[1] !== 0x61 || input[2] !== 0x73 || input[3] !== 0x6d) {
    throw new Error('not a core WebAssembly module');
  }
  const limitPages = BigInt(Math.floor(limitBytes / PAGE));
  const parts = [input.subarray(0, 8)];
  let capped = 0;
  let offset = 8;
  while (offset < input.length) {
    const id = input[offset];
    const [size, bodyStart] = readLeb(input, offset + 1);
    const bodyEnd = bodyStart + Number(size);
    if (id !== MEMORY_SECTION) {
      parts.push(input.subarray(offset, bodyEnd));
      offset = bodyEnd;
      continue;
    }
    let at = bodyStart;
    const [count, afterCount] = readLeb(input, at);
    at = afterCount;
    const body = [...writeLeb(count)];
    for (let i = 0n; i < count; i += 1n) {
      const flags = input[at];
      at += 1;
      const [min, afterMin] = readLeb(input, at);
      at = afterMin;
      let max = null;
      if (flags & 1) {
        [max, at] = readLeb(input, at);
      }
      const newMax = max === null || max > limitPages ? limitPages : max;
      if (newMax !== max) {
        capped += 1;
      }
      body.push(flags | 1, ...writeLeb(min), ...writeLeb(newMax));
    }
    if (at !== bodyEnd) {
      throw new Error('unexpected bytes in the memory section');
    }
    parts.push(Uint8Array.of(MEMORY_SECTION, ...writeLeb(body.length), ...body));
    offset = bodyEnd;
  }
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return { bytes: out, capped };
}
