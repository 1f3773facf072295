/**
 * Crash safety of `vgg train`, through the real binary: SIGKILL at random moments (seeded), Ctrl-C, a file-size
 * limit during a checkpoint write, and the run directory's lock. A run interrupted any number of times and resumed
 * must end with the weights and metrics of a run never interrupted, bit for bit: the engine runs on one thread
 * (--threads 1) so that its reductions are deterministic, and everything else a step depends on (data order,
 * augmentation, dropout, learning rate, running sums) is in the checkpoint or a function of (seed, epoch, batch).
 * Only wall-time fields (seconds, imagesPerSecond) may differ.
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { Xoshiro128 } from "../src/random.js";
import { readSafetensors, readSafetensorsFile } from "../src/weights/safetensors.js";
import { assertCleanError, BIN, ROOT, tmp, toyData, vgg } from "./helpers.js";

const EPOCHS = 5;
/** 650 images, 64 held out: 18 steps of 32 and one of 10 per epoch (its own graph), 95 in all; dropout and augmentation on. */
const PER_EPOCH = 19;
const DIR = tmp("vgg-crash-");
const DATA = `npy:${toyData(DIR, 650, 1)};${toyData(DIR, 64, 2)}`;
after(() => rmSync(DIR, { recursive: true, force: true }));
const newRun = (epochs = EPOCHS) => [
  "train",
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
  "--seed",
  "7",
  "--data",
  DATA,
  "--epochs",
  String(epochs),
  "--threads",
  "1",
  "--workers",
  "0",
  "--no-progress",
];
const resume = (out: string, epochs = EPOCHS) => [
  "train",
  "--out",
  out,
  "--resume",
  "--epochs",
  String(epochs),
  "--threads",
  "1",
  "--workers",
  "0",
  "--no-progress",
];
/** What a finished run directory holds, and nothing else (no lock, no temp or pending files). */
const FINISHED = ["best.safetensors", "last.optim.safetensors", "last.safetensors", "metrics.jsonl", "report.md", "result.json"];

interface Running {
  child: ChildProcess;
  exited: boolean;
  done: Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

function start(args: string[], env: Record<string, string> = {}): Running {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const r: Running = {
    child,
    exited: false,
    // "close": the process is reaped (its pid is free again, as a stale lock's must be) and its output read.
    done: new Promise((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (status, signal) => {
        r.exited = true;
        resolve({ status, signal, stdout, stderr });
      });
    }),
  };
  return r;
}

/** Polls `pred` until it holds (true) or the process ends (false). */
async function until(run: Running, pred: () => boolean, timeoutMs = 60_000): Promise<boolean> {
  const t = Date.now();
  while (!run.exited) {
    if (pred()) return true;
    if (Date.now() - t > timeoutMs) throw new Error("timed out waiting on the training process");
    await sleep(3);
  }
  return false;
}

/** Waits `ms` or until the process ends; true if it is still running. */
async function alive(run: Running, ms: number): Promise<boolean> {
  await Promise.race([sleep(ms), run.done]);
  return !run.exited;
}

/** The trainer state in the committed optimizer file. */
function optimState(dir: string): Record<string, unknown> {
  return JSON.parse(readSafetensorsFile(join(dir, "last.optim.safetensors")).metadata.state);
}

/** The step of the committed checkpoint (the weights file is the commit point), -1 before the first. */
function committedStep(dir: string): number {
  return headerStep(join(dir, "last.safetensors"));
}

/** The `step` in a safetensors file's metadata, read from its header; -1 if there is no file. */
function headerStep(file: string): number {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return -1;
  }
  try {
    const len = Buffer.alloc(8);
    readSync(fd, len, 0, 8, 0);
    const header = Buffer.alloc(Number(len.readBigUInt64LE(0)));
    readSync(fd, header, 0, header.length, 8);
    return Number(JSON.parse(header.toString("utf8")).__metadata__.step);
  } finally {
    closeSync(fd);
  }
}

/** The step of the optimizer file (behind the weights between a checkpoint's two renames); -1 if there is none. */
function optimStep(dir: string): number {
  return headerStep(join(dir, "last.optim.safetensors"));
}

/** Temp files of atomic writes and a half-committed checkpoint: a write is in progress (or was cut short). */
function inFlight(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => (f.endsWith(".tmp") && !f.startsWith(".lock.")) || f.endsWith(".pending"));
  } catch {
    return [];
  }
}

