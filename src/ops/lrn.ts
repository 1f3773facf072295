import { f, i } from "../graph/builder.js";
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

export const lrn: OpKind<LrnAttrs> = {
  outShape(_a, x) {
    checkRank("lrn", x, 3);
    return x;
  },
  params: () => [],
  macs: () => 0,
  // ONNX requires `bias` as a FLOAT attribute even when it is 2.0.
  forward: (ctx, a, x, _in, name) =>
    ctx.g.op1("LRN", [x], { size: i(a.size), alpha: f(a.alpha), beta: f(a.beta), bias: f(a.k) }, name),
};
