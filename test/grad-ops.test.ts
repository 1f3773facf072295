/** Every op kind's backward against central differences of its training forward (see grad-helpers.ts). */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { gradCheck } from "./grad-helpers.js";
import { hasTorch } from "./helpers.js";
import { prng } from "./train-step-helpers.js";

const TOL = 2e-3;

function assertWorst(worst: Record<string, number>, tol = TOL): void {
  for (const [k, w] of Object.entries(worst)) assert.ok(w < tol, `${k}: relative error ${w.toExponential(2)}`);
}

test("grad: conv 3x3", async () => {
  const r = await gradCheck({ kind: "conv", attrs: { inC: 3, outC: 4, kernel: 3 }, inShape: [3, 5, 4], batch: 2 });
  assertWorst(r.worst);
});

for (const [convAlgo, convWeightGrad] of [
  ["winograd", "winograd"],
  ["winograd", "im2col"],
  ["im2col", "winograd"],
  ["nchw", "taps"],
  ["nchw", "im2col"],
  ["im2col", "taps"],
] as const) {
  test(`grad: conv 3x3, ${convAlgo} forward and input gradient, ${convWeightGrad} weight gradient, equal to im2col`, async () => {
    const c = { kind: "conv" as const, attrs: { inC: 5, outC: 6, kernel: 3 }, inShape: [5, 6, 4], batch: 3 };
    const r = await gradCheck({ ...c, convAlgo, convWeightGrad });
    assertWorst(r.worst);
    const ref = await gradCheck(c, { directions: 0 });
    let scale = 0;
    for (const v of ref.y) scale = Math.max(scale, Math.abs(v));
    for (let k = 0; k < ref.y.length; k++) assert.ok(Math.abs(r.y[k] - ref.y[k]) < 1e-5 * scale, `y ${k}`);
    for (const key of ["x", "weight", "bias"]) {
      const a = r.grads[key];
      const b = ref.grads[key];
      let s = 0;
      for (const v of b) s = Math.max(s, Math.abs(v));
      for (let k = 0; k < a.length; k++) assert.ok(Math.abs(a[k] - b[k]) < 1e-5 * s, `${key} ${k}`);
    }
  });
}

test("grad: conv 3x3 at batch 32 (im2col by Gather instead of Slices), equal to Winograd", async () => {
  const c = { kind: "conv" as const, attrs: { inC: 2, outC: 3, kernel: 3 }, inShape: [2, 4, 2], batch: 32 };
  const r = await gradCheck(c);
  assertWorst(r.worst);
  const { GATHER_MIN_BATCH } = await import("../src/ops/emit.js");
  assert.ok(c.batch >= GATHER_MIN_BATCH);
  const w = await gradCheck({ ...c, convAlgo: "winograd", convWeightGrad: "winograd" }, { directions: 0 });
  for (let k = 0; k < r.y.length; k++) assert.ok(Math.abs(r.y[k] - w.y[k]) < 1e-5, `y ${k}`);
  for (const key of ["x", "weight"])
    for (let k = 0; k < r.grads[key].length; k++) assert.ok(Math.abs(r.grads[key][k] - w.grads[key][k]) < 1e-4, `${key} ${k}`);
});

test("grad: conv 3x3 and 1x1 by ORT's Conv in NCHW (odd map), tap weight gradient", async () => {
  for (const kernel of [3, 1]) {
    const c = { kind: "conv" as const, attrs: { inC: 4, outC: 3, kernel }, inShape: [4, 5, 3], batch: 2 };
    const r = await gradCheck({ ...c, convAlgo: "nchw", convWeightGrad: "taps" });
    assertWorst(r.worst);
    const ref = await gradCheck(c, { directions: 0 });
    for (let k = 0; k < ref.y.length; k++) assert.ok(Math.abs(r.y[k] - ref.y[k]) < 1e-5, `y ${k}`);
    for (const key of ["x", "weight", "bias"])
      for (let k = 0; k < ref.grads[key].length; k++) assert.ok(Math.abs(r.grads[key][k] - ref.grads[key][k]) < 1e-5, `${key} ${k}`);
  }
});

test("grad: conv 1x1", async () => {
  const r = await gradCheck({ kind: "conv", attrs: { inC: 4, outC: 3, kernel: 1 }, inShape: [4, 3, 3], batch: 3 });
  assertWorst(r.worst);
});

