/**
 * The paper's test protocols at a dataset's native scale, where every test image fits the network's input (28x28
 * padded to 32): multi-crop would cut one window 25 times, so it is refused with the `--scales` way out, and dense
 * (a 1x1 score map) runs with a one-line note; in `vgg eval`, `vgg train --test-protocol` and `vgg reproduce` alike.
 * Tiny random-init models (width /16) on 28x28 npy data, so the real-binary runs take seconds.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import type { Split } from "../src/data/dataset.js";
import { VggError } from "../src/errors.js";
import { evaluateProtocol, imageFitsInput } from "../src/eval/protocols.js";
import { writeNpy } from "../src/io/npy.js";
import { keyedRng } from "../src/random.js";
import { saveCheckpoint } from "../src/train/checkpoint.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel, type ModelOptions } from "../src/zoo/model.js";
import { assertCleanError, pool, type RunResult, tmp, vggAsync } from "./helpers.js";

const dir = tmp("vgg-protocols-native-");
after(() => rmSync(dir, { recursive: true, force: true }));

const OPTS: ModelOptions = { inputSize: 32, widthDivisor: 16, numClasses: 4, inChannels: 1, head: "compact" };

/** n 28x28 uint8 images in 4 classes as X.npy,Y.npy (noise: the tests are about the protocols, not the accuracy). */
function npy28(name: string, n: number, seed: number): string {
  const r = keyedRng(seed, 3);
  const x = Uint8Array.from({ length: n * 28 * 28 }, () => r.int(256));
  writeNpy(join(dir, `${name}-x.npy`), { dtype: "uint8", shape: [n, 28, 28], data: x });
  writeNpy(join(dir, `${name}-y.npy`), { dtype: "int64", shape: [n], data: BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 4)) });
  return `${join(dir, `${name}-x.npy`)},${join(dir, `${name}-y.npy`)}`;
}

const data = `npy:${npy28("train", 40, 1)};${npy28("test", 12, 2)}`;

function ok(r: RunResult, what: string): RunResult {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  return r;
}

test("which scales leave multi-crop no room: fixed-size images no larger than the input at every Q", () => {
  assert.ok(imageFitsInput([28], 32, [28, 28]), "native 28 padded to 32");
  assert.ok(imageFitsInput([24, 28, 32], 32, [28, 28]));
  assert.ok(!imageFitsInput([28, 32, 36], 32, [28, 28]), "one scale with room is enough");
  assert.ok(!imageFitsInput([36, 40, 44], 32, [28, 28]));
  assert.ok(!imageFitsInput([32], 32, [28, 40]), "32x45: the crops move along the longer side");
  assert.ok(!imageFitsInput([28], 32, null), "images of varying size are not judged");
  assert.ok(imageFitsInput([32], 32, [32, 32]));
});

test("evaluateProtocol at the native scale: multicrop refused, dense noted, multicrop above the crop runs", async () => {
  const model = buildModel("vgg11", OPTS);
  const w = initWeights(model, "torchvision", 4);
  const r = keyedRng(5, 1);
  const split: Split = {
    name: "test",
    source: {
      kind: "array",
      data: Uint8Array.from({ length: 6 * 784 }, () => r.int(256)),
      n: 6,
      c: 1,
      h: 28,
      w: 28,
      labels: Int32Array.from({ length: 6 }, (_, i) => i % 4),
    },
    indices: Int32Array.from({ length: 6 }, (_, i) => i),
  };
  const po = { values: { mean: [0.5], std: [0.25] }, native: [28, 28] as [number, number] };
  for (const p of ["multicrop", "dense+multicrop"] as const)
    await assert.rejects(
      evaluateProtocol(model, w, split, p, [28], po),
      (e: Error) =>
        e instanceof VggError && !e.message.includes("\n") && /same window/.test(e.message) && /--scales 36,40,44/.test(e.message),
    );
  const dense = await evaluateProtocol(model, w, split, "dense", [28], po);
  assert.match(dense.note ?? "", /^at scale 28 .*1x1 score map.*--scales 36,40,44$/);
  assert.equal((await evaluateProtocol(model, w, split, "dense", [36], po)).note, undefined);
  assert.equal((await evaluateProtocol(model, w, split, "single", [28], po)).note, undefined);
  const mc = await evaluateProtocol(model, w, split, "multicrop", [36, 40, 44], po);
  assert.equal(mc.n, 6);
  assert.equal(mc.note, undefined);
});

