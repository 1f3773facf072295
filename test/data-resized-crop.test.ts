/**
 * torchvision's RandomResizedCrop in the data pipeline: its parameter rule (checked against torchvision's own
 * get_params replaying our draws), its crop + resize against F.resized_crop on a PIL image, how it composes with
 * the other steps, and the fine-tuning preset built on it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fullSplit } from "../src/data/dataset.js";
import { decodeImage, loadSharp } from "../src/data/folder.js";
import { BatchLoader } from "../src/data/loader.js";
import {
  compileTransforms,
  crop,
  hflip,
  type Image,
  type PresetOptions,
  presetTransforms,
  type Region,
  replicateChannels,
  resize,
  resizedCropRegion,
  resizeRegion,
  transformImage,
} from "../src/data/transforms.js";
import { VggError } from "../src/errors.js";
import { writeNpy } from "../src/io/npy.js";
import { keyedRng, type Sfc32, sampleRng } from "../src/random.js";
import { hasTorch } from "./helpers.js";

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

function randomImage(c: number, h: number, w: number, seed = 1): Image {
  const r = keyedRng(seed, 99);
  const data = new Uint8Array(c * h * w);
  for (let i = 0; i < data.length; i++) data[i] = r.int(256);
  return { data, c, h, w };
}

/** A generator that records what it hands out, so Python can replay the same draws into torchvision. */
function recording(rng: Sfc32): { rng: Sfc32; floats: number[]; ints: number[] } {
  const floats: number[] = [];
  const ints: number[] = [];
  const r = {
    float: () => {
      const v = rng.float();
      floats.push(v);
      return v;
    },
    int: (n: number) => {
      const v = rng.int(n);
      ints.push(v);
      return v;
    },
  } as unknown as Sfc32;
  return { rng: r, floats, ints };
}

