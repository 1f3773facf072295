import assert from "node:assert/strict";
import { test } from "node:test";
import {
  centerCrop,
  compileTransforms,
  crop,
  eraseRect,
  evalScale,
  GRAY_LIGHTING_EIGVAL,
  hflip,
  type Image,
  lighting,
  lightingShift,
  normalize,
  pad,
  padTo,
  presetTransforms,
  randomCrop,
  replicateChannels,
  resize,
  resizeShorter,
  scaledSize,
  transformImage,
} from "../src/data/transforms.js";
import { VggError } from "../src/errors.js";
import { keyedRng, permutation, Sfc32, sampleRng } from "../src/random.js";

function randomImage(c: number, h: number, w: number, seed = 1): Image {
  const r = keyedRng(seed, 99);
  const data = new Uint8Array(c * h * w);
  for (let i = 0; i < data.length; i++) data[i] = r.int(256);
  return { data, c, h, w };
}

const at = (img: Image, c: number, y: number, x: number) => img.data[(c * img.h + y) * img.w + x];

test("keyed rng: same key same stream, different keys differ; permutation is a permutation", () => {
  const a = sampleRng(7, 3, 12345);
  const b = sampleRng(7, 3, 12345);
  for (let i = 0; i < 100; i++) assert.equal(a.uint32(), b.uint32());
  assert.notEqual(sampleRng(7, 3, 12345).uint32(), sampleRng(7, 4, 12345).uint32());
  assert.notEqual(sampleRng(7, 3, 12345).uint32(), sampleRng(8, 3, 12345).uint32());
  assert.notEqual(sampleRng(2 ** 40, 0, 0).uint32(), sampleRng(0, 0, 0).uint32());
  const p = permutation(1000, keyedRng(1, 2));
  assert.deepEqual(
    [...p].sort((x, y) => x - y),
    Array.from({ length: 1000 }, (_, i) => i),
  );
  const r = new Sfc32(1, 2, 3, 4);
  let s = 0;
  let q = 0;
  for (let i = 0; i < 20000; i++) {
    const v = r.normal();
    s += v;
    q += v * v;
  }
  assert.ok(Math.abs(s / 20000) < 0.03 && Math.abs(q / 20000 - 1) < 0.05);
  for (let i = 0; i < 1000; i++) {
    const k = r.range(3, 5);
    assert.ok(k >= 3 && k <= 5);
  }
});

test("flip twice is the identity, and flips columns", () => {
  for (const img of [randomImage(3, 5, 7), { ...randomImage(1, 4, 6), data: Float32Array.from(randomImage(1, 4, 6).data) }]) {
    const f = hflip(img);
    assert.equal(at(f, 0, 1, 0), at(img, 0, 1, img.w - 1));
    assert.deepEqual(hflip(f).data, img.data);
    assert.equal(f.data.constructor, img.data.constructor);
  }
});

test("crop, pad, padTo, centerCrop geometry", () => {
  const img = randomImage(2, 6, 8);
  const c = crop(img, 1, 2, 3, 4);
  assert.equal(at(c, 1, 0, 0), at(img, 1, 1, 2));
  assert.equal(at(c, 1, 2, 3), at(img, 1, 3, 5));
  const p = pad(img, 2);
  assert.deepEqual([p.h, p.w], [10, 12]);
  assert.equal(at(p, 0, 0, 0), 0);
  assert.equal(at(p, 0, 2, 2), at(img, 0, 0, 0));
  assert.equal(at(p, 1, 9, 11), 0);
  const fm = randomImage(1, 28, 28);
  const t = padTo(fm, 32, 32);
  assert.deepEqual([t.h, t.w], [32, 32]);
  assert.equal(at(t, 0, 2, 2), at(fm, 0, 0, 0));
  assert.equal(at(t, 0, 1, 5), 0);
  // torchvision rounds the centre offset half to even: (7 - 4) / 2 = 1.5 -> 2, (8 - 4) / 2 = 2.
  const cc = centerCrop(randomImage(1, 7, 8), 4);
  assert.equal(at(cc, 0, 0, 0), at(randomImage(1, 7, 8), 0, 2, 2));
  // A crop larger than the image pads it, torchvision-style.
  const big = centerCrop(randomImage(1, 3, 3), 5);
  assert.equal(at(big, 0, 1, 1), at(randomImage(1, 3, 3), 0, 0, 0));
  assert.equal(at(big, 0, 0, 0), 0);
});

