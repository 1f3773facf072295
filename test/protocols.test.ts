import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import type { Split } from "../src/data/dataset.js";
import { evaluateProtocol, GRID, parseScales, subsetSplit } from "../src/eval/protocols.js";
import { buildDenseGraph } from "../src/graph/dense.js";
import { Predictor } from "../src/predict/predictor.js";
import { keyedRng } from "../src/random.js";
import { compileSpec, openCompiled } from "../src/runtime/open-graph.js";
import { numel, type StateDict } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { writeSafetensors } from "../src/weights/safetensors.js";
import { buildModel, type ModelOptions } from "../src/zoo/model.js";
import { assertCleanError, pool, tmp, vgg, vggAsync } from "./helpers.js";

function randomInput(shape: number[], seed: number): Float32Array {
  const r = keyedRng(seed, 7);
  return Float32Array.from({ length: numel(shape) }, () => r.normal());
}

async function denseLogits(arch: string, o: ModelOptions, weights: StateDict, x: Float32Array, shape: number[]) {
  const m = buildModel(arch, o);
  const s = await openCompiled(compileSpec(buildDenseGraph(m, weights)));
  try {
    return (await s.run({ input: { dtype: "float32", shape, data: x } })).logits.data as Float32Array;
  } finally {
    await s.release();
  }
}

async function standardLogits(arch: string, o: ModelOptions, weights: StateDict, x: Float32Array, shape: number[]) {
  const p = await Predictor.fromWeights(buildModel(arch, o), weights);
  try {
    return (await p.run({ dtype: "float32", shape, data: x })).logits.data as Float32Array;
  } finally {
    await p.release();
  }
}

function assertClose(a: Float32Array, b: Float32Array, tol: number, what: string) {
  assert.equal(a.length, b.length, what);
  const scale = Math.max(1, ...Array.from(b, Math.abs));
  for (let k = 0; k < a.length; k++) assert.ok(Math.abs(a[k] - b[k]) <= tol * scale, `${what}: element ${k}: ${a[k]} vs ${b[k]}`);
}

test("dense: FC layers as convs equal the standard forward where the image gives the training-size map", async () => {
  // m = 1 (fc6 kernel summed over the copied 7x7), m = 2 (a general pool matrix), m = 7 (the paper's 7x7 conv).
  for (const [arch, size, wd] of [
    ["vgg11", 32, 8],
    ["vgg11_bn", 64, 8],
    ["vgg13", 224, 16],
  ] as const) {
    const o: ModelOptions = { inputSize: size, widthDivisor: wd, numClasses: 10, dropout: 0.5 };
    const w = initWeights(buildModel(arch, o), "torchvision", 3);
    const shape = [2, 3, size, size];
    const x = randomInput(shape, size);
    assertClose(await denseLogits(arch, o, w, x, shape), await standardLogits(arch, o, w, x, shape), 1e-4, `${arch} at ${size}`);
  }
});

test("dense: the compact head over a larger image is global pooling at that size", async () => {
  const o: ModelOptions = { inputSize: 32, widthDivisor: 8, numClasses: 7, head: "compact" };
  const w = initWeights(buildModel("vgg11_bn", o), "torchvision", 5);
  const shape = [3, 3, 64, 96];
  const x = randomInput(shape, 9);
  const dense = await denseLogits("vgg11_bn", o, w, x, shape);
  const p = await Predictor.fromWeights(buildModel("vgg11_bn", { ...o, inputSize: 64 }), w);
  // The standard graph is planned for square inputs: compare on a square image; the 64x96 run must be finite.
  const sq = [3, 3, 64, 64];
  const xs = randomInput(sq, 10);
  try {
    const want = (await p.run({ dtype: "float32", shape: sq, data: xs })).logits.data as Float32Array;
    assertClose(await denseLogits("vgg11_bn", o, w, xs, sq), want, 1e-4, "compact head at 64");
  } finally {
    await p.release();
  }
  assert.equal(dense.length, 3 * 7);
  assert.ok(dense.every(Number.isFinite));
});

