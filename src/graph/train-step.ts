/**
 * The whole SGD training step as one ONNX graph of standard ops: forward in training mode (batch statistics,
 * dropout), mean softmax cross-entropy, backward (each op kind's gradient lives beside its forward in src/ops),
 * torch.optim.SGD with momentum and weight decay, and PyTorch's BN running-statistics update.
 *
 * Graph inputs:
 *   x      float32 [N, C, H, W]         the batch (N fixed per graph: build a second graph for a last partial batch)
 *   y      int64   [N]                  labels
 *   lr     float32 []                   learning rate of this step
 *   seed   int64   []                   dropout seed of this step (only its low 32 bits count)
 *   <key>  every state_dict entry, torchvision's names (features.0.weight, features.1.running_mean, ...), except
 *          those of a frozen prefix (options.freeze): constant initializers, or inputs without outputs (see below)
 *   <key>.momentum_buffer               one per trainable parameter (when momentum > 0; zeros before the first step)
 * Graph outputs:
 *   loss float32 [], correct1 float32 [], correct5 float32 [] (top-1 / top-5 hits in the batch)
 *   <input>.next for every state input: new parameters, new momentum buffers, new running_mean / running_var,
 *   num_batches_tracked + 1
 *   logits float32 [N, K] when asked for
 * Inside, activations are [C, H, W, N] (see TrainCtx in src/ops/types.ts); the input is transposed once.
 *
 * Fine-tuning (options.freeze = F): layers [0, F) are frozen, as torchvision users freeze with requires_grad=False
 * and .eval(). They run as the inference graph does (ops' `forward`, NCHW, BN on its running statistics, dropout
 * off) and have no backward at all: no input gradient into them, no weight gradients, no SGD, no momentum. Their
 * tensors are constant initializers when options.frozenWeights is given (ORT then prepacks the conv weights and
 * takes its NCHWc path), else plain graph inputs without outputs (TrainStep.frozenInputs). One transpose into the
 * training layout sits at the boundary.
 */

import { VggError } from "../errors.js";
import { GraphBuilder } from "../onnx/builder.js";
import { encodeModel, type ModelSpec } from "../onnx/encode.js";
import { GATHER_MIN_BATCH, nchwToChwn, reshape, TRAIN_OPSET, transpose } from "../ops/emit.js";
import { opOf } from "../ops/index.js";
import { softmaxCrossEntropy } from "../ops/loss.js";
import { emitSgd, emitSgdInputTerms, type ResolvedSgd, resolveSgd, type SgdOptions } from "../ops/sgd.js";
import type { TrainCtx } from "../ops/types.js";
import type { Device } from "../runtime/session.js";
import type { DType, StateDict, Tensor } from "../tensor.js";
import { numel } from "../tensor.js";
import { type Layer, stateSpec, tapNames, type VggModel } from "../zoo/model.js";
import { emitInference, valueName } from "./walk.js";
import { emitWinogradInference, type WinogradChoice } from "./winograd-infer.js";

export interface TrainStepOptions extends SgdOptions {
  /** Batch size of this graph. */
  batchSize: number;
  /** CrossEntropyLoss label_smoothing (default 0). */
  labelSmoothing?: number;
  /** Also output the logits [N, K]. */
  logits?: boolean;
  /**
   * Layer fusions (exact; default true): a conv's bias left out of its GEMM when a BatchNorm follows, and a ReLU
   * applied after the max-pool that follows it. See TrainCtx.fuse.
   */
  fuse?: boolean;
  /**
   * How 3x3 convs are computed: "im2col" (one GEMM over the whole batch per direction), "winograd" (F(2x2, 3x3) for
   * the forward and input gradient and F(3x3, 2x2) for the weight gradient, wherever the map is even), or "auto"
   * (default): each where it measured faster (see chooseConvAlgo).
   */
  convAlgo?: "auto" | "im2col" | "winograd" | "nchw";
  /** With convAlgo "auto": maps of at least this many pixels take the "nchw" path (default NCHW_MIN_PIXELS). */
  nchwMinPixels?: number;
  /**
   * The execution provider the graph is for (default "cpu"). "webgpu" emits the forms ORT's WebGPU provider runs
   * (TrainCtx.device: BN statistics composed, float pool masks) and, with convAlgo "auto", ORT's Conv for every
   * layer (chooseConvAlgo). The "cpu" graph does not depend on this option.
   */
  device?: Device;
  /**
   * Fine-tuning: the number of leading layers frozen (resolveFreeze turns `features` or a tap name into it; default
   * 0). Frozen layers run in inference mode and get no backward, no update and no momentum buffers.
   */
  freeze?: number;
  /**
   * The frozen layers' tensors, baked into the graph as constant initializers (the fast way: see the file comment).
   * Without it they are graph inputs, fed by stepFeeds from the state dict and never output.
   */
  frozenWeights?: StateDict;
  /** The frozen prefix's 3x3 convs by Winograd (graph/winograd-infer.ts; default auto, off on webgpu). */
  winograd?: WinogradChoice;
}

