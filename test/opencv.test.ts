/**
 * `vgg export` files load in another ONNX consumer: OpenCV's DNN module (Debian's python3-opencv) reads the real
 * binary's export at 224 (the 7x7 map, the adaptive pool is the identity) and at 64 (a 2x2 map, the adaptive pool is
 * a MatMul with the averaging matrix) and gives ORT's logits. The files are vgg11 at width /16 with random weights:
 * the same graph as the full-size export, small enough to be quick.
 *
 * Skipped only where cv2 cannot be imported and CI is unset; in CI (which installs python3-opencv) a missing cv2
 * fails the test.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy, writeNpy } from "../src/io/npy.js";
import { Xoshiro128 } from "../src/random.js";
import { createSession } from "../src/runtime/ort.js";
import type { Tensor } from "../src/tensor.js";
import { relErr, tmp, vggAsync } from "./helpers.js";

const PY = "/usr/bin/python3";

/** Reads the model with cv2.dnn.readNetFromONNX, runs the NCHW float32 input, writes the output as .npy. */
const OPENCV_RUN = `
import sys, numpy as np, cv2
model, x, out = sys.argv[1:4]
net = cv2.dnn.readNetFromONNX(model)
net.setInput(np.load(x))
np.save(out, np.ascontiguousarray(net.forward(), dtype=np.float32))
print(cv2.__version__)
`;

function cv2Missing(): string | undefined {
  const r = spawnSync(PY, ["-c", "import cv2"], { encoding: "utf8" });
  if (r.status === 0) return undefined;
  return r.error ? `${PY}: ${r.error.message}` : (r.stderr.trim().split("\n").pop() ?? "import cv2 failed");
}

function randomInput(n: number, s: number, seed: number): Tensor {
  const rng = new Xoshiro128(seed);
  const data = new Float32Array(n * 3 * s * s);
  for (let k = 0; k < data.length; k++) data[k] = rng.next() * 4 - 2;
  return { dtype: "float32", shape: [n, 3, s, s], data };
}

for (const size of [224, 64]) {
  test(`OpenCV DNN reads vgg export (vgg11, input ${size}) and gives ORT's logits`, { timeout: 120_000 }, async (t) => {
    const missing = cv2Missing();
    if (missing !== undefined) {
      if (process.env.CI) assert.fail(`OpenCV's Python module is not importable (${missing}): CI installs python3-opencv`);
      return t.skip(`python3-opencv not installed (${missing})`);
    }
    const d = tmp();
    const model = join(d, "m.onnx");
    const e = await vggAsync(["export", "--arch", "vgg11", "--width-divisor", "16", "--input-size", String(size), "--out", model]);
    assert.equal(e.status, 0, e.stderr);
    const x = randomInput(2, size, size);
    writeNpy(join(d, "x.npy"), x);
    const s = await createSession(model);
    const want = (await s.run({ input: x })).logits;
    await s.release();
    assert.deepEqual(want.shape, [2, 1000]);
    const r = spawnSync(PY, ["-c", OPENCV_RUN, model, join(d, "x.npy"), join(d, "y.npy")], { encoding: "utf8", timeout: 60_000 });
    assert.equal(r.status, 0, `OpenCV rejected the ${size} export:\n${r.stderr}`);
    const got = readNpy(join(d, "y.npy"));
    assert.deepEqual(got.shape, want.shape);
    const err = relErr(got.data as Float32Array, want.data as Float32Array);
    assert.ok(err <= 1e-4, `OpenCV ${r.stdout.trim()} vs ORT at ${size}: relative error ${err}`);
  });
}
