/**
 * The browser demo's server: the built page (dist/web, from `npm run build:web`), one model file, and
 * /model.json describing it (input shape, logits and taps, labels, preprocessing) so the page runs the same
 * preprocessing as `vgg predict`. Plain node:http, GET and HEAD only, cross-origin isolated (see static.ts).
 */
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { encodeIdx } from "../data/idx-format.js";
import { PRESETS, type Preprocessing, type PresetName, presetPreprocessing } from "../data/preprocessing.js";
import { openDataset } from "../data/spec.js";
import { VggError } from "../errors.js";
import { type OnnxInfo, type OnnxValueInfo, readOnnxInfo } from "../onnx/decode.js";
import { checkpointPreprocessing } from "../predict/preprocess.js";
import { type ModelMeta, readModelMeta } from "../weights/model-meta.js";
import { defaultLabels, IMAGENET_CLASSES, readLabels } from "../zoo/labels.js";
import { type DemoModel, MODEL_JSON, MODEL_PREFIX, TRAIN_JSON, type TrainSetup } from "./protocol.js";
import { resolveUnder, sendBody, sendFile, sendStatus } from "./static.js";

/** Where `npm run build:web` puts the page: dist/web, beside dist/src. */
export function defaultWebRoot(): string {
  return fileURLToPath(new URL("../../web/", import.meta.url));
}

export interface DemoModelOptions {
  /** Class names: one per line, or a JSON array. */
  labels?: string;
  /** A preset instead of the model's own (metadata) or torchvision. */
  preset?: PresetName;
  /** The `vgg train` checkpoint the model was exported from: its labels and evaluation preprocessing. */
  checkpoint?: string;
}

function fixedDims(v: OnnxValueInfo): number[] | null {
  const d = v.dims.slice(1);
  return d.every((x) => typeof x === "number" && x > 0) ? (d as number[]) : null;
}

function parseJson<T>(file: string, key: string, text: string | undefined): T | undefined {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new VggError(`its metadata '${key}' is not valid JSON`, file);
  }
}

/** Describes an ONNX model for the page; refuses models the page cannot run, saying how to make one it can. */
export function describeDemoModel(file: string, opts: DemoModelOptions = {}, info: OnnxInfo = readOnnxInfo(file)): DemoModel {
  const images = info.inputs.filter((i) => i.dims.length === 4);
  if (images.length !== 1 || info.inputs.length !== 1) {
    const got = info.inputs.map((i) => `${i.name} [${i.dims.join(", ")}]`).join(", ");
    throw new VggError(`the demo needs one image input [N, C, H, W], the model has: ${got || "none"}`, file);
  }
  const input = images[0];
  const inShape = fixedDims(input);
  if (!inShape || input.elemType !== 1) throw new VggError(`input '${input.name}' is not float32 [N, C, H, W] with fixed C, H, W`, file);
  const [c, h, w] = inShape;
  if (h !== w) throw new VggError(`the demo's preprocessing makes square inputs; '${input.name}' is ${h}x${w}`, file);

  const logits = info.outputs.find((o) => o.name === "logits");
  if (!logits) {
    const names = info.outputs.map((o) => o.name);
    throw new VggError(
      `has no 'logits' output (outputs: ${names.join(", ")}); export it with both, e.g. \`vgg export ... --tap ${names[0] ?? "relu1_2"},logits\``,
      file,
    );
  }
  const classes = fixedDims(logits);
  if (classes?.length !== 1) throw new VggError(`output 'logits' is not [N, classes]`, file);
  const taps = info.outputs
    .filter((o) => o !== logits)
    .map((o) => ({ name: o.name, shape: fixedDims(o) }))
    .filter((t): t is { name: string; shape: number[] } => t.shape !== null && (t.shape.length === 3 || t.shape.length === 1));

  const md = info.metadata;
  const meta: ModelMeta | undefined = opts.checkpoint ? readModelMeta(opts.checkpoint) : undefined;
  if (opts.checkpoint && !meta) throw new VggError("has no model description: is it a checkpoint written by `vgg train`?", opts.checkpoint);
  if (meta && opts.preset) throw new VggError("give --checkpoint (its own preprocessing) or --preset, not both");

  // Preprocessing: --preset, a checkpoint's, the model's metadata (`preprocessing` JSON or `preset` name), torchvision.
  let preprocessing: Preprocessing;
  const mdPrep = parseJson<Preprocessing>(file, "preprocessing", md.preprocessing);
  if (opts.preset) preprocessing = presetPreprocessing(opts.preset, h);
  else if (meta) preprocessing = checkpointPreprocessing(meta, h);
  else if (mdPrep) preprocessing = mdPrep;
  else {
    const preset = (md.preset ?? "torchvision") as PresetName;
    if (!PRESETS.includes(preset)) throw new VggError(`its metadata names an unknown preset '${md.preset}'`, file);
    if (c !== 3) {
      throw new VggError(
        `takes ${c}-channel input, the ${preset} preset is for RGB: pass --checkpoint with the \`vgg train\` checkpoint it was exported from`,
        file,
      );
    }
    preprocessing = presetPreprocessing(preset, h);
  }

  // Labels: --labels, the model's metadata, a checkpoint's, ImageNet's for 1000 classes, else the indices.
  const k = classes[0];
  const mdLabels = parseJson<unknown>(file, "labels", md.labels);
  if (mdLabels !== undefined && !(Array.isArray(mdLabels) && mdLabels.length === k)) {
    throw new VggError(`its metadata 'labels' is not an array of ${k} names`, file);
  }
  let labels: string[];
  let labelsFrom: string;
  if (opts.labels) [labels, labelsFrom] = [readLabels(opts.labels, k), "file"];
  else if (mdLabels) [labels, labelsFrom] = [(mdLabels as unknown[]).map(String), "metadata"];
  else if (meta?.labels?.length === k) [labels, labelsFrom] = [meta.labels, "checkpoint"];
  else [labels, labelsFrom] = [defaultLabels(k), k === IMAGENET_CLASSES.length ? "imagenet" : "indices"];

  const name = path.basename(file);
  return {
    name,
    url: MODEL_PREFIX + encodeURIComponent(name),
    bytes: info.bytes,
    arch: md.arch ?? null,
    options: parseJson<Record<string, unknown>>(file, "options", md.options) ?? null,
    producer: info.producer,
    input: { name: input.name, shape: [c, h, w], batchDim: typeof input.dims[0] === "string" ? input.dims[0] : null },
    logits: { name: logits.name, classes: k },
    taps,
    labels,
    labelsFrom,
    preprocessing,
  };
}

