/**
 * Perceptual distance as LPIPS computes it (Zhang et al. 2018, richzhang/PerceptualSimilarity, lpips/lpips.py):
 * per layer, each position's channel vector divided by its length (+1e-10), the squared difference of the two
 * images' maps, a weighted sum over channels (LPIPS's learned 1x1 "lin" convs, or all ones: its "baseline"), the
 * mean over positions, and the sum over layers. Images go in at their own size, scaled as LPIPS v0.1 does.
 */

import { basename } from "node:path";
import { lpipsPreprocessing } from "../data/preprocessing.js";
import type { Image } from "../data/transforms.js";
import { VggError } from "../errors.js";
import { Predictor, weightsFor } from "../predict/predictor.js";
import { loadImage } from "../predict/preprocess.js";
import { type StateDict, shapeStr, type Tensor } from "../tensor.js";
import { resolveWeights } from "../weights/hub.js";
import { loadStateDict } from "../weights/index.js";
import type { InitScheme } from "../weights/init.js";
import { matchStateDict } from "../weights/match.js";
import { pretrainedForFile } from "../weights/pretrained.js";
import { checkTaps, trunkAt } from "../zoo/features.js";
import { buildModel, type ModelOptions, type VggModel } from "../zoo/model.js";

/** LPIPS's vgg layers: torchvision vgg16().features after indices 3, 8, 15, 22, 29. */
export const LPIPS_LAYERS = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"];

/** LPIPS's normalize_tensor epsilon, added to the channel vector's length. */
const EPS = 1e-10;

export interface PerceptualDistance {
  distance: number;
  /** Each layer's term, in `layers` order. */
  layers: Record<string, number>;
}

export interface DistanceOptions extends ModelOptions {
  /** Default vgg16, as LPIPS. */
  arch?: string;
  /** A .pth/.safetensors file or a state_dict for the arch; without it the model is initialised (init, seed). */
  weights?: string | StateDict;
  init?: InitScheme;
  seed?: number;
  /** Feature-map taps (default LPIPS_LAYERS). */
  layers?: string[];
  /** LPIPS's lin weights: its .pth (lpips/weights/v0.1/vgg.pth), or one per-channel vector per layer. */
  lpipsWeights?: string | Float32Array[];
  threads?: number;
}

/** Lengths (+EPS) of the channel vectors of a [C, P] map, one per position. */
function channelNorms(x: Float32Array, c: number, p: number): Float64Array {
  const sq = new Float64Array(p);
  for (let k = 0; k < c; k++) {
    const row = x.subarray(k * p, (k + 1) * p);
    for (let i = 0; i < p; i++) sq[i] += row[i] * row[i];
  }
  for (let i = 0; i < p; i++) sq[i] = Math.sqrt(sq[i]) + EPS;
  return sq;
}

/** One layer's LPIPS term for two [C, H, W] maps (flattened to [C, P]); `w` are per-channel weights (default 1). */
export function layerDistance(a: Float32Array, b: Float32Array, c: number, w?: Float32Array): number {
  if (a.length !== b.length || a.length % c !== 0)
    throw new Error(`layerDistance: maps of ${a.length} and ${b.length} values, ${c} channels`);
  const p = a.length / c;
  const na = channelNorms(a, c, p);
  const nb = channelNorms(b, c, p);
  let sum = 0;
  for (let k = 0; k < c; k++) {
    const wk = w ? w[k] : 1;
    const ra = a.subarray(k * p, (k + 1) * p);
    const rb = b.subarray(k * p, (k + 1) * p);
    let s = 0;
    for (let i = 0; i < p; i++) {
      const d = ra[i] / na[i] - rb[i] / nb[i];
      s += d * d;
    }
    sum += wk * s;
  }
  return sum / p;
}

/**
 * The distance between image 0 and image 1 of each layer's [2, C, H, W] output (as one Predictor run of both
 * gives them).
 */
export function distanceOfPair(outputs: Record<string, Tensor>, layers: readonly string[], lin?: Float32Array[]): PerceptualDistance {
  const per: Record<string, number> = {};
  let distance = 0;
  layers.forEach((name, k) => {
    const t = outputs[name];
    if (t?.shape.length !== 4 || t.shape[0] !== 2) throw new Error(`distanceOfPair: '${name}' is not a [2, C, H, W] map`);
    const half = t.data.length / 2;
    const data = t.data as Float32Array;
    per[name] = layerDistance(data.subarray(0, half), data.subarray(half), t.shape[1], lin?.[k]);
    distance += per[name];
  });
  return { distance, layers: per };
}

