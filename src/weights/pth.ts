/**
 * Reader for `torch.save` files: the zip format (PyTorch >= 1.6) and the legacy format
 * (`_use_new_zipfile_serialization=False`). Only state dicts of tensors come out: the pickle goes through the
 * allow-list unpickler, so a file that would run code in `torch.load` is refused instead.
 *
 * Tensors are built lazily: the pickle only yields (storage, offset, size, stride) descriptors, and only the
 * tensors of the selected state dict are materialised, so the optimizer state of a training checkpoint is never
 * read. A contiguous tensor covering its whole storage keeps the storage's buffer (no copy); views are copied.
 */
import * as zlib from "node:zlib";
import { shown, VggError } from "../errors.js";
import { fsError, type ReadFile, withFile } from "../io/atomic.js";
import { allocTyped, typedFromBytes } from "../io/bytes.js";
import { type DType, numel, type StateDict, type Tensor, type TypedData } from "../tensor.js";
import {
  PickleTruncated,
  PyDict,
  PyTuple,
  pyTypeName,
  type RebuildTensorArgs,
  type StoredDType,
  TorchStorageType,
  unpickle,
} from "./pickle.js";

/** What `torch.save` writes first in the legacy format: LONG1 of this number, pickled with protocol 2. */
const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;

/** The first 15 bytes of every legacy .pth file (PROTO 2, LONG1 10 bytes of the magic number, STOP). */
export const LEGACY_PTH_PREFIX = Uint8Array.from([
  0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
]);

/** Expanding a zero-stride view past its storage is legal in torch, but no weights need more than this. */
const MAX_EXPANDED_NUMEL = 1 << 24;
/** Typed arrays in V8 stop at 2^32 elements; refuse earlier with a message instead of a RangeError. */
const MAX_NUMEL = 2 ** 32 - 1;

/** A storage named by a persistent id: `key` selects the bytes; a legacy view starts `base` elements in. */
class StorageRef {
  constructor(
    readonly key: string,
    readonly type: TorchStorageType,
    /** Elements in the whole storage as declared by the pickle. */
    readonly rootNumel: number,
    readonly base: number,
    /** Elements visible through this reference. */
    readonly numel: number,
  ) {}
}

