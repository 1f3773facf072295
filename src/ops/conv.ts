import { type GraphBuilder, i, ints } from "../onnx/builder.js";
import { chwnToNchw, forEachShift, im2col, nchwToChwn, reduce, reshape, transpose } from "./emit.js";
import { checkRank, type OpKind, type TrainForward } from "./types.js";
import { winogradConv, winogradFromTiles, winogradKernel, winogradTiles, winogradWeightGrad } from "./winograd.js";

/** conv3-N / conv1-N: stride 1, "same" padding, with bias (as the paper and torchvision). */
export interface ConvAttrs {
  inC: number;
  outC: number;
  kernel: number;
}

/**
 * Training (layout [C, H, W, N]), two algorithms per direction (TrainCtx.convAlgo, TrainCtx.convWeightGrad):
 * - im2col: the forward is one GEMM W[O, C*k*k] x im2col(x)[C*k*k, H*W*N]; the weight gradient one GEMM
 *   dY[O, HWN] x cols^T over the same columns; the input gradient is the forward again with the flipped, transposed
 *   kernel, W'[C, O*k*k] x im2col(dY) (the flip folded into the im2col's tap order). Single large GEMMs for the whole
 *   batch keep the 2x2 and 4x4 maps of a 32x32 input efficient (a per-image GEMM there has 4 or 16 columns).
 * - Winograd F(2x2, 3x3) (src/ops/winograd.ts) for the forward and the input gradient, and F(3x3, 2x2) for the
 *   weight gradient: 2.25x fewer multiplications. Per layer, batch 128, forward + backward (ms, im2col vs Winograd):
 *   512->512 at 4x4 195 vs 89, 256->256 at 8x8 183 vs 107, 512->512 at 2x2 39 vs 28; the Winograd weight gradient
 *   loses from 16x16 up (64->128 at 16x16: 236 vs 117 for the whole layer, its 64 tiles per image make 1024 small
 *   GEMMs and a large sum), so the walker keeps im2col there.
 * - nchw (large maps: from 56x56, or 28x28 below batch 32; see chooseConvAlgo): ORT's own Conv on the map transposed
 *   to [N, C, H, W] (a 2-D transpose each way) for the forward, and for the input gradient with the flipped,
 *   transposed kernel; the weight gradient by nine tap GEMMs over shifted slices of x (tapWeightGrad; "im2col" when the
 *   columns are small, e.g. the 3-channel first layer). MLAS's Conv works through a bounded per-image buffer, where the
 *   whole-batch im2col of a 224x224 map with 64 channels is 925 MB at batch 8 (twice that while the Slices are
 *   concatenated). vgg16_bn 224x224 batch 8: 23.7 -> 12.1 s per step, 17.7 -> 6.6 GB peak RSS (with the memory
 *   pattern off as well). Per layer there (forward / input gradient / weight gradient, ms, 2 loaded cores): 64->64 at
 *   224x224 355 / 353 / 516 + 146 for the slices; 512->512 at 28x28 309 / 307 / 353 + 30; at 14x14 im2col was faster.
 *   The nchwc contrib Conv (weights reordered in-graph) measured no faster at these sizes (64->64 224: 305 vs 330 ms).
 * Alternatives measured per layer (batch 128, 2 threads; GFLOP/s of the forward): ORT's Conv with the weight as a
 * graph input (no prepacking) ran 172 at 16x16 but 38-48 at 8x8, 32 at 4x4 and 9 at 2x2, against 160-200 for the
 * whole-batch GEMM (MLAS's peak here is ~190); im2col by Pad + 8 Slices + Concat cost 2.5-4x the single Gather
 * used from batch 32 up (below it the Gather's runs get short and the Slices are used); dW as Gemm(dY, cols,
 * transB) and as Gemm(cols, dY, transB) plus a transpose were within the machine's noise of each other.
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
  trainForward(ctx, a, x, inShape, name): TrainForward {
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const O = a.outC;
    const winoDw = ctx.convWeightGrad === "winograd";
    const saved: Record<string, string> = {};
    let y: string;
    if (ctx.convAlgo === "nchw") {
      // ORT's own Conv in [N, C, H, W] (MLAS im2col in a bounded per-thread buffer, then GEMM): no 9x column
      // matrix of the whole batch. x itself (not its NCHW copy) is kept: the tap weight gradient reads it.
      const p = (k - 1) / 2;
      const ins = [chwnToNchw(g, x, C, H, W, N, `${name}_to_nchw`), ctx.param("weight")];
      if (!ctx.fuse?.biasIntoBn) ins.push(ctx.param("bias"));
      const yn = g.op1("Conv", ins, { kernel_shape: ints([k, k]), pads: ints([p, p, p, p]), strides: ints([1, 1]) }, `${name}_conv`);
      y = nchwToChwn(g, yn, O, H, W, N, `${name}_to_chwn`);
      if (ctx.convWeightGrad === "winograd") saved.v = winogradTiles(g, x, C, H, W, N, name);
      else saved.x = x;
    } else if (ctx.convAlgo === "winograd") {
      const u = winogradKernel(g, ctx.param("weight"), O, C, false, name);
      const v = winogradTiles(g, x, C, H, W, N, name);
      y = winogradFromTiles(g, v, u, O, H, W, N, name);
      if (!ctx.fuse?.biasIntoBn) y = g.op1("Add", [y, reshape(g, ctx.param("bias"), [O, 1, 1, 1])], undefined, name);
      if (winoDw) saved.v = v;
      else saved.x = x;
    } else {
      const cols = im2col(g, x, C, H, W, N, k, name);
      const wm = reshape(g, ctx.param("weight"), [O, C * k * k]);
      const z = ctx.fuse?.biasIntoBn
        ? g.op1("MatMul", [wm, cols], undefined, `${name}_gemm`)
        : g.op1("Gemm", [wm, cols, reshape(g, ctx.param("bias"), [O, 1])], undefined, `${name}_gemm`);
      y = reshape(g, z, [O, H, W, N], name);
      // Keep the columns for the weight gradient when they are small; past 2^24 floats (64 MB: e.g. 64 channels at
      // 32x32, batch 128, is 75 MB) keep x and gather them again in the backward, so that large maps do not hold
      // nine copies of every activation from the forward to the backward.
      if (winoDw || ctx.convWeightGrad === "taps" || C * k * k * H * W * N > 2 ** 24) saved.x = x;
      else saved.cols = cols;
    }
    return { y, saved };
  },
  backward(ctx, a, { saved, dy, inShape, name, needDx }) {
    const g = ctx.g;
    const [C, H, W] = inShape;
    const N = ctx.batch;
    const k = a.kernel;
    const O = a.outC;
    const dz = reshape(g, dy, [O, H * W * N]);
    let dw: string;
    if (ctx.convWeightGrad === "taps") {
      dw = tapWeightGrad(g, saved.x, dz, C, O, H, W, N, k, name);
    } else if (ctx.convWeightGrad === "winograd") {
      const v = saved.v ?? winogradTiles(g, saved.x, C, H, W, N, `${name}_dw`);
      dw = winogradWeightGrad(g, v, dy, C, O, H, W, N, name);
    } else {
      const cols = saved.cols ?? im2col(g, saved.x, C, H, W, N, k, `${name}_dw`);
      dw = reshape(g, g.op1("Gemm", [dz, cols], { transB: i(1) }, `${name}_dw`), [O, C, k, k]);
    }
    // A bias followed by BN was left out of the forward: its gradient is exactly zero.
    const db = ctx.fuse?.biasIntoBn
      ? g.constant("float32", [O], new Array(O).fill(0))
      : reduce(g, "ReduceSum", dz, [1], false, `${name}_db`);
    const out: { dx?: string; grads: Record<string, string> } = { grads: { weight: dw, bias: db } };
    if (needDx) {
      const w = ctx.param("weight");
      let dx: string;
      if (ctx.convAlgo === "nchw") {
        const p = (k - 1) / 2;
        const dyn = chwnToNchw(g, dy, O, H, W, N, `${name}_dy_nchw`);
        const dxn = g.op1(
          "Conv",
          [dyn, flippedKernel(g, w, O, C, k, `${name}_wflip`)],
          { kernel_shape: ints([k, k]), pads: ints([p, p, p, p]), strides: ints([1, 1]) },
          `${name}_dx`,
        );
        dx = nchwToChwn(g, dxn, C, H, W, N, `${name}_dx_chwn`);
      } else if (ctx.convAlgo === "winograd") {
        dx = winogradConv(g, dy, winogradKernel(g, w, O, C, true, `${name}_bwd`), O, C, H, W, N, `${name}_bwd`);
      } else if (k === 1) {
        dx = g.op1("Gemm", [reshape(g, w, [O, C]), dz], { transA: i(1) }, `${name}_dx`);
      } else {
        // The kernel flip is in the im2col's tap order (a Slice with negative steps on the weight took 6 ms for
        // 512x512x3x3); only the [O, C] transposition is done on the weight.
        const wt = reshape(g, transpose(g, reshape(g, w, [O, C, k * k]), [1, 0, 2]), [C, O * k * k]);
        dx = g.op1("MatMul", [wt, im2col(g, dy, O, H, W, N, k, `${name}_bwd`, true)], undefined, `${name}_dx`);
      }
      out.dx = reshape(g, dx, [C, H, W, N]);
    }
    return out;
  },
};

/**
 * The kernel of the input gradient as a Conv weight: w [O, C, k, k] -> [C, O, k, k] rotated by 180 degrees. The tap
 * reversal is a GEMM with the exchange matrix (exact: one product by 1 per element; a Slice with negative steps
 * took 6 ms on 512x512x3x3).
 */
