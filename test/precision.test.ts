/** --precision fp16 / int8: the float16 conversion, the QDQ rewrite, what ORT runs, and accuracy after training. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import sharp from "sharp";
import { readIdxImages, readIdxLabels } from "../src/data/idx.js";
import { FASHION_MNIST_DIR } from "../src/data/spec.js";
import { floatsToHalf, floatToHalf } from "../src/graph/half.js";
import { buildInferenceGraph } from "../src/graph/infer.js";
import { lowerPrecision, type PrecisionOptions } from "../src/graph/precision.js";
import { activationParams, quantizeWeight, roundEven } from "../src/graph/quantize.js";
import { readNpy, writeNpy } from "../src/io/npy.js";
import { Xoshiro128 } from "../src/random.js";
import { compileSpec, openCompiled } from "../src/runtime/open-graph.js";
import { createSession } from "../src/runtime/ort.js";
import { numel, type Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { halfToFloat } from "../src/weights/match.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, relErr, tmp, vgg } from "./helpers.js";

test("float32 -> float16: known bit patterns (round to nearest even, subnormals, overflow, inf, nan)", () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [0.1, 0x2e66],
    [1 / 3, 0x3555],
    [Math.PI, 0x4248],
    [65504, 0x7bff], // largest finite half
    [65519.99, 0x7bff], // just under the midpoint to 65536
    [65520, 0x7c00], // the midpoint rounds (to even) up: infinity
    [1e6, 0x7c00],
    [-1e6, 0xfc00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // half of it: tie, to even (0)
    [2 ** -25 * 1.0000001, 0x0001], // just above the tie
    [3 * 2 ** -25, 0x0002], // 1.5 ulp: tie, to even (2)
    [5 * 2 ** -25, 0x0002], // 2.5 ulp: tie, to even (2)
    [-(2 ** -26), 0x8000],
    [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01: even
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02: even
    [1 + 2 ** -11 + 2 ** -20, 0x3c01],
    [2047.5, 0x6800], // halves in [1024, 2048) are 1 apart: a tie between 2047 (odd) and 2048 (even)
    [2046.5, 0x67fe], // a tie between 2046 (even) and 2047
  ];
  for (const [x, bits] of cases)
    assert.equal(floatToHalf(x), bits, `${x}: got 0x${floatToHalf(x).toString(16)}, want 0x${bits.toString(16)}`);
  const nan = floatToHalf(Number.NaN);
  assert.ok((nan & 0x7c00) === 0x7c00 && (nan & 0x3ff) !== 0, "NaN stays NaN");
  assert.ok(Number.isNaN(halfToFloat(floatsToHalf(Float32Array.of(Number.NaN))[0])));
});

test("float32 -> float16: every half round-trips, and every midpoint between neighbours rounds to the even one", () => {
  const all = new Float32Array(0x7c00);
  for (let h = 0; h < 0x7c00; h++) all[h] = halfToFloat(h);
  const back = floatsToHalf(all);
  const neg = floatsToHalf(all.map((v) => -v));
  for (let h = 0; h < 0x7c00; h++) {
    if (back[h] !== h) assert.fail(`half 0x${h.toString(16)} came back as 0x${back[h].toString(16)}`);
    if (neg[h] !== (h | 0x8000)) assert.fail(`-half 0x${h.toString(16)} came back as 0x${neg[h].toString(16)}`);
  }
  // Midpoints (exact in float32: 12 significant bits), and the float32 just below and above each.
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 0x7bff; h++) {
    f[0] = (all[h] + all[h + 1]) / 2;
    const mid = u[0];
    assert.equal(floatToHalf(f[0]), h & 1 ? h + 1 : h, `midpoint after 0x${h.toString(16)}`);
    u[0] = mid - 1;
    if (h > 0 || f[0] > 0) assert.equal(floatToHalf(f[0]), h, `below midpoint after 0x${h.toString(16)}`);
    u[0] = mid + 1;
    assert.equal(floatToHalf(f[0]), h + 1, `above midpoint after 0x${h.toString(16)}`);
  }
});

test("int8 helpers: round half to even, activation parameters, symmetric per-channel weights", () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundEven), [0, 2, 2, 0, -2, -2, 2, -3]);
  const u = activationParams({ min: 0, max: 2.55 }, "uint8");
  const s = activationParams({ min: 0, max: 2.55 }, "int8");
  assert.ok(Math.abs(u.scale - 0.01) < 1e-12 && u.zeroPoint === 0 && Math.abs(s.scale - 0.01) < 1e-12 && s.zeroPoint === -128);
  const p = activationParams({ min: -1, max: 3 }, "uint8");
  assert.ok(Math.abs(p.scale - 4 / 255) < 1e-12 && p.zeroPoint === 64);
  assert.deepEqual(activationParams({ min: 0.5, max: 0.5 }, "uint8").zeroPoint, 0); // the range always holds 0
  const w: Tensor = { dtype: "float32", shape: [2, 3], data: Float32Array.of(1, -0.5, 0.25, 0, 0, -4) };
  const { q, scales } = quantizeWeight(w, 0, true, false);
  assert.deepEqual(Array.from(scales), [Math.fround(1 / 127), Math.fround(4 / 127)]);
  assert.deepEqual(Array.from(q), [127, -64, 32, 0, 0, -127]);
  assert.deepEqual(Array.from(quantizeWeight(w, 0, false, false).q), [32, -16, 8, 0, 0, -127]);
});

interface ProfileEvent {
  cat?: string;
  name: string;
  ts: number;
  args?: { op_name?: string };
}

/** Kernels ORT ran per op type in the session's last run (from its profiler). */
async function kernelsRun(
  spec: ReturnType<typeof buildInferenceGraph>,
  x: Tensor,
): Promise<{ kernels: Map<string, number>; out: Record<string, Tensor> }> {
  const dir = tmp();
  const prefix = join(dir, "p");
  const s = await openCompiled(compileSpec(spec), { threads: 1, profilePrefix: prefix });
  const out = await s.run({ input: x });
  s.endProfiling();
  await s.release();
  const file = readdirSync(dir).find((f) => f.endsWith(".json"));
  assert.ok(file, "ORT wrote no profile");
  const ev = JSON.parse(readFileSync(join(dir, file), "utf8")) as ProfileEvent[];
  rmSync(dir, { recursive: true, force: true });
  const kernels = new Map<string, number>();
  for (const e of ev)
    if (e.cat === "Node" && e.name.endsWith("_kernel_time"))
      kernels.set(e.args?.op_name ?? "?", (kernels.get(e.args?.op_name ?? "?") ?? 0) + 1);
  return { kernels, out };
}