export interface ConvChoice {
  convAlgo: "im2col" | "winograd" | "nchw";
  convWeightGrad: "im2col" | "winograd" | "taps";
}

/**
 * Per-layer choice of the conv algorithms. Measured on this project's 2-core AVX-512 machine, batch 128, a conv's
 * forward (ms, im2col vs Winograd): 64->128 at 16x16 34 vs 27, 128->256 8x8 47 vs 18, 256->256 8x8 56 vs 34,
 * 256->512 4x4 27 vs 14, 512->512 4x4 57 vs 27, 512->512 2x2 16 vs 10, 64->64 32x32 88 vs 67; but 3->64 32x32
 * 4.8 vs 22 (three input channels leave the tile transforms all cost and no GEMM). The Winograd weight gradient
 * wins up to 8x8 maps and loses from 16x16 (see conv.ts).
 * On WebGPU "auto" takes the "nchw" path (ORT's Conv) at every size: the measurements above are MLAS's, and the GPU's
 * Conv needs neither the whole-batch columns nor the Gathers that build them.
 */
export function chooseConvAlgo(
  choice: TrainStepOptions["convAlgo"],
  layer: Layer,
  batch: number,
  nchwMinPixels = NCHW_MIN_PIXELS,
  device: Device = "cpu",
): ConvChoice {
  const im2col: ConvChoice = { convAlgo: "im2col", convWeightGrad: "im2col" };
  if (layer.kind !== "conv") return im2col;
  const a = layer.attrs;
  const [, H, W] = layer.inShape;
  // The tap weight gradient is nine GEMMs [O, HWN] x [HWN, C]: with few input channels they are thin (3->64 at
  // 224x224, batch 8: 143 ms at 10 GFLOP/s), and a small im2col (at most 2^24 floats, as conv.ts keeps) is one GEMM.
  const smallCols = a.inC * a.kernel * a.kernel * H * W * batch <= 2 ** 24;
  const nchw: ConvChoice = { convAlgo: "nchw", convWeightGrad: smallCols && choice !== "nchw" ? "im2col" : "taps" };
  // Below batch 32 the im2col is Pad + Slices + Concat (GATHER_MIN_BATCH): twice its 9x size at once, and slower
  // than ORT's Conv down to 28x28 (vgg11 224x224 batch 16, forward + backward per layer: 1014 vs 1103 ms at
  // 256->512 28x28, 1971 vs 2037 at 512->512 28x28; at 14x14 im2col won, 504 vs 646).
  const large = device === "webgpu" || H * W >= nchwMinPixels || (batch < GATHER_MIN_BATCH && H * W >= 28 * 28);
  if (choice === "nchw" || (choice !== "im2col" && choice !== "winograd" && large)) return nchw;
  if (a.kernel !== 3 || H % 2 !== 0 || W % 2 !== 0 || choice === "im2col") return im2col;
  if (choice === "winograd") return { convAlgo: "winograd", convWeightGrad: "winograd" };
  // Winograd's batched GEMMs are [O, C] x [C, N] per tile: small batches make them small.
  const wino = a.inC >= 32 && batch >= 32;
  return { convAlgo: wino ? "winograd" : "im2col", convWeightGrad: wino && H * W <= 64 ? "winograd" : "im2col" };
}

