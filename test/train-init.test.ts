/**
 * `vgg train --init`: every scheme, a weights file, and fine-tuning from a torch-saved vgg11_bn with 1000 classes to
 * 10 classes on npy data that holds only some of them (the last FC re-initialised, everything else loaded).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import type { Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { readPth } from "../src/weights/pth.js";
import { readSafetensors, writeSafetensors } from "../src/weights/safetensors.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, hasTorch, relErr, tmp, toyData, vgg, vggAsync } from "./helpers.js";

const SMALL = ["--arch", "vgg11_bn", "--width-divisor", "16", "--batch-size", "8", "--no-progress", "--val", "0"];

function f32(t: Tensor | undefined): Float32Array {
  assert.ok(t, "tensor missing");
  return t.data as Float32Array;
}

function std(a: Float32Array): number {
  const m = a.reduce((s, v) => s + v, 0) / a.length;
  return Math.sqrt(a.reduce((s, v) => s + (v - m) ** 2, 0) / a.length);
}

test("--init paper, glorot and torchvision give their schemes' statistics (lr 1e-30 keeps the start)", async () => {
  const dir = tmp();
  const data = `npy:${toyData(dir, 16, 1)}`;
  const runs = ["paper", "glorot", "torchvision"].map((init) =>
    vggAsync([
      "train",
      ...SMALL,
      "--data",
      data,
      "--init",
      init,
      "--lr",
      "1e-30",
      "--steps",
      "1",
      "--epochs",
      "1",
      "--out",
      join(dir, init),
    ]),
  );
  const results = await Promise.all(runs);
  for (const r of results) assert.equal(r.status, 0, r.stderr);
  const w = (init: string) => readSafetensors(join(dir, init, "last.safetensors"));
  // conv2 (features.4, 4 -> 8 channels, 3x3) and fc6 (classifier.0).
  const paper = w("paper");
  assert.ok(Math.abs(std(f32(paper.get("features.4.weight"))) - 0.01) < 0.002);
  assert.ok(f32(paper.get("features.4.bias")).every((v) => Math.abs(v) < 1e-20));
  const glorot = f32(w("glorot").get("classifier.0.weight"));
  const shape = w("glorot").get("classifier.0.weight")?.shape as number[];
  const bound = Math.sqrt(6 / (shape[0] + shape[1]));
  const maxAbs = glorot.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.ok(maxAbs <= bound && maxAbs > 0.9 * bound, `${maxAbs} vs bound ${bound}`);
  // torchvision: Kaiming normal, fan_out: std sqrt(2 / (8 * 9)).
  assert.ok(Math.abs(std(f32(w("torchvision").get("features.4.weight"))) - Math.sqrt(2 / 72)) < 0.03);
  assert.match(results[0].stdout, /init paper/);
});

test("--init FILE: a checkpoint of the same model starts the run from its weights", () => {
  const dir = tmp();
  const data = `npy:${toyData(dir, 16, 2)}`;
  const a = join(dir, "a");
  let r = vgg(["train", ...SMALL, "--data", data, "--steps", "2", "--epochs", "1", "--out", a]);
  assert.equal(r.status, 0, r.stderr);
  const b = join(dir, "b");
  r = vgg([
    "train",
    ...SMALL,
    "--data",
    data,
    "--init",
    join(a, "last.safetensors"),
    "--lr",
    "1e-30",
    "--steps",
    "1",
    "--epochs",
    "1",
    "--out",
    b,
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /loaded \d+ tensors; nothing re-initialised/);
  const wa = readSafetensors(join(a, "last.safetensors"));
  const wb = readSafetensors(join(b, "last.safetensors"));
  for (const k of ["features.0.weight", "classifier.6.weight"]) assert.ok(relErr(f32(wb.get(k)), f32(wa.get(k))) < 1e-6, k);
});

test("--num-classes above the labels' range is allowed (a subset need not hold every class), below it is refused", () => {
  const dir = tmp();
  const data = `npy:${toyData(dir, 16, 3)}`; // labels 0-3
  const out = join(dir, "r");
  const r = vgg(["train", ...SMALL, "--data", data, "--num-classes", "10", "--steps", "1", "--epochs", "1", "--out", out]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(readSafetensors(join(out, "last.safetensors")).get("classifier.6.bias")?.shape, [10]);
  assertCleanError(
    vgg(["train", ...SMALL, "--data", data, "--num-classes", "3", "--steps", "1", "--out", join(dir, "s")]),
    /--num-classes 3 but the data has 4 classes/,
  );
});

test("bad --init values are one-line errors", () => {
  const dir = tmp();
  const data = `npy:${toyData(dir, 16, 4)}`;
  assertCleanError(vgg(["train", ...SMALL, "--data", data, "--init", join(dir, "nope.pth"), "--out", join(dir, "a")]), /nope\.pth/);
  assertCleanError(
    vgg(["train", ...SMALL, "--data", data, "--init", "imagenet", "--arch", "vgg11_lrn", "--out", join(dir, "b")]),
    /vgg11_lrn/,
  );
});

/** torchvision's VGG layout (features.N, classifier.0/3/6) at width /16, 1000 classes, saved by torch.save. */
const SAVE_VGG11_BN = `
import sys, torch, torch.nn as nn
from torchvision.models.vgg import VGG, make_layers
torch.manual_seed(0)
cfg = [4, "M", 8, "M", 16, 16, "M", 32, 32, "M", 32, 32, "M"]
m = VGG(make_layers(cfg, batch_norm=True), num_classes=1000, init_weights=True)
m.classifier[0] = nn.Linear(32 * 7 * 7, 256); m.classifier[3] = nn.Linear(256, 256); m.classifier[6] = nn.Linear(256, 1000)
for mod in m.modules():
    if isinstance(mod, nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.1, 0.1); mod.running_var.uniform_(0.5, 1.5); mod.weight.data.uniform_(0.5, 1.5)
torch.save(m.state_dict(), sys.argv[1])
`;