function randomImages(n: number, shape: number[], seed: number): Tensor {
  const rng = new Xoshiro128(seed);
  const size = n * numel(shape);
  return { dtype: "float32", shape: [n, ...shape], data: new Float32Array(size).map(() => rng.normal()) };
}

test("ORT runs the int8 graph on integer kernels (QLinearConv, QGemm) and fp16-stored weights on the fp32 kernels", async () => {
  const m = buildModel("vgg11_bn", { head: "compact", widthDivisor: 8, inputSize: 32, numClasses: 10 });
  const w = initWeights(m, "torchvision", 3);
  const taps = ["relu4_2", "logits"];
  const spec = buildInferenceGraph(m, w, { taps });
  const calib = randomImages(16, m.inputShape, 1);
  const x = randomImages(4, m.inputShape, 2);
  const ref = await kernelsRun(spec, x);
  // (int8 activations are given only the logits: ORT 1.30 on x86 turns S8S8 into U8S8 itself, and a tap output
  // in between blocks that for the tapped layer, which then runs in float.)
  const logitsOnly = buildInferenceGraph(m, w);
  const variants: [string, PrecisionOptions, boolean][] = [
    ["fp16", { precision: "fp16" }, true],
    ["int8 U8S8", { precision: "int8", calibration: calib }, true],
    ["int8 U8S8 per-tensor", { precision: "int8", calibration: calib, quantize: { perChannel: false } }, true],
    ["int8 S8S8", { precision: "int8", calibration: calib, quantize: { activations: "int8" } }, false],
  ];
  for (const [name, p, withTap] of variants) {
    const { kernels, out } = await kernelsRun(await lowerPrecision(m, withTap ? spec : logitsOnly, p, 1), x);
    const ops = [...kernels.keys()].sort().join(",");
    if (p.precision === "fp16") {
      assert.ok(!kernels.has("Cast"), `${name}: Casts were not folded at load: ${ops}`);
      assert.equal(kernels.get("Conv"), 8, `${name}: ${ops}`);
      assert.ok(relErr(out.logits.data as Float32Array, ref.out.logits.data as Float32Array) < 2e-3, name);
    } else {
      assert.equal(kernels.get("QLinearConv"), 8, `${name}: ${ops}`);
      assert.equal(kernels.get("QGemm"), 1, `${name}: ${ops}`);
      for (const float of ["Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul"])
        assert.ok(!kernels.has(float), `${name}: float ${float} ran: ${ops}`);
      assert.equal(kernels.get("DequantizeLinear") ?? 0, withTap ? 1 : 0, `${name}: only the relu4_2 tap is dequantized: ${ops}`);
      // Random weights and inputs: the int8 model follows the float one closely, not exactly.
      for (const t of withTap ? taps : ["logits"]) {
        const e = relErr(out[t].data as Float32Array, ref.out[t].data as Float32Array);
        assert.ok(e < 0.1, `${name} ${t}: relative error ${e}`);
      }
      if (withTap)
        assert.ok(
          (out.relu4_2.data as Float32Array).every((v) => v >= 0),
          "the absorbed ReLU still clamps",
        );
    }
  }
});

