/**
 * CIFAR-10's binary version (cifar-10-batches-bin): each record is one label byte then a 32x32 image as
 * 1024 red, 1024 green, 1024 blue bytes, i.e. already CHW.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { VggError } from "../errors.js";
import { fsError, withFile } from "../io/atomic.js";

export const CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
export const CIFAR_RECORD = 1 + 3 * 32 * 32;
export const CIFAR10_TRAIN_FILES = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
export const CIFAR10_TEST_FILE = "test_batch.bin";

export interface CifarArrays {
  /** [N, 3, 32, 32] */
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

/**
 * Reads one batch file. The official batches hold 10,000 records; any whole number of records is accepted so
 * that subsets made with `head -c` work, but a partial record is an error.
 */
export function readCifarBatch(file: string): CifarArrays {
  return withFile(file, (f) => {
    try {
      if (f.size === 0 || f.size % CIFAR_RECORD !== 0) {
        const hint = f.size % (CIFAR_RECORD + 1) === 0 && f.size > 0 ? " (this looks like CIFAR-100, which has 2 label bytes)" : "";
        throw new VggError(`${f.size} bytes is not a whole number of ${CIFAR_RECORD}-byte CIFAR-10 records${hint}`, file);
      }
      const count = f.size / CIFAR_RECORD;
      const raw = f.read(0, f.size);
      const images = new Uint8Array(count * (CIFAR_RECORD - 1));
      const labels = new Uint8Array(count);
      for (let i = 0; i < count; i++) {
        const at = i * CIFAR_RECORD;
        const label = raw[at];
        if (label > 9) throw new VggError(`record ${i} has label ${label}; CIFAR-10 labels are 0-9`, file);
        labels[i] = label;
        images.set(raw.subarray(at + 1, at + CIFAR_RECORD), i * (CIFAR_RECORD - 1));
      }
      return { images, labels, count };
    } catch (err) {
      throw fsError(file, err);
    }
  });
}

/** Class names from batches.meta.txt (one per line), or null if the file is absent. */
export function readCifarMeta(file: string): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw fsError(file, err);
  }
  const names = text
    .split(/\r?\n/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  if (names.length !== 10) throw new VggError(`expected 10 class names, found ${names.length}`, file);
  return names;
}

export interface Cifar10 {
  dir: string;
  train: CifarArrays;
  test: CifarArrays;
  classes: string[];
  files: string[];
}

/** The directory holding the batches: DIR itself or the archive's DIR/cifar-10-batches-bin. */
export function cifarDir(dir: string): string {
  const nested = path.join(dir, "cifar-10-batches-bin");
  if (!fs.existsSync(path.join(dir, CIFAR10_TEST_FILE)) && fs.existsSync(path.join(nested, CIFAR10_TEST_FILE))) return nested;
  return dir;
}

function concat(parts: CifarArrays[], alloc: (bytes: number) => Uint8Array): CifarArrays {
  const count = parts.reduce((s, p) => s + p.count, 0);
  const images = alloc(count * (CIFAR_RECORD - 1));
  const labels = new Uint8Array(count);
  let at = 0;
  for (const p of parts) {
    images.set(p.images, at * (CIFAR_RECORD - 1));
    labels.set(p.labels, at);
    at += p.count;
  }
  return { images, labels, count };
}

/**
 * Loads data_batch_1..5.bin as the train split and test_batch.bin as the test split. `alloc` lets the caller
 * place the (150 MB) train images in shared memory for the loader's workers.
 */
export function loadCifar10(dir: string, alloc: (bytes: number) => Uint8Array = (n) => new Uint8Array(n)): Cifar10 {
  const d = cifarDir(dir);
  if (!fs.existsSync(d)) throw new VggError("no such directory", dir);
  const trainFiles = CIFAR10_TRAIN_FILES.map((f) => path.join(d, f));
  const testFile = path.join(d, CIFAR10_TEST_FILE);
  const missing = [...trainFiles, testFile].filter((f) => !fs.existsSync(f)).map((f) => path.basename(f));
  if (missing.length > 0) throw new VggError(`not a CIFAR-10 binary directory: missing ${missing.join(", ")}`, d);
  const train = concat(trainFiles.map(readCifarBatch), alloc);
  const test = readCifarBatch(testFile);
  const classes = readCifarMeta(path.join(d, "batches.meta.txt")) ?? CIFAR10_CLASSES;
  return { dir: d, train, test, classes, files: [...trainFiles, testFile] };
}

/** Encodes records as a CIFAR-10 batch file's bytes (used by tests). */
export function encodeCifarBatch(images: Uint8Array, labels: Uint8Array): Uint8Array {
  const out = new Uint8Array(labels.length * CIFAR_RECORD);
  for (let i = 0; i < labels.length; i++) {
    out[i * CIFAR_RECORD] = labels[i];
    out.set(images.subarray(i * (CIFAR_RECORD - 1), (i + 1) * (CIFAR_RECORD - 1)), i * CIFAR_RECORD + 1);
  }
  return out;
}
