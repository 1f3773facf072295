/**
 * ONNX-aware mutations: the model is decoded into a protobuf field tree (with the schema of the messages a VGG
 * export holds), edited (dims, dtypes, op types, lengths, wire types, external data, nesting), and re-encoded.
 */
import { chance, concat, INTERESTING_64, interesting64, latin1, type Mutant, pick, type Sfc32, utf8 } from "./common.js";
import { mutateBytes } from "./mutate.js";

export interface PField {
  num: number;
  wire: number;
  /** Varint value (wire 0). */
  int?: bigint;
  /** Payload of fixed-size and length-delimited fields that are not decoded as messages. */
  bytes?: Uint8Array;
  /** Sub-message (wire 2 with a known schema). */
  msg?: PField[];
  /** Length to write instead of the real one. */
  lenLie?: bigint;
  /** Bytes written as they are, key included (groups, broken encodings). */
  raw?: Uint8Array;
}

type Schema = { [num: number]: Schema };
const DIM: Schema = {};
const SSE: Schema = {};
const SHAPE: Schema = { 1: DIM };
const TTYPE: Schema = { 2: SHAPE };
const TYPE: Schema = { 1: TTYPE };
const VI: Schema = { 2: TYPE };
const TENSOR: Schema = { 13: SSE };
const ATTR: Schema = { 5: TENSOR, 10: TENSOR };
const NODE: Schema = { 5: ATTR };
const GRAPH: Schema = { 1: NODE, 5: TENSOR, 11: VI, 12: VI, 13: VI };
ATTR[6] = GRAPH;
ATTR[11] = GRAPH;
const MODEL: Schema = { 7: GRAPH, 8: {}, 14: SSE };

function readVarint(b: Uint8Array, p: number): [bigint, number] {
  let v = 0n;
  for (let i = 0; i < 10 && p + i < b.length; i++) {
    v |= BigInt(b[p + i] & 0x7f) << BigInt(7 * i);
    if (!(b[p + i] & 0x80)) return [v, p + i + 1];
  }
  throw new Error("bad varint");
}

export function decode(b: Uint8Array, schema: Schema = MODEL): PField[] {
  const out: PField[] = [];
  let p = 0;
  while (p < b.length) {
    const [key, q] = readVarint(b, p);
    const num = Number(key >> 3n);
    const wire = Number(key & 7n);
    if (wire === 0) {
      const [v, r] = readVarint(b, q);
      out.push({ num, wire, int: v });
      p = r;
    } else if (wire === 2) {
      const [len, r] = readVarint(b, q);
      const body = b.subarray(r, r + Number(len));
      const sub = schema[num];
      out.push(sub ? { num, wire, msg: decode(body, sub) } : { num, wire, bytes: body });
      p = r + Number(len);
    } else if (wire === 1 || wire === 5) {
      const n = wire === 1 ? 8 : 4;
      out.push({ num, wire, bytes: b.subarray(q, q + n) });
      p = q + n;
    } else throw new Error(`wire type ${wire} in a seed`);
  }
  return out;
}

function varint(v: bigint): Uint8Array {
  const out: number[] = [];
  let x = BigInt.asUintN(64, v);
  do {
    const byte = Number(x & 0x7fn);
    x >>= 7n;
    out.push(x ? byte | 0x80 : byte);
  } while (x);
  return Uint8Array.from(out);
}

export function encode(fields: readonly PField[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    if (f.raw) {
      parts.push(f.raw);
      continue;
    }
    parts.push(varint(BigInt(f.num) * 8n + BigInt(f.wire)));
    if (f.int !== undefined) parts.push(varint(f.int));
    else {
      const body = f.msg ? encode(f.msg) : (f.bytes ?? new Uint8Array(0));
      if (f.wire === 2) parts.push(varint(f.lenLie ?? BigInt(body.length)));
      parts.push(body);
    }
  }
  return concat(parts);
}

/** Every field of the tree with the message holding it and the schema it was decoded with. */
function walk(fields: PField[], schema: Schema, out: { parent: PField[]; f: PField; schema: Schema }[] = []) {
  for (const f of fields) {
    out.push({ parent: fields, f, schema });
    if (f.msg) walk(f.msg, schema[f.num], out);
  }
  return out;
}

const str = (num: number, s: string | Uint8Array): PField => ({ num, wire: 2, bytes: typeof s === "string" ? utf8(s) : s });
const int = (num: number, v: bigint | number): PField => ({ num, wire: 0, int: BigInt(v) });
const msg = (num: number, m: PField[]): PField => ({ num, wire: 2, msg: m });

