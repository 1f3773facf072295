/**
 * Weight averaging (src/train/averaging.ts, graphs in src/graph/average.ts) against PyTorch 1.13's
 * torch.optim.swa_utils: the EMA (AveragedModel with an EMA avg_fn over parameters and buffers, started from the
 * initial weights as timm's ModelEmaV2) over 5 SGD steps, each side stepping its own SGD from the same start and
 * batches; SWA's equal average of three weight sets and update_bn's recomputed BN statistics (a partial last batch
 * among the batches). Max abs difference <= 1e-5 on every float tensor.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { frozenKeys } from "../src/graph/train-step.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { emaEntries, emaUpdate, swaEntries, swaUpdate, TensorAverage, updateBn } from "../src/train/averaging.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { hasTorch, ROOT } from "./helpers.js";
import { prng, stepRunner, toNumbers } from "./train-step-helpers.js";

const OPTS = { head: "compact" as const, numClasses: 4, widthDivisor: 16, inputSize: 32, dropout: 0 };
const SGD = { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 };
const DECAY = 0.9;
const skip = !hasTorch() && "needs /usr/bin/python3 with torch";

/** n random images [n, 3, 32, 32] and labels in 4 classes. */
function batch(n: number, seed: number): { x: Tensor; y: Tensor } {
  const r = prng(seed);
  return {
    x: { dtype: "float32", shape: [n, 3, 32, 32], data: Float32Array.from({ length: n * 3 * 1024 }, () => 2 * r() - 1) },
    y: { dtype: "int64", shape: [n], data: BigInt64Array.from({ length: n }, () => BigInt(Math.floor(r() * 4))) },
  };
}

const asJson = (sd: StateDict) => Object.fromEntries([...sd].map(([k, t]) => [k, toNumbers(t)]));

/** Runs `body` in /usr/bin/python3 with reference_models' VGG, `a` (JSON) on stdin; returns the JSON it prints. */
function torch(body: string, a: unknown): Record<string, number[]> {
  const py = [
    "import sys, json, torch",
    `sys.path.insert(0, ${JSON.stringify(join(ROOT, "scripts"))})`,
    "from reference_models import VGG",
    "from torch.optim import swa_utils",
    "torch.set_num_threads(1)",
    "a = json.load(sys.stdin)",
    "model = VGG('vgg11_bn', num_classes=4, in_channels=3, width_divisor=16, head='compact', dropout=0)",
    "ref = model.state_dict()",
    "sd = lambda d: {k: torch.tensor(v, dtype=ref[k].dtype).reshape(ref[k].shape) for k, v in d.items()}",
    "images = lambda b: torch.tensor(b['x'], dtype=torch.float32).reshape(-1, 3, 32, 32)",
    "out = lambda m: print(json.dumps({k: v.reshape(-1).tolist() for k, v in m.state_dict().items()}))",
    body,
  ].join("\n");
  const p = spawnSync("/usr/bin/python3", ["-c", py], { input: JSON.stringify(a), encoding: "utf8", maxBuffer: 1 << 28 });
  assert.equal(p.status, 0, p.stderr);
  return JSON.parse(p.stdout);
}

/** The largest |ours - torch's| over the float tensors of `ours` (int64 counters compared exactly when `counters`). */
function maxDiff(ours: StateDict, theirs: Record<string, number[]>, counters = false): number {
  let worst = 0;
  for (const [k, t] of ours) {
    const want = theirs[k];
    assert.ok(want, `torch lacks ${k}`);
    if (t.dtype === "int64") {
      if (counters) assert.deepEqual(toNumbers(t), want, k);
      continue;
    }
    const got = toNumbers(t);
    assert.equal(got.length, want.length, k);
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
  }
  return worst;
}

