/**
 * What the fuzz worker runs on each file, per format, and the allocation bound each file justifies.
 * A reader may accept a mutated file or throw a VggError that names it on one line; anything else is a crash.
 */
import { readFileSync } from "node:fs";
import { readCifarBatch } from "../../src/data/cifar.js";
import { decodeImage, loadSharp } from "../../src/data/folder.js";
import { readIdx, readIdxImages, readIdxLabels } from "../../src/data/idx.js";
import { VggError } from "../../src/errors.js";
import { checkTensor } from "../../src/io/bytes.js";
import { readNpy } from "../../src/io/npy.js";
import { readOnnxInfo } from "../../src/onnx/decode.js";
import type { StateDict, Tensor } from "../../src/tensor.js";
import { detectWeightsFormat, loadStateDict, type WeightsFormat } from "../../src/weights/index.js";
import { readPth } from "../../src/weights/pth.js";
import { readSafetensorsFile } from "../../src/weights/safetensors.js";
import type { Allowance } from "./alloc.js";

export type Outcome = "accepted" | "rejected";

/** A reader failed the way it must not: any exception but a one-line VggError naming the file. */
export class Crash extends Error {
  constructor(
    readonly detail: string,
    readonly stackText: string,
  ) {
    super(detail);
  }
}

/** Line breaks and other control characters: the CLI prints a VggError as one line, and these would break it. */
function unprintable(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029) return true;
  }
  return false;
}

let rejection: string | undefined;
let garbled: string | undefined;

/** The first rejection's message since the last call (the file's name taken out), and the first unprintable one. */
export function takeRejection(): { message?: string; garbled?: string } {
  const r = { message: rejection, garbled };
  rejection = undefined;
  garbled = undefined;
  return r;
}

function judge(file: string, err: unknown): "rejected" {
  if (err instanceof VggError) {
    if (err.file !== file || !err.message.includes(file)) {
      throw new Crash(`VggError does not name the file (file=${String(err.file)}): ${err.message}`, err.stack ?? "");
    }
    rejection ??= err.message.split(file).join("FILE");
    if (unprintable(err.message)) garbled ??= JSON.stringify(err.message).slice(0, 400);
    return "rejected";
  }
  const e = err as Error;
  throw new Crash(`${e?.name ?? typeof err}: ${String(e?.message ?? err).split("\n")[0]}`, e?.stack ?? "");
}

async function attempt(file: string, fn: () => unknown): Promise<Outcome> {
  try {
    await fn();
    return "accepted";
  } catch (err) {
    return judge(file, err);
  }
}

/** What a reader accepts must hold together: each tensor's typed array matches its dtype and its shape. */
function sound(t: Tensor, name = "array"): void {
  try {
    checkTensor(t, name, "accepted");
  } catch (err) {
    throw new Error(`accepted an inconsistent tensor: ${(err as Error).message}`);
  }
}

function soundDict(sd: StateDict): void {
  for (const [name, t] of sd) sound(t, name);
}

function soundArrays(n: number, want: number, what: string): void {
  if (n !== want) throw new Error(`accepted ${what} of ${n} elements where ${want} are due`);
}

/**
 * A weights file goes through loadStateDict, which recognises the format and calls the reader; one the sniffing does
 * not take for `formats` also goes to `reader` directly, which then decides (it checks less at the start).
 */
async function weights(f: string, formats: readonly WeightsFormat[], reader: (f: string) => StateDict): Promise<Outcome> {
  let detected: WeightsFormat | null = null;
  await attempt(f, () => {
    detected = detectWeightsFormat(f);
  });
  if (detected && formats.includes(detected)) return attempt(f, () => soundDict(loadStateDict(f)));
  const r = await attempt(f, () => soundDict(reader(f)));
  await attempt(f, () => soundDict(loadStateDict(f)));
  return r;
}

type Ort = typeof import("../../src/runtime/ort.js");
let ort: Promise<Ort> | undefined;

/** ONNX Runtime is only loaded by the worker that fuzzes ONNX files. */
function loadOrt(): Promise<Ort> {
  ort ??= import("../../src/runtime/ort.js");
  return ort;
}

