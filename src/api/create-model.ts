/**
 * One call for the common thing, as timm's `create_model(name, pretrained=True, num_classes=N)`:
 *
 *   const model = await createModel("vgg16", { weights: "imagenet" });
 *   const top5 = await model.classify("cat.jpg", { top: 5 });
 *   const feats = await model.features(["a.png", "b.png"], ["relu2_2", "relu4_3"]);
 *
 * The weights may be a file, `imagenet`, an entry of the published table, a URL, or a `vgg train` checkpoint (which
 * brings its own model description, labels and preprocessing). With `numClasses` different from the weights', the
 * last FC is re-initialised (fine-tuning's starting point); otherwise loading is strict.
 */
import { statSync } from "node:fs";
import type { Preprocessing, PresetName } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { type ExtractOptions, extractFeatures, type FeatureInputs } from "../features/extract.js";
import type { PrecisionOptions } from "../graph/precision.js";
import { expandInputs } from "../predict/inputs.js";
import { predictFiles } from "../predict/predict.js";
import { Predictor } from "../predict/predictor.js";
import { loadImage, weightsPreprocessing } from "../predict/preprocess.js";
import { type ClassScore, softmax, topK } from "../predict/topk.js";
import { type Device, type DeviceChoice, resolveDevice } from "../runtime/device.js";
import { numel, type StateDict, type Tensor } from "../tensor.js";
import { resolveWeights } from "../weights/hub.js";
import { loadStateDict } from "../weights/index.js";
import { type InitScheme, initWeights } from "../weights/init.js";
import { fitForFineTune, lastFc, matchStateDict } from "../weights/match.js";
import { type ModelMeta, readModelMeta } from "../weights/model-meta.js";
import { type FeatureInfo, featureInfo } from "../zoo/features.js";
import { modelLabels } from "../zoo/labels.js";
import { buildModel, type ModelOptions, type VggModel } from "../zoo/model.js";

export interface CreateModelOptions extends ModelOptions, PrecisionOptions {
  /** A .pth/.safetensors file, `imagenet`, a published entry name, a URL, or a `vgg train` checkpoint. */
  weights?: string;
  /** Without weights: the initialisation (default torchvision) and its seed. */
  init?: InitScheme;
  seed?: number;
  /** Preprocessing preset (default: the weights' own; torchvision for plain files). */
  preset?: PresetName;
  /** Class names, or a file of them (default: the checkpoint's, ImageNet's for 1000 classes, else indices). */
  labels?: readonly string[] | string;
  threads?: number;
  /** Where ORT runs: cpu (default), webgpu (the GPU through ORT's WebGPU provider; needs a Vulkan driver), or auto
   * (webgpu when an adapter exists, else cpu, with a note to `log`). `VggNet.device` says which it is. */
  device?: DeviceChoice;
  /** Where download notes, fine-tuning notes and the device note go, with a progress bar on a terminal (default: nowhere, no bar). */
  log?: (line: string) => void;
}

/** An image file (or, in an array, a folder or glob), its bytes, or a preprocessed float32 [N, C, H, W] tensor. */
export type ClassifyInput = string | Uint8Array | readonly (string | Uint8Array)[] | Tensor;

export class VggNet {
  private readonly predictors = new Map<string, Promise<Predictor>>();

  constructor(
    readonly arch: string,
    readonly model: VggModel,
    readonly preprocessing: Preprocessing,
    readonly labels: readonly string[],
    private readonly weights: () => Promise<StateDict>,
    private readonly opts: CreateModelOptions,
  ) {}

  /** The device the model runs on (createModel resolves "auto"). */
  get device(): Device {
    return this.opts.device === "webgpu" ? "webgpu" : "cpu";
  }

  /** Per tap: channels, stride, spatial size at the input size (timm's feature_info). */
  get featureInfo(): FeatureInfo[] {
    return featureInfo(this.model);
  }

  /** A session with these outputs, built once per set of taps. */
  private predictor(taps: readonly string[]): Promise<Predictor> {
    const key = [...taps].sort().join(",");
    let p = this.predictors.get(key);
    if (!p) {
      p = this.weights().then((w) => Predictor.fromWeights(this.model, w, { ...this.opts, taps: [...taps], threads: this.opts.threads }));
      // A failed build (e.g. logits of features-only weights) is not kept: the next call tries again, release skips it.
      p.catch(() => this.predictors.delete(key));
      this.predictors.set(key, p);
    }
    return p;
  }

  /** Raw outputs (logits, or the given taps) of a preprocessed float32 [N, C, H, W] batch. */
  async run(x: Tensor, taps: readonly string[] = ["logits"]): Promise<Record<string, Tensor>> {
    return (await this.predictor(taps)).run(x);
  }

  /**
   * Top-k classes with soft-max probabilities: one image (a file or its bytes) gives one list; an array of images
   * (files, folders, globs, bytes) or a preprocessed [N, C, H, W] tensor gives one list per image. Files that do not
   * decode are an error here (the CLI skips them instead).
   */
  async classify(image: string | Uint8Array, opts?: { top?: number }): Promise<ClassScore[]>;
  async classify(images: readonly (string | Uint8Array)[] | Tensor, opts?: { top?: number }): Promise<ClassScore[][]>;
  async classify(input: string | Uint8Array | readonly (string | Uint8Array)[] | Tensor, opts: { top?: number } = {}) {
    const top = opts.top ?? 5;
    if (isTensor(input)) return this.topOf(await this.run(input), top);
    if (typeof input === "string" || input instanceof Uint8Array) {
      if (typeof input === "string" && isDirectory(input))
        throw new VggError("is a directory: pass [dir] to classify every image in it", input);
      return (await this.classifyAll([input], top))[0];
    }
    return this.classifyAll(input, top);
  }