export interface DemoServerOptions {
  /** The ONNX model file. */
  model: string;
  /** The int8 export of the same model (info.int8 describes it). */
  int8?: string;
  /** What the training page starts from and the files it names (trainSetup). */
  train?: { setup: TrainSetup; files: Map<string, { bytes?: Uint8Array; file?: string }> };
  /** What /model.json says about it (describeDemoModel). */
  info: DemoModel;
  /** The built page (default: dist/web). */
  root?: string;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

/** An http.Server for the page and the model; call listen() on it. */
export function createDemoServer(opts: DemoServerOptions): http.Server {
  const rootDir = opts.root ?? defaultWebRoot();
  if (!fs.existsSync(path.join(rootDir, "index.html"))) {
    throw new VggError(`the page is not built (no ${path.join(rootDir, "index.html")}): run \`npm run build:web\``);
  }
  const root = fs.realpathSync(rootDir);
  const modelFile = path.resolve(opts.model);
  const modelJson = JSON.stringify(opts.info);
  const trainJson = JSON.stringify(opts.train?.setup ?? { checkpoint: null, exported: null, data: null });
  const route = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      sendStatus(res, 405, { Allow: "GET, HEAD" });
      return;
    }
    // Bound to loopback, answer loopback names only: a DNS-rebound name must not reach the model.
    const local = server.address() as AddressInfo | null;
    const hostname = (req.headers.host ?? "").replace(/:\d+$/, "").toLowerCase();
    if (local && ["127.0.0.1", "::1"].includes(local.address) && !LOOPBACK.has(hostname)) {
      sendStatus(res, 421);
      return;
    }
    const target = req.url ?? "/";
    const pathOnly = target.replace(/[?#].*$/, "");
    if (pathOnly === "/" || pathOnly === "/index.html") sendFile(req, res, path.join(root, "index.html"));
    else if (pathOnly === MODEL_JSON) sendBody(req, res, modelJson, "application/json; charset=utf-8");
    else if (pathOnly === opts.info.url) sendFile(req, res, modelFile, "application/octet-stream");
    else if (opts.int8 && pathOnly === opts.info.int8?.url) sendFile(req, res, path.resolve(opts.int8), "application/octet-stream");
    else if (pathOnly === TRAIN_JSON) sendBody(req, res, trainJson, "application/json; charset=utf-8");
    else if (opts.train?.files.has(pathOnly)) {
      const f = opts.train.files.get(pathOnly) as { bytes?: Uint8Array; file?: string };
      if (f.file) sendFile(req, res, f.file, "application/octet-stream");
      else sendBody(req, res, Buffer.from(f.bytes as Uint8Array), "application/octet-stream");
    } else {
      const r = resolveUnder(root, target);
      if ("status" in r) sendStatus(res, r.status);
      else sendFile(req, res, r.file);
    }
  };
  const server = http.createServer((req, res) => {
    try {
      route(req, res);
    } catch {
      if (!res.headersSent) sendStatus(res, 500);
      else res.destroy();
    }
  });
  return server;
}

/** Listens and resolves with the URL to open. */
export function listen(server: http.Server, port: number, host: string): Promise<string> {
  return new Promise((done, fail) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why = err.code === "EADDRINUSE" ? `port ${port} is in use (try --port 0 for a free one)` : err.message;
      fail(new VggError(`cannot listen on ${host}:${port}: ${why}`));
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      const a = server.address() as AddressInfo;
      const h = a.family === "IPv6" ? `[${a.address}]` : a.address;
      done(`http://${h}:${a.port}/`);
    });
  });
}

