/**
 * The part of prediction preprocessing that needs no Node: the presets' parameters and the pure image math
 * (PIL-like resize, crop, normalisation) on decoded uint8 CHW images. The browser demo (web/) runs exactly this
 * code on pixels decoded by a canvas; `preprocess.ts` adds decoding files with sharp and checkpoints' transforms.
 * See preprocess.ts for what each preset does.
 */

import { VggError } from "../errors.js";
import { Sfc32 } from "../random.js";
import { centerCrop, compileTransforms, type Image, resize, scaledSize, type Transform, type TransformConfig } from "./transforms.js";

export const PRESETS = ["torchvision", "caffe", "vgg16-features"] as const;
export type PresetName = (typeof PRESETS)[number];

export const TORCHVISION_MEAN = [0.485, 0.456, 0.406];
export const TORCHVISION_STD = [0.229, 0.224, 0.225];
/** Caffe's VGG mean pixel, in BGR order, 0-255 units. */
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68];
/**
 * torchvision's VGG16 IMAGENET1K_FEATURES weights (ported from amdegroot's SSD) want RGB, 0-255 minus this mean
 * (about 123/117/104), unscaled: Caffe-style values, but in RGB order with a different mean, so neither preset
 * above fits. [0, 1] units, exactly torchvision's numbers.
 */
export const VGG16_FEATURES_MEAN = [0.48235, 0.45882, 0.40784];

export interface Preprocessing {
  /** "torchvision", "caffe" or "checkpoint". */
  name: string;
  /** Channels to decode to: 3 (RGB) or 1 (grayscale, as PIL's convert("L")). */
  channels: 1 | 3;
  /** Reverse the channel order after decoding (RGB -> BGR). */
  bgr: boolean;
  /** Rescale the shorter side to this, in uint8 as PIL does (two passes, rounded after each). */
  resizeShorter?: number;
  /** Bring the image to this native size first (cover it with an isotropic uint8 resize, then centre crop). */
  native?: [number, number];
  /** The rest: crop, padding, normalisation, channel replication (see data/transforms.ts). */
  transform: TransformConfig;
}

/** torchvision's, Caffe's or the VGG16 FEATURES weights' preprocessing for a `size` x `size` network input. */
export function presetPreprocessing(name: PresetName, size: number): Preprocessing {
  if (!Number.isInteger(size) || size < 1) throw new VggError(`invalid input size ${size}`);
  const resizeShorter = Math.round((size * 256) / 224);
  if (name === "torchvision") {
    return {
      name,
      channels: 3,
      bgr: false,
      resizeShorter,
      transform: { crop: size, mean: [...TORCHVISION_MEAN], std: [...TORCHVISION_STD] },
    };
  }
  if (name === "caffe") {
    // In [0, 1] units (the transforms' convention): (v/255 - m/255) / (1/255) = v - m.
    return {
      name,
      channels: 3,
      bgr: true,
      resizeShorter,
      transform: { crop: size, mean: CAFFE_MEAN_BGR.map((m) => m / 255), std: [1 / 255, 1 / 255, 1 / 255] },
    };
  }
  if (name === "vgg16-features") {
    return {
      name,
      channels: 3,
      bgr: false,
      resizeShorter,
      transform: { crop: size, mean: [...VGG16_FEATURES_MEAN], std: [1 / 255, 1 / 255, 1 / 255] },
    };
  }
  throw new VggError(`unknown preset '${name}' (known: ${PRESETS.join(", ")})`);
}

/** LPIPS's ScalingLayer, applied to images in [-1, 1]: (x - shift) / scale per RGB channel. */
export const LPIPS_SHIFT = [-0.03, -0.088, -0.188];
export const LPIPS_SCALE = [0.458, 0.448, 0.45];

/**
 * LPIPS's input: RGB at the image's own size (no resize, no crop), [0, 1] -> [-1, 1], then its ScalingLayer. In
 * the transforms' [0, 1] units: ((2v - 1) - shift) / scale = (v - (1 + shift) / 2) / (scale / 2).
 */
export function lpipsPreprocessing(): Preprocessing {
  return {
    name: "lpips",
    channels: 3,
    bgr: false,
    transform: { mean: LPIPS_SHIFT.map((s) => (1 + s) / 2), std: LPIPS_SCALE.map((s) => s / 2) },
  };
}

/** Reverses the channel order (RGB <-> BGR). */
export function reverseChannels(img: Image): Image {
  const plane = img.h * img.w;
  const out = img.data instanceof Uint8Array ? new Uint8Array(img.data.length) : new Float32Array(img.data.length);
  for (let c = 0; c < img.c; c++) out.set(img.data.subarray(c * plane, (c + 1) * plane), (img.c - 1 - c) * plane);
  return { data: out, c: img.c, h: img.h, w: img.w };
}

/**
 * PIL's Image.resize(BILINEAR) on a uint8 image: the antialiased triangle filter, horizontal pass first, each
 * pass rounded to uint8 (PIL keeps the intermediate image in the input's mode).
 */
export function resizeLikePil(img: Image, h: number, w: number): Image {
  let out = img;
  if (w !== out.w) out = resize(out, out.h, w, "same");
  if (h !== out.h) out = resize(out, h, w, "same");
  return out;
}

/** The size of an isotropic rescale that covers h x w (torchvision's Resize(s) rule for a square target). */
function coverSize(ih: number, iw: number, h: number, w: number): [number, number] {
  if (h === w) return scaledSize(ih, iw, h);
  const s = Math.max(h / ih, w / iw);
  return [Math.max(h, Math.floor(ih * s)), Math.max(w, Math.floor(iw * s))];
}

const compiled = new WeakMap<Preprocessing, Transform>();
const RNG = () => new Sfc32(0x5eed, 1, 2, 3);

/** Compiles (and caches) the transform part of a preprocessing. */
function transformOf(p: Preprocessing): Transform {
  let t = compiled.get(p);
  if (!t) {
    t = compileTransforms(p.transform);
    compiled.set(p, t);
  }
  return t;
}

/** A decoded uint8 image (in the decoding's channel order, RGB or gray) to the network's float32 CHW input. */
export function preprocessImage(img: Image, p: Preprocessing): Image {
  if (img.c !== p.channels) throw new VggError(`preprocessing '${p.name}' wants ${p.channels}-channel images, got ${img.c}`);
  let x = p.bgr ? reverseChannels(img) : img;
  if (p.native && (x.h !== p.native[0] || x.w !== p.native[1])) {
    const [h, w] = coverSize(x.h, x.w, p.native[0], p.native[1]);
    x = centerCrop(resizeLikePil(x, h, w), p.native[0], p.native[1]);
  }
  if (p.resizeShorter) {
    const [h, w] = scaledSize(x.h, x.w, p.resizeShorter);
    x = resizeLikePil(x, h, w);
  }
  const t = transformOf(p);
  const [c, h, w] = t.outputShape(x.c, x.h, x.w);
  const out = new Float32Array(c * h * w);
  t.apply(x, RNG(), out, 0);
  return { data: out, c, h, w };
}
