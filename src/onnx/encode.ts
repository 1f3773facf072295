/**
 * A minimal protobuf writer for the part of onnx.proto (IR 8) this project emits. Hand-written rather than
 * generated so that initializer bytes are referenced, not copied, until the one final concatenation: a VGG16
 * model is 528 MB of weights and a second or third copy is what blows peak memory.
 */
import type { DType, Tensor } from "../tensor.js";

export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
};

export type AttrValue = { i: number } | { f: number } | { s: string } | { ints: number[] } | { floats: number[] } | { t: Tensor };

export interface NodeSpec {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attrs?: Record<string, AttrValue>;
}

export interface ValueSpec {
  name: string;
  dtype: DType;
  /** A number is a fixed size, a string a named free dimension (e.g. "N"); `null`: shape not declared. */
  dims: (number | string)[] | null;
}

export interface ModelSpec {
  nodes: NodeSpec[];
  initializers: { name: string; tensor: Tensor }[];
  inputs: ValueSpec[];
  outputs: ValueSpec[];
  opsets: { domain: string; version: number }[];
  graphName?: string;
  docString?: string;
  metadata?: Record<string, string>;
}

/** A message under construction: its parts are written in order, `len` is their total length. */
class Msg {
  parts: Uint8Array[] = [];
  len = 0;
  private scratch: number[] = [];

  private flush(): void {
    if (this.scratch.length) {
      this.parts.push(Uint8Array.from(this.scratch));
      this.len += this.scratch.length;
      this.scratch = [];
    }
  }
  private varint(v: number | bigint): void {
    let b = BigInt.asUintN(64, BigInt(v));
    if (typeof v === "number" && v >= 0 && v < 2 ** 31) {
      let n = v;
      while (n > 0x7f) {
        this.scratch.push((n & 0x7f) | 0x80);
        n >>>= 7;
      }
      this.scratch.push(n);
      return;
    }
    while (b > 0x7fn) {
      this.scratch.push(Number(b & 0x7fn) | 0x80);
      b >>= 7n;
    }
    this.scratch.push(Number(b));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.scratch.push(...b);
    return this;
  }
  bytes(field: number, data: Uint8Array): this {
    this.key(field, 2);
    this.varint(data.length);
    if (data.length < 64) {
      for (const x of data) this.scratch.push(x);
    } else {
      this.flush();
      this.parts.push(data);
      this.len += data.length;
    }
    return this;
  }
  str(field: number, s: string): this {
    return this.bytes(field, new TextEncoder().encode(s));
  }
  msg(field: number, m: Msg): this {
    m.flush();
    this.key(field, 2);
    this.varint(m.len);
    this.flush();
    this.parts.push(...m.parts);
    this.len += m.len;
    return this;
  }
  done(): Msg {
    this.flush();
    return this;
  }
}

function tensorBytes(t: Tensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** `external`: the tensor's bytes live in a named external blob instead of raw_data. */
function tensorMsg(name: string, t: Tensor, external?: string): Msg {
  const m = new Msg();
  for (const d of t.shape) m.int(1, d);
  m.int(2, ONNX_DTYPE[t.dtype]);
  m.str(8, name);
  if (external === undefined) m.bytes(9, tensorBytes(t));
  else {
    m.msg(13, new Msg().str(1, "location").str(2, external).done());
    m.msg(13, new Msg().str(1, "offset").str(2, "0").done());
    m.msg(13, new Msg().str(1, "length").str(2, String(t.data.byteLength)).done());
    m.int(14, 1);
  }
  return m.done();
}

function attrMsg(name: string, a: AttrValue): Msg {
  const m = new Msg().str(1, name);
  if ("i" in a) m.int(3, a.i).int(20, 2);
  else if ("f" in a) m.float(2, a.f).int(20, 1);
  else if ("s" in a) m.str(4, a.s).int(20, 3);
  else if ("t" in a) m.msg(5, tensorMsg("", a.t)).int(20, 4);
  else if ("ints" in a) {
    for (const v of a.ints) m.int(8, v);
    m.int(20, 7);
  } else {
    for (const v of a.floats) m.float(7, v);
    m.int(20, 6);
  }
  return m.done();
}

function nodeMsg(n: NodeSpec): Msg {
  const m = new Msg();
  for (const i of n.inputs) m.str(1, i);
  for (const o of n.outputs) m.str(2, o);
  if (n.name) m.str(3, n.name);
  m.str(4, n.opType);
  for (const [k, v] of Object.entries(n.attrs ?? {})) m.msg(5, attrMsg(k, v));
  if (n.domain) m.str(7, n.domain);
  return m.done();
}

function valueMsg(v: ValueSpec): Msg {
  const tt = new Msg().int(1, ONNX_DTYPE[v.dtype]);
  if (v.dims) {
    const shape = new Msg();
    for (const d of v.dims) shape.msg(1, typeof d === "number" ? new Msg().int(1, d).done() : new Msg().str(2, d).done());
    tt.msg(2, shape.done());
  }
  tt.done();
  return new Msg().str(1, v.name).msg(2, new Msg().msg(1, tt).done()).done();
}

/** Encode a model as the parts of one protobuf message (initializer data is referenced, not copied). */
export function encodeModelParts(
  spec: ModelSpec,
  opts: { externalMinBytes?: number } = {},
): { parts: Uint8Array[]; length: number; external: { path: string; data: Uint8Array }[] } {
  const g = new Msg();
  const external: { path: string; data: Uint8Array }[] = [];
  for (const n of spec.nodes) g.msg(1, nodeMsg(n));
  g.str(2, spec.graphName ?? "vgg");
  for (const { name, tensor } of spec.initializers) {
    const ext = opts.externalMinBytes !== undefined && tensor.data.byteLength >= opts.externalMinBytes;
    const path = ext ? `${external.length}.bin` : undefined;
    if (path) external.push({ path, data: tensorBytes(tensor) });
    g.msg(5, tensorMsg(name, tensor, path));
  }
  if (spec.docString) g.str(10, spec.docString);
  for (const v of spec.inputs) g.msg(11, valueMsg(v));
  for (const v of spec.outputs) g.msg(12, valueMsg(v));
  const m = new Msg().int(1, 8).str(2, "vgg-onnx").str(3, "0.1.0");
  m.msg(7, g.done());
  for (const o of spec.opsets) m.msg(8, new Msg().str(1, o.domain).int(2, o.version).done());
  for (const [k, v] of Object.entries(spec.metadata ?? {})) m.msg(14, new Msg().str(1, k).str(2, v).done());
  m.done();
  return { parts: m.parts, length: m.len, external };
}

export function encodeModel(spec: ModelSpec): Uint8Array {
  const { parts, length } = encodeModelParts(spec);
  const out = new Uint8Array(length);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}
