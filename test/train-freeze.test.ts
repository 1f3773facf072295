/**
 * Fine-tuning with a frozen part (`vgg train --freeze features|<tap>`): three SGD steps against PyTorch 1.13 with
 * requires_grad=False and eval mode on the frozen modules (fixtures from scripts/make_freeze_fixtures.py), with the
 * frozen tensors baked into the graph and as plain inputs; the resolver and its errors; the real binary end to end.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { estimateTraining } from "../src/graph/memory.js";
import {
  buildTrainStep,
  freezeParts,
  freezeSummary,
  frozenKeys,
  resolveFreeze,
  stepFeeds,
  type TrainStepOptions,
} from "../src/graph/train-step.js";
import { encodeModel } from "../src/onnx/encode.js";
import { createSession } from "../src/runtime/ort.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { readSafetensors, writeSafetensors } from "../src/weights/safetensors.js";
import { buildModel, type Head, type VggModel } from "../src/zoo/model.js";
import { assertCleanError, tmp, toyData, vgg, vggAsync } from "./helpers.js";
import { readSt, relMaxErr, toNumbers } from "./train-step-helpers.js";

const DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "test", "fixtures", "train", "freeze");

interface Case {
  name: string;
  model: string;
  freeze: string;
  arch: string;
  head: Head;
  widthDivisor: number;
  classes: number;
  batch: number;
  lr: number;
  steps: number;
  loss: number;
  frozen: string[];
}

const manifest = JSON.parse(readFileSync(join(DIR, "manifest.json"), "utf8")) as { cases: Case[] };

/** Runs `steps` steps as the trainer does: one state dict, updated in place, frozen tensors left in it. */
async function runSteps(m: VggModel, opts: TrainStepOptions, sd: StateDict, batch: StateDict, lr: number, steps: number) {
  const step = buildTrainStep(m, opts);
  const session = await createSession(encodeModel(step.spec), { threads: 2 });
  const momentum: StateDict = new Map();
  const losses: number[] = [];
  try {
    for (let s = 0; s < steps; s++) {
      const feeds = stepFeeds(step, sd, momentum, { x: batch.get("x") as Tensor, y: batch.get("y") as Tensor, lr, seed: s });
      const out = await session.run(feeds);
      for (const e of step.state) (e.kind === "momentum" ? momentum : sd).set(e.input, out[e.output]);
      losses.push(out.loss.data[0] as number);
    }
  } finally {
    await session.release();
  }
  return { step, momentum, losses };
}

/** Trainable conv biases followed by a BatchNorm: their true gradient is 0 (held to the weight's update scale). */
function biasBeforeBn(m: VggModel): Map<string, string> {
  const out = new Map<string, string>();
  m.layers.forEach((l, k) => {
    if (l.kind === "conv" && m.layers[k + 1]?.kind === "batchnorm") {
      out.set(`${l.name}.bias`, `${l.name}.weight`);
      out.set(`${l.name}.bias.momentum_buffer`, `${l.name}.weight.momentum_buffer`);
    }
  });
  return out;
}

function copy(sd: StateDict): StateDict {
  return new Map([...sd].map(([k, t]) => [k, { ...t, data: t.data.slice() } as Tensor]));
}

function sameBits(a: Tensor, b: Tensor): boolean {
  return Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(
    Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength),
  );
}

