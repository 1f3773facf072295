/**
 * What a dataset is once opened: sources of samples (arrays in memory, or image files) and splits that are
 * index lists into them, so the held-out validation split and the train split share one copy of the pixels.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { VggError } from "../errors.js";
import { writeFileAtomic } from "../io/atomic.js";
import { keyedRng, permutation, STREAM } from "../random.js";
import { decodeImage, type FileEntry } from "./folder.js";
import type { Image } from "./transforms.js";

/** Images stored as one [n, c, h, w] array (uint8 = value/255, or float32 as is). */
export interface ArraySource {
  kind: "array";
  data: Uint8Array | Float32Array;
  n: number;
  c: number;
  h: number;
  w: number;
  labels: Int32Array;
}

/** Images decoded from files on demand, to `c` channels. */
export interface FileSource {
  kind: "files";
  files: string[];
  labels: Int32Array;
  c: number;
  /** [H, W] of every file, when the scan found them all of one size: batches of them then need no crop or resize. */
  size?: [number, number];
}

export type Source = ArraySource | FileSource;

export type SplitName = "train" | "val" | "test";

export interface Split {
  name: SplitName;
  source: Source;
  /** Sample positions in `source`, ascending. */
  indices: Int32Array;
}

export interface Dataset {
  kind: "fashion-mnist" | "cifar10" | "folder" | "npy";
  /** The spec string it was opened from. */
  spec: string;
  classes: string[];
  channels: number;
  /** Native [H, W], or null when images differ in size. */
  size: [number, number] | null;
  /** Per-channel mean and std of the train split (held-out images excluded), in [0, 1] units for uint8 data. */
  mean: number[];
  std: number[];
  /** Images the statistics were computed from. */
  statsCount: number;
  /**
   * train minus val; val held out from the official train data by a seeded draw (a folder's val/ as it is, when
   * it has one); test the official test split (a folder's test/).
   */
  splits: { train: Split; val: Split | null; test: Split | null };
  /** Folder data: the directory each split's images come from (val null when held out of train, test when none). */
  dirs?: { train: string; val: string | null; test: string | null };
  seed: number;
  /** Files that were not used (folder datasets: not images, or unreadable). */
  skipped: { count: number; examples: string[] };
  /** The files the data came from. */
  files: string[];
}

export function sourceSize(s: Source): number {
  return s.kind === "array" ? s.n : s.files.length;
}

export function fullSplit(name: SplitName, source: Source): Split {
  const indices = new Int32Array(sourceSize(source));
  for (let i = 0; i < indices.length; i++) indices[i] = i;
  return { name, source, indices };
}

/** Resolves a val option (a count >= 1, or a fraction in (0, 1)) against n samples. */
export function valCount(n: number, val: number): number {
  if (!(val >= 0) || !Number.isFinite(val)) throw new VggError(`invalid validation size ${val}`);
  const k = val > 0 && val < 1 ? Math.round(n * val) : val;
  if (!Number.isInteger(k)) throw new VggError(`validation size ${val} is neither a whole count nor a fraction below 1`);
  if (k >= n) throw new VggError(`cannot hold out ${k} validation images from ${n} training images`);
  return k;
}

/** Splits `source` into train and a val set of `count` samples chosen by a permutation fixed by `seed`. */
export function holdOut(source: Source, count: number, seed: number): { train: Split; val: Split | null } {
  const n = sourceSize(source);
  if (count === 0) return { train: fullSplit("train", source), val: null };
  const perm = permutation(n, keyedRng(seed, STREAM.holdout, n));
  const val = perm.slice(0, count).sort();
  const train = perm.slice(count).sort();
  return { train: { name: "train", source, indices: train }, val: { name: "val", source, indices: val } };
}

export function splitLabels(split: Split): Int32Array {
  const out = new Int32Array(split.indices.length);
  const l = split.source.labels;
  for (let i = 0; i < out.length; i++) out[i] = l[split.indices[i]];
  return out;
}

export function labelHistogram(split: Split, numClasses: number): number[] {
  const h = new Array<number>(numClasses).fill(0);
  for (const y of splitLabels(split)) h[y]++;
  return h;
}

