/**
 * Data specs, the one string a user gives to name training data:
 *   fashion-mnist[:DIR]                     IDX files (default DIR: Debian's dataset-fashion-mnist)
 *   cifar10:DIR                             CIFAR-10 binary batches
 *   folder:DIR                              DIR/train/CLASS/*.jpg [DIR/val/CLASS/*.jpg] [DIR/test/CLASS/*.jpg]
 *   npy:X.npy,Y.npy[;XTEST.npy,YTEST.npy]   arrays
 * Opening one gives train / val / test splits: val is held out of the official train data (a seeded draw, so
 * the same seed always holds out the same images), test is the official test data. A folder follows torchvision's
 * ImageFolder convention instead: val/ is the validation split as it stands (nothing is held out of train/, and
 * asking for a held-out size as well is an error rather than a second, silent validation set), test/ the test
 * split; without val/ one is held out of train/. Data with no test data (arrays without a test pair, a folder
 * without test/) have no test split: carving one out as well would silently shrink the training data, and val
 * already measures generalisation.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VggError } from "../errors.js";
import { loadCifar10 } from "./cifar.js";
import {
  type ArraySource,
  cachedStats,
  type Dataset,
  defaultCacheDir,
  fullSplit,
  holdOut,
  type Source,
  type Split,
  valCount,
} from "./dataset.js";
import { type ImageFolderSplit, type ScanOptions, scanFolderDataset } from "./folder.js";
import { readIdxImages, readIdxLabels } from "./idx.js";
import { loadNpyPair } from "./npy-data.js";

export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";
export const FASHION_MNIST_CLASSES = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];
export const FASHION_MNIST_FILES = {
  trainImages: "train-images-idx3-ubyte",
  trainLabels: "train-labels-idx1-ubyte",
  testImages: "t10k-images-idx3-ubyte",
  testLabels: "t10k-labels-idx1-ubyte",
};

export type DataSpec =
  | { kind: "fashion-mnist"; dir: string }
  | { kind: "cifar10"; dir: string }
  | { kind: "folder"; dir: string }
  | { kind: "npy"; x: string; y: string; testX?: string; testY?: string };

const KINDS = ["fashion-mnist", "cifar10", "folder", "npy"];

export function parseDataSpec(spec: string): DataSpec {
  const s = spec.trim();
  const colon = s.indexOf(":");
  const kind = (colon < 0 ? s : s.slice(0, colon)).toLowerCase();
  const arg = colon < 0 ? "" : s.slice(colon + 1);
  const usage = `data spec '${spec}': expected fashion-mnist[:DIR], cifar10:DIR, folder:DIR or npy:X.npy,Y.npy[;XTEST.npy,YTEST.npy]`;
  switch (kind) {
    case "fashion-mnist":
    case "fashionmnist":
      return { kind: "fashion-mnist", dir: arg || FASHION_MNIST_DIR };
    case "cifar10":
    case "cifar-10":
    case "folder":
      if (!arg) throw new VggError(`${usage} (${kind} needs a directory)`);
      return { kind: kind === "folder" ? "folder" : "cifar10", dir: arg };
    case "npy": {
      const parts = arg.split(";");
      const pair = (p: string, what: string): [string, string] => {
        const f = p.split(",").map((x) => x.trim());
        if (f.length !== 2 || !f[0] || !f[1]) throw new VggError(`${usage} (the ${what} part '${p}' is not X.npy,Y.npy)`);
        return [f[0], f[1]];
      };
      if (parts.length > 2) throw new VggError(`${usage} (more than one ';')`);
      const [x, y] = pair(parts[0], "train");
      if (parts.length === 1 || parts[1].trim() === "") return { kind: "npy", x, y };
      const [testX, testY] = pair(parts[1], "test");
      return { kind: "npy", x, y, testX, testY };
    }
    default:
      throw new VggError(KINDS.includes(kind) ? usage : `${usage} (unknown kind '${kind}')`);
  }
}

export interface OpenOptions {
  /** Fixes the held-out validation draw (and the stats sample of large folders). Default 0. */
  seed?: number;
  /** Held-out validation images: a count, a fraction below 1, or 0 for none. Default 5000 for Fashion-MNIST and
   *  CIFAR-10, 0.1 otherwise; a folder with val/ holds nothing out, and a count or fraction is an error there. */
  val?: number;
  /** Channels to decode folder images to (1 or 3). Default 3. */
  channels?: number;
  /** Use these instead of computing the train split's statistics. */
  stats?: { mean: number[]; std: number[] };
  /** Images the statistics of a folder dataset are estimated from. Default 5000. */
  statsMaxFiles?: number;
  /** Directory for cached statistics; null disables the cache. Default `defaultCacheDir()`. */
  cacheDir?: string | null;
  /** Folder scan: check each image's header (default) or trust extensions. */
  verify?: ScanOptions["verify"];
  /** Place array pixels in SharedArrayBuffers so the loader's workers read them without copies. Default true. */
  shared?: boolean;
}

