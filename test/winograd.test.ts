/**
 * Winograd F(4x4, 3x3) inference (src/graph/winograd-infer.ts): the transforms against direct correlation in double
 * precision, every arch's taps with Winograd on against off (odd sizes, padded tiles, BN folded, LRN and 1x1 layers
 * in between), and the --winograd flag through the real binary.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { resolveWinograd } from "../src/graph/winograd-infer.js";
import { readNpy, writeNpy } from "../src/io/npy.js";
import { f43 } from "../src/ops/winograd.js";
import { Predictor } from "../src/predict/predictor.js";
import { Xoshiro128 } from "../src/random.js";
import { createSession } from "../src/runtime/ort.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { ARCHS } from "../src/zoo/configs.js";
import { buildModel, tapNames } from "../src/zoo/model.js";
import { assertCleanError, relErr, tmp, vgg } from "./helpers.js";

test("F(4x4, 3x3): A^T [(G g G^T) . (B^T d B)] A is the 4x4 correlation of a 6x6 tile with a 3x3 kernel", () => {
  const rng = new Xoshiro128(3);
  const d = Array.from({ length: 36 }, () => rng.normal());
  const k = Array.from({ length: 9 }, () => rng.normal());
  const [gg, bb, aa] = [f43.kernel(), f43.input(), f43.output()];
  const u = Array.from({ length: 36 }, (_, p) => k.reduce((s, v, j) => s + gg[p * 9 + j] * v, 0));
  const v = Array.from({ length: 36 }, (_, p) => d.reduce((s, x, j) => s + bb[p * 36 + j] * x, 0));
  for (let o = 0; o < 16; o++) {
    const y = u.reduce((s, up, p) => s + aa[o * 36 + p] * up * v[p], 0);
    const [r, c] = [Math.floor(o / 4), o % 4];
    let want = 0;
    for (let a = 0; a < 3; a++) for (let b = 0; b < 3; b++) want += d[(r + a) * 6 + c + b] * k[a * 3 + b];
    // The matrices are float32 (1/6, 1/24 rounded): ~1e-7 relative.
    assert.ok(Math.abs(y - want) < 1e-6 * (1 + Math.abs(want)), `output ${o}: ${y} vs ${want}`);
  }
});

/** Weights with BN statistics away from (0, 1), so that folding BN into the Winograd kernel is exercised. */
function weightsWithStats(arch: string, opts: object): StateDict {
  const w = initWeights(buildModel(arch, opts), "torchvision", 5);
  const fill = (a: Float32Array, f: (j: number) => number) => {
    for (let j = 0; j < a.length; j++) a[j] = f(j);
  };
  for (const [k, t] of w) {
    const a = t.data as Float32Array;
    if (k.endsWith("running_var")) fill(a, (j) => 0.5 + (j % 7) / 7);
    if (k.endsWith("running_mean")) fill(a, (j) => ((j % 5) - 2) / 10);
    if (k.startsWith("features") && k.endsWith(".bias")) fill(a, (j) => ((j % 3) - 1) / 20);
  }
  return w;
}

function input(n: number, size: number): Tensor {
  const rng = new Xoshiro128(9);
  const shape = [n, 3, size, size];
  return { dtype: "float32", shape, data: Float32Array.from({ length: n * 3 * size * size }, () => rng.normal()) };
}

for (const arch of ARCHS.map((a) => a.name)) {
  test(`${arch}: every tap with Winograd on matches off (sizes 32 and 45)`, async () => {
    for (const inputSize of [32, 45]) {
      const opts = { widthDivisor: 8, numClasses: 10, inputSize };
      const w = weightsWithStats(arch, opts);
      const model = buildModel(arch, opts);
      const taps = tapNames(model);
      const x = input(2, inputSize);
      const out: Record<string, Tensor>[] = [];
      for (const winograd of ["off", "on"] as const) {
        const p = await Predictor.fromWeights(model, w, { taps, winograd });
        out.push(await p.run(x));
        await p.release();
      }
      for (const t of taps) {
        const e = relErr(out[1][t].data as Float32Array, out[0][t].data as Float32Array);
        assert.ok(e < 1e-5, `${arch} at ${inputSize}, ${t}: relative error ${e}`);
      }
    }
  });
}

test("resolveWinograd: auto is off outside fp32 on the cpu, on is refused there", () => {
  assert.equal(resolveWinograd(undefined, "fp32", "cpu"), "auto");
  assert.equal(resolveWinograd("auto", "int8", "cpu"), "off");
  assert.equal(resolveWinograd("auto", "fp32", "webgpu"), "off");
  assert.equal(resolveWinograd("off", "fp32", "cpu"), "off");
  assert.throws(() => resolveWinograd("on", "fp16", "cpu"), /--winograd on needs --precision fp32/);
});

test("--winograd through bench infer, infer and export: the same logits as off; bad values refused", async () => {
  const d = tmp();
  const model = ["--arch", "vgg11", "--width-divisor", "8", "--num-classes", "10"];
  const sized = [...model, "--input-size", "64"];
  const xf = join(d, "x.npy");
  const x = input(2, 64);
  writeNpy(xf, x);
  const bench = vgg(["bench", "infer", ...sized, "--batch", "2", "--iterations", "1", "--warmup", "1", "--winograd", "on"]);
  assert.equal(bench.status, 0, bench.stderr);
  const logits: Float32Array[] = [];
  for (const w of ["off", "on", "auto"]) {
    const out = join(d, `y-${w}.npy`);
    const r = vgg(["infer", ...model, "--input", xf, "--out", out, "--winograd", w]);
    assert.equal(r.status, 0, r.stderr);
    logits.push(readNpy(out).data as Float32Array);
  }
  assert.ok(relErr(logits[1], logits[0]) < 1e-5 && relErr(logits[2], logits[0]) < 1e-5);
  const onnx = join(d, "wino.onnx");
  const ex = vgg(["export", ...sized, "--out", onnx, "--winograd", "on"]);
  assert.equal(ex.status, 0, ex.stderr);
  assert.match(ex.stdout, /Winograd on/);
  const s = await createSession(onnx);
  const y = (await s.run({ input: x })).logits.data as Float32Array;
  await s.release();
  assert.ok(relErr(y, logits[0]) < 1e-5, "the exported Winograd graph runs in ORT with the same logits");
  assertCleanError(vgg(["infer", ...model, "--input", xf, "--out", join(d, "z.npy"), "--winograd", "sometimes"]), /--winograd/);
  assertCleanError(
    vgg(["infer", ...model, "--input", xf, "--out", join(d, "z.npy"), "--precision", "fp16", "--winograd", "on"]),
    /needs --precision fp32/,
  );
});
