/**
 * The paper's test protocols (section 3.2). Each one gives, for every test image, class posteriors averaged over
 * its views; multi-scale averages over scales, and dense+multicrop averages the two protocols' posteriors.
 * - single: the image rescaled to Q, centre crop (torchvision's evaluation).
 * - dense: the FC layers as convolutions over the whole image at scale Q (graph/dense.ts), scores averaged
 *   spatially; the flipped image too.
 * - multicrop: a 5x5 grid of crops of the network's input size from the image at scale Q, each also flipped (50).
 * Q is the rescaled image's shorter side in the dataset's own pixels; an image smaller than the network's input
 * is zero-padded (centred), as training pads Fashion-MNIST's 28x28 to 32x32.
 */

import { type Source, type Split, sourceImage } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import { compileTransforms, scaledSize, type TransformConfig } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { buildDenseGraph, denseMinMap } from "../graph/dense.js";
import { evalBatchSize } from "../graph/memory.js";
import { type EngineOptions, Predictor } from "../predict/predictor.js";
import { keyedRng, permutation } from "../random.js";
import { type DeviceChoice, resolveDevice } from "../runtime/device.js";
import { compileSpec, openCompiled } from "../runtime/open-graph.js";
import type { Session } from "../runtime/ort.js";
import type { StateDict } from "../tensor.js";
import type { VggModel } from "../zoo/model.js";
import { addBatch, newTally, type Scores, scores, type Tally } from "./metrics.js";

export const PROTOCOLS = ["single", "dense", "multicrop", "dense+multicrop"] as const;
export type Protocol = (typeof PROTOCOLS)[number];
type View = "single" | "dense" | "multicrop";

export interface ProtocolOptions {
  /** Normalisation and channel replication (no geometry): the evaluation transform's value part. */
  values: Pick<TransformConfig, "mean" | "std" | "channels">;
  /** Native [H, W] of fixed-size data (Q equal to it means no resampling), null for variable-size images. */
  native: [number, number] | null;
  batchSize?: number;
  threads?: number;
  /** Where ORT runs (cpu, webgpu, auto; default cpu). */
  device?: DeviceChoice;
}

export interface ProtocolResult extends Scores {
  protocol: Protocol;
  scales: number[];
  seconds: number;
  /** [n, K] posteriors, in split order. */
  posteriors: Float32Array;
  labels: Int32Array;
  tally: Tally;
  /** Set when the result is less than the protocol's name says (dense over images no larger than the input). */
  note?: string;
}

/** The 5 x 5 crop positions (fractions of the free room) of multi-crop evaluation. */
export const GRID = [0, 0.25, 0.5, 0.75, 1];

/** Parses `--scales 256,384,512` or relative ones (`S-32,S,S+32`, `Smin,Smid,Smax`) given the training scale. */
export function parseScales(spec: string, train: { S: number; Smin: number; Smax: number }): number[] {
  const vars: Record<string, number> = { S: train.S, Smin: train.Smin, Smax: train.Smax, Smid: Math.round((train.Smin + train.Smax) / 2) };
  const out = spec.split(",").map((tok) => {
    const m = /^\s*(?:(\d+)|(Smin|Smax|Smid|S)\s*(?:([+-])\s*(\d+))?)\s*$/.exec(tok);
    if (!m) throw new VggError(`--scales: cannot read '${tok}' (want numbers, or S, Smin, Smid, Smax with an optional +/- offset)`);
    const q = m[1] !== undefined ? Number(m[1]) : vars[m[2]] + (m[3] === "-" ? -1 : 1) * Number(m[4] ?? 0);
    if (!(Number.isInteger(q) && q >= 1)) throw new VggError(`--scales: '${tok}' gives ${q}, not a positive size`);
    return q;
  });
  if (out.length === 0) throw new VggError("--scales: no scales");
  return out;
}

/** A seeded subset of `n` samples (in ascending order), or the split itself. */
export function subsetSplit(split: Split, n: number | undefined, seed = 0): Split {
  if (n === undefined || n >= split.indices.length) return split;
  const perm = permutation(split.indices.length, keyedRng(seed, 0x5eb5e7));
  const pick = Int32Array.from(perm.subarray(0, n), (k) => split.indices[k]).sort();
  return { ...split, indices: pick };
}

