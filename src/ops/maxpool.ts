import { type GraphBuilder, i, ints } from "../graph/builder.js";
import { reduce, reshape } from "../graph/emit.js";
import { reluGrad } from "./relu.js";
import { checkRank, type OpKind } from "./types.js";

/** The paper's 2x2 max-pool with stride 2 (floor mode, as torchvision). */
export interface MaxPoolAttrs {
  kernel: number;
  stride: number;
}

/**
 * Training (layout [C, H, W, N], windows not overlapping: kernel == stride): two ReduceMax, first over the window
 * rows ([C*Ho, k, W*N], axis 1), then over the window columns ([C*Ho*Wo, k, N], axis 1): 3.3 ms on a
 * [64, 32, 32, 128] map against 6.8 ms for one ReduceMax over both axes of [C*Ho, k, Wo, k, N] (the strided
 * pattern takes ORT's slow path) and 18.6 ms for MaxPool with Indices in a [C, N, H, W] layout.
 * The backward routes dy to the position of its window's maximum: dx = float(first(x == up(y))) * up(dy), the mask
 * made in the forward and kept as bools. When elements of a window tie for the maximum, PyTorch gives dy to the
 * first in row-major order, and so does first(). Ties are common on real images: a constant background (Fashion-MNIST's
 * zeros, the zero padding) stays constant through conv, BN and ReLU, so whole windows hold one positive value; giving
 * dy to each of them multiplied those positions' share of the weight gradient by up to k*k.
 * With TrainCtx.fuse.reluBefore the preceding ReLU is applied here, after the max (it commutes with max):
 * y = relu(max(x)), and the ReLU's mask is applied to dy at the pooled size.
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
    const rows = reduce(g, "ReduceMax", reshape(g, xc, [C * Ho, k, Wo * k * N]), [1], false, `${name}_max_rows`);
    const max = reduce(g, "ReduceMax", reshape(g, rows, [C * Ho * Wo, k, N]), [1], false, `${name}_max`);
    // The backward needs only where x equals its window's maximum: kept as a bool mask (1 byte per element, where x
    // itself is 4 and is otherwise dead after this layer: 150 MB less at vgg16_bn 224x224 batch 8).
    const x5 = reshape(g, xc, [C * Ho, k, Wo, k, N]);
    const ties = g.op1("Equal", [x5, reshape(g, max, [C * Ho, 1, Wo, 1, N])], undefined, `${name}_ties`);
    const argmax = firstInWindow(g, ties, k, `${name}_argmax`);
    const saved: Record<string, string> = { argmax };
    let y = max;
    if (ctx.fuse?.reluBefore) {
      y = g.op1("Relu", [max], undefined, `${name}_relu`);
      saved.y = y;
    }
    return { y: reshape(g, y, [C, Ho, Wo, N], name), saved };
  },
  backward(ctx, a, saved, dy, inShape, name, needDx) {
    if (!needDx) return { grads: {} };
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const Ho = Math.floor(H / k);
    const Wo = Math.floor(W / k);
    let d = reshape(g, dy, [C * Ho * Wo, N]);
    if (ctx.fuse?.reluBefore) d = reluGrad(g, saved.y, d, `${name}_relu_dx`);
    const mask = g.op1("Cast", [saved.argmax], { to: i(1) }, `${name}_mask`);
    let dx = reshape(g, g.op1("Mul", [mask, reshape(g, d, [C * Ho, 1, Wo, 1, N])], undefined, `${name}_dx`), [C, Ho * k, Wo * k, N]);
    if (Ho * k !== H || Wo * k !== W) {
      dx = g.op1("Pad", [dx, g.shapeConst([0, 0, 0, 0, 0, H - Ho * k, W - Wo * k, 0])]);
    }
    return { dx, grads: {} };
  },
};

/**
 * Keeps, in each window of a bool mask [A, k, Wo, k, N] (window rows on axis 1, columns on axis 3), only the first
 * true element in row-major order: first along each row, then the first row that has one. Bool slices and logic
 * only, 1 byte an element (a CumSum would need floats, 4x the traffic on the largest maps of the step).
 */
function firstInWindow(g: GraphBuilder, e: string, k: number, name: string): string {
  const slice = (x: string, axis: number, j: number) =>
    g.op1("Slice", [x, g.shapeConst([j]), g.shapeConst([j + 1]), g.shapeConst([axis])], undefined, `${name}_s${axis}_${j}`);
  // Along one axis: part j keeps its trues where no earlier part had one; `any` says whether any part had one.
  const scan = (x: string, axis: number, had: (j: number, part: string) => string) => {
    const parts: string[] = [];
    let seen = "";
    for (let j = 0; j < k; j++) {
      const p = slice(x, axis, j);
      parts.push(j === 0 ? p : g.op1("And", [p, g.op1("Not", [seen])], undefined, `${name}_first${axis}_${j}`));
      seen = j === 0 ? had(j, p) : g.op1("Or", [seen, had(j, p)], undefined, `${name}_seen${axis}_${j}`);
    }
    return { y: g.op1("Concat", parts, { axis: i(axis) }, `${name}_cat${axis}`), any: seen };
  };
  const rows = scan(e, 3, (_j, p) => p);
  // A row had one if any of its columns had (rows.any is [A, k, Wo, 1, N]).
  return scan(rows.y, 1, (j) => slice(rows.any, 1, j)).y;
}