class LazyTensor {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

function safeCount(v: unknown): number | null {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : null;
}

/** Decodes `('storage', type, key, location, numel[, view_metadata])`; the 6-tuple is the legacy form. */
function makePersistentLoad(file: string, legacy: boolean) {
  return (pid: unknown): StorageRef => {
    const items = pid instanceof PyTuple ? pid.items : null;
    if (items?.[0] !== "storage") {
      const what = items && typeof items[0] === "string" ? `'${shown(items[0])}'` : pyTypeName(pid);
      throw new VggError(`unsupported persistent id ${what} in pickle (only tensor storages are allowed)`, file);
    }
    if (items.length !== (legacy ? 6 : 5)) throw new VggError(`storage persistent id has ${items.length} fields`, file);
    const [, type, key, , n] = items;
    if (!(type instanceof TorchStorageType)) throw new VggError(`storage type is a ${pyTypeName(type)}, not a torch storage class`, file);
    // torch names storages by number (zip) or by address (legacy); anything else could escape the data/ folder.
    if (typeof key !== "string" || !/^[\w.-]{1,256}$/.test(key) || key.startsWith(".")) {
      throw new VggError("storage key is not a plain name", file);
    }
    const numel = safeCount(n);
    if (numel === null) throw new VggError(`storage '${key}' has an invalid element count`, file);
    const view = legacy ? items[5] : null;
    if (view === null) return new StorageRef(key, type, numel, 0, numel);
    // Pre-0.4 legacy files could pickle storage views: (view_key, offset, size), in elements of the root storage.
    const v = view instanceof PyTuple ? view.items : [];
    const off = safeCount(v[1]);
    const len = safeCount(v[2]);
    if (v.length !== 3 || off === null || len === null || off + len > numel) {
      throw new VggError(`storage '${key}' has an invalid view`, file);
    }
    return new StorageRef(key, type, numel, off, len);
  };
}

function makeRebuild(file: string) {
  return (a: RebuildTensorArgs): LazyTensor => {
    if (!(a.storage instanceof StorageRef)) throw new VggError(`tensor storage is a ${pyTypeName(a.storage)}, not a storage`, file);
    return new LazyTensor(a.storage, a.offset, a.size, a.stride);
  };
}

const WRAPPER_KEYS = ["state_dict", "model_state_dict", "model"];

/** The tensors to load: the top-level dict itself, or the state dict a training checkpoint wraps. */
function selectStateDict(top: unknown, file: string): Map<string, LazyTensor> {
  if (!(top instanceof PyDict)) {
    throw new VggError(`the pickled object is a ${pyTypeName(top)}, not a state dict (a dict of tensors)`, file);
  }
  const isTensors = (d: PyDict) => [...d.map.values()].every((v) => v instanceof LazyTensor);
  let chosen: PyDict | undefined;
  let where = "";
  if (isTensors(top)) chosen = top;
  else {
    for (const k of WRAPPER_KEYS) {
      const v = top.map.get(k);
      if (v instanceof PyDict) {
        chosen = v;
        where = ` in '${k}'`;
        break;
      }
    }
  }
  if (!chosen) {
    const keys = [...top.map.keys()].slice(0, 6).map((k) => String(k));
    const bad = [...top.map.entries()].find(([, v]) => !(v instanceof LazyTensor));
    throw new VggError(
      `no state dict found: top-level entry '${String(bad?.[0])}' is a ${pyTypeName(bad?.[1])}, not a tensor, and there is no ` +
        `'state_dict' or 'model' entry (keys: ${keys.join(", ")}${top.map.size > 6 ? ", ..." : ""})`,
      file,
    );
  }
  const out = new Map<string, LazyTensor>();
  for (const [k, v] of chosen.map) {
    if (typeof k !== "string") throw new VggError(`state dict key ${shown(String(k))}${where} is a ${pyTypeName(k)}, not a string`, file);
    if (!(v instanceof LazyTensor)) throw new VggError(`state dict entry '${shown(k)}'${where} is a ${pyTypeName(v)}, not a tensor`, file);
    out.set(k, v);
  }
  return out;
}

function widen(stored: StoredDType): DType {
  return stored === "bfloat16" ? "float32" : stored === "int16" ? "int32" : stored;
}

/** Stored elements as a typed array over `bytes` (aligned, since every storage is read into its own buffer). */
function storedArray(stored: StoredDType, bytes: Uint8Array): TypedData | Int16Array {
  if (stored === "bfloat16") return typedFromBytes("float16", bytes);
  if (stored === "int16") {
    const b = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice();
    return new Int16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  }
  return typedFromBytes(stored, bytes);
}

/** bfloat16 is the top half of a float32 and int16 fits int32, so both widen exactly. */
function widenData(stored: StoredDType, data: TypedData | Int16Array): TypedData {
  if (stored === "bfloat16") {
    const src = data as Uint16Array;
    const out = new Float32Array(src.length);
    const bits = new Uint32Array(out.buffer);
    for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
    return out;
  }
  if (stored === "int16") return Int32Array.from(data as Int16Array);
  return data as TypedData;
}

/** Element access shared by every typed array; lets one gather loop serve all dtypes. */
interface Elements {
  readonly length: number;
  [i: number]: number | bigint;
  subarray(begin: number, end: number): Elements;
  set(src: Elements, offset: number): void;
}

function isContiguous(size: number[], stride: number[]): boolean {
  let expect = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expect) return false;
    expect *= size[d];
  }
  return true;
}

class Materialiser {
  /** Raw bytes per storage key, and whether a tensor already owns them (a second owner gets a copy). */
  private readonly cache = new Map<string, { bytes: Uint8Array; owned: boolean }>();
  private readonly refs = new Map<string, number>();

  constructor(
    private readonly file: string,
    private readonly fetch: (ref: StorageRef) => Uint8Array,
    tensors: Iterable<LazyTensor>,
  ) {
    for (const t of tensors) this.refs.set(t.storage.key, (this.refs.get(t.storage.key) ?? 0) + 1);
  }

  private storage(ref: StorageRef): { bytes: Uint8Array; owned: boolean } {
    let s = this.cache.get(ref.key);
    if (!s) {
      s = { bytes: this.fetch(ref), owned: false };
      this.cache.set(ref.key, s);
    }
    return s;
  }

  private release(key: string): void {
    const n = (this.refs.get(key) ?? 1) - 1;
    this.refs.set(key, n);
    if (n <= 0) this.cache.delete(key);
  }