  private async classifyAll(items: readonly (string | Uint8Array)[], top: number): Promise<ClassScore[][]> {
    const out: ClassScore[][] = [];
    for (const item of items) {
      if (typeof item !== "string") {
        const img = await loadImage(item, this.preprocessing);
        const x = { dtype: "float32" as const, shape: [1, img.c, img.h, img.w], data: img.data as Float32Array };
        out.push(...this.topOf(await this.run(x), top));
        continue;
      }
      const { files, skipped } = expandInputs([item]);
      if (skipped.length > 0) throw new VggError(skipped[0].reason, skipped[0].file);
      const onSkip = (s: { file: string; reason: string }) => {
        throw new VggError(s.reason, s.file);
      };
      const p = await this.predictor(["logits"]);
      const opts = { preprocessing: this.preprocessing, labels: this.labels, top, workers: 0, onSkip };
      for await (const r of predictFiles(p, files, opts)) out.push(r.top);
    }
    return out;
  }

  private topOf(out: Record<string, Tensor>, top: number): ClassScore[][] {
    const logits = out.logits;
    const [n, k] = logits.shape;
    const d = logits.data as Float32Array;
    return Array.from({ length: n }, (_, i) => topK(softmax(d.subarray(i * k, (i + 1) * k)), top, this.labels));
  }

  /** Feature maps (or pooled vectors) at named taps, batched, for files, folders, globs or a preprocessed tensor. */
  async features(inputs: FeatureInputs, taps: readonly string[], opts: Omit<ExtractOptions, "taps" | "preprocessing"> = {}) {
    const p = await this.predictor(taps);
    return extractFeatures(p, inputs, { ...opts, taps: [...taps], preprocessing: this.preprocessing });
  }

  async release(): Promise<void> {
    for (const p of this.predictors.values()) await (await p).release();
    this.predictors.clear();
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isTensor(x: unknown): x is Tensor {
  return typeof x === "object" && x !== null && "shape" in x && "data" in x && "dtype" in x;
}

const MODEL_KEYS = ["numClasses", "inChannels", "dropout", "head", "widthDivisor", "inputSize", "config"] as const;

/** The model's options: a checkpoint's description, with what the caller gave on top. */
function modelOptions(o: CreateModelOptions, meta: ModelMeta | undefined): ModelOptions {
  const given = Object.fromEntries(MODEL_KEYS.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
  return meta ? { ...meta.options, ...given } : given;
}

function labelsFor(o: CreateModelOptions, meta: ModelMeta | undefined, numClasses: number): readonly string[] {
  if (o.labels !== undefined && typeof o.labels !== "string") {
    if (o.labels.length !== numClasses) throw new VggError(`${o.labels.length} labels for ${numClasses} classes`);
    return o.labels;
  }
  return modelLabels(numClasses, o.labels, meta?.labels);
}

/**
 * A VGG ready to classify and to give features. `arch` may be omitted (undefined) when the weights are a `vgg train`
 * checkpoint, which names its own.
 */
export async function createModel(arch: string | undefined, given: CreateModelOptions = {}): Promise<VggNet> {
  // Once, before any session: "auto" becomes the device every session of this model runs on.
  const o: CreateModelOptions = { ...given, device: await resolveDevice(given.device, given.log) };
  const path = o.weights ? await resolveWeights(o.weights, { arch, log: o.log, progress: o.log ? undefined : false }) : undefined;
  const meta = path?.endsWith(".safetensors") ? readModelMeta(path) : undefined;
  const name = arch ?? meta?.arch;
  if (!name) throw new VggError("createModel: name an arch (or give a `vgg train` checkpoint as weights)");
  if (meta && arch && meta.arch !== arch) throw new VggError(`the checkpoint holds a ${meta.arch}, not a ${arch}`, path);
  const model = buildModel(name, modelOptions(o, meta));
  // Weights are read again for each new set of taps rather than held in JS beside ORT's copy.
  const weights = async (): Promise<StateDict> => {
    if (!path) return initWeights(model, o.init ?? "torchvision", o.seed ?? 0);
    const sd = loadStateDict(path);
    // Strict unless numClasses asks for another head than the file's (then fine-tuning's partial load).
    if (o.numClasses === undefined || sd.get(`${lastFc(model)}.bias`)?.shape[0] === o.numClasses) return matchStateDict(model, sd, path);
    const fit = fitForFineTune(model, sd, initWeights(model, "torchvision", o.seed ?? 0), path);
    for (const r of fit.reinit) o.log?.(`${path}: ${r.key} re-initialised (${r.why})`);
    return fit.weights;
  };
  const prep = weightsPreprocessing(path, o.preset, model.inputShape);
  const net = new VggNet(name, model, prep, labelsFor(o, meta, model.options.numClasses), weights, o);
  // Fail now on a bad file, not at the first call; through the first conv tap, so that features-only weights (a NaN
  // classifier) still make a model for features().
  const x = { dtype: "float32" as const, shape: [1, ...model.inputShape], data: new Float32Array(numel(model.inputShape)) };
  await net.run(x, [featureInfo(model)[0].name]);
  return net;
}
