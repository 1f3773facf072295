/**
 * Image folders in torchvision ImageFolder's layout: ROOT/train/CLASS/**\/*.jpg, and ROOT/val/CLASS/... and
 * ROOT/test/CLASS/... when present, classes sorted by name (train/'s) and numbered in that order. Files that are not
 * images, or whose header cannot be read, are skipped and counted rather than failing a run over one stray file; a
 * class with nothing left is an error.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VggError } from "../errors.js";
import { fsError } from "../io/atomic.js";
import type { Image } from "./transforms.js";

export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp"];

type Sharp = typeof import("sharp").default;
let sharpModule: Promise<Sharp> | null = null;

/** sharp loads libvips; only folder datasets need it, so it is imported on first use. */
export function loadSharp(): Promise<Sharp> {
  sharpModule ??= import("sharp").then((m) => m.default);
  return sharpModule;
}

/**
 * Decodes an image file (or its bytes) to uint8 CHW with `channels` channels: 3 as PIL's convert("RGB") (grey
 * expanded, alpha dropped, CMYK converted), 1 as convert("L"). EXIF orientation is not applied, as in torchvision.
 */
export async function decodeImage(input: string | Uint8Array, channels: number): Promise<Image> {
  const file = typeof input === "string" ? input : "<image bytes>";
  if (channels !== 1 && channels !== 3) throw new VggError(`images can be decoded to 1 or 3 channels, not ${channels}`, file);
  const sharp = await loadSharp();
  let data: Buffer;
  let info: { width: number; height: number; channels: number };
  try {
    const r = await sharp(input)
      .removeAlpha()
      // Always RGB: sharp's "b-w" weighs the channels differently from PIL's convert("L") (up to 48 levels apart
      // on saturated colours), so grey is made below with PIL's ITU-R 601-2 weights.
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    data = r.data;
    info = r.info;
  } catch (err) {
    const msg = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw new VggError(`cannot decode image: ${msg}`, file);
  }
  const { width: w, height: h } = info;
  if (info.channels !== 3) throw new VggError(`decoded to ${info.channels} channels instead of 3`, file);
  const out = new Uint8Array(channels * h * w);
  if (channels === 1) {
    // PIL: L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
    for (let i = 0, j = 0; i < h * w; i++, j += 3) out[i] = (data[j] * 19595 + data[j + 1] * 38470 + data[j + 2] * 7471 + 0x8000) >>> 16;
  } else {
    const plane = h * w;
    for (let i = 0, j = 0; i < plane; i++, j += 3) {
      out[i] = data[j];
      out[plane + i] = data[j + 1];
      out[2 * plane + i] = data[j + 2];
    }
  }
  return { data: out, c: channels, h, w };
}

export interface FileEntry {
  file: string;
  size: number;
  mtimeMs: number;
}

export interface ImageFolderSplit {
  dir: string;
  classes: string[];
  files: string[];
  labels: Int32Array;
  /** Image count per class. */
  counts: number[];
  /** Files left out: no image extension, or a header that does not decode. */
  skipped: string[];
  /** Size and mtime of every kept file, for cache keys. */
  entries: FileEntry[];
  /** [H, W] shared by every kept image, from the headers; null when they differ or were not read (verify "none"). */
  size: [number, number] | null;
}

export interface ScanOptions {
  /** "header" (default) reads each image's header and skips those that fail; "none" trusts the extension. */
  verify?: "header" | "none";
  concurrency?: number;
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function sortedNames(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  } catch (err) {
    throw fsError(dir, err);
  }
}

/** Every file under `dir`, depth first in name order (ImageFolder walks class folders recursively). */
function walk(dir: string, out: { file: string; st: fs.Stats }[], seen: Set<string>): void {
  // Symlinked folders are followed, as ImageFolder does; the realpath set stops cycles.
  const real = fs.realpathSync(dir);
  if (seen.has(real)) return;
  seen.add(real);
  for (const name of sortedNames(dir)) {
    if (name.startsWith(".")) continue;
    const p = path.join(dir, name);
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      out.push({ file: p, st: null as unknown as fs.Stats });
      continue;
    }
    if (st.isDirectory()) walk(p, out, seen);
    else if (st.isFile()) out.push({ file: p, st });
  }
}

/** Each file's [H, W] from its header, or null when the header does not decode. */
async function readableImages(files: string[], concurrency: number): Promise<([number, number] | null)[]> {
  const sharp = await loadSharp();
  const sizes = new Array<[number, number] | null>(files.length).fill(null);
  let next = 0;
  const work = async () => {
    for (let i = next++; i < files.length; i = next++) {
      try {
        const m = await sharp(files[i]).metadata();
        if (m.width && m.height) sizes[i] = [m.height, m.width];
      } catch {
        sizes[i] = null;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, files.length) }, work));
  return sizes;
}

