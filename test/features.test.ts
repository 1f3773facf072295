/** Taps' feature info, `vgg features` end to end, and `vgg distance` against LPIPS's formula computed by PyTorch. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { lpipsPreprocessing, presetPreprocessing } from "../src/data/preprocessing.js";
import { layerDistance } from "../src/features/distance.js";
import { poolMaps } from "../src/features/extract.js";
import { writeNpy } from "../src/io/npy.js";
import { loadImage } from "../src/predict/preprocess.js";
import { readSafetensorsFile, writeSafetensors } from "../src/weights/safetensors.js";
import { featureInfo, trunkAt } from "../src/zoo/features.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, hasTorch, relErr, tmp, vgg, vggAsync } from "./helpers.js";

const dir = tmp("vgg-features-");
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));

/** A seeded photo-like RGB image: waves, a disc whose place depends on the seed, noise. */
function photo(w: number, h: number, seed: number): Buffer {
  const b = Buffer.alloc(w * h * 3);
  let s = seed;
  const rnd = () => {
    s = (Math.imul(s, 1103515245) + 12345) & 0x7fffffff;
    return s / 0x7fffffff;
  };
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      b[i] = Math.min(255, Math.max(0, 128 + 100 * Math.sin((x + seed) / 7) + 40 * rnd() - 20));
      b[i + 1] = Math.hypot(x - (seed % w), y - 0.4 * h) < 0.3 * h ? 220 : Math.floor((y * 200) / h + 30 * rnd());
      b[i + 2] = (x ^ y) & 8 ? 200 : 40;
    }
  return b;
}

