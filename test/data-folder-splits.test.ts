/**
 * folder:DIR follows torchvision's ImageFolder convention: train/ trains, val/ is the validation split as it stands
 * (nothing held out of train/), test/ the test split when present. `vgg train` and `vgg eval` say which directory
 * feeds which split; small images of one size set the default input (at least 32), as the --input-size help says.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { splitLabels } from "../src/data/dataset.js";
import { openDataset } from "../src/data/spec.js";
import { VggError } from "../src/errors.js";
import { readSafetensorsFile, writeSafetensors } from "../src/weights/safetensors.js";
import { assertCleanError, type RunResult, tmp, vggAsync } from "./helpers.js";

const root = tmp("vgg-folder-splits-");
process.on("exit", () => fs.rmSync(root, { recursive: true, force: true }));

async function png(file: string, w: number, h: number, seed: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7 + seed * 31) % 256;
  await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
}

/** DIR/SPLIT/CLASS/k.png: `counts[split]` = images per class (cat, dog); `size(k)` gives each image's [w, h]. */
async function tree(dir: string, counts: Record<string, [number, number]>, size: (k: number) => [number, number] = () => [28, 28]) {
  let k = 0;
  for (const [split, perClass] of Object.entries(counts))
    for (const [c, cls] of ["cat", "dog"].entries())
      for (let j = 0; j < perClass[c]; j++) {
        const [w, h] = size(k);
        await png(path.join(dir, split, cls, `${j}.png`), w, h, k++);
      }
  return dir;
}

const TINY = ["--arch", "vgg11_bn", "--head", "compact", "--width-divisor", "16", "--steps", "1", "--epochs", "1"];
const trainArgs = (data: string, out: string) => [
  "train",
  ...TINY,
  "--batch-size",
  "4",
  "--no-progress",
  "--data",
  `folder:${data}`,
  "--out",
  out,
];

function ok(r: RunResult, what: string): RunResult {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  return r;
}

test("folder with train/ and val/: val/ is the validation split, nothing held out of train/, no test split", async () => {
  const dir = await tree(path.join(root, "tv"), { train: [5, 4], val: [2, 1] });
  const ds = await openDataset(`folder:${dir}`, { cacheDir: null });
  assert.equal(ds.splits.train.indices.length, 9);
  assert.equal(ds.splits.val!.indices.length, 3);
  assert.equal(
    ds.splits.val!.source.kind === "files" && ds.splits.val!.source.files.every((f) => f.includes(`${path.sep}val${path.sep}`)),
    true,
  );
  assert.deepEqual([...splitLabels(ds.splits.val!)], [0, 0, 1]);
  assert.equal(ds.splits.test, null);
  assert.deepEqual(ds.dirs, { train: path.join(dir, "train"), val: path.join(dir, "val"), test: null });
  // --val 0 asks for nothing held out: compatible with val/. A count or fraction would be a second validation set.
  assert.equal((await openDataset(`folder:${dir}`, { val: 0, cacheDir: null })).splits.val!.indices.length, 3);
  for (const val of [2, 0.1])
    await assert.rejects(
      openDataset(`folder:${dir}`, { val, cacheDir: null }),
      (e: unknown) => e instanceof VggError && e.file === path.join(dir, "val") && /validation split already.*drop --val/.test(e.message),
    );
});

test("folder with train/, val/ and test/: all three; with train/ and test/ only, val is held out of train/", async () => {
  const dir = await tree(path.join(root, "tvt"), { train: [5, 4], val: [2, 1], test: [3, 3] });
  const ds = await openDataset(`folder:${dir}`, { cacheDir: null });
  assert.deepEqual(
    [ds.splits.train, ds.splits.val, ds.splits.test].map((s) => s?.indices.length),
    [9, 3, 6],
  );
  assert.deepEqual([...splitLabels(ds.splits.test!)], [0, 0, 0, 1, 1, 1]);
  assert.ok(ds.files.some((f) => f.includes(`${path.sep}test${path.sep}`)));

  const noVal = await tree(path.join(root, "tt"), { train: [5, 5], test: [1, 1] });
  const held = await openDataset(`folder:${noVal}`, { val: 2, cacheDir: null });
  assert.deepEqual(
    [held.splits.train, held.splits.val, held.splits.test].map((s) => s?.indices.length),
    [8, 2, 2],
  );
  assert.equal(held.dirs?.val, null);
});

// One tiny run on 28x28 PNGs in train/ and val/, shared by the tests below.
const smallDir = path.join(root, "small");
const smallRun = (async () => {
  await tree(smallDir, { train: [5, 4], val: [2, 1] });
  return vggAsync(trainArgs(smallDir, path.join(root, "run-small")));
})();

