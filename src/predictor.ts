/**
 * A compiled model ready to run: the layer plan, its weights, and an ORT session over the inference graph.
 * This is what the CLI's infer/bench and the library's users hold.
 */
import { VggError } from "./errors.js";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { buildInferenceGraph } from "./graph/infer.js";
import { encodeModel, encodeModelParts } from "./graph/onnx.js";
import { createSession, type Session } from "./runtime/ort.js";
import { shapeStr, type StateDict, type Tensor } from "./tensor.js";
import { initWeights, type InitScheme } from "./weights/init.js";
import { loadWeights } from "./weights/load.js";
import { buildModel, type ModelOptions, type VggModel } from "./zoo/model.js";

export interface PredictorOptions extends ModelOptions {
  /** A .pth or .safetensors file; without it the model is initialised with `init` and `seed`. */
  weights?: string;
  init?: InitScheme;
  seed?: number;
  /** Tap names to output (default ["logits"]). */
  taps?: string[];
  threads?: number;
}

export class Predictor {
  private constructor(
    readonly model: VggModel,
    readonly session: Session,
    readonly taps: string[],
  ) {}

  static async create(arch: string, opts: PredictorOptions = {}): Promise<Predictor> {
    const model = buildModel(arch, opts);
    const taps = opts.taps ?? ["logits"];
    // The weights live only inside compile(): once it returns they are garbage, before ORT loads its own copy.
    const compiled = await compile(model, () => weightsFor(model, opts), taps);
    return Predictor.open(model, compiled, taps, opts.threads);
  }

  static async fromWeights(model: VggModel, weights: StateDict, opts: { taps?: string[]; threads?: number } = {}): Promise<Predictor> {
    const taps = opts.taps ?? ["logits"];
    return Predictor.open(model, await compile(model, async () => weights, taps), taps, opts.threads);
  }

  private static async open(model: VggModel, c: Compiled, taps: string[], threads?: number): Promise<Predictor> {
    if (c.bytes) return new Predictor(model, await createSession(c.bytes, { threads }), taps);
    collectGarbage();
    try {
      return new Predictor(model, await createSession(c.path as string, { threads }), taps);
    } finally {
      rmSync(c.dir as string, { recursive: true, force: true });
    }
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

/** Past this size the graph goes to ORT through files, so JS and ORT never hold the weights at once. */
const IN_MEMORY_LIMIT = 64 * 2 ** 20;

interface Compiled {
  bytes?: Uint8Array;
  path?: string;
  dir?: string;
}

async function compile(model: VggModel, weights: () => Promise<StateDict>, taps: string[]): Promise<Compiled> {
  const spec = buildInferenceGraph(model, await weights(), { taps });
  const size = spec.initializers.reduce((n, i) => n + i.tensor.data.byteLength, 0);
  if (size < IN_MEMORY_LIMIT) return { bytes: encodeModel(spec) };
  const dir = mkdtempSync(join(tmpdir(), "vgg-onnx-"));
  const { parts, external } = encodeModelParts(spec, { externalMinBytes: 4096 });
  const path = join(dir, "model.onnx");
  writeChunks(path, parts);
  for (const e of external) writeChunks(join(dir, e.path), [e.data]);
  return { path, dir };
}

function writeChunks(path: string, parts: Uint8Array[]): void {
  const fd = openSync(path, "w");
  try {
    for (const p of parts) writeSync(fd, p);
  } finally {
    closeSync(fd);
  }
}

/** Return the dropped weights' ArrayBuffers to the OS now rather than at V8's leisure (peak RSS). */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as (() => void) | undefined;
  gc?.();
}

export async function weightsFor(model: VggModel, opts: { weights?: string; init?: InitScheme; seed?: number }): Promise<StateDict> {
  return opts.weights ? loadWeights(model, opts.weights) : initWeights(model, opts.init ?? "torchvision", opts.seed ?? 0);
}
