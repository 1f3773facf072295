/**
 * Pickle-aware mutations for the .pth readers: forbidden globals, lying lengths, deep nesting, opcodes outside the
 * unpickler's set, and edits of the integers that become tensor sizes, strides, offsets and storage sizes.
 */
import { chance, concat, INTERESTING_64, interesting32, latin1, type Mutant, pick, type Sfc32, u32le, u64le, utf8 } from "./common.js";
import { mutateBytes } from "./mutate.js";

/** One opcode: where it starts, its argument bytes. */
export interface Op {
  pos: number;
  op: number;
  arg: number;
  argLen: number;
}

/** Fixed argument sizes; -1: a length prefix of that many bytes (given in LEN); -2: two newline-ended lines. */
const FIXED: Record<number, number> = {
  128: 1, // PROTO
  149: 8, // FRAME
  74: 4, // BININT
  75: 1, // BININT1
  77: 2, // BININT2
  71: 8, // BINFLOAT
  113: 1, // BINPUT
  114: 4, // LONG_BINPUT
  104: 1, // BINGET
  106: 4, // LONG_BINGET
};
/** Opcodes with a length-prefixed payload: the prefix size. */
const PREFIXED: Record<number, number> = {
  138: 1, // LONG1
  139: 4, // LONG4
  88: 4, // BINUNICODE
  140: 1, // SHORT_BINUNICODE
  141: 8, // BINUNICODE8
  85: 1, // SHORT_BINSTRING
  84: 4, // BINSTRING
  67: 1, // SHORT_BINBYTES
  66: 4, // BINBYTES
  142: 8, // BINBYTES8
  150: 8, // BYTEARRAY8
};
const NO_ARG = new Set([
  0x2e, 0x28, 0x30, 0x31, 0x32, 0x4e, 0x88, 0x89, 0x29, 0x85, 0x86, 0x87, 0x74, 0x5d, 0x6c, 0x7d, 0x64, 0x8f, 0x90, 0x91, 0x61, 0x65, 0x73,
  0x75, 0x94, 0x93, 0x52, 0x81, 0x62, 0x51,
]);

/** The opcodes of the pickle at `start`, up to and including STOP (or as far as they can be followed). */
export function scanPickle(b: Uint8Array, start = 0): { ops: Op[]; end: number } {
  const ops: Op[] = [];
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = start;
  while (p < b.length) {
    const op = b[p];
    let argLen: number;
    if (Object.hasOwn(FIXED, op)) argLen = FIXED[op];
    else if (Object.hasOwn(PREFIXED, op)) {
      const k = PREFIXED[op];
      if (p + 1 + k > b.length) break;
      const n = k === 1 ? b[p + 1] : k === 4 ? v.getUint32(p + 1, true) : Number(v.getBigUint64(p + 1, true));
      argLen = k + n;
    } else if (op === 0x63) {
      const nl1 = b.indexOf(0x0a, p + 1);
      const nl2 = nl1 < 0 ? -1 : b.indexOf(0x0a, nl1 + 1);
      if (nl2 < 0) break;
      argLen = nl2 - p;
    } else if (NO_ARG.has(op)) argLen = 0;
    else break;
    if (p + 1 + argLen > b.length) break;
    ops.push({ pos: p, op, arg: p + 1, argLen });
    p += 1 + argLen;
    if (op === 0x2e) break;
  }
  return { ops, end: p };
}

const FORBIDDEN: [string, string][] = [
  ["os", "system"],
  ["posix", "system"],
  ["builtins", "eval"],
  ["builtins", "exec"],
  ["__builtin__", "eval"],
  ["builtins", "getattr"],
  ["builtins", "__import__"],
  ["subprocess", "Popen"],
  ["torch", "load"],
  ["torch.nn.modules.conv", "Conv2d"],
  ["numpy.core.multiarray", "_reconstruct"],
  ["collections", "defaultdict"],
  ["torch._utils", "_rebuild_device_tensor_from_numpy"],
  ["torch", "UntypedStorage"],
  ["torch", "QInt8Storage"],
  ["builtins", "constructor"],
  ["builtins", "__proto__"],
  ["collections", "OrderedDict.__init__"],
];
const ALLOWED: [string, string][] = [
  ["collections", "OrderedDict"],
  ["torch._utils", "_rebuild_tensor_v2"],
  ["torch._utils", "_rebuild_parameter"],
  ["torch", "FloatStorage"],
  ["torch", "HalfStorage"],
  ["torch", "BFloat16Storage"],
  ["torch", "ShortStorage"],
  ["builtins", "set"],
  ["_codecs", "encode"],
  ["torch", "Size"],
];

