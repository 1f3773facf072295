import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy, writeNpy } from "../src/io/npy.js";
import { createSession } from "../src/runtime/ort.js";
import { assertCleanError, tmp, vgg } from "./helpers.js";

test("vgg list prints all twelve models with params and GFLOPs", () => {
  const r = vgg(["list", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const rows = JSON.parse(r.stdout) as { arch: string; params: number; gflops: number }[];
  assert.equal(rows.length, 12);
  assert.equal(rows.find((x) => x.arch === "vgg16")?.params, 138_357_544);
  assert.equal(rows.find((x) => x.arch === "vgg16_1x1_bn")?.params, 133_647_400);
  const text = vgg(["list"]).stdout;
  assert.match(text, /vgg19_bn\s+E \(BN\)\s+143,678,248\s+19\.63/);
});

test("vgg summary: table and JSON totals", () => {
  const r = vgg(["summary", "vgg16_bn", "--num-classes", "4", "--json"]);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.total.params, 134_285_380);
  assert.deepEqual(s.layers.at(-1).outputShape, [4]);
  const t = vgg(["summary", "--arch", "vgg11", "--input-size", "32", "--head", "compact", "--num-classes", "10"]);
  assert.equal(t.status, 0, t.stderr);
  assert.match(t.stdout, /features\.0\s+conv\s+\[64, 32, 32\]\s+1,792/);
  assert.match(t.stdout, /total params: 9,225,610/);
});

test("vgg infer: random init is seeded; taps have their shapes", async () => {
  const d = tmp();
  const x = new Float32Array(2 * 3 * 40 * 40).map((_, k) => Math.sin(k));
  await writeNpy(join(d, "x.npy"), { dtype: "float32", shape: [2, 3, 40, 40], data: x });
  const common = ["infer", "--arch", "vgg11_bn", "--width-divisor", "16", "--num-classes", "7", "--input", join(d, "x.npy"), "--seed", "3"];
  for (const out of ["a.npy", "b.npy"]) {
    const r = vgg([...common, "--out", join(d, out)]);
    assert.equal(r.status, 0, r.stderr);
  }
  const a = await readNpy(join(d, "a.npy"));
  const b = await readNpy(join(d, "b.npy"));
  assert.deepEqual(a.shape, [2, 7]);
  assert.deepEqual(Array.from(a.data as Float32Array), Array.from(b.data as Float32Array));
  const r = vgg([...common, "--tap", "relu3_2", "--out", join(d, "t.npy")]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual((await readNpy(join(d, "t.npy"))).shape, [2, 16, 10, 10]);
});

test("vgg export writes a file ORT runs standalone and ONNX's checker accepts", async (t) => {
  const d = tmp();
  const out = join(d, "m.onnx");
  const r = vgg(["export", "--arch", "vgg11_lrn_bn", "--width-divisor", "16", "--input-size", "57", "--num-classes", "5", "--out", out]);
  assert.equal(r.status, 0, r.stderr);
  const s = await createSession(out);
  const y = await s.run({ input: { dtype: "float32", shape: [3, 3, 57, 57], data: new Float32Array(3 * 3 * 57 * 57).fill(0.5) } });
  assert.deepEqual(y.logits.shape, [3, 5]);
  const py = spawnSync(
    "/usr/bin/python3",
    ["-c", "import onnx,sys; m=onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True); print('ok')", out],
    { encoding: "utf8" },
  );
  // ONNX's checker is Python-only; CI installs python3-onnx, so this skips only on machines without it.
  if (py.error || /No module named/.test(py.stderr)) return t.skip("python3-onnx not installed");
  assert.equal(py.stdout.trim(), "ok", py.stderr);
});

test("bad flags and inputs give one clean line and a non-zero exit", async () => {
  const d = tmp();
  assertCleanError(vgg(["summary", "vgg17"]), /unknown arch 'vgg17'/);
  assertCleanError(vgg(["summary", "vgg16", "--input-size", "16"]), /input size 16 is under the minimum 32/);
  assertCleanError(vgg(["summary", "vgg16", "--num-classes", "abc"]), /num-classes/);
  assertCleanError(vgg(["summary", "vgg16", "--head", "tiny"]), /head/);
  await writeNpy(join(d, "small.npy"), { dtype: "float32", shape: [1, 3, 16, 16], data: new Float32Array(768) });
  assertCleanError(
    vgg(["infer", "--arch", "vgg11", "--input", join(d, "small.npy"), "--out", join(d, "o.npy")]),
    /small\.npy.*input size 16 is under the minimum 32/,
  );
  writeFileSync(join(d, "bad.npy"), "\x93NUMPY garbage");
  assertCleanError(vgg(["infer", "--arch", "vgg11", "--input", join(d, "bad.npy"), "--out", join(d, "o.npy")]), /bad\.npy/);
  assertCleanError(vgg(["infer", "--arch", "vgg11", "--input", join(d, "missing.npy"), "--out", join(d, "o.npy")]), /missing\.npy/);
  await writeNpy(join(d, "ok.npy"), { dtype: "float32", shape: [1, 3, 32, 32], data: new Float32Array(3072) });
  const tap = ["infer", "--arch", "vgg11", "--width-divisor", "16", "--input", join(d, "ok.npy"), "--out", join(d, "o.npy")];
  assertCleanError(vgg([...tap, "--tap", "relu9_9"]), /unknown tap 'relu9_9'/);
  assertCleanError(vgg([...tap, "--in-channels", "1"]), /ok\.npy.*shape \[1, 3, 32, 32\].*\[N, 1, 32, 32\]/);
  assertCleanError(vgg(["bogus"]), /unknown command/);
});

test("vgg --version names the package and the engine", () => {
  const r = vgg(["--version"]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+ \(onnxruntime-node 1\.30\.0\)$/);
});
