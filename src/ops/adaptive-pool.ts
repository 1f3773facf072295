import { i, ints } from "../onnx/builder.js";
import { reduce, reshape } from "./emit.js";
import { checkRank, type OpKind } from "./types.js";

/**
 * torchvision's AdaptiveAvgPool2d. Output cell j of n over an input of length L averages
 * [floor(j*L/n), ceil((j+1)*L/n)). The general case is written as one product with the 2-D averaging matrix
 * (X [N, C, H*W] . P^T, P = P_h (x) P_w), which exports for every input size; where the pool is a plain average
 * pool (L a multiple of n) or the identity (L == n) the cheaper op is emitted, with identical numbers.
 */
export interface AdaptivePoolAttrs {
  out: number;
}

/** The [n, L] averaging matrix of one axis, row-major. */
export function adaptiveMatrix(L: number, n: number): Float32Array {
  const m = new Float32Array(n * L);
  for (let j = 0; j < n; j++) {
    const a = Math.floor((j * L) / n);
    const b = Math.ceil(((j + 1) * L) / n);
    for (let t = a; t < b; t++) m[j * L + t] = 1 / (b - a);
  }
  return m;
}

function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = m[r * cols + c];
  return t;
}

/** The [n*n, H*W] matrix of the whole 2-D pool: P[(i,j), (h,w)] = Ph[i,h] * Pw[j,w] (a Kronecker product). */
export function adaptiveMatrix2d(H: number, W: number, n: number): Float32Array {
  const ph = adaptiveMatrix(H, n);
  const pw = adaptiveMatrix(W, n);
  const p = new Float32Array(n * n * H * W);
  for (let a = 0; a < n; a++)
    for (let b = 0; b < n; b++)
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) p[(a * n + b) * H * W + h * W + w] = ph[a * H + h] * pw[b * W + w];
  return p;
}

/**
 * Training (layout [C, H, W, N]): identity when H = W = n; a mean over the map when n = 1 (backward: dy / HW
 * everywhere); otherwise the pool is one matrix P [n*n, H*W] applied to every channel's [H*W, N] block (a batched
 * MatMul) and the backward is P^T applied to dy. P covers every case, divisible or not, and the 1x1 -> 7x7 copy.
 */
export const adaptivePool: OpKind<AdaptivePoolAttrs> = {
  outShape(a, x) {
    checkRank("adaptive_avgpool", x, 3);
    return [x[0], a.out, a.out];
  },
  params: () => [],
  macs: () => 0,
  forward(ctx, a, x, inShape, name) {
    const [, H, W] = inShape;
    const g = ctx.g;
    if (H === a.out && W === a.out) return x;
    if (a.out === 1) return g.op1("GlobalAveragePool", [x], undefined, name);
    if (H % a.out === 0 && W % a.out === 0) {
      const kh = H / a.out;
      const kw = W / a.out;
      return g.op1("AveragePool", [x], { kernel_shape: ints([kh, kw]), strides: ints([kh, kw]), ceil_mode: i(0) }, name);
    }
    // x [N, C, H*W] . P^T [H*W, n*n]: the map first and the constant second, the MatMul form other ONNX consumers
    // take as a fully connected layer (OpenCV's DNN refuses a MatMul whose first input is a constant).
    const n = a.out;
    const C = inShape[0];
    const pT = g.initializer(`${name}.pool_matrix_t`, {
      dtype: "float32",
      shape: [H * W, n * n],
      data: transpose(adaptiveMatrix2d(H, W, n), n * n, H * W),
    });
    const y = g.op1("MatMul", [reshape(g, x, [-1, C, H * W]), pT], undefined, `${name}_pool`);
    return reshape(g, y, [-1, C, n, n], name);
  },
  trainForward(ctx, a, x, inShape, name) {
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const n = a.out;
    if (H === n && W === n) return { y: x, saved: {} };
    if (n === 1) return { y: reduce(g, "ReduceMean", x, [1, 2], true, name), saved: {} };
    const p = g.initializer(`${name}.pool_matrix`, { dtype: "float32", shape: [n * n, H * W], data: adaptiveMatrix2d(H, W, n) });
    const y = g.op1("MatMul", [p, reshape(g, x, [C, H * W, N])], undefined, `${name}_pool`);
    return { y: reshape(g, y, [C, n, n, N], name), saved: {} };
  },
  backward(ctx, a, { dy, inShape, name, needDx }) {
    if (!needDx) return { grads: {} };
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const n = a.out;
    if (H === n && W === n) return { dx: dy, grads: {} };
    if (n === 1) {
      const dx = g.op1("Expand", [g.op1("Mul", [dy, g.scalar(1 / (H * W))]), g.shapeConst([C, H, W, N])], undefined, `${name}_dx`);
      return { dx, grads: {} };
    }
    const pt = g.initializer(`${name}.pool_matrix_t`, {
      dtype: "float32",
      shape: [H * W, n * n],
      data: transpose(adaptiveMatrix2d(H, W, n), n * n, H * W),
    });
    const dx = g.op1("MatMul", [pt, reshape(g, dy, [C, n * n, N])], undefined, `${name}_dx`);
    return { dx: reshape(g, dx, [C, H, W, N]), grads: {} };
  },
};
