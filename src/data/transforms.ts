/**
 * Image preparation on plain typed arrays, CHW. A uint8 image holds 0..255 values that mean value/255 (as
 * torchvision's ToTensor); a float32 image is taken as it is. Mean/std and lighting are in those [0, 1] units.
 *
 * Each step exists as a standalone function (tests, single images, eval protocols). The loader instead uses
 * `compileTransforms`, which draws the random parameters once per image and then does padding, cropping,
 * flipping, lighting, normalisation and channel replication in one pass straight into the batch: on small images
 * intermediate arrays would cost more than the arithmetic. Only a resize materialises an intermediate image.
 */
import { VggError } from "../errors.js";
import type { Sfc32 } from "../random.js";

export interface Image {
  data: Uint8Array | Float32Array;
  c: number;
  h: number;
  w: number;
}

export function image(c: number, h: number, w: number, type: "uint8" | "float32" = "float32"): Image {
  const n = c * h * w;
  return { data: type === "uint8" ? new Uint8Array(n) : new Float32Array(n), c, h, w };
}

function like(img: Image, c: number, h: number, w: number): Image {
  return image(c, h, w, img.data instanceof Uint8Array ? "uint8" : "float32");
}

/** Scale that maps an image's stored values to [0, 1] units. */
export function valueScale(img: Image): number {
  return img.data instanceof Uint8Array ? 1 / 255 : 1;
}

export function toFloat32(img: Image): Image {
  if (img.data instanceof Float32Array) return img;
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = img.data[i] / 255;
  return { data: out, c: img.c, h: img.h, w: img.w };
}

/** Python's round(): halves to even, which torchvision's centre crop inherits. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---------------------------------------------------------------------------------------------------------------
// Resize: separable triangle filter, PIL's BILINEAR. Upscaling it is plain bilinear with half-pixel centres
// (align_corners=False, edges clamped); downscaling it widens the filter by the factor (antialiasing), which
// matters when ImageNet-sized photos are brought down to S=256.

interface Coeffs {
  start: Int32Array;
  count: Int32Array;
  taps: number;
  w: Float32Array;
}

const coeffCache = new Map<string, Coeffs>();

function coeffs(inSize: number, outSize: number): Coeffs {
  const key = `${inSize}>${outSize}`;
  const hit = coeffCache.get(key);
  if (hit) return hit;
  const scale = inSize / outSize;
  const fscale = Math.max(scale, 1);
  const support = fscale;
  const taps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const w = new Float32Array(outSize * taps);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.trunc(center - support + 0.5));
    const hi = Math.min(inSize, Math.trunc(center + support + 0.5));
    let total = 0;
    for (let x = lo; x < hi; x++) {
      const t = Math.abs((x - center + 0.5) / fscale);
      const v = t < 1 ? 1 - t : 0;
      w[i * taps + x - lo] = v;
      total += v;
    }
    for (let x = lo; x < hi; x++) w[i * taps + x - lo] /= total;
    start[i] = lo;
    count[i] = hi - lo;
  }
  const c = { start, count, taps, w };
  if (coeffCache.size > 512) coeffCache.clear();
  coeffCache.set(key, c);
  return c;
}

/**
 * Bilinear resize to exactly h x w. `type` "same" keeps uint8 (rounded, as PIL does); "float32" keeps full
 * precision for further processing (values stay in the input's units).
 */
export function resize(img: Image, h: number, w: number, type: "same" | "float32" = "same"): Image {
  return resizeRegion(img, 0, 0, img.h, img.w, h, w, type);
}

/**
 * The rh x rw region at (top, left) resized to h x w, without copying the region out first: the same as
 * `resize(crop(img, top, left, rh, rw), h, w, type)` (the filter sees only the region, edges clamped at its border,
 * as PIL's `img.crop(box).resize(...)` does). The region must lie inside the image.
 */
