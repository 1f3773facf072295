/** runTrainStep (src/train/step-runner.ts): the same numbers as a plain session.run, momentum updated in place. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildTrainStep, resolveFreeze, stepFeeds, type TrainStepOptions } from "../src/graph/train-step.js";
import { encodeModel } from "../src/onnx/encode.js";
import { createSession } from "../src/runtime/ort.js";
import type { StateDict, Tensor } from "../src/tensor.js";
import { runTrainStep } from "../src/train/step-runner.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { prng } from "./train-step-helpers.js";

function batch(N: number, S: number, seed: number): { x: Tensor; y: Tensor } {
  const rnd = prng(seed);
  return {
    x: { dtype: "float32", shape: [N, 3, S, S], data: Float32Array.from({ length: N * 3 * S * S }, () => rnd() * 2 - 1) },
    y: { dtype: "int64", shape: [N], data: BigInt64Array.from({ length: N }, (_, n) => BigInt(n % 10)) },
  };
}

/** Three steps each way from the same start; every output of every step compared bit for bit. */
async function compare(opts: TrainStepOptions, frozen: boolean): Promise<void> {
  const m = buildModel("vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 16, inputSize: 32 });
  const w0 = initWeights(m, "torchvision", 3);
  const freeze = frozen ? resolveFreeze(m, "features") : 0;
  const step = buildTrainStep(m, { ...opts, freeze, frozenWeights: frozen ? w0 : undefined });
  const session = await createSession(encodeModel(step.spec), { threads: 2 });
  const plain = { w: new Map(w0) as StateDict, m: new Map() as StateDict };
  const runner = { w: new Map(w0) as StateDict, m: new Map() as StateDict };
  try {
    for (let k = 0; k < 3; k++) {
      const b = { ...batch(opts.batchSize, 32, k), lr: 0.05, seed: k };
      const a = await session.run(stepFeeds(step, plain.w, plain.m, b));
      const fed = new Map(runner.m);
      const r = await runTrainStep(session, step, runner.w, runner.m, b);
      for (const name of ["loss", "correct1", "correct5"]) assert.deepEqual(r[name].data, a[name].data, `step ${k}: ${name}`);
      for (const e of step.state) {
        const mine = (e.kind === "momentum" ? runner.m : runner.w).get(e.input);
        assert.deepEqual(mine?.data, a[e.output].data, `step ${k}: ${e.output}`);
        (e.kind === "momentum" ? plain.m : plain.w).set(e.input, a[e.output]);
        // In place: the momentum buffer fed holds the new one (from the second step on: the first feeds fresh zeros).
        if (e.kind === "momentum" && k > 0) assert.equal(mine?.data, fed.get(e.input)?.data, e.input);
      }
    }
  } finally {
    await session.release();
  }
}

test("weights handed out stay as they are; an older set fed again is copied in, not taken for the current one", async () => {
  const m = buildModel("vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 16, inputSize: 32 });
  const w0 = initWeights(m, "torchvision", 4);
  const step = buildTrainStep(m, { batchSize: 4 });
  const session = await createSession(encodeModel(step.spec), { threads: 2 });
  try {
    const b = (k: number) => ({ ...batch(4, 32, k), lr: 0.05, seed: k });
    const w = new Map(w0);
    const mo: StateDict = new Map();
    await runTrainStep(session, step, w, mo, b(0));
    const after1 = new Map(w);
    const values1 = new Map([...after1].map(([k, t]) => [k, t.data.slice()]));
    const mo1 = new Map([...mo].map(([k, t]) => [k, { ...t, data: t.data.slice() }]));
    await runTrainStep(session, step, w, mo, b(1));
    for (const [k, t] of after1) assert.deepEqual(t.data, values1.get(k), `${k} changed after it was handed out`);
    // The state after step 1 again (its tensors are stale now): the same step 2 as the first time.
    const plain = await session.run(stepFeeds(step, after1, mo1, b(1)));
    const w2 = new Map(after1);
    await runTrainStep(session, step, w2, mo1, b(1));
    for (const e of step.state) assert.deepEqual((e.kind === "momentum" ? mo1 : w2).get(e.input)?.data, plain[e.output].data, e.output);
  } finally {
    await session.release();
  }
});

test("runTrainStep gives session.run's outputs bit for bit, momentum buffers updated in place", async () => {
  await compare({ batchSize: 8, nesterov: true, weightDecay: 5e-4 }, false);
});

test("runTrainStep: the same with a frozen prefix baked in", async () => {
  await compare({ batchSize: 8 }, true);
});
