/** `vgg predict`: presets, batching, top-k, skipped files, labels, taps, checkpoints; mostly through the real binary. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import * as zlib from "node:zlib";
import sharp from "sharp";
import { encodeIdx } from "../src/data/idx.js";
import { CAFFE_MEAN_BGR, presetPreprocessing, TORCHVISION_MEAN, TORCHVISION_STD } from "../src/data/preprocessing.js";
import { readNpy } from "../src/io/npy.js";
import { simpleGlob } from "../src/predict/inputs.js";
import { checkpointPreprocessing, loadImage } from "../src/predict/preprocess.js";
import { softmax, topK } from "../src/predict/topk.js";
import { readSafetensorsFile } from "../src/weights/safetensors.js";
import { IMAGENET_CLASSES, readLabels } from "../src/zoo/labels.js";
import { assertCleanError, hasTorch, tmp, vgg, vggAsync } from "./helpers.js";

const dir = tmp("vgg-predict-");
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));

/** A photo-like RGB image: smooth waves, a disc, a checker and noise (JPEG has something to work on). */
function photo(w: number, h: number): Buffer {
  const b = Buffer.alloc(w * h * 3);
  let s = 12345;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      b[i] = Math.min(255, Math.max(0, 128 + 100 * Math.sin(x / 23) + 40 * rnd() - 20));
      b[i + 1] = Math.hypot(x - 0.4 * w, y - 0.4 * h) < 0.24 * h ? 220 : Math.min(255, Math.floor(y * 0.6 + 30 * rnd()));
      b[i + 2] = (x ^ y) & 32 ? 200 : 40;
    }
  return b;
}

const images = join(dir, "images");
fs.mkdirSync(images);
const files = {
  red: join(images, "red.png"),
  jpg: join(images, "photo.jpg"),
  webp: join(images, "photo2.webp"),
  corrupt: join(images, "corrupt.jpg"),
  txt: join(images, "notes.txt"),
  flat: join(dir, "flat.png"),
};
const ready = (async () => {
  const raw = { raw: { width: 500, height: 375, channels: 3 as const } };
  await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 255, g: 0, b: 0 } } })
    .png()
    .toFile(files.red);
  await sharp(photo(500, 375), raw).jpeg({ quality: 90 }).toFile(files.jpg);
  await sharp(photo(500, 375), raw).webp({ quality: 80 }).toFile(files.webp);
  fs.writeFileSync(files.corrupt, Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from("not really a jpeg")]));
  fs.writeFileSync(files.txt, "a text file, not an image\n");
  // A constant colour, 300 high and 400 wide.
  await sharp({ create: { width: 400, height: 300, channels: 3, background: { r: 200, g: 100, b: 50 } } })
    .png()
    .toFile(files.flat);
})();

const MODEL = ["--arch", "vgg11", "--head", "compact", "--width-divisor", "16", "--num-classes", "10", "--seed", "3"];
const TINY = [...MODEL, "--input-size", "64"];

test("presets: a constant colour gives the normalised constant per channel (torchvision RGB, caffe BGR minus mean)", async () => {
  await ready;
  const rgb = [200, 100, 50];
  const tv = await loadImage(files.flat, presetPreprocessing("torchvision", 224));
  assert.deepEqual([tv.c, tv.h, tv.w], [3, 224, 224]);
  const plane = 224 * 224;
  for (let c = 0; c < 3; c++) {
    const want = (rgb[c] / 255 - TORCHVISION_MEAN[c]) / TORCHVISION_STD[c];
    for (let i = c * plane; i < (c + 1) * plane; i++)
      assert.ok(Math.abs(tv.data[i] - want) < 1e-6, `torchvision channel ${c}: ${tv.data[i]} vs ${want}`);
  }
  const cf = await loadImage(files.flat, presetPreprocessing("caffe", 224));
  const bgr = [50, 100, 200];
  for (let c = 0; c < 3; c++) {
    const want = bgr[c] - CAFFE_MEAN_BGR[c];
    for (let i = c * plane; i < (c + 1) * plane; i++)
      assert.ok(Math.abs(cf.data[i] - want) < 1e-4, `caffe channel ${c}: ${cf.data[i]} vs ${want}`);
  }
  // Resize scales with the input size: shorter side round(size * 256 / 224), then the centre crop.
  assert.equal(presetPreprocessing("torchvision", 224).resizeShorter, 256);
  assert.equal(presetPreprocessing("caffe", 64).resizeShorter, 73);
  const small = await loadImage(files.jpg, presetPreprocessing("torchvision", 64));
  assert.deepEqual([small.c, small.h, small.w], [3, 64, 64]);
});

