/** The messages between the training page (train.ts) and its worker (train-worker.ts). */
import type { ModelMeta } from "../../src/weights/meta.js";
import type { ModelOptions } from "../../src/zoo/model.js";

/** What trains: everything, the classifier (the CLI's `--freeze features`), or the last FC layer only. */
export type Trains = "all" | "classifier" | "last";

export interface TrainInit {
  type: "init";
  /** ORT's .mjs/.wasm files, an absolute URL on this origin. */
  wasmPaths: string;
  threads?: number;
  /** "auto": WebGPU when the browser has an adapter and the step runs there, else WASM (and the page says why). */
  backend: "auto" | "wasm" | "webgpu";
  arch: string;
  options: ModelOptions;
  /**
   * The weights to start from: a `vgg train` checkpoint's safetensors bytes, or an fp32 `vgg export`'s ONNX bytes
   * (its initializers carry torchvision's names); null: a fresh initialisation from `seed`.
   */
  weights: { format: "safetensors" | "onnx"; bytes: ArrayBuffer } | null;
  /** The description the downloaded checkpoint carries (labels, normalisation): `vgg predict` reads it. */
  meta: ModelMeta;
  trains: Trains;
  batchSize: number;
  lr: number;
  momentum: number;
  weightDecay: number;
  seed: number;
}

export type ToWorker =
  | TrainInit
  /** The training images, preprocessed: x [N, C, H, W] row-major, labels y [N]; used in order, no shuffle. */
  | { type: "data"; x: Float32Array; y: Int32Array }
  | { type: "train"; steps: number }
  | { type: "stop" }
  | { type: "classify"; id: number; x: Float32Array }
  | { type: "export" };

export interface StepReport {
  step: number;
  epoch: number;
  loss: number;
  /** Top-1 hits over the batch. */
  acc: number;
  ms: number;
  imagesPerSecond: number;
}

export type FromWorker =
  | { type: "ready"; backend: string; fallbackReason?: string; threads: number; params: number; trained: number; summary: string }
  /** The step failed on WebGPU and runs on WASM from now on. */
  | { type: "fallback"; reason: string }
  | ({ type: "step" } & StepReport)
  | { type: "stopped"; step: number }
  | { type: "logits"; id: number; data: Float32Array }
  | { type: "weights"; bytes: Uint8Array; step: number }
  | { type: "error"; message: string };
