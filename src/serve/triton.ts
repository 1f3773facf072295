/**
 * A Triton Inference Server model repository from an inference graph: `REPO/NAME/config.pbtxt` (the model
 * configuration, protobuf text format of Triton's model_config.proto) and `REPO/NAME/1/model.onnx` for the ONNX
 * Runtime backend. KServe's Triton runtime serves the same tree (the repository is its storageUri).
 *
 * A model past the protobuf limit (2 GiB) is written as Triton's multi-file ONNX form: `1/model.onnx/` a directory
 * holding `model.onnx` and the initializers as external-data files beside it.
 */
import { existsSync, mkdirSync, renameSync, rmdirSync, rmSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { shown, VggError } from "../errors.js";
import { fsError, syncDir, writeFileAtomic, writeTextAtomic } from "../io/atomic.js";
import { encodeModelParts, type ModelSpec, type ValueSpec } from "../onnx/encode.js";
import type { DType } from "../tensor.js";

/** One input or output of the model configuration; `dims` leave the batch dimension out (max_batch_size > 0). */
export interface TritonTensor {
  name: string;
  dataType: string;
  dims: number[];
}

export interface TritonModelConfig {
  name: string;
  maxBatchSize: number;
  maxQueueDelayMicroseconds: number;
  inputs: TritonTensor[];
  outputs: TritonTensor[];
}

/** The defaults of `vgg serve`'s batcher, which `vgg export --triton-repo` mirrors. */
export const TRITON_DEFAULTS = { maxBatch: 8, maxDelayMs: 5 } as const;

/** Past this many bytes in one file the model goes to external data (protobuf refuses messages of 2 GiB and more). */
export const EXTERNAL_DATA_FROM = 2 ** 31;

/** Initializers of at least this many bytes go to external-data files when a model does (the small ones stay inline). */
const EXTERNAL_MIN_BYTES = 4096;

const TRITON_TYPE: Record<DType, string> = {
  float32: "TYPE_FP32",
  float16: "TYPE_FP16",
  float64: "TYPE_FP64",
  int64: "TYPE_INT64",
  int32: "TYPE_INT32",
  int8: "TYPE_INT8",
  uint8: "TYPE_UINT8",
  bool: "TYPE_BOOL",
};

/**
 * A name Triton takes as a directory in the repository and in URLs (/v2/models/NAME/infer): letters, digits,
 * `_`, `-` and `.`, not starting with `.` or `-`.
 */
export function checkModelName(name: string, from = "--name"): void {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.-]*$/.test(name) || name.length > 200)
    throw new VggError(
      `model name '${shown(name)}' (${from}) is not usable as a Triton model name: letters, digits, _ - . only, not starting with . or -${from === "--name" ? "" : "; pass --name"}`,
    );
}

function tensorOf(v: ValueSpec, what: string): TritonTensor {
  const dims = v.dims;
  if (!dims || dims.length === 0 || typeof dims[0] !== "string")
    throw new VggError(`the graph's ${what} '${v.name}' has no free batch dimension, which Triton's batching needs`);
  const rest = dims.slice(1);
  if (!rest.every((d): d is number => typeof d === "number"))
    throw new VggError(`the graph's ${what} '${v.name}' has free dimensions besides the batch: [${dims.join(", ")}]`);
  return { name: v.name, dataType: TRITON_TYPE[v.dtype], dims: rest };
}

/** The model configuration of an inference graph (a free first dimension on every input and output). */
export function tritonConfig(spec: ModelSpec, o: { name: string; maxBatch: number; maxDelayMs: number }): TritonModelConfig {
  if (!Number.isSafeInteger(o.maxBatch) || o.maxBatch < 1) throw new VggError(`max batch ${o.maxBatch} must be an integer of at least 1`);
  if (!Number.isFinite(o.maxDelayMs) || o.maxDelayMs < 0) throw new VggError(`max delay ${o.maxDelayMs} ms must be a number of at least 0`);
  return {
    name: o.name,
    maxBatchSize: o.maxBatch,
    maxQueueDelayMicroseconds: Math.round(o.maxDelayMs * 1000),
    inputs: spec.inputs.map((v) => tensorOf(v, "input")),
    outputs: spec.outputs.map((v) => tensorOf(v, "output")),
  };
}

/** A protobuf text-format string literal: UTF-8, with quotes, backslashes and control bytes escaped. */
export function pbString(s: string): string {
  let out = '"';
  for (const b of Buffer.from(s, "utf8")) {
    if (b === 0x22) out += '\\"';
    else if (b === 0x5c) out += "\\\\";
    else if (b === 0x0a) out += "\\n";
    else if (b === 0x0d) out += "\\r";
    else if (b === 0x09) out += "\\t";
    else if (b < 0x20 || b === 0x7f || b >= 0x80) out += `\\${b.toString(8).padStart(3, "0")}`;
    else out += String.fromCharCode(b);
  }
  return `${out}"`;
}