const hasOnnx = spawnSync("/usr/bin/python3", ["-c", "import onnx"]).status === 0;

test("vgg export --precision fp16|int8: half and a quarter of the size, ONNX's checker accepts them, ORT runs them", async (t) => {
  const d = tmp();
  const common = ["export", "--arch", "vgg11_bn", "--width-divisor", "8", "--input-size", "32", "--num-classes", "10", "--head", "compact"];
  const calib = join(d, "calib.npy");
  writeNpy(calib, randomImages(8, [3, 32, 32], 5));
  const files: Record<string, string> = { fp32: join(d, "fp32.onnx"), fp16: join(d, "fp16.onnx"), int8: join(d, "int8.onnx") };
  for (const [p, out] of Object.entries(files)) {
    const r = vgg([...common, "--precision", p, "--out", out, ...(p === "int8" ? ["--calibrate", calib] : [])]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`, ${p},`));
  }
  const size = (p: string) => statSync(files[p]).size;
  assert.ok(size("fp16") < 0.52 * size("fp32"), `fp16 ${size("fp16")} vs fp32 ${size("fp32")}`);
  assert.ok(size("int8") < 0.27 * size("fp32"), `int8 ${size("int8")} vs fp32 ${size("fp32")}`);
  const x = randomImages(2, [3, 32, 32], 6);
  const y: Record<string, Float32Array> = {};
  for (const [p, f] of Object.entries(files)) {
    const s = await createSession(f);
    y[p] = (await s.run({ input: x })).logits.data as Float32Array;
    await s.release();
  }
  assert.ok(relErr(y.fp16, y.fp32) < 2e-3);
  assert.ok(relErr(y.int8, y.fp32) < 0.1);
  // vgg infer runs the same int8 model (same calibration, same numbers as the exported file).
  const xin = join(d, "x.npy");
  writeNpy(xin, x);
  const arch = ["--arch", "vgg11_bn", "--width-divisor", "8", "--num-classes", "10", "--head", "compact"];
  const inf = vgg(["infer", ...arch, "--input", xin, "--out", join(d, "y.npy"), "--precision", "int8", "--calibrate", calib]);
  assert.equal(inf.status, 0, inf.stderr);
  assert.deepEqual(Array.from(readNpy(join(d, "y.npy")).data as Float32Array), Array.from(y.int8));
  // int8 without calibration data is refused; --calibrate-random is allowed (for speed tests).
  assertCleanError(vgg([...common, "--precision", "int8", "--out", join(d, "x.onnx")]), /--calibrate/);
  assert.ok(!existsSync(join(d, "x.onnx")));
  assert.equal(vgg([...common, "--precision", "int8", "--calibrate-random", "--out", join(d, "r.onnx")]).status, 0);
  // Calibration from image files (a directory, preprocessed with the torchvision preset); a file that does not
  // decode is skipped with a note.
  const imgs = join(d, "imgs");
  mkdirSync(imgs);
  const rng = new Xoshiro128(9);
  for (let k = 0; k < 3; k++) {
    const px = Buffer.from(new Uint8Array(40 * 50 * 3).map(() => Math.floor(rng.next() * 256)));
    await sharp(px, { raw: { width: 50, height: 40, channels: 3 } })
      .png()
      .toFile(join(imgs, `${k}.png`));
  }
  writeFileSync(join(imgs, "notes.txt"), "not an image");
  const fromDir = vgg([...common, "--precision", "int8", "--calibrate", imgs, "--out", join(d, "dir.onnx")]);
  assert.equal(fromDir.status, 0, fromDir.stderr);
  assert.match(fromDir.stderr, /skipped 1 file/);
  // ONNX's checker is Python-only; CI installs python3-onnx, so this skips only on machines without it.
  if (!hasOnnx) return t.skip("python3-onnx not installed: checker not run");
  const py = spawnSync(
    "/usr/bin/python3",
    [
      "-c",
      "import onnx,sys\nfor f in sys.argv[1:]:\n  onnx.checker.check_model(onnx.load(f), full_check=True)\nprint('ok')",
      files.fp16,
      files.int8,
    ],
    { encoding: "utf8" },
  );
  assert.equal(py.stdout.trim(), "ok", py.stderr);
});

