/** Shared test plumbing: run the real `vgg` binary, temp dirs, tolerances. */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { writeNpy } from "../src/io/npy.js";
import { Xoshiro128 } from "../src/random.js";

export const ROOT = resolve(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "bin", "vgg.js");

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function vgg(args: string[], opts: { timeout?: number; env?: Record<string, string> } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: "utf8",
    timeout: opts.timeout ?? 120_000,
    cwd: ROOT,
    env: opts.env ? { ...process.env, ...opts.env } : undefined,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `vgg` without blocking, so independent runs can overlap (process start-up dominates short runs). */
export function vggAsync(args: string[], opts: { timeout?: number; env?: Record<string, string> } = {}): Promise<RunResult> {
  return new Promise((done, fail) => {
    const env = opts.env ? { ...process.env, ...opts.env } : undefined;
    const p = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: opts.timeout ?? 120_000, env });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    p.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    p.on("error", fail);
    p.on("close", (status) => done({ status, stdout, stderr }));
  });
}

/** Runs `jobs` at most `width` at a time; resolves when all have finished, rejects with the first failure. */
export async function pool<T>(jobs: (() => Promise<T>)[], width = 2): Promise<T[]> {
  const out = new Array<T>(jobs.length);
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (next < jobs.length && failed === undefined) {
      const k = next++;
      try {
        out[k] = await jobs[k]();
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, jobs.length) }, worker));
  if (failed !== undefined) throw failed;
  return out;
}

/**
 * A learnable toy set as `X.npy,Y.npy` in `dir`: n 1x32x32 uint8 images in 4 classes, each class a bright square at
 * its own position on noise (seeded).
 */
export function toyData(dir: string, n: number, seed: number): string {
  const rng = new Xoshiro128(seed);
  const x = new Uint8Array(n * 32 * 32);
  const y = new BigInt64Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 4;
    y[i] = BigInt(c);
    for (let p = 0; p < 1024; p++) x[i * 1024 + p] = Math.floor(rng.next() * 60);
    const oy = 4 + 14 * (c >> 1);
    const ox = 4 + 14 * (c & 1);
    for (let r = 0; r < 10; r++) for (let q = 0; q < 10; q++) x[i * 1024 + (oy + r) * 32 + ox + q] = 200;
  }
  writeNpy(join(dir, `x${seed}.npy`), { dtype: "uint8", shape: [n, 1, 32, 32], data: x });
  writeNpy(join(dir, `y${seed}.npy`), { dtype: "int64", shape: [n], data: y });
  return `${join(dir, `x${seed}.npy`)},${join(dir, `y${seed}.npy`)}`;
}

export function tmp(prefix = "vgg-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** max |a-b| / max |b|: the error relative to the reference's scale. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let k = 0; k < a.length; k++) {
    num = Math.max(num, Math.abs(a[k] - b[k]));
    den = Math.max(den, Math.abs(b[k]));
  }
  return num / (den || 1);
}

/** A one-line user error: non-zero exit, `vgg: ...` on stderr, no stack trace. */
export function assertCleanError(r: RunResult, pattern: RegExp): void {
  const lines = r.stderr.trim().split("\n");
  if (r.status === 0) throw new Error(`expected failure, got exit 0; stdout: ${r.stdout}`);
  if (lines.length !== 1) throw new Error(`expected one line on stderr, got:\n${r.stderr}`);
  if (/\n\s+at /.test(r.stderr)) throw new Error(`stack trace on stderr:\n${r.stderr}`);
  if (!pattern.test(lines[0])) throw new Error(`stderr ${JSON.stringify(lines[0])} does not match ${pattern}`);
}

export function hasTorch(): boolean {
  return spawnSync("/usr/bin/python3", ["-c", "import torch, torchvision"], { encoding: "utf8" }).status === 0;
}

/** The first http:// URL a server process prints on stdout (it fails if the process exits or prints none in time). */
export function printedUrl(p: ChildProcess, timeoutMs = 15_000): Promise<{ url: string; output: () => string }> {
  let out = "";
  let err = "";
  p.stderr?.setEncoding("utf8").on("data", (s: string) => (err += s));
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no URL printed: ${out} ${err}`)), timeoutMs);
    p.on("close", () => fail(new Error(`the server exited: ${err}`)));
    p.stdout?.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const u = /http:\/\/\S+/.exec(out);
      if (u) {
        clearTimeout(timer);
        done({ url: u[0], output: () => out });
      }
    });
  });
}
