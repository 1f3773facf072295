/**
 * Small emission helpers shared by the ops' training forwards and backwards. They know the opset differences
 * (reductions take `axes` as an input from opset 18) and the training layout ([C, H, W, N], batch innermost).
 */
import { type GraphBuilder, i, ints } from "../onnx/builder.js";
import { HASH_MUL, hash32, U32 } from "../random.js";

/** The default-domain opset the training step graph is emitted at (BitwiseXor and input-axes reductions). */
export const TRAIN_OPSET = 18;

export type ReduceOp = "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceSumSquare" | "ReduceMin" | "ReduceProd";

/** A reduction over `axes`, in whichever form the graph's opset wants. */
export function reduce(g: GraphBuilder, op: ReduceOp, x: string, axes: number[], keepdims = true, name?: string): string {
  const opset = g.opsets.get("") ?? 17;
  if (op === "ReduceSum" || opset >= 18) return g.op1(op, [x, g.shapeConst(axes)], { keepdims: i(keepdims ? 1 : 0) }, name);
  return g.op1(op, [x], { axes: ints(axes), keepdims: i(keepdims ? 1 : 0) }, name);
}

export function reshape(g: GraphBuilder, x: string, shape: number[], name?: string): string {
  return g.op1("Reshape", [x, g.shapeConst(shape)], undefined, name);
}

export function transpose(g: GraphBuilder, x: string, perm: number[], name?: string): string {
  return g.op1("Transpose", [x], { perm: ints(perm) }, name);
}

/**
 * [C, H, W, N] -> [N, C, H, W] and back: both are 2-D transposes ([C*H*W, N] <-> [N, C*H*W]), emitted as such so
 * that ORT takes its 2-D path rather than a general 4-D permutation.
 */
export function chwnToNchw(g: GraphBuilder, x: string, C: number, H: number, W: number, N: number, name?: string): string {
  return reshape(g, transpose(g, reshape(g, x, [C * H * W, N]), [1, 0], name), [N, C, H, W]);
}

export function nchwToChwn(g: GraphBuilder, x: string, C: number, H: number, W: number, N: number, name?: string): string {
  return reshape(g, transpose(g, reshape(g, x, [N, C * H * W]), [1, 0], name), [C, H, W, N]);
}

/**
 * The Gather indices of im2col over a [H*W + 1]-long position axis whose last position is zero (the padding).
 * `flip` lists the taps in reverse order (tap t reads the window offset of tap k*k-1-t): the im2col that pairs with
 * an unflipped kernel to convolve with the flipped one.
 */
export function im2colIndices(H: number, W: number, k: number, flip = false): number[] {
  const p = (k - 1) / 2;
  const idx: number[] = [];
  for (const [kh, kw] of tapOrder(k, flip)) {
    for (let h = 0; h < H; h++) {
      for (let w = 0; w < W; w++) {
        const hh = h + kh - p;
        const ww = w + kw - p;
        idx.push(hh < 0 || ww < 0 || hh >= H || ww >= W ? H * W : hh * W + ww);
      }
    }
  }
  return idx;
}

/** A k x k kernel's taps (kh, kw) in im2col's row order: row-major, or each axis reversed with `flip`. */
function tapOrder(k: number, flip: boolean): [number, number][] {
  const out: [number, number][] = [];
  for (let th = 0; th < k; th++) for (let tw = 0; tw < k; tw++) out.push(flip ? [k - 1 - th, k - 1 - tw] : [th, tw]);
  return out;
}

/**
 * im2col of a [C, H, W, N] map for a k x k kernel with "same" padding: [C*k*k, H*W*N], row c*k*k + kh*k + kw
 * (torch's weight order, so the weight is used as a plain [O, C*k*k] matrix). One Gather over the position axis
 * of the map seen as [C, H*W, N] with one zero position appended: each gathered element is a contiguous run of N
 * floats. (Measured against Pad + 8 Slices + Concat: 2.5-4x faster, e.g. C=256 8x8 N=128: 4.2 vs 13.7 ms.)
 * For k = 1 it is a reshape.
 */
