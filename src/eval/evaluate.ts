/** Single-scale evaluation of a predictor over a data split. */
import type { Split } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import type { TransformConfig } from "../data/transforms.js";
import { evalBatchSize } from "../graph/memory.js";
import { type EngineOptions, Predictor } from "../predict/predictor.js";
import type { StateDict } from "../tensor.js";
import type { VggModel } from "../zoo/model.js";
import { addBatch, newTally, type Scores, scores, type Tally } from "./metrics.js";

export async function evaluate(
  p: Predictor,
  split: Split,
  transforms: TransformConfig,
  batchSize = evalBatchSize(p.model),
): Promise<Tally> {
  const classes = p.model.options.numClasses;
  const tally = newTally(classes);
  const loader = new BatchLoader(split, { batchSize, shuffle: false, dropLast: false, transforms });
  try {
    for await (const b of loader.epoch(0)) {
      const out = await p.run({ dtype: "float32", shape: [b.n, ...p.model.inputShape], data: b.x });
      addBatch(tally, out.logits.data as Float32Array, b.y, b.n);
    }
  } finally {
    await loader.close();
  }
  return tally;
}

/** Top-1 class per row of [n, K] logits. */
function argmaxRows(logits: Float32Array, n: number, K: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < K; k++) if (logits[i * K + k] > logits[i * K + best]) best = k;
    out[i] = best;
  }
  return out;
}

/**
 * Several predictors of one model (e.g. fp32, fp16, int8) over the same batches: each one's tally, and the share
 * of samples whose top-1 class equals the first predictor's.
 */
export async function evaluateMany(
  ps: Predictor[],
  split: Split,
  transforms: TransformConfig,
  batchSize = evalBatchSize(ps[0].model),
): Promise<{ tallies: Tally[]; agreement: number[] }> {
  const classes = ps[0].model.options.numClasses;
  const tallies = ps.map(() => newTally(classes));
  const same = ps.map(() => 0);
  let n = 0;
  const loader = new BatchLoader(split, { batchSize, shuffle: false, dropLast: false, transforms });
  try {
    for await (const b of loader.epoch(0)) {
      let ref: Int32Array | undefined;
      for (const [i, p] of ps.entries()) {
        const out = await p.run({ dtype: "float32", shape: [b.n, ...p.model.inputShape], data: b.x });
        const logits = out.logits.data as Float32Array;
        addBatch(tallies[i], logits, b.y, b.n);
        const top = argmaxRows(logits, b.n, classes);
        ref ??= top;
        for (let k = 0; k < b.n; k++) if (top[k] === ref[k]) same[i]++;
      }
      n += b.n;
    }
  } finally {
    await loader.close();
  }
  return { tallies, agreement: same.map((s) => s / Math.max(n, 1)) };
}

/** Scores of the weights on a split: a predictor over them, single-crop evaluation, released after. */
export async function evalWeights(
  model: VggModel,
  weights: StateDict,
  split: Split,
  tf: TransformConfig,
  engine: EngineOptions = {},
): Promise<Scores> {
  const p = await Predictor.fromWeights(model, weights, engine);
  try {
    return scores(await evaluate(p, split, tf));
  } finally {
    await p.release();
  }
}