function tensorBlock(field: "input" | "output", ts: TritonTensor[]): string[] {
  const items = ts.map((t, k) =>
    [
      "  {",
      `    name: ${pbString(t.name)}`,
      `    data_type: ${t.dataType}`,
      `    dims: [ ${t.dims.join(", ")} ]`,
      `  }${k < ts.length - 1 ? "," : ""}`,
    ].join("\n"),
  );
  return [`${field} [`, ...items, "]"];
}

/** config.pbtxt's text (Triton's model_configuration.md layout). */
export function configPbtxt(c: TritonModelConfig): string {
  return `${[
    `name: ${pbString(c.name)}`,
    `platform: "onnxruntime_onnx"`,
    `max_batch_size: ${c.maxBatchSize}`,
    ...tensorBlock("input", c.inputs),
    ...tensorBlock("output", c.outputs),
    "dynamic_batching {",
    `  max_queue_delay_microseconds: ${c.maxQueueDelayMicroseconds}`,
    "}",
  ].join("\n")}\n`;
}

/**
 * Refuses a model name the repository already holds (its version 1 or its config.pbtxt): nothing is overwritten.
 * Called before the export's work starts and again when writing.
 */
export function checkRepoTarget(repo: string, name: string): void {
  const dir = join(repo, name);
  for (const p of [join(dir, "1"), join(dir, "config.pbtxt")])
    if (existsSync(p)) throw new VggError("already exists; remove it or pass another --name (nothing is overwritten)", p);
}

export interface TritonRepoWritten {
  /** REPO/NAME */
  dir: string;
  /** The model file: REPO/NAME/1/model.onnx, or REPO/NAME/1/model.onnx/model.onnx with external data. */
  modelFile: string;
  /** External-data files beside the model file (0 for a single-file model). */
  externalFiles: number;
  /** Bytes of the model file and its external data. */
  bytes: number;
}

/**
 * Writes REPO/NAME/{config.pbtxt, 1/model.onnx}. Version 1 is built in a hidden directory beside it (Triton
 * ignores version directories that are not numbers) and renamed into place last, after config.pbtxt, so Triton
 * never sees a half-written version; on failure what this call created is removed. REPO/NAME/1 or config.pbtxt
 * already there is refused. `externalFrom`: the single-file size from which the model goes to external data.
 */
export function writeTritonRepo(
  repo: string,
  spec: ModelSpec,
  config: TritonModelConfig,
  opts: { externalFrom?: number } = {},
): TritonRepoWritten {
  checkModelName(config.name);
  checkRepoTarget(repo, config.name);
  const dir = join(repo, config.name);
  const version = join(dir, "1");
  const configFile = join(dir, "config.pbtxt");
  const createdDir = !existsSync(dir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw fsError(dir, err, "create the directory");
  }
  const stage = join(dir, `.1.${process.pid}.${Math.random().toString(36).slice(2, 10)}.tmp`);
  let wroteConfig = false;
  try {
    mkdirSync(stage);
    const whole = encodeModelParts(spec);
    let written: Omit<TritonRepoWritten, "dir">;
    if (whole.length < (opts.externalFrom ?? EXTERNAL_DATA_FROM)) {
      writeFileAtomic(join(stage, "model.onnx"), whole.parts);
      written = { modelFile: join(version, "model.onnx"), externalFiles: 0, bytes: whole.length };
    } else {
      const { parts, length, external } = encodeModelParts(spec, { externalMinBytes: EXTERNAL_MIN_BYTES });
      const sub = join(stage, "model.onnx");
      mkdirSync(sub);
      for (const e of external) writeFileAtomic(join(sub, e.path), [e.data]);
      writeFileAtomic(join(sub, "model.onnx"), parts);
      syncDir(sub);
      const bytes = length + external.reduce((n, e) => n + e.data.byteLength, 0);
      written = { modelFile: join(version, "model.onnx", "model.onnx"), externalFiles: external.length, bytes };
    }
    syncDir(stage);
    writeTextAtomic(configFile, configPbtxt(config));
    wroteConfig = true;
    try {
      renameSync(stage, version);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST")
        throw new VggError("already exists; remove it or pass another --name (nothing is overwritten)", version);
      throw err;
    }
    syncDir(dir);
    return { dir, ...written };
  } catch (err) {
    rmSync(stage, { recursive: true, force: true });
    if (wroteConfig) {
      try {
        unlinkSync(configFile);
      } catch {
        // already failing; the original error is the one to report
      }
    }
    if (createdDir) {
      try {
        rmdirSync(dir);
      } catch {
        // not empty: something else is in it now
      }
    }
    // An operating-system failure becomes a one-line error naming the directory; anything else is a bug.
    throw typeof (err as NodeJS.ErrnoException)?.code === "string" ? fsError(dir, err, "write") : err;
  }
}
