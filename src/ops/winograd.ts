/**
 * Winograd F(2x2, 3x3) convolution ("same" padding, stride 1) in the training layout [C, H, W, N], from standard
 * ops: Y = A^T [ (G g G^T) . (B^T d B) ] A per 2x2 output tile, i.e. 16 multiplications per tile and channel pair
 * where im2col needs 36. The 16 products over all channels are 16 GEMMs [O, C] x [C, N] per tile position (one
 * batched MatMul); the tile gathering and the small transforms are a Gather and two constant-matrix MatMuls.
 *
 *   x [C, H, W, N] -> [H*W, C, N] (Transpose) -> + one zero position (Pad) -> tiles [16, T, C, N] (Gather)
 *   -> V = BB [16, 16] x tiles (MatMul, BB = B^T (x) B^T) -> M = U [16, 1, O, C] x V [16, T, C, N] (MatMul)
 *   -> AA [4, 16] x M (MatMul, AA = A^T (x) A^T) -> [2, 2, H/2, W/2, O, N] -> y [O, H, W, N] (Transpose)
 * with U = GG [16, 9] x g^T (GG = G (x) G) the transformed kernel. The same function gives the input gradient with
 * the kernel flipped and transposed (G J instead of G, J the tap reversal; the [O, C] transposition on the weight).
 * Needs H and W even. F(2x2, 3x3) in float32 is accurate to a few ulps of the largest term (the transforms have
 * entries 0, +-1/2, +-1).
 */
import type { GraphBuilder } from "../onnx/builder.js";
import { i } from "../onnx/builder.js";
import { reshape, transpose } from "./emit.js";

const BT = [
  [1, 0, -1, 0],
  [0, 1, 1, 0],
  [0, -1, 1, 0],
  [0, 1, 0, -1],
];
const G = [
  [1, 0, 0],
  [0.5, 0.5, 0.5],
  [0.5, -0.5, 0.5],
  [0, 0, 1],
];
const AT = [
  [1, 1, 1, 0],
  [0, 1, -1, -1],
];

function kron(a: number[][], b: number[][]): Float32Array {
  const ra = a.length;
  const ca = a[0].length;
  const rb = b.length;
  const cb = b[0].length;
  const out = new Float32Array(ra * rb * ca * cb);
  for (let i1 = 0; i1 < ra; i1++)
    for (let i2 = 0; i2 < rb; i2++)
      for (let j1 = 0; j1 < ca; j1++) for (let j2 = 0; j2 < cb; j2++) out[(i1 * rb + i2) * ca * cb + j1 * cb + j2] = a[i1][j1] * b[i2][j2];
  return out;
}

/** GG = G (x) G [16, 9]; flipped: (G J) (x) (G J), the transform of the kernel rotated by 180 degrees. */
export function kernelTransform(flip: boolean): Float32Array {
  const g = flip ? G.map((row) => [...row].reverse()) : G;
  return kron(g, g);
}

export function inputTransform(): Float32Array {
  return kron(BT, BT);
}

export function outputTransform(): Float32Array {
  return kron(AT, AT);
}

/** Gather indices [16, T] of the 4x4 input tiles over [H*W + 1] positions (the last one zero: the padding). */
export function tileIndices(H: number, W: number): number[] {
  const idx: number[] = [];
  for (let r = 0; r < 4; r++)
    for (let s = 0; s < 4; s++)
      for (let ti = 0; ti < H / 2; ti++)
        for (let tj = 0; tj < W / 2; tj++) {
          const h = 2 * ti + r - 1;
          const w = 2 * tj + s - 1;
          idx.push(h < 0 || w < 0 || h >= H || w >= W ? H * W : h * W + w);
        }
  return idx;
}

/**
 * The transformed kernel U [16, rows, cols] of a [O, C, 3, 3] weight value: rows = O, cols = C for the forward;
 * with `backward`, the flipped and transposed kernel (rows = C, cols = O) for the input gradient.
 */
