/**
 * The initializers of an ONNX model held in memory, as a state dict: what the training page reads from a model
 * `vgg export` wrote (its weights carry torchvision's names) to fine-tune it. Pure (no file access), so the browser
 * uses it. Only what an fp32 export holds is read: float32 and int64 tensors in raw_data or the typed fields; a
 * tensor in external data, or of another type (an fp16 or int8 export), is refused by name.
 */
import { VggError } from "../errors.js";
import type { StateDict, Tensor } from "../tensor.js";

interface Field {
  num: number;
  wire: number;
  /** Varint value (wire 0). */
  value: bigint;
  /** Payload bounds (wire 2). */
  start: number;
  end: number;
}

/** The fields of one message in bytes [start, end). */
function* fields(b: Uint8Array, start: number, end: number, file: string): Generator<Field> {
  let p = start;
  const varint = (): bigint => {
    let v = 0n;
    for (let shift = 0n; ; shift += 7n) {
      if (p >= end || shift > 63n) throw new VggError("not an ONNX model (a varint runs past its message)", file);
      const c = b[p++];
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) return v;
    }
  };
  while (p < end) {
    const key = Number(varint());
    const f: Field = { num: key >>> 3, wire: key & 7, value: 0n, start: p, end: p };
    if (f.wire === 0) f.value = varint();
    else if (f.wire === 2) {
      const len = Number(varint());
      f.start = p;
      f.end = p + len;
      if (f.end > end) throw new VggError("not an ONNX model (a field runs past its message)", file);
      p = f.end;
    } else if (f.wire === 5) p += 4;
    else if (f.wire === 1) p += 8;
    else throw new VggError(`not an ONNX model (wire type ${f.wire})`, file);
    if (p > end) throw new VggError("not an ONNX model (a field runs past its message)", file);
    yield f;
  }
}

/** TensorProto.DataType: FLOAT and INT64, the two an fp32 export's initializers use. */
const FLOAT = 1;
const INT64 = 7;

function tensorOf(b: Uint8Array, start: number, end: number, file: string): { name: string; tensor: Tensor } {
  const dims: number[] = [];
  let type = 0;
  let name = "";
  let raw: Uint8Array | null = null;
  const floats: number[] = [];
  const ints: bigint[] = [];
  let external = false;
  for (const f of fields(b, start, end, file)) {
    if (f.num === 1 && f.wire === 0) dims.push(Number(f.value));
    else if (f.num === 1 && f.wire === 2) for (const d of packedVarints(b, f)) dims.push(Number(d));
    else if (f.num === 2 && f.wire === 0) type = Number(f.value);
    else if (f.num === 8 && f.wire === 2) name = new TextDecoder().decode(b.subarray(f.start, f.end));
    else if (f.num === 9 && f.wire === 2) raw = b.subarray(f.start, f.end);
    else if (f.num === 4 && f.wire === 2) {
      const v = new DataView(b.buffer, b.byteOffset + f.start, f.end - f.start);
      for (let k = 0; k + 4 <= v.byteLength; k += 4) floats.push(v.getFloat32(k, true));
    } else if (f.num === 7 && f.wire === 2) for (const v of packedVarints(b, f)) ints.push(BigInt.asIntN(64, v));
    else if (f.num === 14 && f.wire === 0 && f.value === 1n) external = true;
  }
  if (external) throw new VggError(`initializer '${name}' is in external data: export the model as one file`, file);
  const count = dims.reduce((n, d) => n * d, 1);
  if (type === FLOAT) {
    const data = raw ? new Float32Array(raw.slice().buffer) : Float32Array.from(floats);
    if (data.length !== count) throw new VggError(`initializer '${name}' holds ${data.length} values, its dims say ${count}`, file);
    return { name, tensor: { dtype: "float32", shape: dims, data } };
  }
  if (type === INT64) {
    const data = raw ? new BigInt64Array(raw.slice().buffer) : BigInt64Array.from(ints);
    if (data.length !== count) throw new VggError(`initializer '${name}' holds ${data.length} values, its dims say ${count}`, file);
    return { name, tensor: { dtype: "int64", shape: dims, data } };
  }
  throw new VggError(`initializer '${name}' has ONNX type ${type}, not float32: fine-tune an fp32 export or its checkpoint`, file);
}

/** A packed repeated varint field's values. */
function packedVarints(b: Uint8Array, f: Field): bigint[] {
  const out: bigint[] = [];
  for (let p = f.start; p < f.end; ) {
    let v = 0n;
    for (let shift = 0n; p < f.end; shift += 7n) {
      const c = b[p++];
      v |= BigInt(c & 0x7f) << shift;
      if (c < 0x80) break;
    }
    out.push(v);
  }
  return out;
}

/**
 * The initializers of the ONNX model in `bytes` whose names `want` accepts (e.g. a model's state-dict keys: the
 * export's small constants are skipped unread).
 */
export function readInitializers(bytes: Uint8Array, file: string, want: (name: string) => boolean): StateDict {
  const sd: StateDict = new Map();
  for (const m of fields(bytes, 0, bytes.length, file)) {
    if (m.num !== 7 || m.wire !== 2) continue; // ModelProto.graph
    for (const g of fields(bytes, m.start, m.end, file)) {
      if (g.num !== 5 || g.wire !== 2) continue; // GraphProto.initializer
      // The name (field 8) is read first, so a constant the caller does not want costs no copy.
      let name = "";
      for (const t of fields(bytes, g.start, g.end, file)) {
        if (t.num === 8 && t.wire === 2) name = new TextDecoder().decode(bytes.subarray(t.start, t.end));
      }
      if (!want(name)) continue;
      const { tensor } = tensorOf(bytes, g.start, g.end, file);
      sd.set(name, tensor);
    }
  }
  return sd;
}
