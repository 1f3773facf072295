import { i, ints } from "../graph/builder.js";
import { im2col, reduce, reshape, transpose } from "../graph/emit.js";
import { checkRank, type OpKind } from "./types.js";

/** conv3-N / conv1-N: stride 1, "same" padding, with bias (as the paper and torchvision). */
export interface ConvAttrs {
  inC: number;
  outC: number;
  kernel: number;
}

/**
 * Training (layout [C, H, W, N]): the forward is one GEMM W[O, C*k*k] x im2col(x)[C*k*k, H*W*N]; the weight
 * gradient is one GEMM dY[O, HWN] x cols^T over the same columns; the input gradient is the forward again with the
 * flipped, transposed kernel, W'[C, O*k*k] x im2col(dY). Each is a single large GEMM for the whole batch, which is
 * what keeps the 2x2 and 4x4 maps of a 32x32 input efficient (a per-image GEMM there has 4 or 16 columns).
 */
export const conv: OpKind<ConvAttrs> = {
  outShape(a, x) {
    checkRank("conv", x, 3);
    if (x[0] !== a.inC) throw new Error(`conv expects ${a.inC} input channels, got ${x[0]}`);
    return [a.outC, x[1], x[2]];
  },
  params: (a) => [
    { suffix: "weight", shape: [a.outC, a.inC, a.kernel, a.kernel], dtype: "float32", trainable: true },
    { suffix: "bias", shape: [a.outC], dtype: "float32", trainable: true },
  ],
  macs: (a, x) => a.outC * x[1] * x[2] * a.inC * a.kernel * a.kernel,
  forward(ctx, a, x, _in, name) {
    const p = (a.kernel - 1) / 2;
    return ctx.g.op1(
      "Conv",
      [x, ctx.param("weight"), ctx.param("bias")],
      { kernel_shape: ints([a.kernel, a.kernel]), pads: ints([p, p, p, p]), strides: ints([1, 1]), group: i(1) },
      name,
    );
  },
  trainForward(ctx, a, x, inShape, name) {
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const cols = im2col(g, x, C, H, W, N, k, name);
    const wm = reshape(g, ctx.param("weight"), [a.outC, C * k * k]);
    let z: string;
    if (ctx.fuse?.biasIntoBn) z = g.op1("MatMul", [wm, cols], undefined, `${name}_gemm`);
    else z = g.op1("Gemm", [wm, cols, reshape(g, ctx.param("bias"), [a.outC, 1])], undefined, `${name}_gemm`);
    return { y: reshape(g, z, [a.outC, H, W, N], name), saved: { cols } };
  },
  backward(ctx, a, saved, dy, inShape, name, needDx) {
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const O = a.outC;
    const dz = reshape(g, dy, [O, H * W * N]);
    const dw = reshape(g, g.op1("Gemm", [dz, saved.cols], { transB: i(1) }, `${name}_dw`), [O, C, k, k]);
    const db = ctx.fuse?.biasIntoBn ? g.constant("float32", [O], new Array(O).fill(0)) : reduce(g, "ReduceSum", dz, [1], false, `${name}_db`);
    const out: { dx?: string; grads: Record<string, string> } = { grads: { weight: dw, bias: db } };
    if (needDx) {
      const w = ctx.param("weight");
      let dx: string;
      if (k === 1) {
        dx = g.op1("Gemm", [reshape(g, w, [O, C]), dz], { transA: i(1) }, `${name}_dx`);
      } else {
        // W'[c, o, kh, kw] = W[o, c, k-1-kh, k-1-kw]
        const flipped = g.op1("Slice", [w, g.shapeConst([-1, -1]), g.shapeConst([-(k + 1), -(k + 1)]), g.shapeConst([2, 3]), g.shapeConst([-1, -1])]);
        const wt = reshape(g, transpose(g, flipped, [1, 0, 2, 3]), [C, O * k * k]);
        dx = g.op1("MatMul", [wt, im2col(g, dy, O, H, W, N, k, `${name}_bwd`)], undefined, `${name}_dx`);
      }
      out.dx = reshape(g, dx, [C, H, W, N]);
    }
    return out;
  },
};
