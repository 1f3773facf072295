/**
 * A served model: its description in the protocol's terms (name, platform, inputs and outputs with datatype and
 * shape, -1 for the batch), its session in a thread of its own (engine.ts) behind a dynamic batcher, and, for a
 * classifier with one image input, what /classify needs: the preprocessing and labels `vgg predict` would use.
 */
import * as path from "node:path";
import type { Preprocessing } from "../data/preprocessing.js";
import { VggError } from "../errors.js";
import { buildInferenceGraph } from "../graph/infer.js";
import { resolveWinograd } from "../graph/winograd-infer.js";
import { type OnnxInfo, type OnnxValueInfo, readOnnxInfo } from "../onnx/decode.js";
import { weightsFor } from "../predict/predictor.js";
import { loadImage, weightsPreprocessing } from "../predict/preprocess.js";
import { type ClassScore, softmax, topK } from "../predict/topk.js";
import type { Device } from "../runtime/device.js";
import { compileSpec } from "../runtime/open-graph.js";
import type { DType, Tensor } from "../tensor.js";
import { readModelMeta } from "../weights/model-meta.js";
import { modelLabels } from "../zoo/labels.js";
import { buildModel, type ModelOptions } from "../zoo/model.js";
import { Batcher, type BatcherOptions } from "./batcher.js";
import { datatypeOf, type InferRequest, ProtocolError, type ResponseTensor } from "./codec.js";
import { type DemoModelOptions, describeDemoModel } from "./demo.js";
import { Engine, type EngineModel } from "./engine.js";

/** A tensor as GET /v2/models/{name} describes it. */
export interface TensorSpec {
  name: string;
  datatype: string;
  /** -1 for a free size (the batch). */
  shape: number[];
}

/** ONNX's element types and the protocol's datatypes (with this project's tensor dtypes). */
const ELEM_TYPES: Record<number, { datatype: string; dtype: DType }> = {
  1: { datatype: "FP32", dtype: "float32" },
  2: { datatype: "UINT8", dtype: "uint8" },
  3: { datatype: "INT8", dtype: "int8" },
  6: { datatype: "INT32", dtype: "int32" },
  7: { datatype: "INT64", dtype: "int64" },
  9: { datatype: "BOOL", dtype: "bool" },
  10: { datatype: "FP16", dtype: "float16" },
  11: { datatype: "FP64", dtype: "float64" },
};
const DTYPE_OF = Object.fromEntries(Object.values(ELEM_TYPES).map((e) => [e.datatype, e.dtype])) as Record<string, DType>;

export interface ServeOptions extends DemoModelOptions {
  threads?: number;
  /** Where the sessions run (resolved: the CLI turns "auto" into one). */
  device?: Device;
  batching: BatcherOptions;
}

/** Where a served model comes from: an ONNX file, or weights compiled here (`--weights`, with `--arch`). */
export type ModelSource = { file: string; name?: string } | { weights: string; arch: string; options: ModelOptions; name?: string };

/** What /classify needs, or why the model cannot classify images. */
type Classify = { input: string; logits: string; preprocessing: Preprocessing; labels: string[] } | { unavailable: string };

export class ServedModel {
  readonly platform = "onnx_onnxv1";
  private engine: Engine | null = null;
  private batcher: Batcher | null = null;
  private closing = false;

  private constructor(
    readonly name: string,
    readonly inputs: TensorSpec[],
    readonly outputs: TensorSpec[],
    readonly classify: Classify,
    private readonly source: EngineModel,
    private readonly opts: ServeOptions,
    private readonly onBatch: (model: string, rows: number) => void,
  ) {}

  get ready(): boolean {
    return this.engine !== null;
  }

  get queueDepth(): number {
    return this.batcher?.depth ?? 0;
  }

  /** Reads the model's description (the session is created by open()). */
  static async describe(src: ModelSource, opts: ServeOptions, onBatch: (model: string, rows: number) => void): Promise<ServedModel> {
    if ("file" in src) {
      const info = readOnnxInfo(src.file);
      const name = src.name ?? path.basename(src.file).replace(/\.onnx$/i, "");
      const classify = classifierOf(src.file, info, opts);
      return new ServedModel(
        name,
        info.inputs.map((v) => spec(src.file, v)),
        info.outputs.map((v) => spec(src.file, v)),
        classify,
        src,
        opts,
        onBatch,
      );
    }
    const model = buildModel(src.arch, src.options);
    const K = model.options.numClasses;
    const inputs = [{ name: "input", datatype: "FP32", shape: [-1, ...model.inputShape] }];
    const outputs = [{ name: "logits", datatype: "FP32", shape: [-1, K] }];
    const classify: Classify = {
      input: "input",
      logits: "logits",
      preprocessing: weightsPreprocessing(src.weights, opts.preset, model.inputShape),
      labels: [...modelLabels(K, opts.labels, src.weights.endsWith(".safetensors") ? readModelMeta(src.weights)?.labels : undefined)],
    };
    // The weights are compiled into the graph now and dropped: the thread loads the graph, not the state dict.
    const winograd = resolveWinograd("auto", "fp32", opts.device ?? "cpu");
    const compiled = compileSpec(buildInferenceGraph(model, await weightsFor(model, { weights: src.weights }), { winograd }));
    return new ServedModel(src.name ?? src.arch, inputs, outputs, classify, { compiled }, opts, onBatch);
  }