function sharedCopy<T extends Uint8Array | Float32Array>(a: T, shared: boolean): T {
  if (!shared || a.buffer instanceof SharedArrayBuffer) return a;
  const ctor = a.constructor as { new (b: SharedArrayBuffer): T };
  const out = new ctor(new SharedArrayBuffer(a.byteLength));
  out.set(a);
  return out;
}

function fileIn(dir: string, base: string): string {
  for (const f of [`${base}.gz`, base]) {
    const p = path.join(dir, f);
    if (fs.existsSync(p)) return p;
  }
  throw new VggError(`missing ${base}.gz (or ${base})`, dir);
}

function idxSource(imagesFile: string, labelsFile: string, classes: number, shared: boolean): ArraySource {
  const img = readIdxImages(imagesFile);
  const lab = readIdxLabels(labelsFile);
  const [n, h, w] = img.shape;
  if (lab.length !== n) throw new VggError(`${lab.length} labels for ${n} images in ${path.basename(imagesFile)}`, labelsFile);
  const bad = lab.findIndex((y) => y >= classes);
  if (bad >= 0) throw new VggError(`label ${lab[bad]} at index ${bad} is not one of the ${classes} classes`, labelsFile);
  return { kind: "array", data: sharedCopy(img.data as Uint8Array, shared), n, c: 1, h, w, labels: Int32Array.from(lab) };
}

/** Fails at once, naming the path, when the data a spec names is not there (before slower work that needs it). */
export function checkDataExists(spec: string): void {
  const ds = parseDataSpec(spec);
  const paths = ds.kind === "npy" ? [ds.x, ds.y, ds.testX, ds.testY].filter((p) => p !== undefined) : [ds.dir];
  for (const p of paths) {
    if (fs.existsSync(p)) continue;
    const hint = ds.kind === "fashion-mnist" && p === FASHION_MNIST_DIR ? " (install the Debian package dataset-fashion-mnist)" : "";
    throw new VggError(`${ds.kind === "npy" ? "no such file" : "no such directory"}${hint}`, p);
  }
}

