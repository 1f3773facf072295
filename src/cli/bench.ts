import type { Command } from "commander";
import { checkMemory, estimateInference } from "../graph/memory.js";
import { Predictor } from "../predict/predictor.js";
import { Xoshiro128 } from "../random.js";
import type { DeviceChoice } from "../runtime/device.js";
import { float32, numel } from "../tensor.js";
import { buildModel, macCount } from "../zoo/model.js";
import { addDeviceOption, addModelOptions, commandDevice, type ModelFlags, modelOptions, positiveInt } from "./options.js";
import { addPrecisionOptions, calibrationPreprocessing, type PrecisionFlags, precisionOptions } from "./precision-flags.js";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

/** The flags both `bench` commands time with (bench-train.ts registers `bench train`). */
export interface TimingFlags {
  batch: number;
  inputSize: number;
  warmup: number;
  threads?: number;
  device: DeviceChoice;
  json?: boolean;
}

/**
 * Adds the timing flags, in the order both `bench` commands list them: batch, input size, the timed count
 * (`--iterations` runs or `--steps` steps) and the untimed ones before it, threads. Only the defaults differ.
 */
export function addTimingOptions(
  cmd: Command,
  d: { batch: number; inputSize: number; timed: "iterations" | "steps"; count: number },
): Command {
  const unit = d.timed === "iterations" ? "runs" : "steps";
  return cmd
    .option("--batch <n>", "batch size", positiveInt, d.batch)
    .option("--input-size <s>", "square input size", positiveInt, d.inputSize)
    .option(`--${d.timed} <n>`, `timed ${unit}`, positiveInt, d.count)
    .option("--warmup <n>", `untimed ${unit} first`, positiveInt, 2)
    .option("--threads <n>", "engine threads", positiveInt);
}

interface BenchFlags extends ModelFlags, PrecisionFlags, TimingFlags {
  inputSize: number;
  iterations: number;
}

export function register(program: Command): void {
  const bench = program.command("bench").description("measure throughput on this machine");
  const infer = addPrecisionOptions(
    addModelOptions(
      addTimingOptions(bench.command("infer").description("inference images/s and GFLOP/s (weights random unless --weights)"), {
        batch: 1,
        inputSize: 224,
        timed: "iterations",
        count: 10,
      }).option("--json", "print one JSON line"),
    ),
    { preset: true },
  );
  addDeviceOption(infer).action(async (o: BenchFlags) => {
    const device = await commandDevice(o.device);
    const t0 = performance.now();
    const planned = buildModel(o.arch, modelOptions(o));
    checkMemory(`inference with ${o.arch} at batch ${o.batch}`, estimateInference(planned, o.batch), "use a smaller --batch");
    const shape0 = planned.inputShape;
    const prec = await precisionOptions(o, o.precision, shape0, () => calibrationPreprocessing(o, shape0));
    const p = await Predictor.create(o.arch, {
      ...modelOptions(o),
      ...prec,
      weights: o.weights,
      init: o.init,
      seed: o.seed,
      threads: o.threads,
      device,
    });
    const m = p.model;
    const loadMs = performance.now() - t0;
    const shape = [o.batch, ...m.inputShape];
    const rng = new Xoshiro128(1);
    const x = float32(
      shape,
      new Float32Array(numel(shape)).map(() => rng.normal()),
    );
    for (let k = 0; k < o.warmup; k++) await p.run(x);
    const times: number[] = [];
    for (let k = 0; k < o.iterations; k++) {
      const t = performance.now();
      await p.run(x);
      times.push(performance.now() - t);
    }
    const ms = median(times);
    const ips = (o.batch * 1000) / ms;
    const r = {
      arch: m.arch,
      device: p.device,
      precision: p.precision,
      batch: o.batch,
      inputSize: m.options.inputSize,
      imagesPerSecond: ips,
      gflops: (2 * macCount(m) * ips) / 1e9,
      msPerBatch: ms,
      peakRssMB: process.resourceUsage().maxRSS / 1024,
      loadMs,
    };
    if (o.json) console.log(JSON.stringify(r));
    else {
      console.log(
        `${r.arch} ${r.precision} ${r.inputSize}x${r.inputSize} batch ${r.batch} on ${r.device}: ${ips.toFixed(2)} img/s, ${r.gflops.toFixed(1)} GFLOP/s, ${ms.toFixed(1)} ms/batch (median of ${o.iterations})`,
      );
      console.log(`load ${loadMs.toFixed(0)} ms, peak RSS ${r.peakRssMB.toFixed(0)} MB`);
    }
    await p.release();
  });
}