/** The key of LPIPS's k-th lin layer: NetLinLayer's Sequential(Dropout, Conv2d(C, 1, 1, bias=False)). */
export const lpipsKey = (k: number) => `lin${k}.model.1.weight`;

/**
 * LPIPS's learned channel weights from its .pth (a state_dict with lin0.model.1.weight ..., each [1, C, 1, 1]; other
 * keys are ignored, as LPIPS's own load_state_dict(strict=False) does), checked against each layer's channels.
 */
export function readLpipsWeights(file: string, layers: readonly string[], channels: readonly number[]): Float32Array[] {
  const sd = loadStateDict(file);
  return layers.map((layer, k) => {
    const key = lpipsKey(k);
    const t = sd.get(key);
    const want = [1, channels[k], 1, 1];
    if (!t)
      throw new VggError(`no '${key}' for ${layer} (want LPIPS's lin weights: ${layers.map((_, j) => lpipsKey(j)).join(", ")})`, file);
    if (t.shape.length !== 4 || t.shape.some((d, j) => d !== want[j]))
      throw new VggError(`'${key}' has shape ${shapeStr(t.shape)}; ${layer} has ${channels[k]} channels, want ${shapeStr(want)}`, file);
    if (t.dtype === "float32") return t.data as Float32Array;
    if (t.dtype === "float64") return Float32Array.from(t.data as Float64Array);
    throw new VggError(`'${key}' is ${t.dtype}, want float32`, file);
  });
}

async function decodeSameSize(a: string, b: string): Promise<[Image, Image]> {
  const p = lpipsPreprocessing();
  const [ia, ib] = await Promise.all([loadImage(a, p), loadImage(b, p)]);
  if (ia.h !== ib.h || ia.w !== ib.w)
    throw new VggError(`${a} is ${ia.w}x${ia.h} but ${b} is ${ib.w}x${ib.h}: LPIPS compares images of the same size (resize one first)`);
  return [ia, ib];
}

async function weightsOf(model: VggModel, o: DistanceOptions): Promise<StateDict> {
  if (o.weights instanceof Map) return matchStateDict(model, o.weights);
  if (!o.weights) return weightsFor(model, { init: o.init, seed: o.seed });
  const file = await resolveWeights(o.weights, { arch: model.arch });
  // LPIPS's scaling layer is made for torchvision-normalised weights; others (the caffe-style FEATURES entry) would
  // see inputs about 100x too small.
  const entry = pretrainedForFile(basename(file));
  if (entry && entry.preset !== "torchvision")
    throw new VggError(`${entry.name} expects ${entry.preset} input, and LPIPS's scaling is for torchvision-normalised weights`, file);
  return weightsFor(model, { weights: file });
}

/**
 * LPIPS distance between two image files of the same size, through the conv trunk of `opts.arch` (vgg16) planned
 * at that size (any H x W: no resize, no crop, as LPIPS).
 */
export async function perceptualDistance(a: string, b: string, opts: DistanceOptions = {}): Promise<PerceptualDistance> {
  const layers = opts.layers ?? LPIPS_LAYERS;
  // The full model is what a weights file describes; only its trunk runs, re-planned for the images' size.
  const model = buildModel(opts.arch ?? "vgg16", opts);
  if (model.inputShape[0] !== 3) throw new VggError(`LPIPS compares RGB images; this model takes ${model.inputShape[0]} channels`);
  checkTaps(model, layers, true);
  const [ia, ib] = await decodeSameSize(a, b);
  const trunk = trunkAt(model, layers, ia.h, ia.w);
  const channels = layers.map((t) => trunk.layers.find((l) => l.tap === t)?.outShape[0] ?? 0);
  const lin = typeof opts.lpipsWeights === "string" ? readLpipsWeights(opts.lpipsWeights, layers, channels) : opts.lpipsWeights;
  if (lin && (lin.length !== layers.length || lin.some((w, k) => w.length !== channels[k])))
    throw new VggError(`lpipsWeights: want ${layers.length} vectors of ${channels.join(", ")} channels`);
  const predictor = await Predictor.fromWeights(trunk, await weightsOf(model, opts), { taps: layers, threads: opts.threads });
  try {
    const x = new Float32Array(ia.data.length * 2);
    x.set(ia.data as Float32Array, 0);
    x.set(ib.data as Float32Array, ia.data.length);
    const out = await predictor.run({ dtype: "float32", shape: [2, 3, ia.h, ia.w], data: x });
    return distanceOfPair(out, layers, lin);
  } finally {
    await predictor.release();
  }
}
