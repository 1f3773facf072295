/** Format-blind mutations: truncation, bit flips, integer overwrites, inserted, deleted and repeated ranges. */
import { concat, INTERESTING_32, INTERESTING_64, type Mutant, pick, position, type Sfc32 } from "./common.js";

function truncate(rng: Sfc32, b: Uint8Array): Mutant {
  const at = chance3(rng) ? rng.int(Math.max(1, Math.min(b.length, 64))) : position(rng, b.length);
  return { bytes: b.slice(0, at), what: `truncate to ${at} bytes` };
}

function chance3(rng: Sfc32): boolean {
  return rng.int(3) === 0;
}

function flipBits(rng: Sfc32, b: Uint8Array): Mutant {
  const out = b.slice();
  const n = pick(rng, [1, 1, 1, 2, 3, 4, 8, 32]);
  const at: number[] = [];
  for (let i = 0; i < n && out.length; i++) {
    const p = position(rng, out.length);
    const bit = rng.int(8);
    out[p] ^= 1 << bit;
    at.push(p * 8 + bit);
  }
  return { bytes: out, what: `flip bits ${at.slice(0, 6).join(",")}${at.length > 6 ? ",..." : ""}` };
}

function setBytes(rng: Sfc32, b: Uint8Array): Mutant {
  const out = b.slice();
  const n = 1 + rng.int(4);
  const at: number[] = [];
  for (let i = 0; i < n && out.length; i++) {
    const p = position(rng, out.length);
    out[p] = pick(rng, [0x00, 0x01, 0x7f, 0x80, 0xff, rng.int(256)]);
    at.push(p);
  }
  return { bytes: out, what: `set bytes at ${at.join(",")}` };
}

function setInt(rng: Sfc32, b: Uint8Array): Mutant {
  const size = pick(rng, [2, 4, 4, 8]);
  if (b.length < size) return truncate(rng, b);
  const out = b.slice();
  const p = Math.min(position(rng, out.length), out.length - size);
  const v = new DataView(out.buffer);
  const le = rng.int(2) === 0;
  let shown: string;
  if (size === 8) {
    const x = pick(rng, INTERESTING_64);
    v.setBigUint64(p, x, le);
    shown = String(x);
  } else {
    const x = pick(rng, INTERESTING_32);
    if (size === 4) v.setUint32(p, x, le);
    else v.setUint16(p, x & 0xffff, le);
    shown = String(size === 4 ? x : x & 0xffff);
  }
  return { bytes: out, what: `u${size * 8}${le ? "le" : "be"} ${shown} at ${p}` };
}

function insert(rng: Sfc32, b: Uint8Array): Mutant {
  const p = position(rng, b.length + 1);
  const n = pick(rng, [1, 2, 4, 8, 64, 1000]);
  const fill = rng.int(3);
  const junk = new Uint8Array(n).map(() => (fill === 0 ? 0 : fill === 1 ? 0xff : rng.int(256)));
  return { bytes: concat([b.subarray(0, p), junk, b.subarray(p)]), what: `insert ${n} bytes at ${p}` };
}

function remove(rng: Sfc32, b: Uint8Array): Mutant {
  const p = position(rng, b.length);
  const n = Math.min(b.length - p, pick(rng, [1, 2, 4, 8, 100, 4096]));
  return { bytes: concat([b.subarray(0, p), b.subarray(p + n)]), what: `delete ${n} bytes at ${p}` };
}

function repeat(rng: Sfc32, b: Uint8Array): Mutant {
  const p = position(rng, b.length);
  const n = Math.min(b.length - p, pick(rng, [1, 8, 64, 512, 4096]));
  const times = pick(rng, [1, 2, 16, 256]);
  const chunk = b.subarray(p, p + n);
  return {
    bytes: concat([b.subarray(0, p + n), ...new Array(times).fill(chunk), b.subarray(p + n)]),
    what: `repeat ${n} bytes at ${p} x${times}`,
  };
}

function overwriteFrom(rng: Sfc32, b: Uint8Array): Mutant {
  if (b.length < 2) return flipBits(rng, b);
  const from = rng.int(b.length);
  const to = position(rng, b.length);
  const n = Math.min(b.length - from, b.length - to, pick(rng, [2, 4, 8, 32, 256]));
  const out = b.slice();
  out.set(b.subarray(from, from + n), to);
  return { bytes: out, what: `copy ${n} bytes from ${from} to ${to}` };
}

function append(rng: Sfc32, b: Uint8Array): Mutant {
  const n = pick(rng, [1, 3, 8, 100, 4096]);
  return { bytes: concat([b, new Uint8Array(n).map(() => rng.int(256))]), what: `append ${n} bytes` };
}

const OPS = [truncate, truncate, flipBits, flipBits, flipBits, setBytes, setInt, setInt, insert, remove, repeat, overwriteFrom, append];

/** One random format-blind mutation of `b` (never modified in place). */
export function mutateBytes(rng: Sfc32, b: Uint8Array): Mutant {
  if (b.length === 0) return append(rng, b);
  return pick(rng, OPS)(rng, b);
}