function python(script: string, input: string): string {
  const r = spawnSync("/usr/bin/python3", ["-c", script], { input, encoding: "utf8", maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

const torch = hasTorch();

test("resized crop region: torchvision's area, aspect and bounds over many draws; deterministic per key", () => {
  for (const [H, W] of [
    [375, 500],
    [500, 375],
    [224, 224],
  ]) {
    let small = 0;
    for (let i = 0; i < 3000; i++) {
      const r = resizedCropRegion(H, W, sampleRng(1, 0, i));
      assert.ok(r.h >= 1 && r.w >= 1 && r.h <= H && r.w <= W, JSON.stringify(r));
      assert.ok(r.y >= 0 && r.x >= 0 && r.y + r.h <= H && r.x + r.w <= W, JSON.stringify(r));
      // w = round(sqrt(A r)), h = round(sqrt(A / r)): undo the rounding by +-1/2 on each side.
      const fracMax = ((r.w + 0.5) * (r.h + 0.5)) / (H * W);
      const fracMin = ((r.w - 0.5) * (r.h - 0.5)) / (H * W);
      assert.ok(fracMax >= 0.08 && fracMin <= 1, `area fraction of ${JSON.stringify(r)} in ${H}x${W}`);
      assert.ok((r.w + 0.5) / (r.h - 0.5) >= 3 / 4 && (r.w - 0.5) / (r.h + 0.5) <= 4 / 3, `aspect of ${JSON.stringify(r)}`);
      if ((r.w * r.h) / (H * W) < 0.15) small++;
      assert.deepEqual(resizedCropRegion(H, W, sampleRng(1, 0, i)), r);
    }
    // Area is uniform over [0.08, 1] before rejection: about 7% of draws land under 0.15.
    assert.ok(small > 100, `${small} small crops`);
  }
  // Custom ranges are honoured.
  for (let i = 0; i < 500; i++) {
    const r = resizedCropRegion(400, 400, sampleRng(2, 0, i), [0.5, 0.5], [1, 1]);
    assert.deepEqual([r.h, r.w], [283, 283]);
  }
});

test("resized crop fallback: an image no try fits gets torchvision's clamped centre crop", () => {
  // 1000 wide x 10 high: every try wants h > 10; the fallback keeps the height and clamps w/h to 4/3.
  assert.deepEqual(resizedCropRegion(10, 1000, sampleRng(0, 0, 0)), { y: 0, x: (1000 - 13) >> 1, h: 10, w: 13 });
  // 10 wide x 1000 high: w = 10, h = round(10 / (3/4)) = 13, centred.
  assert.deepEqual(resizedCropRegion(1000, 10, sampleRng(0, 0, 0)), { y: (1000 - 13) >> 1, x: 0, h: 13, w: 10 });
  // The whole image when its own aspect is inside the range (reached only when no try fits: scale (2, 2) never does).
  assert.deepEqual(resizedCropRegion(300, 350, sampleRng(0, 0, 0), [2, 2]), { y: 0, x: 0, h: 300, w: 350 });
});

test("resized crop region equals torchvision 0.14's get_params replaying the same draws", {
  skip: !torch && "needs /usr/bin/python3 with torch",
}, () => {
  const cases: { H: number; W: number; scale: number[]; ratio: number[]; floats: number[]; ints: number[]; ours: Region }[] = [];
  const shapes: [number, number, number[], number[]][] = [
    [375, 500, [0.08, 1], [3 / 4, 4 / 3]],
    [500, 375, [0.08, 1], [3 / 4, 4 / 3]],
    [32, 32, [0.08, 1], [3 / 4, 4 / 3]],
    [10, 1000, [0.08, 1], [3 / 4, 4 / 3]],
    [1000, 10, [0.08, 1], [3 / 4, 4 / 3]],
    [60, 90, [0.5, 1.5], [0.5, 2]],
    [200, 20, [0.2, 1], [0.5, 2]],
  ];
  for (const [H, W, scale, ratio] of shapes) {
    for (let i = 0; i < 60; i++) {
      const rec = recording(sampleRng(4, 1, i));
      const ours = resizedCropRegion(H, W, rec.rng, scale as [number, number], ratio as [number, number]);
      cases.push({ H, W, scale, ratio, floats: rec.floats, ints: rec.ints, ours });
    }
  }
  const py = `
import json, sys, torch
from torchvision.transforms import RandomResizedCrop
out = []
for c in json.load(sys.stdin):
    fl, it = iter(c["floats"]), iter(c["ints"])
    class U:
        def uniform_(self, a, b):
            return torch.tensor(float(a) + (float(b) - float(a)) * next(fl), dtype=torch.float64)
    def randint(lo, hi, size):
        v = lo + next(it)
        assert lo <= v < hi
        return torch.tensor([v])
    torch.empty = lambda *a, **k: U()
    torch.randint = randint
    i, j, h, w = RandomResizedCrop.get_params(torch.zeros(1, c["H"], c["W"]), c["scale"], c["ratio"])
    assert next(fl, None) is None and next(it, None) is None, "draws left over"
    out.append({"y": i, "x": j, "h": h, "w": w})
print(json.dumps(out))
`;
  const ref = JSON.parse(python(py, JSON.stringify(cases))) as Region[];
  let fallbacks = 0;
  for (let k = 0; k < cases.length; k++) {
    const c = cases[k];
    assert.deepEqual(c.ours, ref[k], `case ${k}: ${c.H}x${c.W}`);
    if (c.floats.length === 20) fallbacks++;
  }
  assert.ok(fallbacks >= 120, `${fallbacks} fallbacks`);
});

test("resizeRegion is resize of the cropped region, without the copy", () => {
  for (const img of [
    randomImage(3, 37, 53, 2),
    { ...randomImage(1, 30, 44, 3), data: Float32Array.from(randomImage(1, 30, 44, 3).data) },
  ]) {
    for (const [y, x, h, w, oh, ow] of [
      [3, 5, 20, 17, 11, 9],
      [0, 0, img.h, img.w, 16, 16],
      [2, 1, 7, 9, 32, 32],
      [4, 0, 9, img.w, 5, img.w],
      [0, 3, img.h, 11, img.h, 22],
      [1, 1, 8, 8, 8, 8],
    ]) {
      for (const type of ["same", "float32"] as const) {
        const want = resize(crop(img, y, x, h, w), oh, ow, type);
        const got = resizeRegion(img, y, x, h, w, oh, ow, type);
        assert.deepEqual([got.c, got.h, got.w], [img.c, oh, ow]);
        assert.deepEqual(got.data, want.data, `${[y, x, h, w, oh, ow]} ${type}`);
      }
    }
  }
  assert.throws(() => resizeRegion(randomImage(1, 10, 10), 5, 5, 6, 2, 4, 4), /not inside a 10x10 image/);
});

test("fused resized crop equals the composed steps: region resize, flip, lighting, normalisation, channels, erase", () => {
  const img = randomImage(1, 75, 100, 6);
  for (let v = 0; v < img.data.length; v++) img.data[v] = Math.max(1, img.data[v]);
  const cfg = { resizedCrop: {}, crop: 48, flip: true, lighting: 0.1, erase: 0.5, mean: [0.3], std: [0.35], channels: 3 };
  const t = compileTransforms(cfg);
  assert.deepEqual(t.outputShape(1, 75, 100), [3, 48, 48]);
  assert.deepEqual(structuredClone(cfg), cfg);
  let flips = 0;
  let erased = 0;
  for (let i = 0; i < 24; i++) {
    const p = t.params(1, 75, 100, sampleRng(1, 2, i));
    assert.ok(p.region);
    assert.deepEqual([p.resized, p.y, p.x], [[48, 48], 0, 0]);
    const got = transformImage(t, img, sampleRng(1, 2, i));
    let ref = resize(crop(img, p.region.y, p.region.x, p.region.h, p.region.w), 48, 48, "float32");
    if (p.flip) {
      ref = hflip(ref);
      flips++;
    }
    const f = new Float32Array(ref.data.length);
    for (let k = 0; k < f.length; k++) f[k] = (ref.data[k] / 255 + p.shift![0] - 0.3) / 0.35;
    const want = replicateChannels({ data: f, c: 1, h: 48, w: 48 }, 3);
    const e = p.erase;
    if (e) {
      erased++;
      for (let c = 0; c < 3; c++)
        for (let r = e.y; r < e.y + e.h; r++) want.data.fill(0, (c * 48 + r) * 48 + e.x, (c * 48 + r) * 48 + e.x + e.w);
    }
    for (let k = 0; k < want.data.length; k++) assert.ok(Math.abs(got.data[k] - want.data[k]) < 1e-5, `sample ${i} element ${k}`);
  }
  assert.ok(flips > 0 && flips < 24 && erased > 0 && erased < 24, `${flips} flips, ${erased} erased`);
  // The same key gives the same sample; other keys other crops.
  const run = (s: number, e: number, i: number) => transformImage(t, img, sampleRng(s, e, i)).data;
  assert.deepEqual(run(1, 2, 3), run(1, 2, 3));
  assert.notDeepEqual(run(1, 2, 3), run(1, 3, 3));
  // Without resizedCrop the parameters say so.
  assert.equal(compileTransforms({ crop: 8 }).params(1, 10, 10, sampleRng(0, 0, 0)).region, null);
});

test("resized crop through the loader's worker thread gives the batches built inline", async () => {
  const n = 12;
  const r = keyedRng(8, 1);
  const data = new Uint8Array(n * 3 * 40 * 60).map(() => r.int(256));
  const split = fullSplit("train", { kind: "array", data, n, c: 3, h: 40, w: 60, labels: new Int32Array(n) });
  const transforms = presetTransforms(
    { channels: 3, size: [40, 60], mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2] },
    { size: 32, resizedCrop: true, mean: IMAGENET_MEAN, std: IMAGENET_STD },
    true,
  );
  const batches: Float32Array[][] = [];
  for (const workers of [0, 1]) {
    const l = new BatchLoader(split, { batchSize: 5, seed: 3, transforms, workers });
    try {
      const got: Float32Array[] = [];
      for await (const b of l.epoch(1)) got.push(b.x);
      batches.push(got);
    } finally {
      await l.close();
    }
  }
  assert.equal(batches[0].length, 3);
  assert.deepEqual(batches[1], batches[0]);
});

/** A photo-like 500x375 RGB PNG: smooth gradients, texture, hard edges. */
async function writePhoto(file: string): Promise<void> {
  const [W, H] = [500, 375];
  const px = Buffer.alloc(W * H * 3);
  const r = keyedRng(11, 3);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const o = (y * W + x) * 3;
      const edge = ((x >> 5) + (y >> 5)) % 2 ? 60 : 0;
      px[o] = Math.min(255, Math.round(128 + 100 * Math.sin(x / 23) * Math.cos(y / 31)) + (r.int(40) - 20) + edge);
      px[o + 1] = Math.max(0, Math.min(255, Math.round((255 * x) / W) - edge + r.int(9)));
      px[o + 2] = (x * 7 + y * 13) % 256;
    }
  const sharp = await loadSharp();
  await sharp(px, { raw: { width: W, height: H, channels: 3 } })
    .png()
    .toFile(file);
}

test("resized crop + flip + normalisation, and the preset's evaluation, against torchvision on a PIL image", {
  skip: !torch && "needs /usr/bin/python3 with torch+torchvision",
  timeout: 120_000,
}, async (t) => {
  const dir = fs.mkdtempSync(join(tmpdir(), "vgg-rrc-"));
  try {
    const png = join(dir, "photo.png");
    await writePhoto(png);
    const img = await decodeImage(png, 3);
    const stats = { channels: 3, size: null, mean: [0.5, 0.5, 0.5], std: [0.3, 0.3, 0.3] };
    const opts: PresetOptions = { size: 224, resizedCrop: true, mean: IMAGENET_MEAN, std: IMAGENET_STD };
    const train = compileTransforms(presetTransforms(stats, opts, true));
    const evalT = compileTransforms(presetTransforms(stats, opts, false));
    const views: { region: Region | null; flip: boolean; file: string }[] = [];
    for (let i = 0; i < 16; i++) {
      const p = train.params(3, img.h, img.w, sampleRng(5, 0, i));
      const file = join(dir, `v${i}.npy`);
      writeNpy(file, { dtype: "float32", shape: [3, 224, 224], data: transformImage(train, img, sampleRng(5, 0, i)).data as Float32Array });
      views.push({ region: p.region, flip: p.flip, file });
    }
    const evalFile = join(dir, "eval.npy");
    writeNpy(evalFile, {
      dtype: "float32",
      shape: [3, 224, 224],
      data: transformImage(evalT, img, sampleRng(0, 0, 0)).data as Float32Array,
    });
    views.push({ region: null, flip: false, file: evalFile });
    // Differences in pixel levels: |ours - theirs| * std * 255.
    const py = `
import json, sys, numpy as np, torchvision.transforms as T, torchvision.transforms.functional as F
from PIL import Image
img = Image.open(${JSON.stringify(png)}).convert("RGB")
mean, std = ${JSON.stringify(IMAGENET_MEAN)}, ${JSON.stringify(IMAGENET_STD)}
post = T.Compose([T.ToTensor(), T.Normalize(mean, std)])
res = []
for v in json.load(sys.stdin):
    r = v["region"]
    if r is None:
        x = T.CenterCrop(224)(T.Resize(256)(img))
    else:
        x = F.resized_crop(img, r["y"], r["x"], r["h"], r["w"], [224, 224])
        if v["flip"]:
            x = F.hflip(x)
    d = np.abs(post(x).numpy() - np.load(v["file"])) * np.array(std)[:, None, None] * 255
    res.append([float(d.max()), float(d.mean()), float((d > 0.5).mean())])
print(json.dumps(res))
`;
    const res = JSON.parse(python(py, JSON.stringify(views))) as [number, number, number][];
    const train16 = res.slice(0, 16);
    const max = Math.max(...train16.map((r) => r[0]));
    const mean = train16.reduce((s, r) => s + r[1], 0) / 16;
    const share = train16.reduce((s, r) => s + r[2], 0) / 16;
    const [emax, emean] = res[16];
    t.diagnostic(
      `resized crop vs torchvision: max ${max.toFixed(3)}/255, mean ${mean.toFixed(4)}/255, ${(100 * share).toFixed(1)}% of values over half a level apart; evaluation max ${emax.toFixed(3)}/255, mean ${emean.toFixed(4)}/255`,
    );
    // PIL rounds to uint8 after each of its two passes and the pipeline keeps floats, so a value can be up to one
    // level away (at most 1/2 from each rounding), about a quarter level on average (uniform rounding errors).
    // The predict preset's test accepts 2 levels, for its JPEG decoding as well. Measured: max 1.000, mean 0.30.
    assert.ok(max <= 1 + 1e-3, `max difference ${max}/255`);
    assert.ok(mean < 0.4, `mean difference ${mean}/255`);
    assert.ok(emax <= 1 + 1e-3 && emean < 0.4, `evaluation: max ${emax}/255, mean ${emean}/255`);
    assert.ok(views.slice(0, 16).some((v) => v.flip) && views.slice(0, 16).some((v) => !v.flip));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("preset: torchvision's fine-tuning recipe with the weights' normalisation; defaults unchanged", () => {
  const photos = { channels: 3, size: null, mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2] };
  const opts: PresetOptions = { size: 224, resizedCrop: true, mean: IMAGENET_MEAN, std: IMAGENET_STD };
  assert.deepEqual(presetTransforms(photos, opts, true), {
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    resizedCrop: {},
    crop: 224,
    flip: true,
  });
  assert.deepEqual(presetTransforms(photos, opts, false), { mean: IMAGENET_MEAN, std: IMAGENET_STD, scale: 256, crop: 224 });
  // Ranges, flip off, explicit lighting and erasing, a test scale; grey data replicated to 3 channels.
  const grey = { channels: 1, size: null, mean: [0.45], std: [0.25] };
  const custom = {
    size: 224,
    channels: 3,
    resizedCrop: { scale: [0.25, 1] as [number, number] },
    flip: false,
    lighting: 0.1,
    erase: 0.25,
    testScale: 240,
  };
  assert.deepEqual(presetTransforms(grey, custom, true), {
    mean: [0.45],
    std: [0.25],
    channels: 3,
    resizedCrop: { scale: [0.25, 1] },
    crop: 224,
    flip: false,
    lighting: 0.1,
    erase: 0.25,
  });
  assert.deepEqual(presetTransforms(grey, custom, false), { mean: [0.45], std: [0.25], channels: 3, scale: 240, crop: 224 });
  // Small fixed-size data: the same recipe at its size; evaluation as before (the image as it is).
  const cifar = { channels: 3, size: [32, 32] as [number, number], mean: [0.49, 0.48, 0.45], std: [0.25, 0.24, 0.26] };
  assert.deepEqual(presetTransforms(cifar, { size: 32, resizedCrop: true }, true), {
    mean: cifar.mean,
    std: cifar.std,
    resizedCrop: {},
    crop: 32,
    flip: true,
  });
  assert.deepEqual(presetTransforms(cifar, { size: 32, resizedCrop: true }, false), { mean: cifar.mean, std: cifar.std });
  // The weights' mean/std without resizedCrop; "mean" mode takes the mean only.
  assert.deepEqual(presetTransforms(photos, { size: 224, mean: IMAGENET_MEAN, std: IMAGENET_STD }, true).mean, IMAGENET_MEAN);
  assert.deepEqual(presetTransforms(photos, { size: 224, mean: IMAGENET_MEAN, normalize: "mean" }, false), {
    mean: IMAGENET_MEAN,
    std: [1, 1, 1],
    scale: 256,
    crop: 224,
  });
  // Existing defaults: the paper's scale augmentation with lighting for photos, no resizedCrop anywhere.
  const plain = presetTransforms(photos, { size: 224 }, true);
  assert.deepEqual(plain, { mean: photos.mean, std: photos.std, scale: 256, crop: 224, randomCrop: true, flip: true, lighting: 0.1 });
  assert.equal(presetTransforms(photos, { size: 224, resizedCrop: false }, true).resizedCrop, undefined);
  for (const cfg of [presetTransforms(photos, opts, true), presetTransforms(grey, custom, true)]) {
    assert.deepEqual(structuredClone(cfg), cfg, "sent to loader workers as it is");
    compileTransforms(cfg);
  }
  // Bad statistics, one line each.
  for (const [o, re] of [
    [{ mean: IMAGENET_MEAN }, /give both mean and std/],
    [{ mean: [123.68, 116.78, 103.94], std: [58.4, 57.1, 57.4] }, /must be in \[0, 1\] units .*divide 0-255 values by 255/],
    [{ mean: [0.5], std: [0.2] }, /1 mean values for 3-channel data/],
    [{ mean: IMAGENET_MEAN, std: [0.2, 0, 0.2] }, /std .* must be in \[0, 1\] units and positive/],
    [{ mean: IMAGENET_MEAN, std: IMAGENET_STD, normalize: "none" }, /normalisation is off/],
  ] as [Partial<PresetOptions>, RegExp][]) {
    assert.throws(
      () => presetTransforms(photos, { size: 224, ...o }, true),
      (e: unknown) => e instanceof VggError && re.test(e.message) && !e.message.includes("\n"),
      JSON.stringify(o),
    );
  }
});

test("resizedCrop refuses the other geometric steps, in one line", () => {
  const bad: [object, RegExp][] = [
    [{ scale: 256 }, /resizedCrop cannot be combined with scale$/],
    [{ resize: 256 }, /with resize$/],
    [{ padTo: 256 }, /with padTo$/],
    [{ cropPadding: 4 }, /with cropPadding$/],
    [{ randomCrop: true }, /with randomCrop$/],
    [{ cropAt: [0, 0] }, /with cropAt$/],
    [{ scale: [256, 512], randomCrop: true }, /with scale, randomCrop$/],
  ];
  for (const [extra, re] of bad) {
    assert.throws(
      () => compileTransforms({ resizedCrop: {}, crop: 224, ...extra }),
      (e: unknown) => e instanceof VggError && re.test(e.message) && !e.message.includes("\n"),
      JSON.stringify(extra),
    );
  }
  assert.throws(() => compileTransforms({ resizedCrop: {} }), /resizedCrop needs a crop size/);
  assert.throws(() => compileTransforms({ resizedCrop: { scale: [1, 0.5] }, crop: 8 }), /invalid resizedCrop scale \[1,0.5\]/);
  assert.throws(() => compileTransforms({ resizedCrop: { ratio: [0, 1] }, crop: 8 }), /invalid resizedCrop ratio/);
  assert.throws(() => compileTransforms({ resizedCrop: true as unknown as object, crop: 8 }), /invalid resizedCrop true/);
  // Harmless spellings of "off" are accepted.
  compileTransforms({ resizedCrop: {}, crop: 224, randomCrop: false, cropPadding: 0, hflip: true });
});