async function png(file: string, w: number, h: number, seed: number): Promise<string> {
  await sharp(photo(w, h, seed), { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

const folder = join(dir, "imgs");
fs.mkdirSync(folder);
const ready = (async () => {
  await png(join(folder, "a.png"), 80, 60, 11);
  await png(join(folder, "b.png"), 64, 64, 23);
  await png(join(folder, "c.png"), 50, 90, 37);
  fs.writeFileSync(join(folder, "d.png"), "not a png");
  await png(join(dir, "x.png"), 72, 56, 5);
  await png(join(dir, "y.png"), 72, 56, 41);
  await png(join(dir, "square.png"), 56, 56, 5);
})();

test("featureInfo: vgg16's taps at 224 and at 100 (channels, stride, size, torchvision module)", () => {
  const at224 = featureInfo(buildModel("vgg16"));
  const byName = (fs_: typeof at224, n: string) => fs_.find((f) => f.name === n);
  assert.deepEqual(byName(at224, "relu4_3"), { name: "relu4_3", channels: 512, stride: 8, size: [28, 28], layer: "features.22" });
  assert.deepEqual(byName(at224, "relu1_2"), { name: "relu1_2", channels: 64, stride: 1, size: [224, 224], layer: "features.3" });
  assert.deepEqual(byName(at224, "pool5"), { name: "pool5", channels: 512, stride: 32, size: [7, 7], layer: "features.30" });
  assert.deepEqual(byName(at224, "fc7"), { name: "fc7", channels: 4096, stride: null, size: null, layer: "classifier.4" });
  assert.deepEqual(byName(at224, "logits"), { name: "logits", channels: 1000, stride: null, size: null, layer: "classifier.6" });
  assert.equal(at224.length, 21);
  // LPIPS's slices end at torchvision indices 3, 8, 15, 22, 29.
  const lpips = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"].map((n) => byName(at224, n)?.layer);
  assert.deepEqual(lpips, ["features.3", "features.8", "features.15", "features.22", "features.29"]);

  const at100 = featureInfo(buildModel("vgg16", { inputSize: 100 }));
  // Floor mode: 100 -> 50 -> 25 -> 12 -> 6 -> 3.
  assert.deepEqual(byName(at100, "relu4_3"), { name: "relu4_3", channels: 512, stride: 8, size: [12, 12], layer: "features.22" });
  assert.deepEqual(byName(at100, "pool5")?.size, [3, 3]);
  const bn = featureInfo(buildModel("vgg11_bn", { widthDivisor: 16, inputSize: 64 }));
  assert.deepEqual(byName(bn, "relu3_2"), { name: "relu3_2", channels: 16, stride: 4, size: [16, 16], layer: "features.13" });
});

test("trunkAt: the conv trunk re-planned for a non-square input, up to the last tap; too small an input is refused", () => {
  const m = buildModel("vgg16");
  const t = trunkAt(m, ["relu2_2", "relu5_3"], 40, 72);
  assert.deepEqual(t.inputShape, [3, 40, 72]);
  assert.equal(t.layers.at(-1)?.tap, "relu5_3");
  assert.deepEqual(t.layers.at(-1)?.outShape, [512, 2, 4]);
  assert.throws(() => trunkAt(m, ["fc6"], 40, 72), /'fc6' is not a feature map/);
  assert.throws(() => trunkAt(m, ["relu5_3"], 8, 72), /8x72 input is too small/);
});

test("pooling and the LPIPS layer term on small hand-made tensors", () => {
  const t = { dtype: "float32" as const, shape: [1, 2, 1, 3], data: Float32Array.from([1, 2, 6, -1, -5, 0]) };
  assert.deepEqual([...poolMaps(t, "avg").data], [3, -2]);
  assert.deepEqual([...poolMaps(t, "max").data], [6, 0]);
  assert.equal(poolMaps(t, "none"), t);
  // Two positions, two channels: a = (3, 4), (1, 0); b = (4, 3), (0, 1). Unit vectors differ by (-.2, .2) and (1, -1).
  const a = Float32Array.from([3, 1, 4, 0]);
  const b = Float32Array.from([4, 0, 3, 1]);
  assert.ok(Math.abs(layerDistance(a, b, 2) - (0.08 + 2) / 2) < 1e-6);
  assert.ok(Math.abs(layerDistance(a, b, 2, Float32Array.from([0.5, 2])) - (0.5 * 1.04 + 2 * 1.04) / 2) < 1e-6);
  assert.equal(layerDistance(a, a, 2), 0);
});

test("LPIPS preprocessing: [0, 1] -> [-1, 1], then (x - shift) / scale, at the image's own size", async () => {
  await ready;
  const img = await loadImage(join(dir, "x.png"), lpipsPreprocessing());
  assert.deepEqual([img.c, img.h, img.w], [3, 56, 72]);
  const raw = await sharp(join(dir, "x.png")).removeAlpha().raw().toBuffer();
  const shift = [-0.03, -0.088, -0.188];
  const scale = [0.458, 0.448, 0.45];
  for (const [y, x] of [
    [0, 0],
    [17, 40],
    [55, 71],
  ])
    for (let c = 0; c < 3; c++) {
      const want = ((raw[(y * 72 + x) * 3 + c] / 255) * 2 - 1 - shift[c]) / scale[c];
      assert.ok(Math.abs(img.data[c * 56 * 72 + y * 72 + x] - want) < 1e-5);
    }
});

const MODEL = ["--arch", "vgg11", "--width-divisor", "16", "--head", "compact", "--num-classes", "10", "--seed", "3", "--input-size", "64"];

test("vgg features: a folder of PNGs, --pool avg/max/none shapes and values, names in the metadata, a .npy gives the same", async () => {
  await ready;
  const out = (p: string) => join(dir, `f-${p}.safetensors`);
  const run = (p: string) =>
    vggAsync(["features", ...MODEL, "--tap", "relu3_2,pool5", "--pool", p, "--batch-size", "2", folder, "--out", out(p)]);
  const rs = await Promise.all(["avg", "max", "none"].map(run));
  for (const r of rs) {
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /skipped .*d\.png: cannot decode image/);
  }
  const [avg, max, none] = ["avg", "max", "none"].map((p) => readSafetensorsFile(out(p)));
  const names = ["a.png", "b.png", "c.png"].map((f) => join(folder, f));
  for (const [f, pool] of [
    [avg, "avg"],
    [max, "max"],
    [none, "none"],
  ] as const) {
    assert.deepEqual(JSON.parse(f.metadata.files), names);
    assert.deepEqual(JSON.parse(f.metadata.taps), ["relu3_2", "pool5"]);
    assert.equal(f.metadata.pool, pool);
    assert.equal(f.metadata.arch, "vgg11");
    assert.deepEqual([...f.tensors.keys()], ["relu3_2", "pool5"]);
  }
  assert.deepEqual(avg.tensors.get("relu3_2")?.shape, [3, 16]);
  assert.deepEqual(max.tensors.get("pool5")?.shape, [3, 32]);
  assert.deepEqual(none.tensors.get("relu3_2")?.shape, [3, 16, 16, 16]);
  assert.deepEqual(none.tensors.get("pool5")?.shape, [3, 32, 2, 2]);
  // The pooled files are the maps pooled.
  const maps = none.tensors.get("relu3_2");
  assert.ok(maps);
  assert.ok(relErr(poolMaps(maps, "avg").data as Float32Array, avg.tensors.get("relu3_2")?.data as Float32Array) < 1e-6);
  assert.ok(relErr(poolMaps(maps, "max").data as Float32Array, max.tensors.get("relu3_2")?.data as Float32Array) < 1e-6);

  // The same images preprocessed here and given as one .npy.
  const p = presetPreprocessing("torchvision", 64);
  const x = new Float32Array(3 * 3 * 64 * 64);
  for (const [i, f] of names.entries()) x.set((await loadImage(f, p)).data as Float32Array, i * 3 * 64 * 64);
  const npy = join(dir, "batch.npy");
  writeNpy(npy, { dtype: "float32", shape: [3, 3, 64, 64], data: x });
  const r = await vggAsync(["features", ...MODEL.slice(0, -2), "--tap", "pool5", "--pool", "none", npy, "--out", out("npy")]);
  assert.equal(r.status, 0, r.stderr);
  const fromNpy = readSafetensorsFile(out("npy"));
  assert.deepEqual(
    JSON.parse(fromNpy.metadata.files),
    [0, 1, 2].map((i) => `${npy}[${i}]`),
  );
  assert.ok(relErr(fromNpy.tensors.get("pool5")?.data as Float32Array, none.tensors.get("pool5")?.data as Float32Array) < 1e-5);
});

test("vgg features: one-line errors (unknown tap, bad --pool, nothing readable), and a failed run leaves the output as it was", async () => {
  await ready;
  const out = join(dir, "keep.safetensors");
  const good = vgg(["features", ...MODEL, "--tap", "pool5", join(folder, "a.png"), "--out", out]);
  assert.equal(good.status, 0, good.stderr);
  const before = fs.readFileSync(out);
  const npy = join(dir, "one.npy");
  writeNpy(npy, { dtype: "float32", shape: [1, 3, 64, 64], data: new Float32Array(3 * 64 * 64) });
  const [tap, pool, bad, dirOut, presetNpy, caffe] = await Promise.all([
    vggAsync(["features", ...MODEL, "--tap", "relu9_9", folder, "--out", out]),
    vggAsync(["features", ...MODEL, "--tap", "pool5", "--pool", "mean", folder, "--out", out]),
    vggAsync(["features", ...MODEL, "--tap", "pool5", join(folder, "d.png"), "--out", out]),
    vggAsync(["features", ...MODEL, "--tap", "pool5", folder, "--out", folder]),
    vggAsync(["features", ...MODEL, "--tap", "pool5", "--preset", "caffe", npy, "--out", out]),
    vggAsync([
      "features",
      ...MODEL,
      "--tap",
      "pool5",
      "--preset",
      "caffe",
      "--threads",
      "1",
      join(folder, "b.png"),
      "--out",
      join(dir, "caffe.safetensors"),
    ]),
  ]);
  assertCleanError(tap, /unknown tap 'relu9_9' for vgg11/);
  assertCleanError(pool, /--pool.*mean.*avg, max, none/);
  assertCleanError(bad, /d\.png: cannot decode image/);
  assertCleanError(dirOut, /imgs: is a directory/);
  assertCleanError(presetNpy, /one\.npy: --preset is for image inputs/);
  assert.equal(caffe.status, 0, caffe.stderr);
  assert.equal(readSafetensorsFile(join(dir, "caffe.safetensors")).metadata.preprocessing, "caffe");
  assert.deepEqual(fs.readFileSync(out), before);
});

/**
 * LPIPS's formula in PyTorch (lpips/lpips.py, LPIPS.forward with normalize=True, version 0.1, and
 * lpips/pretrained_networks.py's vgg16 slices) on a torchvision VGG16 layout at width /16 with random weights,
 * and random lin weights saved as LPIPS's state_dict keys. Prints the unit-weight and the lin-weighted results.
 */
const LPIPS_TORCH = `
import sys, json, torch, torch.nn as nn, numpy as np
from PIL import Image
from torchvision.models.vgg import VGG, make_layers
torch.manual_seed(0)
w_path, lin_path, a_path, b_path = sys.argv[1:5]
cfg = [4, 4, "M", 8, 8, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32, "M"]
m = VGG(make_layers(cfg), num_classes=10, init_weights=True)
m.classifier[0] = nn.Linear(32 * 7 * 7, 256); m.classifier[3] = nn.Linear(256, 256); m.classifier[6] = nn.Linear(256, 10)
for mod in m.features:
    if isinstance(mod, nn.Conv2d): mod.bias.data.uniform_(-0.1, 0.1)
torch.save(m.state_dict(), w_path)
class NetLinLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, stride=1, padding=0, bias=False))
chns = [4, 8, 16, 32, 32]
lins = nn.Module()
for k, c in enumerate(chns):
    setattr(lins, "lin%d" % k, NetLinLayer(c))
    getattr(lins, "lin%d" % k).model[1].weight.data.uniform_(0, 1)
torch.save(lins.state_dict(), lin_path)
m.eval()
def load(p):
    x = torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    x = 2 * x - 1
    shift = torch.Tensor([-.030, -.088, -.188])[None, :, None, None]
    scale = torch.Tensor([.458, .448, .450])[None, :, None, None]
    return (x - shift) / scale
def taps(x):
    out, h = [], x
    for lo, hi in [(0, 4), (4, 9), (9, 16), (16, 23), (23, 30)]:
        for i in range(lo, hi): h = m.features[i](h)
        out.append(h)
    return out
def normalize_tensor(f, eps=1e-10):
    return f / (torch.sqrt(torch.sum(f ** 2, dim=1, keepdim=True)) + eps)
with torch.no_grad():
    fa, fb = taps(load(a_path)), taps(load(b_path))
    res = {"unit": [], "lpips": []}
    for k in range(5):
        d = (normalize_tensor(fa[k]) - normalize_tensor(fb[k])) ** 2
        res["unit"].append(d.sum(dim=1, keepdim=True).mean([2, 3]).item())
        res["lpips"].append(getattr(lins, "lin%d" % k).model[1](d).mean([2, 3]).item())
print(json.dumps(res))
`;

test("vgg distance equals LPIPS's formula in PyTorch (same vgg16 weights, unit and learned lin weights, 72x56 PNGs)", {
  skip: !hasTorch() && "needs /usr/bin/python3 with torch+torchvision",
  timeout: 120_000,
}, async () => {
  await ready;
  const [w, lin] = [join(dir, "vgg16-d16.pth"), join(dir, "lin.pth")];
  const [a, b] = [join(dir, "x.png"), join(dir, "y.png")];
  const py = spawnSync("/usr/bin/python3", ["-c", LPIPS_TORCH, w, lin, a, b], { encoding: "utf8" });
  assert.equal(py.status, 0, py.stderr);
  const ref = JSON.parse(py.stdout) as { unit: number[]; lpips: number[] };
  const model = ["--arch", "vgg16", "--width-divisor", "16", "--num-classes", "10", "--weights", w, "--json"];
  const [unit, learned] = await Promise.all([
    vggAsync(["distance", a, b, ...model]),
    vggAsync(["distance", a, b, ...model, "--lpips-weights", lin]),
  ]);
  for (const [r, want] of [
    [unit, ref.unit],
    [learned, ref.lpips],
  ] as const) {
    assert.equal(r.status, 0, r.stderr);
    const got = JSON.parse(r.stdout) as { distance: number; layers: Record<string, number> };
    const total = want.reduce((s, v) => s + v, 0);
    assert.ok(Math.abs(got.distance - total) / total <= 1e-4, `distance ${got.distance} vs torch ${total}`);
    Object.values(got.layers).forEach((v, k) => {
      assert.ok(Math.abs(v - want[k]) / want[k] <= 1e-4, `layer ${k}: ${v} vs torch ${want[k]}`);
    });
  }
});

test("vgg distance: one-line errors (sizes differ, unknown layer, a bad --lpips-weights file), 0 for an image and itself", async () => {
  await ready;
  const [a, b, sq] = [join(dir, "x.png"), join(dir, "y.png"), join(dir, "square.png")];
  const small = ["--width-divisor", "16", "--num-classes", "10"];
  const wrongShape = join(dir, "wrong-lin.pth");
  const py = `
import sys, torch
torch.save({"lin%d.model.1.weight" % k: torch.ones(1, c, 1, 1) for k, c in enumerate([4, 8, 16, 64, 32])}, sys.argv[1])
`;
  const torch = hasTorch() && spawnSync("/usr/bin/python3", ["-c", py, wrongShape], { encoding: "utf8" }).status === 0;
  const wrongKeys = join(dir, "not-lpips.safetensors");
  writeSafetensors(wrongKeys, new Map([["features.0.weight", { dtype: "float32", shape: [1, 4, 1, 1], data: new Float32Array(4) }]]));
  const runs = await Promise.all([
    vggAsync(["distance", a, sq, ...small]),
    vggAsync(["distance", a, b, ...small, "--layers", "relu1_2,relu6_1"]),
    vggAsync(["distance", a, b, ...small, "--lpips-weights", join(folder, "d.png")]),
    vggAsync(["distance", a, a, ...small, "--threads", "1"]),
    vggAsync(["distance", a, b, ...small, "--lpips-weights", wrongKeys]),
    ...(torch ? [vggAsync(["distance", a, b, ...small, "--lpips-weights", wrongShape])] : []),
  ]);
  assertCleanError(runs[0], /x\.png is 72x56 but .*square\.png is 56x56/);
  assertCleanError(runs[1], /unknown tap 'relu6_1' for vgg16/);
  assertCleanError(runs[2], /d\.png: not a weights file: unknown weights format/);
  assert.equal(runs[3].status, 0, runs[3].stderr);
  assert.equal(Number(runs[3].stdout.trim()), 0);
  assertCleanError(runs[4], /not-lpips\.safetensors: no 'lin0\.model\.1\.weight' for relu1_2/);
  if (torch) assertCleanError(runs[5], /wrong-lin\.pth: 'lin3\.model\.1\.weight' has shape \[1, 64, 1, 1\]; relu4_3 has 32 channels/);
});
