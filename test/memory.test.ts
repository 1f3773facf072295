import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { FASHION_MNIST_DIR } from "../src/data/spec.js";
import { estimateInference, estimateTraining, evalBatchSize } from "../src/graph/memory.js";
import { buildModel } from "../src/zoo/model.js";
import { assertCleanError, tmp, vgg } from "./helpers.js";

test("memory estimates grow with batch, input size and width; evaluation batches shrink for large inputs", () => {
  const small = buildModel("vgg11_bn", { head: "compact", inputSize: 32, numClasses: 10, widthDivisor: 4 });
  const wide = buildModel("vgg11_bn", { head: "compact", inputSize: 32, numClasses: 10 });
  const big = buildModel("vgg11_bn", { head: "compact", inputSize: 112, numClasses: 10 });
  assert.ok(estimateTraining(small, 256).total > estimateTraining(small, 128).total);
  assert.ok(estimateTraining(wide, 128).total > estimateTraining(small, 128).total);
  assert.ok(estimateTraining(big, 128).parts.workspace > estimateTraining(wide, 128).parts.workspace);
  const vgg16 = buildModel("vgg16", {});
  // Inference holds the weights (528 MiB) at least once.
  assert.ok(estimateInference(vgg16, 1).parts.weights > 528 * 2 ** 20);
  assert.ok(estimateInference(vgg16, 8).total > estimateInference(vgg16, 1).total);
  assert.equal(evalBatchSize(small), 256);
  assert.ok(evalBatchSize(vgg16) < 64 && evalBatchSize(vgg16) >= 1);
});

test("a run that will not fit is refused before it starts, naming the estimate; summary shows it", () => {
  const env = { VGG_MEMORY_LIMIT: "300M" };
  assertCleanError(
    vgg(["bench", "train", "--arch", "vgg16_bn", "--head", "compact", "--num-classes", "10", "--batch", "128"], { env }),
    /needs about .* but 300 MiB is available/,
  );
  assertCleanError(vgg(["bench", "infer", "--arch", "vgg16", "--batch", "8"], { env }), /inference with vgg16 at batch 8 needs about/);
  assertCleanError(vgg(["bench", "infer", "--arch", "vgg11"], { env: { VGG_MEMORY_LIMIT: "lots" } }), /VGG_MEMORY_LIMIT/);
  const s = vgg(["summary", "vgg11_bn", "--head", "compact", "--input-size", "32", "--num-classes", "10", "--batch-size", "64", "--json"]);
  assert.equal(s.status, 0, s.stderr);
  const j = JSON.parse(s.stdout);
  assert.equal(j.memory.training.batch, 64);
  assert.ok(j.memory.training.total > j.memory.inference.total);
});

test("vgg train refuses before its first step when the estimate exceeds the limit", {
  skip: !fs.existsSync(FASHION_MNIST_DIR) && "needs dataset-fashion-mnist",
}, () => {
  const out = tmp("vgg-memory-");
  try {
    const args = ["train", "--arch", "vgg11_bn", "--data", "fashion-mnist", "--out", join(out, "r"), "--no-progress"];
    assertCleanError(
      vgg(args, { env: { VGG_MEMORY_LIMIT: "200M" } }),
      // 55,000 training images: 429 batches of 128 and one of 88, whose graph is counted too.
      /training vgg11_bn at batch 128, input 32 \(and a last batch of 88\) needs about .* but 200 MiB is available: lower --batch-size/,
    );
    assert.ok(!fs.existsSync(join(out, "r", "last.safetensors")));
    const forced = vgg(
      [...args, "--no-memory-check", "--steps", "1", "--epochs", "1", "--width-divisor", "16", "--head", "compact", "--val", "100"],
      {
        env: { VGG_MEMORY_LIMIT: "200M" },
      },
    );
    assert.equal(forced.status, 0, forced.stderr);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
});
