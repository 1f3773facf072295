/** Softmax cross-entropy (with label smoothing) and its gradient, against float64 references and differences. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { GraphBuilder } from "../src/onnx/builder.js";
import { TRAIN_OPSET } from "../src/ops/emit.js";
import { softmaxCrossEntropy } from "../src/ops/loss.js";
import { createSession } from "../src/runtime/ort.js";
import { prng } from "./train-step-helpers.js";

function reference(z: Float64Array, y: number[], K: number, N: number, eps: number) {
  // z in [K, N] layout
  let loss = 0;
  const grad = new Float64Array(K * N);
  let c1 = 0;
  let c5 = 0;
  for (let n = 0; n < N; n++) {
    const col = Array.from({ length: K }, (_, k) => z[k * N + n]);
    const m = Math.max(...col);
    const lse = m + Math.log(col.reduce((s, v) => s + Math.exp(v - m), 0));
    for (let k = 0; k < K; k++) {
      const q = (k === y[n] ? 1 - eps : 0) + eps / K;
      loss -= (q * (col[k] - lse)) / N;
      grad[k * N + n] = (Math.exp(col[k] - lse) - q) / N;
    }
    const rank = col.filter((v) => v > col[y[n]]).length;
    if (rank === 0) c1++;
    if (rank < 5) c5++;
  }
  return { loss, grad, c1, c5 };
}

for (const [K, N, eps] of [
  [10, 6, 0],
  [10, 6, 0.1],
  [3, 4, 0.2],
]) {
  test(`softmax cross-entropy K=${K} N=${N} label smoothing ${eps}`, async () => {
    const g = new GraphBuilder();
    g.opsets.set("", TRAIN_OPSET);
    const z = g.input("z", "float32", [K, N]);
    const y = g.input("y", "int64", [N]);
    const r = softmaxCrossEntropy(g, z, y, K, N, eps);
    g.output(r.loss, "loss", "float32", []);
    g.output(r.dlogits, "dz", "float32", [K, N]);
    g.output(r.correct1, "c1", "float32", []);
    g.output(r.correct5, "c5", "float32", []);
    const s = await createSession(g.encode());
    const rnd = prng(K * 100 + N);
    const zv = Float32Array.from({ length: K * N }, () => (rnd() * 2 - 1) * 3);
    const labels = Array.from({ length: N }, (_, n) => (n * 7 + 3) % K);
    const run = async (v: Float32Array) =>
      s.run({
        z: { dtype: "float32", shape: [K, N], data: v },
        y: { dtype: "int64", shape: [N], data: BigInt64Array.from(labels.map(BigInt)) },
      });
    const out = await run(zv);
    const ref = reference(Float64Array.from(zv), labels, K, N, eps);
    assert.ok(Math.abs((out.loss.data[0] as number) - ref.loss) < 1e-5, `loss ${out.loss.data[0]} vs ${ref.loss}`);
    const dz = out.dz.data as Float32Array;
    for (let k = 0; k < K * N; k++) assert.ok(Math.abs(dz[k] - ref.grad[k]) < 1e-6, `grad ${k}`);
    assert.equal(out.c1.data[0], ref.c1);
    assert.equal(out.c5.data[0], ref.c5);
    // central differences of the ORT loss along a few directions
    const h = 1e-2;
    for (let d = 0; d < 3; d++) {
      const v = Float32Array.from({ length: K * N }, () => rnd() * 2 - 1);
      const plus = (await run(Float32Array.from(zv, (a, k) => a + h * v[k]))).loss.data[0] as number;
      const minus = (await run(Float32Array.from(zv, (a, k) => a - h * v[k]))).loss.data[0] as number;
      const numeric = (plus - minus) / (2 * h);
      const analytic = dz.reduce((acc, gk, k) => acc + gk * v[k], 0);
      assert.ok(Math.abs(numeric - analytic) < 2e-3 * Math.max(1e-2, Math.abs(analytic)), `direction ${d}: ${numeric} vs ${analytic}`);
    }
  });
}