export function winogradKernel(g: GraphBuilder, w: string, O: number, C: number, backward: boolean, name: string): string {
  const gg = g.constant("float32", [16, 9], Array.from(kernelTransform(backward)));
  const rows = backward ? reshape(g, transpose(g, reshape(g, w, [O, C, 9]), [1, 0, 2]), [C * O, 9]) : reshape(g, w, [O * C, 9]);
  const u = g.op1("Gemm", [gg, rows], { transB: i(1) }, `${name}_wino_kernel`);
  return backward ? reshape(g, u, [16, 1, C, O]) : reshape(g, u, [16, 1, O, C]);
}

/** y [O, H, W, N] = conv3x3(x [C, H, W, N]) with the transformed kernel `u` [16, 1, O, C] (no bias). */
export function winogradConv(
  g: GraphBuilder,
  x: string,
  u: string,
  C: number,
  O: number,
  H: number,
  W: number,
  N: number,
  name: string,
): string {
  return winogradFromTiles(g, winogradTiles(g, x, C, H, W, N, name), u, O, H, W, N, name);
}

/** The convolution from tiles already in the Winograd domain (winogradTiles). */
export function winogradFromTiles(g: GraphBuilder, v: string, u: string, O: number, H: number, W: number, N: number, name: string): string {
  const T = (H / 2) * (W / 2);
  const m = g.op1("MatMul", [u, v], undefined, `${name}_wino_gemm`);
  const aa = g.constant("float32", [4, 16], Array.from(outputTransform()));
  const out = g.op1("MatMul", [aa, reshape(g, m, [16, T * O * N])], undefined, `${name}_wino_out`);
  const y = transpose(g, reshape(g, out, [2, 2, H / 2, W / 2, O, N]), [4, 2, 0, 3, 1, 5], `${name}_untile`);
  return reshape(g, y, [O, H, W, N]);
}

/**
 * The tiles of x in the Winograd domain, V = B^T d B for every 4x4 input tile: [16, T, C, N] (T = H/2 * W/2).
 * The forward's GEMM input, kept for the weight gradient.
 */
export function winogradTiles(g: GraphBuilder, x: string, C: number, H: number, W: number, N: number, name: string): string {
  if (H % 2 || W % 2) throw new Error(`Winograd F(2x2, 3x3) needs an even map, got ${H}x${W}`);
  const T = (H / 2) * (W / 2);
  const positions = transpose(g, reshape(g, x, [C, H * W, N]), [1, 0, 2], `${name}_hwcn`);
  const padded = g.op1("Pad", [positions, g.shapeConst([0, 0, 0, 1, 0, 0])], undefined, `${name}_pad`);
  const tiles = g.op1("Gather", [padded, g.constant("int64", [16, T], tileIndices(H, W))], { axis: i(0) }, `${name}_tiles`);
  const bb = g.constant("float32", [16, 16], Array.from(inputTransform()));
  return reshape(g, g.op1("MatMul", [bb, reshape(g, tiles, [16, T * C * N])], undefined, `${name}_wino_in`), [16, T, C, N]);
}

/**
 * The weight gradient by Winograd F(3x3, 2x2), the transpose of the forward's F(2x2, 3x3): with the same input tiles
 * V = B^T d B and the 2x2 output-gradient tiles taken to Q = A e A^T (A = (A^T)^T, 4x2),
 *   dW[o, c] = G^T [ sum over tiles and batch of Q[o] . V[c] ] G,
 * i.e. 16 GEMMs with K = tiles x batch, then a [9, 16] transform. (sum_i e_i y_i = sum_k g_k dW_k for y = F(2,3)(g, d)
 * gives dW = G^T ((A e) . (B^T d)).) `v` from winogradTiles, dy [O, H, W, N]; returns dW [O, C, 3, 3].
 */