// The frozen prefix with Winograd forced on for every 3x3 conv, and off (ORT's Conv).
const variants = [true, false].flatMap((baked) => (["on", "off"] as const).map((winograd) => ({ baked, winograd })));
for (const c of manifest.cases) {
  for (const { baked, winograd } of variants) {
    test(`freeze ${c.freeze}: 3 steps match torch with requires_grad=False: ${c.name} (${baked ? "baked in" : "as inputs"}, Winograd ${winograd})`, async () => {
      const m = buildModel(c.arch, { head: c.head, numClasses: c.classes, widthDivisor: c.widthDivisor, inputSize: 32, dropout: 0 });
      const F = resolveFreeze(m, c.freeze);
      const frozen = frozenKeys(m, F);
      assert.deepEqual([...frozen].sort(), [...c.frozen].sort(), "the frozen tensors are torch's frozen modules' tensors");
      const init = readSt(join(DIR, `${c.model}.init.safetensors`)).tensors;
      const want = readSt(join(DIR, `${c.name}.update.safetensors`)).tensors;
      const batch = readSt(join(DIR, `batch_n${c.batch}.safetensors`)).tensors;
      const sd = copy(init);
      const opts = { batchSize: c.batch, freeze: F, frozenWeights: baked ? init : undefined, winograd };
      const r = await runSteps(m, opts, sd, batch, c.lr, c.steps);

      // Frozen tensors: not updated, not even graph outputs; baked in or plain inputs.
      const inputs = new Set(r.step.spec.inputs.map((v) => v.name));
      const outputs = new Set(r.step.spec.outputs.map((v) => v.name));
      const inits = new Set(r.step.spec.initializers.map((v) => v.name));
      for (const key of frozen) {
        assert.ok(sameBits(sd.get(key) as Tensor, init.get(key) as Tensor), `${key} changed`);
        assert.ok(!outputs.has(`${key}.next`) && !inputs.has(`${key}.momentum_buffer`), `${key} has state in the step`);
        if (baked) assert.ok(!inputs.has(key), `${key} is an input`);
        if (key.endsWith("num_batches_tracked")) continue;
        assert.ok(baked ? inits.has(key) : inputs.has(key), `${key} is not ${baked ? "baked in" : "an input"}`);
      }
      assert.equal(r.step.frozenInputs.length, baked ? 0 : [...frozen].filter((k) => !k.endsWith("num_batches_tracked")).length);

      assert.ok(Math.abs(r.losses[0] - c.loss) <= 1e-4 * Math.max(1, c.loss), `loss ${r.losses[0]} vs ${c.loss}`);
      const nearZero = biasBeforeBn(m);
      for (const [key, w] of want) {
        const mom = key.endsWith(".momentum_buffer");
        const now = mom ? r.momentum.get(key) : sd.get(key);
        assert.ok(now, `missing ${key}`);
        const base = init.get(key);
        const ours = mom || !base ? toNumbers(now) : toNumbers(now).map((v, k) => v - Number(base.data[k]));
        const e = relMaxErr(ours, toNumbers(w));
        const partner = nearZero.get(key);
        const scale = partner ? Math.max(e.scale, ...toNumbers(want.get(partner) as Tensor).map(Math.abs)) : e.scale;
        assert.ok(
          e.diff <= 1e-3 * scale || e.diff < 1e-12,
          `${key}: max diff ${e.diff.toExponential(2)} vs scale ${scale.toExponential(2)}`,
        );
      }
      // Every trained tensor and momentum buffer was compared, and nothing else is state.
      assert.equal(r.step.state.length, want.size);
    });
  }
}

test("freeze: the parts each model accepts, and one-line errors for the others", () => {
  const compact = buildModel("vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 32, inputSize: 32 });
  const paper = buildModel("vgg16", { head: "paper", numClasses: 10, widthDivisor: 64, inputSize: 32 });
  assert.deepEqual(
    [...freezeParts(compact).keys()],
    ["features", "relu1_1", "pool1", "relu2_1", "pool2", "relu3_1", "relu3_2", "pool3", "relu4_1", "relu4_2", "pool4"].concat([
      "relu5_1",
      "relu5_2",
      "pool5",
    ]),
  );
  // features = pool5: every features.* layer (vgg11_bn: 8 x (conv, BN, ReLU) + 5 pools).
  assert.equal(resolveFreeze(compact, "features"), 29);
  assert.equal(resolveFreeze(compact, "pool5"), 29);
  assert.equal(resolveFreeze(compact, "relu1_1"), 3);
  assert.equal(resolveFreeze(paper, "fc7"), paper.layers.findIndex((l) => l.tap === "fc7") + 1);
  assert.throws(
    () => resolveFreeze(compact, "nosuch"),
    /^VggError: --freeze: unknown part 'nosuch' for vgg11_bn \(valid: features, relu1_1, .*pool5\)$/,
  );
  assert.throws(() => resolveFreeze(compact, "fc6"), /unknown part 'fc6'/);
  assert.throws(() => resolveFreeze(paper, "logits"), /freezing 'logits' leaves nothing to train .*fc6, fc7\)$/);
  for (const bad of ["nosuch", "logits"]) {
    try {
      resolveFreeze(paper, bad);
    } catch (err) {
      assert.ok(!(err as Error).message.includes("\n"));
    }
  }
  const m = buildModel("vgg16", { head: "paper", numClasses: 10 });
  assert.equal(
    freezeSummary(m, "features", resolveFreeze(m, "features")),
    "frozen: features (26 tensors, 14,714,688 params); training: classifier (119,586,826 params)",
  );
  assert.match(
    freezeSummary(compact, "pool2", resolveFreeze(compact, "pool2")),
    /; batch norm in eval mode\); training: features\.8 on, classifier \(/,
  );
  assert.match(freezeSummary(paper, "fc7", resolveFreeze(paper, "fc7")), /params; dropout in eval mode\); training: classifier \(/);
});

