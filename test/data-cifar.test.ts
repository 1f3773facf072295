import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { CIFAR10_CLASSES, CIFAR10_TEST_FILE, CIFAR10_TRAIN_FILES, encodeCifarBatch, readCifarBatch } from "../src/data/cifar.js";
import { splitImage, splitLabels } from "../src/data/dataset.js";
import { openDataset } from "../src/data/spec.js";
import { VggError } from "../src/errors.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vgg-cifar-"));
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));

/** Record r of batch b: pixel (c, y, x) = (b * 7 + r + c * 50 + y + x) mod 256, label (b + r) mod 10. */
function batch(b: number, n: number): { images: Uint8Array; labels: Uint8Array } {
  const images = new Uint8Array(n * 3072);
  const labels = new Uint8Array(n);
  for (let r = 0; r < n; r++) {
    labels[r] = (b + r) % 10;
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) images[r * 3072 + c * 1024 + y * 32 + x] = (b * 7 + r + c * 50 + y + x) % 256;
  }
  return { images, labels };
}

function makeCifar(d: string, perBatch: number, meta: boolean): void {
  fs.mkdirSync(d, { recursive: true });
  CIFAR10_TRAIN_FILES.forEach((f, b) => {
    const { images, labels } = batch(b, perBatch);
    fs.writeFileSync(path.join(d, f), encodeCifarBatch(images, labels));
  });
  const t = batch(9, perBatch);
  fs.writeFileSync(path.join(d, CIFAR10_TEST_FILE), encodeCifarBatch(t.images, t.labels));
  if (meta) fs.writeFileSync(path.join(d, "batches.meta.txt"), `${["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"].join("\n")}\n\n`);
}

test("CIFAR-10 batch: records split into CHW images and labels", () => {
  const { images, labels } = batch(2, 5);
  const f = path.join(dir, "one.bin");
  fs.writeFileSync(f, encodeCifarBatch(images, labels));
  const r = readCifarBatch(f);
  assert.equal(r.count, 5);
  assert.deepEqual(r.images, images);
  assert.deepEqual(r.labels, labels);
  // The file keeps the label byte before each record.
  assert.equal(fs.readFileSync(f)[3073], labels[1]);
});

test("CIFAR-10 bad files", () => {
  const { images, labels } = batch(0, 2);
  const good = encodeCifarBatch(images, labels);
  const cut = path.join(dir, "cut.bin");
  fs.writeFileSync(cut, good.subarray(0, 5000));
  assert.throws(
    () => readCifarBatch(cut),
    (e: unknown) => e instanceof VggError && e.file === cut && /5000 bytes is not a whole number of 3073-byte/.test(e.message),
  );
  const c100 = path.join(dir, "c100.bin");
  fs.writeFileSync(c100, new Uint8Array(3074 * 2));
  assert.throws(() => readCifarBatch(c100), /looks like CIFAR-100/);
  const bad = Buffer.from(good);
  bad[3073] = 10;
  const badf = path.join(dir, "badlabel.bin");
  fs.writeFileSync(badf, bad);
  assert.throws(() => readCifarBatch(badf), /record 1 has label 10/);
});

test("cifar10 spec: train = batches 1-5 minus held-out val, test = test_batch, meta class names", async () => {
  const d = path.join(dir, "c10");
  makeCifar(d, 4, true);
  const ds = await openDataset(`cifar10:${d}`, { val: 5, seed: 1 });
  assert.deepEqual(ds.classes, ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]);
  assert.deepEqual([ds.channels, ...ds.size!], [3, 32, 32]);
  assert.equal(ds.splits.train.indices.length, 15);
  assert.equal(ds.splits.val!.indices.length, 5);
  assert.equal(ds.splits.test!.indices.length, 4);
  // Source index 9 is batch 2 (0-based), record 1.
  const k = [...ds.splits.train.indices, ...ds.splits.val!.indices].indexOf(9);
  const split = k < 15 ? ds.splits.train : ds.splits.val!;
  const pos = k < 15 ? k : k - 15;
  const img = await splitImage(split, pos);
  assert.deepEqual([img.c, img.h, img.w], [3, 32, 32]);
  assert.equal(img.data[1024 + 3 * 32 + 4], (2 * 7 + 1 + 50 + 3 + 4) % 256);
  assert.equal(splitLabels(split)[pos], 3);
  assert.ok(ds.splits.train.source.kind === "array" && ds.splits.train.source.data.buffer instanceof SharedArrayBuffer);
  assert.equal(ds.mean.length, 3);
  assert.ok(ds.mean[1] > ds.mean[0]);

  // Without batches.meta.txt the standard names; inside the archive's folder name too.
  const nested = path.join(dir, "plain");
  makeCifar(path.join(nested, "cifar-10-batches-bin"), 2, false);
  const plain = await openDataset(`cifar10:${nested}`, { val: 0.25 });
  assert.deepEqual(plain.classes, CIFAR10_CLASSES);
  assert.equal(plain.splits.val!.indices.length, 3);

  fs.rmSync(path.join(d, "data_batch_4.bin"));
  await assert.rejects(openDataset(`cifar10:${d}`), /missing data_batch_4\.bin/);
});