/**
 * Whether every test image at every scale in `scales` fits the network's input: then its padded canvas is the input
 * size, so multi-crop cuts the same window 25 times and dense sees a 1x1 score map, and both reduce to the whole
 * image and its mirror (Fashion-MNIST's 28x28 padded to 32 at its native scale). Images of varying size (native
 * null) are not judged: each has its own aspect, and its longer side generally exceeds Q.
 */
export function imageFitsInput(scales: number[], inputSize: number, native: [number, number] | null): boolean {
  if (!native) return false;
  return scales.every((q) => {
    // As geometry() below: Q equal to the native shorter side means no resampling.
    const [h, w] = Math.min(native[0], native[1]) === q ? native : scaledSize(native[0], native[1], q);
    return h <= inputSize && w <= inputSize;
  });
}

/** Test scales that give multi-crop room to move: an eighth, a quarter and three eighths above the input (36,40,44 at 32). */
const largerScales = (inputSize: number) => [1.125, 1.25, 1.375].map((f) => Math.round(inputSize * f)).join(",");

const scaleWords = (scales: number[]) => (scales.length === 1 ? `scale ${scales[0]}` : `scales ${scales.join(",")}`);

/**
 * Multi-crop where its 25 crops are one window would only repeat dense under another name, so it is refused with
 * the way out. `vgg train --test-protocol` reports this message as "not scored", hence the hint names `vgg eval`.
 */
export function checkCropRoom(protocol: Protocol, scales: number[], inputSize: number, native: [number, number] | null): void {
  if (!protocol.includes("multicrop") || !imageFitsInput(scales, inputSize, native)) return;
  throw new VggError(
    `${protocol} at ${scaleWords(scales)}: the image is no larger than the ${inputSize}x${inputSize} crop, so all 25 crops are the same window and multicrop would equal dense; evaluate at scales above ${inputSize}, e.g. vgg eval --scales ${largerScales(inputSize)}`,
  );
}

/** Dense over images that fit the input is still the paper's protocol, only a degenerate case of it: said, not refused. */
export function denseNote(protocol: Protocol, scales: number[], inputSize: number, native: [number, number] | null): string | undefined {
  if (protocol !== "dense" || !imageFitsInput(scales, inputSize, native)) return undefined;
  return `at ${scaleWords(scales)} the image is no larger than the ${inputSize}x${inputSize} input, so dense sees a 1x1 score map: it equals single-crop averaged with the mirror image; for a larger map evaluate at scales above ${inputSize}, e.g. vgg eval --scales ${largerScales(inputSize)}`;
}

function geometry(q: number, inputSize: number, native: [number, number] | null): TransformConfig {
  const g: TransformConfig = { padTo: inputSize };
  if (!native || Math.min(native[0], native[1]) !== q) g.scale = q;
  return g;
}

function viewsOf(kind: View, q: number, inputSize: number, o: ProtocolOptions): TransformConfig[] {
  const base = { ...o.values, ...geometry(q, inputSize, o.native) };
  if (kind === "single") return [{ ...base, crop: inputSize }];
  if (kind === "dense") return [base, { ...base, hflip: true }];
  return GRID.flatMap((fy) =>
    GRID.flatMap((fx) => [false, true].map((hflip) => ({ ...base, crop: inputSize, cropAt: [fy, fx] as [number, number], hflip }))),
  );
}

/** Row-wise softmax of [rows, K] scores, accumulated into out[(r / per), :] / per (the mean over a sample's views). */
function addPosteriors(
  scoresIn: Float32Array,
  rows: number,
  K: number,
  per: number,
  out: Float32Array,
  offset: number,
  weight: number,
): void {
  for (let r = 0; r < rows; r++) {
    const row = scoresIn.subarray(r * K, (r + 1) * K);
    let max = Number.NEGATIVE_INFINITY;
    for (let k = 0; k < K; k++) max = Math.max(max, row[k]);
    let sum = 0;
    for (let k = 0; k < K; k++) sum += Math.exp(row[k] - max);
    const o = offset + Math.floor(r / per) * K;
    for (let k = 0; k < K; k++) out[o + k] += (weight * Math.exp(row[k] - max)) / sum;
  }
}

class Engines {
  private standard: Predictor | null = null;
  private dense: Session | null = null;
  constructor(
    readonly model: VggModel,
    private readonly weights: StateDict,
    private readonly engine: EngineOptions = {},
  ) {}
  async run(kind: View, x: Float32Array, shape: number[]): Promise<Float32Array> {
    const t = { dtype: "float32" as const, shape, data: x };
    if (kind === "dense") {
      const { threads, device } = this.engine;
      this.dense ??= await openCompiled(compileSpec(buildDenseGraph(this.model, this.weights)), {
        threads,
        device: await resolveDevice(device),
      });
      return (await this.dense.run({ input: t })).logits.data as Float32Array;
    }
    this.standard ??= await Predictor.fromWeights(this.model, this.weights, this.engine);
    return (await this.standard.run(t)).logits.data as Float32Array;
  }
  async release(): Promise<void> {
    await this.standard?.release();
    await this.dense?.release();
  }
}

