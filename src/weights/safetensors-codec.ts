/**
 * The safetensors format as bytes (https://github.com/huggingface/safetensors), for Node and the browser alike: an
 * 8-byte little-endian header length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]},
 * "__metadata__": {...}}`, then the data. safetensors.ts reads and writes files with it; the training page encodes
 * the weights it downloads with it.
 *
 * The reader follows the format's own validation rules: offsets inside the data, sizes matching shape and dtype,
 * and a data section that the tensors cover exactly (no overlaps, no holes), so a file cannot smuggle extra bytes.
 */
import { shown, VggError } from "../errors.js";
import { checkTensor, ITEMSIZE, tensorBytes, typedFromBytes } from "../io/bytes.js";
import { type DType, numel, type StateDict, type Tensor, type TypedData } from "../tensor.js";

/** The reference implementation refuses headers above 100 MB; so do we, before allocating them. */
const MAX_HEADER = 100_000_000;

/** Dtypes read as-is; BF16 and I16 have no Tensor dtype and are widened exactly to float32 and int32. */
const FROM_FILE: Record<string, { dtype: DType; itemsize: number; widen?: "bf16" | "i16" }> = {
  F32: { dtype: "float32", itemsize: 4 },
  F16: { dtype: "float16", itemsize: 2 },
  F64: { dtype: "float64", itemsize: 8 },
  I64: { dtype: "int64", itemsize: 8 },
  I32: { dtype: "int32", itemsize: 4 },
  I8: { dtype: "int8", itemsize: 1 },
  U8: { dtype: "uint8", itemsize: 1 },
  BOOL: { dtype: "bool", itemsize: 1 },
  BF16: { dtype: "float32", itemsize: 2, widen: "bf16" },
  I16: { dtype: "int32", itemsize: 2, widen: "i16" },
};
/** Valid safetensors dtypes this project has no use for, named so the error says "unsupported", not "unknown". */
const UNSUPPORTED = new Set(["U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"]);

const TO_FILE: Record<DType, string> = {
  float32: "F32",
  float16: "F16",
  float64: "F64",
  int64: "I64",
  int32: "I32",
  int8: "I8",
  uint8: "U8",
  bool: "BOOL",
};

export interface SafetensorsFile {
  tensors: StateDict;
  /** The `__metadata__` string map, empty when the file has none. */
  metadata: Record<string, string>;
}

interface Entry {
  name: string;
  dtype: DType;
  itemsize: number;
  widen?: "bf16" | "i16";
  shape: number[];
  begin: number;
  end: number;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function parseEntry(name: string, v: unknown, dataLen: number, file: string): Entry {
  const bad = (msg: string) => new VggError(`tensor '${shown(name)}': ${msg}`, file);
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw bad("header entry is not an object");
  const o = v as Record<string, unknown>;
  if (typeof o.dtype !== "string") throw bad("dtype is missing");
  const dt = Object.hasOwn(FROM_FILE, o.dtype) ? FROM_FILE[o.dtype] : undefined;
  if (!dt) {
    const what = `'${shown(o.dtype, 20)}'`;
    throw bad(UNSUPPORTED.has(o.dtype) ? `dtype ${what} is not supported` : `unknown dtype ${what}`);
  }
  const shape = o.shape;
  if (!Array.isArray(shape) || !shape.every(isCount)) throw bad("shape must be a list of non-negative integers");
  const offs = o.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every(isCount)) throw bad("data_offsets must be [begin, end]");
  const [begin, end] = offs as number[];
  if (begin > end || end > dataLen) {
    const cut = end > dataLen ? " (truncated file?)" : "";
    throw bad(`data_offsets [${begin}, ${end}] are outside the ${dataLen}-byte data section${cut}`);
  }
  const count = numel(shape as number[]);
  if (count * dt.itemsize !== end - begin) {
    throw bad(`shape [${shape.join(", ")}] of ${shown(o.dtype)} needs ${count * dt.itemsize} bytes but data_offsets span ${end - begin}`);
  }
  return { name, dtype: dt.dtype, itemsize: dt.itemsize, widen: dt.widen, shape: (shape as number[]).slice(), begin, end };
}

function toTensor(e: Entry, bytes: Uint8Array): Tensor {
  if (e.widen === "bf16") {
    const src = typedFromBytes("float16", bytes) as Uint16Array;
    const out = new Float32Array(src.length);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
    return { dtype: "float32", shape: e.shape, data: out };
  }
  if (e.widen === "i16") {
    const b = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
    return { dtype: "int32", shape: e.shape, data: Int32Array.from(new Int16Array(b.buffer, b.byteOffset, b.byteLength / 2)) };
  }
  const data: TypedData = typedFromBytes(e.dtype, bytes);
  return { dtype: e.dtype, shape: e.shape, data };
}

