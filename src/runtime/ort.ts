/**
 * The one module that imports ONNX Runtime for Node. Everything else hands it ONNX bytes and plain typed arrays.
 * Its browser twin, `ort-web.ts`, wraps onnxruntime-web behind the same `Session` interface (session.ts); what the
 * two share (option mapping, model loading, tensor conversion, `run`) is in adapter.ts.
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { shown, VggError } from "../errors.js";
import { adaptSession, firstLine, loadModel, ortOptions } from "./adapter.js";
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
  let s: ort.InferenceSession;
  try {
    s = await loadModel(ort, model, o);
  } catch (err) {
    // ORT quotes names from the model as they are: escape control characters so the message stays one line.
    throw new VggError(
      `ONNX Runtime could not load the model: ${shown(firstLine(err), 1000)}`,
      typeof model === "string" ? model : undefined,
    );
  }
  // The Node binding writes the profile itself and returns nothing; its path is prefix_<date>.json.
  return adaptSession(ort, s, opts.profilePrefix);
}

export const ortVersion: string = ort.env.versions?.common ?? "unknown";