/** Image `index` of the source (a view, no copy, for arrays). */
export function sourceImage(source: Source, index: number): Image | Promise<Image> {
  if (source.kind === "files") return decodeImage(source.files[index], source.c);
  const { c, h, w } = source;
  const per = c * h * w;
  return { data: source.data.subarray(index * per, (index + 1) * per), c, h, w };
}

/** Image `i` of the split (i counts within the split). */
export function splitImage(split: Split, i: number): Promise<Image> {
  if (!(i >= 0 && i < split.indices.length))
    throw new VggError(`sample ${i} is out of range for the ${split.name} split (${split.indices.length})`);
  return Promise.resolve(sourceImage(split.source, split.indices[i]));
}

// ---------------------------------------------------------------------------------------------------------------
// Per-channel statistics

export interface Stats {
  mean: number[];
  std: number[];
  count: number;
}

/** Accumulates per-channel sums in [0, 1] units; uint8 data goes through a histogram, which is exact and fast. */
class StatsAccumulator {
  private readonly hist: Float64Array;
  private readonly sum: Float64Array;
  private readonly sumsq: Float64Array;
  private readonly pixels: Float64Array;
  count = 0;

  // Counting into uint32 is ~2x faster than into float64; flushed before it could overflow.
  private readonly counts: Uint32Array;
  private unflushed = 0;

  constructor(private readonly c: number) {
    this.hist = new Float64Array(c * 256);
    this.counts = new Uint32Array(c * 256);
    this.sum = new Float64Array(c);
    this.sumsq = new Float64Array(c);
    this.pixels = new Float64Array(c);
  }

  /** Images `indices` of a uint8 [n, c, h, w] array, without a view object per image. */
  addBytes(data: Uint8Array, h: number, w: number, indices: Int32Array): void {
    const plane = h * w;
    const per = this.c * plane;
    const cnt = this.counts;
    for (const idx of indices) {
      for (let ch = 0; ch < this.c; ch++) {
        const lo = idx * per + ch * plane;
        const hb = ch * 256;
        for (let i = lo; i < lo + plane; i++) cnt[hb + data[i]]++;
        this.pixels[ch] += plane;
      }
      this.count++;
      this.unflushed += plane;
      if (this.unflushed > 2 ** 31) this.flush();
    }
  }

  add(img: Image): void {
    if (img.c !== this.c) throw new VggError(`an image has ${img.c} channels, expected ${this.c}`);
    const plane = img.h * img.w;
    const d = img.data;
    for (let ch = 0; ch < this.c; ch++) {
      const lo = ch * plane;
      if (d instanceof Uint8Array) {
        const cnt = this.counts.subarray(ch * 256, ch * 256 + 256);
        for (let i = lo; i < lo + plane; i++) cnt[d[i]]++;
      } else {
        // Per-image partial sums keep the float64 totals accurate over millions of pixels.
        let s = 0;
        let q = 0;
        for (let i = lo; i < lo + plane; i++) {
          const v = d[i];
          s += v;
          q += v * v;
        }
        this.sum[ch] += s;
        this.sumsq[ch] += q;
      }
      this.pixels[ch] += plane;
    }
    this.count++;
    if (d instanceof Uint8Array) {
      this.unflushed += plane;
      if (this.unflushed > 2 ** 31) this.flush();
    }
  }

  private flush(): void {
    for (let i = 0; i < this.counts.length; i++) this.hist[i] += this.counts[i];
    this.counts.fill(0);
    this.unflushed = 0;
  }

  result(): Stats {
    this.flush();
    const mean: number[] = [];
    const std: number[] = [];
    for (let ch = 0; ch < this.c; ch++) {
      let s = this.sum[ch];
      let q = this.sumsq[ch];
      for (let v = 0; v < 256; v++) {
        const k = this.hist[ch * 256 + v];
        if (k) {
          s += (k * v) / 255;
          q += (k * v * v) / (255 * 255);
        }
      }
      const n = this.pixels[ch];
      const m = n > 0 ? s / n : 0;
      mean.push(m);
      std.push(Math.sqrt(Math.max(0, q / n - m * m)));
    }
    return { mean, std, count: this.count };
  }
}

