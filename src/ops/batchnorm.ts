import { f, type GraphBuilder, i } from "../onnx/builder.js";
import { numel } from "../tensor.js";
import { reduce, reshape } from "./emit.js";
import { checkRank, type OpKind } from "./types.js";

/** BatchNorm2d as torchvision: eps 1e-5, running statistics with momentum 0.1 (PyTorch's sense). */
export interface BatchNormAttrs {
  channels: number;
  eps: number;
  momentum: number;
}

/**
 * Training mode, as PyTorch: normalise with the batch mean and biased batch variance; running_mean and running_var
 * move by `momentum` (PyTorch's sense: new = (1 - m) * old + m * batch) towards the batch mean and the UNBIASED
 * batch variance; num_batches_tracked + 1.
 * The forward is ONNX BatchNormalization with training_mode=1 fed zero running statistics and momentum 0, so its
 * "running" outputs are exactly the batch mean and biased variance (ONNX's momentum weighs the old value, and its
 * running variance is the biased one: PyTorch's update is composed from those on C-vectors). One op instead of the
 * eight passes of a composed BN (on [256, 8192]: 1.0 ms vs ~3 ms). On WebGPU (TrainCtx.device) the composed BN it is:
 * that provider rejects training_mode=1.
 * Backward, with S1 = sum dy, S2 = sum dy*x, T = sum dy*xhat = invstd (S2 - mean S1):
 *   dgamma = T, dbeta = S1, dx = A dy + B x + D with A = gamma invstd, B = -A invstd T / M, D = -A S1 / M - B mean
 * (three passes over the map: the affine B x + D is a BatchNormalization in inference mode with mean 0, var 1, eps 0).
 */
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
    return ctx.g.op1("BatchNormalization", [x, p("weight"), p("bias"), p("running_mean"), p("running_var")], { epsilon: f(a.eps) }, name);
  },
  trainForward(ctx, a, x, inShape, name) {
    const g = ctx.g;
    const C = a.channels;
    const M = mapSize(inShape) * ctx.batch;
    const gamma = ctx.param("weight");
    const beta = ctx.param("bias");
    const { y, mean, variance } =
      ctx.device === "webgpu" ? composedBn(ctx.g, x, gamma, beta, C, M, a.eps, name) : trainingBn(ctx.g, x, gamma, beta, C, M, a.eps, name);
    const invstd = g.op1("Reciprocal", [g.op1("Sqrt", [g.op1("Add", [variance, g.scalar(a.eps)])])], undefined, `${name}_invstd`);
    // Running statistics (vectors of C: negligible work).
    const m = a.momentum;
    const bmean = ctx.fuse?.convBias ? g.op1("Add", [mean, ctx.fuse.convBias]) : mean;
    const unbiased = g.op1("Mul", [variance, g.scalar(M / Math.max(1, M - 1))]);
    const ema = (old: string, cur: string) => g.op1("Add", [g.op1("Mul", [old, g.scalar(1 - m)]), g.op1("Mul", [cur, g.scalar(m)])]);
    return {
      y: reshape(g, y, [C, ...inShape.slice(1), ctx.batch]),
      saved: { x: reshape(g, x, [C, M]), mean: reshape(g, mean, [C, 1]), invstd: reshape(g, invstd, [C, 1]) },
      state: {
        running_mean: ema(ctx.param("running_mean"), bmean),
        running_var: ema(ctx.param("running_var"), unbiased),
        num_batches_tracked: g.op1("Add", [ctx.param("num_batches_tracked"), g.constant("int64", [], [1])]),
      },
    };
  },
  backward(ctx, a, { saved, dy, inShape, name, needDx }) {
    const g = ctx.g;
    const C = a.channels;
    const M = mapSize(inShape) * ctx.batch;
    const dy2 = reshape(g, dy, [C, M]);
    const s1 = reduce(g, "ReduceSum", dy2, [1], true, `${name}_dbeta`);
    const s2 = reduce(g, "ReduceSum", g.op1("Mul", [dy2, saved.x]), [1], true, `${name}_sum_dy_x`);
    const t = g.op1("Mul", [g.op1("Sub", [s2, g.op1("Mul", [saved.mean, s1])]), saved.invstd], undefined, `${name}_dgamma`);
    const grads = { weight: reshape(g, t, [C]), bias: reshape(g, s1, [C]) };
    if (!needDx) return { grads };
    const gamma = reshape(g, ctx.param("weight"), [C, 1]);
    const A = g.op1("Mul", [gamma, saved.invstd]);
    const B = g.op1("Mul", [g.op1("Mul", [A, saved.invstd]), g.op1("Mul", [t, g.scalar(-1 / M)])]);
    const D = g.op1("Sub", [g.op1("Mul", [A, g.op1("Mul", [s1, g.scalar(-1 / M)])]), g.op1("Mul", [B, saved.mean])]);
    const zeros = g.initializer(`${name}_zero_mean`, { dtype: "float32", shape: [C], data: new Float32Array(C) });
    const ones = g.initializer(`${name}_unit_var`, { dtype: "float32", shape: [C], data: new Float32Array(C).fill(1) });
    const affine = g.op1(
      "BatchNormalization",
      [reshape(g, saved.x, [1, C, M]), reshape(g, B, [C]), reshape(g, D, [C]), zeros, ones],
      { epsilon: f(0) },
      `${name}_bx_d`,
    );
    const dx = g.op1("Add", [g.op1("Mul", [dy2, A]), reshape(g, affine, [C, M])], undefined, `${name}_dx`);
    return { dx: reshape(g, dx, [C, ...inShape.slice(1), ctx.batch]), grads };
  },
};

