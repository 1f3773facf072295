/** Helpers of the training-step tests: a small safetensors reader (fixtures), running steps, comparing updates. */
import { readFileSync } from "node:fs";
import { buildTrainStep, stepFeeds, type TrainStep, type TrainStepOptions } from "../src/graph/train-step.js";
import { encodeModel } from "../src/onnx/encode.js";
import { createSession, type Session } from "../src/runtime/ort.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import type { VggModel } from "../src/zoo/model.js";

export function readSt(path: string): { tensors: StateDict; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<string, unknown>;
  const base = 8 + n;
  const tensors: StateDict = new Map();
  let metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__") {
      metadata = v as Record<string, string>;
      continue;
    }
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const bytes = buf.subarray(base + e.data_offsets[0], base + e.data_offsets[1]);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    if (e.dtype === "F32") tensors.set(k, { dtype: "float32", shape: e.shape, data: new Float32Array(copy.buffer) });
    else if (e.dtype === "I64") tensors.set(k, { dtype: "int64", shape: e.shape, data: new BigInt64Array(copy.buffer) });
    else throw new Error(`${path}: dtype ${e.dtype}`);
  }
  return { tensors, metadata };
}

export interface StepRunner {
  step: TrainStep;
  session: Session;
  sd: StateDict;
  momentum: StateDict;
  run(x: Tensor, y: Tensor, lr: number, seed?: number): Promise<Record<string, Tensor>>;
}

export async function stepRunner(m: VggModel, opts: TrainStepOptions, sd: StateDict): Promise<StepRunner> {
  const step = buildTrainStep(m, opts);
  const session = await createSession(encodeModel(step.spec), { threads: 2 });
  const r: StepRunner = {
    step,
    session,
    sd,
    momentum: new Map(),
    async run(x, y, lr, seed = 0) {
      const out = await session.run(stepFeeds(step, r.sd, r.momentum, { x, y, lr, seed }));
      const nsd: StateDict = new Map();
      const nm: StateDict = new Map();
      for (const e of step.state) (e.kind === "momentum" ? nm : nsd).set(e.input, out[e.output]);
      r.sd = nsd;
      r.momentum = nm;
      return out;
    },
  };
  return r;
}

export function toNumbers(t: Tensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
}

/** max |a - b| / max |b| (b the reference); 0 when both are all zero. */
export function relMaxErr(a: ArrayLike<number>, b: ArrayLike<number>): { err: number; scale: number; diff: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let diff = 0;
  let scale = 0;
  for (let k = 0; k < a.length; k++) {
    diff = Math.max(diff, Math.abs(a[k] - b[k]));
    scale = Math.max(scale, Math.abs(b[k]));
  }
  return { err: scale === 0 ? diff : diff / scale, scale, diff };
}

/** A deterministic pseudo-random stream for tests (mulberry32). */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
