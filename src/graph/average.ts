/**
 * The graphs of weight averaging (`vgg train --ema`, `--swa-start`), so that ONNX Runtime does its arithmetic as it
 * does the step's:
 * - buildAverageGraph: out = a * avg + b * w over a set of tensors, a and b runtime scalars. One form serves the
 *   three averages: the EMA (decay, 1 - decay), SWA's running mean (n / (n + 1), 1 / (n + 1)) and update_bn's
 *   cumulative average of batch statistics ((k - 1) / k, 1 / k).
 * - buildBnStatsGraph: the batch statistics of every BN layer over one batch, the model in training mode and no
 *   backward: what torch.optim.swa_utils.update_bn gathers with its forward passes.
 */

import { GraphBuilder } from "../onnx/builder.js";
import type { ModelSpec } from "../onnx/encode.js";
import { TRAIN_OPSET, transpose } from "../ops/emit.js";
import { opOf } from "../ops/index.js";
import type { TrainCtx } from "../ops/types.js";
import type { Layer, VggModel } from "../zoo/model.js";
import { chooseConvAlgo, type FrozenInput, frozenBoundary, frozenForward, NEXT_SUFFIX } from "./train-step.js";
import { valueName } from "./walk.js";

/** The average's input name beside the weight's own (`<key>`); its output is `<key>.avg.next`. */
export const AVG_SUFFIX = ".avg";

export interface AveragedEntry {
  key: string;
  shape: number[];
}

/**
 * out = a * avg + b * w for each entry. Written as torch writes the EMA (`decay * avg + (1 - decay) * w`, in
 * AveragedModel's EMA avg_fn and timm's ModelEmaV2) and the BN update (`(1 - m) * old + m * batch`), so those agree
 * to the bit. Inputs: a, b float32 []; `<key>` the weights now; `<key>.avg` the average so far.
 */
export function buildAverageGraph(entries: AveragedEntry[]): ModelSpec {
  const g = new GraphBuilder();
  const a = g.input("a", "float32", []);
  const b = g.input("b", "float32", []);
  for (const { key, shape } of entries) {
    const w = g.input(key, "float32", shape);
    const avg = g.input(key + AVG_SUFFIX, "float32", shape);
    const out = key + AVG_SUFFIX + NEXT_SUFFIX;
    // Named as the graph output, so no Identity copies it there.
    g.op("Add", [g.op1("Mul", [avg, a]), g.op1("Mul", [w, b])], undefined, { outputs: [out] });
    g.output(out, out, "float32", shape);
  }
  return g.spec({ purpose: "weight average" });
}

export interface BnStatsGraph {
  spec: ModelSpec;
  /** The state_dict keys fed as inputs besides `x` (weights and buffers the forward reads). */
  inputs: string[];
  /** Per BN buffer (`<bn>.running_mean`, `<bn>.running_var`): the output holding its batch statistic. */
  stats: { key: string; output: string }[];
}

/**
 * The batch mean and unbiased batch variance of every BN layer that trains, over one batch of `batchSize` images
 * (input `x`, NCHW), as torch's BN in training mode feeds its running statistics; null when no BN layer trains.
 * The layers are the step graph's training forward (ops' trainForward, unfused so a conv's bias reaches the BN's
 * mean), up to the last BN; each BN's running statistics take momentum 1, so its "running" outputs are the batch's
 * own. A frozen prefix (`freeze`) runs in inference mode as in the step: its BN layers keep their statistics.
 */
export function buildBnStatsGraph(m: VggModel, opts: { batchSize: number; freeze?: number }): BnStatsGraph | null {
  const N = opts.batchSize;
  const B = frozenBoundary(m, opts.freeze ?? 0);
  const last = m.layers.reduce((at, l, idx) => (idx >= B && l.kind === "batchnorm" ? idx : at), -1);
  if (last < 0) return null;
  const g = new GraphBuilder();
  g.opsets.set("", TRAIN_OPSET);
  const [C, H, W] = m.inputShape;
  const x = g.input("x", "float32", [N, C, H, W]);
  const frozen: FrozenInput[] = [];
  let h = B > 0 ? frozenForward(g, m, B, N, x, undefined, frozen) : transpose(g, x, [1, 2, 3, 0], "x_chwn");
  const inputs = frozen.map((f) => f.key);
  // No dropout precedes a BN in VGG; should one, it draws its training-mode mask from this fixed seed.
  const seed = g.constant("int64", [], [0]);
  const stats: BnStatsGraph["stats"] = [];
  for (let idx = B; idx <= last; idx++) {
    const layer = momentumOne(m.layers[idx]);
    const r = opOf(layer.kind).trainForward(statsCtx(g, layer, idx, N, seed, inputs), layer.attrs, h, layer.inShape, valueName(layer));
    h = r.y;
    if (layer.kind !== "batchnorm") continue;
    for (const suffix of ["running_mean", "running_var"]) {
      const key = `${layer.name}.${suffix}`;
      const output = key + NEXT_SUFFIX;
      g.output(r.state?.[suffix] as string, output, "float32", [layer.attrs.channels]);
      stats.push({ key, output });
    }
  }
  const spec = pruneUnused(g.spec({ purpose: "BN statistics" }));
  const used = new Set(spec.inputs.map((i) => i.name));
  return { spec, inputs: inputs.filter((k) => used.has(k)), stats };
}

/** A BN layer whose running statistics become the batch's own ((1 - 1) * old + 1 * batch); other layers as they are. */
function momentumOne(layer: Layer): Layer {
  return layer.kind === "batchnorm" ? { ...layer, attrs: { ...layer.attrs, momentum: 1 } } : layer;
}

/** A training context whose parameters become graph inputs named by their state_dict keys, recorded in `inputs`. */
function statsCtx(g: GraphBuilder, layer: Layer, idx: number, N: number, seed: string, inputs: string[]): TrainCtx {
  return {
    g,
    batch: N,
    seed,
    salt: idx,
    ...chooseConvAlgo("auto", layer, N),
    param(suffix: string) {
      const p = layer.params.find((q) => q.suffix === suffix);
      if (!p) throw new Error(`${layer.name} has no parameter ${suffix}`);
      const key = `${layer.name}.${suffix}`;
      if (!inputs.includes(key)) {
        g.input(key, p.dtype, p.shape);
        inputs.push(key);
      }
      return key;
    },
  };
}

/**
 * The nodes the outputs need, and the inputs and initializers those read: a training forward also emits what only
 * its backward would use (masks, saved maps, BN's step counter), and ORT wants every declared input fed.
 */
function pruneUnused(spec: ModelSpec): ModelSpec {
  const need = new Set(spec.outputs.map((o) => o.name));
  const nodes: ModelSpec["nodes"] = [];
  // The builder emits nodes in topological order: one backward pass finds everything the outputs depend on.
  for (let k = spec.nodes.length - 1; k >= 0; k--) {
    const n = spec.nodes[k];
    if (!n.outputs.some((o) => need.has(o))) continue;
    nodes.push(n);
    for (const i of n.inputs) if (i) need.add(i);
  }
  nodes.reverse();
  return {
    ...spec,
    nodes,
    inputs: spec.inputs.filter((i) => need.has(i.name)),
    initializers: spec.initializers.filter((i) => need.has(i.name)),
  };
}
