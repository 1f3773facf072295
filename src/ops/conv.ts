import { i, ints } from "../graph/builder.js";
import { checkRank, type OpKind } from "./types.js";

/** conv3-N / conv1-N: stride 1, "same" padding, with bias (as the paper and torchvision). */
export interface ConvAttrs {
  inC: number;
  outC: number;
  kernel: number;
}

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
};