test("fine-tuning a torch-saved vgg11_bn with 1000 classes on 10 classes: all loaded but the last FC", {
  skip: !hasTorch() && "needs torch",
}, () => {
  const dir = tmp();
  const pth = join(dir, "vgg11_bn_1000.pth");
  const py = spawnSync("/usr/bin/python3", ["-c", SAVE_VGG11_BN, pth], { encoding: "utf8" });
  assert.equal(py.status, 0, py.stderr);
  const data = `npy:${toyData(dir, 16, 5)}`; // 4 of the 10 classes
  const out = join(dir, "ft");
  // --lr 1e-30: the checkpoint after one step is the starting point to float32 precision (BN statistics move).
  const r = vgg([
    "train",
    ...SMALL,
    "--data",
    data,
    "--num-classes",
    "10",
    "--init",
    pth,
    "--lr",
    "1e-30",
    "--steps",
    "1",
    "--epochs",
    "1",
    "--out",
    out,
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /loaded 60 tensors; re-initialised classifier\.6\.weight \[10, 256\] \(\[1000, 256\] in the file, \[10, 256\] here\), classifier\.6\.bias \[10\]/,
  );
  const src = readPth(pth);
  const got = readSafetensors(join(out, "last.safetensors"));
  for (const k of ["features.0.weight", "features.1.weight", "features.25.weight", "classifier.0.weight", "classifier.3.bias"])
    assert.ok(relErr(f32(got.get(k)), f32(src.get(k))) < 1e-6, k);
  assert.deepEqual(got.get("classifier.6.weight")?.shape, [10, 256]);
  // A mismatch anywhere but the last FC is still an error naming the key.
  assertCleanError(
    vgg(["train", ...SMALL, "--width-divisor", "8", "--data", data, "--init", pth, "--out", join(dir, "bad")]),
    /key 'features\.0\.weight' has shape \[4, 3, 3, 3\]/,
  );
});

test("fine-tuning on folder data: RandomResizedCrop for photos of varying size, the small-image crop for one small size", async () => {
  const dir = tmp();
  const w = join(dir, "w.safetensors");
  writeSafetensors(w, initWeights(buildModel("vgg11_bn", { widthDivisor: 16, numClasses: 2 }), "torchvision", 1));
  const make = async (root: string, size: (i: number) => [number, number]) => {
    for (const split of ["train", "val"])
      for (const c of ["a", "b"]) {
        mkdirSync(join(root, split, c), { recursive: true });
        for (let i = 0; i < 4; i++) {
          const [h, wd] = size(i);
          await sharp(Buffer.alloc(h * wd * 3, 40 + 50 * i), { raw: { width: wd, height: h, channels: 3 } })
            .png()
            .toFile(join(root, split, c, `${i}.png`));
        }
      }
  };
  await make(join(dir, "small"), () => [28, 28]);
  await make(join(dir, "photos"), (i) => [40 + 8 * i, 48]);
  const run = (data: string, out: string) =>
    vggAsync([
      "train",
      ...SMALL,
      "--data",
      `folder:${join(dir, data)}`,
      "--init",
      w,
      "--steps",
      "1",
      "--epochs",
      "1",
      "--out",
      join(dir, out),
    ]);
  const [small, photos] = await Promise.all([run("small", "r1"), run("photos", "r2")]);
  assert.equal(small.status, 0, small.stderr);
  assert.equal(photos.status, 0, photos.stderr);
  const aug = (s: string) => /^augmentation (.*)$/m.exec(s)?.[1] ?? "";
  assert.match(aug(small.stdout), /"cropPadding":4/);
  assert.doesNotMatch(aug(small.stdout), /resizedCrop/);
  assert.match(aug(photos.stdout), /"resizedCrop":\{/);
  assert.match(photos.stdout, /normalisation ImageNet's \(torchvision\) mean\/std/);
});
