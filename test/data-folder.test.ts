import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { splitImage, splitLabels } from "../src/data/dataset.js";
import { decodeImage, scanFolderDataset, scanImageFolder } from "../src/data/folder.js";
import { BatchLoader } from "../src/data/loader.js";
import { openDataset } from "../src/data/spec.js";
import { compileTransforms, transformImage } from "../src/data/transforms.js";
import { VggError } from "../src/errors.js";
import { sampleRng } from "../src/random.js";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "vgg-folder-"));
process.on("exit", () => fs.rmSync(root, { recursive: true, force: true }));

/** A w x h RGB image with R = 10x, G = 20y, B = seed. */
function rgb(w: number, h: number, seed: number): Buffer {
  const b = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      b[i] = 10 * x;
      b[i + 1] = 20 * y;
      b[i + 2] = seed;
    }
  return b;
}

async function writeImage(file: string, w: number, h: number, seed: number): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const img = sharp(rgb(w, h, seed), { raw: { width: w, height: h, channels: 3 } });
  const ext = path.extname(file).toLowerCase();
  if (ext === ".png") await img.png().toFile(file);
  else if (ext === ".webp") await img.webp({ lossless: true }).toFile(file);
  else await img.jpeg({ quality: 95 }).toFile(file);
}

async function makeTree(dir: string): Promise<void> {
  await writeImage(path.join(dir, "train/cat/a.png"), 12, 10, 1);
  await writeImage(path.join(dir, "train/cat/b.JPG"), 16, 12, 2);
  await writeImage(path.join(dir, "train/cat/sub/c.webp"), 10, 14, 3);
  await writeImage(path.join(dir, "train/dog/d.png"), 9, 9, 4);
  await writeImage(path.join(dir, "train/dog/e.jpeg"), 20, 11, 5);
  await writeImage(path.join(dir, "train/dog/f.png"), 11, 13, 6);
  fs.writeFileSync(path.join(dir, "train/dog/broken.jpg"), Buffer.from("this is not a jpeg at all"));
  fs.writeFileSync(path.join(dir, "train/dog/notes.txt"), "not an image");
  fs.writeFileSync(path.join(dir, "train/dog/.DS_Store"), "ignored");
  await writeImage(path.join(dir, "val/cat/g.png"), 12, 12, 7);
  await writeImage(path.join(dir, "val/dog/h.png"), 12, 12, 8);
}

test("decoding: PNG pixels exact, CHW, grey and alpha converted", async () => {
  const f = path.join(root, "px.png");
  await sharp(rgb(5, 3, 33), { raw: { width: 5, height: 3, channels: 3 } })
    .png()
    .toFile(f);
  const img = await decodeImage(f, 3);
  assert.deepEqual([img.c, img.h, img.w], [3, 3, 5]);
  assert.equal(img.data[0 * 15 + 2 * 5 + 4], 40);
  assert.equal(img.data[1 * 15 + 2 * 5 + 4], 40);
  assert.equal(img.data[2 * 15 + 1 * 5 + 1], 33);
  const grey = path.join(root, "grey.png");
  await sharp(Buffer.from([0, 100, 200, 255]), { raw: { width: 2, height: 2, channels: 1 } })
    .png()
    .toFile(grey);
  assert.deepEqual([...(await decodeImage(grey, 3)).data], [0, 100, 200, 255, 0, 100, 200, 255, 0, 100, 200, 255]);
  assert.deepEqual([...(await decodeImage(grey, 1)).data], [0, 100, 200, 255]);
  const rgba = path.join(root, "rgba.png");
  await sharp(Buffer.from([1, 2, 3, 0, 4, 5, 6, 255]), { raw: { width: 2, height: 1, channels: 4 } })
    .png()
    .toFile(rgba);
  assert.deepEqual([...(await decodeImage(rgba, 3)).data], [1, 4, 2, 5, 3, 6]);
  await assert.rejects(
    decodeImage(path.join(root, "none.png"), 3),
    (e: unknown) => e instanceof VggError && e.file === path.join(root, "none.png"),
  );
});