function shortStr(s: string): Uint8Array {
  const b = utf8(s);
  return concat([Uint8Array.of(0x8c, b.length), b]);
}

/** A payload to splice in at an opcode boundary, with a description. */
function payload(rng: Sfc32): [Uint8Array, string] {
  switch (rng.int(13)) {
    case 0:
    case 1: {
      const [mod, name] = pick(rng, FORBIDDEN);
      const g = latin1(`c${mod}\n${name}\n`);
      // Sometimes call it, as an exploit would: (S'id'\ntR
      const call = chance(rng, 0.5) ? latin1("(X\x02\x00\x00\x00idtR") : new Uint8Array(0);
      return [concat([g, call]), `GLOBAL ${mod}.${name}${call.length ? " + REDUCE" : ""}`];
    }
    case 2: {
      const [mod, name] = pick(rng, chance(rng, 0.7) ? FORBIDDEN : ALLOWED);
      return [concat([shortStr(mod), shortStr(name), Uint8Array.of(0x93)]), `STACK_GLOBAL ${mod}.${name}`];
    }
    case 3: {
      const n = pick(rng, [0x7fffffff, 0xffffffff, 0x10000000, 1000]);
      return [concat([Uint8Array.of(pick(rng, [0x58, 0x42, 0x54])), u32le(n), utf8("abc")]), `length-prefixed string declaring ${n} bytes`];
    }
    case 4: {
      const n = pick(rng, INTERESTING_64);
      return [concat([Uint8Array.of(pick(rng, [0x8d, 0x8e, 0x96, 0x95])), u64le(n), utf8("abc")]), `8-byte length ${n}`];
    }
    case 5: {
      const n = pick(rng, [0x7fffffff, 257, 100000, -1]);
      return [concat([Uint8Array.of(0x8b), u32le(n), new Uint8Array(Math.min(Math.max(n, 0), 300)).fill(0xff)]), `LONG4 of ${n} bytes`];
    }
    case 6: {
      // Deep nesting without a deep stack: () then TUPLE1 n times; popped again so the pickle can go on.
      const n = pick(rng, [1000, 100_000, 400_000]);
      const body = new Uint8Array(1 + n + 1).fill(0x85);
      body[0] = 0x29;
      body[n + 1] = chance(rng, 0.5) ? 0x30 : 0x85;
      return [body, `${n} nested tuples`];
    }
    case 7: {
      // Nested lists: ] then (] a)... : each new list appended into the previous one.
      const n = pick(rng, [1000, 100_000]);
      const parts = [Uint8Array.of(0x5d)];
      const step = Uint8Array.of(0x5d, 0x32, 0x30); // EMPTY_LIST, DUP, POP: harmless churn
      for (let i = 0; i < Math.min(n, 10_000); i++) parts.push(step);
      parts.push(new Uint8Array(n).fill(0x85));
      return [concat(parts), `${n} tuples around a list`];
    }
    case 8: {
      const n = pick(rng, [100_000, 1_100_000]);
      return [new Uint8Array(n).fill(0x28), `${n} MARKs`];
    }
    case 9: {
      const n = pick(rng, [10_000, 300_000]);
      const step = concat([Uint8Array.of(0x4e, 0x72), u32le(0), Uint8Array.of(0x30)]);
      const parts: Uint8Array[] = [];
      for (let i = 0; i < n; i++) {
        const s = step.slice();
        s.set(u32le(i), 2);
        parts.push(s);
      }
      return [concat(parts), `${n} memo entries`];
    }
    case 10: {
      if (chance(rng, 0.5)) {
        // A big memoized list, then the same allowed call on it again and again: set(L), set(L), ...
        const n = pick(rng, [10_000, 300_000]);
        const k = pick(rng, [1000, 100_000]);
        const [mod, name] = pick(rng, [
          ["builtins", "set"],
          ["builtins", "frozenset"],
          ["torch", "Size"],
          ["collections", "OrderedDict"],
        ]);
        const list = concat([
          Uint8Array.of(0x5d, 0x72, 0xf0, 0xff, 0, 0, 0x28),
          new Uint8Array(2 * n).map((_, i) => (i % 2 ? 1 : 0x4b)),
          Uint8Array.of(0x65),
        ]);
        const fn = concat([latin1(`c${mod}\n${name}\n`), Uint8Array.of(0x72, 0xf1, 0xff, 0, 0, 0x30)]);
        const call = Uint8Array.of(0x6a, 0xf1, 0xff, 0, 0, 0x6a, 0xf0, 0xff, 0, 0, 0x85, 0x52, 0x30);
        return [concat([list, fn, ...new Array<Uint8Array>(k).fill(call)]), `${k} calls of ${mod}.${name} on a list of ${n}`];
      }
      // A tensor size or stride tuple with a great many dimensions: ints spliced in after a MARK.
      const n = pick(rng, [100, 100_000, 1_000_000]);
      return [new Uint8Array(2 * n).map((_, i) => (i % 2 ? 1 : 0x4b)), `${n} BININT1 1`];
    }
    case 11: {
      const op = pick(
        rng,
        [0x00, 0x69, 0x6f, 0x62, 0x50, 0x49, 0x46, 0x56, 0x53, 0x92, 0x97, 0x98, 0x82, 0x83, 0x84, 0x4c, 0x67, 0x70, 0xff],
      );
      return [Uint8Array.of(op, 0x31, 0x0a), `opcode 0x${op.toString(16)}`];
    }
    default: {
      const op = pick(rng, [0x2e, 0x30, 0x31, 0x32, 0x52, 0x81, 0x62, 0x51, 0x73, 0x75, 0x61, 0x65, 0x74, 0x64, 0x94]);
      return [Uint8Array.of(op), `stray opcode 0x${op.toString(16)}`];
    }
  }
}

