/** The step graph as a whole: learning on a fixed batch, reproducible dropout, state in/out naming. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { buildTrainStep, trainStepState, zeroMomentum } from "../src/graph/train-step.js";
import type { Tensor } from "../src/tensor.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { prng, stepRunner } from "./train-step-helpers.js";

function batch(N: number, C: number, S: number, classes: number, seed: number): { x: Tensor; y: Tensor } {
  const rnd = prng(seed);
  return {
    x: { dtype: "float32", shape: [N, C, S, S], data: Float32Array.from({ length: N * C * S * S }, () => rnd() * 2 - 1) },
    y: { dtype: "int64", shape: [N], data: BigInt64Array.from({ length: N }, (_, n) => BigInt(n % classes)) },
  };
}

test("the loss of a small model falls over 20 steps on a fixed batch", async () => {
  // Compact head with its default dropout 0.5: the step's seed changes the mask, so the curve is noisy.
  const m = buildModel("vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 16, inputSize: 32 });
  const r = await stepRunner(m, { batchSize: 8 }, initWeights(m, "torchvision", 1));
  const { x, y } = batch(8, 3, 32, 10, 5);
  const losses: number[] = [];
  for (let s = 0; s < 20; s++) losses.push((await r.run(x, y, 0.02, s)).loss.data[0] as number);
  await r.session.release();
  const mean = (a: number[]) => a.reduce((p, q) => p + q, 0) / a.length;
  assert.ok(losses.every(Number.isFinite), losses.join(" "));
  assert.ok(mean(losses.slice(15)) < 0.5 * losses[0], `loss ${losses.map((l) => l.toFixed(3)).join(" ")}`);
  assert.equal(r.sd.get("features.1.num_batches_tracked")?.data[0], 20n);
});

test("dropout is reproducible from the seed across sessions and runs; the seed changes it", async () => {
  const m = buildModel("vgg11", { head: "paper", numClasses: 5, widthDivisor: 64, inputSize: 32, dropout: 0.5 });
  const w = initWeights(m, "torchvision", 2);
  const { x, y } = batch(4, 3, 32, 5, 9);
  const a = await stepRunner(m, { batchSize: 4 }, w);
  const b = await stepRunner(m, { batchSize: 4 }, w);
  const a1 = await a.run(x, y, 0.01, 7);
  a.sd = w;
  a.momentum = new Map();
  const a2 = await a.run(x, y, 0.01, 7); // the same feeds again, in the same session
  const b1 = await b.run(x, y, 0.01, 7); // a fresh session
  b.sd = w;
  b.momentum = new Map();
  const b2 = await b.run(x, y, 0.01, 8); // another seed
  for (const s of [a, b]) await s.session.release();
  assert.equal(a1.loss.data[0], a2.loss.data[0]);
  assert.equal(a1.loss.data[0], b1.loss.data[0]);
  assert.notEqual(a1.loss.data[0], b2.loss.data[0]);
  for (const k of ["classifier.0.weight.next", "classifier.3.weight.next", "features.0.weight.next"]) {
    assert.deepEqual(a1[k].data, b1[k].data, k);
    assert.deepEqual(a1[k].data, a2[k].data, k);
  }
});

test("state inputs and outputs: torchvision keys, momentum buffers, every output fed back", async () => {
  const m = buildModel("vgg11_bn", { head: "compact", numClasses: 10, widthDivisor: 32, inputSize: 32 });
  const state = trainStepState(m);
  assert.ok(state.some((e) => e.input === "features.0.weight" && e.output === "features.0.weight.next" && e.kind === "param"));
  assert.ok(state.some((e) => e.input === "features.1.running_var" && e.kind === "buffer"));
  assert.ok(state.some((e) => e.input === "features.1.num_batches_tracked" && e.dtype === "int64"));
  assert.ok(state.some((e) => e.input === "classifier.bias.momentum_buffer" && e.kind === "momentum"));
  assert.equal(trainStepState(m, { momentum: 0 }).filter((e) => e.kind === "momentum").length, 0);
  assert.equal(zeroMomentum(m).size, state.filter((e) => e.kind === "momentum").length);
  const step = buildTrainStep(m, { batchSize: 3, logits: true });
  const ins = step.spec.inputs.map((v) => v.name);
  const outs = step.spec.outputs.map((v) => v.name);
  assert.deepEqual(ins.slice(0, 4), ["x", "y", "lr", "seed"]);
  for (const e of step.state) {
    assert.ok(ins.includes(e.input), e.input);
    assert.ok(outs.includes(e.output), e.output);
  }
  assert.deepEqual(outs.slice(0, 4), ["loss", "correct1", "correct5", "logits"]);
});

test("a partial last batch runs as its own graph, with momentum 0 and Nesterov variants", async () => {
  const m = buildModel("vgg13", { head: "compact", numClasses: 4, widthDivisor: 32, inputSize: 32 });
  const w = initWeights(m, "torchvision", 3);
  for (const opts of [
    { batchSize: 3 },
    { batchSize: 1, momentum: 0 },
    { batchSize: 2, nesterov: true, decayExempt: "bn_and_bias" as const },
  ]) {
    const r = await stepRunner(m, opts, w);
    const { x, y } = batch(opts.batchSize, 3, 32, 4, 1);
    const out = await r.run(x, y, 0.01);
    await r.session.release();
    assert.ok(Number.isFinite(out.loss.data[0] as number));
    assert.notDeepEqual(r.sd.get("features.0.weight")?.data, w.get("features.0.weight")?.data);
  }
});