/** A Fashion-MNIST subset as npy (28x28 padded to 32x32, as the built-in loader does), or null without the data. */
function fashionSubset(dir: string, nTrain: number, nTest: number): string | null {
  const f = (n: string) => join(FASHION_MNIST_DIR, `${n}.gz`);
  if (!existsSync(f("train-images-idx3-ubyte"))) return null;
  const write = (img: string, lab: string, n: number, name: string) => {
    const x = readIdxImages(f(img));
    const y = readIdxLabels(f(lab));
    const out = new Uint8Array(n * 32 * 32);
    const src = x.data as Uint8Array;
    for (let i = 0; i < n; i++)
      for (let r = 0; r < 28; r++) out.set(src.subarray(i * 784 + r * 28, i * 784 + r * 28 + 28), i * 1024 + (r + 2) * 32 + 2);
    writeNpy(join(dir, `x${name}.npy`), { dtype: "uint8", shape: [n, 1, 32, 32], data: out });
    writeNpy(join(dir, `y${name}.npy`), { dtype: "int64", shape: [n], data: BigInt64Array.from(Array.from(y.subarray(0, n), BigInt)) });
    return `${join(dir, `x${name}.npy`)},${join(dir, `y${name}.npy`)}`;
  };
  return `npy:${write("train-images-idx3-ubyte", "train-labels-idx1-ubyte", nTrain, "train")};${write("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", nTest, "test")}`;
}

// vgg11_bn width/8 trained for 3 epochs on 5,500 Fashion-MNIST images (~85% top-1 on 2,000 official test images; an
// untrained model's near-tied logits would make agreement meaningless), then evaluated in the three precisions.
test("a model trained briefly on Fashion-MNIST: int8 top-1 agrees with fp32 on >= 99% of held-out images", {
  timeout: 120_000,
}, async (t) => {
  const d = tmp();
  const data = fashionSubset(d, 6000, 2000);
  // Real Fashion-MNIST comes from a Debian package that CI installs; no network at test time to fetch it otherwise.
  if (!data) return t.skip(`Fashion-MNIST not in ${FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)`);
  const run = join(d, "run");
  const tr = vgg([
    "train",
    "--arch",
    "vgg11_bn",
    "--head",
    "compact",
    "--width-divisor",
    "8",
    "--data",
    data,
    "--out",
    run,
    "--epochs",
    "3",
    "--batch-size",
    "64",
    "--lr",
    "0.05",
    "--nesterov",
    "--schedule",
    "cosine",
    "--augment",
    "none",
    "--val",
    "500",
    "--no-progress",
    "--workers",
    "0",
  ]);
  assert.equal(tr.status, 0, tr.stderr);
  const ev = vgg([
    "eval",
    "--weights",
    join(run, "best.safetensors"),
    "--data",
    data,
    "--precision",
    "fp32,fp16,int8",
    "--calibrate",
    "train:500",
    "--json",
  ]);
  assert.equal(ev.status, 0, ev.stderr);
  const r = JSON.parse(ev.stdout) as { precisions: { precision: string; n: number; top1: number; agreement: number }[] };
  const by = Object.fromEntries(r.precisions.map((p) => [p.precision, p]));
  t.diagnostic(
    r.precisions.map((p) => `${p.precision}: top-1 ${(100 * p.top1).toFixed(2)}%, agreement ${(100 * p.agreement).toFixed(2)}%`).join("; "),
  );
  assert.equal(by.fp32.n, 2000);
  assert.ok(by.fp32.top1 > 0.8, `the model did not learn: top-1 ${by.fp32.top1}`);
  assert.ok(by.fp16.agreement >= 0.998, `fp16 agreement ${by.fp16.agreement}`);
  assert.ok(by.int8.agreement >= 0.99, `int8 agreement ${by.int8.agreement}`);
  assert.ok(Math.abs(by.int8.top1 - by.fp32.top1) < 0.01);
});
