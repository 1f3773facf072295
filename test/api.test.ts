/**
 * The one-call library API, as README's "Library" section shows it: createModel (by file, URL or checkpoint;
 * classify files, bytes, folders and tensors; features; featureInfo) and train.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { createModel, featureInfo, Predictor, train, writeSafetensors } from "../src/index.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { tmp, toyData } from "./helpers.js";

const SMALL = { widthDivisor: 16, numClasses: 10, inputSize: 32 } as const;

async function png(file: string, seed: number): Promise<string> {
  const px = Buffer.alloc(40 * 48 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 31 + seed * 97) % 251;
  await sharp(px, { raw: { width: 48, height: 40, channels: 3 } })
    .png()
    .toFile(file);
  return file;
}

/** A vgg11 at width /16 with 10 classes, as a safetensors file with torchvision's key names. */
function weightsFile(dir: string, name = "w.safetensors"): string {
  const m = buildModel("vgg11", SMALL);
  const file = join(dir, name);
  writeSafetensors(file, initWeights(m, "torchvision", 7));
  return file;
}

test("createModel: classify a file, its bytes, a folder and a tensor; features; featureInfo", async () => {
  const dir = tmp();
  const w = weightsFile(dir);
  mkdirSync(join(dir, "photos"));
  const a = await png(join(dir, "photos", "a.png"), 1);
  await png(join(dir, "photos", "b.png"), 2);
  const model = await createModel("vgg11", { ...SMALL, weights: w, labels: "abcdefghij".split("") });
  try {
    const top = await model.classify(a, { top: 3 });
    assert.equal(top.length, 3);
    assert.ok(top[0].probability >= top[1].probability && "abcdefghij".includes(top[0].label));
    const fromBytes = await model.classify(readFileSync(a), { top: 3 });
    assert.deepEqual(fromBytes, top);
    const folder = await model.classify([join(dir, "photos")]);
    assert.equal(folder.length, 2);
    assert.deepEqual(folder[0].slice(0, 3), top);
    await assert.rejects(model.classify(join(dir, "photos")), /is a directory: pass \[dir\]/);
    // The same numbers as a Predictor over the same weights and a preprocessed batch.
    const x = { dtype: "float32" as const, shape: [2, 3, 32, 32], data: new Float32Array(2 * 3 * 32 * 32).fill(0.5) };
    const viaModel = await model.run(x);
    const p = await Predictor.create("vgg11", { ...SMALL, weights: w });
    assert.deepEqual(viaModel.logits.data, (await p.run(x)).logits.data);
    await p.release();
    assert.equal((await model.classify(x)).length, 2);

    const f = await model.features([a], ["relu2_1", "relu4_2"], { pool: "avg" });
    assert.deepEqual(f.features.relu2_1.shape, [1, 8]);
    assert.deepEqual(f.features.relu4_2.shape, [1, 32]);
    const info = Object.fromEntries(model.featureInfo.map((i) => [i.name, i]));
    assert.deepEqual([info.relu4_2.channels, info.relu4_2.stride, info.relu4_2.size], [32, 8, [4, 4]]);
    assert.deepEqual(featureInfo(model.model), model.featureInfo);
  } finally {
    await model.release();
  }
});

test("createModel: weights by URL (hash-checked into VGG_HOME), numClasses re-initialises the last FC", async () => {
  const dir = tmp();
  const bytes = readFileSync(weightsFile(dir));
  const name = `tiny-${createHash("sha256").update(bytes).digest("hex").slice(0, 8)}.safetensors`;
  const server = http.createServer((req, res) => {
    if (req.url !== `/${name}`) return void res.writeHead(404).end();
    res.writeHead(200, { "content-length": bytes.length }).end(bytes);
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const home = process.env.VGG_HOME;
  process.env.VGG_HOME = join(dir, "home");
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/${name}`;
    const lines: string[] = [];
    const m = await createModel("vgg11", { ...SMALL, numClasses: 4, weights: url, log: (l) => lines.push(l) });
    assert.equal(m.model.options.numClasses, 4);
    assert.ok(
      lines.some((l) => /classifier\.6\.weight re-initialised/.test(l)),
      lines.join("\n"),
    );
    assert.deepEqual(readFileSync(join(dir, "home", "weights", name)), bytes);
    await m.release();
  } finally {
    if (home === undefined) delete process.env.VGG_HOME;
    else process.env.VGG_HOME = home;
    server.close();
  }
});

test("train(): one call with the CLI's defaults; createModel then reads the checkpoint's own description", async () => {
  const dir = tmp();
  const data = `npy:${toyData(dir, 32, 9)}`;
  const out = join(dir, "run");
  const r = await train({ arch: "vgg11_bn", head: "compact", widthDivisor: 16, data, out, epochs: 1, batchSize: 16, val: 0 });
  assert.equal(r.epochs.length, 1);
  assert.match(r.weights, /best\.safetensors$/);
  const m = await createModel(undefined, { weights: r.weights });
  assert.equal(m.arch, "vgg11_bn");
  assert.deepEqual(m.labels, ["0", "1", "2", "3"]);
  assert.equal(m.preprocessing.name, "checkpoint");
  await m.release();
});

test("createModel with features-only weights (NaN classifier): features work, classify is refused in one line", async () => {
  const dir = tmp();
  const m = buildModel("vgg11", SMALL);
  const sd = initWeights(m, "torchvision", 7);
  for (const [k, t] of sd) if (k.startsWith("classifier")) (t.data as Float32Array).fill(Number.NaN);
  const file = join(dir, "features-only.safetensors");
  writeSafetensors(file, sd);
  const a = await png(join(dir, "a.png"), 3);
  const net = await createModel("vgg11", { ...SMALL, weights: file });
  try {
    const f = await net.features([a], ["relu3_2"], { pool: "max" });
    assert.deepEqual(f.features.relu3_2.shape, [1, 16]);
    await assert.rejects(net.classify(a), /all NaN: these are features-only weights/);
  } finally {
    await net.release();
  }
});
