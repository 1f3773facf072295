/**
 * The engine interface, shared by the two ONNX Runtime wrappers: `ort.ts` (onnxruntime-node, used by everything in
 * Node) and `ort-web.ts` (onnxruntime-web, used by the browser demo). Nothing here imports ONNX Runtime; what the
 * wrappers share beyond the interface is in adapter.ts.
 */
import type { Tensor } from "../tensor.js";

/** Where a Node session runs: the CPU, or the GPU through ORT's WebGPU provider (device.ts resolves "auto"). */
export type Device = "cpu" | "webgpu";

export interface SessionOptions {
  /** Intra-op threads; default: all cores ORT sees (the web twin: the WASM thread count, set once per page). */
  threads?: number;
  /** Write ORT's JSON profile with this prefix (Node only). */
  profilePrefix?: string;
  /** ORT's graph optimisation level; default "all". */
  optimization?: "disabled" | "basic" | "extended" | "all";
  logSeverity?: 0 | 1 | 2 | 3 | 4;
  /** Initializer bytes kept outside the protobuf, by the `location` the model names them with. */
  externalData?: { path: string; data: Uint8Array }[];
  /** Free dims fixed at load time, e.g. {N: 1} (honoured by onnxruntime-web; the Node binding ignores it). */
  freeDimensions?: Record<string, number>;
  /** ORT's memory pattern (one planned block per run; default on). Off for training steps: with the arena it kept
   * the first run's tensors and the planned block both (vgg16_bn 224 batch 8: 17.7 GB peak RSS on, 6.5 GB off). */
  memPattern?: boolean;
  /** ORT's CPU arena (default on; off costs page faults on every large tensor: 1.35x slower steps at 32x32). */
  memArena?: boolean;
  /** Where ORT runs the graph (Node): the CPU (default), or the GPU through its WebGPU provider, nodes it lacks on the
   * CPU. Resolved already (device.ts turns "auto" into one); the browser twin chooses by `backend` instead. */
  device?: Device;
  /** Whether ORT's idle pool threads spin waiting for work (default on). Off for short graphs run between a bigger
   * session's runs: their threads spun on the cores the step then wanted (--ema: 18% slower steps on 2 cores). */
  spinning?: boolean;
}

export interface Session {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  /**
   * Run with the given feeds; returns the requested outputs (all by default) as host tensors. An output named in
   * `into` is also written by ORT into that tensor's buffer (same dtype and shape), which may be a feed's when nothing
   * in the graph reads that feed after the node that writes the output. What is returned for it is the binding's:
   * onnxruntime-node returns a fresh copy of every output, preallocated or not.
   */
  run(feeds: Record<string, Tensor>, outputs?: readonly string[], into?: Record<string, Tensor>): Promise<Record<string, Tensor>>;
  /** Stop profiling and return the profile file's path. */
  endProfiling(): string | undefined;
  release(): Promise<void>;
}