/**
 * From this many pixels per map up (from 28x28 below batch 32), "auto" takes ORT's own Conv in NCHW (see conv.ts):
 * no whole-batch 9x im2col. vgg16_bn 224x224 batch 8, one step: 23.7 -> 12.1 s, 17.7 -> 6.6 GB peak RSS (with
 * TRAIN_SESSION_OPTIONS); 32x32 graphs are left as they were.
 */
export const NCHW_MIN_PIXELS = 56 * 56;

export interface StateEntry {
  /** Graph input name. */
  input: string;
  /** Graph output holding the value after the step. */
  output: string;
  /** The state_dict key this belongs to. */
  key: string;
  kind: "param" | "momentum" | "buffer";
  dtype: DType;
  shape: number[];
}

export interface TrainStep {
  spec: ModelSpec;
  /** Every state input with its output, in a fixed order (params and buffers in state_dict order, then momenta). */
  state: StateEntry[];
  /** Frozen tensors that are graph inputs (read, never output); empty when they are baked in (frozenWeights). */
  frozenInputs: FrozenInput[];
  batchSize: number;
}

/** A frozen tensor fed as a graph input (its state_dict key is the input's name). */
export interface FrozenInput {
  key: string;
  dtype: DType;
  shape: number[];
}

/**
 * Session options for step graphs: ORT's memory pattern off (arena kept). With the pattern, ORT allocated one planned
 * block per run on top of the arena's regions from the first run: peak RSS, vgg11_bn 32x32 batch 128 1.7 -> 1.0 GB,
 * vgg16_bn 224x224 batch 8 17.7 -> 6.5 GB (with the "nchw" convs), same speed. The arena off as well saved a little
 * more (0.2-0.8 GB) but cost page faults on every large tensor: 1.35x slower steps at 32x32.
 */
export const TRAIN_SESSION_OPTIONS = { memPattern: false } as const;

/**
 * The session options for a step graph: TRAIN_SESSION_OPTIONS, except where a trained conv works on maps of
 * NCHW_MIN_PIXELS or more: there the arena is off and the memory pattern on, so that ORT's working memory is one
 * block per run, freed when the run ends. The arena kept the step's peak for good (its regions double as they are
 * added: 3-4 GB held at vgg16_bn 224x224 batch 8), and arena and pattern both off let malloc's heap creep step after
 * step. Measured there (2 cores, step-runner.ts's in-place state): arena 4.13 GB, pattern 2.73-2.86 GB peak RSS, both
 * 6.8 s a step; both off 3.48 GB after 6 steps and rising, 7.25 s; vgg11 224x224 batch 16: 3.91 vs 2.53-2.55 GB,
 * 6.14 vs 6.2 s. At 32x32 the arena stays: off it cost 10-30% (page faults on every large tensor), and frozen features
 * (vgg16 224, batch 8) ran 2.95 s a step with it, 3.55 without. WebGPU keeps TRAIN_SESSION_OPTIONS.
 */
export function trainSessionOptions(m: VggModel, freeze = 0, device: Device = "cpu"): { memPattern: boolean; memArena?: boolean } {
  if (device !== "cpu") return TRAIN_SESSION_OPTIONS;
  const trained = m.layers.slice(frozenBoundary(m, freeze));
  const large = trained.some((l) => l.kind === "conv" && l.inShape[1] * l.inShape[2] >= NCHW_MIN_PIXELS);
  return large ? { memPattern: true, memArena: false } : TRAIN_SESSION_OPTIONS;
}

export const MOMENTUM_SUFFIX = ".momentum_buffer";
export const NEXT_SUFFIX = ".next";

/** The step graph's state inputs and outputs, without building it (a frozen prefix has none). */
export function trainStepState(m: VggModel, opts: SgdOptions & { freeze?: number } = {}): StateEntry[] {
  const sgd = resolveSgd(opts);
  const frozen = frozenKeys(m, opts.freeze);
  const spec = stateSpec(m).filter((e) => !frozen.has(e.key));
  const out: StateEntry[] = spec.map(({ key, param }) => ({
    input: key,
    output: key + NEXT_SUFFIX,
    key,
    kind: param.trainable ? "param" : "buffer",
    dtype: param.dtype,
    shape: param.shape,
  }));
  if (sgd.momentum > 0) {
    for (const { key, param } of spec) {
      if (!param.trainable) continue;
      const input = key + MOMENTUM_SUFFIX;
      out.push({ input, output: input + NEXT_SUFFIX, key, kind: "momentum", dtype: "float32", shape: param.shape });
    }
  }
  return out;
}

