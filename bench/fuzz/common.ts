/** Shared pieces of the fuzzer's mutators: byte helpers, "interesting" numbers, and the mutant type. */
import * as zlib from "node:zlib";
import type { Sfc32 } from "../../src/random.js";

export type { Sfc32 };

/** A mutated file: its bytes and what was done to it (shown when it makes a reader fail). */
export interface Mutant {
  bytes: Uint8Array;
  what: string;
}

export function pick<T>(rng: Sfc32, xs: readonly T[]): T {
  return xs[rng.int(xs.length)];
}

export function chance(rng: Sfc32, p: number): boolean {
  return rng.float() < p;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
export const latin1 = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, "latin1"));

export function u16le(n: number): Uint8Array {
  return Uint8Array.of(n & 0xff, (n >>> 8) & 0xff);
}
export function u32le(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}
export function u64le(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return b;
}

export function crc32(b: Uint8Array): number {
  return zlib.crc32(b) >>> 0;
}

/** Sizes and counts that break length arithmetic: 0, +-1 around powers of two, the signed/unsigned edges. */
export const INTERESTING_32 = [
  0, 1, 2, 3, 7, 8, 16, 0x7f, 0x80, 0xff, 0x100, 0x3ff, 0x7fff, 0x8000, 0xffff, 0x10000, 0xfffff, 0x7fffffff, 0x80000000, 0xfffffffe,
  0xffffffff,
];
export const INTERESTING_64: bigint[] = [
  ...INTERESTING_32.map(BigInt),
  0x100000000n,
  2n ** 40n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 62n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** An interesting replacement for `v`: an edge value, or `v` nudged, doubled or multiplied into the huge. */
export function interesting32(rng: Sfc32, v: number): number {
  switch (rng.int(4)) {
    case 0:
      return (v + pick(rng, [-2, -1, 1, 2, 8])) >>> 0;
    case 1:
      return Math.min(0xffffffff, v * pick(rng, [2, 3, 1000, 65536])) >>> 0;
    default:
      return pick(rng, INTERESTING_32);
  }
}

export function interesting64(rng: Sfc32, v: bigint): bigint {
  switch (rng.int(4)) {
    case 0:
      return BigInt.asUintN(64, v + BigInt(pick(rng, [-2, -1, 1, 2, 8])));
    case 1:
      return BigInt.asUintN(64, v * BigInt(pick(rng, [2, 3, 1000, 65536])));
    default:
      return pick(rng, INTERESTING_64);
  }
}

/** Numbers a JSON or Python-literal header might carry in place of a size: huge, negative, fractional, unsafe. */
export const WEIRD_NUMBERS = [
  "0",
  "1",
  "-1",
  "1.5",
  "1e308",
  "-0",
  "2147483647",
  "2147483648",
  "4294967295",
  "4294967296",
  "9007199254740991",
  "9007199254740993",
  "18446744073709551615",
  "18446744073709551616",
  "99999999999999999999999999999999",
  "NaN",
  "Infinity",
];

/** Position for a cut or an edit: anywhere, in the first bytes (headers), or near the end. */
export function position(rng: Sfc32, len: number): number {
  if (len <= 1) return 0;
  switch (rng.int(3)) {
    case 0:
      return rng.int(Math.min(len, 64));
    case 1:
      return Math.max(0, len - 1 - rng.int(Math.min(len, 64)));
    default:
      return rng.int(len);
  }
}