test("checkpoint preprocessing: stored data + preset, and older checkpoints without them", () => {
  const base = {
    arch: "vgg11_bn",
    labels: ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
  };
  const fm = { ...base, options: { inputSize: 32, inChannels: 1, numClasses: 10 }, mean: [0.286], std: [0.353] };
  // Before the trainer stored its data description, Fashion-MNIST's labels stand for 1-channel 28x28 images.
  const old = checkpointPreprocessing(fm);
  assert.deepEqual([old.channels, old.native, old.transform], [1, [28, 28], { mean: [0.286], std: [0.353], padTo: 32 }]);
  const fit = checkpointPreprocessing({ ...fm, data: { channels: 1, size: [28, 28] }, preset: { size: 32, fit: "resize" } });
  assert.deepEqual(fit.transform, { mean: [0.286], std: [0.353], resize: 32 });
  // Photos of varying size: the evaluation's rescale + centre crop; grey data for a 3-channel model is replicated.
  const photos = checkpointPreprocessing({
    ...base,
    options: { inputSize: 64, inChannels: 3, numClasses: 10 },
    mean: [0.5],
    std: [0.25],
    data: { channels: 1, size: null },
    preset: { size: 64, normalize: "mean" },
  });
  assert.deepEqual([photos.channels, photos.native], [1, undefined]);
  assert.deepEqual(photos.transform, { mean: [0.5], std: [1], channels: 3, scale: 73, crop: 64 });
});

test("ImageNet labels ship in torchvision's order; --labels files; top-k and glob helpers", async () => {
  assert.equal(IMAGENET_CLASSES.length, 1000);
  const names = (i: number) => IMAGENET_CLASSES[i].split(", ");
  assert.ok(names(0).includes("tench"));
  assert.ok(names(1).includes("goldfish"));
  assert.ok(names(281).includes("tabby cat"));
  assert.ok(names(999).includes("toilet tissue"));
  assert.equal(new Set(IMAGENET_CLASSES).size, 1000);

  const txt = join(dir, "l.txt");
  fs.writeFileSync(txt, "cat\r\n dog \nbird\n\n");
  assert.deepEqual(readLabels(txt, 3), ["cat", "dog", "bird"]);
  assert.throws(() => readLabels(txt, 4), /has 3 labels, the model has 4 classes/);
  const js = join(dir, "l.json");
  fs.writeFileSync(js, JSON.stringify(["a", "b"]));
  assert.deepEqual(readLabels(js), ["a", "b"]);
  fs.writeFileSync(js, "[1, 2");
  assert.throws(() => readLabels(js), /not valid JSON/);

  const p = softmax([1, 3, 2, 3]);
  assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
  assert.deepEqual(
    topK(p, 3, ["a", "b", "c", "d"]).map((t) => t.label),
    ["b", "d", "c"],
  );
  assert.equal(topK(p, 10).length, 4);

  await ready;
  assert.deepEqual(simpleGlob(join(images, "*.png")), [files.red]);
  assert.deepEqual(simpleGlob(join(images, "photo?.*")), [files.webp]);
  assert.deepEqual(simpleGlob(join(dir, "im*", "*.jpg")), [files.corrupt, files.jpg]);
  assert.deepEqual(simpleGlob(join(images, "*.gif")), []);
});

