/**
 * Feature maps as pictures: every channel min-max normalised to 0-255 on its own and tiled row by row in a
 * near-square grid (columns = ceil(sqrt(C))) with 1-pixel white gaps. Maps smaller than 16 pixels are enlarged
 * by pixel repetition so each cell is at least 16 pixels across. A vector (fc6, fc7, logits) is one
 * near-square tile, normalised as a whole.
 */

import { VggError } from "../errors.js";

export interface GrayImage {
  data: Uint8Array;
  width: number;
  height: number;
}

const GAP = 255;
const MIN_CELL = 16;

function toByte(v: number, lo: number, hi: number): number {
  return hi > lo ? Math.round(((v - lo) / (hi - lo)) * 255) : 0;
}

/** One image's feature map, [C, H, W] or [F], as a grayscale grid. */
export function featureGrid(data: Float32Array, shape: readonly number[]): GrayImage {
  if (shape.length === 1) return vectorTile(data, shape[0]);
  if (shape.length !== 3) throw new VggError(`feature grid: want [C, H, W] or [F], got [${shape.join(", ")}]`);
  const [c, h, w] = shape;
  const cols = Math.ceil(Math.sqrt(c));
  const rows = Math.ceil(c / cols);
  const k = Math.max(1, Math.ceil(MIN_CELL / Math.max(h, w)));
  const ch = h * k;
  const cw = w * k;
  const width = cols * cw + (cols - 1);
  const height = rows * ch + (rows - 1);
  const out = new Uint8Array(width * height).fill(GAP);
  const plane = h * w;
  for (let i = 0; i < c; i++) {
    const m = data.subarray(i * plane, (i + 1) * plane);
    let lo = Infinity;
    let hi = -Infinity;
    for (let j = 0; j < plane; j++) {
      lo = Math.min(lo, m[j]);
      hi = Math.max(hi, m[j]);
    }
    const oy = Math.floor(i / cols) * (ch + 1);
    const ox = (i % cols) * (cw + 1);
    for (let y = 0; y < ch; y++) {
      const src = Math.floor(y / k) * w;
      const dst = (oy + y) * width + ox;
      for (let x = 0; x < cw; x++) out[dst + x] = toByte(m[src + Math.floor(x / k)], lo, hi);
    }
  }
  return { data: out, width, height };
}

function vectorTile(data: Float32Array, n: number): GrayImage {
  const width = Math.ceil(Math.sqrt(n));
  const height = Math.ceil(n / width);
  let lo = Infinity;
  let hi = -Infinity;
  for (let j = 0; j < n; j++) {
    lo = Math.min(lo, data[j]);
    hi = Math.max(hi, data[j]);
  }
  const out = new Uint8Array(width * height).fill(GAP);
  for (let j = 0; j < n; j++) out[j] = toByte(data[j], lo, hi);
  return { data: out, width, height };
}