/** The batch statistics by ONNX BatchNormalization in training mode (the CPU form: one op); mean and variance [C]. */
function trainingBn(g: GraphBuilder, x: string, gamma: string, beta: string, C: number, M: number, eps: number, name: string) {
  // ORT computes the two "running" outputs in place of these inputs, and its constant sharing merges equal
  // initializers: fed initializers, the batch mean and variance overwrite other constants of the graph. So the
  // inputs are two fresh runtime tensors; with momentum 0 their values (finite) do not matter.
  const x3 = reshape(g, x, [1, C, M]);
  const z0 = g.op1("Sub", [gamma, gamma], undefined, `${name}_stat_in0`);
  const z1 = g.op1("Sub", [beta, beta], undefined, `${name}_stat_in1`);
  const [y, mean, variance] = g.op(
    "BatchNormalization",
    [x3, gamma, beta, z0, z1],
    { epsilon: f(eps), momentum: f(0), training_mode: i(1) },
    { outputs: [name, `${name}_mean`, `${name}_var`], name },
  );
  return { y, mean, variance };
}

/**
 * The same statistics composed from reductions and elementwise ops (the WebGPU form: ORT's WebGPU provider, like
 * onnxruntime-web's, rejects training_mode=1): mean, centred x, biased variance, then y = xc * (gamma invstd) + beta.
 */
function composedBn(g: GraphBuilder, x: string, gamma: string, beta: string, C: number, M: number, eps: number, name: string) {
  const x2 = reshape(g, x, [C, M]);
  const mean = reduce(g, "ReduceMean", x2, [1], true, `${name}_mean`);
  const xc = g.op1("Sub", [x2, mean], undefined, `${name}_centred`);
  const variance = reduce(g, "ReduceMean", g.op1("Mul", [xc, xc]), [1], true, `${name}_var`);
  const invstd = g.op1("Reciprocal", [g.op1("Sqrt", [g.op1("Add", [variance, g.scalar(eps)])])]);
  const scale = g.op1("Mul", [invstd, reshape(g, gamma, [C, 1])]);
  const y = g.op1("Add", [g.op1("Mul", [xc, scale]), reshape(g, beta, [C, 1])], undefined, name);
  return { y, mean: reshape(g, mean, [C]), variance: reshape(g, variance, [C]) };
}

function mapSize(s: number[]): number {
  return numel(s.slice(1));
}
