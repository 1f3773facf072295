import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type ArraySource, holdOut, type Split } from "../src/data/dataset.js";
import { type Batch, BatchLoader, type LoaderOptions } from "../src/data/loader.js";
import { VggError } from "../src/errors.js";
import { keyedRng } from "../src/random.js";

const N = 1000;

/** Image i is constant i (float32), so a batch tells which samples it holds. */
function idSource(): ArraySource {
  const data = new Float32Array(N * 16);
  for (let i = 0; i < N; i++) data.fill(i, i * 16, (i + 1) * 16);
  return { kind: "array", data, n: N, c: 1, h: 4, w: 4, labels: Int32Array.from({ length: N }, (_, i) => i % 10) };
}

function randomSource(n: number): ArraySource {
  const r = keyedRng(5, 77);
  const data = new Uint8Array(n * 28 * 28).map(() => r.int(256));
  return { kind: "array", data, n, c: 1, h: 28, w: 28, labels: Int32Array.from({ length: n }, (_, i) => i % 10) };
}

async function collect(it: AsyncIterable<Batch>): Promise<Batch[]> {
  const out: Batch[] = [];
  for await (const b of it) out.push(b);
  return out;
}

const ids = (b: Batch, per = 16) => Array.from({ length: b.n }, (_, k) => b.x[k * per]);

async function withLoader<T>(split: Split, opts: LoaderOptions, fn: (l: BatchLoader) => Promise<T>): Promise<T> {
  const l = new BatchLoader(split, opts);
  try {
    return await fn(l);
  } finally {
    await l.close();
  }
}

test("every sample once per epoch; order fixed by seed and epoch; labels int64", async () => {
  const { train } = holdOut(idSource(), 100, 1);
  await withLoader(train, { batchSize: 64, seed: 7 }, async (l) => {
    assert.equal(l.batchesPerEpoch, 15);
    const e0 = await collect(l.epoch(0));
    assert.deepEqual(
      e0.map((b) => b.n),
      [...new Array(14).fill(64), 900 - 14 * 64],
    );
    const seen = e0.flatMap((b) => ids(b));
    assert.deepEqual(
      [...seen].sort((a, b) => a - b),
      [...train.indices],
    );
    for (const b of e0) {
      assert.ok(b.y instanceof BigInt64Array);
      assert.deepEqual(
        [...b.y],
        ids(b).map((id) => BigInt(id % 10)),
      );
      assert.deepEqual(b.shape, [b.n, 1, 4, 4]);
    }
    assert.deepEqual(e0[14].next, { epoch: 1, batch: 0 });
    assert.deepEqual(e0[3].next, { epoch: 0, batch: 4 });
    const e1 = await collect(l.epoch(1));
    assert.notDeepEqual(
      e1.flatMap((b) => ids(b)),
      seen,
    );
    const again = await collect(l.epoch(0));
    assert.deepEqual(
      again.flatMap((b) => ids(b)),
      seen,
    );
  });
  await withLoader(train, { batchSize: 64, seed: 7, workers: 2 }, async (l) => {
    assert.deepEqual(
      (await collect(l.epoch(0))).flatMap((b) => ids(b)),
      [...(await orderOf(train, 7, 0))],
    );
  });
  await withLoader(train, { batchSize: 64, seed: 8 }, async (l) => {
    assert.notDeepEqual(
      (await collect(l.epoch(0))).flatMap((b) => ids(b)),
      [...(await orderOf(train, 7, 0))],
    );
  });
  await withLoader(train, { batchSize: 100, shuffle: false, dropLast: true, workers: 0 }, async (l) => {
    const bs = await collect(l.epoch(3));
    assert.equal(bs.length, 9);
    assert.deepEqual(
      bs.flatMap((b) => ids(b)),
      [...train.indices],
    );
  });
});

async function orderOf(split: Split, seed: number, epoch: number): Promise<number[]> {
  const l = new BatchLoader(split, { batchSize: 64, seed, workers: 0 });
  return (await collect(l.epoch(epoch))).flatMap((b) => ids(b));
}

