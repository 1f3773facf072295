import assert from "node:assert/strict";
import { test } from "node:test";
import { adaptiveMatrix } from "../src/ops/adaptive-pool.js";
import { ARCHS } from "../src/zoo/configs.js";
import { buildModel, macCount, paramCount, stateSpec, tapNames } from "../src/zoo/model.js";

// DESIGN.md's table (torchvision's counts for A/B/D/E; C and A-LRN built the same way).
const PARAMS: Record<string, number> = {
  vgg11: 132_863_336,
  vgg11_bn: 132_868_840,
  vgg11_lrn: 132_863_336,
  vgg11_lrn_bn: 132_868_840,
  vgg13: 133_047_848,
  vgg13_bn: 133_053_736,
  vgg16_1x1: 133_638_952,
  vgg16_1x1_bn: 133_647_400,
  vgg16: 138_357_544,
  vgg16_bn: 138_365_992,
  vgg19: 143_667_240,
  vgg19_bn: 143_678_248,
};

test("all twelve models have the paper's parameter counts", () => {
  assert.deepEqual(ARCHS.map((a) => a.name).sort(), Object.keys(PARAMS).sort());
  for (const a of ARCHS) assert.equal(paramCount(buildModel(a.name)), PARAMS[a.name], a.name);
});

test("vgg16_bn with 4 classes has the seed's 134,285,380 parameters", () => {
  assert.equal(paramCount(buildModel("vgg16_bn", { numClasses: 4 })), 134_285_380);
});

test("GFLOPs at 224 match torchvision's 7.61 / 11.31 / 15.47 / 19.63", () => {
  const g = (a: string) => Number((macCount(buildModel(a)) / 1e9).toFixed(2));
  assert.deepEqual(["vgg11", "vgg13", "vgg16", "vgg19"].map(g), [7.61, 11.31, 15.47, 19.63]);
});

test("keys follow torchvision: vgg16_bn features/classifier indices", () => {
  const keys = stateSpec(buildModel("vgg16_bn")).map((e) => e.key);
  assert.equal(keys[0], "features.0.weight");
  assert.ok(keys.includes("features.1.running_var"));
  assert.ok(keys.includes("features.41.num_batches_tracked"));
  assert.deepEqual(keys.slice(-2), ["classifier.6.weight", "classifier.6.bias"]);
  // A-LRN: LRN sits after the first ReLU, shifting later indices by one.
  const lrn = buildModel("vgg11_lrn").layers;
  assert.deepEqual(
    lrn.slice(0, 4).map((l) => l.kind),
    ["conv", "relu", "lrn", "maxpool"],
  );
  assert.deepEqual(lrn[2].attrs, { size: 5, alpha: 1e-4, beta: 0.75, k: 2 });
});

test("config C uses 1x1 convolutions in blocks 3-5", () => {
  const convs = buildModel("vgg16_1x1").layers.filter((l) => l.kind === "conv");
  assert.deepEqual(
    convs.map((l) => (l.attrs as { kernel: number }).kernel),
    [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1],
  );
});

test("taps carry the paper's names", () => {
  const t = tapNames(buildModel("vgg19"));
  for (const n of ["relu1_1", "relu1_2", "relu3_4", "relu5_4", "pool1", "pool5", "fc6", "fc7", "logits"]) assert.ok(t.includes(n), n);
  assert.ok(!t.includes("relu5_5"));
  assert.deepEqual(tapNames(buildModel("vgg11", { head: "compact" })).slice(-2), ["pool5", "logits"]);
});

test("options: compact head, width divisor, input channels, custom config", () => {
  const m = buildModel("vgg11_bn", { head: "compact", numClasses: 10, inChannels: 1, widthDivisor: 8, inputSize: 32 });
  const last = m.layers[m.layers.length - 1];
  assert.deepEqual(last.params[0].shape, [10, 64]);
  assert.deepEqual(m.layers[0].params[0].shape, [8, 1, 3, 3]);
  const c = buildModel("custom", { config: [16, "M", "conv1-8", "M"], inputSize: 32, head: "compact", numClasses: 3 });
  assert.equal(c.minInputSize, 4);
  assert.deepEqual(
    c.layers.filter((l) => l.kind === "conv").map((l) => l.outShape),
    [
      [16, 32, 32],
      [8, 16, 16],
    ],
  );
});

test("input sizes: final map per size, and the minimum is refused below 32", () => {
  for (const [s, f] of [
    [32, 1],
    [100, 3],
    [224, 7],
    [257, 8],
  ]) {
    const m = buildModel("vgg16", { inputSize: s });
    assert.deepEqual(m.layers.find((l) => l.tap === "pool5")?.outShape, [512, f, f]);
  }
  assert.throws(() => buildModel("vgg16", { inputSize: 31 }), /input size 31 is under the minimum 32/);
  assert.throws(() => buildModel("vgg17"), /unknown arch 'vgg17'/);
});

test("adaptive pool matrix: torchvision's bins [floor(jL/n), ceil((j+1)L/n))", () => {
  // L = 3, n = 7: bins overlap and repeat, as torchvision does for small maps.
  const m = adaptiveMatrix(3, 7);
  const rows = Array.from({ length: 7 }, (_, j) => Array.from(m.subarray(j * 3, j * 3 + 3)));
  assert.deepEqual(rows[0], [1, 0, 0]);
  assert.deepEqual(rows[3], [0, 1, 0]);
  assert.deepEqual(rows[6], [0, 0, 1]);
  assert.ok(Math.abs(rows[2][0] - 0.5) < 1e-7 && Math.abs(rows[2][1] - 0.5) < 1e-7);
  // Every row averages: sums to 1.
  for (const r of rows) assert.ok(Math.abs(r.reduce((a, b) => a + b, 0) - 1) < 1e-6);
});
