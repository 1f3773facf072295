/**
 * Training throughput of the whole step graph: full steps (forward, backward, SGD update, BN statistics) on a
 * fixed random batch, with each step's outputs fed back as the next step's weights. Data loading is excluded.
 */
import { encodeTrainStep, trainSessionOptions } from "../graph/train-step.js";
import type { SgdOptions } from "../ops/sgd.js";
import { Xoshiro128 } from "../random.js";
import { type Device, type DeviceChoice, resolveDevice } from "../runtime/device.js";
import { createSession } from "../runtime/ort.js";
import { numel, type StateDict } from "../tensor.js";
import { initWeights } from "../weights/init.js";
import { buildModel, type ModelOptions, macCount } from "../zoo/model.js";
import { runTrainStep } from "./step-runner.js";

export interface TrainBenchOptions extends SgdOptions {
  arch: string;
  model: ModelOptions;
  batch: number;
  steps: number;
  warmup: number;
  threads?: number;
  /** Where ORT runs the steps: cpu (default), webgpu, or auto (webgpu when an adapter exists). */
  device?: DeviceChoice;
  profilePrefix?: string;
}

export interface TrainBenchResult {
  arch: string;
  device: Device;
  batch: number;
  inputSize: number;
  imagesPerSecond: number;
  msPerStep: number;
  bestImagesPerSecond: number;
  /** Forward + backward is about 3x the forward's multiply-adds. */
  gflops: number;
  buildMs: number;
  peakRssMB: number;
}

export async function benchTrain(o: TrainBenchOptions): Promise<TrainBenchResult> {
  const m = buildModel(o.arch, o.model);
  const device = await resolveDevice(o.device);
  const t0 = performance.now();
  const step = encodeTrainStep(m, { ...o, batchSize: o.batch, device });
  const session = await createSession(step.bytes, {
    ...trainSessionOptions(m, 0, device),
    threads: o.threads,
    profilePrefix: o.profilePrefix,
    device,
  });
  const buildMs = performance.now() - t0;
  // The steps' state: each step puts the new weights and momentum in these maps.
  const weights: StateDict = initWeights(m, "torchvision", 0);
  const momentum: StateDict = new Map();
  const rng = new Xoshiro128(1);
  const xs = [o.batch, ...m.inputShape];
  const x = { dtype: "float32" as const, shape: xs, data: new Float32Array(numel(xs)).map(() => rng.normal()) };
  const y = {
    dtype: "int64" as const,
    shape: [o.batch],
    data: BigInt64Array.from({ length: o.batch }, (_, k) => BigInt(k % m.options.numClasses)),
  };
  const times: number[] = [];
  try {
    for (let k = 0; k < o.warmup + o.steps; k++) {
      const t = performance.now();
      await runTrainStep(session, step, weights, momentum, { x, y, lr: 0.01, seed: k }, device !== "webgpu");
      if (k >= o.warmup) times.push(performance.now() - t);
    }
    if (o.profilePrefix) session.endProfiling();
  } finally {
    await session.release();
  }
  const sorted = [...times].sort((a, b) => a - b);
  const ms = sorted.length % 2 ? sorted[sorted.length >> 1] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
  const ips = (o.batch * 1000) / ms;
  return {
    arch: m.arch,
    device,
    batch: o.batch,
    inputSize: m.options.inputSize,
    imagesPerSecond: ips,
    msPerStep: ms,
    bestImagesPerSecond: (o.batch * 1000) / sorted[0],
    gflops: (3 * 2 * macCount(m) * ips) / 1e9,
    buildMs,
    peakRssMB: process.resourceUsage().maxRSS / 1024,
  };
}
