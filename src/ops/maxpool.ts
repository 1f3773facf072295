import { ints } from "../graph/builder.js";
import { checkRank, type OpKind } from "./types.js";

/** The paper's 2x2 max-pool with stride 2 (floor mode, as torchvision). */
export interface MaxPoolAttrs {
  kernel: number;
  stride: number;
}

export const maxpool: OpKind<MaxPoolAttrs> = {
  outShape(a, x) {
    checkRank("maxpool", x, 3);
    const h = Math.floor((x[1] - a.kernel) / a.stride) + 1;
    const w = Math.floor((x[2] - a.kernel) / a.stride) + 1;
    if (h < 1 || w < 1) throw new Error(`max-pool on a ${x[1]}x${x[2]} map leaves nothing`);
    return [x[0], h, w];
  },
  params: () => [],
  macs: () => 0,
  forward: (ctx, a, x, _in, name) =>
    ctx.g.op1("MaxPool", [x], { kernel_shape: ints([a.kernel, a.kernel]), strides: ints([a.stride, a.stride]) }, name),
};