const stripTimes = (m: Record<string, unknown>) => ({ ...m, seconds: undefined, imagesPerSecond: undefined });

function metrics(dir: string): Record<string, unknown>[] {
  return readFileSync(join(dir, "metrics.jsonl"), "utf8")
    .trim()
    .split("\n")
    .map((l) => stripTimes(JSON.parse(l)));
}

/** The run in `dir` ended exactly as the reference: weights, momentum, metrics, test score. */
function assertSameRun(dir: string, ref: string): void {
  assert.deepEqual(readdirSync(dir).sort(), FINISHED, "stray files in the run directory");
  for (const f of ["last.safetensors", "best.safetensors"])
    assert.ok(readFileSync(join(dir, f)).equals(readFileSync(join(ref, f))), `${f} differs`);
  const o = readSafetensorsFile(join(dir, "last.optim.safetensors"));
  const oRef = readSafetensorsFile(join(ref, "last.optim.safetensors"));
  for (const [k, t] of oRef.tensors) assert.deepEqual(Buffer.from(o.tensors.get(k)!.data.buffer), Buffer.from(t.data.buffer), k);
  const state = JSON.parse(o.metadata.state);
  const stateRef = JSON.parse(oRef.metadata.state);
  for (const k of ["epoch", "step", "schedule", "bestValAcc", "bestEpoch", "recent"]) assert.deepEqual(state[k], stateRef[k], `state.${k}`);
  assert.deepEqual(metrics(dir), metrics(ref));
  assert.equal(metrics(dir).length, EPOCHS);
  const res = JSON.parse(readFileSync(join(dir, "result.json"), "utf8"));
  const resRef = JSON.parse(readFileSync(join(ref, "result.json"), "utf8"));
  assert.deepEqual(res.epochs.map(stripTimes), resRef.epochs.map(stripTimes));
  for (const k of ["bestEpoch", "bestValAcc", "test"]) assert.deepEqual(res[k], resRef[k], `result.${k}`);
}

/** The uninterrupted run: no --checkpoint-every, no test hook. Shared by the tests below. */
let reference: Promise<string> | undefined;
function referenceRun(): Promise<string> {
  reference ??= (async () => {
    const out = join(DIR, "reference");
    const r = await start([...newRun(), "--out", out]).done;
    assert.equal(r.status, 0, r.stderr);
    return out;
  })();
  return reference;
}