/**
 * An int8 export of `info`'s model: the same input, classes and labels (checked), and int8 by its metadata, since
 * the page swaps one for the other.
 */
export function describeInt8(info: DemoModel, file: string, opts: DemoModelOptions): NonNullable<DemoModel["int8"]> {
  if (!fs.existsSync(file)) throw new VggError("no such file", file);
  const onnx = readOnnxInfo(file);
  if (onnx.metadata.precision !== "int8") throw new VggError("is not an int8 export (`vgg export --precision int8` writes one)", file);
  const d = describeDemoModel(file, opts, onnx);
  const same =
    d.input.shape.join() === info.input.shape.join() &&
    d.logits.classes === info.logits.classes &&
    d.labels.join("\n") === info.labels.join("\n");
  if (!same) throw new VggError(`is not an int8 export of ${info.name}: its input or classes differ`, file);
  return { url: d.url === info.url ? `${d.url}-int8` : d.url, bytes: onnx.bytes };
}

/** Where the training page finds the checkpoint's weights and the data's raw IDX files. */
const CHECKPOINT_URL = "/train/checkpoint.safetensors";
const DATA_PREFIX = "/train/data/";

/**
 * The training page's starting point: the --checkpoint to fine-tune (its description and preprocessing), and
 * --data's test split as raw IDX arrays (Fashion-MNIST: 10,000 images, 7.8 MB), served from memory.
 */
export async function trainSetup(
  info: DemoModel,
  opts: { checkpoint?: string; data?: string },
): Promise<NonNullable<DemoServerOptions["train"]>> {
  const files = new Map<string, { bytes?: Uint8Array; file?: string }>();
  let checkpoint: TrainSetup["checkpoint"] = null;
  if (opts.checkpoint) {
    const meta = readModelMeta(opts.checkpoint);
    if (!meta) throw new VggError("has no model description: is it a checkpoint written by `vgg train`?", opts.checkpoint);
    files.set(CHECKPOINT_URL, { file: path.resolve(opts.checkpoint) });
    checkpoint = { url: CHECKPOINT_URL, meta, preprocessing: checkpointPreprocessing(meta) };
  }
  let data: TrainSetup["data"] = null;
  if (opts.data) {
    const ds = await openDataset(opts.data, { seed: 0 });
    const split = ds.splits.test;
    if (split?.source.kind !== "array" || !(split.source.data instanceof Uint8Array)) {
      throw new VggError("the training page loads data with a test split of 8-bit arrays (fashion-mnist, cifar10, npy)", opts.data);
    }
    const s = split.source;
    const n = split.indices.length;
    const per = s.c * s.h * s.w;
    const pixels = new Uint8Array(n * per);
    const labels = new Uint8Array(n);
    split.indices.forEach((k, i) => {
      pixels.set((s.data as Uint8Array).subarray(k * per, (k + 1) * per), i * per);
      labels[i] = s.labels[k];
    });
    const dims = s.c === 1 ? [n, s.h, s.w] : [n, s.c, s.h, s.w];
    files.set(`${DATA_PREFIX}images.idx`, { bytes: encodeIdx(dims, pixels) });
    files.set(`${DATA_PREFIX}labels.idx`, { bytes: encodeIdx([n], labels) });
    data = { name: ds.spec, images: `${DATA_PREFIX}images.idx`, labels: `${DATA_PREFIX}labels.idx`, classes: ds.classes };
  }
  const exported =
    info.arch && info.options
      ? { url: info.url, arch: info.arch, options: info.options, labels: info.labels, preprocessing: info.preprocessing }
      : null;
  return { setup: { checkpoint, exported, data }, files };
}
