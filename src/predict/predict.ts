/**
 * Classifying image files: decode, preprocess, batch, run, soft-max, top-k. Files that do not decode are
 * reported through `onSkip` and left out; the rest still run.
 */

import type { Preprocessing } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { numel, type Tensor } from "../tensor.js";
import { DecodePool } from "./decode-pool.js";
import type { Skipped } from "./inputs.js";
import type { Predictor } from "./predictor.js";
import { loadImage } from "./preprocess.js";
import { type ClassScore, softmax, topK } from "./topk.js";

export interface Prediction {
  file: string;
  top: ClassScore[];
  /** The preprocessed input, [C, H, W] float32. */
  input: Float32Array;
  /** The predictor's outputs for this image (logits and any taps), batch dimension dropped. */
  outputs: Record<string, Tensor>;
}

export interface PredictOptions {
  preprocessing: Preprocessing;
  /** Class names, index order (default: the indices). */
  labels?: readonly string[];
  /** Classes per image (default 5). */
  top?: number;
  /** Images per engine run (default 8). */
  batchSize?: number;
  /** Decode threads (default 1 when there is more than one batch; 0 decodes on the calling thread). */
  workers?: number;
  onSkip?: (s: Skipped) => void;
}

function sliceOf(t: Tensor, i: number): Tensor {
  const per = numel(t.shape.slice(1));
  return { dtype: t.dtype, shape: t.shape.slice(1), data: (t.data as Float32Array).subarray(i * per, (i + 1) * per) };
}

/** What `runImageBatches` needs: the decoding, and the batching of `PredictOptions`. */
export type BatchOptions = Pick<PredictOptions, "preprocessing" | "batchSize" | "workers" | "onSkip">;

/** One engine run over a chunk of images: the files that decoded, their inputs [n, C, H, W] and the outputs. */
export interface ImageBatch {
  files: string[];
  /** The preprocessed inputs, n x C x H x W float32, in `files` order. */
  x: Float32Array;
  outputs: Record<string, Tensor>;
  /** Files of the chunk done so far, read or skipped (for progress). */
  done: number;
}

/**
 * Runs the predictor over `files` a chunk at a time, yielding each chunk's outputs in order. Files that do not
 * decode are reported through `onSkip` and left out of their chunk; a chunk with none left yields nothing.
 */
export async function* runImageBatches(predictor: Predictor, files: readonly string[], opts: BatchOptions): AsyncGenerator<ImageBatch> {
  const batchSize = opts.batchSize ?? 8;
  const shape = predictor.model.inputShape;
  const per = numel(shape);
  const nWorkers = opts.workers ?? (files.length > batchSize ? 1 : 0);
  const pool = nWorkers > 0 ? await DecodePool.create(nWorkers) : null;
  const load = (file: string) => (pool ? pool.decode(file, opts.preprocessing) : loadImage(file, opts.preprocessing));
  const decodeChunk = (b: number) =>
    Promise.all(
      files.slice(b, b + batchSize).map(async (file) => {
        try {
          return { file, img: await load(file) };
        } catch (err) {
          if (!(err instanceof VggError)) throw err;
          const prefix = `${file}: `;
          opts.onSkip?.({ file, reason: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message });
          return null;
        }
      }),
    );
  // One chunk decodes ahead in the pool's thread while the engine runs this chunk, so both cores stay busy, and
  // memory holds at most two chunks whatever the number of files.
  let ahead: ReturnType<typeof decodeChunk> | null = files.length > 0 ? decodeChunk(0) : null;
  try {
    for (let b = 0; ahead; b += batchSize) {
      const decoded = await ahead;
      ahead = b + batchSize < files.length ? decodeChunk(b + batchSize) : null;
      // If the consumer stops early, the chunk decoding ahead must not become an unhandled rejection.
      ahead?.catch(() => {});
      const ok = decoded.filter((d) => d !== null);
      if (ok.length === 0) continue;
      const x = new Float32Array(ok.length * per);
      ok.forEach((d, i) => {
        if (d.img.data.length !== per) {
          throw new VggError(
            `preprocessing '${opts.preprocessing.name}' gives [${d.img.c}, ${d.img.h}, ${d.img.w}], the model takes [${shape.join(", ")}]`,
          );
        }
        x.set(d.img.data as Float32Array, i * per);
      });
      const outputs = await predictor.run({ dtype: "float32", shape: [ok.length, ...shape], data: x });
      yield { files: ok.map((d) => d.file), x, outputs, done: Math.min(b + batchSize, files.length) };
    }
  } finally {
    await pool?.close();
  }
}

/** Runs the predictor over `files`, yielding one prediction per readable image, in order. */
export async function* predictFiles(predictor: Predictor, files: readonly string[], opts: PredictOptions): AsyncGenerator<Prediction> {
  const k = opts.top ?? 5;
  if (!predictor.taps.includes("logits")) throw new VggError("the predictor must output 'logits'");
  const per = numel(predictor.model.inputShape);
  for await (const batch of runImageBatches(predictor, files, opts)) {
    for (let i = 0; i < batch.files.length; i++) {
      const outputs: Record<string, Tensor> = {};
      for (const [name, t] of Object.entries(batch.outputs)) outputs[name] = sliceOf(t, i);
      const probs = softmax(outputs.logits.data as Float32Array);
      yield { file: batch.files[i], top: topK(probs, k, opts.labels), input: batch.x.subarray(i * per, (i + 1) * per), outputs };
    }
  }
}