function syntheticSplit(n: number, seed: number): Split {
  const r = keyedRng(seed, 1);
  const data = Uint8Array.from({ length: n * 28 * 28 }, () => r.int(256));
  const labels = Int32Array.from({ length: n }, (_, i) => i % 10);
  return {
    name: "test",
    source: { kind: "array", data, n, c: 1, h: 28, w: 28, labels },
    indices: Int32Array.from({ length: n }, (_, i) => i),
  };
}

test("protocols: single is the standard evaluation; multi-crop, multi-scale and dense+multicrop average what they should", async () => {
  const o: ModelOptions = { inputSize: 32, widthDivisor: 8, numClasses: 10, inChannels: 1, head: "paper" };
  const model = buildModel("vgg11_bn", o);
  const w = initWeights(model, "torchvision", 11);
  const split = syntheticSplit(24, 2);
  const po = { values: { mean: [0.5], std: [0.25] }, native: [28, 28] as [number, number], batchSize: 100 };
  const K = 10;
  const single = await evaluateProtocol(model, w, split, "single", [28], po);
  // The standard way: 28 padded to 32, normalised.
  const x = new Float32Array(24 * 32 * 32);
  const src = split.source as { data: Uint8Array };
  const flipped = new Float32Array(x.length);
  for (let s = 0; s < 24; s++)
    for (let y = 0; y < 28; y++)
      for (let c = 0; c < 28; c++) {
        const v = (src.data[s * 784 + y * 28 + c] / 255 - 0.5) / 0.25;
        x[s * 1024 + (y + 2) * 32 + c + 2] = v;
        flipped[s * 1024 + (y + 2) * 32 + (31 - (c + 2))] = v;
      }
  for (let k = 0; k < x.length; k++) {
    if (x[k] === 0 && (k % 1024 < 64 || k % 1024 >= 960 || k % 32 < 2 || k % 32 >= 30)) {
      x[k] = (0 - 0.5) / 0.25;
      flipped[k] = x[k];
    }
  }
  const softmax = (l: Float32Array) => {
    const out = new Float32Array(l.length);
    for (let r = 0; r < l.length / K; r++) {
      const row = l.subarray(r * K, (r + 1) * K);
      const mx = Math.max(...row);
      const e = Array.from(row, (v) => Math.exp(v - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let k = 0; k < K; k++) out[r * K + k] = e[k] / sum;
    }
    return out;
  };
  const p = await Predictor.fromWeights(model, w);
  let ref: Float32Array;
  let refFlip: Float32Array;
  try {
    ref = softmax((await p.run({ dtype: "float32", shape: [24, 1, 32, 32], data: x })).logits.data as Float32Array);
    refFlip = softmax((await p.run({ dtype: "float32", shape: [24, 1, 32, 32], data: flipped })).logits.data as Float32Array);
  } finally {
    await p.release();
  }
  assertClose(single.posteriors, ref, 1e-5, "single = standard forward");
  // At Q = 28 the canvas is exactly the input size: all 25 crops would coincide (multi-crop is refused there, see
  // protocols-native.test.ts), and dense, over the training-size map, is the mean of the image and its flip.
  const dense = await evaluateProtocol(model, w, split, "dense", [28], po);
  assertClose(
    dense.posteriors,
    ref.map((v, k) => (v + refFlip[k]) / 2),
    1e-4,
    "dense at the input size",
  );
  // Multi-scale: the mean of the single-scale posteriors.
  const d40 = await evaluateProtocol(model, w, split, "dense", [40], po);
  const both = await evaluateProtocol(model, w, split, "dense", [28, 40], po);
  assertClose(
    both.posteriors,
    dense.posteriors.map((v, k) => (v + d40.posteriors[k]) / 2),
    1e-5,
    "multi-scale",
  );
  const m40 = await evaluateProtocol(model, w, split, "multicrop", [40], po);
  const dm = await evaluateProtocol(model, w, split, "dense+multicrop", [40], po);
  assertClose(
    dm.posteriors,
    d40.posteriors.map((v, k) => (v + m40.posteriors[k]) / 2),
    1e-5,
    "dense+multicrop",
  );
  assert.ok(!m40.posteriors.every((v, k) => Math.abs(v - d40.posteriors[k]) < 1e-6), "at 40 the crops differ from the dense view");
  for (const r of [single, dense, both, dm]) {
    assert.equal(r.n, 24);
    assert.ok(r.top1 >= 0 && r.top1 <= 1 && r.top5 >= r.top1);
    assert.equal(r.top1Error, 1 - r.top1);
  }
});

test("scales: absolute, relative to S, Smin/Smid/Smax; bad ones rejected", () => {
  const t = { S: 32, Smin: 32, Smax: 48 };
  assert.deepEqual(parseScales("256,384,512", t), [256, 384, 512]);
  assert.deepEqual(parseScales("S-4,S,S+4", t), [28, 32, 36]);
  assert.deepEqual(parseScales("Smin,Smid,Smax", t), [32, 40, 48]);
  assert.throws(() => parseScales("S*2", t), /--scales/);
  assert.throws(() => parseScales("S-40", t), /not a positive size/);
  assert.equal(GRID.length, 5);
  const s = syntheticSplit(50, 1);
  const sub = subsetSplit(s, 10, 3);
  assert.equal(sub.indices.length, 10);
  assert.deepEqual(sub.indices, subsetSplit(s, 10, 3).indices);
  assert.ok(sub.indices.every((v, k) => k === 0 || v > sub.indices[k - 1]));
});

test("vgg eval --protocol on a folder of differently sized images (ImageNet layout), JSON out", { timeout: 120_000 }, async () => {
  const dir = tmp("vgg-protocols-");
  try {
    const r = keyedRng(4, 4);
    let k = 0;
    for (const split of ["train", "val"])
      for (const cls of ["cat", "dog"])
        for (let j = 0; j < 3; j++) {
          const [w, h] = [40 + 7 * k, 36 + 5 * (k % 3)];
          k++;
          fs.mkdirSync(join(dir, split, cls), { recursive: true });
          const px = Buffer.from(Uint8Array.from({ length: w * h * 3 }, () => r.int(256)));
          await sharp(px, { raw: { width: w, height: h, channels: 3 } })
            .png()
            .toFile(join(dir, split, cls, `${j}.png`));
        }
    const o: ModelOptions = { inputSize: 32, widthDivisor: 16, numClasses: 2 };
    const wfile = join(dir, "w.safetensors");
    writeSafetensors(wfile, initWeights(buildModel("vgg11", o), "torchvision", 1));
    const base = ["eval", "--weights", wfile, "--arch", "vgg11", "--width-divisor", "16", "--num-classes", "2", "--input-size", "32"];
    const runs = await pool(
      ["single", "dense", "multicrop", "dense+multicrop"].map(
        (p) => () => vggAsync([...base, "--data", `folder:${dir}`, "--protocol", p, "--scales", "36,48", "--json"]),
      ),
    );
    for (const [i, p] of ["single", "dense", "multicrop", "dense+multicrop"].entries()) {
      assert.equal(runs[i].status, 0, runs[i].stderr);
      const j = JSON.parse(runs[i].stdout);
      assert.equal(j.protocol, p);
      assert.deepEqual(j.scales, [36, 48]);
      assert.equal(j.n, 6);
      for (const key of ["top1", "top5", "top1Error", "top5Error", "loss"]) assert.ok(Number.isFinite(j[key]), key);
      assert.equal(j.top5, 1, "two classes: the true one is always in the top 5");
    }
    assertCleanError(vgg([...base, "--data", `folder:${dir}`, "--protocol", "dense", "--scales", "S*2"]), /--scales/);
    assertCleanError(vgg([...base, "--data", `folder:${dir}`, "--protocol", "dense", "--precision", "int8"]), /fp32 only/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