  /** Creates the session (in its thread) and the batcher in front of it. */
  async open(): Promise<void> {
    const engine = await Engine.open(this.source, this.opts.threads, this.opts.device);
    // A model with a fixed batch size cannot take concatenated requests: its batches are one request each.
    const maxBatch = this.inputs.every((i) => i.shape[0] === -1) ? this.opts.batching.maxBatch : 1;
    this.batcher = new Batcher(
      (feeds) => engine.run(feeds),
      { ...this.opts.batching, maxBatch },
      (rows) => this.onBatch(this.name, rows),
    );
    this.engine = engine;
  }

  /** Answers an infer request: its inputs checked against the model's, run in a batch, its outputs picked. */
  async infer(req: InferRequest): Promise<ResponseTensor[]> {
    const feeds: Record<string, Tensor> = {};
    let rows = -1;
    for (const t of req.inputs) {
      const s = this.inputs.find((i) => i.name === t.name);
      if (!s)
        throw new ProtocolError(`model '${this.name}' has no input '${t.name}' (inputs: ${this.inputs.map((i) => i.name).join(", ")})`);
      if (feeds[t.name]) throw new ProtocolError(`input '${t.name}' is given twice`);
      if (t.datatype !== s.datatype) throw new ProtocolError(`input '${t.name}' is ${s.datatype}, the request sends ${t.datatype}`);
      const fits = t.shape.length === s.shape.length && t.shape.every((d, k) => (s.shape[k] === -1 ? d >= 1 : d === s.shape[k]));
      if (!fits)
        throw new ProtocolError(
          `input '${t.name}' has shape [${t.shape.join(", ")}], the model takes [${s.shape.join(", ")}] (-1: any size from 1)`,
        );
      if (rows !== -1 && t.shape[0] !== rows) throw new ProtocolError(`the inputs' batch sizes differ (${rows} and ${t.shape[0]})`);
      rows = t.shape[0];
      feeds[t.name] = { dtype: DTYPE_OF[t.datatype], shape: t.shape, data: t.data };
    }
    const missing = this.inputs.filter((i) => !feeds[i.name]).map((i) => i.name);
    if (missing.length > 0) throw new ProtocolError(`the request lacks input ${missing.map((m) => `'${m}'`).join(", ")}`);
    const wanted = req.outputs ?? this.outputs.map((o) => ({ name: o.name, binary: req.binaryOutputs }));
    for (const o of wanted) {
      if (!this.outputs.some((s) => s.name === o.name)) {
        throw new ProtocolError(`model '${this.name}' has no output '${o.name}' (outputs: ${this.outputs.map((s) => s.name).join(", ")})`);
      }
    }
    const out = await this.run(rows, feeds);
    return wanted.map((o) => ({
      name: o.name,
      shape: out[o.name].shape,
      datatype: datatypeOf(out[o.name].data),
      data: out[o.name].data,
      binary: o.binary,
    }));
  }

  /** The top `k` classes of an encoded image (JPEG, PNG, WebP), preprocessed as `vgg predict` does. */
  async classifyImage(bytes: Uint8Array, k: number): Promise<ClassScore[]> {
    const c = this.classify;
    if ("unavailable" in c) throw new ProtocolError(`model '${this.name}' cannot classify images: ${c.unavailable}`);
    let img: Awaited<ReturnType<typeof loadImage>>;
    try {
      img = await loadImage(bytes, c.preprocessing);
    } catch (err) {
      throw new ProtocolError(`the body is not an image this server decodes (JPEG, PNG, WebP): ${(err as Error).message}`, 415);
    }
    const x: Tensor = { dtype: "float32", shape: [1, img.c, img.h, img.w], data: Float32Array.from(img.data) };
    const out = await this.run(1, { [c.input]: x });
    return topK(softmax(out[c.logits].data as Float32Array), k, c.labels);
  }

  private run(rows: number, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    // A request whose body was still arriving when the stop began: the session is going, so it is not queued.
    if (this.closing) throw new ProtocolError("the server is shutting down", 503);
    if (!this.batcher) throw new ProtocolError(`model '${this.name}' is not ready`, 503);
    return this.batcher.submit(rows, feeds);
  }

  /** Waits for the queued requests to be answered, then releases the session. */
  async close(): Promise<void> {
    this.closing = true;
    await this.batcher?.drained();
    await this.engine?.close();
  }
}

function spec(file: string, v: OnnxValueInfo): TensorSpec {
  const t = ELEM_TYPES[v.elemType];
  if (!t) throw new VggError(`${v.name} has ONNX element type ${v.elemType}, which this server does not serve`, file);
  return { name: v.name, datatype: t.datatype, shape: v.dims.map((d) => (typeof d === "number" && d > 0 ? d : -1)) };
}

/** A model with one image input and a `logits` output classifies with the demo's preprocessing and labels. */
function classifierOf(file: string, info: OnnxInfo, opts: DemoModelOptions): Classify {
  const logits = info.outputs.find((o) => o.name === "logits");
  if (!logits || info.inputs.length !== 1 || info.inputs[0].dims.length !== 4) {
    return { unavailable: "it needs one image input [N, C, H, W] and a 'logits' output" };
  }
  const d = describeDemoModel(file, opts, info);
  return { input: d.input.name, logits: d.logits.name, preprocessing: d.preprocessing, labels: d.labels };
}
