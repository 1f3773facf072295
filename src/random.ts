/**
 * Every random number the project draws in JavaScript, and the hash the step graph's dropout repeats in ONNX.
 *
 * Keyed random numbers. Every random choice of the data pipeline (held-out split, epoch order, each image's
 * augmentation) comes from a generator seeded by a hash of (seed, stream, a, b) rather than from one running
 * generator, so any of them can be reproduced on its own: a resumed run, a different worker, or a different
 * batch size sees the same augmentation for image i in epoch e.
 */

/** Streams keep the uses of one seed independent of each other. */
export const STREAM = {
  holdout: 1,
  shuffle: 2,
  augment: 3,
  stats: 4,
} as const;

/** MurmurHash3's 32-bit finaliser: full avalanche, so neighbouring keys give unrelated states. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function absorb(h: number, v: number): number {
  return fmix32((h ^ Math.imul(v >>> 0, 0x9e3779b1)) + 0x7f4a7c15);
}

/** Splits a non-negative safe integer into 32-bit words so seeds above 2^32 still matter. */
function words(x: number): [number, number] {
  if (!Number.isSafeInteger(x) || x < 0) throw new RangeError(`random key ${x} is not a non-negative safe integer`);
  return [x >>> 0, Math.floor(x / 0x100000000) >>> 0];
}

/** sfc32: small, fast, passes PractRand to 2^40+, and needs only 32-bit integer arithmetic in JS. */
export class Sfc32 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = Number.NaN;

  constructor(a: number, b: number, c: number, d: number) {
    this.a = a >>> 0;
    this.b = b >>> 0;
    this.c = c >>> 0;
    this.d = d >>> 0 || 1;
    // sfc32 needs a few rounds before similar seeds decorrelate.
    for (let i = 0; i < 12; i++) this.uint32();
  }

  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  float(): number {
    return ((this.uint32() >>> 5) * 67108864 + (this.uint32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [0, n), n <= 2^32; unbiased by rejection. */
  int(n: number): number {
    if (n <= 1) return 0;
    const limit = 0x100000000 - (0x100000000 % n);
    for (;;) {
      const x = this.uint32();
      if (x < limit) return x % n;
    }
  }

  /** Uniform integer in [lo, hi], both inclusive. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** Standard normal (Box-Muller, second value cached). */
  normal(): number {
    if (!Number.isNaN(this.spare)) {
      const s = this.spare;
      this.spare = Number.NaN;
      return s;
    }
    let u = this.float();
    while (u === 0) u = this.float();
    const r = Math.sqrt(-2 * Math.log(u));
    const th = 2 * Math.PI * this.float();
    this.spare = r * Math.sin(th);
    return r * Math.cos(th);
  }
}

/** The generator for (seed, stream, a, b): same key, same sequence, in any thread. */
export function keyedRng(seed: number, stream: number, a = 0, b = 0): Sfc32 {
  const [s0, s1] = words(seed);
  const [a0, a1] = words(a);
  const [b0, b1] = words(b);
  let h = 0x243f6a88;
  for (const v of [s0, s1, stream, a0, a1, b0, b1]) h = absorb(h, v);
  return new Sfc32(h, absorb(h, 1), absorb(h, 2), absorb(h, 3));
}

/** The augmentation generator of sample `index` (an index into the split's source) in `epoch`. */
export function sampleRng(seed: number, epoch: number, index: number): Sfc32 {
  return keyedRng(seed, STREAM.augment, epoch, index);
}

/** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, rng: Sfc32): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** xoshiro128** seeded by splitmix32: fast, reproducible across platforms. */
export class Xoshiro128 {
  private s = new Uint32Array(4);
  private spare: number | undefined;
  constructor(seed: number) {
    let x = seed >>> 0;
    for (let k = 0; k < 4; k++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[k] = (z ^ (z >>> 16)) >>> 0;
    }
  }
  /** Uniform in [0, 1). */
  next(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r / 4294967296;
  }
  /** Standard normal by Marsaglia's polar method (no trigonometry: twice Box-Muller's speed here). */
  normal(): number {
    if (this.spare !== undefined) {
      const v = this.spare;
      this.spare = undefined;
      return v;
    }
    let u: number;
    let v: number;
    let s: number;
    do {
      u = 2 * this.next() - 1;
      v = 2 * this.next() - 1;
      s = u * u + v * v;
    } while (s >= 1 || s === 0);
    const m = Math.sqrt((-2 * Math.log(s)) / s);
    this.spare = v * m;
    return u * m;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export const U32 = 0xffffffff;
export const HASH_MUL = 0x45d9f3b;

export function hash32(x: number): number {
  let h = x >>> 0;
  for (let r = 0; r < 2; r++) h = Math.imul(((h >>> 16) ^ h) >>> 0, HASH_MUL) >>> 0;
  return ((h >>> 16) ^ h) >>> 0;
}

/** The same numbers as emitCounterRandom, in JavaScript (for tests and for checking masks). */
export function counterRandom(seed: number | bigint, salt: number, count: number): Uint32Array {
  const s = Number(BigInt.asUintN(32, BigInt(seed)));
  const key = hash32((s ^ hash32(salt)) >>> 0);
  const out = new Uint32Array(count);
  for (let e = 0; e < count; e++) out[e] = hash32((e ^ key) >>> 0);
  return out;
}
