/**
 * NumPy .npy files (format versions 1.0, 2.0, 3.0), the project's tensor exchange format at the edges.
 * The header is a Python dict literal; it is parsed by a small grammar of its own (never evaluated), and only the
 * exact three keys numpy writes are accepted.
 */
import { shown, VggError } from "../errors.js";
import { type DType, numel, type Tensor } from "../tensor.js";
import { fsError, withFile, writeFileAtomic } from "./atomic.js";
import { checkTensor, ITEMSIZE, tensorBytes, typedFromBytes } from "./bytes.js";

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

const DESCR: Record<string, DType> = {
  "<f4": "float32",
  "<f8": "float64",
  "<f2": "float16",
  "<i8": "int64",
  "<i4": "int32",
  "|i1": "int8",
  "|u1": "uint8",
  "|b1": "bool",
};
const DESCR_OF: Record<DType, string> = Object.fromEntries(Object.entries(DESCR).map(([k, v]) => [v, k])) as Record<DType, string>;

type Value = string | number | boolean | Value[];

/** Recursive-descent parser for the header's dict literal: strings, ints, True/False, tuples. */
class HeaderParser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly file: string,
  ) {}

  private fail(msg: string): never {
    throw new VggError(`bad .npy header: ${msg} at character ${this.i}`, this.file);
  }
  private ws(): void {
    while (this.i < this.s.length && " \t\r\n".includes(this.s[this.i])) this.i++;
  }
  private eat(ch: string): boolean {
    this.ws();
    if (this.s[this.i] === ch) {
      this.i++;
      return true;
    }
    return false;
  }
  private expect(ch: string): void {
    if (!this.eat(ch)) this.fail(`expected '${ch}'`);
  }

  private value(depth: number): Value {
    this.ws();
    const c = this.s[this.i];
    if (c === "'" || c === '"') {
      const end = this.s.indexOf(c, this.i + 1);
      if (end < 0) this.fail("unterminated string");
      const v = this.s.slice(this.i + 1, end);
      if (v.includes("\\")) this.fail("escapes in strings are not supported");
      this.i = end + 1;
      return v;
    }
    if (c === "(") {
      if (depth > 0) this.fail("nested tuples are not allowed");
      this.i++;
      const items: Value[] = [];
      for (;;) {
        if (this.eat(")")) return items;
        items.push(this.value(depth + 1));
        if (this.eat(")")) return items;
        this.expect(",");
      }
    }
    if (c === "[") this.fail("structured dtypes are not supported");
    const m = /^(?:True|False|\d+L?)/.exec(this.s.slice(this.i, this.i + 24));
    if (!m) this.fail("unexpected token");
    this.i += m[0].length;
    if (m[0] === "True") return true;
    if (m[0] === "False") return false;
    // Python 2 numpy wrote long dims with an L suffix.
    const n = Number(m[0].replace("L", ""));
    if (!Number.isSafeInteger(n)) this.fail("integer too large");
    return n;
  }

  dict(): Map<string, Value> {
    const out = new Map<string, Value>();
    this.expect("{");
    for (;;) {
      if (this.eat("}")) break;
      const k = this.value(1);
      if (typeof k !== "string") this.fail("dict keys must be strings");
      if (out.has(k)) this.fail(`duplicate key '${shown(k)}'`);
      this.expect(":");
      out.set(k, this.value(0));
      if (this.eat("}")) break;
      this.expect(",");
    }
    this.ws();
    if (this.i !== this.s.length) this.fail("trailing characters after the dict");
    return out;
  }
}

interface Header {
  dtype: DType;
  shape: number[];
}

