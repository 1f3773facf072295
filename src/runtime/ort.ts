/**
 * The one module that imports ONNX Runtime for Node. Everything else hands it ONNX bytes and plain typed arrays.
 * Its browser twin, `ort-web.ts`, wraps onnxruntime-web behind the same `Session` interface (session.ts); what the
 * two share (option mapping, model loading, tensor conversion, `run`) is in adapter.ts.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { shown, VggError } from "../errors.js";
import { adaptSession, firstLine, loadModel, ortOptions } from "./adapter.js";
import { noAdapterMessage, webGpuStatus } from "./device.js";
import type { Session, SessionOptions } from "./session.js";

export type { Session, SessionOptions };

/** Create a session from an ONNX model in memory or on disk. */
export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<Session> {
  const o = ortOptions(opts);
  // ORT's own default (0) gave one thread on this 2-core machine (vgg11 b8: 11.3 img/s, against 22.5 with 2): ask for
  // every core Node sees.
  o.intraOpNumThreads = opts.threads ?? availableParallelism();
  if (opts.memPattern !== undefined) o.enableMemPattern = opts.memPattern;
  if (opts.memArena !== undefined) o.enableCpuMemArena = opts.memArena;
  if (opts.profilePrefix) {
    o.enableProfiling = true;
    o.profileFilePrefix = opts.profilePrefix;
  }
  if (opts.device === "webgpu") {
    // Asked first, in a child process: without an adapter, ORT's own attempt would leave Dawn's warnings on stderr.
    const s = await webGpuStatus();
    if (!s.available) throw new VggError(noAdapterMessage(s.reason));
    // Nodes the provider lacks run on the CPU provider ORT always adds, with copies between the two (ORT's CPU fallback
    // is on by default); on an H200 that was LRN, int64 arithmetic (BN's counter, dropout's hash) and the loss's
    // LogSoftmax and OneHot (bench/results/webgpu.md). Outputs come back to host memory (ORT's default
    // preferredOutputLocation, "cpu"), as the Session interface promises.
    o.executionProviders = [{ name: "webgpu" }];
  }
  let s: ort.InferenceSession;
  try {
    s = await loadModel(ort, model, o);
  } catch (err) {
    // ORT quotes names from the model as they are: escape control characters so the message stays one line.
    throw new VggError(
      `ONNX Runtime could not load the model${opts.device === "webgpu" ? " on WebGPU" : ""}: ${shown(firstLine(err), 1000)}`,
      typeof model === "string" ? model : undefined,
    );
  }
  // The Node binding writes the profile itself and returns nothing; its path is prefix_<date>.json.
  return adaptSession(ort, s, opts.profilePrefix);
}

export const ortVersion: string = ort.env.versions?.common ?? "unknown";
