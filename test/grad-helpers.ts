/**
 * Gradient checks of one op kind: its training forward and backward in a tiny graph (training layout, batch
 * innermost), against central differences of the forward along random directions. The functional is
 * L = sum(y * R) for a fixed random R (so dL/dy = R), evaluated in float64 from float32 ORT outputs.
 */
import { GraphBuilder } from "../src/onnx/builder.js";
import { encodeModel } from "../src/onnx/encode.js";
import { TRAIN_OPSET } from "../src/ops/emit.js";
import { type OpName, opOf } from "../src/ops/index.js";
import type { TrainCtx } from "../src/ops/types.js";
import { createSession, type Session } from "../src/runtime/ort.js";
import type { Tensor } from "../src/tensor.js";
import { numel } from "../src/tensor.js";
import { prng } from "./train-step-helpers.js";

export interface GradCase {
  kind: OpName;
  attrs: unknown;
  /** Per-sample input shape. */
  inShape: number[];
  batch: number;
  /** Values of the layer's parameters and buffers, by suffix (defaults: random for float tensors). */
  params?: Record<string, Tensor>;
  /** Input values in the training layout (default: uniform in [-1, 1]). */
  x?: Float32Array;
  seed?: number;
  fuse?: TrainCtx["fuse"];
  convAlgo?: TrainCtx["convAlgo"];
  convWeightGrad?: TrainCtx["convWeightGrad"];
  /** Extra graph inputs the fuse names (e.g. a conv bias), with values. */
  extra?: Record<string, Tensor>;
}

export interface GradReport {
  /** Worst relative error of directional derivatives, per checked tensor ("x" or a parameter suffix). */
  worst: Record<string, number>;
  /** Analytic gradients (for extra assertions). */
  grads: Record<string, Float32Array>;
  y: Float32Array;
  /** dL/dy, the R of L = sum(y * R). */
  dy: Float32Array;
}

function build(c: GradCase, withBackward: boolean): { bytes: Uint8Array; yShape: number[]; paramNames: string[] } {
  const op = opOf(c.kind);
  const g = new GraphBuilder();
  g.opsets.set("", TRAIN_OPSET);
  const xShape = [...c.inShape, c.batch];
  const x = g.input("x", "float32", xShape);
  const seed = g.input("seed", "int64", []);
  const specs = op.params(c.attrs, c.inShape);
  for (const p of specs) g.input(`p.${p.suffix}`, p.dtype, p.shape);
  for (const [k, t] of Object.entries(c.extra ?? {})) g.input(k, t.dtype, t.shape);
  const ctx: TrainCtx = {
    g,
    batch: c.batch,
    seed,
    salt: 3,
    param: (s) => `p.${s}`,
    fuse: c.fuse,
    convAlgo: c.convAlgo,
    convWeightGrad: c.convWeightGrad,
  };
  const fwd = op.trainForward(ctx, c.attrs, x, c.inShape, "layer");
  const yShape = [...op.outShape(c.attrs, c.inShape), c.batch];
  g.output(fwd.y, "y", "float32", yShape);
  const paramNames = specs.filter((p) => p.trainable).map((p) => p.suffix);
  if (withBackward) {
    const dy = g.input("dy", "float32", yShape);
    const b = op.backward(ctx, c.attrs, { saved: fwd.saved, dy, inShape: c.inShape, name: "layer", needDx: true });
    if (!b.dx) throw new Error("no dx");
    g.output(b.dx, "dx", "float32", xShape);
    for (const s of paramNames) {
      const spec = specs.find((p) => p.suffix === s);
      if (!spec) throw new Error(s);
      g.output(b.grads[s], `d.${s}`, "float32", spec.shape);
    }
  }
  return { bytes: encodeModel(g.spec()), yShape, paramNames };
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let k = 0; k < a.length; k++) s += a[k] * b[k];
  return s;
}

export async function gradCheck(c: GradCase, opts: { directions?: number; h?: number } = {}): Promise<GradReport> {
  const rnd = prng(c.seed ?? 1);
  const uni = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rnd() * 2 - 1) * s);
  const op = opOf(c.kind);
  const specs = op.params(c.attrs, c.inShape);
  const params: Record<string, Tensor> = {};
  for (const p of specs) {
    const given = c.params?.[p.suffix];
    if (given) params[p.suffix] = given;
    else if (p.dtype === "int64") params[p.suffix] = { dtype: "int64", shape: p.shape, data: new BigInt64Array(numel(p.shape)) };
    else params[p.suffix] = { dtype: "float32", shape: p.shape, data: uni(numel(p.shape), 0.5) };
  }
  const xShape = [...c.inShape, c.batch];
  const x = c.x ?? uni(numel(xShape));
  const fw = build(c, false);
  const bw = build(c, true);
  const fs = await createSession(fw.bytes, { threads: 1 });
  const bs = await createSession(bw.bytes, { threads: 1 });
  const R = uni(numel(fw.yShape));
  const feeds = (xv: Float32Array, pv: Record<string, Tensor>): Record<string, Tensor> => {
    const f: Record<string, Tensor> = {
      x: { dtype: "float32", shape: xShape, data: xv },
      seed: { dtype: "int64", shape: [], data: BigInt64Array.of(12345n) },
    };
    for (const [k, t] of Object.entries(pv)) f[`p.${k}`] = t;
    for (const [k, t] of Object.entries(c.extra ?? {})) f[k] = t;
    return f;
  };
  const L = async (s: Session, xv: Float32Array, pv: Record<string, Tensor>) =>
    dot((await s.run(feeds(xv, pv), ["y"])).y.data as Float32Array, R);
  const out = await bs.run({ ...feeds(x, params), dy: { dtype: "float32", shape: fw.yShape, data: R } });
  const grads: Record<string, Float32Array> = { x: out.dx.data as Float32Array };
  for (const s of bw.paramNames) grads[s] = out[`d.${s}`].data as Float32Array;
  const worst: Record<string, number> = {};
  const h = opts.h ?? 1e-2;
  for (const [name, grad] of Object.entries(grads)) {
    const base = name === "x" ? x : (params[name].data as Float32Array);
    const gnorm = Math.sqrt(dot(grad, grad));
    const dirs: Float32Array[] = [];
    for (let d = 0; d < (opts.directions ?? 3); d++) dirs.push(uni(base.length));
    if (gnorm > 0) dirs.push(Float32Array.from(grad, (v) => v / gnorm)); // along the gradient itself
    let w = 0;
    for (const v of dirs) {
      const shifted = async (sign: number) => {
        const nb = Float32Array.from(base, (b, k) => b + sign * h * v[k]);
        if (name === "x") return L(fs, nb, params);
        return L(fs, x, { ...params, [name]: { ...params[name], data: nb } });
      };
      const numeric = ((await shifted(1)) - (await shifted(-1))) / (2 * h);
      const analytic = dot(grad, v);
      const scale = Math.max(Math.abs(numeric), Math.abs(analytic), 1e-3 * gnorm * Math.sqrt(v.length) * 0 + 1e-6);
      w = Math.max(w, Math.abs(numeric - analytic) / scale);
    }
    worst[name] = w;
  }
  const y = (await fs.run(feeds(x, params), ["y"])).y.data as Float32Array;
  await fs.release();
  await bs.release();
  return { worst, grads, y, dy: R };
}