export function resizeRegion(
  img: Image,
  top: number,
  left: number,
  rh: number,
  rw: number,
  h: number,
  w: number,
  type: "same" | "float32" = "same",
): Image {
  if (!(h >= 1 && w >= 1 && Number.isInteger(h) && Number.isInteger(w))) throw new VggError(`cannot resize to ${h}x${w}`);
  if (
    !([top, left, rh, rw].every(Number.isInteger) && top >= 0 && left >= 0 && rh >= 1 && rw >= 1 && top + rh <= img.h && left + rw <= img.w)
  ) {
    throw new VggError(`region ${rh}x${rw} at (${top}, ${left}) is not inside a ${img.h}x${img.w} image`);
  }
  const { c } = img;
  const src = img.data;
  const whole = top === 0 && left === 0 && rh === img.h && rw === img.w;
  // Horizontal pass into [c*rh, w] floats.
  let rows: Float32Array;
  if (w === rw && whole) {
    rows = src instanceof Float32Array ? src : Float32Array.from(src);
  } else if (w === rw) {
    rows = new Float32Array(c * rh * w);
    for (let ch = 0; ch < c; ch++) {
      for (let r = 0; r < rh; r++) {
        const ib = (ch * img.h + top + r) * img.w + left;
        rows.set(src.subarray(ib, ib + rw), (ch * rh + r) * w);
      }
    }
  } else {
    const cx = coeffs(rw, w);
    rows = new Float32Array(c * rh * w);
    for (let ch = 0; ch < c; ch++) {
      for (let r = 0; r < rh; r++) {
        const ib = (ch * img.h + top + r) * img.w + left;
        const ob = (ch * rh + r) * w;
        for (let x = 0; x < w; x++) {
          const s = ib + cx.start[x];
          const k = cx.count[x];
          const wb = x * cx.taps;
          let acc = 0;
          for (let j = 0; j < k; j++) acc += src[s + j] * cx.w[wb + j];
          rows[ob + x] = acc;
        }
      }
    }
  }
  // Vertical pass, a whole row at a time.
  let out: Float32Array;
  if (h === rh) {
    out = rows === src ? Float32Array.from(rows) : rows;
  } else {
    const cy = coeffs(rh, h);
    out = new Float32Array(c * h * w);
    for (let ch = 0; ch < c; ch++) {
      const ib = ch * rh * w;
      const ob = ch * h * w;
      for (let y = 0; y < h; y++) {
        const o = ob + y * w;
        const k = cy.count[y];
        const wb = y * cy.taps;
        for (let j = 0; j < k; j++) {
          const wt = cy.w[wb + j];
          const r = ib + (cy.start[y] + j) * w;
          for (let x = 0; x < w; x++) out[o + x] += rows[r + x] * wt;
        }
      }
    }
  }
  if (type === "same" && src instanceof Uint8Array) {
    const u = new Uint8Array(out.length);
    for (let i = 0; i < out.length; i++) u[i] = Math.min(255, Math.max(0, Math.round(out[i])));
    return { data: u, c, h, w };
  }
  return { data: out, c, h, w };
}

/** Size after an isotropic rescale of the shorter side to s (longer side floored, as torchvision). */
export function scaledSize(h: number, w: number, s: number): [number, number] {
  if (h <= w) return [s, Math.max(1, Math.floor((s * w) / h))];
  return [Math.max(1, Math.floor((s * h) / w)), s];
}

/** The paper's training scale: rescale so the shorter side is s. */
export function resizeShorter(img: Image, s: number, type: "same" | "float32" = "same"): Image {
  const [h, w] = scaledSize(img.h, img.w, s);
  return resize(img, h, w, type);
}

// ---------------------------------------------------------------------------------------------------------------
// Geometry

/** The h x w window at (y, x); parts outside the image are zero (so negative offsets are padding). */
export function crop(img: Image, y: number, x: number, h: number, w: number): Image {
  const out = like(img, img.c, h, w);
  const x0 = Math.max(0, -x);
  const x1 = Math.min(w, img.w - x);
  for (let ch = 0; ch < img.c; ch++) {
    for (let r = 0; r < h; r++) {
      const sy = y + r;
      if (sy < 0 || sy >= img.h || x1 <= x0) continue;
      const s = (ch * img.h + sy) * img.w + x;
      out.data.set(img.data.subarray(s + x0, s + x1), (ch * h + r) * w + x0);
    }
  }
  return out;
}

/** Zero padding of p pixels on every side. */
export function pad(img: Image, p: number): Image {
  return crop(img, -p, -p, img.h + 2 * p, img.w + 2 * p);
}

/** Offset of a centred window of size `win` in `size` (torchvision CenterCrop, padding when too small). */
export function centerOffset(size: number, win: number): number {
  return size >= win ? roundHalfEven((size - win) / 2) : -Math.floor((win - size) / 2);
}

/** Zero-pads (centred) to at least h x w, e.g. Fashion-MNIST's 28x28 to VGG's 32x32. */
export function padTo(img: Image, h: number, w: number): Image {
  const H = Math.max(h, img.h);
  const W = Math.max(w, img.w);
  return crop(img, centerOffset(img.h, H), centerOffset(img.w, W), H, W);
}

export function centerCrop(img: Image, h: number, w: number = h): Image {
  return crop(img, centerOffset(img.h, h), centerOffset(img.w, w), h, w);
}

/** Top-left corner of a random h x w crop of an H x W image, uniform over all positions that fit. */
export function randomCropOffset(H: number, W: number, h: number, w: number, rng: Sfc32): [number, number] {
  const y = H >= h ? rng.int(H - h + 1) : centerOffset(H, h);
  const x = W >= w ? rng.int(W - w + 1) : centerOffset(W, w);
  return [y, x];
}

/** torchvision's RandomCrop(size, padding): zero padding on every side, then a uniformly placed window. */
export function randomCrop(img: Image, h: number, w: number, padding: number, rng: Sfc32): Image {
  const [y, x] = randomCropOffset(img.h + 2 * padding, img.w + 2 * padding, h, w, rng);
  return crop(img, y - padding, x - padding, h, w);
}

