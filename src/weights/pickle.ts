/**
 * A restricted unpickler for the pickles `torch.save` writes, in the spirit of `torch.load(weights_only=True)`.
 *
 * Nothing in a pickle is ever executed: a GLOBAL only resolves to one of a handful of data constructors
 * implemented here in TypeScript (OrderedDict, tensor rebuilds, storage type markers, sets, bytes). Any other
 * global - `os.system`, `builtins.eval`, a model class - is refused when it is named, before anything could call it.
 *
 * The input is treated as hostile: every declared length is checked against the bytes that remain before anything
 * is allocated, the stack and memo are bounded, the machine is a loop (no recursion) and every failure is a VggError
 * with a one-line message.
 */
import { shown, VggError } from "../errors.js";

/** A Python tuple; kept apart from lists (plain JS arrays) so that APPEND on a tuple is refused like Python does. */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python dict or OrderedDict; insertion order is kept, as both preserve it. */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  /** Whatever BUILD set on the object (OrderedDict state_dicts carry `_metadata` this way). */
  state: unknown = undefined;
}

/** A Python set or frozenset, as its items. */
export class PySet {
  constructor(readonly items: unknown[] = []) {}
}

/** A torch storage class (`torch.FloatStorage`...) as named in a persistent id; never instantiated. */
export class TorchStorageType {
  constructor(
    /** e.g. "torch.FloatStorage", for messages. */
    readonly qualname: string,
    /** The element type as stored in the file. */
    readonly stored: StoredDType,
    readonly itemsize: number,
  ) {}
}

/** Element types a storage can hold on disk; bfloat16 and int16 have no Tensor dtype and are widened exactly. */
export type StoredDType = "float32" | "float16" | "bfloat16" | "float64" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";

/** The arguments of `torch._utils._rebuild_tensor_v2`, validated. */
export interface RebuildTensorArgs {
  /** What `persistentLoad` returned for the storage's persistent id. */
  storage: unknown;
  offset: number;
  size: number[];
  stride: number[];
}

export interface UnpickleOptions {
  /** File to name in errors. */
  file?: string;
  /** What is being unpickled, for messages (e.g. "archive/data.pkl"). */
  label?: string;
  /** Byte offset to start at (the legacy .pth format is several pickles back to back). */
  start?: number;
  /** Resolves BINPERSID ids; without it, persistent ids are refused. */
  persistentLoad?: (pid: unknown) => unknown;
  /** Builds a tensor object from `_rebuild_tensor_v2` arguments; without it, tensors are refused. */
  rebuildTensor?: (args: RebuildTensorArgs) => unknown;
  maxStack?: number;
  maxMemo?: number;
  /**
   * Most steps the pickle may take: one per opcode plus one per element an allowed call copies (default 2^20). A state
   * dict needs about 40 per tensor, so this allows some 25,000 tensors; the cap keeps a small (or deflated) file from
   * making the reader loop and allocate for minutes (nested tuples cost ~100 bytes of heap per opcode byte).
   */
  maxWork?: number;
}

export interface UnpickleResult {
  value: unknown;
  /** Offset just past the STOP opcode. */
  end: number;
}

const STORAGE_TYPES: Record<string, [StoredDType, number]> = {
  FloatStorage: ["float32", 4],
  DoubleStorage: ["float64", 8],
  HalfStorage: ["float16", 2],
  BFloat16Storage: ["bfloat16", 2],
  LongStorage: ["int64", 8],
  IntStorage: ["int32", 4],
  ShortStorage: ["int16", 2],
  CharStorage: ["int8", 1],
  ByteStorage: ["uint8", 1],
  BoolStorage: ["bool", 1],
};

/** Storage classes torch has but that have no meaning for VGG weights; named so the error says what is wrong. */
const UNSUPPORTED_STORAGES = new Set([
  "ComplexFloatStorage",
  "ComplexDoubleStorage",
  "QInt8Storage",
  "QUInt8Storage",
  "QInt32Storage",
  "QUInt4x2Storage",
  "QUInt2x4Storage",
  "UntypedStorage",
]);

type Call = (args: unknown[], m: Machine) => unknown;