function editOp(rng: Sfc32, b: Uint8Array, op: Op): Mutant | null {
  const out = b.slice();
  const v = new DataView(out.buffer);
  switch (op.op) {
    case 0x4a:
      v.setInt32(op.arg, pick(rng, [-1, -2147483648, 0x7fffffff, 0, 1 << 24, v.getInt32(op.arg, true) + 1]), true);
      return { bytes: out, what: `BININT at ${op.pos} -> ${v.getInt32(op.arg, true)}` };
    case 0x4b:
    case 0x71:
    case 0x68:
    case 0x80:
      out[op.arg] = pick(rng, [0, 1, 0xff, 0x7f, (out[op.arg] + 1) & 0xff, 6]);
      return { bytes: out, what: `u8 argument of 0x${op.op.toString(16)} at ${op.pos} -> ${out[op.arg]}` };
    case 0x4d:
      v.setUint16(op.arg, pick(rng, [0, 0xffff, 0x8000, v.getUint16(op.arg, true) * 2]) & 0xffff, true);
      return { bytes: out, what: `BININT2 at ${op.pos} -> ${v.getUint16(op.arg, true)}` };
    case 0x72:
    case 0x6a:
      v.setUint32(op.arg, interesting32(rng, v.getUint32(op.arg, true)), true);
      return { bytes: out, what: `memo index at ${op.pos} -> ${v.getUint32(op.arg, true)}` };
    case 0x58:
    case 0x42:
    case 0x54: {
      const n = interesting32(rng, v.getUint32(op.arg, true));
      v.setUint32(op.arg, n, true);
      return { bytes: out, what: `length of 0x${op.op.toString(16)} at ${op.pos} -> ${n}` };
    }
    case 0x8c:
    case 0x55:
    case 0x43:
    case 0x8a:
      out[op.arg] = pick(rng, [0, 0xff, (out[op.arg] + 1) & 0xff, (out[op.arg] - 1) & 0xff]);
      return { bytes: out, what: `short length at ${op.pos} -> ${out[op.arg]}` };
    case 0x95:
    case 0x8d:
    case 0x8e:
      v.setBigUint64(op.arg, pick(rng, INTERESTING_64), true);
      return { bytes: out, what: `u64 length at ${op.pos} -> ${v.getBigUint64(op.arg, true)}` };
    case 0x63: {
      const [mod, name] = pick(rng, chance(rng, 0.7) ? FORBIDDEN : ALLOWED);
      return {
        bytes: concat([b.subarray(0, op.arg), latin1(`${mod}\n${name}\n`), b.subarray(op.arg + op.argLen)]),
        what: `GLOBAL at ${op.pos} -> ${mod}.${name}`,
      };
    }
    default:
      return null;
  }
}

