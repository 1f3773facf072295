/**
 * `train({ arch: "vgg16", init: "imagenet", numClasses: 5, freeze: "features", data: "folder:photos" })`: the
 * library's one call for a training run, with `vgg train`'s defaults (src/train/config.ts, shared with the CLI).
 */
import { type TrainOptions, trainConfig } from "../train/config.js";
import { train as runTrainer } from "../train/trainer.js";
import type { TrainResult } from "../train/types.js";

export type { TrainOptions } from "../train/config.js";

/** Trains, evaluates on the test split with the best weights, and writes the run directory (`out`). */
export function train(o: TrainOptions, log: (line: string) => void = () => {}): Promise<TrainResult> {
  return runTrainer(trainConfig(o), log);
}
