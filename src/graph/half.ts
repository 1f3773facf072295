/**
 * IEEE 754 binary16 ("half", ONNX FLOAT16) from float32: round to nearest, ties to even, with gradual underflow
 * (subnormal halves), overflow to infinity (|x| >= 65520 after rounding), infinities kept and NaNs kept quiet.
 * Halves are raw bits in a Uint16Array, as Tensor holds them (`halfToFloat` in weights/match.ts is the inverse).
 */

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** The half bits nearest to a float32's bits `b` (ties to even). */
function halfFromFloatBits(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00; // NaN stays NaN (quiet), inf stays inf
  const e = exp - 112; // the half's biased exponent (127 - 15)
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): value = k * 2^-24 with k = M * 2^(e - 14), M the 24-bit significand.
    if (e < -10) return sign; // below 2^-25: rounds to (signed) zero
    const m = mant | 0x800000;
    const shift = 14 - e; // 14 .. 24
    let k = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && k & 1)) k++; // k may reach 0x400, the smallest normal: still right
    return sign | k;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry moves into the exponent; 0x7c00 is infinity
  return sign | h;
}

/** One number to half bits (the number is first rounded to float32, as a Float32Array would store it). */
export function floatToHalf(x: number): number {
  F32[0] = x;
  return halfFromFloatBits(U32[0]);
}

/** A float32 array to half bits. */
export function floatsToHalf(src: Float32Array): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = new Uint16Array(src.length);
  for (let k = 0; k < bits.length; k++) out[k] = halfFromFloatBits(bits[k]);
  return out;
}