export function im2col(
  g: GraphBuilder,
  x: string,
  C: number,
  H: number,
  W: number,
  N: number,
  k: number,
  name: string,
  flip = false,
): string {
  if (k === 1) return reshape(g, x, [C, H * W * N], `${name}_cols`);
  if (N < GATHER_MIN_BATCH) {
    // Pad + k*k - 1 shifted Slices (the centre tap is x) + Concat: the same layout.
    const parts: string[] = [];
    forEachShift(g, x, H, W, k, name, flip, (sl) => parts.push(reshape(g, sl, [C, 1, H * W * N])));
    const cat = g.op1("Concat", parts, { axis: i(1) }, `${name}_im2col`);
    return reshape(g, cat, [C * k * k, H * W * N], `${name}_cols`);
  }
  const flat = reshape(g, x, [C, H * W, N]);
  const padded = g.op1("Pad", [flat, g.shapeConst([0, 0, 0, 0, 1, 0])], undefined, `${name}_pad`);
  const idx = g.constant("int64", [k * k, H * W], im2colIndices(H, W, k, flip));
  const cols = g.op1("Gather", [padded, idx], { axis: i(1) }, `${name}_im2col`);
  return reshape(g, cols, [C * k * k, H * W * N], `${name}_cols`);
}

/**
 * Below this batch size the Gather's runs of N floats are too short (at N = 8 a 64-channel 224x224 im2col ran at
 * 0.6 GB/s) and im2col is Pad + shifted Slices + Concat instead, whose runs are W*N floats.
 */
export const GATHER_MIN_BATCH = 32;

/**
 * The k*k shifted views of a [C, H, W, N] map under a "same"-padded k x k kernel, tap by tap in row-major order
 * (reversed with `flip`), each handed to `each` as it is emitted: one Pad (`<name>_pad`), then a Slice per tap
 * (`<name>_shift`); the centre tap is x itself.
 */
export function forEachShift(
  g: GraphBuilder,
  x: string,
  H: number,
  W: number,
  k: number,
  name: string,
  flip: boolean,
  each: (shifted: string) => void,
): void {
  const p = (k - 1) / 2;
  const xp = g.op1("Pad", [x, g.shapeConst([0, p, p, 0, 0, p, p, 0])], undefined, `${name}_pad`);
  for (const [kh, kw] of tapOrder(k, flip)) {
    each(
      kh === p && kw === p
        ? x
        : g.op1("Slice", [xp, g.shapeConst([kh, kw]), g.shapeConst([kh + H, kw + W]), g.shapeConst([1, 2])], undefined, `${name}_shift`),
    );
  }
}

/** A float32 constant of any shape (not deduplicated: for matrices). */
export function matrix(g: GraphBuilder, name: string, shape: number[], data: Float32Array): string {
  return g.initializer(name, { dtype: "float32", shape, data });
}

/**
 * The 32-bit integer finaliser x ^= x >> 16; x *= 0x45d9f3b; x ^= x >> 16; x *= 0x45d9f3b; x ^= x >> 16 on int64
 * values in [0, 2^32) (ONNX's BitShift wants unsigned types, so shifts are divisions; products stay under 2^63).
 * Same numbers as `hash32` (src/random.ts).
 */
export function emitHash32(g: GraphBuilder, x: string): string {
  const mul = g.constant("int64", [], [HASH_MUL]);
  const mask = g.constant("int64", [], [U32]);
  const d16 = g.constant("int64", [], [65536]);
  const mix = (v: string) => g.op1("BitwiseXor", [g.op1("Div", [v, d16]), v]);
  let h = x;
  for (let r = 0; r < 2; r++) h = g.op1("BitwiseAnd", [g.op1("Mul", [mix(h), mul]), mask]);
  return mix(h);
}

/**
 * `count` pseudo-random integers in [0, 2^32) as an int64 tensor [count]: element e is
 * hash32(e XOR hash32((seed mod 2^32) XOR hash32(salt))). A counter-based generator: the same seed and salt give the
 * same numbers in every session and every run, so a resumed run draws the same dropout masks.
 */
export function emitCounterRandom(g: GraphBuilder, seed: string, salt: number, count: number): string {
  const idx = g.op1("Range", [g.constant("int64", [], [0]), g.constant("int64", [], [count]), g.constant("int64", [], [1])]);
  const s = g.op1("BitwiseAnd", [seed, g.constant("int64", [], [U32])]);
  const key = emitHash32(g, g.op1("BitwiseXor", [s, g.constant("int64", [], [hash32(salt)])]));
  return emitHash32(g, g.op1("BitwiseXor", [idx, key]));
}