test("predict a directory: batches, skips bad files, top-k agrees with `vgg infer` on the same tensor, taps", {
  timeout: 60_000,
}, async () => {
  await ready;
  const x = join(dir, "x.npy");
  const taps = join(dir, "taps");
  const r = vgg([
    "predict",
    ...TINY,
    images,
    "--json",
    "--top",
    "3",
    "--batch-size",
    "2",
    "--save-input",
    x,
    "--tap",
    "relu1_1,pool5",
    "--out",
    taps,
  ]);
  assert.equal(r.status, 0, r.stderr);
  const skipped = r.stderr.trim().split("\n").sort();
  assert.equal(skipped.length, 2, r.stderr);
  assert.match(skipped[0], /^vgg: skipped .*corrupt\.jpg: cannot decode image/);
  assert.match(skipped[1], /^vgg: skipped .*notes\.txt: cannot decode image/);
  const out = JSON.parse(r.stdout) as { file: string; top: { index: number; label: string; probability: number }[] }[];
  assert.deepEqual(
    out.map((o) => o.file),
    [files.jpg, files.webp, files.red],
  );
  for (const o of out) {
    assert.equal(o.top.length, 3);
    for (let k = 1; k < 3; k++) assert.ok(o.top[k - 1].probability >= o.top[k].probability, "top-k not sorted");
    assert.ok(o.top.reduce((a, t) => a + t.probability, 0) <= 1 + 1e-9);
    for (const t of o.top) assert.equal(t.label, String(t.index));
  }

  // The preprocessed tensor through `vgg infer` gives the same posteriors.
  const input = readNpy(x);
  assert.deepEqual(input.shape, [3, 3, 64, 64]);
  const logits = join(dir, "logits.npy");
  const inf = vgg(["infer", ...MODEL, "--input", x, "--out", logits]);
  assert.equal(inf.status, 0, inf.stderr);
  const l = readNpy(logits).data as Float32Array;
  out.forEach((o, i) => {
    const p = softmax(l.subarray(i * 10, (i + 1) * 10));
    const best = topK(p, 3);
    assert.equal(o.top[0].index, best[0].index);
    for (const t of o.top) assert.ok(Math.abs(t.probability - p[t.index]) < 1e-5);
  });

  // --tap: one .npy ([1, C, H, W]) and one PNG grid per image and tap.
  for (const stem of ["photo", "photo2", "red"]) {
    const f = readNpy(join(taps, `${stem}.relu1_1.npy`));
    assert.deepEqual(f.shape, [1, 4, 64, 64]);
    const m = await sharp(join(taps, `${stem}.relu1_1.png`)).metadata();
    assert.deepEqual([m.width, m.height, m.format], [2 * 64 + 1, 2 * 64 + 1, "png"]);
    const p5 = readNpy(join(taps, `${stem}.pool5.npy`));
    assert.deepEqual(p5.shape, [1, 32, 2, 2]);
    // 32 channels: 6 columns, 6 rows of 2x2 maps enlarged to 16x16, 1-pixel gaps.
    const m5 = await sharp(join(taps, `${stem}.pool5.png`)).metadata();
    assert.deepEqual([m5.width, m5.height], [6 * 16 + 5, 6 * 16 + 5]);
  }
});