/** The state_dict keys (parameters and buffers) of the first `freeze` layers. */
export function frozenKeys(m: VggModel, freeze = 0): Set<string> {
  return new Set(m.layers.slice(0, freeze).flatMap((l) => l.params.map((p) => `${l.name}.${p.suffix}`)));
}

/**
 * What --freeze accepts, each with the number of leading layers it freezes: `features` (every `features.*` layer),
 * and every tap that leaves a trainable layer after it (the layer with the tap is frozen too).
 */
export function freezeParts(m: VggModel): Map<string, number> {
  const lastTrainable = lastTrainableLayer(m);
  const features = m.layers.findIndex((l) => !l.name.startsWith("features."));
  const out = new Map<string, number>([["features", features < 0 ? m.layers.length : features]]);
  m.layers.forEach((l, idx) => {
    if (l.tap && idx < lastTrainable) out.set(l.tap, idx + 1);
  });
  return out;
}

/** `features` or a tap name (relu4_3, pool5, fc6) as the number of leading layers frozen; a VggError names the valid ones. */
export function resolveFreeze(m: VggModel, part: string): number {
  const parts = freezeParts(m);
  const n = parts.get(part);
  if (n !== undefined) return n;
  const why = tapNames(m).includes(part) ? `freezing '${part}' leaves nothing to train` : `unknown part '${part}'`;
  throw new VggError(`--freeze: ${why} for ${m.arch} (valid: ${[...parts.keys()].join(", ")})`);
}

/** One line for the run's description: what is frozen, what trains (e.g. "frozen: features (26 tensors, ...)"). */
export function freezeSummary(m: VggModel, part: string, freeze: number): string {
  const frozen = frozenKeys(m, freeze);
  const fmt = (n: number) => n.toLocaleString("en-US");
  let frozenParams = 0;
  let trainParams = 0;
  for (const { key, param } of stateSpec(m)) {
    if (!param.trainable) continue;
    if (frozen.has(key)) frozenParams += numel(param.shape);
    else trainParams += numel(param.shape);
  }
  const groups: string[] = [];
  for (const l of m.layers.slice(freeze)) {
    if (!l.params.some((p) => p.trainable)) continue;
    const top = l.name.split(".")[0];
    if (groups.some((gr) => gr === top || gr.startsWith(`${top}.`))) continue;
    groups.push(top === "features" && l.name !== m.layers[0].name ? `${l.name} on` : top);
  }
  const kinds = new Set(m.layers.slice(0, freeze).map((l) => l.kind));
  const evalMode = [kinds.has("batchnorm") ? "batch norm" : "", kinds.has("dropout") ? "dropout" : ""].filter(Boolean);
  const modes = evalMode.length ? `; ${evalMode.join(" and ")} in eval mode` : "";
  return `frozen: ${part} (${frozen.size} tensors, ${fmt(frozenParams)} params${modes}); training: ${groups.join(", ")} (${fmt(trainParams)} params)`;
}

/** Zero momentum buffers (what torch's first step is equivalent to); none for a frozen prefix. */
export function zeroMomentum(m: VggModel, opts: SgdOptions & { freeze?: number } = {}): StateDict {
  const sd: StateDict = new Map();
  for (const e of trainStepState(m, opts)) {
    if (e.kind === "momentum") sd.set(e.input, { dtype: "float32", shape: e.shape, data: new Float32Array(numel(e.shape)) });
  }
  return sd;
}

function isDecayExempt(layer: Layer, suffix: string): boolean {
  return suffix === "bias" || layer.kind === "batchnorm";
}

function isDecayed(sgd: ResolvedSgd, u: { layer: Layer; suffix: string }): boolean {
  return sgd.decayExempt === "none" || !isDecayExempt(u.layer, u.suffix);
}

