/**
 * What the two ONNX Runtime wrappers share: `ort.ts` (onnxruntime-node) and `ort-web.ts` (onnxruntime-web) each
 * import their binding and hand it here, for ORT's session options, model loading, and a loaded session behind the
 * `Session` interface (session.ts). Both bindings re-export onnxruntime-common's classes, so its types serve for
 * either; the import of it is type-only, so nothing here loads ONNX Runtime, and nothing here is Node-only. Only the
 * wrappers import this module: the types the rest of the project sees (session.ts) stay free of ORT's.
 */
import type { InferenceSession, Tensor as OrtTensor } from "onnxruntime-common";
import { VggError } from "../errors.js";
import type { Tensor, TypedData } from "../tensor.js";
import type { Session, SessionOptions } from "./session.js";

/** The tensor dtypes both ORT bindings take, under the same names this project uses. */
const ORT_DTYPES: ReadonlySet<string> = new Set(["float32", "float16", "float64", "int64", "int32", "int8", "uint8", "bool"]);

/** What the shared code takes of a binding: `import * as ort from "onnxruntime-node"` (or "onnxruntime-web"). */
export interface OrtBinding {
  readonly Tensor: typeof OrtTensor;
  readonly InferenceSession: typeof InferenceSession;
}

/** An error's message up to its first line break (ORT's messages run on with details and stack traces). */
export function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

/** ORT's session options for what both bindings honour; each wrapper adds its own (threads, backend, ...). */
export function ortOptions(opts: SessionOptions): InferenceSession.SessionOptions {
  const o: InferenceSession.SessionOptions = {
    graphOptimizationLevel: opts.optimization ?? "all",
    executionMode: "sequential",
    logSeverityLevel: opts.logSeverity ?? 3,
  };
  if (opts.externalData) o.externalData = opts.externalData;
  if (opts.freeDimensions) o.freeDimensionOverrides = opts.freeDimensions;
  if (opts.spinning === false) o.extra = { session: { intra_op: { allow_spinning: "0" } } };
  return o;
}

/** Loads a model from memory or from a path (Node) or URL (browser); errors are ORT's, for the caller to word. */
export function loadModel(ort: OrtBinding, model: Uint8Array | string, o: InferenceSession.SessionOptions): Promise<InferenceSession> {
  return typeof model === "string" ? ort.InferenceSession.create(model, o) : ort.InferenceSession.create(model, o);
}

function toOrt(ort: OrtBinding, t: Tensor): OrtTensor {
  const type = t.dtype as OrtTensor.Type;
  if (!ORT_DTYPES.has(type)) throw new VggError(`unsupported tensor dtype ${t.dtype}`);
  return new ort.Tensor(type, t.data as OrtTensor.DataType, t.shape);
}

/** A host copy of an output (WebGPU outputs are read back from the GPU; CPU ones are returned as they are). */
async function fromOrt(t: OrtTensor): Promise<Tensor> {
  return { dtype: t.type as Tensor["dtype"], shape: [...t.dims], data: (await t.getData(true)) as TypedData };
}

/** ORT's fetches: the outputs to write into the caller's tensors (`into`), the rest (null) for ORT to allocate. */
function fetchesInto(ort: OrtBinding, names: readonly string[], into: Record<string, Tensor>): Record<string, OrtTensor | null> {
  const fetches: Record<string, OrtTensor | null> = {};
  for (const n of names) fetches[n] = into[n] ? toOrt(ort, into[n]) : null;
  return fetches;
}

/**
 * A loaded ORT session behind the `Session` interface: feeds in and outputs out as host tensors, failures as one-line
 * VggErrors. `profileFile` is what `endProfiling` returns (the binding writes the profile itself).
 */
export function adaptSession(ort: OrtBinding, s: InferenceSession, profileFile?: string): Session {
  return {
    inputNames: s.inputNames,
    outputNames: s.outputNames,
    async run(feeds, outputs, into) {
      const f: Record<string, OrtTensor> = {};
      for (const [k, v] of Object.entries(feeds)) f[k] = toOrt(ort, v);
      let r: InferenceSession.ReturnType;
      try {
        if (into) r = await s.run(f, fetchesInto(ort, outputs ?? s.outputNames, into));
        else r = outputs ? await s.run(f, outputs as string[]) : await s.run(f);
      } catch (err) {
        throw new VggError(`ONNX Runtime failed: ${firstLine(err)}`);
      } finally {
        // What ORT made of the feeds (GPU copies on WebGPU); a CPU feed only lets go of the caller's array.
        for (const t of Object.values(f)) t.dispose();
      }
      const out: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(r)) out[k] = await fromOrt(v);
      return out;
    },
    endProfiling() {
      s.endProfiling();
      return profileFile;
    },
    release: () => s.release(),
  };
}