test("predict: globs, text output, --labels, ImageNet names for 1000 classes, clean errors", { timeout: 60_000 }, async () => {
  await ready;
  const labels = join(dir, "ten.txt");
  fs.writeFileSync(labels, `${Array.from({ length: 10 }, (_, i) => `class-${i}`).join("\n")}\n`);
  const three = join(dir, "three.json");
  fs.writeFileSync(three, JSON.stringify(["a", "b", "c"]));
  const [text, imagenet, noneOne, noneTwo, wrongCount] = await Promise.all([
    vggAsync(["predict", ...TINY, join(images, "*.png"), join(dir, "missing.png"), "--labels", labels, "--top", "2"]),
    vggAsync([
      "predict",
      "--arch",
      "vgg11",
      "--head",
      "compact",
      "--width-divisor",
      "16",
      "--input-size",
      "32",
      files.red,
      "--json",
      "--top",
      "1",
    ]),
    vggAsync(["predict", ...TINY, files.corrupt]),
    vggAsync(["predict", ...TINY, files.corrupt, files.txt]),
    vggAsync(["predict", ...TINY, files.red, "--labels", three]),
  ]);
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`^${files.red.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\n(  +\\d+\\.\\d\\d%  +\\d  class-\\d\n){2}$`));
  assert.equal(text.stderr.trim(), `vgg: skipped ${join(dir, "missing.png")}: no such file`);

  assert.equal(imagenet.status, 0, imagenet.stderr);
  const top = JSON.parse(imagenet.stdout)[0].top[0];
  assert.equal(top.label, IMAGENET_CLASSES[top.index]);

  assertCleanError(noneOne, /corrupt\.jpg: cannot decode image/);
  assert.notEqual(noneTwo.status, 0);
  const lines = noneTwo.stderr.trim().split("\n");
  assert.equal(lines.length, 3, noneTwo.stderr);
  assert.match(lines[2], /^vgg: none of the 2 inputs could be read as an image$/);
  assertCleanError(wrongCount, /three\.json: has 3 labels, the model has 10 classes/);
  assertCleanError(vgg(["predict", files.red]), /--arch/);
  assertCleanError(vgg(["predict", ...TINY, files.red, "--tap", "relu1_1"]), /--tap needs --out/);
  assertCleanError(vgg(["predict", ...TINY, files.red, "--preset", "keras"]), /preset/);
});

/** A tiny Fashion-MNIST look-alike in the Debian package's layout (IDX files, gzipped). */
function fakeFashionMnist(root: string): Uint8Array {
  fs.mkdirSync(root, { recursive: true });
  const make = (n: number, seed: number) => {
    const px = new Uint8Array(n * 784);
    const lab = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      lab[i] = i % 10;
      for (let p = 0; p < 784; p++) px[i * 784 + p] = (p * 7 + i * 13 + seed) % 251;
    }
    return { px, lab };
  };
  const tr = make(48, 1);
  const te = make(10, 2);
  const w = (name: string, dims: number[], data: Uint8Array) =>
    fs.writeFileSync(join(root, `${name}.gz`), zlib.gzipSync(encodeIdx(dims, data)));
  w("train-images-idx3-ubyte", [48, 28, 28], tr.px);
  w("train-labels-idx1-ubyte", [48], tr.lab);
  w("t10k-images-idx3-ubyte", [10, 28, 28], te.px);
  w("t10k-labels-idx1-ubyte", [10], te.lab);
  return tr.px.slice(0, 784);
}

test("a checkpoint from `vgg train` predicts with its own labels and preprocessing (grey, 28 -> pad 32)", { timeout: 90_000 }, async () => {
  await ready;
  const data = join(dir, "fmnist");
  const first = fakeFashionMnist(data);
  const run = join(dir, "run");
  const t = vgg([
    "train",
    "--arch",
    "vgg11_bn",
    "--head",
    "compact",
    "--width-divisor",
    "16",
    "--data",
    `fashion-mnist:${data}`,
    "--val",
    "8",
    "--steps",
    "2",
    "--batch-size",
    "16",
    "--no-progress",
    "--workers",
    "0",
    "--out",
    run,
  ]);
  assert.equal(t.status, 0, t.stderr);
  const best = join(run, "best.safetensors");
  const meta = JSON.parse(readSafetensorsFile(best).metadata.model);
  assert.deepEqual(meta.data, { channels: 1, size: [28, 28] });

  // One training image as a grey PNG: the input must be exactly the trainer's: (v/255 - mean)/std, zero-padded 2 px.
  const png = join(dir, "item.png");
  await sharp(Buffer.from(first), { raw: { width: 28, height: 28, channels: 1 } })
    .png()
    .toFile(png);
  const x = join(dir, "item.npy");
  const r = vgg(["predict", "--weights", best, png, files.jpg, "--json", "--save-input", x, "--top", "10"]);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.deepEqual(out[0].top.map((t: { label: string }) => t.label).sort(), [...meta.labels].sort());
  assert.ok(out[0].top.some((t: { label: string }) => t.label === "Ankle boot"));
  const inp = readNpy(x);
  assert.deepEqual(inp.shape, [2, 1, 32, 32]);
  const v = inp.data as Float32Array;
  const [mean, std] = [meta.mean[0], meta.std[0]];
  for (let y = 0; y < 32; y++)
    for (let xx = 0; xx < 32; xx++) {
      const inside = y >= 2 && y < 30 && xx >= 2 && xx < 30;
      const want = ((inside ? first[(y - 2) * 28 + xx - 2] / 255 : 0) - mean) / std;
      assert.ok(Math.abs(v[y * 32 + xx] - want) < 1e-5, `(${y}, ${xx}): ${v[y * 32 + xx]} vs ${want}`);
    }
  // The colour JPEG became grey 28x28 (shorter side 28, centre crop) and was padded the same way.
  assert.ok(Math.abs(v[1024] - -mean / std) < 1e-5 && Math.abs(v[1024 + 15 * 32 + 15] - -mean / std) > 1e-3);

  // Model flags conflict with the checkpoint's own description unless --arch is given.
  assertCleanError(vgg(["predict", "--weights", best, png, "--input-size", "64"]), /--input-size: the checkpoint describes its model/);
});