  tensor(name: string, t: LazyTensor): Tensor {
    const { file } = this;
    const ref = t.storage;
    const s = this.storage(ref);
    const itemsize = ref.type.itemsize;
    if (s.bytes.byteLength % itemsize !== 0 || s.bytes.byteLength / itemsize < ref.base + ref.numel) {
      throw new VggError(
        `tensor '${shown(name)}': storage '${ref.key}' holds ${s.bytes.byteLength} bytes, too few for ${ref.base + ref.numel} ${ref.type.stored} elements`,
        file,
      );
    }
    const count = numel(t.size);
    let last = t.offset;
    for (let d = 0; d < t.size.length; d++) if (t.size[d] > 0) last += (t.size[d] - 1) * t.stride[d];
    if (count > MAX_NUMEL) throw new VggError(`tensor '${shown(name)}' has ${count} elements, more than can be loaded`, file);
    if (count > 0 && last >= ref.numel) {
      throw new VggError(
        `tensor '${shown(name)}' [${t.size.join(", ")}] at offset ${t.offset} with strides [${t.stride.join(", ")}] reaches element ${last} of a storage of ${ref.numel}`,
        file,
      );
    }
    if (count > ref.numel && count > MAX_EXPANDED_NUMEL) {
      throw new VggError(`tensor '${shown(name)}' expands a storage of ${ref.numel} elements to ${count} (zero strides); refusing`, file);
    }
    const stored = ref.type.stored;
    const dtype = widen(stored);
    const shape = t.size.slice();
    const whole = ref.base === 0 && t.offset === 0 && count === ref.rootNumel && isContiguous(t.size, t.stride);
    let data: TypedData;
    if (whole && !s.owned && dtype === stored && s.bytes.byteLength === count * itemsize) {
      s.owned = true;
      data = typedFromBytes(dtype, s.bytes);
    } else {
      const src = storedArray(stored, s.bytes) as unknown as Elements;
      const out = (stored === "int16"
        ? new Int16Array(count)
        : allocTyped(stored === "bfloat16" ? "float16" : dtype, count)) as unknown as Elements;
      gather(src, out, ref.base + t.offset, t.size, t.stride, count);
      data = widenData(stored, out as unknown as TypedData);
    }
    this.release(ref.key);
    return { dtype, shape, data };
  }
}

/** Copies a strided view into `out` in C order; the innermost dimension goes by runs when it is unit-stride. */
function gather(src: Elements, out: Elements, start: number, size: number[], stride: number[], numel: number): void {
  if (numel === 0) return;
  const nd = size.length;
  if (nd === 0) {
    out[0] = src[start];
    return;
  }
  const inner = size[nd - 1];
  const innerStride = stride[nd - 1];
  const idx = new Array<number>(nd).fill(0);
  let p = start;
  for (let o = 0; o < numel; o += inner) {
    if (innerStride === 1) out.set(src.subarray(p, p + inner), o);
    else for (let j = 0; j < inner; j++) out[o + j] = src[p + j * innerStride];
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]++;
      p += stride[d];
      if (idx[d] < size[d]) break;
      p -= stride[d] * size[d];
      idx[d] = 0;
    }
  }
}

function materialise(file: string, lazy: Map<string, LazyTensor>, fetch: (ref: StorageRef) => Uint8Array): StateDict {
  const m = new Materialiser(file, fetch, lazy.values());
  const out: StateDict = new Map();
  for (const [name, t] of lazy) out.set(name, m.tensor(name, t));
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Zip container

interface ZipEntry {
  name: string;
  method: number;
  crc: number;
  compSize: number;
  size: number;
  localOffset: number;
}

const U32_MAX = 0xffffffff;

function u64(view: DataView, at: number, file: string, what: string, limit: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(limit)) throw new VggError(`zip ${what} (${v}) is past the end of the file`, file);
  return Number(v);
}