/** Callable globals: module.name -> implementation. Everything else is refused. */
const CALLABLE: Record<string, Call> = {
  "collections.OrderedDict": (args, m) => newDict(args, m, "collections.OrderedDict"),
  "builtins.dict": (args, m) => newDict(args, m, "builtins.dict"),
  "builtins.set": (args, m) => new PySet(iterableArg(args, m, "set")),
  "builtins.frozenset": (args, m) => new PySet(iterableArg(args, m, "frozenset")),
  "builtins.bytearray": (args, m) => latin1Bytes(args, m, "bytearray"),
  // Protocol 2 writes `bytes` as _codecs.encode(str, 'latin1') so that Python 2 can read it.
  "_codecs.encode": (args, m) => latin1Bytes(args, m, "_codecs.encode"),
  "torch.Size": (args, m) => {
    const items = args.length === 0 ? [] : iterableArg(args, m, "torch.Size");
    return new PyTuple(intList(items, m, "torch.Size"));
  },
  "torch.device": (args, m) => {
    if (typeof args[0] !== "string" || args.length > 2) m.fail("torch.device expects a string");
    return args.length === 2 ? `${args[0]}:${String(args[1])}` : args[0];
  },
  "torch._utils._rebuild_tensor": (args, m) => rebuildTensor(args, m, 4),
  "torch._utils._rebuild_tensor_v2": (args, m) => rebuildTensor(args, m, 6),
  "torch._utils._rebuild_parameter": (args, m) => unwrapParameter(args, m, 3),
  "torch._utils._rebuild_parameter_with_state": (args, m) => unwrapParameter(args, m, 4),
};

/** Python 2 module names that protocol-2 pickles use (`fix_imports`), mapped like Python's unpickler maps them. */
const MODULE_ALIASES: Record<string, string> = { __builtin__: "builtins", copy_reg: "copyreg" };

/** The input ended inside the pickle; a reader holding only a prefix of the file can retry with more. */
export class PickleTruncated extends VggError {}

class Global {
  constructor(
    readonly qualname: string,
    readonly call: Call,
  ) {}
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

/** The pickle virtual machine state; exposed to the global implementations for their error reporting. */
class Machine {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  pos: number;
  /** Start of the opcode being executed, for messages. */
  at = 0;
  readonly stack: unknown[] = [];
  readonly marks: number[] = [];
  readonly memo = new Map<number, unknown>();
  /** Objects made by rebuildTensor, so that `_rebuild_parameter` only accepts real tensors. */
  readonly tensors = new WeakSet<object>();
  readonly opts: UnpickleOptions;
  readonly maxStack: number;
  readonly maxMemo: number;
  readonly maxWork: number;
  private work = 0;

  constructor(bytes: Uint8Array, opts: UnpickleOptions) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = opts.start ?? 0;
    this.opts = opts;
    this.maxStack = opts.maxStack ?? 1 << 20;
    this.maxMemo = opts.maxMemo ?? 1 << 20;
    this.maxWork = opts.maxWork ?? 1 << 20;
  }

  spend(n: number): void {
    this.work += n;
    if (this.work > this.maxWork) this.fail(`more than ${this.maxWork} steps (opcodes and copied items); refusing`);
  }

  fail(msg: string): never {
    throw new VggError(`${this.opts.label ?? "pickle"}: ${msg} (opcode at byte ${this.at})`, this.opts.file);
  }

  need(n: number): void {
    if (n > this.bytes.length - this.pos) {
      throw new PickleTruncated(
        `${this.opts.label ?? "pickle"}: truncated at byte ${this.pos} (needs ${n} more bytes, ${this.bytes.length - this.pos} left)`,
        this.opts.file,
      );
    }
  }