/** A node whose attribute holds a graph whose node holds a graph ... `depth` times. */
function nestedGraph(depth: number): PField {
  let g: PField[] = [msg(1, [str(4, "Identity"), str(1, "x"), str(2, "y")])];
  for (let i = 0; i < depth; i++)
    g = [msg(1, [str(4, "If"), str(1, "c"), str(2, "y"), msg(5, [str(1, "then_branch"), int(20, 5), msg(6, g)])])];
  return g[0];
}

/** Unknown fields nested `depth` deep, as length-delimited bytes or as (deprecated) groups. */
function nestedUnknown(depth: number, groups: boolean): Uint8Array {
  if (groups) {
    const start = varint(99n * 8n + 3n);
    const end = varint(99n * 8n + 4n);
    return concat([...new Array<Uint8Array>(depth).fill(start), ...new Array<Uint8Array>(depth).fill(end)]);
  }
  // Lengths from the inside out, then the keys and lengths written from the outside in.
  const key = varint(99n * 8n + 2n);
  const lens = [0];
  for (let i = 1; i < depth; i++) lens.push(key.length + varint(BigInt(lens[i - 1])).length + lens[i - 1]);
  const parts: Uint8Array[] = [];
  for (let i = depth - 1; i > 0; i--) parts.push(key, varint(BigInt(lens[i - 1])));
  return concat(parts);
}

function editTensor(rng: Sfc32, t: PField[]): string {
  const dims = t.filter((f) => f.num === 1);
  switch (rng.int(6)) {
    case 0:
      if (dims.length) {
        const d = pick(rng, dims);
        d.int = interesting64(rng, d.int ?? 0n);
        return `initializer dim -> ${d.int}`;
      }
      return "no dims";
    case 1:
      t.unshift(int(1, pick(rng, [0, 1, 2, 1000, 2 ** 31])));
      return "initializer gains a dim";
    case 2: {
      const dt = t.find((f) => f.num === 2);
      if (dt) dt.int = BigInt(pick(rng, [0, 2, 7, 8, 10, 11, 13, 16, 17, 23, 99, 2 ** 31]));
      return `initializer data_type -> ${dt?.int}`;
    }
    case 3: {
      const raw = t.find((f) => f.num === 9);
      if (raw?.bytes) raw.bytes = raw.bytes.subarray(0, pick(rng, [0, 1, raw.bytes.length - 1, raw.bytes.length >> 1]));
      return "initializer raw_data cut";
    }
    case 4: {
      const i = t.findIndex((f) => f.num === 9);
      if (i >= 0) t.splice(i, 1);
      const loc = pick(rng, ["missing.bin", "../../../../../../dev/zero", "/dev/zero", "/etc/hostname", "", "a\u0000b", "."]);
      t.push(msg(13, [str(1, "location"), str(2, loc)]));
      t.push(msg(13, [str(1, "offset"), str(2, pick(rng, ["0", "-1", "18446744073709551615", "x"]))]));
      t.push(msg(13, [str(1, "length"), str(2, pick(rng, ["16", "1099511627776", "-5", "9223372036854775807"]))]));
      t.push(int(14, 1));
      return `initializer external data '${loc}'`;
    }
    default:
      t.push(str(8, pick(rng, ["", "features.0.weight", "input", "logits"])));
      return "initializer second name";
  }
}

function editNode(rng: Sfc32, n: PField[]): string {
  switch (rng.int(5)) {
    case 0: {
      const op = n.find((f) => f.num === 4);
      const name = pick(rng, ["Foo", "", "Loop", "If", "Scan", "Conv", "Gemm", "MaxPool", "Reshape", "Identity", "conv"]);
      if (op) op.bytes = utf8(name);
      return `op_type -> ${name}`;
    }
    case 1: {
      const outs = n.filter((f) => f.num === 2);
      const ins = n.filter((f) => f.num === 1);
      if (ins.length && outs.length) ins[0].bytes = outs[0].bytes;
      return "node reads its own output";
    }
    case 2: {
      const i = n.findIndex((f) => f.num === pick(rng, [1, 2]));
      if (i >= 0) n.splice(i, 1);
      else n.push(str(1, "nowhere"));
      return "node loses an input/output";
    }
    case 3:
      n.push(
        msg(5, [
          str(1, pick(rng, ["kernel_shape", "pads", "strides", "axis", "group"])),
          int(20, pick(rng, [1, 2, 7, 0, 99])),
          int(3, pick(rng, INTERESTING_64)),
          int(8, pick(rng, INTERESTING_64)),
        ]),
      );
      return "node gains a weird attribute";
    default:
      n.push(str(7, pick(rng, ["com.microsoft", "ai.onnx.ml", "x", ""])));
      return "node domain";
  }
}