test("image folder: sorted classes, recursive, unreadable and non-image files skipped and counted", async () => {
  const dir = path.join(root, "ds");
  await makeTree(dir);
  const f = await scanFolderDataset(dir);
  assert.deepEqual(f.classes, ["cat", "dog"]);
  assert.deepEqual(
    f.train.files.map((x) => path.relative(dir, x)),
    ["train/cat/a.png", "train/cat/b.JPG", "train/cat/sub/c.webp", "train/dog/d.png", "train/dog/e.jpeg", "train/dog/f.png"],
  );
  assert.deepEqual([...f.train.labels], [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(f.train.counts, [3, 3]);
  assert.deepEqual(
    f.train.skipped.map((x) => path.basename(x)),
    ["broken.jpg", "notes.txt"],
  );
  assert.deepEqual([...f.val!.labels], [0, 1]);
  assert.equal(f.test, null);

  const cache = path.join(root, "cache");
  // val/ is the validation split: nothing is held out of train/, and there is no test/.
  const ds = await openDataset(`folder:${dir}`, { seed: 5, cacheDir: cache });
  assert.equal(ds.skipped.count, 2);
  assert.equal(ds.size, null);
  assert.equal(ds.channels, 3);
  assert.equal(ds.splits.train.indices.length, 6);
  assert.equal(ds.splits.val!.indices.length, 2);
  assert.equal(ds.splits.test, null);
  assert.equal(ds.statsCount, 6);
  // Per-channel statistics over all train pixels (images of different sizes weigh by pixel count).
  let sum = 0;
  let sq = 0;
  let count = 0;
  for (const i of ds.splits.train.indices) {
    const img = await decodeImage(f.train.files[i], 3);
    for (const v of img.data.subarray(2 * img.h * img.w)) {
      sum += v / 255;
      sq += (v / 255) ** 2;
      count++;
    }
  }
  assert.ok(Math.abs(ds.mean[2] - sum / count) < 1e-9, `${ds.mean[2]} vs ${sum / count}`);
  assert.ok(Math.abs(ds.std[2] - Math.sqrt(sq / count - (sum / count) ** 2)) < 1e-9);
  // The statistics are cached; a second open reads them back.
  const files = fs.readdirSync(path.join(cache, "stats"));
  assert.equal(files.length, 1);
  const cached = path.join(cache, "stats", files[0]);
  fs.writeFileSync(cached, JSON.stringify({ mean: [0.1, 0.2, 0.3], std: [1, 1, 1], count: 4 }));
  assert.deepEqual((await openDataset(`folder:${dir}`, { seed: 5, cacheDir: cache })).mean, [0.1, 0.2, 0.3]);
  const grey = await openDataset(`folder:${dir}`, { val: 0, channels: 1, cacheDir: null });
  assert.equal(grey.mean.length, 1);
  assert.equal((await splitImage(grey.splits.train, 0)).c, 1);
  assert.deepEqual([...splitLabels(grey.splits.train)], [0, 0, 0, 1, 1, 1]);
});

test("image folder errors: empty class, class missing from val", async () => {
  const dir = path.join(root, "bad");
  await makeTree(dir);
  fs.mkdirSync(path.join(dir, "train/bird"));
  fs.writeFileSync(path.join(dir, "train/bird/x.png"), "corrupt");
  await assert.rejects(scanFolderDataset(dir), (e: unknown) => e instanceof VggError && /no readable images: 'bird'/.test(e.message));
  await writeImage(path.join(dir, "train/bird/y.png"), 8, 8, 9);
  await assert.rejects(
    scanFolderDataset(dir),
    (e: unknown) => e instanceof VggError && e.file === path.join(dir, "val") && /missing: 'bird'/.test(e.message),
  );
  fs.mkdirSync(path.join(dir, "val/bird"));
  await assert.rejects(scanFolderDataset(dir), /val: class with no readable images: 'bird'/);
  await writeImage(path.join(dir, "val/bird/z.png"), 8, 8, 9);
  await writeImage(path.join(dir, "val/fish/z.png"), 8, 8, 9);
  await assert.rejects(scanFolderDataset(dir), /not in the train split: 'fish'/);
  await assert.rejects(openDataset(`folder:${path.join(root, "absent")}`), /no such directory/);
  fs.mkdirSync(path.join(root, "flat"));
  await assert.rejects(scanImageFolder(path.join(root, "flat")), /no class folders/);
});

test("folder loader: sharp decoding in worker threads, same as in-thread; a vanished file is reported", async () => {
  const dir = path.join(root, "load");
  await makeTree(dir);
  const ds = await openDataset(`folder:${dir}`, { val: 0, cacheDir: null });
  const transforms = {
    scale: [8, 12] as [number, number],
    crop: 8,
    randomCrop: true,
    flip: true,
    lighting: 0.1,
    mean: ds.mean,
    std: ds.std,
  };
  assert.throws(() => new BatchLoader(ds.splits.train, { batchSize: 4, transforms: { flip: true } }), /need a crop or a resize/);
  const loader = new BatchLoader(ds.splits.train, { batchSize: 4, transforms, seed: 3, workers: 2 });
  const batches = [];
  for await (const b of loader.epoch(1)) batches.push(b);
  assert.deepEqual(
    batches.map((b) => b.shape),
    [
      [4, 3, 8, 8],
      [2, 3, 8, 8],
    ],
  );
  const t = compileTransforms(transforms);
  const idx = loader.batchIndices(1, 0);
  for (let k = 0; k < 4; k++) {
    const want = transformImage(
      t,
      await decodeImage(ds.splits.train.source.kind === "files" ? ds.splits.train.source.files[idx[k]] : "", 3),
      sampleRng(3, 1, idx[k]),
    );
    assert.deepEqual(batches[0].x.subarray(k * 192, (k + 1) * 192), want.data);
    assert.equal(batches[0].y[k], BigInt(ds.splits.train.source.labels[idx[k]]));
  }
  const gone = path.join(dir, "train/cat/a.png");
  fs.rmSync(gone);
  await assert.rejects(
    (async () => {
      for await (const _ of loader.epoch(2)) {
        // drain
      }
    })(),
    (e: unknown) => e instanceof VggError && e.file === gone && /cannot decode image/.test(e.message),
  );
  await loader.close();
});

test("1-channel decode uses PIL's convert('L') weights, not libvips' b-w", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vgg-grey-"));
  const f = path.join(dir, "c.png");
  // Saturated red, green and blue pixels: where the two luma formulas differ most.
  const rgb = Buffer.from([255, 0, 0, 0, 255, 0, 0, 0, 255]);
  await sharp(rgb, { raw: { width: 3, height: 1, channels: 3 } })
    .png()
    .toFile(f);
  const img = await decodeImage(f, 1);
  assert.deepEqual(Array.from(img.data), [76, 150, 29]);
});