  u8(): number {
    this.need(1);
    return this.bytes[this.pos++];
  }
  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.view.getInt32(this.pos, true);
    this.pos += 4;
    return v;
  }
  /** A u64 length; anything beyond the remaining input is refused here, before it is used to allocate. */
  len64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    const left = BigInt(this.bytes.length - this.pos);
    if (v > left) {
      throw new PickleTruncated(
        `${this.opts.label ?? "pickle"}: declared length ${v} exceeds the ${left} bytes left (opcode at byte ${this.at})`,
        this.opts.file,
      );
    }
    return Number(v);
  }
  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  line(): string {
    const limit = Math.min(this.bytes.length, this.pos + 1024);
    for (let i = this.pos; i < limit; i++) {
      if (this.bytes[i] === 0x0a) {
        const s = latin1.decode(this.bytes.subarray(this.pos, i));
        this.pos = i + 1;
        return s;
      }
    }
    if (limit === this.bytes.length) this.need(limit - this.pos + 1);
    this.fail("GLOBAL name longer than 1024 bytes");
  }
  str(n: number): string {
    const b = this.take(n);
    try {
      return utf8.decode(b);
    } catch {
      this.fail("string is not valid UTF-8");
    }
  }

  push(v: unknown): void {
    if (this.stack.length >= this.maxStack) this.fail(`stack deeper than ${this.maxStack} items`);
    this.stack.push(v);
  }
  pop(): unknown {
    if (this.stack.length === 0 || this.stack.length <= (this.marks.at(-1) ?? -1)) this.fail("stack underflow");
    return this.stack.pop();
  }
  top(): unknown {
    if (this.stack.length === 0 || this.stack.length <= (this.marks.at(-1) ?? -1)) this.fail("stack underflow");
    return this.stack[this.stack.length - 1];
  }
  /** Items pushed since the last MARK, removing them and the mark. */
  popMark(): unknown[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail("no MARK on the stack");
    return this.stack.splice(m);
  }
  memoPut(i: number, v: unknown): void {
    if (!this.memo.has(i) && this.memo.size >= this.maxMemo) this.fail(`memo larger than ${this.maxMemo} entries`);
    this.memo.set(i, v);
  }
  memoGet(i: number): unknown {
    if (!this.memo.has(i)) this.fail(`memo key ${i} is not defined`);
    return this.memo.get(i);
  }
}

function describe(v: unknown): string {
  if (v === null) return "None";
  if (v instanceof PyTuple) return "tuple";
  if (Array.isArray(v)) return "list";
  if (v instanceof PyDict) return "dict";
  if (v instanceof PySet) return "set";
  if (v instanceof Uint8Array) return "bytes";
  if (v instanceof Global) return v.qualname;
  if (v instanceof TorchStorageType) return v.qualname;
  if (typeof v === "bigint") return "int";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float";
  if (typeof v === "string") return "str";
  if (typeof v === "boolean") return "bool";
  return "object";
}

function newDict(args: unknown[], m: Machine, name: string): PyDict {
  const d = new PyDict();
  if (args.length === 0) return d;
  if (args.length !== 1) m.fail(`${name} expects at most one argument`);
  const src = args[0];
  if (src instanceof PyDict) {
    m.spend(src.map.size);
    for (const [k, v] of src.map) d.map.set(k, v);
    return d;
  }
  for (const pair of iterableArg(args, m, name)) {
    const kv = pair instanceof PyTuple ? pair.items : Array.isArray(pair) ? pair : null;
    if (kv?.length !== 2) m.fail(`${name} expects (key, value) pairs`);
    setItem(m, d, kv[0], kv[1]);
  }
  return d;
}

function iterableArg(args: unknown[], m: Machine, name: string): unknown[] {
  if (args.length !== 1) m.fail(`${name} expects one argument`);
  const a = args[0];
  const items = Array.isArray(a) ? a : a instanceof PyTuple || a instanceof PySet ? a.items : null;
  if (items) {
    m.spend(items.length);
    return items.slice();
  }
  m.fail(`${name} expects a list or tuple, got ${describe(a)}`);
}

function latin1Bytes(args: unknown[], m: Machine, name: string): Uint8Array {
  if (args.length === 0) return new Uint8Array(0);
  const [s, enc] = args;
  if (s instanceof Uint8Array || typeof s === "string") m.spend(s.length);
  if (s instanceof Uint8Array && args.length === 1) return s.slice();
  if (typeof s !== "string" || args.length !== 2 || (enc !== "latin1" && enc !== "latin-1")) {
    m.fail(`${name} is only allowed as ${name}(str, 'latin1')`);
  }
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) m.fail(`${name}: character outside latin1`);
    out[i] = c;
  }
  return out;
}