export function mutateOnnx(rng: Sfc32, seed: Uint8Array): Mutant {
  if (chance(rng, 0.25)) return mutateBytes(rng, seed);
  const tree = decode(seed);
  const all = walk(tree, MODEL);
  const graph = tree.find((f) => f.num === 7)?.msg as PField[];
  let what: string;
  switch (rng.int(12)) {
    case 0: {
      const vs = all.filter((x) => x.f.wire === 0);
      const x = pick(rng, vs);
      x.f.int = interesting64(rng, x.f.int ?? 0n);
      what = `varint field ${x.f.num} -> ${x.f.int}`;
      break;
    }
    case 1:
    case 2:
      what = editTensor(
        rng,
        pick(
          rng,
          graph.filter((f) => f.num === 5),
        ).msg as PField[],
      );
      break;
    case 3:
      what = editNode(
        rng,
        pick(
          rng,
          graph.filter((f) => f.num === 1),
        ).msg as PField[],
      );
      break;
    case 4: {
      const depth = pick(rng, [10, 40, 150, 400]);
      graph.unshift(nestedGraph(depth));
      what = `${depth}-deep subgraphs`;
      break;
    }
    case 5: {
      const depth = pick(rng, [100, 10_000, 100_000]);
      const groups = chance(rng, 0.5);
      const body = nestedUnknown(depth, groups);
      (chance(rng, 0.5) ? tree : graph).push(groups ? { num: 99, wire: 3, raw: body } : { num: 99, wire: 2, bytes: body });
      what = `${depth}-deep unknown ${groups ? "groups" : "messages"}`;
      break;
    }
    case 6: {
      const x = pick(rng, all);
      x.parent.splice(x.parent.indexOf(x.f) + 1, 0, x.f);
      what = `duplicate field ${x.f.num}`;
      break;
    }
    case 7: {
      const x = pick(rng, all);
      x.parent.splice(x.parent.indexOf(x.f), 1);
      what = `remove field ${x.f.num}`;
      break;
    }
    case 8: {
      const x = pick(
        rng,
        all.filter((y) => y.f.wire === 2),
      );
      x.f.lenLie = interesting64(rng, BigInt(x.f.msg ? encode(x.f.msg).length : (x.f.bytes?.length ?? 0)));
      what = `length of field ${x.f.num} -> ${x.f.lenLie}`;
      break;
    }
    case 9: {
      const x = pick(rng, all);
      const wire = pick(
        rng,
        [0, 1, 2, 3, 4, 5, 6, 7].filter((w) => w !== x.f.wire),
      );
      const payload = wire === 1 ? new Uint8Array(8) : wire === 5 || wire === 2 ? new Uint8Array(4) : new Uint8Array(0);
      x.parent[x.parent.indexOf(x.f)] = wire === 0 ? { num: x.f.num, wire, int: 1n } : { num: x.f.num, wire, bytes: payload };
      what = `field ${x.f.num} as wire type ${wire}`;
      break;
    }
    case 10: {
      const strs = all.filter((y) => y.f.bytes && y.f.wire === 2 && y.f.bytes.length < 200);
      const x = pick(rng, strs);
      x.f.bytes = pick(rng, [Uint8Array.of(0xff, 0xfe), latin1("\u00c3"), new Uint8Array(0), utf8("x".repeat(100_000))]);
      what = `string field ${x.f.num} -> ${x.f.bytes.length} odd bytes`;
      break;
    }
    default: {
      const vis = graph.filter((f) => f.num === 11 || f.num === 12);
      const dims = walk(pick(rng, vis).msg as PField[], VI).filter((y) => y.schema === DIM);
      if (dims.length) {
        const d = pick(rng, dims).f;
        if (d.int !== undefined) d.int = pick(rng, [0n, 2n ** 64n - 1n, 2n ** 31n, 2n ** 63n]);
        else d.bytes = utf8(pick(rng, ["", "N", "x".repeat(1000)]));
      }
      what = "graph input/output dim";
    }
  }
  return { bytes: encode(tree), what };
}