/**
 * Scans DIR/CLASS/... . With `classes` (the train split's), DIR must have exactly those class folders, and the
 * labels follow that numbering.
 */
export async function scanImageFolder(dir: string, classes?: readonly string[], opts: ScanOptions = {}): Promise<ImageFolderSplit> {
  if (!isDir(dir)) throw new VggError(fs.existsSync(dir) ? "is not a directory" : "no such directory", dir);
  const found = sortedNames(dir).filter((n) => !n.startsWith(".") && isDir(path.join(dir, n)));
  if (found.length === 0) throw new VggError("has no class folders (expected DIR/CLASS/image.jpg)", dir);
  if (classes) {
    const missing = classes.filter((c) => !found.includes(c));
    if (missing.length > 0) throw new VggError(`class folder${missing.length > 1 ? "s" : ""} missing: ${list(missing)}`, dir);
    const extra = found.filter((c) => !classes.includes(c));
    if (extra.length > 0) throw new VggError(`class folder${extra.length > 1 ? "s" : ""} not in the train split: ${list(extra)}`, dir);
  }
  const names = classes ? [...classes] : found;
  const files: string[] = [];
  const labels: number[] = [];
  const entries: FileEntry[] = [];
  const skipped: string[] = [];
  const candidates: { file: string; st: fs.Stats; label: number }[] = [];
  names.forEach((cls, label) => {
    const all: { file: string; st: fs.Stats }[] = [];
    walk(path.join(dir, cls), all, new Set());
    for (const e of all) {
      if (e.st && IMAGE_EXTENSIONS.includes(path.extname(e.file).toLowerCase())) candidates.push({ ...e, label });
      else skipped.push(e.file);
    }
  });
  const verify = (opts.verify ?? "header") === "header";
  const sizes = verify
    ? await readableImages(
        candidates.map((c) => c.file),
        opts.concurrency ?? 16,
      )
    : null;
  const counts = new Array<number>(names.length).fill(0);
  // Unverified files have no known size: a common size is only claimed from headers that were read.
  let size: [number, number] | null | undefined = verify ? undefined : null;
  candidates.forEach((c, i) => {
    const hw = sizes ? sizes[i] : undefined;
    if (hw === null) {
      skipped.push(c.file);
      return;
    }
    if (hw && size !== null) size = size === undefined || (size[0] === hw[0] && size[1] === hw[1]) ? hw : null;
    files.push(c.file);
    labels.push(c.label);
    entries.push({ file: c.file, size: c.st.size, mtimeMs: c.st.mtimeMs });
    counts[c.label]++;
  });
  const empty = names.filter((_, i) => counts[i] === 0);
  if (empty.length > 0) throw new VggError(`class${empty.length > 1 ? "es" : ""} with no readable images: ${list(empty)}`, dir);
  skipped.sort();
  return { dir, classes: names, files, labels: Int32Array.from(labels), counts, skipped, entries, size: size ?? null };
}

function list(xs: string[]): string {
  const shown = xs.slice(0, 5).map((x) => `'${x}'`);
  return xs.length > 5 ? `${shown.join(", ")} and ${xs.length - 5} more` : shown.join(", ");
}

export interface ImageFolderDataset {
  root: string;
  classes: string[];
  train: ImageFolderSplit;
  /** ROOT/val, the validation split (torchvision's convention; ImageNet's validation set), when present. */
  val: ImageFolderSplit | null;
  /** ROOT/test, when present. */
  test: ImageFolderSplit | null;
}

/**
 * ROOT/train, and ROOT/val and ROOT/test when they exist, with train/'s classes: a val/ or test/ with other class
 * folders would number its labels differently, so it is an error naming the folder and the classes.
 */
export async function scanFolderDataset(root: string, opts: ScanOptions = {}): Promise<ImageFolderDataset> {
  if (!isDir(root)) throw new VggError(fs.existsSync(root) ? "is not a directory" : "no such directory", root);
  if (!isDir(path.join(root, "train")))
    throw new VggError("no 'train' folder (expected train/CLASS/image.jpg, and val/ and test/ alike)", root);
  const train = await scanImageFolder(path.join(root, "train"), undefined, opts);
  const other = (sub: string) => (isDir(path.join(root, sub)) ? scanImageFolder(path.join(root, sub), train.classes, opts) : null);
  return { root, classes: train.classes, train, val: await other("val"), test: await other("test") };
}
