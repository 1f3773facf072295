import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import * as zlib from "node:zlib";
import { labelHistogram, splitImage, splitLabels } from "../src/data/dataset.js";
import { encodeIdx, readIdx, readIdxImages, readIdxLabels } from "../src/data/idx.js";
import { FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, FASHION_MNIST_FILES, openDataset } from "../src/data/spec.js";
import { VggError } from "../src/errors.js";

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vgg-idx-"));
process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

const N = 7;
const pixels = Uint8Array.from({ length: N * 28 * 28 }, (_, i) => (i * 31) % 256);
const labels = Uint8Array.from({ length: N }, (_, i) => i % 10);

/** Asserts a VggError naming `file` whose message matches `re`, all on one line. */
function throwsIn(fn: () => unknown, file: string, re: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof VggError, String(e));
    assert.equal(e.file, file);
    assert.match(e.message, re);
    assert.ok(!e.message.includes("\n"));
    return true;
  });
}

test("IDX images and labels, raw and gzip", () => {
  const raw = write("img-idx3-ubyte", encodeIdx([N, 28, 28], pixels));
  const gz = write("img-idx3-ubyte.gz", zlib.gzipSync(encodeIdx([N, 28, 28], pixels)));
  for (const f of [raw, gz]) {
    const t = readIdxImages(f);
    assert.equal(t.dtype, "uint8");
    assert.deepEqual(t.shape, [N, 28, 28]);
    assert.deepEqual(t.data, pixels);
  }
  const lraw = write("lab-idx1-ubyte", encodeIdx([N], labels));
  const lgz = write("lab-idx1-ubyte.gz", zlib.gzipSync(encodeIdx([N], labels)));
  assert.deepEqual(readIdxLabels(lraw), labels);
  assert.deepEqual(readIdxLabels(lgz), labels);
  // A concatenated multi-member gzip file is one stream to gunzip.
  const whole = encodeIdx([N, 28, 28], pixels);
  const two = write("two.gz", Buffer.concat([zlib.gzipSync(whole.subarray(0, 100)), zlib.gzipSync(whole.subarray(100))]));
  assert.deepEqual(readIdx(two).data, pixels);
});

