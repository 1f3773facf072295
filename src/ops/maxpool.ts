import { ints } from "../graph/builder.js";
import { reduce, reshape } from "../graph/emit.js";
import { checkRank, type OpKind } from "./types.js";

/** The paper's 2x2 max-pool with stride 2 (floor mode, as torchvision). */
export interface MaxPoolAttrs {
  kernel: number;
  stride: number;
}

/**
 * Training (layout [C, H, W, N], windows not overlapping: kernel == stride): the map is viewed as
 * [C*Ho, k, Wo, k, N] and reduced with ReduceMax over the two window axes. The backward routes dy to the positions
 * equal to their window's maximum: dx = (x == up(y)) * up(dy). That is PyTorch's gradient except when two elements
 * of one window tie for the maximum (PyTorch gives dy to the first, this gives it to each). In VGG a pool follows a
 * ReLU, so ties at 0 are zeroed by the ReLU's gradient anyway; ties between positive floats need equal values.
 */
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
  trainForward(ctx, a, x, inShape, name) {
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    if (a.stride !== k) throw new Error(`training supports non-overlapping max-pools only (kernel ${k}, stride ${a.stride})`);
    const Ho = Math.floor(H / k);
    const Wo = Math.floor(W / k);
    let xc = x;
    if (Ho * k !== H || Wo * k !== W) {
      xc = g.op1("Slice", [x, g.shapeConst([0, 0]), g.shapeConst([Ho * k, Wo * k]), g.shapeConst([1, 2])], undefined, `${name}_crop`);
    }
    const x5 = reshape(g, xc, [C * Ho, k, Wo, k, N]);
    const y = reduce(g, "ReduceMax", x5, [1, 3], true, `${name}_max`);
    return { y: reshape(g, y, [C, Ho, Wo, N], name), saved: { x5, y } };
  },
  backward(ctx, a, saved, dy, inShape, name, needDx) {
    if (!needDx) return { grads: {} };
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const Ho = Math.floor(H / k);
    const Wo = Math.floor(W / k);
    const mask = g.op1("Equal", [saved.x5, saved.y], undefined, `${name}_argmax`);
    const dy5 = reshape(g, dy, [C * Ho, 1, Wo, 1, N]);
    let dx = reshape(g, g.op1("Where", [mask, dy5, g.scalar(0)], undefined, `${name}_dx`), [C, Ho * k, Wo * k, N]);
    if (Ho * k !== H || Wo * k !== W) {
      dx = g.op1("Pad", [dx, g.shapeConst([0, 0, 0, 0, 0, H - Ho * k, W - Wo * k, 0])]);
    }
    return { dx, grads: {} };
  },
};
