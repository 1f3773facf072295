/**
 * Arrays as a dataset: X.npy (float32 or uint8, [N, C, H, W] or [N, H, W]) with Y.npy (int64 or int32, [N]).
 * uint8 pixels mean value/255 like every other uint8 source; float32 pixels are used as they are.
 */
import { VggError } from "../errors.js";
import { readNpy } from "../io/npy.js";
import type { ArraySource } from "./dataset.js";

function readImages(file: string): Omit<ArraySource, "kind" | "labels"> {
  const t = readNpy(file);
  if (t.dtype !== "float32" && t.dtype !== "uint8") {
    throw new VggError(`images must be float32 or uint8, not ${t.dtype} (convert with x.astype(np.float32))`, file);
  }
  let dims: number[];
  if (t.shape.length === 4) dims = t.shape;
  else if (t.shape.length === 3) dims = [t.shape[0], 1, t.shape[1], t.shape[2]];
  else throw new VggError(`images must be [N, C, H, W] or [N, H, W], not [${t.shape.join(", ")}]`, file);
  const [n, c, h, w] = dims;
  if (n === 0 || c === 0 || h === 0 || w === 0) throw new VggError(`image array [${t.shape.join(", ")}] is empty`, file);
  if (t.shape.length === 4 && c > 4 && w <= 4) {
    throw new VggError(`images look NHWC ([${t.shape.join(", ")}]); save them as NCHW (x.transpose(0, 3, 1, 2))`, file);
  }
  const data = t.data as Uint8Array | Float32Array;
  if (data instanceof Float32Array) {
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new VggError(`image value ${data[i]} at flat index ${i} is not finite`, file);
    }
  }
  return { data, n, c, h, w };
}

function readLabels(file: string): Int32Array {
  const t = readNpy(file);
  if (t.shape.length !== 1) throw new VggError(`labels must be one-dimensional, not [${t.shape.join(", ")}]`, file);
  const out = new Int32Array(t.shape[0]);
  if (t.dtype === "int64") {
    const d = t.data as BigInt64Array;
    for (let i = 0; i < d.length; i++) {
      if (d[i] < 0n || d[i] > 0x7fffffffn) throw new VggError(`label ${d[i]} at index ${i} is not a class index`, file);
      out[i] = Number(d[i]);
    }
  } else if (t.dtype === "int32") {
    const d = t.data as Int32Array;
    for (let i = 0; i < d.length; i++) {
      if (d[i] < 0) throw new VggError(`label ${d[i]} at index ${i} is not a class index`, file);
      out[i] = d[i];
    }
  } else {
    throw new VggError(`labels must be int64 or int32, not ${t.dtype}`, file);
  }
  return out;
}

/** Reads and cross-checks an image array and its labels. */
export function loadNpyPair(xFile: string, yFile: string): ArraySource {
  const x = readImages(xFile);
  const labels = readLabels(yFile);
  if (labels.length !== x.n) throw new VggError(`${labels.length} labels for ${x.n} images in ${xFile}`, yFile);
  return { kind: "array", ...x, labels };
}