test("grad: batchnorm (training mode, batch statistics)", async () => {
  const r = await gradCheck({ kind: "batchnorm", attrs: { channels: 3, eps: 1e-5, momentum: 0.1 }, inShape: [3, 4, 3], batch: 2 });
  assertWorst(r.worst);
});

test("grad: relu", async () => {
  const r = await gradCheck({ kind: "relu", attrs: {}, inShape: [2, 3, 3], batch: 2 }, { h: 1e-3 });
  assertWorst(r.worst);
});

test("grad: max-pool 2x2 (odd map: floor mode crops)", async () => {
  const r = await gradCheck({ kind: "maxpool", attrs: { kernel: 2, stride: 2 }, inShape: [2, 5, 4], batch: 3 }, { h: 1e-3 });
  assertWorst(r.worst);
});

test("grad: ReLU fused into the max-pool after it", async () => {
  const r = await gradCheck(
    { kind: "maxpool", attrs: { kernel: 2, stride: 2 }, inShape: [2, 4, 4], batch: 3, fuse: { reluBefore: true } },
    { h: 1e-3 },
  );
  assertWorst(r.worst);
  // relu(max(x)) = max(relu(x))
  const plain = await gradCheck({ kind: "maxpool", attrs: { kernel: 2, stride: 2 }, inShape: [2, 4, 4], batch: 3 }, { directions: 0 });
  assert.deepEqual(
    Array.from(r.y),
    Array.from(plain.y, (v) => Math.max(0, v)),
  );
});

test("grad: max-pool ties go to the first maximum of the window, as in PyTorch", {
  skip: !hasTorch() && "needs /usr/bin/python3 with torch",
}, async () => {
  // Values from {-0.5, 0, 0.5, 1} tie often (a constant background does the same on real images). On a map that floor
  // mode crops; plain, and with the ReLU before it fused (PyTorch: ReLU, then the pool).
  const [C, H, W, N] = [3, 7, 6, 5];
  const rnd = prng(7);
  const x = Float32Array.from({ length: C * H * W * N }, () => (Math.floor(rnd() * 4) - 1) / 2);
  const k = 2;
  for (const fuse of [undefined, { reluBefore: true }]) {
    const r = await gradCheck(
      { kind: "maxpool", attrs: { kernel: k, stride: k }, inShape: [C, H, W], batch: N, x, fuse },
      { directions: 0 },
    );
    const py = [
      "import sys, json, torch",
      "a = json.load(sys.stdin)",
      `C, H, W, N, k = ${C}, ${H}, ${W}, ${N}, ${k}`,
      "x = torch.tensor(a['x']).reshape(C, H, W, N).permute(3, 0, 1, 2).contiguous().requires_grad_()",
      `y = torch.nn.functional.max_pool2d(x${fuse ? ".relu()" : ""}, k, k)`,
      "y.backward(torch.tensor(a['dy']).reshape(C, H // k, W // k, N).permute(3, 0, 1, 2))",
      "print(json.dumps(x.grad.permute(1, 2, 3, 0).reshape(-1).tolist()))",
    ].join("\n");
    const p = spawnSync("/usr/bin/python3", ["-c", py], {
      input: JSON.stringify({ x: Array.from(x), dy: Array.from(r.dy) }),
      encoding: "utf8",
    });
    assert.equal(p.status, 0, p.stderr);
    const ties = countTiedWindows(x, [C, H, W, N], k);
    assert.ok(ties > 20, `only ${ties} windows tie`);
    // -0 and 0 alike
    assert.deepEqual(
      Array.from(r.grads.x, (v) => v + 0),
      JSON.parse(p.stdout),
      `kernel ${k}${fuse ? ", ReLU fused" : ""}`,
    );
  }
});

/** Windows of a k x k pool (layout [C, H, W, N]) whose maximum appears more than once. */
function countTiedWindows(x: Float32Array, [C, H, W, N]: number[], k: number): number {
  let ties = 0;
  for (let c = 0; c < C; c++)
    for (let h = 0; h + k <= H; h += k)
      for (let w = 0; w + k <= W; w += k)
        for (let n = 0; n < N; n++) {
          const v: number[] = [];
          for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) v.push(x[((c * H + h + i) * W + w + j) * N + n]);
          const m = Math.max(...v);
          if (v.filter((u) => u === m).length > 1) ties++;
        }
  return ties;
}