test("random crop offsets stay in bounds and cover every position", () => {
  const img = randomImage(1, 32, 32);
  const seen = new Set<string>();
  for (let i = 0; i < 4000; i++) {
    const rng = sampleRng(3, 0, i);
    const p = compileTransforms({ cropPadding: 4, crop: 32, randomCrop: true }).params(1, 32, 32, rng);
    assert.ok(p.y >= -4 && p.y <= 4 && p.x >= -4 && p.x <= 4, `${p.y},${p.x}`);
    seen.add(`${p.y},${p.x}`);
    const c = randomCrop(img, 32, 32, 4, sampleRng(3, 0, i));
    assert.deepEqual([c.h, c.w], [32, 32]);
  }
  assert.equal(seen.size, 81);
});

test("normalisation numbers", () => {
  const img: Image = { data: Uint8Array.from([0, 255, 51, 102]), c: 2, h: 1, w: 2 };
  const n = normalize(img, [0.5, 0.2], [0.25, 0.1]);
  assert.deepEqual(
    [...n.data].map((v) => Number(v.toFixed(5))),
    [-2, 2, 0, 2],
  );
  const f: Image = { data: Float32Array.from([0.5, 1]), c: 1, h: 1, w: 2 };
  assert.deepEqual([...normalize(f, [0.5], [0.5]).data], [0, 1]);
  assert.throws(() => normalize(img, [0.5], [0.25]), VggError);
  assert.throws(() => normalize(img, [0.5, 0.5], [0.25, 0]), VggError);
});

test("resize: constant stays constant, up- and down-scaling, shorter side", () => {
  for (const [h, w] of [
    [32, 32],
    [7, 5],
    [100, 3],
    [13, 61],
  ]) {
    const u = resize({ data: new Uint8Array(3 * 28 * 30).fill(77), c: 3, h: 28, w: 30 }, h, w);
    assert.ok(
      u.data.every((v) => v === 77),
      `${h}x${w}`,
    );
    const f = resize({ data: new Float32Array(28 * 30).fill(0.3), c: 1, h: 28, w: 30 }, h, w);
    assert.ok(f.data.every((v) => Math.abs(v - 0.3) < 1e-6));
  }
  // 2x upscaling with half-pixel centres: [0, 4] -> [0, 1, 3, 4].
  const up = resize({ data: Float32Array.from([0, 4]), c: 1, h: 1, w: 2 }, 1, 4);
  assert.deepEqual([...up.data], [0, 1, 3, 4]);
  // 2x downscaling averages with a triangle of width 4: [a b c d] -> [(3a+3b+c)/7 ... ] edge-normalised.
  const dn = resize({ data: Float32Array.from([0, 8, 16, 24]), c: 1, h: 1, w: 4 }, 1, 2);
  assert.ok(Math.abs(dn.data[0] - (0.75 * 0 + 0.75 * 8 + 0.25 * 16) / 1.75) < 1e-5);
  assert.deepEqual(scaledSize(300, 400, 256), [256, 341]);
  assert.deepEqual(scaledSize(500, 375, 256), [341, 256]);
  const r = resizeShorter(randomImage(3, 40, 50), 20);
  assert.deepEqual([r.c, r.h, r.w], [3, 20, 25]);
});

test("lighting: 3-channel shift along ImageNet's PCA, 1-channel brightness jitter", () => {
  const img: Image = { data: new Float32Array(3 * 4).fill(0.5), c: 3, h: 2, w: 2 };
  const l = lighting(img, 0.1, keyedRng(1, 1));
  const shift = lightingShift(3, 0.1, keyedRng(1, 1));
  for (let c = 0; c < 3; c++) for (let i = 0; i < 4; i++) assert.ok(Math.abs(l.data[c * 4 + i] - (0.5 + shift[c])) < 1e-6);
  assert.ok(shift.every((s) => Math.sign(s) === Math.sign(shift[0]) || Math.abs(s) < 0.01));
  assert.ok(Math.abs(GRAY_LIGHTING_EIGVAL - 0.1256) < 1e-3, String(GRAY_LIGHTING_EIGVAL));
  let q = 0;
  for (let i = 0; i < 5000; i++) q += lightingShift(1, 0.1, keyedRng(i, 5))[0] ** 2;
  assert.ok(Math.abs(Math.sqrt(q / 5000) - 0.1 * GRAY_LIGHTING_EIGVAL) < 0.001);
  assert.throws(() => lightingShift(2, 0.1, keyedRng(0, 0)), VggError);
});

