import { i } from "../graph/builder.js";
import { checkRank, type OpKind } from "./types.js";

/** nn.Linear: weight [out, in] as torchvision stores it, so the Gemm transposes B. */
export interface LinearAttrs {
  inF: number;
  outF: number;
}

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
};
