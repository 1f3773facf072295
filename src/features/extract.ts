/**
 * Features at named taps for many inputs (embeddings, style and content targets): image files through the same
 * decode-and-batch loop as prediction, or one float32 NCHW .npy already preprocessed; each tap optionally pooled
 * over its positions to one vector per image.
 */

import { type Preprocessing, presetPreprocessing } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { readNpy } from "../io/npy.js";
import { expandInputs, type Skipped } from "../predict/inputs.js";
import { runImageBatches } from "../predict/predict.js";
import type { Predictor } from "../predict/predictor.js";
import { numel, shapeStr, type Tensor } from "../tensor.js";

export const FEATURE_POOLS = ["avg", "max", "none"] as const;
export type FeaturePool = (typeof FEATURE_POOLS)[number];

/** Image arguments (files, directories, glob patterns), one .npy path, or a preprocessed float32 NCHW tensor. */
export type FeatureInputs = readonly string[] | Tensor;

export interface ExtractOptions {
  /** Taps to keep (default: every tap the predictor outputs); each must be one of the predictor's. */
  taps?: string[];
  /** "avg"/"max": one value per channel (global pooling over H x W); "none": the maps as they are (default). */
  pool?: FeaturePool;
  /** Images per engine run (default 8). */
  batchSize?: number;
  /** For image files (default: torchvision's at the model's input size). */
  preprocessing?: Preprocessing;
  /** Decode threads (as predictFiles). */
  workers?: number;
  /** Inputs done so far (read or skipped) out of all of them, after each engine run. */
  onProgress?: (done: number, total: number) => void;
  /** How the rows of a Tensor input are named in `files`: `NAME[i]` (default "input"). */
  inputName?: string;
  /** An argument or file that could not be used, as soon as it is known. */
  onSkip?: (s: Skipped) => void;
}

export interface ExtractedFeatures {
  /** One name per row of every tensor: the image file, or `x.npy[i]` for row i of a .npy input. */
  files: string[];
  /** Per tap: [N, C] when pooled (vector taps stay [N, F]), else [N, C, H, W]. */
  features: Record<string, Tensor>;
  skipped: Skipped[];
}

/** Is this argument list one .npy tensor rather than images? A .npy among images is refused, not skipped. */
export function isNpyInput(inputs: readonly string[]): boolean {
  const npy = inputs.filter((f) => f.toLowerCase().endsWith(".npy"));
  if (npy.length > 0 && inputs.length > 1)
    throw new VggError("a .npy input is a whole batch: give it alone, not with other inputs", npy[0]);
  return npy.length === 1;
}

/** A per-sample [C, H, W] map (or [F] vector) reduced over its positions; vectors are kept. */
function pooledShape(shape: number[], pool: FeaturePool): number[] {
  return pool === "none" || shape.length !== 3 ? shape : [shape[0]];
}

/** Global avg/max pooling of an [n, C, H, W] batch to [n, C]. */
export function poolMaps(t: Tensor, pool: FeaturePool): Tensor {
  if (pool === "none" || t.shape.length !== 4) return t;
  const [n, c, h, w] = t.shape;
  const hw = h * w;
  const src = t.data as Float32Array;
  const out = new Float32Array(n * c);
  for (let k = 0; k < n * c; k++) {
    const plane = src.subarray(k * hw, (k + 1) * hw);
    let acc = pool === "max" ? -Infinity : 0;
    if (pool === "max") for (const v of plane) acc = Math.max(v, acc);
    else for (const v of plane) acc += v;
    out[k] = pool === "max" ? acc : acc / hw;
  }
  return { dtype: "float32", shape: [n, c], data: out };
}

/** Collects each run's outputs per tap, pooled, and joins them into one tensor per tap at the end. */
class Collector {
  private readonly chunks = new Map<string, Float32Array[]>();
  readonly files: string[] = [];

  constructor(
    private readonly shapes: Map<string, number[]>,
    private readonly pool: FeaturePool,
  ) {
    for (const t of shapes.keys()) this.chunks.set(t, []);
  }

  add(files: string[], outputs: Record<string, Tensor>): void {
    this.files.push(...files);
    for (const [tap, chunks] of this.chunks) chunks.push(poolMaps(outputs[tap], this.pool).data as Float32Array);
  }

