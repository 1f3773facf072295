import { i, ints } from "../graph/builder.js";
import { checkRank, type OpKind } from "./types.js";

/**
 * torchvision's AdaptiveAvgPool2d. Output cell j of n over an input of length L averages
 * [floor(j*L/n), ceil((j+1)*L/n)). The general case is written as two small averaging-matrix products
 * (P_h . X . P_w^T), which exports for every input size; where the pool is a plain average pool (L a multiple of
 * n) or the identity (L == n) the cheaper op is emitted, with identical numbers.
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
    const pwT = g.initializer(`${name}.pw_t`, { dtype: "float32", shape: [W, a.out], data: transpose(adaptiveMatrix(W, a.out), a.out, W) });
    const ph = g.initializer(`${name}.ph`, { dtype: "float32", shape: [a.out, H], data: adaptiveMatrix(H, a.out) });
    const rows = g.op1("MatMul", [x, pwT], undefined, `${name}_w`);
    return g.op1("MatMul", [ph, rows], undefined, name);
  },
};