/** The readers of each format: a file's outcome is its main reader's; the others run only to be clean as well. */
export const TARGETS: Record<string, (file: string) => Promise<Outcome>> = {
  "pth-zip": async (f) => weights(f, ["pth-zip", "pth-legacy"], readPth),
  "pth-legacy": async (f) => weights(f, ["pth-zip", "pth-legacy"], readPth),
  safetensors: async (f) => weights(f, ["safetensors"], (x) => readSafetensorsFile(x).tensors),
  npy: async (f) => {
    const r = await attempt(f, () => sound(readNpy(f)));
    await attempt(f, () => loadStateDict(f));
    return r;
  },
  idx: async (f) => {
    const r = await attempt(f, () => sound(readIdx(f)));
    await attempt(f, () => sound(readIdxImages(f)));
    await attempt(f, () => readIdxLabels(f));
    return r;
  },
  "idx-gz": async (f) => TARGETS.idx(f),
  cifar: async (f) =>
    attempt(f, () => {
      const b = readCifarBatch(f);
      soundArrays(b.images.length, b.count * 3072, "images");
      soundArrays(b.labels.length, b.count, "labels");
    }),
  image: async (f) => {
    const decode = async (channels: number) => {
      const img = await decodeImage(f, channels);
      soundArrays(img.data.length, channels * img.h * img.w, `a ${img.c}-channel ${img.w}x${img.h} image`);
    };
    const r = await attempt(f, () => decode(3));
    await attempt(f, () => decode(1));
    return r;
  },
  // `vgg serve-demo` reads the model's description itself; everything else hands the file to ONNX Runtime.
  onnx: async (f) => {
    const { createSession } = await loadOrt();
    const info = await attempt(f, () => readOnnxInfo(f));
    const session = await attempt(f, async () => {
      const s = await createSession(f, { threads: 1 });
      await s.release();
    });
    return info === "rejected" || session === "rejected" ? "rejected" : "accepted";
  },
  // Not a format: files that name a failure, so the tests can check that the harness sees each kind.
  selftest: async (f) => {
    const what = readFileSync(f, "utf8").trim();
    return attempt(f, () => {
      if (what === "reject") throw new VggError("rejected on purpose", f);
      if (what === "reject-unnamed") throw new VggError("rejected without naming the file");
      if (what === "reject-garbled") throw new VggError("rejected with a name from the file: 'a\rb'", f);
      if (what === "throw") throw new TypeError("not a VggError");
      if (what === "hang") for (;;);
      if (what === "abort") process.abort();
      if (what === "deep") {
        const down = (n: number): number => down(n + 1) + 1;
        down(0);
      }
      try {
        // Swallowed, as a careless parser might: the harness must still see the attempt.
        if (what === "alloc") new Float64Array(2 ** 28);
        if (what === "alloc-buffer") Buffer.allocUnsafe(2 ** 30);
      } catch {}
    });
  },
};

/** Loads what a format's readers need before the first file is timed (sharp, ONNX Runtime). */
export async function warmUp(format: string): Promise<void> {
  if (format === "image") {
    const sharp = await loadSharp();
    sharp.cache(false);
    sharp.concurrency(1);
  }
  if (format === "onnx") await loadOrt();
}

const MiB = 1 << 20;

export interface Bound {
  bytes: number;
  allowance?: Allowance;
}
/** Deflate cannot expand data more than 1032:1 (zlib's documented maximum ratio). */
const DEFLATE_RATIO = 1032;

function hasDeflateEntry(b: Uint8Array): boolean {
  for (let p = b.indexOf(0x50); p >= 0 && p + 10 <= b.length; p = b.indexOf(0x50, p + 1)) {
    if (b[p + 1] === 0x4b && b[p + 2] === 0x03 && b[p + 3] === 0x04 && b[p + 8] !== 0) return true;
  }
  return false;
}

/**
 * The largest single allocation `file` can justify. Every reader works on data the file holds, so the base is
 * 4 x its size + 1 MiB (a copy or two, widening bf16/int16 to 32 bits, slack for small files). Compressed data
 * legitimately inflates: zip entries in a .pth and gzip IDX files may decode to up to 1032 x their compressed
 * size (deflate's limit; the IDX reader's own cap, IDX_MAX_BYTES = 2 GiB, is looser than that for any file
 * under 2 MB, and the pth reader checks declared sizes against the same 1032:1 ratio). An image decodes to its
 * pixels: 3 bytes per pixel the header declares (sharp refuses more than 16383 x 16383 pixels by default), which
 * decodeImage's output holds.
 *
 * One .pth case is above any file-size bound by design: torch.save stores an expanded view (stride 0) as its small
 * storage, and loading it materialises every element, as torch.load does. The reader caps that at 2^24 elements
 * (MAX_EXPANDED_NUMEL in pth.ts), so allocations made while materialising a tensor may reach 2^24 x 8 bytes
 * (float64/int64; bf16/int16 widened to 32 bits stay below it). Anything else in a .pth must fit the file bound.
 */
export async function allocationBound(format: string, file: string): Promise<Bound> {
  const bytes = readFileSync(file);
  const base = 4 * bytes.length + MiB;
  if (format === "idx-gz" || (format === "idx" && bytes[0] === 0x1f && bytes[1] === 0x8b))
    return { bytes: DEFLATE_RATIO * bytes.length + MiB };
  if (format.startsWith("pth")) {
    const expansion = { frame: "Materialiser.tensor", bytes: 8 * 2 ** 24 };
    return { bytes: hasDeflateEntry(bytes) ? DEFLATE_RATIO * bytes.length + MiB : base, allowance: expansion };
  }
  if (format === "image") {
    try {
      const m = await (await loadSharp())(file).metadata();
      return { bytes: base + 3 * (m.width ?? 0) * (m.height ?? 0) };
    } catch {
      return { bytes: base };
    }
  }
  return { bytes: base };
}