test("1 -> 3 channel replication", () => {
  const img = randomImage(1, 3, 3);
  const r = replicateChannels(img, 3);
  assert.equal(r.c, 3);
  assert.deepEqual(r.data.subarray(18, 27), img.data);
  assert.throws(() => replicateChannels(randomImage(2, 2, 2), 3), VggError);
});

test("fused pipeline equals the composed steps", () => {
  const img = randomImage(1, 28, 28, 5);
  const cfg = { padTo: 32, cropPadding: 4, crop: 32, randomCrop: true, flip: true, lighting: 0.1, mean: [0.3], std: [0.35], channels: 3 };
  const t = compileTransforms(cfg);
  for (let i = 0; i < 20; i++) {
    const got = transformImage(t, img, sampleRng(1, 2, i));
    const p = t.params(1, 28, 28, sampleRng(1, 2, i));
    let ref = crop(img, p.y, p.x, 32, 32);
    if (p.flip) ref = hflip(ref);
    const f = new Float32Array(ref.data.length);
    for (let k = 0; k < f.length; k++) f[k] = (ref.data[k] / 255 + p.shift![0] - 0.3) / 0.35;
    const want = replicateChannels({ data: f, c: 1, h: 32, w: 32 }, 3);
    assert.equal(got.c, 3);
    for (let k = 0; k < want.data.length; k++) assert.ok(Math.abs(got.data[k] - want.data[k]) < 1e-5, `sample ${i} element ${k}`);
  }
  // Resize (Fashion-MNIST 28 -> 32 by interpolation) then flip.
  const t2 = compileTransforms({ resize: 32, flip: true });
  const g2 = transformImage(t2, img, sampleRng(0, 0, 1));
  const p2 = t2.params(1, 28, 28, sampleRng(0, 0, 1));
  let r2 = resize(img, 32, 32, "float32");
  if (p2.flip) r2 = hflip(r2);
  for (let k = 0; k < r2.data.length; k++) assert.ok(Math.abs(g2.data[k] - r2.data[k] / 255) < 1e-6);
});

test("augmentation is reproducible from (seed, epoch, index) and varies with each", () => {
  const img = randomImage(3, 40, 50, 9);
  const t = compileTransforms({ scale: [32, 48], crop: 32, randomCrop: true, flip: true, lighting: 0.1 });
  const run = (seed: number, epoch: number, index: number) => transformImage(t, img, sampleRng(seed, epoch, index)).data;
  assert.deepEqual(run(1, 2, 3), run(1, 2, 3));
  assert.notDeepEqual(run(1, 2, 3), run(1, 3, 3));
  assert.notDeepEqual(run(1, 2, 3), run(1, 2, 4));
  assert.notDeepEqual(run(1, 2, 3), run(2, 2, 3));
  const sizes = new Set<number>();
  for (let i = 0; i < 300; i++) sizes.add(t.params(3, 40, 50, sampleRng(1, 0, i)).resized[0]);
  assert.equal(Math.min(...sizes), 32);
  assert.equal(Math.max(...sizes), 48);
});

