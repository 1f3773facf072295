/**
 * safetensors files: read through io/atomic's positioned reads, written atomically. The format itself (parsing
 * with the format's validation rules, encoding) is safetensors-codec.ts, shared with the browser.
 */
import { VggError } from "../errors.js";
import { fsError, withFile, writeFileAtomic } from "../io/atomic.js";
import type { StateDict } from "../tensor.js";
import { decodeSafetensors, encodeSafetensors, type SafetensorsFile } from "./safetensors-codec.js";

export type { SafetensorsFile } from "./safetensors-codec.js";

/**
 * Reads every tensor and the `__metadata__` of a safetensors file. With `tensors: false` only the header is read
 * (and checked in full): the metadata, and an empty tensor map.
 */
export function readSafetensorsFile(path: string, opts: { tensors?: boolean } = {}): SafetensorsFile {
  return withFile(path, (f) => {
    try {
      return decodeSafetensors(f, path, opts);
    } catch (err) {
      if (err instanceof RangeError) throw new VggError(`cannot load: ${err.message}`, path);
      throw fsError(path, err);
    }
  });
}

/** Reads a safetensors file as a state dict (in header order; dtypes as stored, BF16/I16 widened). */
export function readSafetensors(path: string): StateDict {
  return readSafetensorsFile(path).tensors;
}

/** Writes `sd` as safetensors, atomically (see encodeSafetensors for the layout). */
export function writeSafetensors(path: string, sd: StateDict, metadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeSafetensors(sd, metadata, path));
}
