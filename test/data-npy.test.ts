import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { splitImage } from "../src/data/dataset.js";
import { openDataset, parseDataSpec } from "../src/data/spec.js";
import { VggError } from "../src/errors.js";
import { writeNpy } from "../src/io/npy.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vgg-npy-"));
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
const p = (f: string) => path.join(dir, f);

test("data spec parsing", () => {
  assert.deepEqual(parseDataSpec("fashion-mnist"), { kind: "fashion-mnist", dir: "/usr/share/datasets/fashion-mnist" });
  assert.deepEqual(parseDataSpec("fashion-mnist:/d"), { kind: "fashion-mnist", dir: "/d" });
  assert.deepEqual(parseDataSpec("cifar10:/c"), { kind: "cifar10", dir: "/c" });
  assert.deepEqual(parseDataSpec("folder:/f"), { kind: "folder", dir: "/f" });
  assert.deepEqual(parseDataSpec("npy:a.npy,b.npy"), { kind: "npy", x: "a.npy", y: "b.npy" });
  assert.deepEqual(parseDataSpec("npy:a.npy,b.npy;c.npy,d.npy"), { kind: "npy", x: "a.npy", y: "b.npy", testX: "c.npy", testY: "d.npy" });
  for (const bad of ["mnist", "cifar10", "folder:", "npy:a.npy", "npy:a,b;c", "npy:a,b;c,d;e,f", ""]) {
    assert.throws(
      () => parseDataSpec(bad),
      (e: unknown) => e instanceof VggError && !e.message.includes("\n"),
      bad,
    );
  }
});

test("npy spec: float32 NCHW with int64 labels and a test pair", async () => {
  const n = 20;
  const x = new Float32Array(n * 3 * 4 * 5).map((_, i) => (i % 7) / 7);
  writeNpy(p("x.npy"), { dtype: "float32", shape: [n, 3, 4, 5], data: x });
  writeNpy(p("y.npy"), { dtype: "int64", shape: [n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 4)) });
  writeNpy(p("xt.npy"), { dtype: "float32", shape: [6, 3, 4, 5], data: x.subarray(0, 6 * 60) });
  writeNpy(p("yt.npy"), { dtype: "int32", shape: [6], data: Int32Array.from([0, 1, 2, 3, 4, 0]) });
  const ds = await openDataset(`npy:${p("x.npy")},${p("y.npy")};${p("xt.npy")},${p("yt.npy")}`);
  assert.equal(ds.kind, "npy");
  assert.deepEqual(ds.classes, ["0", "1", "2", "3", "4"]);
  assert.deepEqual([ds.channels, ...ds.size!], [3, 4, 5]);
  assert.equal(ds.splits.val!.indices.length, 2);
  assert.equal(ds.splits.train.indices.length, 18);
  assert.equal(ds.splits.test!.indices.length, 6);
  const img = await splitImage(ds.splits.test!, 1);
  assert.ok(img.data instanceof Float32Array);
  assert.deepEqual([...img.data.subarray(0, 3)], [...x.subarray(60, 63)]);
  // Without a test pair there is no test split: only the held-out val.
  const noTest = await openDataset(`npy:${p("x.npy")},${p("y.npy")}`, { val: 0.25 });
  assert.equal(noTest.splits.test, null);
  assert.equal(noTest.splits.val!.indices.length, 5);
});

test("npy spec: uint8 NHW is one channel; bad arrays are reported", async () => {
  writeNpy(p("u8.npy"), { dtype: "uint8", shape: [10, 6, 6], data: new Uint8Array(360).fill(51) });
  writeNpy(p("l32.npy"), { dtype: "int32", shape: [10], data: new Int32Array(10) });
  const ds = await openDataset(`npy:${p("u8.npy")},${p("l32.npy")}`, { val: 0 });
  assert.equal(ds.channels, 1);
  assert.ok(Math.abs(ds.mean[0] - 0.2) < 1e-9 && ds.std[0] < 1e-6);

  writeNpy(p("f64.npy"), { dtype: "float64", shape: [10, 6, 6], data: new Float64Array(360) });
  await assert.rejects(openDataset(`npy:${p("f64.npy")},${p("l32.npy")}`), /must be float32 or uint8, not float64/);
  writeNpy(p("nhwc.npy"), { dtype: "uint8", shape: [10, 32, 32, 3], data: new Uint8Array(10 * 3072) });
  await assert.rejects(openDataset(`npy:${p("nhwc.npy")},${p("l32.npy")}`), /look NHWC/);
  writeNpy(p("l9.npy"), { dtype: "int32", shape: [9], data: new Int32Array(9) });
  await assert.rejects(openDataset(`npy:${p("u8.npy")},${p("l9.npy")}`), /9 labels for 10 images/);
  writeNpy(p("lneg.npy"), { dtype: "int64", shape: [10], data: new BigInt64Array(10).fill(-1n) });
  await assert.rejects(openDataset(`npy:${p("u8.npy")},${p("lneg.npy")}`), /label -1 at index 0/);
  writeNpy(p("lf.npy"), { dtype: "float32", shape: [10], data: new Float32Array(10) });
  await assert.rejects(openDataset(`npy:${p("u8.npy")},${p("lf.npy")}`), /int64 or int32, not float32/);
  const nan = new Float32Array(360);
  nan[7] = Number.NaN;
  writeNpy(p("nan.npy"), { dtype: "float32", shape: [10, 6, 6], data: nan });
  await assert.rejects(openDataset(`npy:${p("nan.npy")},${p("l32.npy")}`), /NaN at flat index 7 is not finite/);
  await assert.rejects(
    openDataset(`npy:${p("missing.npy")},${p("l32.npy")}`),
    (e: unknown) => e instanceof VggError && e.file === p("missing.npy"),
  );
});
