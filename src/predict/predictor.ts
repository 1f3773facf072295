/**
 * A compiled model ready to run: the layer plan, its weights, and an ORT session over the inference graph.
 * This is what the CLI's infer/bench and the library's users hold.
 */

import { VggError } from "../errors.js";
import { buildInferenceGraph } from "../graph/infer.js";
import { lowerPrecision, type Precision, type PrecisionOptions } from "../graph/precision.js";
import { resolveWinograd } from "../graph/winograd-infer.js";
import { type Device, type DeviceChoice, resolveDevice } from "../runtime/device.js";
import { type Compiled, compileSpec, openCompiled } from "../runtime/open-graph.js";
import type { Session } from "../runtime/ort.js";
import { type StateDict, shapeStr, type Tensor } from "../tensor.js";
import { resolveWeights } from "../weights/hub.js";
import { type InitScheme, initWeights } from "../weights/init.js";
import { loadWeights } from "../weights/load.js";
import { buildModel, type ModelOptions, type VggModel } from "../zoo/model.js";

/** Where and how ORT runs a job's sessions: threads and device, passed together from the CLI down to the sessions. */
export interface EngineOptions {
  /** ORT's intra-op threads (default: every core). */
  threads?: number;
  /** Where ORT runs: cpu (default), webgpu, or auto (webgpu when an adapter exists); see runtime/device.ts. */
  device?: DeviceChoice;
}

export interface PredictorOptions extends ModelOptions, PrecisionOptions, EngineOptions {
  /** A .pth/.safetensors file, `imagenet`, an entry name or a URL; without it, `init` and `seed` initialise. */
  weights?: string;
  init?: InitScheme;
  seed?: number;
  /** Tap names to output (default ["logits"]). */
  taps?: string[];
}

export class Predictor {
  private constructor(
    readonly model: VggModel,
    readonly session: Session,
    readonly taps: string[],
    readonly precision: Precision = "fp32",
    /** The device the session runs on ("auto" resolved). */
    readonly device: Device = "cpu",
  ) {}

  static async create(arch: string, opts: PredictorOptions = {}): Promise<Predictor> {
    const model = buildModel(arch, opts);
    const taps = opts.taps ?? ["logits"];
    const device = await resolveDevice(opts.device);
    // The weights live only inside compile(): once it returns they are garbage, before ORT loads its own copy.
    const compiled = await compile(model, () => weightsFor(model, opts), taps, opts, device, opts.threads);
    return new Predictor(model, await openCompiled(compiled, { threads: opts.threads, device }), taps, opts.precision ?? "fp32", device);
  }

  static async fromWeights(
    model: VggModel,
    weights: StateDict,
    opts: PrecisionOptions & EngineOptions & { taps?: string[] } = {},
  ): Promise<Predictor> {
    const taps = opts.taps ?? ["logits"];
    const device = await resolveDevice(opts.device);
    const compiled = await compile(model, async () => weights, taps, opts, device, opts.threads);
    return new Predictor(model, await openCompiled(compiled, { threads: opts.threads, device }), taps, opts.precision ?? "fp32", device);
  }

  /** Run a float32 NCHW batch; returns one tensor per tap. */
  async run(x: Tensor, file?: string): Promise<Record<string, Tensor>> {
    const want = this.model.inputShape;
    if (x.dtype !== "float32") throw new VggError(`input must be float32, got ${x.dtype}`, file);
    if (x.shape.length !== 4 || x.shape.slice(1).some((d, k) => d !== want[k])) {
      throw new VggError(`input has shape ${shapeStr(x.shape)}, the model takes [N, ${want.join(", ")}]`, file);
    }
    return this.session.run({ input: x });
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

async function compile(
  model: VggModel,
  weights: () => Promise<StateDict>,
  taps: string[],
  p: PrecisionOptions,
  device: Device,
  threads?: number,
): Promise<Compiled> {
  const winograd = resolveWinograd(p.winograd, p.precision ?? "fp32", device);
  const sd = await weights();
  refuseNaNHead(model, sd, taps);
  const spec = await lowerPrecision(model, buildInferenceGraph(model, sd, { taps, winograd }), p, threads);
  return compileSpec(spec);
}

/**
 * Features-only weights (torchvision's vgg16.IMAGENET1K_FEATURES ships its classifier as NaN) give NaN logits:
 * refused where an output needs the classifier, fine for the conv taps.
 */
function refuseNaNHead(model: VggModel, sd: StateDict, taps: readonly string[]): void {
  const first = model.layers.findIndex((l) => l.name.startsWith("classifier"));
  if (first < 0) return;
  const needsHead = taps.some((t) => t === "logits" || model.layers.findIndex((l) => l.tap === t) >= first);
  if (!needsHead) return;
  const bad = [...sd].find(([k, t]) => k.startsWith("classifier") && t.dtype === "float32" && (t.data as Float32Array).every(Number.isNaN));
  if (bad)
    throw new VggError(
      `'${bad[0]}' is all NaN: these are features-only weights; use them for features, distance or fine-tuning (vgg train --init), not for logits`,
    );
}

/** The weights a file, `imagenet`, an entry name or a URL holds (fetched once into the cache), else a seeded init. */
export async function weightsFor(model: VggModel, opts: { weights?: string; init?: InitScheme; seed?: number }): Promise<StateDict> {
  if (!opts.weights) return initWeights(model, opts.init ?? "torchvision", opts.seed ?? 0);
  return loadWeights(model, await resolveWeights(opts.weights, { arch: model.arch }));
}
