import { f } from "../graph/builder.js";
import { reduce, reshape } from "../graph/emit.js";
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
 * batch variance; num_batches_tracked + 1. (ONNX's BatchNormalization momentum is the weight of the old value, and
 * its training mode updates with the biased variance, so the statistics are composed here.)
 * Backward: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), dgamma = sum(dy * xhat), dbeta = sum(dy).
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
    return ctx.g.op1(
      "BatchNormalization",
      [x, p("weight"), p("bias"), p("running_mean"), p("running_var")],
      { epsilon: f(a.eps) },
      name,
    );
  },
  trainForward(ctx, a, x, inShape, name) {
    const g = ctx.g;
    const C = a.channels;
    const M = (inShape[1] ?? 1) * (inShape[2] ?? 1) * ctx.batch;
    const x2 = reshape(g, x, [C, M]);
    const mean = reduce(g, "ReduceMean", x2, [1], true, `${name}_mean`);
    const xc = g.op1("Sub", [x2, mean], undefined, `${name}_xc`);
    const variance = reduce(g, "ReduceMean", g.op1("Mul", [xc, xc]), [1], true, `${name}_var`);
    const invstd = g.op1("Reciprocal", [g.op1("Sqrt", [g.op1("Add", [variance, g.scalar(a.eps)])])], undefined, `${name}_invstd`);
    const xhat = g.op1("Mul", [xc, invstd], undefined, `${name}_xhat`);
    const gamma = reshape(g, ctx.param("weight"), [C, 1]);
    const beta = reshape(g, ctx.param("bias"), [C, 1]);
    const y = g.op1("Add", [g.op1("Mul", [xhat, gamma]), beta]);
    // Running statistics (vectors of C: negligible work).
    const m = a.momentum;
    let bmean = reshape(g, mean, [C]);
    if (ctx.fuse?.convBias) bmean = g.op1("Add", [bmean, ctx.fuse.convBias]);
    const unbiased = g.op1("Mul", [reshape(g, variance, [C]), g.scalar(M / Math.max(1, M - 1))]);
    const ema = (old: string, cur: string) => g.op1("Add", [g.op1("Mul", [old, g.scalar(1 - m)]), g.op1("Mul", [cur, g.scalar(m)])]);
    return {
      y: reshape(g, y, [C, ...inShape.slice(1), ctx.batch], name),
      saved: { xhat, invstd, gamma },
      state: {
        running_mean: ema(ctx.param("running_mean"), bmean),
        running_var: ema(ctx.param("running_var"), unbiased),
        num_batches_tracked: g.op1("Add", [ctx.param("num_batches_tracked"), g.constant("int64", [], [1])]),
      },
    };
  },
  backward(ctx, a, saved, dy, inShape, name, needDx) {
    const g = ctx.g;
    const C = a.channels;
    const M = (inShape[1] ?? 1) * (inShape[2] ?? 1) * ctx.batch;
    const dy2 = reshape(g, dy, [C, M]);
    const dbeta = reduce(g, "ReduceSum", dy2, [1], true, `${name}_dbeta`);
    const dgamma = reduce(g, "ReduceSum", g.op1("Mul", [dy2, saved.xhat]), [1], true, `${name}_dgamma`);
    const grads = { weight: reshape(g, dgamma, [C]), bias: reshape(g, dbeta, [C]) };
    if (!needDx) return { grads };
    const k = g.op1("Mul", [saved.gamma, saved.invstd]);
    const t = g.op1("Sub", [
      g.op1("Sub", [dy2, g.op1("Mul", [dbeta, g.scalar(1 / M)])]),
      g.op1("Mul", [saved.xhat, g.op1("Mul", [dgamma, g.scalar(1 / M)])]),
    ]);
    const dx = g.op1("Mul", [t, k], undefined, `${name}_dx`);
    return { dx: reshape(g, dx, [C, ...inShape.slice(1), ctx.batch]), grads };
  },
};