export function winogradWeightGrad(
  g: GraphBuilder,
  v: string,
  dy: string,
  C: number,
  O: number,
  H: number,
  W: number,
  N: number,
  name: string,
): string {
  const T = (H / 2) * (W / 2);
  // dy [O, H, W, N] -> the 2x2 tiles [2, 2, Th, Tw, N, O]: a 2-D transpose to [H*W, N*O] then a Gather of the
  // positions in tile order (runs of N*O floats). ORT's one general transpose for this took 8.5 ms on a
  // [256, 8, 8, 128] gradient; the Gather also keeps ORT from merging the two steps back into that transpose.
  const positions = transpose(g, reshape(g, dy, [O, H * W * N]), [1, 0], `${name}_dy_t`);
  const order: number[] = [];
  for (let a = 0; a < 2; a++)
    for (let b = 0; b < 2; b++)
      for (let ti = 0; ti < H / 2; ti++) for (let tj = 0; tj < W / 2; tj++) order.push((2 * ti + a) * W + 2 * tj + b);
  const e = g.op1(
    "Gather",
    [reshape(g, positions, [H * W, N * O]), g.constant("int64", [H * W], order)],
    { axis: i(0) },
    `${name}_dy_tiles`,
  );
  const aat = g.constant("float32", [16, 4], Array.from(transposeMatrix(outputTransform(), 4, 16)));
  const q = g.op1("MatMul", [aat, reshape(g, e, [4, T * N * O])], undefined, `${name}_wino_dy`);
  const m = g.op1("MatMul", [v, reshape(g, q, [16, T, N, O])], undefined, `${name}_wino_dw_gemm`); // [16, T, C, O]
  const summed = T > 1 ? g.op1("ReduceSum", [m, g.shapeConst([1])], { keepdims: i(0) }, `${name}_wino_dw_sum`) : m;
  // [16, C, O] -> [16, O, C] (a batched 2-D transpose: 0.8 ms at 512x512, where ORT's transpose of [9, C, O] to
  // [O, C, 9] takes 18 ms), then dW [O*C, 9] = M^T [O*C, 16] x GG [16, 9] (GG = G (x) G: G^T on the left of the
  // 4x4 and G on the right, flattened) with no further transposition.
  const moc = transpose(g, reshape(g, summed, [16, C, O]), [0, 2, 1], `${name}_wino_dw_oc`);
  const gg = g.constant("float32", [16, 9], Array.from(kernelTransform(false)));
  const dw = g.op1("Gemm", [reshape(g, moc, [16, O * C]), gg], { transA: i(1) }, `${name}_wino_dw`);
  return reshape(g, dw, [O, C, 3, 3]);
}

function transposeMatrix(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c];
  return t;
}

/**
 * F(4x4, 3x3) (Lavin and Gray's points 0, +-1, +-2, +-1/2 and infinity), for inference: 36 multiplications per 4x4
 * output tile and channel pair where direct convolution needs 144 (4x fewer). The transforms' larger entries (up to
 * 8 and 1/24) cost precision: a relative error of ~1e-6 in float32 against ~1e-7 for direct convolution.
 */
const BT4 = [
  [4, 0, -5, 0, 1, 0],
  [0, -4, -4, 1, 1, 0],
  [0, 4, -4, -1, 1, 0],
  [0, -2, -1, 2, 1, 0],
  [0, 2, -1, -2, 1, 0],
  [0, 4, 0, -5, 0, 1],
];
const G4 = [
  [1 / 4, 0, 0],
  [-1 / 6, -1 / 6, -1 / 6],
  [-1 / 6, 1 / 6, -1 / 6],
  [1 / 24, 1 / 12, 1 / 6],
  [1 / 24, -1 / 12, 1 / 6],
  [0, 0, 1],
];
const AT4 = [
  [1, 1, 1, 1, 1, 0],
  [0, 1, -1, 2, -2, 0],
  [0, 1, 1, 4, 4, 0],
  [0, 1, -1, 8, -8, 1],
];

/** The F(4x4, 3x3) transforms as Kronecker products: kernel [36, 9], input [36, 36], output [16, 36]. */
export const f43 = {
  kernel: (): Float32Array => kron(G4, G4),
  input: (): Float32Array => kron(BT4, BT4),
  output: (): Float32Array => kron(AT4, AT4),
};