export function flippedKernel(g: GraphBuilder, w: string, O: number, C: number, k: number, name: string): string {
  const t = reshape(g, transpose(g, reshape(g, w, [O, C, k * k]), [1, 0, 2]), [C * O, k * k]);
  if (k === 1) return reshape(g, t, [C, O, 1, 1]);
  const j: number[] = [];
  for (let r = 0; r < k * k; r++) for (let c = 0; c < k * k; c++) j.push(r + c === k * k - 1 ? 1 : 0);
  const flipped = g.op1("MatMul", [t, g.constant("float32", [k * k, k * k], j)], undefined, name);
  return reshape(g, flipped, [C, O, k, k]);
}

/**
 * The weight gradient as one GEMM per kernel tap: dW[:, :, kh, kw] = dz [O, H*W*N] x shift(x)[C, H*W*N]^T, the
 * shifted x a Slice of the zero-padded map. Each tap's slice is one activation-sized temporary (freed before the
 * next), where the im2col of a 224x224 map with 64 channels is nine of them at once (925 MB at batch 8).
 */
export function tapWeightGrad(
  g: GraphBuilder,
  x: string,
  dz: string,
  C: number,
  O: number,
  H: number,
  W: number,
  N: number,
  k: number,
  name: string,
): string {
  if (k === 1) return reshape(g, g.op1("Gemm", [dz, reshape(g, x, [C, H * W * N])], { transB: i(1) }, `${name}_dw`), [O, C, 1, 1]);
  const taps: string[] = [];
  forEachShift(g, x, H, W, k, `${name}_dw`, false, (sl) => {
    const t = g.op1("Gemm", [dz, reshape(g, sl, [C, H * W * N])], { transB: i(1) }, `${name}_dw_tap`);
    taps.push(reshape(g, t, [O, C, 1]));
  });
  return reshape(g, g.op1("Concat", taps, { axis: i(2) }, `${name}_dw`), [O, C, k, k]);
}