/** Random access to the bytes being read: a file (io/atomic's ReadFile) or bytes in memory (bytesSource). */
export interface ByteSource {
  size: number;
  read(offset: number, length: number): Uint8Array;
}

export function bytesSource(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

/**
 * Parses safetensors from `f`; errors name `file`. With `tensors: false` only the header is read (and checked in
 * full): the metadata, and an empty tensor map.
 */
export function decodeSafetensors(f: ByteSource, file: string, opts: { tensors?: boolean } = {}): SafetensorsFile {
  if (f.size < 8) throw new VggError(`truncated safetensors file (${f.size} bytes, no header length)`, file);
  const lenBytes = f.read(0, 8);
  const n = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(f.size - 8))
    throw new VggError(`safetensors header length ${n} is past the end of the file (${f.size} bytes): truncated file?`, file);
  if (n > BigInt(MAX_HEADER)) throw new VggError(`safetensors header length ${n} exceeds the 100 MB limit`, file);
  const headerLen = Number(n);
  const raw = f.read(8, headerLen);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch {
    throw new VggError("safetensors header is not valid UTF-8", file);
  }
  if (!text.startsWith("{")) throw new VggError("safetensors header does not start with '{'", file);
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (err) {
    // V8 quotes the text around the error, control characters included: escape them to keep one line.
    throw new VggError(`safetensors header is not valid JSON (${shown((err as Error).message.split("\n")[0], 160)})`, file);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new VggError("safetensors header is not a JSON object", file);
  }
  const dataStart = 8 + headerLen;
  const dataLen = f.size - dataStart;
  const meta: [string, string][] = [];
  const entries: Entry[] = [];
  for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof v !== "object" || v === null || Array.isArray(v)) throw new VggError("__metadata__ is not an object", file);
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== "string") throw new VggError(`__metadata__ value for '${shown(k)}' is not a string`, file);
        meta.push([k, s]);
      }
      continue;
    }
    entries.push(parseEntry(name, v, dataLen, file));
  }
  const byOffset = entries.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let prev: Entry | undefined;
  for (const e of byOffset) {
    if (e.begin < covered)
      throw new VggError(`tensors '${shown(prev?.name ?? "")}' and '${shown(e.name)}' overlap in the data section`, file);
    if (e.begin > covered) throw new VggError(`data bytes ${covered}..${e.begin} belong to no tensor`, file);
    covered = e.end;
    prev = e;
  }
  if (covered !== dataLen) throw new VggError(`data bytes ${covered}..${dataLen} belong to no tensor`, file);
  const tensors: StateDict = new Map();
  if (opts.tensors !== false) for (const e of entries) tensors.set(e.name, toTensor(e, f.read(dataStart + e.begin, e.end - e.begin)));
  // fromEntries defines own properties, so a "__proto__" key stays a key instead of replacing the prototype.
  return { tensors, metadata: Object.fromEntries(meta) };
}

/**
 * The bytes of `sd` as safetensors, as parts to write or concatenate. The header keeps the map's order; the data is
 * laid out widest dtype first so every tensor starts aligned to its element size, which lets memory-mapping readers
 * use it without copies.
 */
export function encodeSafetensors(sd: StateDict, metadata: Record<string, string> | undefined, file: string): Uint8Array[] {
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new VggError(`metadata value for '${shown(k)}' is not a string`, file);
    }
    parts.push(`"__metadata__":${JSON.stringify(metadata)}`);
  }
  const names = [...sd.keys()];
  for (const name of names) {
    if (typeof name !== "string" || name.length === 0 || name === "__metadata__") {
      throw new VggError(`invalid tensor name '${shown(String(name))}'`, file);
    }
    checkTensor(sd.get(name) as Tensor, name, file);
  }
  const layout = names
    .map((name, i) => ({ name, i, t: sd.get(name) as Tensor }))
    .sort((a, b) => ITEMSIZE[b.t.dtype] - ITEMSIZE[a.t.dtype] || a.i - b.i);
  const offsets = new Map<string, [number, number]>();
  let pos = 0;
  for (const { name, t } of layout) {
    offsets.set(name, [pos, pos + t.data.byteLength]);
    pos += t.data.byteLength;
  }
  for (const name of names) {
    const t = sd.get(name) as Tensor;
    const entry = { dtype: TO_FILE[t.dtype], shape: t.shape, data_offsets: offsets.get(name) };
    parts.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
  }
  let header = `{${parts.join(",")}}`;
  const headerBytes = new TextEncoder().encode(header);
  // Spaces pad the header so the data starts 8-byte aligned, as the format recommends.
  const padded = Math.ceil(headerBytes.byteLength / 8) * 8;
  header += " ".repeat(padded - headerBytes.byteLength);
  const len = new Uint8Array(8);
  new DataView(len.buffer).setBigUint64(0, BigInt(padded), true);
  return [len, new TextEncoder().encode(header), ...layout.map(({ t }) => tensorBytes(t))];
}
