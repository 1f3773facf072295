/**
 * The one module that imports ONNX Runtime for Node. Everything else hands it ONNX bytes and plain typed arrays.
 * Its browser twin, `ort-web.ts`, wraps onnxruntime-web behind the same `Session` interface (session.ts).
 */
import { availableParallelism } from "node:os";
import * as ort from "onnxruntime-node";
import { shown, VggError } from "../errors.js";
import type { Tensor, TypedData } from "../tensor.js";
import { ORT_DTYPES, type Session, type SessionOptions } from "./session.js";

export type { Session, SessionOptions };

function toOrt(t: Tensor): ort.Tensor {
  const type = t.dtype as ort.Tensor.Type;
  if (!ORT_DTYPES.has(type)) throw new VggError(`unsupported tensor dtype ${t.dtype}`);
  return new ort.Tensor(type, t.data as ort.Tensor.DataType, t.shape);
}

function fromOrt(t: ort.Tensor): Tensor {
  return { dtype: t.type as Tensor["dtype"], shape: [...t.dims], data: t.data as TypedData };
}

/** Create a session from an ONNX model in memory or on disk. */
export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<Session> {
  const o: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: opts.optimization ?? "all",
    executionMode: "sequential",
    logSeverityLevel: opts.logSeverity ?? 3,
  };
  // ORT's own default (0) gave one thread on this 2-core machine (vgg11 b8: 11.3 img/s, against 22.5 with 2): ask for
  // every core Node sees.
  o.intraOpNumThreads = opts.threads ?? availableParallelism();
  if (opts.externalData) o.externalData = opts.externalData;
  if (opts.freeDimensions) o.freeDimensionOverrides = opts.freeDimensions;
  if (opts.memPattern !== undefined) o.enableMemPattern = opts.memPattern;
  if (opts.memArena !== undefined) o.enableCpuMemArena = opts.memArena;
  if (opts.profilePrefix) {
    o.enableProfiling = true;
    o.profileFilePrefix = opts.profilePrefix;
  }
  let s: ort.InferenceSession;
  try {
    s = typeof model === "string" ? await ort.InferenceSession.create(model, o) : await ort.InferenceSession.create(model, o);
  } catch (err) {
    // ORT quotes names from the model as they are: escape control characters so the message stays one line.
    const msg = shown((err instanceof Error ? err.message : String(err)).split("\n")[0], 1000);
    throw new VggError(`ONNX Runtime could not load the model: ${msg}`, typeof model === "string" ? model : undefined);
  }
  return {
    inputNames: s.inputNames,
    outputNames: s.outputNames,
    async run(feeds, outputs) {
      const f: Record<string, ort.Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) f[k] = toOrt(v);
      let r: ort.InferenceSession.ReturnType;
      try {
        r = outputs ? await s.run(f, outputs as string[]) : await s.run(f);
      } catch (err) {
        const msg = (err instanceof Error ? err.message : String(err)).split("\n")[0];
        throw new VggError(`ONNX Runtime failed: ${msg}`);
      }
      const out: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(r)) out[k] = fromOrt(v);
      return out;
    },
    endProfiling() {
      // The Node binding writes the file and returns nothing; the path is prefix_<date>.json.
      s.endProfiling();
      return opts.profilePrefix;
    },
    release: () => s.release(),
  };
}

export const ortVersion: string = ort.env.versions?.common ?? "unknown";