/**
 * `lr` to the bit, as a value that exists only once the layer's input gradient `dx` does: Where(isnan(dx[0]), lr,
 * lr). The backward reads a layer's weight only on the way to its input gradient (conv, linear, BN's gamma), so an
 * update that takes this `lr` runs after every read of the weight it replaces, in any order ORT picks: the step can
 * then write the new weights into the buffers it was fed (step-runner.ts).
 */
function lrAfterBackward(g: GraphBuilder, lr: string, dx: string): string {
  const first = g.op1("Slice", [reshape(g, dx, [-1]), g.shapeConst([0]), g.shapeConst([1])]);
  return g.op1("Where", [reshape(g, g.op1("IsNaN", [first]), []), lr, lr]);
}

/**
 * The trainable parameters in the order their updates are emitted: the linear layers' first, then the rest in
 * state_dict order. ORT runs the updates in the reverse order (its default order walks back from the graph's outputs,
 * the last emitted first), so each conv's weight gradient and update come as soon as the input gradient reaches it,
 * top down, and the classifier's come last, once the convs' activations are freed: vgg16_bn 224x224 batch 8 had
 * fc6's update (five 392 MB tensors) on top of every saved activation, 3.4 GB of ORT's memory at its peak.
 */
function sgdOrder(m: VggModel, frozen: Set<string>): { param: string; layer: Layer; suffix: string }[] {
  const all = stateSpec(m)
    .filter(({ key, param }) => param.trainable && !frozen.has(key))
    .map(({ key, layer, param }) => ({ param: key, layer, suffix: param.suffix }));
  return [...all.filter((u) => u.layer.kind === "linear"), ...all.filter((u) => u.layer.kind !== "linear")];
}