test("grad: LRN (paper constants, and a strong alpha so the nonlinearity shows)", async () => {
  for (const attrs of [
    { size: 5, alpha: 1e-4, beta: 0.75, k: 2 },
    { size: 5, alpha: 2, beta: 0.75, k: 1 },
    { size: 3, alpha: 1.5, beta: 0.6, k: 1.5 },
  ]) {
    const r = await gradCheck({ kind: "lrn", attrs, inShape: [7, 3, 2], batch: 2 });
    assertWorst(r.worst);
  }
});

test("grad: LRN training forward equals ONNX LRN", async () => {
  const { lrn } = await import("../src/ops/lrn.js");
  const { GraphBuilder } = await import("../src/onnx/builder.js");
  const { createSession } = await import("../src/runtime/ort.js");
  const attrs = { size: 5, alpha: 2, beta: 0.75, k: 1 };
  const r = await gradCheck({ kind: "lrn", attrs, inShape: [7, 3, 2], batch: 2 }, { directions: 0 });
  // The same input through ONNX's LRN in NCHW: x is [C, H, W, N] in the check.
  const g = new GraphBuilder();
  const x = g.input("x", "float32", [2, 7, 3, 2]);
  g.output(lrn.forward({ g, param: () => "" }, attrs, x, [7, 3, 2], "lrn"), "y", "float32", [2, 7, 3, 2]);
  const s = await createSession(g.encode());
  const { prng } = await import("./train-step-helpers.js");
  const rnd = prng(1);
  const xc = Float32Array.from({ length: 84 }, () => rnd() * 2 - 1);
  const toNchw = (a: Float32Array) => {
    const o = new Float32Array(a.length);
    for (let c = 0; c < 7; c++) for (let p = 0; p < 6; p++) for (let n = 0; n < 2; n++) o[n * 42 + c * 6 + p] = a[c * 12 + p * 2 + n];
    return o;
  };
  const want = (await s.run({ x: { dtype: "float32", shape: [2, 7, 3, 2], data: toNchw(xc) } })).y.data as Float32Array;
  const got = toNchw(r.y);
  for (let k = 0; k < got.length; k++) assert.ok(Math.abs(got[k] - want[k]) < 1e-5, `${k}: ${got[k]} vs ${want[k]}`);
});

test("grad: adaptive average pool (non-divisible 5x7 -> 3x3, divisible 4x4 -> 2x2, global, 1x1 -> 7x7 copy)", async () => {
  for (const [inShape, out] of [
    [[2, 5, 7], 3],
    [[2, 4, 4], 2],
    [[3, 3, 2], 1],
    [[2, 1, 1], 7],
    [[2, 3, 3], 3],
  ] as [number[], number][]) {
    const r = await gradCheck({ kind: "adaptive_avgpool", attrs: { out }, inShape, batch: 2 });
    assertWorst(r.worst);
  }
});

test("grad: flatten and linear", async () => {
  assertWorst((await gradCheck({ kind: "flatten", attrs: {}, inShape: [2, 2, 3], batch: 2 })).worst);
  assertWorst((await gradCheck({ kind: "linear", attrs: { inF: 5, outF: 4 }, inShape: [5], batch: 3 })).worst);
});

test("grad: dropout with its (seed-fixed) mask", async () => {
  const r = await gradCheck({ kind: "dropout", attrs: { p: 0.5 }, inShape: [40], batch: 8 });
  assertWorst(r.worst);
  // inverted dropout: kept elements scaled by 1/(1-p), the rest 0; the gradient is the same mask
  const { counterRandom } = await import("../src/random.js");
  const u = counterRandom(12345, 3, 320);
  const { prng } = await import("./train-step-helpers.js");
  const rnd = prng(1);
  const x = Float32Array.from({ length: 320 }, () => rnd() * 2 - 1);
  let kept = 0;
  for (let e = 0; e < 320; e++) {
    const keep = u[e] < 0.5 * 2 ** 32;
    kept += keep ? 1 : 0;
    assert.ok(Math.abs(r.y[e] - (keep ? 2 * x[e] : 0)) < 1e-6, `element ${e}`);
  }
  assert.ok(kept > 120 && kept < 200, `kept ${kept} of 320`);
});
