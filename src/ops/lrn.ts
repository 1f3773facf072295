import { f, i } from "../onnx/builder.js";
import { reshape } from "./emit.js";
import { checkRank, type OpKind } from "./types.js";

/**
 * Local response normalisation across channels (A-LRN). ONNX, PyTorch and Caffe all divide alpha by `size`:
 * b = a / (k + alpha/size * sum a^2)^beta, so the same numbers mean the same layer in all three.
 */
export interface LrnAttrs {
  size: number;
  alpha: number;
  beta: number;
  k: number;
}

/** Band[c, j] = 1 where channel j is in channel c's window: ONNX's [c - floor((size-1)/2), c + ceil((size-1)/2)]. */
export function lrnBand(C: number, size: number): Float32Array {
  const band = new Float32Array(C * C);
  const lo = Math.floor((size - 1) / 2);
  const hi = Math.ceil((size - 1) / 2);
  for (let c = 0; c < C; c++) for (let j = Math.max(0, c - lo); j <= Math.min(C - 1, c + hi); j++) band[c * C + j] = 1;
  return band;
}

/**
 * Training (layout [C, H, W, N] seen as [C, M]): the window sums are one small GEMM with the band matrix,
 * s = k + alpha/size * Band (a*a), b = a * s^-beta. Backward:
 * da = dy * s^-beta - (2 alpha beta / size) * a * Band^T (dy * b / s).
 */
export const lrn: OpKind<LrnAttrs> = {
  outShape(_a, x) {
    checkRank("lrn", x, 3);
    return x;
  },
  params: () => [],
  macs: () => 0,
  // ONNX requires `bias` as a FLOAT attribute even when it is 2.0.
  forward: (ctx, a, x, _in, name) => ctx.g.op1("LRN", [x], { size: i(a.size), alpha: f(a.alpha), beta: f(a.beta), bias: f(a.k) }, name),
  trainForward(ctx, a, x, inShape, name) {
    const g = ctx.g;
    const C = inShape[0];
    const M = inShape[1] * inShape[2] * ctx.batch;
    const band = g.initializer(`${name}.band`, { dtype: "float32", shape: [C, C], data: lrnBand(C, a.size) });
    const x2 = reshape(g, x, [C, M]);
    const win = g.op1("MatMul", [band, g.op1("Mul", [x2, x2])], undefined, `${name}_window`);
    const s = g.op1("Add", [g.op1("Mul", [win, g.scalar(a.alpha / a.size)]), g.scalar(a.k)], undefined, `${name}_s`);
    const sb = g.op1("Pow", [s, g.scalar(-a.beta)], undefined, `${name}_spow`);
    const y = g.op1("Mul", [x2, sb]);
    return { y: reshape(g, y, [C, inShape[1], inShape[2], ctx.batch], name), saved: { x: x2, s, sb, y } };
  },
  backward(ctx, a, { saved, dy, inShape, name, needDx }) {
    if (!needDx) return { grads: {} };
    const g = ctx.g;
    const C = inShape[0];
    const M = inShape[1] * inShape[2] * ctx.batch;
    const bandT = g.initializer(`${name}.band_t`, { dtype: "float32", shape: [C, C], data: transposeSquare(lrnBand(C, a.size), C) });
    const dy2 = reshape(g, dy, [C, M]);
    const t = g.op1("Div", [g.op1("Mul", [dy2, saved.y]), saved.s]);
    const u = g.op1("MatMul", [bandT, t]);
    const second = g.op1("Mul", [g.op1("Mul", [saved.x, u]), g.scalar((2 * a.alpha * a.beta) / a.size)]);
    const dx = g.op1("Sub", [g.op1("Mul", [dy2, saved.sb]), second], undefined, `${name}_dx`);
    return { dx: reshape(g, dx, [C, inShape[1], inShape[2], ctx.batch]), grads: {} };
  },
};

function transposeSquare(m: Float32Array, n: number): Float32Array {
  const t = new Float32Array(n * n);
  for (let r = 0; r < n; r++) for (let c = 0; c < n; c++) t[c * n + r] = m[r * n + c];
  return t;
}