test("SIGKILL at 20+ random moments (during steps, checkpoint writes, start-up), resumed each time: the same run", {
  timeout: 180_000,
}, async (t) => {
  const t0 = Date.now();
  const ref = await referenceRun();
  const out = join(DIR, "killed");
  const rng = new Xoshiro128(2024);
  // Each checkpoint sleeps 3 x 20 ms inside its writes (test hook), so kills land in them often.
  const env = { VGG_TEST_SLOW_CHECKPOINT_MS: "20" };
  const TARGET = 24;
  const modes = { early: 0, write: 0, commit: 0, any: 0 };
  let kills = 0;
  let cutWrites = 0;
  let takeovers = 0;
  let rolledForward = 0;
  let dropped = 0;
  while (kills < TARGET) {
    const fresh = !existsSync(join(out, "last.safetensors"));
    // --checkpoint-every is given only when the run starts; a resumed run keeps it.
    const run = start(fresh ? [...newRun(), "--out", out, "--checkpoint-every", "2"] : resume(out), env);
    const s0 = committedStep(out);
    const u = rng.next();
    const mode = u < 0.2 ? "early" : u < 0.5 ? "write" : u < 0.65 ? "commit" : "any";
    let running: boolean;
    if (mode === "early") {
      // Anywhere from process start-up (module loading, lock, recovery, data, session creation) to the first steps.
      running = await alive(run, rng.next() * 1500);
    } else {
      // After at least one new checkpoint (so the loop progresses), then: inside the next checkpoint write; or
      // between its commit (the weights' rename) and the optimizer file's rename; or at any moment within about
      // one checkpoint interval.
      running = await until(run, () => committedStep(out) > s0);
      if (running && mode === "write") running = await until(run, () => inFlight(out).length > 0);
      if (running && mode === "commit") running = await until(run, () => committedStep(out) > optimStep(out));
      const delay = mode === "commit" ? 0 : rng.next() * (mode === "write" ? 70 : 120);
      if (running) running = await alive(run, delay);
    }
    if (!running) {
      const r = await run.done;
      assert.equal(r.status, 0, `a run between kills failed: ${r.stderr}`);
      break; // it finished before the kill came
    }
    run.child.kill("SIGKILL");
    const r = await run.done;
    assert.equal(r.signal, "SIGKILL", `exited ${r.status} before the kill: ${r.stderr}`);
    kills++;
    modes[mode]++;
    if (inFlight(out).length > 0) cutWrites++;
    if (/taking over the stale lock/.test(r.stdout)) takeovers++;
    if (/completed the interrupted checkpoint/.test(r.stdout)) rolledForward++;
    if (/dropped the unfinished checkpoint|removed the temp file/.test(r.stdout)) dropped++;
  }
  const reached = committedStep(out);
  const last = await start(resume(out)).done;
  assert.equal(last.status, 0, last.stderr);
  if (/taking over the stale lock/.test(last.stdout)) takeovers++;
  if (/completed the interrupted checkpoint/.test(last.stdout)) rolledForward++;
  if (/dropped the unfinished checkpoint|removed the temp file/.test(last.stdout)) dropped++;
  t.diagnostic(
    `${kills} kills (${modes.early} early, ${modes.write} in a checkpoint write, ${modes.commit} between a checkpoint's two renames, ` +
      `${modes.any} anywhere); ${cutWrites} left a write cut short; resumes: ${takeovers} took over a stale lock, ${rolledForward} completed ` +
      `a half-renamed checkpoint, ${dropped} dropped an unfinished one or temp files; step ${reached}/${PER_EPOCH * EPOCHS} after the last kill; ` +
      `${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  assert.ok(kills >= 20, `only ${kills} kills before the run finished`);
  assert.ok(cutWrites >= 3, `only ${cutWrites} kills cut a checkpoint write short`);
  assert.ok(takeovers >= 10, `only ${takeovers} stale locks taken over`);
  if (modes.commit > 0) assert.ok(rolledForward > 0, "no resume completed a half-renamed checkpoint");
  assertSameRun(out, ref);
});

test("Ctrl-C checkpoints mid-epoch and says how to resume; a second run on the directory refuses", { timeout: 120_000 }, async () => {
  const ref = await referenceRun();
  const out = join(DIR, "sigint");
  // No --checkpoint-every: the only mid-epoch checkpoint is the one Ctrl-C writes. Slow writes keep the run
  // going long enough for the second process to meet it.
  const run = start([...newRun(), "--out", out], { VGG_TEST_SLOW_CHECKPOINT_MS: "150" });
  assert.ok(await until(run, () => existsSync(join(out, ".lock"))), "the run ended before taking its lock");
  const holder = JSON.parse(readFileSync(join(out, ".lock"), "utf8"));
  assert.equal(holder.pid, run.child.pid);
  const second = spawnSync(process.execPath, [BIN, ...resume(out)], { cwd: ROOT, encoding: "utf8" });
  assertCleanError(
    { status: second.status, stdout: second.stdout, stderr: second.stderr },
    new RegExp(`${out}: is in use by another vgg train \\(pid ${run.child.pid}\\b`),
  );
  // Interrupt a few steps into epoch 2.
  assert.ok(await until(run, () => committedStep(out) >= PER_EPOCH), "the run ended before its first epoch ended");
  await sleep(40);
  run.child.kill("SIGINT");
  const r = await run.done;
  assert.equal(r.status, 130, r.stderr);
  assert.match(r.stdout, /interrupt: stopping after the current step/);
  const msg = r.stderr.trim().split("\n").at(-1)!;
  // "at epoch E step S": inside epoch E (the usual case); "after epoch E step S": at its end (a slow machine).
  const m = /^vgg: interrupted (at|after) epoch (\d+) step (\d+) \(checkpoint written in .*\): resume with (vgg train .*)$/.exec(msg);
  assert.ok(m, msg);
  const epoch = Number(m[2]);
  const step = Number(m[3]);
  assert.ok(step > PER_EPOCH && step < PER_EPOCH * EPOCHS, `interrupted at step ${step}`);
  assert.equal(committedStep(out), step, "the checkpoint is not of the step the message names");
  const batch = step - PER_EPOCH * (epoch - 1);
  const resumed = m[1] === "at" ? `in epoch ${epoch} after batch ${batch}` : `after epoch ${epoch}`;
  assert.deepEqual(optimState(out).position, m[1] === "at" ? { epoch: epoch - 1, batch } : undefined);
  assert.ok(!existsSync(join(out, ".lock")), "the lock was not released");
  assert.deepEqual(inFlight(out), []);
  // The printed command, as it is, continues the run to the uninterrupted result.
  const again = vgg([...m[4].split(" ").slice(1), "--no-progress"]);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, new RegExp(`resuming .* ${resumed} \\(step ${step}\\)`));
  assertSameRun(out, ref);
});

test("SIGTERM (kill, docker stop) checkpoints like Ctrl-C and exits 143; the run resumes to the same end", {
  timeout: 120_000,
}, async () => {
  const ref = await referenceRun();
  const out = join(DIR, "sigterm");
  const run = start([...newRun(), "--out", out]);
  assert.ok(await until(run, () => committedStep(out) >= PER_EPOCH), "the run ended before its first epoch ended");
  run.child.kill("SIGTERM");
  const r = await run.done;
  assert.equal(r.status, 143, r.stderr);
  assert.match(r.stdout, /SIGTERM: stopping after the current step/);
  const msg = r.stderr.trim().split("\n").at(-1)!;
  const m = /^vgg: interrupted (at|after) epoch \d+ step (\d+) \(checkpoint written in .*\): resume with (vgg train .*)$/.exec(msg);
  assert.ok(m, msg);
  assert.equal(committedStep(out), Number(m[2]), "the checkpoint is not of the step the message names");
  assert.ok(!existsSync(join(out, ".lock")), "the lock was not released");
  const again = vgg([...m[3].split(" ").slice(1), "--no-progress"]);
  assert.equal(again.status, 0, again.stderr);
  assertSameRun(out, ref);
});

test("a file-size limit during a checkpoint write: one clean line, the previous checkpoint intact, no temp files", {
  timeout: 120_000,
}, () => {
  const out = join(DIR, "fsize");
  const first = vgg([...newRun(1), "--out", out, "--checkpoint-every", "4"]);
  assert.equal(first.status, 0, first.stderr);
  const before = ["last.safetensors", "last.optim.safetensors", "best.safetensors"].map((f) => readFileSync(join(out, f)));
  assert.ok(before[1].length > 100 * 1024, "the checkpoint is too small for the limit below");
  // 100 KB: enough for the lock, metrics.jsonl and the like, not for a checkpoint (Node ignores SIGXFSZ, so the
  // write fails with EFBIG instead of the process being killed).
  const q = (s: string) => `'${s}'`;
  const cmd = `ulimit -f 100; exec ${q(process.execPath)} ${q(BIN)} ${resume(out, 2).map(q).join(" ")}`;
  const r = spawnSync("bash", ["-c", cmd], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  assertCleanError(
    { status: r.status, stdout: r.stdout, stderr: r.stderr },
    /last\.optim\.safetensors: file too large \(.*ulimit -f.*\); checkpoint of step 20 not written, the previous checkpoint is kept$/,
  );
  ["last.safetensors", "last.optim.safetensors", "best.safetensors"].forEach((f, i) => {
    assert.ok(readFileSync(join(out, f)).equals(before[i]), `${f} changed`);
  });
  assert.ok(readSafetensors(join(out, "last.safetensors")).size > 0);
  assert.deepEqual(inFlight(out), [], "temp files left behind");
  assert.ok(!existsSync(join(out, ".lock")), "the lock was not released");
  // The kept checkpoint resumes.
  const again = vgg(resume(out, 2));
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /resuming .* after epoch 1 \(step 19\)/);
});

test("a lock held on another host is refused; one of a dead process is taken over", () => {
  const out = join(DIR, "locks");
  const first = vgg([...newRun(1), "--out", out, "--steps", "2"]);
  assert.equal(first.status, 0, first.stderr);
  writeFileSync(join(out, ".lock"), `${JSON.stringify({ pid: 1, host: "elsewhere.example", started: "2020-01-01T00:00:00Z" })}\n`);
  assertCleanError(
    vgg(resume(out, 1)),
    new RegExp(`${out}: is locked by vgg train pid 1 on host elsewhere\\.example .*delete ${out}/\\.lock`),
  );
  // A pid that cannot be running: beyond the kernel's maximum.
  writeFileSync(join(out, ".lock"), `${JSON.stringify({ pid: 4194304 + 7, host: hostname(), started: "2020-01-01T00:00:00Z" })}\n`);
  const r = vgg(resume(out, 1));
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /taking over the stale lock .*\.lock \(pid 4194311 is no longer running\)/);
  assert.ok(!existsSync(join(out, ".lock")));
});