/** Reads the central directory, preferring ZIP64 records when present (torch writes them for large files). */
export function readZipDirectory(f: ReadFile): ZipEntry[] {
  const file = f.file;
  if (f.size < 22) throw new VggError("truncated zip archive (no end of central directory)", file);
  const tailLen = Math.min(f.size, 22 + 0xffff + 20);
  const tailStart = f.size - tailLen;
  const tail = f.read(tailStart, tailLen);
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === 0x06054b50 && i + 22 + tv.getUint16(i + 20, true) === tailLen) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new VggError("not a valid zip archive: end of central directory not found (truncated file?)", file);
  if (tv.getUint16(eocd + 4, true) !== 0 || tv.getUint16(eocd + 6, true) !== 0) {
    throw new VggError("multi-disk zip archives are not supported", file);
  }
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  let cdLimit = tailStart + eocd;
  if (eocd >= 20 && tv.getUint32(eocd - 20, true) === 0x07064b50) {
    const z64 = u64(tv, eocd - 20 + 8, file, "ZIP64 end record offset", f.size - 56);
    const rec = f.read(z64, 56);
    const rv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    if (rv.getUint32(0, true) !== 0x06064b50) throw new VggError("corrupt zip archive: bad ZIP64 end of central directory", file);
    count = u64(rv, 32, file, "entry count", f.size);
    cdSize = u64(rv, 40, file, "central directory size", f.size);
    cdOffset = u64(rv, 48, file, "central directory offset", f.size);
    cdLimit = z64;
  } else if (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX) {
    throw new VggError("corrupt zip archive: ZIP64 fields without a ZIP64 locator", file);
  }
  if (cdOffset + cdSize > cdLimit) throw new VggError("corrupt zip archive: central directory is past its end record", file);
  if (count * 46 > cdSize)
    throw new VggError(`corrupt zip archive: ${count} entries cannot fit in a ${cdSize}-byte central directory`, file);
  const cd = f.read(cdOffset, cdSize);
  const v = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const entries: ZipEntry[] = [];
  const names = new Set<string>();
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || v.getUint32(p, true) !== 0x02014b50)
      throw new VggError(`corrupt zip archive: bad central directory entry ${i}`, file);
    const flags = v.getUint16(p + 8, true);
    const method = v.getUint16(p + 10, true);
    const crc = v.getUint32(p + 16, true);
    let compSize = v.getUint32(p + 20, true);
    let size = v.getUint32(p + 24, true);
    const nameLen = v.getUint16(p + 28, true);
    const extraLen = v.getUint16(p + 30, true);
    const commentLen = v.getUint16(p + 32, true);
    let localOffset = v.getUint32(p + 42, true);
    const end = p + 46 + nameLen + extraLen + commentLen;
    if (end > cdSize) throw new VggError(`corrupt zip archive: central directory entry ${i} overruns the directory`, file);
    let name: string;
    try {
      name = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
    } catch {
      throw new VggError(`corrupt zip archive: entry ${i} has a name that is not UTF-8`, file);
    }
    if (flags & 1) throw new VggError(`zip entry '${shown(name)}' is encrypted`, file);
    // ZIP64 extra field: the 64-bit values of exactly those fields that are 0xFFFFFFFF, in this order.
    let q = p + 46 + nameLen;
    const extraEnd = q + extraLen;
    while (q + 4 <= extraEnd) {
      const id = v.getUint16(q, true);
      const len = v.getUint16(q + 2, true);
      const body = q + 4;
      if (body + len > extraEnd) throw new VggError(`corrupt zip archive: bad extra field in entry '${shown(name)}'`, file);
      if (id === 0x0001) {
        let r = body;
        const next = (what: string): number => {
          if (r + 8 > body + len) throw new VggError(`corrupt zip archive: short ZIP64 field in entry '${shown(name)}'`, file);
          const x = u64(v, r, file, `${what} of '${shown(name)}'`, f.size * 1032 + 1024);
          r += 8;
          return x;
        };
        if (size === U32_MAX) size = next("size");
        if (compSize === U32_MAX) compSize = next("compressed size");
        if (localOffset === U32_MAX) localOffset = next("offset");
      }
      q = body + len;
    }
    if (names.has(name)) throw new VggError(`corrupt zip archive: duplicate entry '${shown(name)}'`, file);
    names.add(name);
    if (localOffset + 30 > cdOffset || compSize > f.size)
      throw new VggError(`corrupt zip archive: entry '${shown(name)}' is out of range`, file);
    entries.push({ name, method, crc, compSize, size, localOffset });
    p = end;
  }
  return entries;
}

