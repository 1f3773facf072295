/**
 * The Open Inference Protocol's tensors (KServe v2, Triton's HTTP API): an inference request parsed from JSON, or
 * from JSON plus Triton's binary tensor data extension (`Inference-Header-Content-Length`: the JSON header, then each
 * input with `parameters.binary_data_size` as raw little-endian bytes, in order); and the response encoded the same
 * two ways. Pure functions: no model here, only the protocol. Every refusal is a ProtocolError with an HTTP status.
 */
import { numel, type TypedData } from "../tensor.js";

/** A request the server answers with `status` and `{"error": message}`. */
export class ProtocolError extends Error {
  constructor(
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = "ProtocolError";
  }
}

type Ctor = { new (n: number): TypedData; BYTES_PER_ELEMENT: number };

/** The protocol's numeric datatypes and the typed arrays that hold them (FP16 as raw uint16 bits). */
const DATATYPES: Record<string, Ctor> = {
  BOOL: Uint8Array,
  UINT8: Uint8Array,
  INT8: Int8Array,
  INT32: Int32Array,
  INT64: BigInt64Array as unknown as Ctor,
  FP16: Uint16Array,
  FP32: Float32Array,
  FP64: Float64Array,
};
const UNSUPPORTED = new Set(["UINT16", "UINT32", "UINT64", "INT16", "BF16", "BYTES"]);

export interface RequestTensor {
  name: string;
  shape: number[];
  datatype: string;
  data: TypedData;
}

export interface RequestedOutput {
  name: string;
  /** Return this output as binary data (Triton's extension). */
  binary: boolean;
}

export interface InferRequest {
  id?: string;
  inputs: RequestTensor[];
  /** The outputs asked for; undefined: all of the model's. */
  outputs?: RequestedOutput[];
  /** Request-level `binary_data_output`: outputs not named in `outputs` come back binary. */
  binaryOutputs: boolean;
}

export interface ResponseTensor {
  name: string;
  shape: number[];
  datatype: string;
  data: TypedData;
  binary: boolean;
}

/** The most elements one request's tensor may declare (the body limit bounds the real data long before). */
const MAX_ELEMENTS = 2 ** 28;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Parses an infer request. `headerLength` is the `Inference-Header-Content-Length` header's value when the body
 * carries binary data after its JSON header.
 */
export function parseInferRequest(body: Uint8Array, headerLength?: string): InferRequest {
  let jsonEnd = body.length;
  if (headerLength !== undefined) {
    if (!/^\d+$/.test(headerLength.trim()))
      throw new ProtocolError(`Inference-Header-Content-Length '${headerLength}' is not a byte count`);
    jsonEnd = Number(headerLength);
    if (jsonEnd > body.length)
      throw new ProtocolError(`Inference-Header-Content-Length ${jsonEnd} is beyond the body's ${body.length} bytes`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body.buffer, body.byteOffset, jsonEnd).toString("utf8"));
  } catch (err) {
    throw new ProtocolError(`the request body is not valid JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw new ProtocolError("the request body must be a JSON object with 'inputs'");
  if (!Array.isArray(doc.inputs) || doc.inputs.length === 0) throw new ProtocolError("the request has no 'inputs' (a non-empty array)");
  const binary = { body, at: jsonEnd, jsonEnd };
  const inputs = doc.inputs.map((t, i) => parseInput(t, i, binary));
  if (binary.at !== body.length) {
    throw new ProtocolError(`the body has ${body.length - binary.at} bytes after the inputs' binary data (binary_data_size too small?)`);
  }
  const params = isObject(doc.parameters) ? doc.parameters : {};
  const binaryOutputs = params.binary_data_output === true;
  let outputs: RequestedOutput[] | undefined;
  if (doc.outputs !== undefined) {
    if (!Array.isArray(doc.outputs)) throw new ProtocolError("'outputs' must be an array of {\"name\": ...}");
    outputs = doc.outputs.map((o, i) => {
      if (!isObject(o) || typeof o.name !== "string") throw new ProtocolError(`outputs[${i}] has no 'name'`);
      const p = isObject(o.parameters) ? o.parameters : {};
      return { name: o.name, binary: p.binary_data === undefined ? binaryOutputs : p.binary_data === true };
    });
  }
  const id = typeof doc.id === "string" ? doc.id : undefined;
  return { id, inputs, outputs, binaryOutputs };
}