export function buildTrainStep(m: VggModel, opts: TrainStepOptions): TrainStep {
  const N = opts.batchSize;
  if (!Number.isInteger(N) || N < 1) throw new Error(`batch size must be a positive integer, got ${N}`);
  const F = opts.freeze ?? 0;
  if (!Number.isInteger(F) || F < 0 || F > lastTrainableLayer(m)) throw new Error(`freeze must leave a trainable layer, got ${F}`);
  const sgd = resolveSgd(opts);
  const state = trainStepState(m, { ...sgd, freeze: F });
  const g = new GraphBuilder();
  g.opsets.set("", TRAIN_OPSET);
  const [C, H, W] = m.inputShape;
  const x = g.input("x", "float32", [N, C, H, W]);
  const labels = g.input("y", "int64", [N]);
  const lr = g.input("lr", "float32", []);
  const seed = g.input("seed", "int64", []);
  for (const e of state) g.input(e.input, e.dtype, e.shape);

  const fuse = opts.fuse ?? true;
  const layers = m.layers;
  // Layers [0, B) run in inference mode; [B, L) in training mode, and the backward stops at the first trainable one.
  const B = frozenBoundary(m, F);
  const first = layers.findIndex((l, idx) => idx >= B && l.params.some((p) => p.trainable));
  const ctxs: TrainCtx[] = layers.map((layer, idx) => ({
    g,
    batch: N,
    seed,
    salt: idx,
    device: opts.device,
    ...chooseConvAlgo(opts.convAlgo ?? "auto", layer, N, opts.nchwMinPixels, opts.device),
    param(suffix: string) {
      const key = `${layer.name}.${suffix}`;
      if (!layer.params.some((p) => p.suffix === suffix)) throw new Error(`${layer.name} has no parameter ${suffix}`);
      return key;
    },
  }));
  if (fuse) {
    layers.forEach((layer, idx) => {
      const next = layers[idx + 1];
      // Only pairs inside the training part: a frozen layer's forward is the inference op, which fuses nothing.
      if (idx < B) return;
      if (layer.kind === "conv" && next?.kind === "batchnorm") {
        ctxs[idx].fuse = { ...ctxs[idx].fuse, biasIntoBn: true };
        ctxs[idx + 1].fuse = { ...ctxs[idx + 1].fuse, convBias: `${layer.name}.bias` };
      }
      if (layer.kind === "relu" && next?.kind === "maxpool") {
        ctxs[idx].fuse = { ...ctxs[idx].fuse, reluIntoPool: true };
        ctxs[idx + 1].fuse = { ...ctxs[idx + 1].fuse, reluBefore: true };
      }
    });
  }

  // Forward.
  const frozenInputs: FrozenInput[] = [];
  const winograd = opts.winograd ?? (opts.device === "webgpu" ? "off" : "auto");
  let h = B > 0 ? frozenForward(g, m, B, N, x, opts.frozenWeights, frozenInputs, winograd) : transpose(g, x, [1, 2, 3, 0], "x_chwn");
  const saved: Record<string, string>[] = [];
  const newState = new Map<string, string>();
  layers.forEach((layer, idx) => {
    if (idx < B) {
      saved.push({});
      return;
    }
    const r = opOf(layer.kind).trainForward(ctxs[idx], layer.attrs, h, layer.inShape, valueName(layer));
    saved.push(r.saved);
    for (const [suffix, v] of Object.entries(r.state ?? {})) newState.set(`${layer.name}.${suffix}`, v);
    h = r.y;
  });
  const last = layers[layers.length - 1];
  if (last.outShape.length !== 1) throw new Error("the model must end in a vector of class scores");
  const K = last.outShape[0];
  const loss = softmaxCrossEntropy(g, h, labels, K, N, opts.labelSmoothing ?? 0);

  // The updates' products of inputs alone first (see emitSgdInputTerms), in the order the updates are emitted.
  const updates = sgdOrder(m, frozenKeys(m, F)).map((u) => {
    const v = { ...u, buf: sgd.momentum > 0 ? u.param + MOMENTUM_SUFFIX : undefined, decay: isDecayed(sgd, u) };
    return { ...v, terms: emitSgdInputTerms(g, sgd, v) };
  });

  // Backward.
  const grads = new Map<string, string>();
  const lrAfter = new Map<string, string>();
  let dy = loss.dlogits;
  for (let idx = layers.length - 1; idx >= first; idx--) {
    const layer = layers[idx];
    const name = layer.name.replace(/\./g, "_");
    const r = opOf(layer.kind).backward(ctxs[idx], layer.attrs, {
      saved: saved[idx],
      dy,
      inShape: layer.inShape,
      name,
      needDx: idx > first,
    });
    for (const [suffix, v] of Object.entries(r.grads)) grads.set(`${layer.name}.${suffix}`, v);
    if (idx > first) {
      if (!r.dx) throw new Error(`${layer.name}: backward gave no input gradient`);
      dy = r.dx;
      if (layer.params.length && opts.device !== "webgpu") lrAfter.set(layer.name, lrAfterBackward(g, lr, r.dx));
    }
  }

  // SGD and outputs.
  g.output(loss.loss, "loss", "float32", []);
  g.output(loss.correct1, "correct1", "float32", []);
  g.output(loss.correct5, "correct5", "float32", []);
  if (opts.logits) g.output(transpose(g, h, [1, 0]), "logits", "float32", [N, K]);
  const momentumOut = new Map<string, string>();
  for (const { param: key, layer, buf, decay, terms } of updates) {
    const grad = grads.get(key);
    if (!grad) throw new Error(`no gradient for ${key}`);
    const name = key.replace(/\./g, "_");
    const lrL = lrAfter.get(layer.name) ?? lr;
    // Named as the graph outputs, so no Identity copies them there.
    const out = { outParam: key + NEXT_SUFFIX, outBuf: buf && buf + NEXT_SUFFIX };
    const r = emitSgd(g, sgd, { param: key, grad, buf, lr: lrL, decay, name, ...out }, terms);
    newState.set(key, r.param);
    if (r.buf) momentumOut.set(key + MOMENTUM_SUFFIX, r.buf);
  }
  for (const e of state) {
    const v = e.kind === "momentum" ? momentumOut.get(e.input) : newState.get(e.input);
    if (!v) throw new Error(`no new value for ${e.input}`);
    g.output(v, e.output, e.dtype, e.shape);
  }
  const train = JSON.stringify({ ...sgd, batchSize: N, ...(F > 0 ? { freeze: F } : {}) });
  return { spec: g.spec({ arch: m.arch, options: JSON.stringify(m.options), train }), state, frozenInputs, batchSize: N };
}