/** Decompresses and CRC-checks one entry into a fresh buffer of its own. */
export function readZipEntry(f: ReadFile, e: ZipEntry): Uint8Array {
  const file = f.file;
  const head = f.read(e.localOffset, 30);
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (hv.getUint32(0, true) !== 0x04034b50) throw new VggError(`corrupt zip archive: bad local header for '${shown(e.name)}'`, file);
  const nameLen = hv.getUint16(26, true);
  const extraLen = hv.getUint16(28, true);
  const dataStart = e.localOffset + 30 + nameLen + extraLen;
  if (dataStart + e.compSize > f.size)
    throw new VggError(`truncated zip archive: entry '${shown(e.name)}' runs past the end of the file`, file);
  const localName = Buffer.from(f.read(e.localOffset + 30, nameLen)).toString("utf8");
  if (localName !== e.name)
    throw new VggError(`corrupt zip archive: local header names '${shown(localName)}', directory says '${shown(e.name)}'`, file);
  let data: Uint8Array;
  if (e.method === 0) {
    if (e.compSize !== e.size) throw new VggError(`corrupt zip archive: stored entry '${shown(e.name)}' has two different sizes`, file);
    data = f.read(dataStart, e.size);
  } else if (e.method === 8) {
    // Deflate cannot expand more than ~1032:1, so a larger declared size is a lie (or a zip bomb).
    if (e.size > e.compSize * 1032 + 1024)
      throw new VggError(`corrupt zip archive: entry '${shown(e.name)}' declares an impossible size`, file);
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(f.read(dataStart, e.compSize), { maxOutputLength: Math.max(e.size, 1) });
    } catch (err) {
      throw new VggError(`corrupt zip archive: cannot inflate '${shown(e.name)}' (${(err as Error).message.split("\n")[0]})`, file);
    }
    if (out.byteLength !== e.size)
      throw new VggError(`corrupt zip archive: '${shown(e.name)}' inflates to ${out.byteLength} bytes, not ${e.size}`, file);
    data = out.byteOffset % 8 === 0 && out.byteLength === out.buffer.byteLength ? out : new Uint8Array(out);
  } else {
    throw new VggError(
      `zip entry '${shown(e.name)}' uses compression method ${e.method}; only stored (0) and deflate (8) are supported`,
      file,
    );
  }
  if (typeof zlib.crc32 === "function" && zlib.crc32(data) >>> 0 !== e.crc) {
    throw new VggError(`corrupt zip archive: CRC mismatch in '${shown(e.name)}'`, file);
  }
  return data;
}

