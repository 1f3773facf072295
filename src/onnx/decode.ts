/**
 * Reads what describes an ONNX model without loading its weights: the metadata_props, the producer and the graph's
 * input and output names, element types and shapes. The file is walked field by field with positioned reads,
 * skipping nodes and initializers by their lengths, so a 528 MB VGG16 costs a few hundred small reads.
 */
import * as fs from "node:fs";
import { VggError } from "../errors.js";
import { fsError } from "../io/atomic.js";

export interface OnnxValueInfo {
  name: string;
  /** ONNX TensorProto.DataType (1 = float32), 0 when not given. */
  elemType: number;
  /** A number per fixed dimension, a string per named free one ("N"), null when unknown. */
  dims: (number | string | null)[];
}

export interface OnnxInfo {
  irVersion: number;
  producer: string;
  metadata: Record<string, string>;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  /** File size in bytes. */
  bytes: number;
}

class NotOnnx extends Error {}

/** Positioned reads with a small window cache (varints and short strings are read many times in a row). */
class Reader {
  private buf = new Uint8Array(0);
  private at = 0;
  constructor(
    private readonly fd: number,
    readonly size: number,
  ) {}
  bytes(pos: number, len: number): Uint8Array {
    if (pos < 0 || len < 0 || pos + len > this.size) throw new NotOnnx(`field runs past the end of the file (at byte ${pos})`);
    if (pos < this.at || pos + len > this.at + this.buf.length) {
      const n = Math.min(Math.max(len, 64 * 1024), this.size - pos);
      const b = new Uint8Array(n);
      let got = 0;
      while (got < n) {
        const r = fs.readSync(this.fd, b, got, n - got, pos + got);
        if (r === 0) break;
        got += r;
      }
      this.buf = b.subarray(0, got);
      this.at = pos;
      if (got < len) throw new NotOnnx(`short read at byte ${pos}`);
    }
    return this.buf.subarray(pos - this.at, pos - this.at + len);
  }
}

interface Field {
  num: number;
  wire: number;
  /** Varint value (wire 0). */
  value: bigint;
  /** Where the payload starts and its length (wire 2; fixed-size wires too). */
  pos: number;
  len: number;
}

function varint(r: Reader, pos: number, end: number): [bigint, number] {
  const b = r.bytes(pos, Math.min(10, end - pos));
  let v = 0n;
  for (let i = 0; i < b.length; i++) {
    v |= BigInt(b[i] & 0x7f) << BigInt(7 * i);
    if ((b[i] & 0x80) === 0) return [v, pos + i + 1];
  }
  throw new NotOnnx(`bad varint at byte ${pos}`);
}

/** The fields of the message in [start, end). */
function* fields(r: Reader, start: number, end: number): Generator<Field> {
  let pos = start;
  while (pos < end) {
    const [key, p] = varint(r, pos, end);
    const num = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (num === 0) throw new NotOnnx(`field number 0 at byte ${pos}`);
    let f: Field;
    if (wire === 0) {
      const [v, q] = varint(r, p, end);
      f = { num, wire, value: v, pos: p, len: q - p };
    } else if (wire === 2) {
      const [len, q] = varint(r, p, end);
      f = { num, wire, value: len, pos: q, len: Number(len) };
    } else if (wire === 1 || wire === 5) {
      f = { num, wire, value: 0n, pos: p, len: wire === 1 ? 8 : 4 };
    } else {
      throw new NotOnnx(`unsupported wire type ${wire} at byte ${pos}`);
    }
    if (f.pos + f.len > end) throw new NotOnnx(`field ${num} at byte ${pos} runs past its message`);
    yield f;
    pos = f.pos + f.len;
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: false });
const str = (r: Reader, f: Field) => utf8.decode(r.bytes(f.pos, f.len));

function valueInfo(r: Reader, at: Field): OnnxValueInfo {
  const v: OnnxValueInfo = { name: "", elemType: 0, dims: [] };
  for (const f of fields(r, at.pos, at.pos + at.len)) {
    if (f.num === 1 && f.wire === 2) v.name = str(r, f);
    if (f.num !== 2 || f.wire !== 2) continue;
    // TypeProto.tensor_type (1) -> elem_type (1), shape (2) -> dim (1) -> dim_value (1) | dim_param (2)
    for (const t of fields(r, f.pos, f.pos + f.len)) {
      if (t.num !== 1 || t.wire !== 2) continue;
      for (const tt of fields(r, t.pos, t.pos + t.len)) {
        if (tt.num === 1 && tt.wire === 0) v.elemType = Number(tt.value);
        if (tt.num !== 2 || tt.wire !== 2) continue;
        for (const d of fields(r, tt.pos, tt.pos + tt.len)) {
          if (d.num !== 1 || d.wire !== 2) continue;
          let dim: number | string | null = null;
          for (const x of fields(r, d.pos, d.pos + d.len)) {
            if (x.num === 1 && x.wire === 0) dim = Number(x.value);
            if (x.num === 2 && x.wire === 2) dim = str(r, x);
          }
          v.dims.push(dim);
        }
      }
    }
  }
  return v;
}

/** The description of the ONNX model in `file`; a file that is not one gives a VggError naming it. */
export function readOnnxInfo(file: string): OnnxInfo {
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (err) {
    throw fsError(file, err);
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size === 0) throw new VggError("is empty, not an ONNX model", file);
    const r = new Reader(fd, size);
    const info: OnnxInfo = { irVersion: 0, producer: "", metadata: {}, inputs: [], outputs: [], bytes: size };
    let graph = false;
    for (const f of fields(r, 0, size)) {
      if (f.num === 1 && f.wire === 0) info.irVersion = Number(f.value);
      else if (f.num === 2 && f.wire === 2) info.producer = str(r, f);
      else if (f.num === 14 && f.wire === 2) {
        let k = "";
        let v = "";
        for (const e of fields(r, f.pos, f.pos + f.len)) {
          if (e.num === 1 && e.wire === 2) k = str(r, e);
          if (e.num === 2 && e.wire === 2) v = str(r, e);
        }
        info.metadata[k] = v;
      } else if (f.num === 7 && f.wire === 2) {
        graph = true;
        for (const g of fields(r, f.pos, f.pos + f.len)) {
          if (g.wire !== 2) continue;
          if (g.num === 11) info.inputs.push(valueInfo(r, g));
          if (g.num === 12) info.outputs.push(valueInfo(r, g));
        }
      }
    }
    if (!graph || info.irVersion === 0) throw new NotOnnx("no graph or IR version");
    return info;
  } catch (err) {
    if (err instanceof NotOnnx) throw new VggError(`not an ONNX model (${err.message})`, file);
    if (err instanceof VggError) throw err;
    throw fsError(file, err);
  } finally {
    fs.closeSync(fd);
  }
}