test("config validation and presets", () => {
  assert.throws(() => compileTransforms({ scale: 10, resize: 10 }), VggError);
  assert.throws(() => compileTransforms({ cropPadding: 4 }), VggError);
  assert.throws(() => compileTransforms({ mean: [0.5] }), VggError);
  assert.throws(() => compileTransforms({ scale: [40, 30] }), VggError);
  assert.throws(() => compileTransforms({ scale: [30, 40] }).outputShape(3, 50, 50), VggError);
  assert.throws(() => compileTransforms({ channels: 3 }).outputShape(2, 8, 8), VggError);
  const fm = { channels: 1, size: [28, 28] as [number, number], mean: [0.286], std: [0.353] };
  const tr = presetTransforms(fm, { size: 32, channels: 3 }, true);
  assert.deepEqual(compileTransforms(tr).outputShape(1, 28, 28), [3, 32, 32]);
  assert.equal(tr.padTo, 32);
  const ev = presetTransforms(fm, { size: 32, fit: "resize" }, false);
  assert.deepEqual(ev, { mean: [0.286], std: [0.353], resize: 32 });
  const inet = presetTransforms(
    { channels: 3, size: null, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
    { size: 224, scale: [256, 512] },
    true,
  );
  assert.deepEqual(inet.scale, [256, 512]);
  assert.equal(inet.lighting, 0.1);
  assert.equal(inet.randomCrop, true);
  // --augment without crop: the training crop at a scale is the centred one evaluation takes.
  const photos = { channels: 3, size: null, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };
  const noCrop = presetTransforms(photos, { size: 224, scale: 256, randomCrop: false, flip: false, lighting: 0 }, true);
  assert.equal(noCrop.randomCrop, false);
  const big = randomImage(3, 300, 400, 7);
  assert.deepEqual(
    transformImage(compileTransforms(noCrop), big, sampleRng(1, 0, 0)).data,
    transformImage(compileTransforms(presetTransforms(photos, { size: 224, scale: 256 }, false)), big, sampleRng(2, 0, 0)).data,
  );
  const inetEval = presetTransforms({ channels: 3, size: null, mean: [0, 0, 0], std: [1, 1, 1] }, { size: 224, scale: [256, 512] }, false);
  assert.equal(inetEval.scale, 384);
  assert.equal(inetEval.crop, 224);
});

test("evalScale: the test scale Q is the one the evaluation transform brings images to", () => {
  const fm = { channels: 1, size: [28, 28] as [number, number], mean: [0.286], std: [0.353] };
  const q = (d: typeof fm | { channels: number; size: null; mean: number[]; std: number[] }, o: Parameters<typeof presetTransforms>[1]) =>
    evalScale(presetTransforms(d, o, false), d.size);
  assert.equal(q(fm, { size: 32 }), 28, "padded small images keep their size");
  assert.equal(q(fm, { size: 32, fit: "resize" }), 32, "resized to the input");
  assert.equal(q(fm, { size: 32, scale: [32, 48] }), 40, "the middle of the jittered range");
  assert.equal(q(fm, { size: 32, scale: 36 }), 36);
  const big = { channels: 3, size: [64, 64] as [number, number], mean: [0, 0, 0], std: [1, 1, 1] };
  assert.equal(evalScale(presetTransforms(big, { size: 32 }, false), big.size), 37, "larger images: rescaled to 32 * 256/224");
  const folder = { channels: 3, size: null, mean: [0, 0, 0], std: [1, 1, 1] };
  assert.equal(q(folder, { size: 224 }), 256);
  assert.throws(() => evalScale({}, null), VggError);
});

test("random erasing: torchvision's area and aspect ranges, zeroes after normalisation, only in training", () => {
  let erased = 0;
  for (let i = 0; i < 4000; i++) {
    const r = eraseRect(32, 32, 0.5, sampleRng(3, 0, i));
    if (!r) continue;
    erased++;
    const frac = (r.h * r.w) / 1024;
    assert.ok(frac > 0.01 && frac < 0.36, `area fraction ${frac}`);
    assert.ok(r.y >= 0 && r.x >= 0 && r.y + r.h <= 32 && r.x + r.w <= 32, JSON.stringify(r));
  }
  assert.ok(Math.abs(erased / 4000 - 0.5) < 0.03, `erased ${erased}/4000`);
  assert.equal(eraseRect(32, 32, 0, sampleRng(0, 0, 0)), null);

  const img = randomImage(1, 32, 32, 4);
  for (let v = 0; v < img.data.length; v++) img.data[v] = Math.max(1, img.data[v]);
  const t = compileTransforms({ erase: 1, mean: [0.5], std: [0.25], channels: 3 });
  for (let i = 0; i < 10; i++) {
    const p = t.params(1, 32, 32, sampleRng(1, 1, i));
    const got = transformImage(t, img, sampleRng(1, 1, i));
    const e = p.erase;
    assert.ok(e, "p = 1 erases whenever a rectangle fits");
    for (let c = 0; c < 3; c++)
      for (let y = 0; y < 32; y++)
        for (let x = 0; x < 32; x++) {
          const inside: boolean = y >= e.y && y < e.y + e.h && x >= e.x && x < e.x + e.w;
          const v = got.data[(c * 32 + y) * 32 + x];
          const want: number = inside ? 0 : (img.data[y * 32 + x] / 255 - 0.5) / 0.25;
          assert.ok(Math.abs(v - want) < 1e-5, `sample ${i} (${c},${y},${x}): ${v} vs ${want}`);
        }
  }
  assert.throws(() => compileTransforms({ erase: 1.5 }), VggError);
  const ds = { channels: 1, size: [28, 28] as [number, number], mean: [0.3], std: [0.35] };
  assert.equal(presetTransforms(ds, { size: 32, erase: 0.5 }, true).erase, 0.5);
  assert.equal(presetTransforms(ds, { size: 32, erase: 0.5 }, false).erase, undefined);
});