test("vgg eval --protocol at Fashion-MNIST's native scale: multicrop refused naming --scales, dense noted", {
  timeout: 120_000,
}, async () => {
  const d = join(dir, "eval");
  mkdirSync(d, { recursive: true });
  const m = buildModel("vgg11", OPTS);
  saveCheckpoint(d, "ck", initWeights(m, "torchvision", 1), {
    arch: "vgg11",
    options: m.options,
    labels: ["a", "b", "c", "d"],
    mean: [0.3],
    std: [0.3],
  });
  const base = ["eval", "--weights", join(d, "ck.safetensors"), "--data", data];
  const [mc, both, dense, denseText, above, denseAbove] = await pool([
    () => vggAsync([...base, "--protocol", "multicrop"]),
    () => vggAsync([...base, "--protocol", "dense+multicrop", "--scales", "S-4,S"]),
    () => vggAsync([...base, "--protocol", "dense", "--json"]),
    () => vggAsync([...base, "--protocol", "dense"]),
    () => vggAsync([...base, "--protocol", "multicrop", "--scales", "36,40,44", "--json"]),
    () => vggAsync([...base, "--protocol", "dense", "--scales", "36", "--json"]),
  ]);
  assertCleanError(mc, /^vgg: multicrop at scale 28: .*same window.*e\.g\. vgg eval --scales 36,40,44$/);
  assertCleanError(both, /^vgg: dense\+multicrop at scales 24,28: .*--scales 36,40,44$/);
  // Dense runs; the note is one line on stderr, so --json's stdout is still one JSON line (which carries it too).
  ok(dense, "dense --json");
  const j = JSON.parse(dense.stdout);
  assert.deepEqual(j.scales, [28]);
  assert.equal(j.n, 12);
  assert.match(j.note, /1x1 score map/);
  assert.equal(dense.stderr.trim(), `vgg: note: ${j.note}`);
  ok(denseText, "dense");
  assert.match(denseText.stderr, /^vgg: note: at scale 28 the image is no larger than the 32x32 input, so dense sees a 1x1 score map/);
  assert.match(denseText.stdout, /dense at Q=28: top-1/);
  // Above the crop multi-crop has room to move, and dense a map larger than 1x1: no refusal, no note.
  ok(above, "multicrop above the crop");
  assert.deepEqual(JSON.parse(above.stdout).scales, [36, 40, 44]);
  assert.equal(JSON.parse(above.stdout).n, 12);
  assert.doesNotMatch(above.stderr, /note/);
  ok(denseAbove, "dense above the crop");
  assert.equal(JSON.parse(denseAbove.stdout).note, undefined);
  assert.doesNotMatch(denseAbove.stderr, /note/);
});

test("vgg train --test-protocol and vgg reproduce at the native scale say the same", { timeout: 240_000 }, async () => {
  const common = ["--arch", "vgg11", "--width-divisor", "16", "--head", "compact", "--data", data, "--val", "8"];
  const tiny = [...common, "--epochs", "1", "--steps", "1", "--batch-size", "8", "--no-progress"];
  const [mc, dense, rep] = await pool([
    () => vggAsync(["train", ...tiny, "--out", join(dir, "mc"), "--test-protocol", "multicrop"]),
    () => vggAsync(["train", ...tiny, "--out", join(dir, "dense"), "--test-protocol", "dense"]),
    () =>
      vggAsync([
        "reproduce",
        "--out",
        join(dir, "rep"),
        "--data",
        data,
        "--configs",
        "A",
        "--jitter-config",
        "none",
        "--scale",
        "28",
        "--epochs",
        "1",
        "--test-images",
        "8",
      ]),
  ]);
  // Refused before any training (a run of hours would end in "not scored"), naming the way out.
  assertCleanError(mc, /^vgg: --test-protocol multicrop at scale 28: .*same window.*vgg eval --scales 36,40,44$/);
  assert.ok(!existsSync(join(dir, "mc")), "the refused run leaves no directory");
  ok(dense, "train --test-protocol dense");
  assert.match(dense.stdout, /under the dense protocol/);
  assert.match(dense.stderr, /^vgg: note: at scale 28 the image is no larger than the 32x32 input, so dense sees a 1x1 score map/m);
  assert.match(
    readFileSync(join(dir, "dense", "report.md"), "utf8"),
    /under the dense protocol \(test scale 28\).* Note: at scale 28 .*1x1 score map/,
  );
  // reproduce refuses before training anything, naming its own flag.
  assertCleanError(
    rep,
    /^vgg: --scale 28: at the multi-scale test scales 24,28,32 every test image fits the 32x32 crop.*--scale 29 or more/,
  );
});
