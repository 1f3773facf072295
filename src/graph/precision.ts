/**
 * `--precision fp32|fp16|int8`: the inference graph rewritten before it goes to ONNX Runtime or to a file.
 * fp16 stores the weights as float16 (cast back to float32 at load, see graph/quantize.ts); int8 is static QDQ
 * quantization whose activation ranges come from running calibration images through the float graph here.
 */

import { VggError } from "../errors.js";
import type { ModelSpec } from "../onnx/encode.js";
import { Xoshiro128 } from "../random.js";
import { cpuSaturatesU8S8 } from "../runtime/cpu.js";
import { compileSpec, openCompiled } from "../runtime/open-graph.js";
import { numel, type Tensor } from "../tensor.js";
import type { VggModel } from "../zoo/model.js";
import { floatsToHalf } from "./half.js";
import { type CalibrationGraph, prepareQuantization, type QuantizeOptions, type Range, toFloat16 } from "./quantize.js";
import type { WinogradChoice } from "./winograd-infer.js";

export const PRECISIONS = ["fp32", "fp16", "int8"] as const;
export type Precision = (typeof PRECISIONS)[number];
export type CalibrationMethod = "minmax" | "percentile";

export interface PrecisionOptions {
  /** Default fp32. */
  precision?: Precision;
  /**
   * Winograd F(4x4, 3x3) for the 3x3 convs of an fp32 CPU session (graph/winograd-infer.ts). Sessions default to
   * "auto"; `vgg export` to "off", a plain Conv graph that every ONNX consumer optimises its own way.
   */
  winograd?: WinogradChoice;
  /** int8: calibration inputs, float32 NCHW, preprocessed as the model's inputs are. */
  calibration?: Tensor;
  /** int8 without calibration data: this many N(0, 1) images. For benchmarking only: the outputs are garbage. */
  calibrateRandom?: number;
  /** How a range is taken from the calibration activations: min-max (default) or a percentile of them. */
  calibrationMethod?: CalibrationMethod;
  /** For "percentile": the share of values inside the range, in percent (default 99.99). */
  percentile?: number;
  /** int8 layout choices (activation type, per-channel weights, reduced range). */
  quantize?: QuantizeOptions;
  /** fp16: compute in float16 too (for engines with fp16 kernels; on ORT's CPU build it is slower). */
  fp16Compute?: boolean;
}

export function checkPrecision(p: string): Precision {
  if (!(PRECISIONS as readonly string[]).includes(p)) throw new VggError(`unknown precision '${p}' (known: ${PRECISIONS.join(", ")})`);
  return p as Precision;
}

/** Rewrite a float32 inference graph into the requested precision (calibrating for int8). */
export async function lowerPrecision(model: VggModel, spec: ModelSpec, o: PrecisionOptions, threads?: number): Promise<ModelSpec> {
  const precision = o.precision ?? "fp32";
  if (precision === "fp32") return spec;
  if (precision === "fp16")
    return withMeta(toFloat16(spec, o.fp16Compute ? "compute" : "storage", floatsToHalf), {
      precision: o.fp16Compute ? "fp16-compute" : "fp16",
    });
  let data = o.calibration;
  if (!data) {
    if (!o.calibrateRandom) {
      throw new VggError(
        "int8 needs calibration images (--calibrate FILE.npy|DIR): without them the activation ranges, and so the outputs, are garbage (--calibrate-random is for benchmarking only)",
      );
    }
    const shape = [o.calibrateRandom, ...model.inputShape];
    const rng = new Xoshiro128(7);
    data = { dtype: "float32", shape, data: new Float32Array(numel(shape)).map(() => rng.normal()) };
  }
  checkCalibration(model, data);
  const method = o.calibrationMethod ?? "minmax";
  // Peak memory: the float weights are quantized first; from then on only the calibration graph holds them, and
  // it is written out for the engine and dropped before the engine loads it (`spec` is dropped here too: callers
  // pass the graph without keeping it).
  // 7-bit weights by default where the CPU's u8 x s8 sums saturate (cpuSaturatesU8S8).
  const quantize = { ...o.quantize, reduceRange: o.quantize?.reduceRange ?? cpuSaturatesU8S8() };
  const prep = prepareQuantization(spec, quantize);
  spec = undefined as unknown as ModelSpec;
  const ranges = await calibrate(prep.takeCalibration(), batchesOf(data, calibrationBatch(model)), method, o.percentile ?? 99.99, threads);
  const q = prep.finish(ranges);
  return withMeta(q, {
    precision: "int8",
    quantization: JSON.stringify({
      activations: o.quantize?.activations ?? "uint8",
      perChannel: o.quantize?.perChannel ?? true,
      reduceRange: quantize.reduceRange,
      calibration: o.calibration
        ? { images: data.shape[0], method, ...(method === "percentile" ? { percentile: o.percentile ?? 99.99 } : {}) }
        : "random",
    }),
  });
}

