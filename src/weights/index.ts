/** One entry point for weight files: the format is recognised from the bytes, not trusted from the extension. */
import { VggError } from "../errors.js";
import { fsError, withFile } from "../io/atomic.js";
import type { StateDict } from "../tensor.js";
import { LEGACY_PTH_PREFIX, readPth } from "./pth.js";
import { readSafetensors } from "./safetensors.js";

export { readSafetensorsFile, writeSafetensors } from "./safetensors.js";

export type WeightsFormat = "pth-zip" | "pth-legacy" | "safetensors" | "npy";

/** Recognises a weights file by its first bytes; null when it is none of the known formats. */
export function detectWeightsFormat(path: string): WeightsFormat | null {
  return withFile(path, (f) => {
    const head = f.read(0, Math.min(f.size, 16));
    if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04) return "pth-zip";
    // An empty zip archive starts with its end record; still a zip, and the pth reader explains what is missing.
    if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x05 && head[3] === 0x06) return "pth-zip";
    if (head.length >= LEGACY_PTH_PREFIX.length && LEGACY_PTH_PREFIX.every((b, i) => head[i] === b)) return "pth-legacy";
    if (head.length >= 6 && head[0] === 0x93 && String.fromCharCode(...head.subarray(1, 6)) === "NUMPY") return "npy";
    // safetensors has no magic: a plausible header length followed by the JSON object's opening brace. A length
    // past the end of the file still counts (a truncated download), so the reader can say the file is cut short.
    if (head.length >= 9) {
      const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
      if (n >= 2n && n <= 100_000_000n && head[8] === 0x7b) return "safetensors";
    }
    return null;
  });
}

/**
 * The format of a weights file, or a VggError saying it is not one (a .npy array, or unrecognised bytes). Commands
 * call it before anything else about the file, so a file that is no weights at all is reported as that first.
 */
export function weightsFormat(path: string): "pth-zip" | "pth-legacy" | "safetensors" {
  let format: WeightsFormat | null;
  try {
    format = detectWeightsFormat(path);
  } catch (err) {
    throw fsError(path, err);
  }
  if (format === "npy")
    throw new VggError("this is a .npy array, not a weights file (want a PyTorch .pth/.pt or a .safetensors state dict)", path);
  if (format === null)
    throw new VggError("not a weights file: unknown weights format (want a PyTorch .pth/.pt or a .safetensors state dict)", path);
  return format;
}

/** Reads a state dict from a torch.save file (zip or legacy) or a safetensors file. */
export function loadStateDict(path: string): StateDict {
  return weightsFormat(path) === "safetensors" ? readSafetensors(path) : readPth(path);
}
