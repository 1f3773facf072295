/** Single-scale evaluation of a predictor over a data split. */
import type { Split } from "../data/dataset.js";
import { BatchLoader } from "../data/loader.js";
import type { TransformConfig } from "../data/transforms.js";
import type { Predictor } from "../predictor.js";
import { addBatch, newTally, type Tally } from "./metrics.js";

export async function evaluate(p: Predictor, split: Split, transforms: TransformConfig, batchSize = 256): Promise<Tally> {
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