test("bad IDX files are one-line VggErrors naming the file", () => {
  const good = encodeIdx([N, 28, 28], pixels);
  const gz = zlib.gzipSync(good);
  throwsIn(
    () => readIdx(write("trunc", good.subarray(0, good.length - 5))),
    path.join(dir, "trunc"),
    /need 5504 bytes but the file has 5499 \(truncated\?\)/,
  );
  throwsIn(
    () => readIdx(write("long", Buffer.concat([good, Buffer.from([1])]))),
    path.join(dir, "long"),
    /need 5504 bytes but the file has 5505/,
  );
  throwsIn(() => readIdx(write("trunc.gz", gz.subarray(0, gz.length - 100))), path.join(dir, "trunc.gz"), /truncated gzip data/);
  const corrupt = Buffer.from(gz);
  corrupt[corrupt.length - 6] ^= 0xff; // CRC32
  throwsIn(() => readIdx(write("crc.gz", corrupt)), path.join(dir, "crc.gz"), /corrupt gzip data/);
  throwsIn(() => readIdx(write("notgz.gz", Buffer.from([0x1f, 0x8b, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))), path.join(dir, "notgz.gz"), /gzip/);
  const magic = Buffer.from(good);
  magic[0] = 0x89;
  throwsIn(() => readIdx(write("magic", magic)), path.join(dir, "magic"), /not an IDX file \(magic 0x89000803\)/);
  const f32 = Buffer.from(good);
  f32[2] = 0x0d;
  throwsIn(() => readIdx(write("float", f32)), path.join(dir, "float"), /float32 is not supported/);
  throwsIn(() => readIdxLabels(write("as-labels", good)), path.join(dir, "as-labels"), /has 3 dimensions, expected 0x00000801/);
  throwsIn(() => readIdxImages(write("as-images", encodeIdx([N], labels))), path.join(dir, "as-images"), /expected 0x00000803/);
  throwsIn(() => readIdx(write("tiny", Buffer.from([0, 0]))), path.join(dir, "tiny"), /truncated IDX file/);
  throwsIn(() => readIdx(write("shorthead", Buffer.from([0, 0, 8, 3, 0, 0, 0, 1]))), path.join(dir, "shorthead"), /truncated IDX header/);
  // Huge declared sizes are refused from the header alone, raw or compressed.
  const huge = encodeIdx([4_000_000_000, 4_000_000_000, 28], new Uint8Array(0));
  throwsIn(() => readIdx(write("huge", huge)), path.join(dir, "huge"), /more than the 2147483647-byte limit/);
  throwsIn(() => readIdx(write("huge.gz", zlib.gzipSync(huge))), path.join(dir, "huge.gz"), /more than the 2147483647-byte limit/);
  // Declared smaller than the data: inflation stops at the declared size.
  const bomb = encodeIdx([1, 28, 28], new Uint8Array(28 * 28 * 1000));
  throwsIn(() => readIdx(write("bomb.gz", zlib.gzipSync(bomb))), path.join(dir, "bomb.gz"), /inflates to more than the 800 bytes/);
  throwsIn(() => readIdx(path.join(dir, "absent")), path.join(dir, "absent"), /no such file/);
});

test("fashion-mnist spec on a directory of small IDX files; held-out val fixed by the seed", async () => {
  const d = path.join(dir, "fm");
  fs.mkdirSync(d);
  const n = 50;
  const img = Uint8Array.from({ length: n * 784 }, (_, i) => Math.floor(i / 784));
  const lab = Uint8Array.from({ length: n }, (_, i) => i % 10);
  fs.writeFileSync(path.join(d, `${FASHION_MNIST_FILES.trainImages}.gz`), zlib.gzipSync(encodeIdx([n, 28, 28], img)));
  fs.writeFileSync(path.join(d, `${FASHION_MNIST_FILES.trainLabels}.gz`), zlib.gzipSync(encodeIdx([n], lab)));
  fs.writeFileSync(path.join(d, FASHION_MNIST_FILES.testImages), encodeIdx([10, 28, 28], img.subarray(0, 7840)));
  fs.writeFileSync(path.join(d, FASHION_MNIST_FILES.testLabels), encodeIdx([10], lab.subarray(0, 10)));
  const ds = await openDataset(`fashion-mnist:${d}`, { val: 10, seed: 3 });
  assert.equal(ds.kind, "fashion-mnist");
  assert.deepEqual(ds.classes, FASHION_MNIST_CLASSES);
  assert.deepEqual([ds.channels, ...ds.size!], [1, 28, 28]);
  const { train, val, test: tst } = ds.splits;
  assert.equal(train.indices.length, 40);
  assert.equal(val!.indices.length, 10);
  assert.equal(tst!.indices.length, 10);
  assert.equal(new Set([...train.indices, ...val!.indices]).size, 50);
  // Pixel value = image index, so the mean is the mean of the train indices / 255.
  const mean = [...train.indices].reduce((s, i) => s + i, 0) / 40 / 255;
  assert.ok(Math.abs(ds.mean[0] - mean) < 1e-9);
  assert.equal((await splitImage(val!, 0)).data[5], val!.indices[0]);
  assert.deepEqual(
    [...splitLabels(val!)],
    [...val!.indices].map((i) => i % 10),
  );
  const again = await openDataset(`fashion-mnist:${d}`, { val: 10, seed: 3 });
  assert.deepEqual(again.splits.val!.indices, val!.indices);
  const other = await openDataset(`fashion-mnist:${d}`, { val: 10, seed: 4 });
  assert.notDeepEqual(other.splits.val!.indices, val!.indices);
  const frac = await openDataset(`fashion-mnist:${d}`, { val: 0.2 });
  assert.equal(frac.splits.val!.indices.length, 10);
  assert.equal((await openDataset(`fashion-mnist:${d}`, { val: 0 })).splits.val, null);
  await assert.rejects(openDataset(`fashion-mnist:${d}`, { val: 50 }), /cannot hold out 50/);
  fs.writeFileSync(path.join(d, FASHION_MNIST_FILES.testLabels), encodeIdx([9], lab.subarray(0, 9)));
  await assert.rejects(openDataset(`fashion-mnist:${d}`, { val: 10 }), /9 labels for 10 images/);
  await assert.rejects(openDataset(`fashion-mnist:${path.join(dir, "nope")}`), /no such directory/);
});

test("the real Fashion-MNIST test split", {
  skip: !fs.existsSync(FASHION_MNIST_DIR) && "dataset-fashion-mnist not installed",
}, async () => {
  const f = FASHION_MNIST_FILES;
  const images = readIdxImages(path.join(FASHION_MNIST_DIR, `${f.testImages}.gz`));
  const lab = readIdxLabels(path.join(FASHION_MNIST_DIR, `${f.testLabels}.gz`));
  assert.deepEqual(images.shape, [10000, 28, 28]);
  assert.equal(lab.length, 10000);
  const ds = await openDataset("fashion-mnist");
  assert.deepEqual(labelHistogram(ds.splits.test!, 10), new Array(10).fill(1000));
  assert.equal(ds.splits.train.indices.length, 55000);
  assert.equal(ds.splits.val!.indices.length, 5000);
  // Fashion-MNIST's well-known statistics (over all 60,000; the held-out 5,000 barely move them).
  assert.ok(Math.abs(ds.mean[0] - 0.286) < 0.002, String(ds.mean));
  assert.ok(Math.abs(ds.std[0] - 0.353) < 0.002, String(ds.std));
});
