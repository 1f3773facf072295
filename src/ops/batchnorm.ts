import { f } from "../graph/builder.js";
import { checkRank, type OpKind } from "./types.js";

/** BatchNorm2d as torchvision: eps 1e-5, running statistics with momentum 0.1 (PyTorch's sense). */
export interface BatchNormAttrs {
  channels: number;
  eps: number;
  momentum: number;
}

export const batchnorm: OpKind<BatchNormAttrs> = {
  outShape(a, x) {
    checkRank("batchnorm", x, 3);
    if (x[0] !== a.channels) throw new Error(`batchnorm expects ${a.channels} channels, got ${x[0]}`);
    return x;
  },
  params: (a) => [
    { suffix: "weight", shape: [a.channels], dtype: "float32", trainable: true },
    { suffix: "bias", shape: [a.channels], dtype: "float32", trainable: true },
    { suffix: "running_mean", shape: [a.channels], dtype: "float32", trainable: false },
    { suffix: "running_var", shape: [a.channels], dtype: "float32", trainable: false },
    { suffix: "num_batches_tracked", shape: [], dtype: "int64", trainable: false },
  ],
  macs: () => 0,
  forward(ctx, a, x, _in, name) {
    const p = ctx.param;
    return ctx.g.op1(
      "BatchNormalization",
      [x, p("weight"), p("bias"), p("running_mean"), p("running_var")],
      { epsilon: f(a.eps) },
      name,
    );
  },
};