test("EMA after every step equals torch's AveragedModel with an EMA avg_fn (5 SGD steps, decay 0.9)", { skip }, async (t) => {
  const m = buildModel("vgg11_bn", OPTS);
  const init = initWeights(m, "torchvision", 3);
  const batches = Array.from({ length: 5 }, (_, k) => batch(8, 10 + k));
  const r = await stepRunner(m, { batchSize: 8, ...SGD }, init);
  const op = await TensorAverage.open(emaEntries(m), 2);
  const ema: StateDict = new Map(init);
  try {
    for (const b of batches) {
      await r.run(b.x, b.y, SGD.lr);
      await emaUpdate(op, ema, r.sd, DECAY);
    }
  } finally {
    await op.release();
    await r.session.release();
  }
  const want = torch(
    [
      "model.load_state_dict(sd(a['init']))",
      "opt = torch.optim.SGD(model.parameters(), lr=a['lr'], momentum=a['momentum'], weight_decay=a['wd'])",
      "d = a['decay']",
      "ema = swa_utils.AveragedModel(model, avg_fn=lambda e, p, n: d * e + (1.0 - d) * p, use_buffers=True)",
      "ema.update_parameters(model)  # n 0: a copy of the start, as timm's ModelEmaV2 begins",
      "model.train()",
      "for b in a['batches']:",
      "    opt.zero_grad()",
      "    torch.nn.functional.cross_entropy(model(images(b)), torch.tensor(b['y'])).backward()",
      "    opt.step()",
      "    ema.update_parameters(model)",
      "out(ema.module)",
    ].join("\n"),
    {
      init: asJson(init),
      batches: batches.map((b) => ({ x: Array.from(b.x.data as Float32Array), y: toNumbers(b.y) })),
      lr: SGD.lr,
      momentum: SGD.momentum,
      wd: SGD.weightDecay,
      decay: DECAY,
    },
  );
  const moved = maxDiff(ema, asJson(init));
  assert.ok(moved > 1e-3, `the EMA hardly moved (${moved}): the test would not see a wrong decay`);
  const d = maxDiff(ema, want);
  t.diagnostic(`EMA max abs diff ${d.toExponential(2)} (moved ${moved.toExponential(2)} from the start)`);
  assert.ok(d <= 1e-5, `EMA max abs diff ${d.toExponential(2)}`);
  // The step counter is the raw model's (torch's use_buffers averages it as a float and truncates).
  assert.equal(ema.get("features.1.num_batches_tracked")?.data[0], 5n);
});

test("SWA's average of three weight sets and update_bn's BN statistics equal torch.optim.swa_utils'", { skip }, async (t) => {
  const m = buildModel("vgg11_bn", OPTS);
  const r = await stepRunner(m, { batchSize: 8, ...SGD }, initWeights(m, "torchvision", 4));
  // Three "epoch ends": the weights after steps 2, 4 and 5.
  const sets: StateDict[] = [];
  for (let k = 0; k < 5; k++) {
    const b = batch(8, 30 + k);
    await r.run(b.x, b.y, SGD.lr);
    if (k === 1 || k >= 3) sets.push(r.sd);
  }
  await r.session.release();
  const op = await TensorAverage.open(swaEntries(m), 2);
  const swa: StateDict = new Map();
  for (const [n, w] of sets.entries()) await swaUpdate(op, swa, w, n);
  await op.release();
  // update_bn over four batches, the last a partial one (its own graph), as a loader without drop_last gives them.
  const bnBatches = [8, 8, 8, 5].map((n, k) => batch(n, 50 + k));
  async function* feed() {
    for (const b of bnBatches) yield { x: b.x.data as Float32Array, n: b.x.shape[0] };
  }
  const bn = await updateBn(m, swa, feed(), { threads: 2 });
  assert.equal(bn.batches, 4);
  const want = torch(
    [
      "swa = swa_utils.AveragedModel(model)",
      "for w in a['sets']:",
      "    model.load_state_dict(sd(w))",
      "    swa.update_parameters(model)",
      "swa_utils.update_bn([images(b) for b in a['bn']], swa)",
      "out(swa.module)",
    ].join("\n"),
    { sets: sets.map(asJson), bn: bnBatches.map((b) => ({ x: Array.from(b.x.data as Float32Array) })) },
  );
  const d = maxDiff(bn.weights, want, true);
  t.diagnostic(`SWA + update_bn max abs diff ${d.toExponential(2)}`);
  assert.ok(d <= 1e-5, `SWA + update_bn max abs diff ${d.toExponential(2)}`);
  // The statistics changed from the averaged weights' (that was update_bn's work, not a copy).
  assert.notDeepEqual(
    toNumbers(bn.weights.get("features.1.running_var") as Tensor),
    toNumbers(swa.get("features.1.running_var") as Tensor),
  );
});

test("update_bn with a frozen prefix: its BN layers keep their statistics, the trainable ones are recomputed", async () => {
  const m = buildModel("vgg11_bn", OPTS);
  const w = initWeights(m, "torchvision", 5);
  const freeze = m.layers.findIndex((l) => l.name === "features.4") + 1;
  async function* feed() {
    for (let k = 0; k < 2; k++) yield { x: batch(8, 70 + k).x.data as Float32Array, n: 8 };
  }
  const bn = await updateBn(m, w, feed(), { freeze, threads: 2 });
  const frozen = frozenKeys(m, freeze);
  for (const [k, t] of w) {
    if (!/running_(mean|var)$/.test(k)) continue;
    const same = toNumbers(bn.weights.get(k) as Tensor).every((v, i) => v === Number(t.data[i]));
    assert.equal(same, frozen.has(k), `${k} ${frozen.has(k) ? "is frozen but changed" : "trains but was not recomputed"}`);
  }
  assert.equal(bn.weights.get("features.1.num_batches_tracked"), w.get("features.1.num_batches_tracked"));
  // Without BN there is nothing to recompute.
  const plain = buildModel("vgg11", OPTS);
  const pw = initWeights(plain, "torchvision", 5);
  assert.equal((await updateBn(plain, pw, feed())).batches, 0);
});