function readZipPth(f: ReadFile): StateDict {
  const file = f.file;
  const entries = readZipDirectory(f);
  const byName = new Map(entries.map((e) => [e.name, e]));
  // torch puts every record under one top folder (named after the file when it was saved); find it via data.pkl.
  const pkls = entries.filter((e) => /^([^/]+\/)?data\.pkl$/.test(e.name));
  if (pkls.length !== 1) {
    throw new VggError(
      pkls.length ? "zip archive has more than one top-level data.pkl" : "zip archive is not a PyTorch checkpoint (no data.pkl)",
      file,
    );
  }
  const pkl = pkls[0];
  const prefix = pkl.name.slice(0, pkl.name.length - "data.pkl".length);
  if (byName.has(`${prefix}constants.pkl`)) {
    throw new VggError(
      "this is a TorchScript archive (torch.jit.save); load it in Python and torch.save(model.state_dict()) instead",
      file,
    );
  }
  const order = byName.get(`${prefix}byteorder`);
  if (order) {
    const text = Buffer.from(readZipEntry(f, order)).toString("latin1").trim();
    if (text !== "little") throw new VggError(`byte order '${shown(text, 20)}' is not supported (only little-endian files)`, file);
  }
  const { value } = unpickle(readZipEntry(f, pkl), {
    file,
    label: pkl.name,
    persistentLoad: makePersistentLoad(file, false),
    rebuildTensor: makeRebuild(file),
  });
  const lazy = selectStateDict(value, file);
  return materialise(file, lazy, (ref) => {
    const name = `${prefix}data/${ref.key}`;
    const e = byName.get(name);
    if (!e) throw new VggError(`storage '${ref.key}' is missing from the archive (no entry '${shown(name)}')`, file);
    const want = ref.rootNumel * ref.type.itemsize;
    if (e.size !== want) {
      throw new VggError(`storage '${ref.key}' has ${e.size} bytes but ${ref.rootNumel} ${ref.type.stored} elements need ${want}`, file);
    }
    return readZipEntry(f, e);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Legacy format

interface LegacyHead {
  main: unknown;
  refs: Map<string, StorageRef>;
  keys: string[];
  /** File offset of the first storage. */
  end: number;
}

/** Parses the five pickles at the start of a legacy file from `bytes` (which may be only a prefix of it). */
function parseLegacyHead(bytes: Uint8Array, file: string): LegacyHead {
  const plain = (label: string, start: number) => unpickle(bytes, { file, label, start });
  const magic = plain("legacy header", 0);
  if (magic.value !== LEGACY_MAGIC) throw new VggError("not a legacy PyTorch file (bad magic number)", file);
  const proto = plain("legacy header", magic.end);
  if (proto.value !== LEGACY_PROTOCOL_VERSION)
    throw new VggError(`unsupported legacy protocol version ${shown(String(proto.value))}`, file);
  const sys = plain("legacy system info", proto.end);
  if (sys.value instanceof PyDict && sys.value.map.get("little_endian") === false) {
    throw new VggError("file was saved on a big-endian machine; not supported", file);
  }
  const refs = new Map<string, StorageRef>();
  const persistentLoad = makePersistentLoad(file, true);
  const main = unpickle(bytes, {
    file,
    label: "legacy pickle",
    start: sys.end,
    persistentLoad: (pid) => {
      const ref = persistentLoad(pid);
      const prev = refs.get(ref.key);
      if (prev && (prev.type.itemsize !== ref.type.itemsize || prev.rootNumel !== ref.rootNumel)) {
        throw new VggError(`storage '${ref.key}' is declared twice with different sizes`, file);
      }
      refs.set(ref.key, ref);
      return ref;
    },
    rebuildTensor: makeRebuild(file),
  });
  const list = plain("legacy storage list", main.end);
  if (!Array.isArray(list.value) || list.value.some((k) => typeof k !== "string")) {
    throw new VggError("legacy storage list is not a list of names", file);
  }
  return { main: main.value, refs, keys: list.value as string[], end: list.end };
}

function readLegacyPth(f: ReadFile): StateDict {
  const file = f.file;
  // The pickles are small and come first; read a prefix and grow it only if a pickle runs past it, so the
  // storages are read once, each straight into its own buffer, instead of holding the whole file twice.
  let head: LegacyHead | undefined;
  for (let n = Math.min(f.size, 1 << 16); !head; n = Math.min(f.size, n * 4)) {
    try {
      head = parseLegacyHead(f.read(0, n), file);
    } catch (err) {
      if (!(err instanceof PickleTruncated) || n === f.size) throw err;
    }
  }
  const { refs, keys } = head;
  // Storages follow back to back: an 8-byte little-endian element count, then the raw elements.
  const spans = new Map<string, [number, number]>();
  let p = head.end;
  for (const key of keys) {
    const ref = refs.get(key);
    if (!ref) throw new VggError(`storage '${shown(key)}' is listed but never used, so its element size is unknown`, file);
    if (p + 8 > f.size) throw new VggError(`truncated file: storage '${shown(key)}' header is missing`, file);
    const cb = f.read(p, 8);
    const count = new DataView(cb.buffer).getBigUint64(0, true);
    p += 8;
    const left = f.size - p;
    if (count * BigInt(ref.type.itemsize) > BigInt(left)) {
      throw new VggError(`truncated file: storage '${shown(key)}' declares ${count} elements but only ${left} bytes remain`, file);
    }
    if (Number(count) !== ref.rootNumel) {
      throw new VggError(`storage '${shown(key)}' holds ${count} elements but the pickle says ${ref.rootNumel}`, file);
    }
    const n = Number(count) * ref.type.itemsize;
    spans.set(key, [p, n]);
    p += n;
  }
  const lazy = selectStateDict(head.main, file);
  return materialise(file, lazy, (ref) => {
    const span = spans.get(ref.key);
    if (!span) throw new VggError(`storage '${ref.key}' is not in the file's storage list`, file);
    return f.read(span[0], span[1]);
  });
}

function startsWith(head: Uint8Array, prefix: Uint8Array): boolean {
  if (head.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (head[i] !== prefix[i]) return false;
  return true;
}

/** Reads a state dict (name -> tensor, dtypes as stored) from a `torch.save` file in either format. */
export function readPth(path: string): StateDict {
  return withFile(path, (f) => {
    try {
      const head = f.read(0, Math.min(f.size, LEGACY_PTH_PREFIX.length));
      if (head[0] === 0x50 && head[1] === 0x4b) return readZipPth(f);
      if (startsWith(head, LEGACY_PTH_PREFIX)) return readLegacyPth(f);
      throw new VggError("not a PyTorch checkpoint (neither a torch.save zip archive nor a legacy .pth pickle)", path);
    } catch (err) {
      // Allocation failures on absurd sizes are the file's fault, not a bug: report them like any other problem.
      if (err instanceof RangeError) throw new VggError(`cannot load: ${err.message}`, path);
      throw fsError(path, err);
    }
  });
}