/** Adds the posteriors of one view kind at one scale, times `weight`, into out [n, K]. */
async function accumulate(
  e: Engines,
  kind: View,
  q: number,
  split: Split,
  o: ProtocolOptions,
  out: Float32Array,
  weight: number,
): Promise<void> {
  const m = e.model;
  const K = m.options.numClasses;
  const inputSize = m.inputShape[1];
  const views = viewsOf(kind, q, inputSize, o);
  const V = views.length;
  if (kind === "dense") {
    const minSide = Math.ceil((denseMinMap(m) * m.inputShape[1]) / m.layers.find((l) => l.name === "avgpool")!.inShape[1]);
    if (Math.max(q, inputSize) < minSide) throw new VggError(`dense evaluation needs scale >= ${minSide} for this model, not ${q}`);
  }
  if (kind !== "dense" || o.native) {
    // Fixed-size views: batches from the loader's workers.
    const batchSize = Math.max(1, Math.floor((o.batchSize ?? evalBatchSize(m)) / V));
    const loader = new BatchLoader(split, { batchSize, shuffle: false, views });
    try {
      let at = 0;
      for await (const b of loader.epoch(0)) {
        const s = await e.run(kind, b.x, b.shape);
        addPosteriors(s, b.n * V, K, V, out, at * K, weight / V);
        at += b.n;
      }
    } finally {
      await loader.close();
    }
    return;
  }
  // Variable-size images, dense: one image (and its flip) at a time, at its own size.
  const ts = views.map(compileTransforms);
  for (let k = 0; k < split.indices.length; k++) {
    const img = await sourceImage(split.source as Source, split.indices[k]);
    const [c, h, w] = ts[0].outputShape(img.c, img.h, img.w);
    const x = new Float32Array(V * c * h * w);
    for (const [v, t] of ts.entries()) t.apply(img, keyedRng(0, 0), x, v * c * h * w);
    const s = await e.run(kind, x, [V, c, h, w]);
    addPosteriors(s, V, K, V, out, k * K, weight / V);
  }
}

/** Evaluates one protocol over `scales` on a split. */
export async function evaluateProtocol(
  model: VggModel,
  weights: StateDict,
  split: Split,
  protocol: Protocol,
  scales: number[],
  o: ProtocolOptions,
): Promise<ProtocolResult> {
  if (!PROTOCOLS.includes(protocol)) throw new VggError(`unknown protocol '${protocol}' (known: ${PROTOCOLS.join(", ")})`);
  if (scales.length === 0) throw new VggError("no test scales");
  const inputSize = model.inputShape[1];
  checkCropRoom(protocol, scales, inputSize, o.native);
  const note = denseNote(protocol, scales, inputSize, o.native);
  const t0 = performance.now();
  const K = model.options.numClasses;
  const n = split.indices.length;
  const post = new Float32Array(n * K);
  const kinds: View[] = protocol === "dense+multicrop" ? ["dense", "multicrop"] : [protocol];
  const e = new Engines(model, weights, { threads: o.threads, device: o.device });
  try {
    for (const kind of kinds) for (const q of scales) await accumulate(e, kind, q, split, o, post, 1 / (kinds.length * scales.length));
  } finally {
    await e.release();
  }
  const labels = Int32Array.from(split.indices, (i) => split.source.labels[i]);
  const tally = tallyPosteriors(post, labels, K);
  return {
    protocol,
    scales,
    ...scores(tally),
    seconds: (performance.now() - t0) / 1000,
    posteriors: post,
    labels,
    tally,
    ...(note ? { note } : {}),
  };
}

/** Metrics of averaged posteriors: log-posteriors scored as logits (loss = -log p(true class)). */
export function tallyPosteriors(post: Float32Array, labels: Int32Array, K: number): Tally {
  const t = newTally(K);
  const logp = new Float32Array(post.length);
  for (let k = 0; k < post.length; k++) logp[k] = Math.log(Math.max(post[k], 1e-30));
  addBatch(t, logp, labels, labels.length);
  return t;
}
