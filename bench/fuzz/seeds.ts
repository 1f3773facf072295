/**
 * Valid files of every format, made by the project's own writers (safetensors, .npy, IDX, CIFAR, ONNX), by sharp
 * (PNG, JPEG, WebP), or taken from test/fixtures (the .pth files there were written by PyTorch; python is never
 * needed at fuzz time). The mutators start from these.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as zlib from "node:zlib";
import { encodeCifarBatch } from "../../src/data/cifar.js";
import { loadSharp } from "../../src/data/folder.js";
import { encodeIdx } from "../../src/data/idx.js";
import { encodeInferenceGraph } from "../../src/graph/infer.js";
import { writeNpy } from "../../src/io/npy.js";
import type { StateDict } from "../../src/tensor.js";
import { initWeights } from "../../src/weights/init.js";
import { writeSafetensors } from "../../src/weights/safetensors.js";
import { buildModel } from "../../src/zoo/model.js";
import { readZip, type ZEntry } from "./zip.js";

export interface Seed {
  name: string;
  bytes: Uint8Array;
  ext: string;
  /** pth-zip: the archive's entries. */
  zip?: ZEntry[];
  /** idx-gz: the IDX file inside. */
  inner?: Uint8Array;
}

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const WEIGHT_FIXTURES = join(ROOT, "test", "fixtures", "weights");

function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(WEIGHT_FIXTURES, name)));
}

/** Deterministic bytes that look a little like data (a ramp with a stride), no RNG needed. */
function ramp(n: number, k = 7): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * k + (i >> 5)) & 0xff);
}

/** Writes through a project writer (they write files atomically) and reads the bytes back. */
function viaFile(write: (file: string) => void): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "vgg-fuzz-seed-"));
  try {
    const file = join(dir, "seed");
    write(file);
    return new Uint8Array(readFileSync(file));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function smallWeights(arch: string, widthDivisor: number): { model: ReturnType<typeof buildModel>; sd: StateDict } {
  const model = buildModel(arch, { widthDivisor, numClasses: 3, inputSize: 32, head: "compact" });
  return { model, sd: initWeights(model, "torchvision", 1) };
}

async function imageSeeds(): Promise<Seed[]> {
  const sharp = await loadSharp();
  const rgb = (w: number, h: number) => sharp(Buffer.from(ramp(w * h * 3, 5)), { raw: { width: w, height: h, channels: 3 } });
  const ga = sharp(Buffer.from(ramp(16 * 16 * 2, 3)), { raw: { width: 16, height: 16, channels: 2 } });
  const out: [string, string, Buffer][] = [
    ["rgb", ".png", await rgb(24, 16).png().toBuffer()],
    ["grey-alpha", ".png", await ga.png().toBuffer()],
    ["palette", ".png", await rgb(16, 16).png({ palette: true, colours: 8 }).toBuffer()],
    ["rgb", ".jpg", await rgb(24, 24).jpeg({ quality: 80 }).toBuffer()],
    ["progressive", ".jpg", await rgb(16, 16).jpeg({ progressive: true }).toBuffer()],
    ["lossy", ".webp", await rgb(24, 16).webp({ quality: 70 }).toBuffer()],
    ["lossless", ".webp", await rgb(16, 16).webp({ lossless: true }).toBuffer()],
  ];
  return out.map(([name, ext, b]) => ({ name: `${name}${ext}`, ext, bytes: new Uint8Array(b) }));
}

/** The seed files of `format`. */
export async function makeSeeds(format: string): Promise<Seed[]> {
  switch (format) {
    case "pth-zip":
      return ["small_zip.pth", "small_deflate.pth", "checkpoint.pth"].map((name) => {
        const bytes = fixture(name);
        return { name, ext: ".pth", bytes, zip: readZip(bytes) };
      });
    case "pth-legacy":
      return [{ name: "small_legacy.pth", ext: ".pth", bytes: fixture("small_legacy.pth") }];
    case "safetensors": {
      const { sd } = smallWeights("vgg11_bn", 32);
      const mixed: StateDict = new Map([
        ["a", { dtype: "float16", shape: [2, 3], data: Uint16Array.from([1, 2, 3, 4, 5, 6]) }],
        ["b", { dtype: "int64", shape: [2], data: BigInt64Array.from([1n, -2n]) }],
        ["c", { dtype: "uint8", shape: [], data: Uint8Array.of(7) }],
        ["d", { dtype: "float32", shape: [0, 4], data: new Float32Array(0) }],
      ]);
      return [
        { name: "vgg11_bn_d32.safetensors", ext: ".safetensors", bytes: viaFile((f) => writeSafetensors(f, sd, { arch: "vgg11_bn" })) },
        { name: "mixed.safetensors", ext: ".safetensors", bytes: viaFile((f) => writeSafetensors(f, mixed)) },
        { name: "reference.safetensors", ext: ".safetensors", bytes: fixture("reference.safetensors") },
      ];
    }
    case "npy": {
      // fortran.npy is refused by design (Fortran order with two dims above 1), so it cannot be a seed.
      const names = readdirSync(WEIGHT_FIXTURES).filter((n) => n.endsWith(".npy") && n !== "fortran.npy");
      const x = { dtype: "float32" as const, shape: [2, 3, 8, 8], data: Float32Array.from({ length: 384 }, (_, i) => i / 7) };
      return [
        ...names.map((name) => ({ name, ext: ".npy", bytes: fixture(name) })),
        { name: "x_nchw.npy", ext: ".npy", bytes: viaFile((f) => writeNpy(f, x)) },
      ];
    }
    case "idx":
    case "idx-gz": {
      const raw = [
        { name: "images-idx3-ubyte", bytes: encodeIdx([5, 28, 28], ramp(5 * 784)) },
        {
          name: "labels-idx1-ubyte",
          bytes: encodeIdx(
            [20],
            ramp(20, 3).map((v) => v % 10),
          ),
        },
        { name: "cube-idx4-ubyte", bytes: encodeIdx([2, 3, 4, 5], ramp(120)) },
      ];
      if (format === "idx") return raw.map((s) => ({ ...s, ext: "" }));
      return raw.map((s) => ({ name: `${s.name}.gz`, ext: ".gz", bytes: new Uint8Array(zlib.gzipSync(s.bytes)), inner: s.bytes }));
    }
    case "cifar":
      return [2, 4].map((n) => ({
        name: `batch_${n}.bin`,
        ext: ".bin",
        bytes: encodeCifarBatch(
          ramp(n * 3072, 11),
          Uint8Array.from({ length: n }, (_, i) => (i * 3) % 10),
        ),
      }));
    case "image":
      return imageSeeds();
    case "onnx": {
      const a = smallWeights("vgg11", 16);
      const b = smallWeights("vgg11_bn", 32);
      return [
        { name: "vgg11_d16.onnx", ext: ".onnx", bytes: encodeInferenceGraph(a.model, a.sd) },
        {
          name: "vgg11_bn_d32_taps.onnx",
          ext: ".onnx",
          bytes: encodeInferenceGraph(b.model, b.sd, { taps: ["relu1_1", "pool2", "logits"] }),
        },
      ];
    }
    default:
      throw new Error(`no seeds for format '${format}'`);
  }
}