  result(): Record<string, Tensor> {
    const out: Record<string, Tensor> = {};
    for (const [tap, chunks] of this.chunks) {
      const shape = [this.files.length, ...pooledShape(this.shapes.get(tap) as number[], this.pool)];
      const data = new Float32Array(numel(shape));
      let at = 0;
      for (const c of chunks) {
        data.set(c, at);
        at += c.length;
      }
      out[tap] = { dtype: "float32", shape, data };
    }
    return out;
  }
}

function tapShapes(predictor: Predictor, taps: readonly string[]): Map<string, number[]> {
  const shapes = new Map<string, number[]>();
  for (const t of taps) {
    if (!predictor.taps.includes(t))
      throw new VggError(`the predictor does not output '${t}' (it outputs ${predictor.taps.join(", ")}; create it with taps: ['${t}'])`);
    shapes.set(t, predictor.model.layers.find((l) => l.tap === t)?.outShape ?? []);
  }
  return shapes;
}

/** A preprocessed batch, run `batchSize` rows at a time; rows are named `name[i]`. */
async function fromTensor(predictor: Predictor, x: Tensor, name: string, into: Collector, o: ExtractOptions, file?: string): Promise<void> {
  if (x.dtype !== "float32") throw new VggError(`want float32 (preprocessed NCHW), got ${x.dtype}`, file);
  if (x.shape.length !== 4) throw new VggError(`want a float32 NCHW array, got shape ${shapeStr(x.shape)}`, file);
  const [n, ...chw] = x.shape;
  const per = numel(chw);
  const batch = o.batchSize ?? 8;
  for (let b = 0; b < n; b += batch) {
    const m = Math.min(batch, n - b);
    const part: Tensor = { dtype: "float32", shape: [m, ...chw], data: (x.data as Float32Array).subarray(b * per, (b + m) * per) };
    const names = Array.from({ length: m }, (_, i) => `${name}[${b + i}]`);
    into.add(names, await predictor.run(part, file));
    o.onProgress?.(b + m, n);
  }
}

async function fromImages(predictor: Predictor, args: readonly string[], into: Collector, o: ExtractOptions): Promise<Skipped[]> {
  const { files, skipped } = expandInputs(args);
  for (const s of skipped) o.onSkip?.(s);
  const onSkip = (s: Skipped) => {
    skipped.push(s);
    o.onSkip?.(s);
  };
  const [, size] = predictor.model.inputShape;
  const preprocessing = o.preprocessing ?? presetPreprocessing("torchvision", size);
  const batches = runImageBatches(predictor, files, { preprocessing, batchSize: o.batchSize, workers: o.workers, onSkip });
  for await (const batch of batches) {
    into.add(batch.files, batch.outputs);
    o.onProgress?.(batch.done, files.length);
  }
  return skipped;
}

/**
 * Features of `inputs` at the predictor's taps: image arguments (files, directories, glob patterns; unreadable ones
 * are skipped and listed), or a single .npy path / a float32 NCHW tensor already preprocessed for the model.
 */
export async function extractFeatures(predictor: Predictor, inputs: FeatureInputs, opts: ExtractOptions = {}): Promise<ExtractedFeatures> {
  const pool = opts.pool ?? "none";
  if (!FEATURE_POOLS.includes(pool)) throw new VggError(`unknown pooling '${pool}' (known: ${FEATURE_POOLS.join(", ")})`);
  const into = new Collector(tapShapes(predictor, opts.taps ?? predictor.taps), pool);
  let skipped: Skipped[] = [];
  if (!Array.isArray(inputs)) {
    await fromTensor(predictor, inputs as Tensor, opts.inputName ?? "input", into, opts, opts.inputName);
  } else if (isNpyInput(inputs)) {
    await fromTensor(predictor, readNpy(inputs[0]), inputs[0], into, opts, inputs[0]);
  } else {
    skipped = await fromImages(predictor, inputs, into, opts);
  }
  return { files: into.files, features: into.result(), skipped };
}

/**
 * The class-free form: `taps` of `inputs` as one tensor per tap. `source` is a Predictor that outputs those taps,
 * or a factory given the taps (its predictor is released before this returns).
 */
export async function features(
  source: Predictor | ((taps: string[]) => Promise<Predictor>),
  inputs: FeatureInputs,
  taps: string[],
  opts: Omit<ExtractOptions, "taps"> = {},
): Promise<Record<string, Tensor>> {
  const owned = typeof source === "function";
  const predictor = owned ? await source(taps) : source;
  try {
    return (await extractFeatures(predictor, inputs, { ...opts, taps })).features;
  } finally {
    if (owned) await predictor.release();
  }
}
