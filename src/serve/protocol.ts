/**
 * What the demo server tells the page about the model (GET /model.json). Types only: the browser build imports
 * this file too, and it must not pull Node modules in.
 */
import type { Preprocessing } from "../data/preprocessing.js";
import type { ModelMeta } from "../weights/meta.js";

export const MODEL_JSON = "/model.json";
/** The model file is served at MODEL_PREFIX + its URI-encoded base name. */
export const MODEL_PREFIX = "/model/";
/** ORT's .mjs/.wasm files, relative to the page. */
export const ORT_DIR = "ort/";

export interface DemoTap {
  name: string;
  /** Per image: [C, H, W] for a feature map, [F] for a vector. */
  shape: number[];
}

export interface DemoModel {
  /** The model file's base name. */
  name: string;
  /** Where the page fetches it (same origin). */
  url: string;
  bytes: number;
  /** From the ONNX metadata written by `vgg export` (null for other producers). */
  arch: string | null;
  options: Record<string, unknown> | null;
  producer: string;
  /** The image input: its name, per-image [C, H, W], and the name of its free batch dimension (if named). */
  input: { name: string; shape: [number, number, number]; batchDim: string | null };
  /** The logits output's name and class count. */
  logits: { name: string; classes: number };
  /** The other outputs (feature taps), in the model's order. */
  taps: DemoTap[];
  labels: string[];
  /** Where the labels come from: "file", "metadata", "checkpoint", "imagenet" or "indices". */
  labelsFrom: string;
  preprocessing: Preprocessing;
  /**
   * An int8 export of the same model (serve-demo --int8): the page runs it instead when the model is over
   * INT8_OVER_BYTES (528 MB -> 132 MB for VGG16), unless `?precision=fp32`; `?precision=int8` asks for it always.
   */
  int8?: { url: string; bytes: number };
}

/** Past this size the page prefers the int8 export when it has one: the tab holds the model and ORT copies it. */
export const INT8_OVER_BYTES = 256 * 2 ** 20;

/** What the training page (/train.html) starts from: GET /train.json. */
export const TRAIN_JSON = "/train.json";

export interface TrainSetup {
  /**
   * The `vgg train` checkpoint to fine-tune (serve-demo --checkpoint): its weights' URL, the model description it
   * carries and the preprocessing that description gives; null: the page starts a fresh small model.
   */
  checkpoint: { url: string; meta: ModelMeta; preprocessing: Preprocessing } | null;
  /**
   * The served model itself when `vgg export` wrote it (its arch and options are in its metadata): the page can
   * fine-tune the weights it holds (an fp32 export). Null for other producers.
   */
  exported: { url: string; arch: string; options: Record<string, unknown>; labels: string[]; preprocessing: Preprocessing } | null;
  /** A labelled image set the page can load instead of dropped images (serve-demo --data): raw IDX files. */
  data: { name: string; images: string; labels: string; classes: string[] } | null;
}