test("freeze: the memory estimate counts the frozen part as inference", () => {
  const m = buildModel("vgg16", { head: "paper", numClasses: 10 });
  const all = estimateTraining(m, 8);
  const part = estimateTraining(m, 8, resolveFreeze(m, "features"));
  assert.deepEqual(estimateTraining(m, 8, 0), all);
  // The classifier's 119M trained parameters dominate either way; the conv activations are no longer kept.
  assert.ok(part.total < all.total, `${part.total} vs ${all.total}`);
  // (The full step at 224 runs without ORT's arena, so its activations count once: 876 MiB against 203 here.)
  assert.ok(part.parts.activations < all.parts.activations / 3, `${part.parts.activations} vs ${all.parts.activations}`);
  assert.equal(part.parts.workspace, 0, "no conv is trained");
});

const COMMON = ["--arch", "vgg11_bn", "--head", "compact", "--width-divisor", "16", "--batch-size", "16", "--val", "16"];
const QUIET = ["--no-progress", "--workers", "0", "--lr", "0.05"];

test("vgg train --freeze: frozen tensors bit-identical after steps and a resume, a bad part one line", { timeout: 240_000 }, async () => {
  const d = tmp();
  const data = `npy:${toyData(d, 80, 4)}`;
  // The starting weights, to compare against: the model the trainer builds for this data (1 channel, 4 classes).
  const m = buildModel("vgg11_bn", { head: "compact", widthDivisor: 16, numClasses: 4, inChannels: 1, inputSize: 32 });
  const start = initWeights(m, "torchvision", 3);
  // Random BN statistics, so that "unchanged" is not "still at their 0/1 defaults".
  for (const [k, t] of start) {
    if (!k.endsWith("running_mean") && !k.endsWith("running_var")) continue;
    const a = t.data as Float32Array;
    for (let i = 0; i < a.length; i++) a[i] = 0.5 + i / a.length;
  }
  const init = join(d, "init.safetensors");
  writeSafetensors(init, start);
  const run = (part: string, out: string, extra: string[] = []) =>
    vggAsync(["train", ...COMMON, ...QUIET, "--data", data, "--init", init, "--out", join(d, out), "--freeze", part, ...extra], {
      timeout: 200_000,
    });
  const [a, b] = await Promise.all([run("features", "a", ["--steps", "3"]), run("pool2", "b", ["--steps", "3"])]);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.match(a.stdout, /frozen: features \(56 tensors, [\d,]+ params; batch norm in eval mode\); training: classifier \(132 params\)/);
  assert.match(b.stdout, /frozen: pool2 \(14 tensors, [\d,]+ params; .*\); training: features\.8 on, classifier \(/);
  const check = (dir: string, part: string) => {
    const F = resolveFreeze(m, part);
    const frozen = frozenKeys(m, F);
    const last = readSafetensors(join(d, dir, "last.safetensors"));
    const optim = readSafetensors(join(d, dir, "last.optim.safetensors"));
    for (const [k, t] of start) {
      const now = last.get(k) as Tensor;
      assert.ok(now, `${dir}: checkpoint lacks ${k}`);
      if (frozen.has(k)) {
        assert.ok(sameBits(now, t), `${dir}: frozen ${k} changed`);
        assert.ok(!optim.has(`${k}.momentum_buffer`), `${dir}: momentum buffer for frozen ${k}`);
      } else if (k.endsWith(".weight")) assert.ok(!sameBits(now, t), `${dir}: trainable ${k} did not change`);
    }
  };
  check("a", "features");
  check("b", "pool2");
  // --resume keeps the run's --freeze (a new value is not an override).
  const r = await vggAsync(["train", ...QUIET, "--out", join(d, "a"), "--resume", "--steps", "6", "--freeze", "relu1_1"]);
  assert.equal(r.status, 0, r.stderr);
  check("a", "features");

  const bad = vgg(["train", ...COMMON, ...QUIET, "--data", data, "--out", join(d, "c"), "--freeze", "nosuch", "--steps", "2"]);
  assertCleanError(bad, /--freeze: unknown part 'nosuch' for vgg11_bn \(valid: features, relu1_1, .*, pool5\)/);
});
