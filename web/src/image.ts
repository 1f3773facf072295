/**
 * The browser's side of preprocessing: decode a picked file with the browser's own decoders into the same uint8 CHW
 * image that `vgg predict` gets from sharp, and draw images and feature maps on canvases. Everything after decoding
 * (resize, crop, normalisation) is the shared code of src/data/preprocessing.ts.
 */

import type { Preprocessing } from "../../src/data/preprocessing.js";
import type { Image } from "../../src/data/transforms.js";
import type { GrayImage } from "../../src/predict/grid-core.js";

export interface Decoded {
  bitmap: ImageBitmap;
  /** uint8 CHW, RGB or gray (PIL's convert("L") weights). */
  image: Image;
}

/**
 * Decodes without colour management, premultiplication or EXIF rotation, as sharp/PIL give the pixels to
 * torchvision. An alpha channel is dropped (transparent pixels come out black, where sharp keeps their colour).
 */
export async function decodeFile(file: Blob, channels: 1 | 3): Promise<Decoded> {
  const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "none" });
  const { width: w, height: h } = bitmap;
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  if (!ctx) throw new Error("no 2D canvas");
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const plane = w * h;
  const data = new Uint8Array(channels * plane);
  if (channels === 3) {
    for (let i = 0, j = 0; i < plane; i++, j += 4) {
      data[i] = rgba[j];
      data[plane + i] = rgba[j + 1];
      data[2 * plane + i] = rgba[j + 2];
    }
  } else {
    // PIL: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
    for (let i = 0, j = 0; i < plane; i++, j += 4) data[i] = (rgba[j] * 19595 + rgba[j + 1] * 38470 + rgba[j + 2] * 7471 + 0x8000) >> 16;
  }
  return { bitmap, image: { data, c: channels, h, w } };
}

/** Draws a bitmap scaled to at most `max` pixels on its longer side. */
export function drawBitmap(canvas: HTMLCanvasElement, bitmap: ImageBitmap, max = 512): void {
  const k = Math.min(1, max / Math.max(bitmap.width, bitmap.height));
  canvas.width = Math.max(1, Math.round(bitmap.width * k));
  canvas.height = Math.max(1, Math.round(bitmap.height * k));
  const ctx = canvas.getContext("2d");
  ctx?.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
}

/**
 * The network input as a picture: normalisation undone with the preprocessing's mean/std (values back in [0, 1]),
 * BGR shown as RGB, one channel (or a replicated one) as gray.
 */
export function drawInput(canvas: HTMLCanvasElement, x: Float32Array, shape: readonly number[], p: Preprocessing): void {
  const [c, h, w] = shape;
  const plane = h * w;
  const { mean, std } = p.transform;
  const srcC = mean?.length ?? (p.channels === 1 ? 1 : c);
  const rgba = new Uint8ClampedArray(plane * 4);
  const value = (ch: number, i: number) => {
    const v = x[ch * plane + i];
    const m = mean ? mean[Math.min(ch, mean.length - 1)] : 0;
    const s = std ? std[Math.min(ch, std.length - 1)] : 1;
    return Math.round((v * s + m) * 255);
  };
  for (let i = 0; i < plane; i++) {
    let r: number;
    let g: number;
    let b: number;
    if (srcC === 1 || c === 1) {
      r = g = b = value(0, i);
    } else {
      [r, g, b] = [value(0, i), value(1, i), value(2, i)];
      if (p.bgr) [r, b] = [b, r];
    }
    rgba.set([r, g, b, 255], i * 4);
  }
  canvas.width = w;
  canvas.height = h;
  canvas.getContext("2d")?.putImageData(new ImageData(rgba, w, h), 0, 0);
}

/** A gray feature grid (src/predict/grid-core.ts) on a canvas. */
export function drawGray(canvas: HTMLCanvasElement, g: GrayImage): void {
  const rgba = new Uint8ClampedArray(g.width * g.height * 4);
  for (let i = 0; i < g.data.length; i++) rgba.set([g.data[i], g.data[i], g.data[i], 255], i * 4);
  canvas.width = g.width;
  canvas.height = g.height;
  canvas.getContext("2d")?.putImageData(new ImageData(rgba, g.width, g.height), 0, 0);
}