function toInt(v: unknown): number | null {
  if (typeof v === "number" && Number.isSafeInteger(v)) return v;
  if (typeof v === "boolean") return v ? 1 : 0;
  return null;
}

function intList(items: unknown[], m: Machine, what: string): number[] {
  m.spend(items.length);
  return items.map((x) => {
    const n = toInt(x);
    if (n === null) m.fail(`${what} must hold integers, got ${describe(x)}`);
    return n;
  });
}

function tupleInts(v: unknown, m: Machine, what: string): number[] {
  if (v instanceof PyTuple) return intList(v.items, m, what);
  if (Array.isArray(v)) return intList(v, m, what);
  m.fail(`${what} must be a tuple, got ${describe(v)}`);
}

const MAX_DIMS = 64;

function rebuildTensor(args: unknown[], m: Machine, minArgs: number): unknown {
  const rebuild = m.opts.rebuildTensor;
  if (!rebuild) m.fail("tensors are not expected in this pickle");
  if (args.length < minArgs || args.length > 7) m.fail(`_rebuild_tensor called with ${args.length} arguments`);
  const offset = toInt(args[1]);
  if (offset === null || offset < 0) m.fail("tensor storage offset must be a non-negative integer");
  const size = tupleInts(args[2], m, "tensor size");
  const stride = tupleInts(args[3], m, "tensor stride");
  if (size.length !== stride.length) m.fail(`tensor size has ${size.length} dims but stride has ${stride.length}`);
  // Copying a view costs elements x dimensions; no weights tensor comes near this many dimensions.
  if (size.length > MAX_DIMS) m.fail(`tensor has ${size.length} dimensions, more than ${MAX_DIMS}`);
  if (size.some((d) => d < 0)) m.fail("tensor size has a negative dimension");
  if (stride.some((d) => d < 0)) m.fail("tensor stride has a negative entry");
  const t = rebuild({ storage: args[0], offset, size, stride });
  if (typeof t === "object" && t !== null) m.tensors.add(t);
  return t;
}

function unwrapParameter(args: unknown[], m: Machine, n: number): unknown {
  if (args.length !== n) m.fail(`_rebuild_parameter called with ${args.length} arguments`);
  const t = args[0];
  if (typeof t !== "object" || t === null || !m.tensors.has(t)) m.fail(`parameter data is a ${describe(t)}, not a tensor`);
  return t;
}

function resolveGlobal(m: Machine, module: string, name: string): unknown {
  const written = `${module}.${name}`;
  // Object.hasOwn throughout: names like `constructor` or `__proto__` must not find Object.prototype members.
  const qual = `${Object.hasOwn(MODULE_ALIASES, module) ? MODULE_ALIASES[module] : module}.${name}`;
  if (module === "torch") {
    if (Object.hasOwn(STORAGE_TYPES, name)) {
      const [dtype, itemsize] = STORAGE_TYPES[name];
      return new TorchStorageType(written, dtype, itemsize);
    }
    if (UNSUPPORTED_STORAGES.has(name)) m.fail(`unsupported tensor storage '${shown(written)}'`);
  }
  const call = Object.hasOwn(CALLABLE, qual) ? CALLABLE[qual] : undefined;
  if (!call) m.fail(`forbidden global '${shown(written)}' in pickle (only tensors, dicts and plain values can be loaded)`);
  return new Global(written, call);
}

function isHashable(k: unknown): boolean {
  if (k === null) return true;
  const t = typeof k;
  if (t === "string" || t === "number" || t === "bigint" || t === "boolean") return true;
  if (k instanceof PyTuple) return k.items.every(isHashableShallow);
  return k instanceof Uint8Array || k instanceof TorchStorageType;
}

/** Tuple keys may nest tuples; checked one level deep so a hostile key cannot make this recurse. */
function isHashableShallow(k: unknown): boolean {
  if (k instanceof PyTuple) return true;
  return isHashable(k);
}

function setItem(m: Machine, d: unknown, k: unknown, v: unknown): void {
  if (!(d instanceof PyDict)) m.fail(`cannot set an item on a ${describe(d)}`);
  if (k instanceof PyTuple) m.spend(k.items.length);
  if (!isHashable(k)) m.fail(`unhashable dict key of type ${describe(k)}`);
  d.map.set(k, v);
}