export interface StatsOptions {
  /** At most this many images (a seeded sample) for file sources; all images of array sources are cheap. */
  maxFiles?: number;
  seed?: number;
  concurrency?: number;
}

/** Per-channel mean and population std over the split's pixels. */
export async function computeStats(split: Split, opts: StatsOptions = {}): Promise<Stats> {
  const src = split.source;
  const acc = new StatsAccumulator(src.c);
  if (src.kind === "array") {
    if (src.data instanceof Uint8Array) acc.addBytes(src.data, src.h, src.w, split.indices);
    else for (const i of split.indices) acc.add(sourceImage(src, i) as Image);
    return acc.result();
  }
  let idx = split.indices;
  const max = opts.maxFiles ?? 5000;
  if (idx.length > max) {
    const p = permutation(idx.length, keyedRng(opts.seed ?? 0, STREAM.stats, idx.length));
    idx = p.subarray(0, max).map((j) => split.indices[j]);
  }
  let next = 0;
  const work = async () => {
    for (let k = next++; k < idx.length; k = next++) acc.add(await decodeImage(src.files[idx[k]], src.c));
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency ?? 8, idx.length) }, work));
  return acc.result();
}

/** Where decoded-image statistics are cached: $VGG_CACHE_DIR, else $XDG_CACHE_HOME/vgg-onnx, else ~/.cache/vgg-onnx. */
export function defaultCacheDir(): string {
  if (process.env.VGG_CACHE_DIR) return process.env.VGG_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  return path.join(base, "vgg-onnx");
}

/**
 * Statistics of a file split, cached on disk: computing them decodes thousands of images, and the key (every
 * file's path, size and mtime, plus the options) changes whenever the answer could. Array sources are not
 * cached: one pass over them is faster than the file read that loaded them.
 */
export async function cachedStats(split: Split, entries: FileEntry[] | null, cacheDir: string | null, opts: StatsOptions): Promise<Stats> {
  if (split.source.kind === "array" || !entries || cacheDir === null) return computeStats(split, opts);
  const h = createHash("sha256");
  h.update(JSON.stringify({ v: 1, c: split.source.c, maxFiles: opts.maxFiles ?? 5000, seed: opts.seed ?? 0 }));
  const inSplit = new Set(split.indices);
  entries.forEach((e, i) => {
    if (inSplit.has(i)) h.update(`${path.resolve(e.file)}\0${e.size}\0${e.mtimeMs}\n`);
  });
  const file = path.join(cacheDir, "stats", `${h.digest("hex").slice(0, 32)}.json`);
  try {
    const j = JSON.parse(fs.readFileSync(file, "utf8")) as Stats;
    if (Array.isArray(j.mean) && Array.isArray(j.std) && j.mean.length === split.source.c && j.std.length === split.source.c) return j;
  } catch {
    // absent or unreadable: recompute
  }
  const stats = await computeStats(split, opts);
  try {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    writeFileAtomic(file, [Buffer.from(JSON.stringify(stats))]);
  } catch {
    // A read-only home only costs the recomputation next time.
  }
  return stats;
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * The splits and where they come from, on one line. Folder data names each split's directory, as which folder
 * feeds which split is a convention (torchvision's) a user should not have to guess:
 *   train <- photos/train (38 images), val <- photos/val (18), test: none
 *   train <- photos/train (34 images), val: 4 held out of photos/train (seed 0), test <- photos/test (18)
 * Other data: `train 55000, val 5000 (held out), test 10000`.
 */
export function describeSplits(ds: Dataset): string {
  const s = ds.splits;
  const n = (x: Split | null) => (x ? x.indices.length : 0);
  if (!ds.dirs) return `train ${n(s.train)}, val ${n(s.val)} (held out), test ${n(s.test)}`;
  const { dirs } = ds;
  const val = dirs.val
    ? `val <- ${dirs.val} (${n(s.val)})`
    : s.val
      ? `val: ${n(s.val)} held out of ${dirs.train} (seed ${ds.seed})`
      : "val: none";
  return `train <- ${dirs.train} (${n(s.train)} images), ${val}, ${dirs.test ? `test <- ${dirs.test} (${n(s.test)})` : "test: none"}`;
}
