/**
 * `vgg train --ema` and `--swa-start` through the real binary on a tiny synthetic set (vgg11_bn at width /16): the
 * averaged models validated, checkpointed, tested and reported; a resumed run continues their state exactly; bad
 * values are one-line errors. Their equivalence with PyTorch is train-averaging.test.ts's.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { readSafetensors } from "../src/weights/safetensors.js";
import { assertCleanError, pool, tmp, toyData, vggAsync } from "./helpers.js";

const dir = tmp("vgg-averaging-cli-");
after(() => rmSync(dir, { recursive: true, force: true }));

// 330 - 64 held out = 266 training images: 8 batches of 32 and a partial one of 10 an epoch.
const data = `npy:${toyData(dir, 330, 1)};${toyData(dir, 96, 2)}`;
const COMMON = [
  ...["--arch", "vgg11_bn", "--head", "compact", "--width-divisor", "16", "--batch-size", "32", "--lr", "0.05"],
  ...["--no-progress", "--workers", "0", "--data", data],
];

const ok = (r: { status: number | null; stderr: string }, what: string) => assert.equal(r.status, 0, `${what}: ${r.stderr}`);
const json = (path: string) => JSON.parse(readFileSync(path, "utf8"));
const lines = (path: string) =>
  readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));

function sameFile(a: string, b: string, name: string): void {
  const wa = readSafetensors(join(a, name));
  const wb = readSafetensors(join(b, name));
  assert.deepEqual([...wb.keys()], [...wa.keys()], name);
  for (const [k, t] of wa) assert.deepEqual(Buffer.from((wb.get(k) as typeof t).data.buffer), Buffer.from(t.data.buffer), `${name} ${k}`);
}

test("--ema and --swa-start: validated, checkpointed, tested and reported; --resume continues them exactly", {
  timeout: 300_000,
}, async () => {
  const [a, b, noVal] = ["a", "b", "noval"].map((n) => join(dir, n));
  const avg = ["--ema", "0.9", "--swa-start", "1", "--val", "64"];
  const [ra, rb1, rn] = await pool([
    () => vggAsync(["train", ...COMMON, ...avg, "--out", a, "--epochs", "2", "--test-protocol", "dense"]),
    // The same run stopped after its first epoch, resumed below.
    () => vggAsync(["train", ...COMMON, ...avg, "--out", b, "--epochs", "2", "--steps", "9"]),
    () => vggAsync(["train", ...COMMON, "--ema", "0.99", "--val", "0", "--out", noVal, "--epochs", "1"]),
  ]);
  ok(ra, "train --ema --swa-start");
  assert.match(ra.stdout, /weight averaging: EMA decay 0\.9 after every step; SWA of epochs 1-2, BN statistics recomputed at the end/);
  assert.match(ra.stdout, /epoch 2\/2 .* EMA val top-1 [\d.]+%/);
  assert.match(ra.stdout, /SWA: the weights of epochs 1-2 averaged \(2\), BN statistics recomputed over 9 training batches/);
  assert.match(ra.stdout, /test \(96 images, EMA decay 0\.9, epoch \d, best by its validation\): top-1/);
  assert.match(ra.stdout, /test \(96 images, SWA of epochs 1-2\): top-1/);
  assert.match(ra.stdout, /test, dense protocol at S=32 \(96 images, EMA\): top-1/);
  assert.match(ra.stdout, /test top-1 accuracy [\d.]+% \(96 images\), [\d.]+% under the dense protocol, EMA [\d.]+% \([\d.]+% dense\), SWA [\d.]+% \([\d.]+% dense\); weights/);
  for (const f of ["ema.safetensors", "ema-best.safetensors", "swa.safetensors"]) assert.ok(existsSync(join(a, f)), f);
  const metrics = lines(join(a, "metrics.jsonl"));
  assert.equal(metrics.length, 2);
  for (const m of metrics) assert.ok(m.emaVal.top1 >= 0 && m.emaVal.n === 64, JSON.stringify(m.emaVal));
  const result = json(join(a, "result.json"));
  assert.equal(result.ema.test.n, 96);
  assert.match(result.ema.weights, /ema-best\.safetensors$/);
  assert.deepEqual(result.swa.epochs, [1, 2]);
  assert.equal(result.swa.test.n, 96);
  const report = readFileSync(join(a, "report.md"), "utf8");
  assert.match(report, /EMA of the weights \(decay 0\.9, epoch \d\): top-1 [\d.]+%/);
  assert.match(report, /SWA, the weights of epochs 1-2 averaged, BN statistics recomputed on the training data: top-1 [\d.]+%/);
  assert.match(report, /\| EMA val top-1 % \|/);
  // The averaged files are checkpoints like best.safetensors: vgg eval reads them without model flags.
  const ev = await vggAsync(["eval", "--weights", join(a, "swa.safetensors"), "--data", data, "--json"]);
  ok(ev, "eval swa.safetensors");
  assert.equal(JSON.parse(ev.stdout).top1, result.swa.test.top1);
  // --test-protocol scores the averaged models too, as vgg eval --protocol does.
  const dense = await vggAsync(["eval", "--weights", join(a, "swa.safetensors"), "--data", data, "--protocol", "dense", "--json"]);
  ok(dense, "eval --protocol dense swa.safetensors");
  assert.equal(JSON.parse(dense.stdout).top1, result.swa.testProtocol.top1);
  assert.equal(result.ema.testProtocol.protocol, "dense");
  assert.match(report, /SWA, .*\(`swa\.safetensors`\)\. Under the dense protocol: top-1 [\d.]+%, top-5 [\d.]+%\./);

  // Resumed after epoch 1: the EMA and SWA state came back from last.optim.safetensors, so every file is the same.
  ok(rb1, "first part");
  const rb2 = await vggAsync(["train", "--out", b, "--resume", "--no-progress"]);
  ok(rb2, "--resume");
  for (const f of ["last.safetensors", "ema.safetensors", "ema-best.safetensors", "swa.safetensors", "last.optim.safetensors"])
    sameFile(a, b, f);

  // Without a validation split the EMA has no best: its latest is tested.
  ok(rn, "--ema without validation");
  assert.ok(!existsSync(join(noVal, "ema-best.safetensors")));
  assert.match(json(join(noVal, "result.json")).ema.weights, /[\\/]ema\.safetensors$/);
  assert.equal(lines(join(noVal, "metrics.jsonl"))[0].emaVal, null);
});

test("--test-every-epoch: the test curve of the weights and the EMA, what eval says of the saved files; kept on --resume", {
  timeout: 300_000,
}, async () => {
  const t = join(dir, "tested");
  const args = ["train", ...COMMON, "--ema", "0.9", "--val", "0", "--test-every-epoch", "--out", t, "--epochs", "2"];
  // Stopped after epoch 1 (9 steps) and resumed without the flag: it is the run's own, as --test-protocol.
  const first = await vggAsync([...args, "--steps", "9"]);
  ok(first, "train --test-every-epoch");
  assert.match(first.stdout, /epoch 1\/2 .* test top-1 [\d.]+% {2}EMA test top-1 [\d.]+%/);
  const resumed = await vggAsync(["train", "--out", t, "--resume", "--no-progress"]);
  ok(resumed, "--resume");
  assert.match(resumed.stdout, /epoch 2\/2 .* test top-1 [\d.]+% {2}EMA test top-1 [\d.]+%/);
  const metrics = lines(join(t, "metrics.jsonl"));
  assert.equal(metrics.length, 2);
  for (const m of metrics) assert.ok(m.test.n === 96 && m.emaTest.n === 96, JSON.stringify(m));
  // The last epoch's scores are those of the files it wrote.
  const [raw, ema] = await pool([
    () => vggAsync(["eval", "--weights", join(t, "last.safetensors"), "--data", data, "--json"]),
    () => vggAsync(["eval", "--weights", join(t, "ema.safetensors"), "--data", data, "--json"]),
  ]);
  ok(raw, "eval last");
  ok(ema, "eval ema");
  assert.equal(JSON.parse(raw.stdout).top1, metrics[1].test.top1);
  assert.equal(JSON.parse(ema.stdout).top1, metrics[1].emaTest.top1);
  const report = readFileSync(join(t, "report.md"), "utf8");
  // No validation split: no EMA validation column, and "best" is by training accuracy.
  assert.match(report, /\| val top-5 % \| test top-1 % \| EMA test top-1 % \| img\/s \|/);
  assert.match(report, /best epoch \d by training accuracy\)/);
  const best = Math.max(...metrics.flatMap((m) => [m.test.top1, m.emaTest.top1]));
  if (best >= 0.9) assert.match(report, /Time to test top-1 .*\n\n\| test top-1 \| weights \| EMA \|\n\|---\|---\|---\|\n\| 90% \| /);
  else assert.doesNotMatch(report, /Time to test top-1/);
});

test("bad --ema and --swa-start values: one line, non-zero exit, nothing trained", { timeout: 120_000 }, async () => {
  const out = join(dir, "bad");
  const base = ["train", ...COMMON, "--out", out];
  const early = join(dir, "early");
  const [big, zero, beyond, first, stopped] = await pool([
    () => vggAsync([...base, "--ema", "1.5"]),
    () => vggAsync([...base, "--ema", "0"]),
    () => vggAsync([...base, "--swa-start", "3", "--epochs", "2"]),
    () => vggAsync([...base, "--swa-start", "0"]),
    // Stopped by --steps before epoch 2: nothing averaged yet, said so.
    () => vggAsync(["train", ...COMMON, "--out", early, "--epochs", "2", "--steps", "9", "--swa-start", "2", "--val", "64"]),
  ]);
  assertCleanError(big, /^vgg: --ema 1\.5: want a decay between 0 and 1 \(exclusive\), e\.g\. 0\.999$/);
  assertCleanError(zero, /^vgg: --ema 0: want a decay between 0 and 1/);
  assertCleanError(beyond, /^vgg: --swa-start 3 is beyond --epochs 2: no epoch's weights would be averaged/);
  assertCleanError(first, /--swa-start <epoch>' argument '0' is invalid/);
  assert.ok(!existsSync(out), "a refused run leaves no directory");
  ok(stopped, "--swa-start 2, stopped after epoch 1");
  assert.match(stopped.stdout, /SWA: no epoch reached --swa-start 2: nothing averaged, no swa\.safetensors/);
  assert.ok(!existsSync(join(early, "swa.safetensors")));
  // --epochs may change on --resume, but not to below the run's --swa-start.
  const resumed = await vggAsync(["train", "--out", early, "--resume", "--epochs", "1", "--no-progress"]);
  assertCleanError(resumed, /^vgg: --swa-start 2 is beyond --epochs 1/);
});