function append(m: Machine, list: unknown, items: unknown[]): void {
  if (!Array.isArray(list)) m.fail(`cannot append to a ${describe(list)}`);
  for (const x of items) list.push(x);
}

function call(m: Machine, fn: unknown, args: unknown, op: string): unknown {
  if (!(fn instanceof Global)) m.fail(`${op} on ${describe(fn)}, which is not an allowed callable`);
  if (!(args instanceof PyTuple)) m.fail(`${op} arguments must be a tuple, got ${describe(args)}`);
  return fn.call(args.items, m);
}

function build(m: Machine, obj: unknown, state: unknown): void {
  // Only dicts take BUILD state in torch pickles (an OrderedDict's `_metadata`); no attribute is set anywhere.
  if (!(obj instanceof PyDict)) m.fail(`BUILD on a ${describe(obj)} is not supported`);
  if (!(state instanceof PyDict || state instanceof PyTuple || state === null)) {
    m.fail(`BUILD state must be a dict, got ${describe(state)}`);
  }
  obj.state = state;
}

function longLE(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Python ints beyond this many bytes have no use in a weights file and would make BigInt parsing quadratic. */
const MAX_LONG_BYTES = 256;

/**
 * Runs the pickle at `opts.start` (default 0) up to its STOP opcode and returns the value.
 * Tensors come out as whatever `opts.rebuildTensor` returns; dicts as PyDict, tuples as PyTuple, lists as arrays,
 * ints as number (or bigint beyond 2^53), bytes as Uint8Array, None as null.
 */
export function unpickle(bytes: Uint8Array, opts: UnpickleOptions = {}): UnpickleResult {
  const m: Machine = new Machine(bytes, opts);
  for (;;) {
    m.at = m.pos;
    m.spend(1);
    const op = m.u8();
    switch (op) {
      case 0x80: {
        // PROTO
        const v = m.u8();
        if (v < 2 || v > 5) m.fail(`unsupported pickle protocol ${v}`);
        break;
      }
      case 0x95: // FRAME: framing is only a hint for buffered readers; the whole input is already in memory.
        m.len64();
        break;
      case 0x2e: {
        // STOP
        if (m.marks.length) m.fail("STOP with an open MARK");
        if (m.stack.length !== 1) m.fail(`STOP with ${m.stack.length} items on the stack`);
        return { value: m.stack[0], end: m.pos };
      }
      case 0x28: // MARK
        if (m.marks.length >= m.maxStack) m.fail("too many MARKs");
        m.marks.push(m.stack.length);
        break;
      case 0x30: // POP
        m.pop();
        break;
      case 0x31: // POP_MARK
        m.popMark();
        break;
      case 0x32: // DUP
        m.push(m.top());
        break;

      case 0x4e: // NONE
        m.push(null);
        break;
      case 0x88: // NEWTRUE
        m.push(true);
        break;
      case 0x89: // NEWFALSE
        m.push(false);
        break;
      case 0x4a: // BININT
        m.push(m.i32());
        break;
      case 0x4b: // BININT1
        m.push(m.u8());
        break;
      case 0x4d: // BININT2
        m.push(m.u16());
        break;
      case 0x8a: {
        // LONG1
        const n = m.u8();
        m.push(longLE(m.take(n)));
        break;
      }
      case 0x8b: {
        // LONG4
        const n = m.i32();
        if (n < 0 || n > MAX_LONG_BYTES) m.fail(`LONG4 of ${n} bytes refused`);
        m.push(longLE(m.take(n)));
        break;
      }
      case 0x47: {
        // BINFLOAT: big-endian, unlike every other number in a pickle.
        m.need(8);
        m.push(m.view.getFloat64(m.pos, false));
        m.pos += 8;
        break;
      }

      case 0x58: // BINUNICODE
        m.push(m.str(m.u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        m.push(m.str(m.u8()));
        break;
      case 0x8d: // BINUNICODE8
        m.push(m.str(m.len64()));
        break;
      case 0x55: // SHORT_BINSTRING (Python 2 str)
        m.push(latin1.decode(m.take(m.u8())));
        break;
      case 0x54: {
        // BINSTRING
        const n = m.i32();
        if (n < 0) m.fail("negative BINSTRING length");
        m.push(latin1.decode(m.take(n)));
        break;
      }
      case 0x43: // SHORT_BINBYTES
        m.push(m.take(m.u8()).slice());
        break;
      case 0x42: // BINBYTES
        m.push(m.take(m.u32()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        m.push(m.take(m.len64()).slice());
        break;

      case 0x29: // EMPTY_TUPLE
        m.push(new PyTuple([]));
        break;
      case 0x85: // TUPLE1
        m.push(new PyTuple([m.pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = m.pop();
        const a = m.pop();
        m.push(new PyTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = m.pop();
        const b = m.pop();
        const a = m.pop();
        m.push(new PyTuple([a, b, c]));
        break;
      }
      case 0x74: // TUPLE
        m.push(new PyTuple(m.popMark()));
        break;
      case 0x5d: // EMPTY_LIST
        m.push([]);
        break;
      case 0x6c: // LIST
        m.push(m.popMark());
        break;
      case 0x7d: // EMPTY_DICT
        m.push(new PyDict());
        break;
      case 0x64: {
        // DICT
        const items = m.popMark();
        if (items.length % 2) m.fail("DICT with an odd number of items");
        const d = new PyDict();
        for (let i = 0; i < items.length; i += 2) setItem(m, d, items[i], items[i + 1]);
        m.push(d);
        break;
      }
      case 0x8f: // EMPTY_SET
        m.push(new PySet());
        break;
      case 0x90: {
        // ADDITEMS
        const items = m.popMark();
        const s = m.top();
        if (!(s instanceof PySet)) m.fail(`ADDITEMS on a ${describe(s)}`);
        for (const x of items) s.items.push(x);
        break;
      }
      case 0x91: // FROZENSET
        m.push(new PySet(m.popMark()));
        break;

      case 0x61: {
        // APPEND
        const v = m.pop();
        append(m, m.top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = m.popMark();
        append(m, m.top(), items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = m.pop();
        const k = m.pop();
        setItem(m, m.top(), k, v);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = m.popMark();
        if (items.length % 2) m.fail("SETITEMS with an odd number of items");
        const d = m.top();
        for (let i = 0; i < items.length; i += 2) setItem(m, d, items[i], items[i + 1]);
        break;
      }

      case 0x71: // BINPUT
        m.memoPut(m.u8(), m.top());
        break;
      case 0x72: // LONG_BINPUT
        m.memoPut(m.u32(), m.top());
        break;
      case 0x94: // MEMOIZE
        m.memoPut(m.memo.size, m.top());
        break;
      case 0x68: // BINGET
        m.push(m.memoGet(m.u8()));
        break;
      case 0x6a: // LONG_BINGET
        m.push(m.memoGet(m.u32()));
        break;

      case 0x63: {
        // GLOBAL
        const module = m.line();
        const name = m.line();
        m.push(resolveGlobal(m, module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = m.pop();
        const module = m.pop();
        if (typeof module !== "string" || typeof name !== "string") m.fail("STACK_GLOBAL needs two strings");
        m.push(resolveGlobal(m, module, name));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = m.pop();
        const fn = m.pop();
        m.push(call(m, fn, args, "REDUCE"));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args); for the allowed constructors that is the same as calling them.
        const args = m.pop();
        const cls = m.pop();
        m.push(call(m, cls, args, "NEWOBJ"));
        break;
      }
      case 0x62: {
        // BUILD
        const state = m.pop();
        build(m, m.top(), state);
        break;
      }
      case 0x51: {
        // BINPERSID
        const pid = m.pop();
        if (!opts.persistentLoad) m.fail("persistent ids are not expected in this pickle");
        m.push(opts.persistentLoad(pid));
        break;
      }

      default: {
        const ch = op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : "";
        m.fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")}${ch}`);
      }
    }
  }
}

/** A short name for a pickled value's type, for error messages in the readers. */
export function pyTypeName(v: unknown): string {
  return describe(v);
}
