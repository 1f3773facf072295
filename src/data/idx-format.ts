/**
 * The IDX format itself (LeCun's MNIST files, Fashion-MNIST's): the header's checks and the encoder, with no file or
 * gzip access, so the browser's training page reads the same arrays as idx.ts does in Node.
 */
import { VggError } from "../errors.js";
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

export interface IdxHeader {
  dims: number[];
  headerBytes: number;
  dataBytes: number;
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, "0")}`;
}

export function parseHeader(head: Uint8Array, totalKnown: number | null, file: string, opts: IdxOptions): IdxHeader {
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

/** An uncompressed IDX file's bytes as a uint8 tensor (checked as readIdx checks a raw file). */
export function decodeIdx(raw: Uint8Array, file: string, opts: IdxOptions = {}): Tensor {
  const h = parseHeader(raw.subarray(0, Math.min(raw.length, 4 + 4 * 255)), raw.length, file, opts);
  return { dtype: "uint8", shape: h.dims, data: raw.subarray(h.headerBytes, h.headerBytes + h.dataBytes) };
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