test("resume from (epoch, batch) gives the same remaining batches, augmentation included", async () => {
  const src = randomSource(300);
  const { train } = holdOut(src, 30, 0);
  const transforms = {
    padTo: 32,
    cropPadding: 4,
    crop: 32,
    randomCrop: true,
    flip: true,
    lighting: 0.1,
    mean: [0.5],
    std: [0.25],
    channels: 3,
  };
  const opts = { batchSize: 32, seed: 11, transforms };
  const full = await withLoader(train, opts, async (l) => collect(l.batches({ epoch: 2, batch: 0 }, 2)));
  assert.equal(full.length, 18);
  assert.deepEqual(full[8].next, { epoch: 3, batch: 0 });
  // A fresh loader (as after a restart) from the middle of epoch 2, on two workers.
  const resumed = await withLoader(train, { ...opts, workers: 2 }, async (l) => collect(l.batches(full[4].next, 2)));
  assert.equal(resumed.length, 13);
  for (let k = 0; k < resumed.length; k++) {
    const a = full[5 + k];
    const b = resumed[k];
    assert.deepEqual([b.epoch, b.index], [a.epoch, a.index]);
    assert.deepEqual(b.x, a.x);
    assert.deepEqual(b.y, a.y);
  }
  // In-thread building gives the same bytes as the workers.
  const inline = await withLoader(train, { ...opts, workers: 0 }, async (l) => collect(l.epoch(3, 7)));
  assert.deepEqual(inline[0].x, full[16].x);
  // Augmentation differs between epochs for the same image.
  const e2 = full[0];
  const l = new BatchLoader(train, opts);
  const idx2 = l.batchIndices(2, 0);
  const pos3 = l.order(3).indexOf(train.indices.indexOf(idx2[0]));
  const b3 = full[9 + Math.floor(pos3 / 32)];
  const per = 3 * 32 * 32;
  assert.notDeepEqual(b3.x.subarray((pos3 % 32) * per, ((pos3 % 32) + 1) * per), e2.x.subarray(0, per));
});

test("loader argument checks and misuse", async () => {
  const split = holdOut(idSource(), 0, 0).train;
  assert.throws(() => new BatchLoader(split, { batchSize: 0 }), VggError);
  assert.throws(() => new BatchLoader(split, { batchSize: 2000, dropLast: true }), /fewer than one batch/);
  assert.throws(() => new BatchLoader(split, { batchSize: 10, transforms: { mean: [0.5, 0.5], std: [1, 1] } }), /2 means/);
  const l = new BatchLoader(split, { batchSize: 100 });
  assert.throws(() => l.batchIndices(0, 10), /out of range/);
  await assert.rejects(collect(l.batches({ epoch: 0, batch: 11 })), /out of range/);
  const it = l.epoch(0);
  await it.next();
  await assert.rejects(collect(l.epoch(1)), /already being iterated/);
  await it.return(undefined);
  assert.equal((await collect(l.epoch(0, 10))).length, 0);
  await l.close();
  await l.close();
  await assert.rejects(collect(l.epoch(0)), /closed/);
});

test("worker threads end: with close(), and without it once idle", () => {
  const loader = fileURLToPath(new URL("../src/data/loader.js", import.meta.url));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "vgg-loader-"));
  const script = (close: boolean) => `
    import { BatchLoader } from ${JSON.stringify(pathToFileURL(loader).href)};
    const data = new Uint8Array(200 * 64).fill(3);
    const split = { name: "train", source: { kind: "array", data, n: 200, c: 1, h: 8, w: 8, labels: new Int32Array(200) }, indices: Int32Array.from({ length: 200 }, (_, i) => i) };
    const l = new BatchLoader(split, { batchSize: 16, workers: 2, transforms: { crop: 6, randomCrop: true, flip: true } });
    let n = 0;
    for await (const b of l.epoch(0)) { n += b.n; if (n >= 64) break; }
    ${close ? "await l.close();" : ""}
    console.log("done", n);
  `;
  for (const close of [true, false]) {
    const file = path.join(tmp, `exit-${close}.mjs`);
    fs.writeFileSync(file, script(close));
    // Without the test runner's variables the child is a plain script.
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, [file], { timeout: 10_000, encoding: "utf8", env });
    assert.equal(r.signal, null, `process hung (close=${close})`);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /done 64/);
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});
