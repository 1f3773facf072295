import { i } from "../onnx/builder.js";
import { reduce, reshape } from "./emit.js";
import { checkRank, type OpKind } from "./types.js";

/** nn.Linear: weight [out, in] as torchvision stores it, so the Gemm transposes B. */
export interface LinearAttrs {
  inF: number;
  outF: number;
}

/** Training layout [F, N]: y = W x + b (one Gemm), dW = dy x^T, db = sum_n dy, dx = W^T dy. */
export const linear: OpKind<LinearAttrs> = {
  outShape(a, x) {
    checkRank("linear", x, 1);
    if (x[0] !== a.inF) throw new Error(`linear expects ${a.inF} inputs, got ${x[0]}`);
    return [a.outF];
  },
  params: (a) => [
    { suffix: "weight", shape: [a.outF, a.inF], dtype: "float32", trainable: true },
    { suffix: "bias", shape: [a.outF], dtype: "float32", trainable: true },
  ],
  macs: (a) => a.inF * a.outF,
  forward: (ctx, _a, x, _in, name) => ctx.g.op1("Gemm", [x, ctx.param("weight"), ctx.param("bias")], { transB: i(1) }, name),
  trainForward(ctx, a, x, _in, name) {
    const g = ctx.g;
    const y = g.op1("Gemm", [ctx.param("weight"), x, reshape(g, ctx.param("bias"), [a.outF, 1])], undefined, name);
    return { y, saved: { x } };
  },
  backward(ctx, _a, { saved, dy, name, needDx }) {
    const g = ctx.g;
    const grads = {
      weight: g.op1("Gemm", [dy, saved.x], { transB: i(1) }, `${name}_dw`),
      bias: reduce(g, "ReduceSum", dy, [1], false, `${name}_db`),
    };
    if (!needDx) return { grads };
    return { dx: g.op1("Gemm", [ctx.param("weight"), dy], { transA: i(1) }, `${name}_dx`), grads };
  },
};
