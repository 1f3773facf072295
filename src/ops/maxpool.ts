import { type GraphBuilder, i, ints } from "../onnx/builder.js";
import { reduce, reshape } from "./emit.js";
import { reluGrad } from "./relu.js";
import { checkRank, type OpKind } from "./types.js";

/** The paper's 2x2 max-pool with stride 2 (floor mode, as torchvision). */
export interface MaxPoolAttrs {
  kernel: number;
  stride: number;
}

/**
 * Training (layout [C, H, W, N], 2x2 windows, stride 2): the maximum by two ReduceMax, each of a middle axis over a
 * contiguous N ([A, 2, M] -> [A, M]). Measured with the window rows reduced first (pick2x2 now reduces the columns
 * first, the same pattern): 3.3 ms on a [64, 32, 32, 128] map against 6.8 ms for one ReduceMax over both axes of
 * [C*Ho, 2, Wo, 2, N] (the strided pattern takes ORT's slow path) and 18.6 ms for MaxPool with Indices in a
 * [C, N, H, W] layout.
 * The backward routes dy to the position of its window's maximum: dx = float(mask) * up(dy), the mask made in the
 * forward (pick2x2) and kept as bools. When elements of a window tie for the maximum, PyTorch gives dy to the first
 * in row-major order, and so does the mask. Ties are common on real images: a constant background (Fashion-MNIST's
 * zeros, the zero padding) stays constant through conv, BN and ReLU, so whole windows hold one positive value; giving
 * dy to each of them multiplied those positions' share of the weight gradient by up to 4.
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
    // The paper's (and the zoo's) only pool; the tie rule below is written for it.
    if (k !== 2 || a.stride !== 2)
      throw new Error(`training supports the 2x2 max-pool with stride 2 only (kernel ${k}, stride ${a.stride})`);
    const Ho = Math.floor(H / k);
    const Wo = Math.floor(W / k);
    let xc = x;
    if (Ho * k !== H || Wo * k !== W) {
      xc = g.op1("Slice", [x, g.shapeConst([0, 0]), g.shapeConst([Ho * k, Wo * k]), g.shapeConst([1, 2])], undefined, `${name}_crop`);
    }
    // The backward needs only where each window's maximum is: kept as bools (1 byte per element, where x itself is 4
    // and is otherwise dead after this layer: 150 MB less at vgg16_bn 224x224 batch 8).
    const { max, argmax } = pick2x2(g, xc, C * Ho, Wo, N, name, ctx.device === "webgpu");
    // The float mask (WebGPU) is kept as `mask`, ready for the backward's product; the bool one as `argmax`.
    const saved: Record<string, string> = ctx.device === "webgpu" ? { mask: argmax } : { argmax };
    let y = ctx.device === "webgpu" ? max : needingMask(g, max, argmax, C * Ho, Wo, N, name);
    if (ctx.fuse?.reluBefore) {
      y = g.op1("Relu", [y], undefined, `${name}_relu`);
      saved.y = y;
    }
    return { y: reshape(g, y, [C, Ho, Wo, N], name), saved };
  },
  backward(ctx, a, { saved, dy, inShape, name, needDx }) {
    if (!needDx) return { grads: {} };
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const Ho = Math.floor(H / k);
    const Wo = Math.floor(W / k);
    let d = reshape(g, dy, [C * Ho * Wo, N]);
    if (ctx.fuse?.reluBefore) d = reluGrad(g, saved.y, d, `${name}_relu_dx`);
    const mask = saved.mask ?? g.op1("Cast", [saved.argmax], { to: i(1) }, `${name}_mask`);
    let dx = reshape(g, g.op1("Mul", [mask, reshape(g, d, [C * Ho, 1, Wo, 1, N])], undefined, `${name}_dx`), [C, Ho * k, Wo * k, N]);
    if (Ho * k !== H || Wo * k !== W) {
      dx = g.op1("Pad", [dx, g.shapeConst([0, 0, 0, 0, 0, H - Ho * k, W - Wo * k, 0])]);
    }
    return { dx, grads: {} };
  },
};

/**
 * The 2x2 pool of x [A*2, Wo*2, N] (A = C*Ho, so x is [A, 2, Wo, 2, N]), and the mask of each window's first maximum
 * (row-major, PyTorch's rule). The column: the first where a row's maximum is in its first column (a == max(a, b),
 * that is a >= b), else the second; the row: likewise with the rows' maxima. Both maxima reduce a middle axis over a
 * contiguous N (ORT's fast pattern); the rest is bool logic. (Routing dy with Where in the backward instead cost
 * 12 ms a step at vgg11_bn/2 32x32 batch 128, against 4 ms for the Cast and Mul of this mask.)
 * With `float` (the WebGPU form), pick2x2Float.
 */
