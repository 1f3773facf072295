/**
 * IDX files (LeCun's MNIST format, also Fashion-MNIST's), raw or gzip-compressed. Only unsigned-byte arrays exist
 * in practice, so only element type 0x08 is accepted. Nothing is allocated from the header's word alone: raw
 * files are checked against their size, and gzip files are inflated with an output cap equal to what the header
 * declares, so a corrupt header or a decompression bomb costs nothing.
 */
import * as zlib from "node:zlib";
import { VggError } from "../errors.js";
import { fsError, withFile } from "../io/atomic.js";
import type { Tensor } from "../tensor.js";
import { type IdxOptions, parseHeader } from "./idx-format.js";

export { encodeIdx, IDX_MAX_BYTES, type IdxOptions } from "./idx-format.js";

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