function withMeta(spec: ModelSpec, meta: Record<string, string>): ModelSpec {
  return { ...spec, metadata: { ...(spec.metadata ?? {}), ...meta } };
}

function checkCalibration(model: VggModel, x: Tensor): void {
  const want = model.inputShape;
  if (x.dtype !== "float32") throw new VggError(`calibration data must be float32, got ${x.dtype}`);
  if (x.shape.length !== 4 || x.shape.slice(1).some((d, k) => d !== want[k]) || x.shape[0] < 1) {
    throw new VggError(`calibration data has shape [${x.shape.join(", ")}], the model takes [N, ${want.join(", ")}]`);
  }
}

/** Images per calibration run: the run returns every quantization point, so keep that under ~256 MB. */
function calibrationBatch(model: VggModel): number {
  const perImage = model.layers.reduce((n, l) => n + numel(l.outShape), numel(model.inputShape)) * 4;
  return Math.max(1, Math.min(64, Math.floor(2 ** 28 / perImage)));
}

function batchesOf(x: Tensor, batch: number): () => Iterable<Tensor> {
  const per = numel(x.shape.slice(1));
  const n = x.shape[0];
  return function* () {
    for (let b = 0; b < n; b += batch) {
      const m = Math.min(batch, n - b);
      yield { dtype: "float32", shape: [m, ...x.shape.slice(1)], data: (x.data as Float32Array).subarray(b * per, (b + m) * per) };
    }
  };
}

/**
 * Activation ranges of every tensor the quantizer needs, over the calibration batches: min-max, or the
 * `percentile` (two passes: min-max, then a 2048-bin histogram of each tensor within it). `graph` (from
 * `calibrationGraph` or `prepareQuantization`) is consumed: its references are dropped once ORT has it.
 */
export async function calibrate(
  graph: CalibrationGraph,
  batches: () => Iterable<Tensor> | AsyncIterable<Tensor>,
  method: CalibrationMethod,
  percentile: number,
  threads?: number,
): Promise<Map<string, Range>> {
  const cg = { tensors: graph.tensors, inputs: graph.inputs };
  const inputName = graph.spec.inputs[0].name;
  const compiled = compileSpec(graph.spec);
  // The graph's float weights are in `compiled` (files, for large models) now: let them go before ORT loads.
  graph = undefined as unknown as CalibrationGraph;
  const session = await openCompiled(compiled, { threads });
  const names = [...cg.inputs, ...cg.tensors];
  const ranges = new Map<string, Range>(names.map((t) => [t, { min: Infinity, max: -Infinity }]));
  const pass = async (visit: (name: string, data: Float32Array) => void) => {
    for await (const x of batches()) {
      const out = cg.tensors.length ? await session.run({ [inputName]: x }, cg.tensors) : {};
      for (const t of cg.inputs) visit(t, x.data as Float32Array);
      for (const t of cg.tensors) visit(t, out[t].data as Float32Array);
    }
  };
  try {
    await pass((name, d) => {
      const r = ranges.get(name) as Range;
      let lo = r.min;
      let hi = r.max;
      for (let k = 0; k < d.length; k++) {
        const v = d[k];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      r.min = lo;
      r.max = hi;
    });
    if (method === "percentile") {
      if (!(percentile > 50 && percentile <= 100)) throw new VggError(`--percentile must be in (50, 100], got ${percentile}`);
      const BINS = 2048;
      const hists = new Map(names.map((t) => [t, new Float64Array(BINS)]));
      await pass((name, d) => {
        const r = ranges.get(name) as Range;
        const h = hists.get(name) as Float64Array;
        const w = (r.max - r.min) / BINS || 1;
        for (let k = 0; k < d.length; k++) h[Math.min(BINS - 1, Math.floor((d[k] - r.min) / w))]++;
      });
      for (const t of names) {
        const r = ranges.get(t) as Range;
        const h = hists.get(t) as Float64Array;
        const total = h.reduce((a, b) => a + b, 0);
        const w = (r.max - r.min) / BINS;
        const tail = (total * (100 - percentile)) / 100;
        let lo = 0;
        for (let acc = 0; lo < BINS - 1 && acc + h[lo] <= tail; lo++) acc += h[lo];
        let hi = BINS - 1;
        for (let acc = 0; hi > 0 && acc + h[hi] <= tail; hi--) acc += h[hi];
        ranges.set(t, { min: r.min + lo * w, max: r.min + (hi + 1) * w });
      }
    }
  } finally {
    await session.release();
  }
  for (const [t, r] of ranges)
    if (!Number.isFinite(r.min) || !Number.isFinite(r.max)) throw new VggError(`calibration gave no finite range for '${t}'`);
  return ranges;
}
