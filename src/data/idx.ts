/**
 * IDX files (LeCun's MNIST format, also Fashion-MNIST's), raw or gzip-compressed. Only unsigned-byte arrays exist
 * in practice, so only element type 0x08 is accepted. Nothing is allocated from the header's word alone: raw
 * files are checked against their size, and gzip files are inflated with an output cap equal to what the header
 * declares, so a corrupt header or a decompression bomb costs nothing.
 */
import * as zlib from "node:zlib";
import { VggError } from "../errors.js";
import { fsError, withFile } from "../io/atomic.js";
import { numel, type Tensor } from "../tensor.js";

/** Largest array an IDX file may declare; Fashion-MNIST's train images are 47 MB. */
export const IDX_MAX_BYTES = 2 ** 31 - 1;

const UBYTE = 0x08;
const TYPE_NAMES = new Map<number, string>([
  [0x08, "uint8"],
  [0x09, "int8"],
  [0x0b, "int16"],
  [0x0c, "int32"],
  [0x0d, "float32"],
  [0x0e, "float64"],
]);

export interface IdxOptions {
  /** Required number of dimensions (3 for images, 1 for labels): the magic must be 0x0000080<ndim>. */
  ndim?: number;
  maxBytes?: number;
}

interface IdxHeader {
  dims: number[];
  headerBytes: number;
  dataBytes: number;
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, "0")}`;
}

function parseHeader(head: Uint8Array, totalKnown: number | null, file: string, opts: IdxOptions): IdxHeader {
  if (head.length < 4) throw new VggError(`truncated IDX file: ${head.length} bytes, not even a magic number`, file);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const magic = view.getUint32(0, false);
  if (head[0] !== 0 || head[1] !== 0) throw new VggError(`not an IDX file (magic ${hex(magic)})`, file);
  const type = head[2];
  const ndim = head[3];
  if (type !== UBYTE) {
    const name = TYPE_NAMES.get(type);
    if (!name) throw new VggError(`not an IDX file (magic ${hex(magic)}: unknown element type 0x${type.toString(16)})`, file);
    throw new VggError(`IDX element type ${name} is not supported (only uint8)`, file);
  }
  if (opts.ndim !== undefined && ndim !== opts.ndim) {
    throw new VggError(`IDX magic ${hex(magic)} has ${ndim} dimensions, expected ${hex(0x800 + opts.ndim)} (${opts.ndim})`, file);
  }
  if (ndim === 0) throw new VggError(`IDX magic ${hex(magic)} declares zero dimensions`, file);
  const headerBytes = 4 + 4 * ndim;
  if (head.length < headerBytes) throw new VggError(`truncated IDX header: ${ndim} dimensions need ${headerBytes} bytes`, file);
  const dims = Array.from({ length: ndim }, (_, i) => view.getUint32(4 + 4 * i, false));
  const n = numel(dims);
  const limit = opts.maxBytes ?? IDX_MAX_BYTES;
  // Float multiplication of uint32s cannot overflow to a wrong small value, only lose precision above 2^53.
  if (n > limit) throw new VggError(`IDX header declares [${dims.join(", ")}] = ${n} bytes, more than the ${limit}-byte limit`, file);
  if (totalKnown !== null && headerBytes + n !== totalKnown) {
    throw new VggError(
      `IDX dimensions [${dims.join(", ")}] need ${headerBytes + n} bytes but the file has ${totalKnown}${totalKnown < headerBytes + n ? " (truncated?)" : ""}`,
      file,
    );
  }
  return { dims, headerBytes, dataBytes: n };
}

function zlibMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.code === "Z_BUF_ERROR") return "truncated gzip data (unexpected end of file)";
  const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
  return `corrupt gzip data (${msg})`;
}

function readGzip(bytes: Uint8Array, file: string, opts: IdxOptions): Tensor {
  // Inflate just enough of the stream to see the header: Z_SYNC_FLUSH returns what a prefix decodes to
  // instead of failing at its end. 4 KiB of deflate expands to at most ~4 MB.
  let head: Buffer;
  try {
    head = zlib.gunzipSync(bytes.subarray(0, Math.min(bytes.length, 4096)), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  } catch (err) {
    throw new VggError(zlibMessage(err), file);
  }
  const h = parseHeader(head.subarray(0, Math.min(head.length, 4 + 4 * 255)), null, file, opts);
  const want = h.headerBytes + h.dataBytes;
  let out: Buffer;
  try {
    out = zlib.gunzipSync(bytes, { maxOutputLength: want + 1 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException)?.code === "ERR_BUFFER_TOO_LARGE") {
      throw new VggError(`gzip data inflates to more than the ${want} bytes IDX dimensions [${h.dims.join(", ")}] declare`, file);
    }
    throw new VggError(zlibMessage(err), file);
  }
  if (out.length !== want) {
    throw new VggError(`IDX dimensions [${h.dims.join(", ")}] need ${want} bytes but the gzip data inflates to ${out.length}`, file);
  }
  return { dtype: "uint8", shape: h.dims, data: new Uint8Array(out.buffer, out.byteOffset + h.headerBytes, h.dataBytes) };
}

/** Reads an IDX file (gzip detected by its magic, not its name) as a uint8 tensor. */
export function readIdx(file: string, opts: IdxOptions = {}): Tensor {
  return withFile(file, (f) => {
    try {
      const pre = f.read(0, Math.min(f.size, 2));
      if (pre.length === 2 && pre[0] === 0x1f && pre[1] === 0x8b) return readGzip(f.read(0, f.size), file, opts);
      const head = f.read(0, Math.min(f.size, 4 + 4 * 255));
      const h = parseHeader(head, f.size, file, opts);
      return { dtype: "uint8", shape: h.dims, data: f.read(h.headerBytes, h.dataBytes) };
    } catch (err) {
      throw fsError(file, err);
    }
  });
}

/** Images: magic 0x00000803, [N, H, W] uint8. */
export function readIdxImages(file: string, opts: Omit<IdxOptions, "ndim"> = {}): Tensor {
  return readIdx(file, { ...opts, ndim: 3 });
}

/** Labels: magic 0x00000801, [N] uint8. */
export function readIdxLabels(file: string, opts: Omit<IdxOptions, "ndim"> = {}): Uint8Array {
  return readIdx(file, { ...opts, ndim: 1 }).data as Uint8Array;
}

/** Encodes an IDX file's bytes (used by tests and fixture scripts). */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.length);
  const view = new DataView(out.buffer);
  out[2] = UBYTE;
  out[3] = dims.length;
  dims.forEach((d, i) => {
    view.setUint32(4 + 4 * i, d, false);
  });
  out.set(data, 4 + 4 * dims.length);
  return out;
}
