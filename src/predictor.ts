/**
 * A compiled model ready to run: the layer plan, its weights, and an ORT session over the inference graph.
 * This is what the CLI's infer/bench and the library's users hold.
 */
import { VggError } from "./errors.js";
import { encodeInferenceGraph } from "./graph/infer.js";
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
    const weights = await weightsFor(model, opts);
    return Predictor.fromWeights(model, weights, opts);
  }

  static async fromWeights(model: VggModel, weights: StateDict, opts: { taps?: string[]; threads?: number } = {}): Promise<Predictor> {
    const taps = opts.taps ?? ["logits"];
    let bytes: Uint8Array | undefined = encodeInferenceGraph(model, weights, { taps });
    const session = await createSession(bytes, { threads: opts.threads });
    bytes = undefined;
    return new Predictor(model, session, taps);
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

export async function weightsFor(model: VggModel, opts: { weights?: string; init?: InitScheme; seed?: number }): Promise<StateDict> {
  return opts.weights ? loadWeights(model, opts.weights) : initWeights(model, opts.init ?? "torchvision", opts.seed ?? 0);
}