/** Opens a data spec: reads or scans the data, draws the held-out split, and computes the train statistics. */
export async function openDataset(spec: string | DataSpec, opts: OpenOptions = {}): Promise<Dataset> {
  const ds = typeof spec === "string" ? parseDataSpec(spec) : spec;
  const specStr = typeof spec === "string" ? spec : formatDataSpec(ds);
  const seed = opts.seed ?? 0;
  const shared = opts.shared ?? true;
  let train: Source;
  let test: Source | null = null;
  let classes: string[];
  let size: [number, number] | null = null;
  let files: string[];
  let entries = null;
  let skipped: string[] = [];
  let defaultVal = 0.1;
  // A folder's val/ (its images, the directory it came from) and where each split came from.
  let valSource: Source | null = null;
  let dirs: Dataset["dirs"];

  switch (ds.kind) {
    case "fashion-mnist": {
      if (!fs.existsSync(ds.dir)) {
        throw new VggError(
          ds.dir === FASHION_MNIST_DIR ? "no such directory (install the Debian package dataset-fashion-mnist)" : "no such directory",
          ds.dir,
        );
      }
      const F = FASHION_MNIST_FILES;
      files = [F.trainImages, F.trainLabels, F.testImages, F.testLabels].map((b) => fileIn(ds.dir, b));
      train = idxSource(files[0], files[1], 10, shared);
      test = idxSource(files[2], files[3], 10, shared);
      classes = [...FASHION_MNIST_CLASSES];
      size = [(train as ArraySource).h, (train as ArraySource).w];
      defaultVal = 5000;
      break;
    }
    case "cifar10": {
      const c = loadCifar10(ds.dir, (n) => (shared ? new Uint8Array(new SharedArrayBuffer(n)) : new Uint8Array(n)));
      train = { kind: "array", data: c.train.images, n: c.train.count, c: 3, h: 32, w: 32, labels: Int32Array.from(c.train.labels) };
      test = {
        kind: "array",
        data: sharedCopy(c.test.images, shared),
        n: c.test.count,
        c: 3,
        h: 32,
        w: 32,
        labels: Int32Array.from(c.test.labels),
      };
      classes = c.classes;
      size = [32, 32];
      files = c.files;
      defaultVal = 5000;
      break;
    }
    case "folder": {
      const channels = opts.channels ?? 3;
      if (channels !== 1 && channels !== 3) throw new VggError(`folder images decode to 1 or 3 channels, not ${channels}`);
      const f = await scanFolderDataset(ds.dir, { verify: opts.verify });
      const present = [f.train, f.val, f.test].filter((s): s is ImageFolderSplit => s !== null);
      size = folderSize(present);
      const fixed = size ? { size } : {};
      const source = (s: ImageFolderSplit): Source => ({ kind: "files", files: s.files, labels: s.labels, c: channels, ...fixed });
      train = source(f.train);
      if (f.val) {
        if (opts.val !== undefined && opts.val !== 0)
          throw new VggError(
            `is the validation split already: --val ${opts.val} would hold out train/ images as a second one; drop --val (or remove val/ to hold images out of train/)`,
            f.val.dir,
          );
        valSource = source(f.val);
      }
      if (f.test) test = source(f.test);
      classes = f.classes;
      files = present.flatMap((s) => s.files);
      entries = f.train.entries;
      skipped = present.flatMap((s) => s.skipped);
      dirs = { train: f.train.dir, val: f.val?.dir ?? null, test: f.test?.dir ?? null };
      break;
    }
    case "npy": {
      if ((ds.testX === undefined) !== (ds.testY === undefined)) throw new VggError("npy spec: give both test files or neither");
      const a = loadNpyPair(ds.x, ds.y);
      train = { ...a, data: sharedCopy(a.data, shared) };
      files = [ds.x, ds.y];
      if (ds.testX && ds.testY) {
        const t = loadNpyPair(ds.testX, ds.testY);
        if (t.c !== a.c || t.h !== a.h || t.w !== a.w) {
          throw new VggError(`test images are ${t.c}x${t.h}x${t.w} but train images are ${a.c}x${a.h}x${a.w}`, ds.testX);
        }
        if (t.data.constructor !== a.data.constructor) throw new VggError("test and train images have different dtypes", ds.testX);
        test = { ...t, data: sharedCopy(t.data, shared) };
        files.push(ds.testX, ds.testY);
      }
      let k = 0;
      for (const s of [train, test]) if (s) for (const y of s.labels) if (y >= k) k = y + 1;
      classes = Array.from({ length: k }, (_, i) => String(i));
      size = [a.h, a.w];
      break;
    }
  }

  const { train: trainSplit, val } = valSource
    ? { train: fullSplit("train", train), val: fullSplit("val", valSource) as Split | null }
    : holdOut(train, valCount(train.kind === "array" ? train.n : train.files.length, opts.val ?? defaultVal), seed);
  let stats: { mean: number[]; std: number[]; count: number };
  if (opts.stats) {
    const { mean, std } = opts.stats;
    if (mean.length !== train.c || std.length !== train.c)
      throw new VggError(`given stats have ${mean.length} means and ${std.length} stds for ${train.c} channels`);
    stats = { mean: [...mean], std: [...std], count: 0 };
  } else {
    const cacheDir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
    stats = await cachedStats(trainSplit, entries, cacheDir, { seed, maxFiles: opts.statsMaxFiles });
  }
  return {
    kind: ds.kind,
    spec: specStr,
    classes,
    channels: train.c,
    size,
    mean: stats.mean,
    std: stats.std,
    statsCount: stats.count,
    splits: { train: trainSplit, val, test: test ? fullSplit("test", test) : null },
    seed,
    skipped: { count: skipped.length, examples: skipped.slice(0, 10) },
    files,
    ...(dirs ? { dirs } : {}),
  };
}

/**
 * Folder images this large (ImageNet's input) or larger are photos: they keep the ImageNet recipe (input 224,
 * shorter side to 256, random crop) even when all share one size, as the size a camera or a resizer happened to
 * produce says nothing about the input the net should take. Smaller ones (28x28 digits, 32x32 or 96x96 thumbnails)
 * are small fixed-size data, as Fashion-MNIST and CIFAR-10 are.
 */
const FOLDER_PHOTO_SIZE = 224;

/**
 * The size of a folder's images when every image of every split has it (from the headers the scan read), and it
 * is small: the data's size then sets the default input (at least 32, smaller images padded as Fashion-MNIST's).
 */
function folderSize(splits: ImageFolderSplit[]): [number, number] | null {
  const s = splits[0].size;
  if (!s || Math.max(...s) >= FOLDER_PHOTO_SIZE) return null;
  return splits.every((x) => x.size && x.size[0] === s[0] && x.size[1] === s[1]) ? s : null;
}

export function formatDataSpec(ds: DataSpec): string {
  if (ds.kind === "npy") return `npy:${ds.x},${ds.y}${ds.testX ? `;${ds.testX},${ds.testY}` : ""}`;
  return `${ds.kind}:${ds.dir}`;
}
