/**
 * Initialisation schemes: seeded and reproducible, and with the distributions they claim, checked on real-size
 * layers (a 256->512 3x3 conv as in VGG's block 4, and a 512->1000 FC) with tolerances from the sample size.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { numel, type StateDict, type Tensor } from "../src/tensor.js";
import { INIT_SCHEMES, type InitScheme, initWeights } from "../src/weights/init.js";
import { buildModel, stateSpec, type VggModel } from "../src/zoo/model.js";

/** Real VGG layer sizes: conv 3->64, 64->256, 256->512 (1.18M weights), BN after each, FC 512->1000 (512k). */
const model: VggModel = buildModel("vgg11_bn", {
  config: [64, "M", 256, "M", 512, "M"],
  head: "compact",
  numClasses: 1000,
  inputSize: 32,
});
const plain: VggModel = buildModel("vgg11", { widthDivisor: 8, numClasses: 100, inputSize: 32 });

const cache = new Map<string, StateDict>();
function init(m: VggModel, scheme: InitScheme, seed: number): StateDict {
  const key = `${m === model ? "m" : "p"}/${scheme}/${seed}`;
  let sd = cache.get(key);
  if (!sd) {
    sd = initWeights(m, scheme, seed);
    cache.set(key, sd);
  }
  return sd;
}