/** Replaces an integer push with a different encoding of a huge, negative or big-int value. */
function replaceInt(rng: Sfc32, b: Uint8Array, op: Op): Mutant {
  const kind = rng.int(3);
  let repl: Uint8Array;
  let shown: string;
  if (kind === 0) {
    const x = pick(rng, INTERESTING_64);
    repl = concat([Uint8Array.of(0x8a, 9), u64le(x), Uint8Array.of(0)]);
    shown = `LONG1 ${x}`;
  } else if (kind === 1) {
    const x = pick(rng, [-1, -1000, 2 ** 31 - 1]);
    repl = concat([Uint8Array.of(0x4a), u32le(x)]);
    shown = `BININT ${x}`;
  } else {
    const x = pick(rng, ["1.5", "-0.0", "1e300", "nan"]);
    const f = new Uint8Array(9);
    f[0] = 0x47;
    new DataView(f.buffer).setFloat64(1, Number(x), false);
    repl = f;
    shown = `BINFLOAT ${x}`;
  }
  return { bytes: concat([b.subarray(0, op.pos), repl, b.subarray(op.arg + op.argLen)]), what: `int at ${op.pos} -> ${shown}` };
}

/**
 * One pickle-aware mutation of the pickle(s) in `b` between byte `from` and `to` (the opcodes found there): splice a
 * payload in at an opcode boundary, edit an opcode's argument, or delete, repeat or swap opcodes.
 */
export function mutatePickle(rng: Sfc32, b: Uint8Array, ops: readonly Op[]): Mutant {
  if (ops.length === 0) return mutateBytes(rng, b);
  const r = rng.int(10);
  if (r < 4) {
    const [p, what] = payload(rng);
    const marks = ops.filter((o) => o.op === 0x28);
    // Ints go after a MARK, where tuples of sizes and strides begin; everything else anywhere.
    const at = what.endsWith("BININT1 1") && marks.length ? pick(rng, marks).pos + 1 : pick(rng, ops).pos;
    return { bytes: concat([b.subarray(0, at), p, b.subarray(at)]), what: `${what} at ${at}` };
  }
  if (r < 7) {
    const ints = ops.filter((o) => o.op === 0x4a || o.op === 0x4b || o.op === 0x4d);
    if (r === 6 && ints.length) return replaceInt(rng, b, pick(rng, ints));
    for (let tries = 0; tries < 8; tries++) {
      const m = editOp(rng, b, pick(rng, ops));
      if (m) return m;
    }
  }
  const o = pick(rng, ops);
  const end = o.arg + o.argLen;
  if (r === 7) return { bytes: concat([b.subarray(0, o.pos), b.subarray(end)]), what: `delete opcode at ${o.pos}` };
  if (r === 8) return { bytes: concat([b.subarray(0, end), b.subarray(o.pos, end), b.subarray(end)]), what: `repeat opcode at ${o.pos}` };
  const q = pick(rng, ops);
  if (q.pos <= o.pos) return { bytes: concat([b.subarray(0, o.pos), b.subarray(end)]), what: `delete opcode at ${o.pos}` };
  const qEnd = q.arg + q.argLen;
  return {
    bytes: concat([b.subarray(0, o.pos), b.subarray(q.pos, qEnd), b.subarray(end, q.pos), b.subarray(o.pos, end), b.subarray(qEnd)]),
    what: `swap opcodes at ${o.pos} and ${q.pos}`,
  };
}