test("vgg train says which directory feeds which split", async () => {
  const r = ok(await smallRun, "vgg train");
  const lines = r.stdout.split("\n");
  const data = lines.find((l) => l.startsWith("data folder:"));
  assert.equal(
    data,
    `data folder:${smallDir}: train <- ${path.join(smallDir, "train")} (9 images), val <- ${path.join(smallDir, "val")} (3), test: none`,
    r.stdout,
  );
  assert.ok(lines.indexOf(data as string) < 3, "among the first lines");
  assert.doesNotMatch(r.stdout, /^test \(/m, "no test split is scored");
});

test("vgg eval --split val on folder data scores val/; no test/: the default is val/, --split test says why not", async () => {
  ok(await smallRun, "vgg train");
  const w = path.join(root, "run-small", "best.safetensors");
  const data = `folder:${smallDir}`;
  const [val, dflt, json, noTest] = await Promise.all([
    vggAsync(["eval", "--weights", w, "--data", data, "--split", "val"]),
    vggAsync(["eval", "--weights", w, "--data", data]),
    vggAsync(["eval", "--weights", w, "--data", data, "--split", "val", "--json"]),
    vggAsync(["eval", "--weights", w, "--data", data, "--split", "test"]),
  ]);
  ok(val, "eval --split val");
  assert.match(
    val.stdout.split("\n")[0],
    new RegExp(`^data ${data}: train <- .*, val <- ${path.join(smallDir, "val")} \\(3\\), test: none; scoring val$`),
  );
  assert.match(val.stdout, /val \(3 images\): top-1/);
  assert.match(ok(dflt, "eval").stdout, /val \(3 images\): top-1/);
  const j = JSON.parse(ok(json, "eval --json").stdout);
  assert.equal(j.split, "val");
  assert.equal(j.n, 3);
  assertCleanError(noTest, new RegExp(`no test split \\(no ${path.join(smallDir, "test")} folder\\)`));
});

test("28x28 PNGs in a folder train at input 32 (padded, as Fashion-MNIST); mixed or large sizes at 224", async () => {
  const r = ok(await smallRun, "vgg train");
  assert.match(r.stdout, /^vgg11_bn: .*input 3x32x32,/m);
  assert.match(r.stdout, /"padTo":32/, "28x28 images are padded to 32, not rescaled to 256");
  const ds = await openDataset(`folder:${smallDir}`, { cacheDir: null });
  assert.deepEqual(ds.size, [28, 28]);

  // One image of another size, in val/ only, makes the size variable.
  const mixed = await tree(path.join(root, "mixed"), { train: [4, 4], val: [1, 1] }, (k) => (k === 9 ? [30, 28] : [28, 28]));
  assert.equal((await openDataset(`folder:${mixed}`, { cacheDir: null })).size, null);
  // Images of one size as large as ImageNet's input are still photos: the ImageNet recipe.
  const large = await tree(path.join(root, "large"), { train: [1, 1], val: [1, 1] }, () => [224, 224]);
  assert.equal((await openDataset(`folder:${large}`, { cacheDir: null })).size, null);
  const m = ok(await vggAsync(trainArgs(mixed, path.join(root, "run-mixed")), { timeout: 300_000 }), "vgg train (mixed)");
  assert.match(m.stdout, /^vgg11_bn: .*input 3x224x224,/m);
});

test("a class in val/ or test/ that train/ lacks: one-line error naming the class and the folder", async () => {
  const dir = await tree(path.join(root, "extra"), { train: [2, 2], val: [1, 1] });
  await png(path.join(dir, "val", "fish", "0.png"), 28, 28, 99);
  assertCleanError(await vggAsync(trainArgs(dir, path.join(root, "run-extra"))), new RegExp(`${path.join(dir, "val")}: .*'fish'`));
  fs.rmSync(path.join(dir, "val", "fish"), { recursive: true });
  await tree(dir, { test: [1, 0] });
  assertCleanError(
    await vggAsync(trainArgs(dir, path.join(root, "run-extra2"))),
    new RegExp(`${path.join(dir, "test")}: class folder missing: 'dog'`),
  );
});

test("--resume of a folder run started under the old split rule (val/ as test) is refused; a current run resumes", async () => {
  ok(await smallRun, "vgg train");
  const now = path.join(root, "resume-now");
  const old = path.join(root, "resume-old");
  fs.cpSync(path.join(root, "run-small"), now, { recursive: true });
  fs.cpSync(path.join(root, "run-small"), old, { recursive: true });
  ok(await vggAsync(["train", "--out", now, "--resume", "--steps", "2", "--epochs", "2", "--no-progress"]), "resume");
  // The old rule's runs saved no folderLayout in their args.
  const optim = path.join(old, "last.optim.safetensors");
  const f = readSafetensorsFile(optim);
  const state = JSON.parse(f.metadata.state ?? "{}") as { args: Record<string, unknown> };
  delete state.args.folderLayout;
  writeSafetensors(optim, f.tensors, { ...f.metadata, state: JSON.stringify(state) });
  assertCleanError(
    await vggAsync(["train", "--out", old, "--resume", "--steps", "2", "--epochs", "2"]),
    /this folder run was started when val\/ was its test split/,
  );
});