function parseHeader(text: string, file: string): Header {
  const d = new HeaderParser(text, file).dict();
  for (const k of d.keys()) {
    if (k !== "descr" && k !== "fortran_order" && k !== "shape") throw new VggError(`bad .npy header: unexpected key '${shown(k)}'`, file);
  }
  const descr = d.get("descr");
  const fortran = d.get("fortran_order");
  const shape = d.get("shape");
  if (typeof descr !== "string") throw new VggError("bad .npy header: 'descr' is missing or not a string", file);
  if (typeof fortran !== "boolean") throw new VggError("bad .npy header: 'fortran_order' is missing or not a bool", file);
  if (!Array.isArray(shape) || !shape.every((x) => typeof x === "number")) {
    throw new VggError("bad .npy header: 'shape' is missing or not a tuple of integers", file);
  }
  const dtype = Object.hasOwn(DESCR, descr) ? DESCR[descr] : undefined;
  if (!dtype) {
    const what = `'${shown(descr, 20)}'`;
    if (descr.startsWith(">")) throw new VggError(`big-endian dtype ${what} is not supported; save with a little-endian dtype`, file);
    if (descr.includes("O")) throw new VggError(`object arrays (dtype ${what}) are not supported`, file);
    throw new VggError(`unsupported .npy dtype ${what} (want <f4, <f8, <f2, <i8, <i4, |i1, |u1 or |b1)`, file);
  }
  const dims = shape as number[];
  // With at most one dimension above 1, Fortran and C order are the same bytes.
  if (fortran && dims.filter((x) => x > 1).length > 1) {
    throw new VggError("Fortran-order arrays are not supported; save with np.ascontiguousarray", file);
  }
  return { dtype, shape: dims };
}

/** Reads a .npy file into a row-major tensor (float16 as raw bits, bool as bytes). */
export function readNpy(path: string): Tensor {
  return withFile(path, (f) => {
    try {
      const pre = f.read(0, Math.min(f.size, 12));
      if (pre.length < 10 || MAGIC.some((b, i) => pre[i] !== b)) throw new VggError("not a .npy file (bad magic)", path);
      const major = pre[6];
      const minor = pre[7];
      if (minor !== 0 || major < 1 || major > 3) throw new VggError(`unsupported .npy format version ${major}.${minor}`, path);
      const view = new DataView(pre.buffer, pre.byteOffset, pre.byteLength);
      if (major > 1 && pre.length < 12) throw new VggError("truncated .npy file (no header length)", path);
      const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
      const headerStart = major === 1 ? 10 : 12;
      const dataStart = headerStart + headerLen;
      if (dataStart > f.size)
        throw new VggError(`truncated .npy file: header of ${headerLen} bytes runs past the end (${f.size} bytes)`, path);
      const raw = f.read(headerStart, headerLen);
      let text: string;
      try {
        text = new TextDecoder(major === 3 ? "utf-8" : "latin1", { fatal: true }).decode(raw);
      } catch {
        throw new VggError("bad .npy header: not valid UTF-8", path);
      }
      const { dtype, shape } = parseHeader(text, path);
      const n = numel(shape);
      const want = n * ITEMSIZE[dtype];
      const have = f.size - dataStart;
      if (want !== have) {
        throw new VggError(
          `shape [${shape.join(", ")}] of ${dtype} needs ${want} data bytes but the file has ${have}${have < want ? " (truncated?)" : ""}`,
          path,
        );
      }
      return { dtype, shape, data: typedFromBytes(dtype, f.read(dataStart, want)) };
    } catch (err) {
      if (err instanceof RangeError) throw new VggError(`cannot load: ${err.message}`, path);
      throw fsError(path, err);
    }
  });
}

/** Writes `t` as a C-order .npy file (version 1.0, or 2.0 when the header needs it), atomically. */
export function writeNpy(path: string, t: Tensor): void {
  checkTensor(t, "array", path);
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(", ")})`;
  const dict = `{'descr': '${DESCR_OF[t.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  // numpy pads with spaces and a final newline so the data starts on a 64-byte boundary.
  let major = 1;
  let pre = 10;
  let total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  if (total - pre > 0xffff) {
    major = 2;
    pre = 12;
    total = Math.ceil((pre + dict.length + 1) / 64) * 64;
  }
  const header = `${dict}${" ".repeat(total - pre - dict.length - 1)}\n`;
  const head = new Uint8Array(total);
  head.set(MAGIC, 0);
  head[6] = major;
  head[7] = 0;
  const view = new DataView(head.buffer);
  if (major === 1) view.setUint16(8, header.length, true);
  else view.setUint32(8, header.length, true);
  head.set(Buffer.from(header, "latin1"), pre);
  writeFileAtomic(path, [head, tensorBytes(t)]);
}