function pick2x2(g: GraphBuilder, x: string, A: number, Wo: number, N: number, name: string, float = false) {
  if (float) return pick2x2Float(g, x, A, Wo, N, name);
  const rowMax = reduce(g, "ReduceMax", reshape(g, x, [A * 2 * Wo, 2, N]), [1], true, `${name}_row_max`);
  const cols = g.op1("Equal", [reshape(g, x, [A, 2, Wo, 2, N]), reshape(g, rowMax, [A, 2, Wo, 1, N])], undefined, `${name}_cols`);
  const max = reduce(g, "ReduceMax", reshape(g, rowMax, [A, 2, Wo * N]), [1], true, `${name}_max`);
  const rows = g.op1("Equal", [reshape(g, rowMax, [A, 2, Wo * N]), max], undefined, `${name}_rows`);
  // Index 0 keeps "first is a maximum", index 1 its negation: Xor with [false, true] along the axis.
  const pick = (v: string, shape: number[], tag: string) =>
    g.op1("Xor", [v, g.constant("bool", shape, [0, 1])], undefined, `${name}_${tag}`);
  const col = pick(first(g, cols, 3, `${name}_col0`), [1, 1, 1, 2, 1], "col");
  const row = pick(reshape(g, first(g, rows, 1, `${name}_row0`), [A, 1, Wo, 1, N]), [1, 2, 1, 1, 1], "row");
  return { max: reshape(g, max, [A * Wo, N]), argmax: g.op1("And", [col, row], undefined, `${name}_argmax`) };
}

/**
 * pick2x2's mask in float32 (the WebGPU form): ORT's WebGPU provider has no Xor or And, nor a Slice of bools (the
 * first graphs sliced the Equal masks on the CPU, with copies both ways: bench/results/webgpu.md), so the first
 * element is sliced from the floats before the comparison, "first is a maximum" is cast to 0/1, |first - [0, 1]|
 * picks it or its negation, and the product of the column's and the row's is the And.
 */
function pick2x2Float(g: GraphBuilder, x: string, A: number, Wo: number, N: number, name: string) {
  const rowMax = reduce(g, "ReduceMax", reshape(g, x, [A * 2 * Wo, 2, N]), [1], true, `${name}_row_max`);
  const rowMax3 = reshape(g, rowMax, [A, 2, Wo * N]);
  const max = reduce(g, "ReduceMax", rowMax3, [1], true, `${name}_max`);
  const colFirst = g.op1("Equal", [first(g, reshape(g, x, [A, 2, Wo, 2, N]), 3, `${name}_col0`), reshape(g, rowMax, [A, 2, Wo, 1, N])]);
  const rowFirst = g.op1("Equal", [first(g, rowMax3, 1, `${name}_row0`), max]);
  const pick = (v: string, shape: number[], tag: string) =>
    g.op1("Abs", [g.op1("Sub", [g.op1("Cast", [v], { to: i(1) }), g.constant("float32", shape, [0, 1])])], undefined, `${name}_${tag}`);
  const col = pick(colFirst, [1, 1, 1, 2, 1], "col");
  const row = pick(reshape(g, rowFirst, [A, 1, Wo, 1, N]), [1, 2, 1, 1, 1], "row");
  return { max: reshape(g, max, [A * Wo, N]), argmax: g.op1("Mul", [col, row], undefined, `${name}_argmax`) };
}

/**
 * `max` to the bit, as a value that needs the mask: Where(mask of each window's first element, max, max). ORT runs a
 * node when something asks for its output, and only the backward asks for the mask: it was made there, so x (4 bytes
 * an element) and the row maxima were kept from the forward to the backward instead of the 1-byte mask (vgg16_bn
 * 224x224 batch 8: 320 MB against 49 MB over the five pools). The Slice and Where cost a pass over the pooled map.
 */
function needingMask(g: GraphBuilder, max: string, argmax: string, A: number, Wo: number, N: number, name: string): string {
  const corner = g.op1(
    "Slice",
    [argmax, g.shapeConst([0, 0]), g.shapeConst([1, 1]), g.shapeConst([1, 3])],
    undefined,
    `${name}_mask_corner`,
  );
  return g.op1("Where", [reshape(g, corner, [A * Wo, N]), max, max], undefined, `${name}_after_mask`);
}

/** Index 0 of `axis` (kept as a size-1 axis). */
function first(g: GraphBuilder, v: string, axis: number, name: string): string {
  return g.op1("Slice", [v, g.shapeConst([0]), g.shapeConst([1]), g.shapeConst([axis])], undefined, name);
}
