/** `vgg train` / `vgg eval` end to end through the real binary, on data the test writes. */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { readNpy, writeNpy } from "../src/io/npy.js";
import { loadCheckpoint, saveCheckpoint } from "../src/train/checkpoint.js";
import { readSafetensors } from "../src/weights/safetensors.js";
import { assertCleanError, tmp, toyData, vgg } from "./helpers.js";

const COMMON = [
  "--arch",
  "vgg11_bn",
  "--head",
  "compact",
  "--width-divisor",
  "16",
  "--batch-size",
  "32",
  "--lr",
  "0.05",
  "--val",
  "64",
  "--no-progress",
  "--workers",
  "0",
];

test("train, refuse to overwrite, resume exactly, eval the checkpoint", { timeout: 240_000 }, async () => {
  const d = tmp();
  // 330 - 64 held out = 266 training images: 8 batches of 32 and a partial one of 10, which gets its own graph.
  const data = `npy:${toyData(d, 330, 1)};${toyData(d, 96, 2)}`;
  const a = join(d, "a");
  const r1 = vgg(["train", ...COMMON, "--data", data, "--out", a, "--epochs", "2", "--schedule", "step", "--test-protocol", "dense"]);
  assert.equal(r1.status, 0, r1.stderr);
  assert.match(r1.stdout, /epoch 2\/2/);
  assert.match(r1.stdout, /test top-1 accuracy [\d.]+% \(96 images\), [\d.]+% under the dense protocol/);
  for (const f of ["metrics.jsonl", "last.safetensors", "last.optim.safetensors", "best.safetensors", "result.json"])
    assert.ok(existsSync(join(a, f)), f);
  const lines = readFileSync(join(a, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  assert.deepEqual(
    lines.map((l) => l.step),
    [9, 18],
  );
  assert.ok(lines[1].trainLoss < lines[0].trainLoss + 1e-9 || lines[1].val.top1 >= lines[0].val.top1, "no progress at all");

  // A second run on the same directory must not clobber it.
  const before = readFileSync(join(a, "last.safetensors"));
  assertCleanError(vgg(["train", ...COMMON, "--data", data, "--out", a, "--epochs", "1"]), /already holds a run/);
  assert.deepEqual(readFileSync(join(a, "last.safetensors")), before);

  // The same run in two parts: one epoch, then --resume to two. Same weights, bit for bit.
  const b = join(d, "b");
  assert.equal(vgg(["train", ...COMMON, "--data", data, "--out", b, "--epochs", "1", "--schedule", "step"]).status, 0);
  const r2 = vgg(["train", "--arch", "vgg11_bn", "--data", data, "--out", b, "--epochs", "2", "--resume", "--no-progress"]);
  assert.equal(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /resuming/);
  const wa = readSafetensors(join(a, "last.safetensors"));
  const wb = readSafetensors(join(b, "last.safetensors"));
  for (const [k, t] of wa) {
    const u = wb.get(k);
    assert.ok(u, `resumed run lacks ${k}`);
    assert.deepEqual(Buffer.from(u.data.buffer), Buffer.from(t.data.buffer), k);
  }

  // A bare --resume keeps the run's --epochs (2 here, stopped early by --steps), not the flag's default.
  const e = join(d, "e");
  assert.equal(vgg(["train", ...COMMON, "--data", data, "--out", e, "--epochs", "2", "--steps", "9"]).status, 0);
  const re = vgg(["train", "--out", e, "--resume", "--no-progress"]);
  assert.equal(re.status, 0, re.stderr);
  assert.match(re.stdout, /epoch 2\/2/);
  assert.equal(readFileSync(join(e, "metrics.jsonl"), "utf8").trim().split("\n").length, 2);

  // --drop-last: PyTorch's drop_last, 8 steps an epoch.
  const c = join(d, "c");
  const rc = vgg(["train", ...COMMON, "--data", data, "--out", c, "--epochs", "1", "--drop-last"]);
  assert.equal(rc.status, 0, rc.stderr);
  assert.match(rc.stdout, /batch 32 \(last batch of 10 dropped\)/);
  assert.equal(JSON.parse(readFileSync(join(c, "metrics.jsonl"), "utf8")).step, 8);
  assert.doesNotMatch(r1.stdout, /dropped/);

  // 321 - 64 = 257 images: a last batch of one image has no batch statistics, so a BN net skips it, and says so.
  const one = join(d, "one");
  const r1b = vgg(["train", ...COMMON, "--data", `npy:${toyData(d, 321, 3)}`, "--out", one, "--epochs", "1"]);
  assert.equal(r1b.status, 0, r1b.stderr);
  assert.match(r1b.stdout, /last batch of 1 dropped: batch norm needs 2 or more images/);
  assert.equal(JSON.parse(readFileSync(join(one, "metrics.jsonl"), "utf8")).step, 8);

  // A run saved before --drop-last existed (its args lack dropLast) dropped the partial batch, and resumes so.
  const old = join(d, "old");
  assert.equal(vgg(["train", ...COMMON, "--data", data, "--out", old, "--epochs", "1"]).status, 0);
  const ck = loadCheckpoint(old, "last");
  delete (ck.state.args as Record<string, unknown>).dropLast;
  saveCheckpoint(old, "last", ck.weights, ck.model, ck.momentum, ck.state);
  const r3 = vgg(["train", "--out", old, "--epochs", "2", "--resume", "--no-progress"]);
  assert.equal(r3.status, 0, r3.stderr);
  assert.deepEqual(
    readFileSync(join(old, "metrics.jsonl"), "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).step),
    [9, 17],
  );

  // eval reads the model description from the checkpoint and agrees with the trainer's own test score.
  const result = JSON.parse(readFileSync(join(a, "result.json"), "utf8"));
  const ev = vgg(["eval", "--weights", join(a, "best.safetensors"), "--data", data, "--json"]);
  assert.equal(ev.status, 0, ev.stderr);
  const s = JSON.parse(ev.stdout);
  assert.equal(s.n, 96);
  assert.ok(Math.abs(s.top1 - result.test.top1) < 1e-9, `${s.top1} vs ${result.test.top1}`);
  // Layer flags beside a self-describing checkpoint are refused, not silently replaced by the checkpoint's.
  assertCleanError(
    vgg(["eval", "--weights", join(a, "best.safetensors"), "--data", data, "--num-classes", "3"]),
    /--num-classes: the checkpoint describes its model; pass --arch/,
  );
  // export and infer read the checkpoint's description too: no --arch or model flags needed.
  const onnx = join(d, "a.onnx");
  const ex = vgg(["export", "--weights", join(a, "best.safetensors"), "--out", onnx]);
  assert.equal(ex.status, 0, ex.stderr);
  assert.match(ex.stdout, /vgg11_bn, fp32, input \[N, 1, 32, 32\]/);
  const xin = join(d, "xin.npy");
  writeNpy(xin, { dtype: "float32", shape: [3, 1, 32, 32], data: new Float32Array(3 * 1024).fill(0.5) });
  const inf = vgg(["infer", "--weights", join(a, "best.safetensors"), "--input", xin, "--out", join(d, "logits.npy")]);
  assert.equal(inf.status, 0, inf.stderr);
  assert.deepEqual(readNpy(join(d, "logits.npy")).shape, [3, 4]);
  assertCleanError(
    vgg(["export", "--weights", join(a, "best.safetensors"), "--out", join(d, "b.onnx"), "--head", "paper"]),
    /--head: the checkpoint describes its model; pass --arch/,
  );
  assert.ok(!existsSync(join(d, "b.onnx")));
  // --test-protocol dense is `vgg eval --protocol dense` on the best weights, at the data's own scale.
  const dense = vgg(["eval", "--weights", join(a, "best.safetensors"), "--data", data, "--protocol", "dense", "--json"]);
  assert.equal(dense.status, 0, dense.stderr);
  const ds = JSON.parse(dense.stdout);
  assert.equal(result.testProtocol.protocol, "dense");
  assert.deepEqual(result.testProtocol.scales, ds.scales);
  assert.ok(Math.abs(ds.top1 - result.testProtocol.top1) < 1e-9, `${ds.top1} vs ${result.testProtocol.top1}`);
  assert.ok(Math.abs(ds.loss - result.testProtocol.loss) < 1e-6, `${ds.loss} vs ${result.testProtocol.loss}`);
  assert.match(readFileSync(join(a, "report.md"), "utf8"), /under the dense protocol \(test scale 32\)/);
});

test("train: bad flags and data give one clean line", () => {
  const d = tmp();
  assertCleanError(
    vgg(["train", "--arch", "vgg11", "--data", "npy:/nonexistent/x.npy,/nonexistent/y.npy", "--out", join(d, "r")]),
    /nonexistent/,
  );
  assertCleanError(vgg(["train", "--arch", "vgg11", "--data", "mnist", "--out", join(d, "r")]), /mnist/);
  assertCleanError(vgg(["train", "--arch", "vgg11", "--data", "fashion-mnist", "--out", join(d, "r"), "--schedule", "linear"]), /schedule/);
  assertCleanError(vgg(["train", "--arch", "vgg11", "--data", "fashion-mnist", "--out", join(d, "r"), "--augment", "rotate"]), /augment/);
  assertCleanError(
    vgg(["train", "--arch", "vgg11", "--data", "fashion-mnist", "--out", join(d, "r"), "--test-protocol", "tencrop"]),
    /test-protocol/,
  );
  assertCleanError(
    vgg(["train", "--arch", "vgg11", "--data", "fashion-mnist", "--out", join(d, "r"), "--resume"]),
    /no checkpoint to resume from/,
  );
});

test("divergence stops the run with the step, loss and learning rate, and keeps no bad checkpoint", { timeout: 120_000 }, async () => {
  const d = tmp();
  const data = `npy:${toyData(d, 160, 3)}`;
  const out = join(d, "r");
  const r = vgg(["train", ...COMMON, "--lr", "1e6", "--data", data, "--out", out, "--epochs", "3"]);
  assertCleanError(
    r,
    /training diverged (at step \d+ \(epoch \d+\): loss (NaN|Infinity|[\d.e+]+)|in epoch \d+: '[\w.]+' holds NaN or Inf) with learning rate 1\.00e\+6.*try a lower --lr/,
  );
  // Whatever was checkpointed before the blow-up is the last good state: finite everywhere.
  const last = join(out, "last.safetensors");
  if (existsSync(last)) {
    assert.match(r.stderr, /last good checkpoint .*last\.safetensors is kept/);
    for (const [k, t] of readSafetensors(last)) if (t.dtype === "float32") assert.ok((t.data as Float32Array).every(Number.isFinite), k);
  } else assert.match(r.stderr, /no checkpoint was written yet/);
});