function lastTrainableLayer(m: VggModel): number {
  return m.layers.reduce((last, l, idx) => (l.params.some((p) => p.trainable) ? idx : last), -1);
}

/**
 * Where the inference-mode part ends: after the frozen prefix, and after the parameter-free layers that follow it up
 * to the first trainable one (ReLU, max-pool, average pool, flatten, LRN: the same in either mode, and with nothing to
 * learn before them they need no backward). Dropout is not among them: after the frozen prefix it is in training mode.
 */
export function frozenBoundary(m: VggModel, freeze: number): number {
  let b = freeze;
  if (b === 0) return 0;
  while (b < m.layers.length && m.layers[b].params.length === 0 && m.layers[b].kind !== "dropout") b++;
  return b;
}

/**
 * The first `b` layers in inference mode (NCHW, as graph/infer.ts emits them), from the [N, C, H, W] input; returns
 * the output in the training layout ([C, H, W, N] or [F, N]). Frozen tensors become constant initializers from
 * `weights`, or graph inputs recorded in `inputs`.
 */
export function frozenForward(
  g: GraphBuilder,
  m: VggModel,
  b: number,
  N: number,
  x: string,
  weights: StateDict | undefined,
  inputs: FrozenInput[],
  winograd: WinogradChoice = "off",
): string {
  const values = new Map<string, string>();
  const param = (layer: Layer, suffix: string) => {
    const key = `${layer.name}.${suffix}`;
    const spec = layer.params.find((p) => p.suffix === suffix);
    if (!spec) throw new Error(`${layer.name} has no parameter ${suffix}`);
    let v = values.get(key);
    if (v) return v;
    if (weights) {
      const t = weights.get(key);
      if (!t) throw new VggError(`weights lack '${key}'`);
      v = g.initializer(key, t);
    } else {
      v = g.input(key, spec.dtype, spec.shape);
      inputs.push({ key, dtype: spec.dtype, shape: spec.shape });
    }
    values.set(key, v);
    return v;
  };
  // The frozen prefix is inference: Winograd where it measured faster (graph/winograd-infer.ts), as in a session.
  const layers = m.layers.slice(0, b);
  const h =
    winograd === "off"
      ? emitInference(g, layers, x, param)
      : emitWinogradInference(g, layers, x, param, { choice: winograd, taps: new Set() });
  const out = m.layers[b - 1].outShape;
  if (out.length === 3) return nchwToChwn(g, h, out[0], out[1], out[2], N, "frozen_to_chwn");
  return transpose(g, h, [1, 0], "frozen_to_fn");
}

export function encodeTrainStep(
  m: VggModel,
  opts: TrainStepOptions,
): { bytes: Uint8Array; state: StateEntry[]; frozenInputs: FrozenInput[] } {
  const s = buildTrainStep(m, opts);
  return { bytes: encodeModel(s.spec), state: s.state, frozenInputs: s.frozenInputs };
}

/**
 * The feeds of one step: weights and buffers from `sd` (frozen ones too, when they are inputs), momentum buffers from
 * `momentum` (zeros if absent).
 */
export function stepFeeds(
  step: { state: StateEntry[]; frozenInputs?: FrozenInput[] },
  sd: StateDict,
  momentum: StateDict | undefined,
  batch: { x: Tensor; y: Tensor; lr: number; seed: number | bigint },
): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {
    x: batch.x,
    y: batch.y,
    lr: { dtype: "float32", shape: [], data: Float32Array.of(batch.lr) },
    seed: { dtype: "int64", shape: [], data: BigInt64Array.of(BigInt(batch.seed)) },
  };
  for (const e of step.state) {
    const t = e.kind === "momentum" ? momentum?.get(e.input) : sd.get(e.input);
    feeds[e.input] = t ?? { dtype: "float32", shape: e.shape, data: new Float32Array(numel(e.shape)) };
    if (!t && e.kind !== "momentum") throw new Error(`state lacks ${e.input}`);
  }
  for (const f of step.frozenInputs ?? []) {
    const t = sd.get(f.key);
    if (!t) throw new Error(`state lacks ${f.key}`);
    feeds[f.key] = t;
  }
  return feeds;
}