export function hflip(img: Image): Image {
  const out = like(img, img.c, img.h, img.w);
  const { w } = img;
  const s = img.data;
  const d = out.data;
  for (let r = 0; r < img.c * img.h; r++) {
    const b = r * w;
    for (let x = 0; x < w; x++) d[b + x] = s[b + w - 1 - x];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Colour

/**
 * ImageNet's RGB pixel covariance in [0, 1] units, as AlexNet's PCA lighting uses it (values from
 * fb.resnet.torch's transforms.lua; eigenvectors are the columns).
 */
export const IMAGENET_PCA = {
  eigval: [0.2175, 0.0188, 0.0045],
  eigvec: [
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.814],
    [-0.5836, -0.6948, 0.4203],
  ],
};

/**
 * The 1-channel equivalent of the RGB lighting: the shift it gives the channel mean of an image is a normal
 * variable with std alphastd * sqrt(sum_j (eigval_j * mean_c eigvec[c][j])^2), i.e. a brightness jitter.
 */
export const GRAY_LIGHTING_EIGVAL = Math.hypot(
  ...IMAGENET_PCA.eigval.map((l, j) => (l * IMAGENET_PCA.eigvec.reduce((s, row) => s + row[j], 0)) / 3),
);

/** Per-channel shift (in [0, 1] units) of one draw of AlexNet's lighting noise. */
export function lightingShift(channels: number, alphastd: number, rng: Sfc32): number[] {
  if (channels === 1) return [rng.normal() * alphastd * GRAY_LIGHTING_EIGVAL];
  if (channels !== 3) throw new VggError(`PCA lighting needs 1 or 3 channels, not ${channels}`);
  const a = IMAGENET_PCA.eigval.map((l) => rng.normal() * alphastd * l);
  return IMAGENET_PCA.eigvec.map((row) => row[0] * a[0] + row[1] * a[1] + row[2] * a[2]);
}

/** AlexNet's "fancy PCA" colour augmentation; returns float32 in [0, 1] units. */
export function lighting(img: Image, alphastd: number, rng: Sfc32): Image {
  const shift = lightingShift(img.c, alphastd, rng);
  const f = toFloat32(img);
  const out = new Float32Array(f.data.length);
  const plane = img.h * img.w;
  for (let ch = 0; ch < img.c; ch++) {
    const s = shift[ch];
    for (let i = ch * plane; i < (ch + 1) * plane; i++) out[i] = f.data[i] + s;
  }
  return { data: out, c: img.c, h: img.h, w: img.w };
}

/** (x - mean) / std per channel, in [0, 1] units; returns float32. */
export function normalize(img: Image, mean: readonly number[], std: readonly number[]): Image {
  checkStats(img.c, mean, std);
  const k = valueScale(img);
  const out = new Float32Array(img.data.length);
  const plane = img.h * img.w;
  for (let ch = 0; ch < img.c; ch++) {
    const a = k / std[ch];
    const b = -mean[ch] / std[ch];
    for (let i = ch * plane; i < (ch + 1) * plane; i++) out[i] = img.data[i] * a + b;
  }
  return { data: out, c: img.c, h: img.h, w: img.w };
}

/** 1 channel to c by copying the plane (grey input for a 3-channel network). */
export function replicateChannels(img: Image, c: number): Image {
  if (img.c === c) return img;
  if (img.c !== 1) throw new VggError(`cannot turn ${img.c} channels into ${c} (only 1 -> n is replication)`);
  const out = like(img, c, img.h, img.w);
  for (let ch = 0; ch < c; ch++) out.data.set(img.data, ch * img.data.length);
  return out;
}

function checkStats(c: number, mean: readonly number[], std: readonly number[]): void {
  if (mean.length !== c || std.length !== c) {
    throw new VggError(`normalisation has ${mean.length} means and ${std.length} stds for ${c}-channel images`);
  }
  if (std.some((s) => !(s > 0))) throw new VggError(`normalisation std must be positive, got [${std.join(", ")}]`);
}

// ---------------------------------------------------------------------------------------------------------------
// The whole pipeline

type Size = number | [number, number];

/**
 * The test scale Q an evaluation transform brings images to (their shorter side), by the same branches that built
 * it: the rescale, an exact resize, or (small fixed-size images that are only padded) their own size.
 */
export function evalScale(tf: TransformConfig, native: [number, number] | null): number {
  if (typeof tf.scale === "number") return tf.scale;
  if (Array.isArray(tf.scale)) return Math.round((tf.scale[0] + tf.scale[1]) / 2);
  if (tf.resize !== undefined) return typeof tf.resize === "number" ? tf.resize : Math.min(...tf.resize);
  if (native) return Math.min(...native);
  throw new VggError("images of varying size need a scale to evaluate at");
}

/** Serializable (it is sent to the loader's workers). Steps run in the order of the fields. */
export interface TransformConfig {
  /** Isotropic rescale of the shorter side to S, or to S uniform in [Smin, Smax] per image (jittering). */
  scale?: number | [number, number];
  /** Resize to exactly this size (not isotropic), e.g. Fashion-MNIST 28 -> 32. */
  resize?: Size;
  /** Centred zero padding up to at least this size, e.g. 28 -> 32. */
  padTo?: Size;
  /** Zero padding on every side before the crop (torchvision RandomCrop's `padding`, 4 for CIFAR). */
  cropPadding?: number;
  /**
   * torchvision's RandomResizedCrop: a random region of the (unresized) image, its area a fraction U(scale) of the
   * image's and its aspect ratio w/h log-uniform in `ratio` (defaults (0.08, 1) and (3/4, 4/3), as torchvision),
   * resized to `crop`. Replaces the rescale and the crop placement: it cannot be combined with scale, resize, padTo,
   * cropPadding, randomCrop or cropAt. `{}` is torchvision's RandomResizedCrop(crop).
   * The region is resampled as every resize here: PIL's antialiased bilinear filter (what torchvision's
   * resized_crop runs on a PIL image), computed in float where PIL rounds to uint8 after each of its two passes, so
   * values are within one level (1/255) of torchvision's, a third of a level on average (test/data-resized-crop).
   */
  resizedCrop?: ResizedCropConfig;
  /** Crop to this size: random position when `randomCrop`, else centred (with `resizedCrop`: the output size). */
  crop?: Size;
  randomCrop?: boolean;
  /** Fixed crop position as fractions [fy, fx] of the free room (0 = top/left, 1 = bottom/right): multi-crop. */
  cropAt?: [number, number];
  /** Random horizontal flip with probability 1/2. */
  flip?: boolean;
  /** Always flip (a test-time view). */
  hflip?: boolean;
  /** AlexNet PCA lighting with this alpha std (the paper's "random RGB colour shift"; AlexNet used 0.1). */
  lighting?: number;
  /**
   * torchvision's RandomErasing with this probability (0.5 there): a rectangle of 2-33% of the area, aspect
   * 0.3-3.3 (log-uniform), set to 0 after normalisation. Last step, after everything else.
   */
  erase?: number;
  /** Per-channel mean and std in [0, 1] units; omitted means no normalisation (values stay in [0, 1]). */
  mean?: number[];
  std?: number[];
  /** Output channels; a 1-channel image is replicated (after normalisation). */
  channels?: number;
}

/** RandomResizedCrop's ranges; an omitted one is torchvision's default. */
export interface ResizedCropConfig {
  /** Range of the region's area as a fraction of the image's (torchvision default [0.08, 1]). */
  scale?: [number, number];
  /** Range of the region's aspect ratio width/height, sampled log-uniformly (default [3/4, 4/3]). */
  ratio?: [number, number];
}

export const RESIZED_CROP_SCALE: readonly [number, number] = [0.08, 1];
export const RESIZED_CROP_RATIO: readonly [number, number] = [3 / 4, 4 / 3];

/** A region of an image: top, left, height, width (torchvision's (i, j, h, w)). */
export interface Region {
  y: number;
  x: number;
  h: number;
  w: number;
}

/**
 * torchvision 0.14's RandomResizedCrop.get_params for an H x W image, drawing from `rng` in its order: up to ten
 * tries of (area fraction, log aspect ratio), a try taken when its rounded w x h fits, then the top and left
 * uniformly; after ten misses the fallback, a centred crop of the whole image with its aspect ratio clamped to
 * `ratio`. Rounding is Python's round(), halves to even.
 */
export function resizedCropRegion(
  H: number,
  W: number,
  rng: Sfc32,
  scale: readonly [number, number] = RESIZED_CROP_SCALE,
  ratio: readonly [number, number] = RESIZED_CROP_RATIO,
): Region {
  const area = H * W;
  const lo = Math.log(ratio[0]);
  const hi = Math.log(ratio[1]);
  for (let t = 0; t < 10; t++) {
    const target = area * (scale[0] + (scale[1] - scale[0]) * rng.float());
    const aspect = Math.exp(lo + (hi - lo) * rng.float());
    const w = roundHalfEven(Math.sqrt(target * aspect));
    const h = roundHalfEven(Math.sqrt(target / aspect));
    if (w > 0 && w <= W && h > 0 && h <= H) {
      const y = rng.int(H - h + 1);
      const x = rng.int(W - w + 1);
      return { y, x, h, w };
    }
  }
  const inRatio = W / H;
  let [h, w] = [H, W];
  if (inRatio < Math.min(...ratio)) h = roundHalfEven(w / Math.min(...ratio));
  else if (inRatio > Math.max(...ratio)) w = roundHalfEven(h * Math.max(...ratio));
  return { y: Math.floor((H - h) / 2), x: Math.floor((W - w) / 2), h, w };
}

function hw(s: Size): [number, number] {
  const [h, w] = typeof s === "number" ? [s, s] : s;
  if (!(Number.isInteger(h) && Number.isInteger(w) && h >= 1 && w >= 1)) throw new VggError(`invalid image size ${JSON.stringify(s)}`);
  return [h, w];
}

/** The random choices of one image, drawn in a fixed order so they depend on the rng's key only. */
export interface AugmentParams {
  /**
   * The `resizedCrop` region in input coordinates, which is resized to `resized` (the output size; y = x = 0), or
   * null without `resizedCrop`.
   */
  region: Region | null;
  /** Size after the resize step (or the input size). */
  resized: [number, number];
  /** Window origin in the resized image's coordinates (negative = padding). */
  y: number;
  x: number;
  flip: boolean;
  /** Lighting shift per input channel, [0, 1] units. */
  shift: number[] | null;
  /** Erased rectangle in output coordinates, or null. */
  erase: { y: number; x: number; h: number; w: number } | null;
}

export interface Transform {
  readonly config: TransformConfig;
  /** [C, H, W] of the output for a c x h x w input (constant once there is a crop or a fixed resize). */
  outputShape(c: number, h: number, w: number): [number, number, number];
  params(c: number, h: number, w: number, rng: Sfc32): AugmentParams;
  /** Transforms `img` and writes the result as float32 CHW at `out[offset...]`. */
  apply(img: Image, rng: Sfc32, out: Float32Array, offset: number): void;
}

/** Validates a config and returns its fused implementation. */
export function compileTransforms(config: TransformConfig): Transform {
  const cfg = { ...config };
  if (cfg.scale !== undefined && cfg.resize !== undefined) throw new VggError("transforms: use either scale or resize, not both");
  let scale: [number, number] | null = null;
  if (cfg.scale !== undefined) {
    scale = typeof cfg.scale === "number" ? [cfg.scale, cfg.scale] : [cfg.scale[0], cfg.scale[1]];
    if (!(Number.isInteger(scale[0]) && Number.isInteger(scale[1]) && scale[0] >= 1 && scale[1] >= scale[0])) {
      throw new VggError(`transforms: invalid scale ${JSON.stringify(cfg.scale)} (want S or [Smin, Smax] with Smin <= Smax)`);
    }
  }
  const resizeTo = cfg.resize !== undefined ? hw(cfg.resize) : null;
  const padSize = cfg.padTo !== undefined ? hw(cfg.padTo) : null;
  const cropSize = cfg.crop !== undefined ? hw(cfg.crop) : null;
  const cropPadding = cfg.cropPadding ?? 0;
  if (!(Number.isInteger(cropPadding) && cropPadding >= 0)) throw new VggError(`transforms: invalid cropPadding ${cropPadding}`);
  if (cropPadding > 0 && !cropSize) throw new VggError("transforms: cropPadding needs a crop size");
  if (cfg.randomCrop && !cropSize) throw new VggError("transforms: randomCrop needs a crop size");
  const at = cfg.cropAt;
  if (at !== undefined) {
    if (!cropSize || cfg.randomCrop) throw new VggError("transforms: cropAt needs a fixed (not random) crop size");
    if (!(at.length === 2 && at.every((f) => f >= 0 && f <= 1))) throw new VggError(`transforms: invalid cropAt ${JSON.stringify(at)}`);
  }
  const alpha = cfg.lighting ?? 0;
  if (!(alpha >= 0)) throw new VggError(`transforms: invalid lighting std ${cfg.lighting}`);
  const eraseP = cfg.erase ?? 0;
  if (!(eraseP >= 0 && eraseP <= 1)) throw new VggError(`transforms: invalid erase probability ${cfg.erase}`);
  if ((cfg.mean === undefined) !== (cfg.std === undefined)) throw new VggError("transforms: give both mean and std, or neither");
  let rcScale: [number, number] | null = null;
  let rcRatio: [number, number] = [...RESIZED_CROP_RATIO];
  if (cfg.resizedCrop !== undefined) {
    const rc = cfg.resizedCrop;
    const clash = [
      cfg.scale !== undefined && "scale",
      cfg.resize !== undefined && "resize",
      cfg.padTo !== undefined && "padTo",
      cropPadding > 0 && "cropPadding",
      cfg.randomCrop && "randomCrop",
      at !== undefined && "cropAt",
    ].filter((x) => x);
    if (clash.length > 0) throw new VggError(`transforms: resizedCrop cannot be combined with ${clash.join(", ")}`);
    if (!cropSize) throw new VggError("transforms: resizedCrop needs a crop size (its output size)");
    const pair = (r: unknown): r is [number, number] =>
      Array.isArray(r) && r.length === 2 && r.every((v) => typeof v === "number" && Number.isFinite(v)) && r[0] <= r[1];
    if (typeof rc !== "object" || rc === null)
      throw new VggError(`transforms: invalid resizedCrop ${JSON.stringify(rc)} (want {scale?, ratio?})`);
    if (rc.scale !== undefined && !(pair(rc.scale) && rc.scale[0] >= 0 && rc.scale[1] > 0)) {
      throw new VggError(`transforms: invalid resizedCrop scale ${JSON.stringify(rc.scale)} (want [min, max] area fractions)`);
    }
    if (rc.ratio !== undefined && !(pair(rc.ratio) && rc.ratio[0] > 0)) {
      throw new VggError(`transforms: invalid resizedCrop ratio ${JSON.stringify(rc.ratio)} (want [min, max] aspect ratios w/h > 0)`);
    }
    rcScale = rc.scale ? [rc.scale[0], rc.scale[1]] : [...RESIZED_CROP_SCALE];
    if (rc.ratio) rcRatio = [rc.ratio[0], rc.ratio[1]];
  }
  if (cfg.channels !== undefined && !(Number.isInteger(cfg.channels) && cfg.channels >= 1)) {
    throw new VggError(`transforms: invalid channel count ${cfg.channels}`);
  }

  const resizedSize = (h: number, w: number, s: number): [number, number] => {
    if (resizeTo) return resizeTo;
    if (scale) return scaledSize(h, w, s);
    return [h, w];
  };
  // The canvas is the (resized) image, padded to padTo, padded by cropPadding; the window is cut from it.
  const geometry = (h: number, w: number) => {
    const ph = padSize ? Math.max(padSize[0], h) : h;
    const pw = padSize ? Math.max(padSize[1], w) : w;
    const oy = (padSize ? -centerOffset(h, ph) : 0) + cropPadding;
    const ox = (padSize ? -centerOffset(w, pw) : 0) + cropPadding;
    return { H: ph + 2 * cropPadding, W: pw + 2 * cropPadding, oy, ox };
  };
  const outC = (c: number) => {
    const oc = cfg.channels ?? c;
    if (oc !== c && c !== 1) throw new VggError(`transforms: cannot turn ${c}-channel images into ${oc} channels`);
    if (cfg.mean && (cfg.mean.length !== c || cfg.std!.length !== c)) {
      throw new VggError(`transforms: ${cfg.mean.length} means and ${cfg.std!.length} stds for ${c}-channel images`);
    }
    if (cfg.std?.some((s) => !(s > 0))) throw new VggError(`transforms: std must be positive, got [${cfg.std.join(", ")}]`);
    if (alpha > 0 && c !== 1 && c !== 3) throw new VggError(`transforms: PCA lighting needs 1 or 3 channels, not ${c}`);
    return oc;
  };

  const outputShape = (c: number, h: number, w: number): [number, number, number] => {
    const oc = outC(c);
    if (cropSize) return [oc, cropSize[0], cropSize[1]];
    if (scale && scale[0] !== scale[1]) throw new VggError("transforms: a jittered scale needs a crop to give a fixed size");
    const [rh, rw] = resizedSize(h, w, scale ? scale[0] : 0);
    const g = geometry(rh, rw);
    return [oc, g.H, g.W];
  };

  const params = (c: number, h: number, w: number, rng: Sfc32): AugmentParams => {
    // RandomResizedCrop replaces the rescale and the window placement (the validation above rules out the rest).
    const region = rcScale ? resizedCropRegion(h, w, rng, rcScale, rcRatio) : null;
    const s = scale ? (scale[0] === scale[1] ? scale[0] : rng.range(scale[0], scale[1])) : 0;
    const [rh, rw] = region ? cropSize! : resizedSize(h, w, s);
    const g = geometry(rh, rw);
    let wy = 0;
    let wx = 0;
    if (cropSize && !region) {
      if (cfg.randomCrop) [wy, wx] = randomCropOffset(g.H, g.W, cropSize[0], cropSize[1], rng);
      else if (at) {
        const place = (room: number, win: number, f: number) => (room >= win ? Math.round(f * (room - win)) : centerOffset(room, win));
        [wy, wx] = [place(g.H, cropSize[0], at[0]), place(g.W, cropSize[1], at[1])];
      } else [wy, wx] = [centerOffset(g.H, cropSize[0]), centerOffset(g.W, cropSize[1])];
    }
    const flip = cfg.flip ? rng.float() < 0.5 : Boolean(cfg.hflip);
    const shift = alpha > 0 ? lightingShift(c, alpha, rng) : null;
    let erase: AugmentParams["erase"] = null;
    if (eraseP > 0) {
      const [oh, ow] = cropSize ?? [g.H, g.W];
      erase = eraseRect(oh, ow, eraseP, rng);
    }
    return { region, resized: [rh, rw], y: wy - g.oy, x: wx - g.ox, flip, shift, erase };
  };

  const apply = (img: Image, rng: Sfc32, out: Float32Array, offset: number): void => {
    const [oc, oh, ow] = outputShape(img.c, img.h, img.w);
    const p = params(img.c, img.h, img.w, rng);
    let src = img;
    const r = p.region;
    if (r) src = resizeRegion(img, r.y, r.x, r.h, r.w, p.resized[0], p.resized[1], "float32");
    else if (p.resized[0] !== img.h || p.resized[1] !== img.w) src = resize(img, p.resized[0], p.resized[1], "float32");
    // Values reach the output as v * a[c] + b[c]: scale to [0,1], lighting shift, then normalisation.
    const k = valueScale(img);
    const a = new Float64Array(img.c);
    const b = new Float64Array(img.c);
    for (let ch = 0; ch < img.c; ch++) {
      const sd = cfg.std ? cfg.std[ch] : 1;
      const mu = cfg.mean ? cfg.mean[ch] : 0;
      a[ch] = k / sd;
      b[ch] = ((p.shift ? p.shift[ch] : 0) - mu) / sd;
    }
    writeWindow(src, p.y, p.x, oh, ow, p.flip, a, b, out, offset);
    const plane = oh * ow;
    for (let ch = img.c; ch < oc; ch++) out.copyWithin(offset + ch * plane, offset, offset + plane);
    const e = p.erase;
    if (e) {
      for (let ch = 0; ch < oc; ch++) {
        for (let r = e.y; r < e.y + e.h; r++) {
          const o = offset + ch * plane + r * ow + e.x;
          out.fill(0, o, o + e.w);
        }
      }
    }
  };

  return { config: cfg, outputShape, params, apply };
}

/**
 * torchvision.transforms.RandomErasing.get_params with scale (0.02, 0.33) and ratio (0.3, 3.3): up to ten tries
 * for a rectangle that fits, else nothing.
 */
export function eraseRect(h: number, w: number, p: number, rng: Sfc32): { y: number; x: number; h: number; w: number } | null {
  if (!(rng.float() < p)) return null;
  const area = h * w;
  const lo = Math.log(0.3);
  const hi = Math.log(3.3);
  for (let t = 0; t < 10; t++) {
    const a = area * (0.02 + 0.31 * rng.float());
    const ratio = Math.exp(lo + (hi - lo) * rng.float());
    const eh = Math.round(Math.sqrt(a * ratio));
    const ew = Math.round(Math.sqrt(a / ratio));
    if (!(eh >= 1 && ew >= 1 && eh < h && ew < w)) continue;
    return { y: rng.int(h - eh + 1), x: rng.int(w - ew + 1), h: eh, w: ew };
  }
  return null;
}

/** out[c, r, x] = src[c, y + r, x0 + x'] * a[c] + b[c], zero source pixels outside, x' mirrored when flipping. */
function writeWindow(
  src: Image,
  y: number,
  x: number,
  h: number,
  w: number,
  flip: boolean,
  a: Float64Array,
  b: Float64Array,
  out: Float32Array,
  offset: number,
): void {
  const d = src.data;
  const x0 = Math.min(w, Math.max(0, -x));
  const x1 = Math.max(x0, Math.min(w, src.w - x));
  for (let ch = 0; ch < src.c; ch++) {
    const ac = a[ch];
    const bc = b[ch];
    for (let r = 0; r < h; r++) {
      const o = offset + (ch * h + r) * w;
      const sy = y + r;
      if (sy < 0 || sy >= src.h) {
        out.fill(bc, o, o + w);
        continue;
      }
      const s = (ch * src.h + sy) * src.w + x;
      if (!flip) {
        out.fill(bc, o, o + x0);
        for (let i = x0; i < x1; i++) out[o + i] = d[s + i] * ac + bc;
        out.fill(bc, o + x1, o + w);
      } else {
        const e = o + w - 1;
        out.fill(bc, e - x0 + 1, o + w);
        for (let i = x0; i < x1; i++) out[e - i] = d[s + i] * ac + bc;
        out.fill(bc, o, e - x1 + 1);
      }
    }
  }
}

/** Applies `t` to one image and returns it (tests, single predictions). */
export function transformImage(t: Transform, img: Image, rng: Sfc32): Image {
  const [c, h, w] = t.outputShape(img.c, img.h, img.w);
  const out = new Float32Array(c * h * w);
  t.apply(img, rng, out, 0);
  return { data: out, c, h, w };
}

// ---------------------------------------------------------------------------------------------------------------
// Presets

export interface PresetOptions {
  /** Network input size (square). */
  size: number;
  /** Channels the network wants; 1-channel data is replicated to 3. */
  channels?: number;
  /** Small fixed-size images (Fashion-MNIST 28 for a 32 input): zero-pad (default) or resize up. */
  fit?: "pad" | "resize";
  /** Training scale S for variable-size images: fixed, or [Smin, Smax] jittered. Default size * 256/224. */
  scale?: number | [number, number];
  /** Test scale Q for variable-size images. Default: S for fixed S, (Smin+Smax)/2 for jittered S. */
  testScale?: number;
  /** Random crop padding for fixed-size data (default size/8: 4 for 32); 0 with no scale: no crop. */
  cropPadding?: number;
  /** Training at a scale: a random crop (default) or, false, the centre crop evaluation takes. */
  randomCrop?: boolean;
  flip?: boolean;
  /** Lighting alpha std; default 0.1 for variable-size (ImageNet-like) data, off for small fixed-size data. */
  lighting?: number;
  /** Random erasing probability (training only; off by default). */
  erase?: number;
  /** "meanstd" (default), "mean" (the paper: subtract the mean only) or "none". */
  normalize?: "meanstd" | "mean" | "none";
  /**
   * torchvision's fine-tuning recipe: training takes RandomResizedCrop(size) (true: torchvision's ranges; an object
   * sets them) and the flip, no lighting unless `lighting` asks for it; `scale`, `randomCrop` and `cropPadding` are
   * not used in training. Evaluation is unchanged (for photos: shorter side to `testScale` ?? `scale` ??
   * round(size * 256/224), centre crop `size`).
   */
  resizedCrop?: boolean | ResizedCropConfig;
  /**
   * Fixed normalisation in [0, 1] units, replacing the data's statistics: a pretrained model's (ImageNet's
   * [0.485, 0.456, 0.406] / [0.229, 0.224, 0.225]). One value per data channel; `normalize` still applies ("mean"
   * divides by 1 and needs no `std`, "none" takes neither).
   */
  mean?: number[];
  std?: number[];
}

export interface DataStats {
  channels: number;
  /** Native [H, W], or null when images vary in size. */
  size: [number, number] | null;
  mean: number[];
  std: number[];
}

/** A transform for training (`train`) or evaluation that gives `size` x `size` inputs for the given data. */
export function presetTransforms(ds: DataStats, opts: PresetOptions, train: boolean): TransformConfig {
  const { size } = opts;
  const cfg: TransformConfig = {};
  checkPresetStats(ds, opts);
  if (opts.normalize !== "none") {
    const mean = opts.mean ?? ds.mean;
    cfg.mean = [...mean];
    cfg.std = opts.normalize === "mean" ? mean.map(() => 1) : [...(opts.std ?? ds.std)];
  }
  if (opts.channels !== undefined && opts.channels !== ds.channels) cfg.channels = opts.channels;
  if (train && opts.resizedCrop) {
    // torchvision: RandomResizedCrop(size) + RandomHorizontalFlip, on any data (no rescale, padding or crop placement).
    Object.assign(cfg, { resizedCrop: opts.resizedCrop === true ? {} : { ...opts.resizedCrop }, crop: size, flip: opts.flip ?? true });
    if (opts.lighting) cfg.lighting = opts.lighting;
    if (opts.erase) cfg.erase = opts.erase;
    return cfg;
  }
  // Rescaling to a training scale: images larger than the input, images of varying size, or small images when a
  // scale is asked for (the paper's jittering at small scale, e.g. 28x28 images rescaled to [32, 48]).
  if (ds.size === null || ds.size[0] > size || ds.size[1] > size || opts.scale !== undefined) {
    const s = opts.scale ?? Math.round((size * 256) / 224);
    const lo = typeof s === "number" ? s : s[0];
    if (ds.size === null && lo < size) throw new VggError(`training scale ${JSON.stringify(s)} is smaller than the ${size}-pixel crop`);
    // A scale under the input size (small fixed-size images only) leaves the image zero-padded to the input.
    if (lo < size) cfg.padTo = size;
    if (train) {
      Object.assign(cfg, {
        scale: s,
        crop: size,
        randomCrop: opts.randomCrop ?? true,
        flip: opts.flip ?? true,
        lighting: opts.lighting ?? (ds.size ? 0 : 0.1),
      });
    } else {
      const q = opts.testScale ?? (typeof s === "number" ? s : Math.round((s[0] + s[1]) / 2));
      Object.assign(cfg, { scale: q, crop: size });
    }
  } else {
    if (ds.size[0] < size || ds.size[1] < size) {
      if ((opts.fit ?? "pad") === "pad") cfg.padTo = size;
      else cfg.resize = size;
    }
    if (train) {
      Object.assign(cfg, {
        cropPadding: opts.cropPadding ?? Math.round(size / 8),
        crop: size,
        randomCrop: true,
        flip: opts.flip ?? true,
      });
      if (opts.lighting) cfg.lighting = opts.lighting;
    }
  }
  if (train && opts.erase) cfg.erase = opts.erase;
  if (cfg.lighting === 0) delete cfg.lighting;
  return cfg;
}

/** A preset's own mean/std: both or neither (a mean alone with normalize "mean"), one per data channel, in [0, 1]. */
function checkPresetStats(ds: DataStats, opts: PresetOptions): void {
  const { mean, std } = opts;
  if (mean === undefined && std === undefined) return;
  const norm = opts.normalize ?? "meanstd";
  if (norm === "none") throw new VggError("preset: a mean/std was given but normalisation is off (normalize 'none')");
  if (mean === undefined || (std === undefined && norm === "meanstd")) throw new VggError("preset: give both mean and std, or neither");
  for (const [name, v] of [
    ["mean", mean],
    ["std", std],
  ] as const) {
    if (v === undefined) continue;
    if (v.length !== ds.channels) {
      throw new VggError(
        `preset: ${v.length} ${name} values for ${ds.channels}-channel data (normalisation comes before replicating grey to 3 channels)`,
      );
    }
    if (!v.every((x) => Number.isFinite(x) && x >= (name === "std" ? Number.MIN_VALUE : 0) && x <= 1)) {
      throw new VggError(
        `preset: ${name} [${v.join(", ")}] must be in [0, 1] units${name === "std" ? " and positive" : ""} (divide 0-255 values by 255)`,
      );
    }
  }
}