test("the torchvision preset equals torchvision.transforms on a JPEG", {
  skip: !hasTorch() && "needs /usr/bin/python3 with torch+torchvision",
  timeout: 60_000,
}, async () => {
  await ready;
  const x = await loadImage(files.jpg, presetPreprocessing("torchvision", 224));
  const ours = join(dir, "ours.npy");
  const { writeNpy } = await import("../src/io/npy.js");
  writeNpy(ours, { dtype: "float32", shape: [3, 224, 224], data: x.data as Float32Array });
  // Tolerance: at most 2/255 in pixel units (before dividing by std) and a tiny mean. PIL resizes in fixed point
  // and this code in float, so a value on a rounding tie can land one level apart; JPEG decoders (libvips' and
  // PIL's libjpeg) may also differ by a level. Measured here: 99.8% identical, max 1/255.
  const py = `
import numpy as np, torchvision.transforms as T
from PIL import Image
t = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
ref = t(Image.open(${JSON.stringify(files.jpg)}).convert("RGB")).numpy()
d = np.abs(ref - np.load(${JSON.stringify(ours)})) * np.array([0.229, 0.224, 0.225])[:, None, None] * 255
print(d.max(), d.mean())
`;
  const r = spawnSync("/usr/bin/python3", ["-c", py], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const [max, mean] = r.stdout.trim().split(/\s+/).map(Number);
  assert.ok(max <= 2 + 1e-3, `max difference ${max}/255`);
  assert.ok(mean < 0.05, `mean difference ${mean}/255`);
});

test("predict over many files: the decode thread gives the same answers as decoding inline, skipping bad files", async () => {
  const dir = tmp("vgg-predict-pool-");
  try {
    for (let i = 0; i < 12; i++) {
      const [w, h] = [100 + 13 * i, 80 + 7 * i];
      const px = Buffer.alloc(w * h * 3);
      for (let k = 0; k < px.length; k++) px[k] = (k * 31 + i * 17) % 256;
      await sharp(px, { raw: { width: w, height: h, channels: 3 } })
        .jpeg()
        .toFile(join(dir, `i${String(i).padStart(2, "0")}.jpg`));
    }
    fs.writeFileSync(join(dir, "bad.jpg"), "not an image");
    const base = ["predict", "--arch", "vgg11", "--width-divisor", "16", "--input-size", "32", "--num-classes", "5", "--json", dir];
    // 12 files in batches of 2 go through the decode thread; in one batch of 64 they are decoded inline.
    const [pooled, inline] = await Promise.all([vggAsync([...base, "--batch-size", "2"]), vggAsync([...base, "--batch-size", "64"])]);
    assert.equal(pooled.status, 0, pooled.stderr);
    assert.equal(inline.status, 0, inline.stderr);
    assert.equal(JSON.parse(pooled.stdout).length, 12);
    assert.equal(pooled.stdout, inline.stdout);
    assert.match(pooled.stderr, /skipped .*bad\.jpg: cannot decode image/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