function parseInput(t: unknown, i: number, binary: { body: Uint8Array; at: number; jsonEnd: number }): RequestTensor {
  if (!isObject(t)) throw new ProtocolError(`inputs[${i}] is not an object`);
  const name = t.name;
  if (typeof name !== "string") throw new ProtocolError(`inputs[${i}] has no 'name'`);
  const where = `input '${name}'`;
  if (typeof t.datatype !== "string") throw new ProtocolError(`${where} has no 'datatype'`);
  const datatype = t.datatype;
  const ctor = DATATYPES[datatype];
  if (!ctor) {
    const why = UNSUPPORTED.has(datatype) ? "is not supported here" : "is not a datatype of the protocol";
    throw new ProtocolError(`${where}: datatype '${datatype}' ${why} (models here take FP32)`);
  }
  const shape = parseShape(t.shape, where);
  const count = numel(shape);
  if (count > MAX_ELEMENTS)
    throw new ProtocolError(`${where}: shape [${shape.join(", ")}] is ${count} elements, over the limit of ${MAX_ELEMENTS}`, 413);
  const params = isObject(t.parameters) ? t.parameters : {};
  const size = params.binary_data_size;
  let data: TypedData;
  if (size !== undefined) {
    if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0)
      throw new ProtocolError(`${where}: binary_data_size must be a byte count`);
    if (size !== count * ctor.BYTES_PER_ELEMENT) {
      throw new ProtocolError(
        `${where}: binary_data_size ${size} is not ${count} ${datatype} elements (${count * ctor.BYTES_PER_ELEMENT} bytes)`,
      );
    }
    if (binary.at + size > binary.body.length)
      throw new ProtocolError(`${where}: the body ends ${binary.at + size - binary.body.length} bytes short of its binary data`);
    data = new ctor(count);
    new Uint8Array(data.buffer).set(binary.body.subarray(binary.at, binary.at + size));
    binary.at += size;
    if (t.data !== undefined) throw new ProtocolError(`${where} has both binary data and 'data'`);
  } else {
    if (t.data === undefined) throw new ProtocolError(`${where} has no 'data' (and no binary_data_size)`);
    // Each JSON element takes 2 bytes at least ("0,"): a shape beyond that is refused before its array is allocated.
    if (count > binary.jsonEnd / 2)
      throw new ProtocolError(`${where}: shape [${shape.join(", ")}] is ${count} elements, more than ${binary.jsonEnd} bytes of JSON hold`);
    data = fromJson(t.data, ctor, datatype, count, shape.length, where);
  }
  return { name, shape, datatype, data };
}

/** A size as a message shows it: String() of a nested array recurses (a deep one overflows the stack). */
const shown = (d: unknown) =>
  typeof d === "number" ? String(d) : typeof d === "string" ? JSON.stringify(d.slice(0, 20)) : d === null ? "null" : typeof d;

function parseShape(s: unknown, where: string): number[] {
  if (!Array.isArray(s)) throw new ProtocolError(`${where} has no 'shape' (an array of sizes)`);
  if (s.length > 8) throw new ProtocolError(`${where}: shape has ${s.length} dimensions`);
  for (const d of s) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0)
      throw new ProtocolError(`${where}: shape [${s.map(shown).join(", ")}] has a size that is not a non-negative integer`);
  }
  return s as number[];
}

/** `data` as JSON: flat or nested row-major (no deeper than the shape's rank); every leaf a number (booleans for BOOL). */
function fromJson(v: unknown, ctor: Ctor, datatype: string, count: number, rank: number, where: string): TypedData {
  const out = new ctor(count);
  let n = 0;
  const put = (x: unknown, depth: number): void => {
    if (Array.isArray(x)) {
      // Bounded, so that nesting cannot exhaust the stack (JSON.parse itself takes any depth).
      if (depth >= Math.max(rank, 1)) throw new ProtocolError(`${where}: 'data' is nested deeper than its shape's ${rank} dimensions`);
      for (const y of x) put(y, depth + 1);
      return;
    }
    if (n >= count) throw new ProtocolError(`${where}: 'data' holds more than the ${count} elements its shape says`);
    let num: number;
    if (typeof x === "number") num = x;
    else if (typeof x === "boolean" && datatype === "BOOL") num = x ? 1 : 0;
    else {
      const shown = typeof x === "string" ? JSON.stringify(x.slice(0, 40)) : x === null ? "null" : typeof x;
      throw new ProtocolError(`${where}: 'data' holds ${shown}, not a number`);
    }
    if (datatype === "INT64") {
      if (!Number.isSafeInteger(num)) throw new ProtocolError(`${where}: ${num} is not an integer`);
      (out as BigInt64Array)[n++] = BigInt(num);
    } else if (datatype !== "FP32" && datatype !== "FP64" && datatype !== "FP16" && !Number.isInteger(num)) {
      throw new ProtocolError(`${where}: ${num} is not an integer (${datatype})`);
    } else (out as Float32Array)[n++] = num;
  };
  put(v, 0);
  if (n !== count) throw new ProtocolError(`${where}: 'data' holds ${n} elements, its shape says ${count}`);
  return out;
}

/** The protocol's name for a tensor's dtype. */
export function datatypeOf(data: TypedData): string {
  if (data instanceof Float32Array) return "FP32";
  if (data instanceof Float64Array) return "FP64";
  if (data instanceof BigInt64Array) return "INT64";
  if (data instanceof Int32Array) return "INT32";
  if (data instanceof Int8Array) return "INT8";
  if (data instanceof Uint16Array) return "FP16";
  return "UINT8";
}

export interface EncodedResponse {
  body: Buffer;
  headers: Record<string, string>;
}

/** The response: JSON only, or (any binary output) the JSON header followed by the binary outputs in order. */
export function encodeInferResponse(model: string, id: string | undefined, outputs: ResponseTensor[]): EncodedResponse {
  const parts: Buffer[] = [];
  const described = outputs.map((o) => {
    const head = { name: o.name, datatype: o.datatype, shape: o.shape };
    if (!o.binary)
      return { ...head, data: Array.from(o.data as ArrayLike<number | bigint>, (x) => (typeof x === "bigint" ? Number(x) : x)) };
    const bytes = Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength);
    parts.push(bytes);
    return { ...head, parameters: { binary_data_size: bytes.length } };
  });
  const json = Buffer.from(JSON.stringify({ model_name: model, ...(id !== undefined ? { id } : {}), outputs: described }));
  if (parts.length === 0) return { body: json, headers: { "Content-Type": "application/json" } };
  return {
    body: Buffer.concat([json, ...parts]),
    headers: { "Content-Type": "application/octet-stream", "Inference-Header-Content-Length": String(json.length) },
  };
}