function bytes(t: Tensor): Buffer {
  return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

interface Moments {
  n: number;
  mean: number;
  variance: number;
  maxAbs: number;
  /** Fraction of |x| <= `within`. */
  inside: number;
}

function moments(a: Float32Array, within = 0): Moments {
  let s = 0;
  let s2 = 0;
  let maxAbs = 0;
  let inside = 0;
  for (const x of a) {
    s += x;
    s2 += x * x;
    const ax = Math.abs(x);
    if (ax > maxAbs) maxAbs = ax;
    if (ax <= within) inside++;
  }
  const n = a.length;
  const mean = s / n;
  return { n, mean, variance: s2 / n - mean * mean, maxAbs, inside: inside / n };
}

/** Weights of conv and linear layers with their fans, as torch computes them (fan_out = outC * k * k). */
function weightLayers(m: VggModel) {
  return stateSpec(m)
    .filter((e) => e.param.suffix === "weight" && (e.layer.kind === "conv" || e.layer.kind === "linear"))
    .map((e) => {
      const s = e.param.shape;
      const rf = s.length === 4 ? s[2] * s[3] : 1;
      return { key: e.key, kind: e.layer.kind, fanIn: s[1] * rf, fanOut: s[0] * rf, numel: numel(s) };
    });
}

/** Normal(0, std): mean, standard deviation and the one-sigma mass, each within 5 standard errors. */
function assertNormal(a: Float32Array, std: number, what: string): void {
  const m = moments(a, std);
  const n = m.n;
  assert.ok(Math.abs(m.mean) <= (5 * std) / Math.sqrt(n), `${what}: mean ${m.mean} (std ${std}, n ${n})`);
  // The sample std of n normals has relative standard error 1/sqrt(2n).
  const rel = Math.sqrt(m.variance) / std - 1;
  assert.ok(Math.abs(rel) <= 5 / Math.sqrt(2 * n), `${what}: std ${Math.sqrt(m.variance)}, want ${std} (n ${n})`);
  const p = 0.682689492;
  assert.ok(Math.abs(m.inside - p) <= 5 * Math.sqrt((p * (1 - p)) / n), `${what}: ${m.inside} of values within one std, want ${p}`);
}

function assertConst(t: Tensor | undefined, v: number, what: string): void {
  assert.ok(t, what);
  assert.equal(t.dtype, "float32", what);
  assert.ok(
    (t.data as Float32Array).every((x) => x === v),
    `${what}: not all ${v}`,
  );
}

/** Everything that is not a conv/linear weight is fixed: biases 0, BN gamma 1, beta 0, mean 0, var 1, count 0. */
function assertFixedParts(sd: StateDict, m: VggModel, what: string): void {
  for (const { key, layer, param } of stateSpec(m)) {
    const t = sd.get(key);
    if (param.suffix === "num_batches_tracked") {
      assert.equal(t?.dtype, "int64", key);
      assert.deepEqual(Array.from(t?.data as BigInt64Array), [0n], key);
    } else if (param.suffix === "bias") assertConst(t, 0, `${what} ${key}`);
    else if (layer.kind === "batchnorm")
      assertConst(t, param.suffix === "weight" || param.suffix === "running_var" ? 1 : 0, `${what} ${key}`);
  }
}

test("every scheme is seeded: same seed gives identical bytes, another seed other weights", () => {
  for (const m of [model, plain]) {
    for (const scheme of INIT_SCHEMES) {
      const a = init(m, scheme, 7);
      const again = initWeights(m, scheme, 7);
      const b = init(m, scheme, 8);
      assert.deepEqual(
        [...a.keys()],
        stateSpec(m).map((e) => e.key),
      );
      for (const [k, t] of a) {
        const spec = stateSpec(m).find((e) => e.key === k);
        assert.deepEqual(t.shape, spec?.param.shape, k);
        assert.ok(bytes(t).equals(bytes(again.get(k) as Tensor)), `${scheme} ${k}: same seed, other bytes`);
      }
      for (const { key } of weightLayers(m)) {
        const x = a.get(key)?.data as Float32Array;
        const y = b.get(key)?.data as Float32Array;
        let same = 0;
        for (let k = 0; k < x.length; k++) if (x[k] === y[k]) same++;
        assert.ok(same <= x.length * 0.01, `${scheme} ${key}: seeds 7 and 8 share ${same} of ${x.length} values`);
      }
    }
  }
  // Seeds are not folded together near zero, and the default seed is 0.
  const w = "features.0.weight";
  assert.ok(!bytes(init(plain, "torchvision", 0).get(w) as Tensor).equals(bytes(initWeights(plain, "torchvision", 1).get(w) as Tensor)));
  assert.ok(bytes(initWeights(plain).get(w) as Tensor).equals(bytes(init(plain, "torchvision", 0).get(w) as Tensor)));
});

test("torchvision: conv ~ N(0, 2/fan_out) (Kaiming, fan_out = outC*k*k), linear ~ N(0, 0.01^2), the rest fixed", () => {
  for (const m of [model, plain]) {
    const sd = init(m, "torchvision", 7);
    for (const l of weightLayers(m)) {
      const std = l.kind === "conv" ? Math.sqrt(2 / l.fanOut) : 0.01;
      assertNormal(sd.get(l.key)?.data as Float32Array, std, `torchvision ${l.key}`);
    }
    assertFixedParts(sd, m, "torchvision");
  }
  // The big conv really is big, so the 5-sigma bands above are tight (about 0.3% on its std).
  const conv = weightLayers(model).find((l) => l.fanIn === 256 * 9);
  assert.ok(conv && conv.numel === 512 * 256 * 9);
});

test("paper: every conv and linear weight ~ N(0, 0.01^2), the rest fixed", () => {
  for (const m of [model, plain]) {
    const sd = init(m, "paper", 7);
    for (const l of weightLayers(m)) assertNormal(sd.get(l.key)?.data as Float32Array, 0.01, `paper ${l.key}`);
    assertFixedParts(sd, m, "paper");
  }
});

test("glorot: uniform on [-a, a] with a = sqrt(6/(fan_in+fan_out)), the rest fixed", () => {
  for (const m of [model, plain]) {
    const sd = init(m, "glorot", 7);
    for (const l of weightLayers(m)) {
      const a = Math.sqrt(6 / (l.fanIn + l.fanOut));
      const w = sd.get(l.key)?.data as Float32Array;
      const s = moments(w, a / 2);
      const what = `glorot ${l.key} (a ${a}, n ${s.n})`;
      assert.ok(s.maxAbs <= a * (1 + 1e-6), `${what}: max |w| ${s.maxAbs} is past the bound`);
      // The largest |w| of n uniform draws falls short of a by about a/n.
      assert.ok(s.maxAbs >= a * (1 - 10 / s.n), `${what}: max |w| ${s.maxAbs} is well inside the bound`);
      assert.ok(Math.abs(s.mean) <= (5 * a) / Math.sqrt(3 * s.n), `${what}: mean ${s.mean}`);
      // For U(-a, a): E[x^2] = a^2/3 and Var[x^2] = 4a^4/45, so the sample variance's standard error is sqrt(4/45) a^2/sqrt(n).
      const se = (Math.sqrt(4 / 45) * a * a) / Math.sqrt(s.n);
      assert.ok(Math.abs(s.variance - (a * a) / 3) <= 5 * se, `${what}: variance ${s.variance}, want ${(a * a) / 3}`);
      // Uniform, not some other shape with that variance: half the mass lies within a/2.
      assert.ok(Math.abs(s.inside - 0.5) <= 5 * Math.sqrt(0.25 / s.n), `${what}: ${s.inside} within a/2, want 0.5`);
    }
    assertFixedParts(sd, m, "glorot");
  }
});

test("an unknown scheme is refused", () => {
  assert.throws(() => initWeights(plain, "he" as InitScheme, 0), /unknown init 'he' \(known: torchvision, paper, glorot\)/);
});
