/** Shared test plumbing: run the real `vgg` binary, temp dirs, tolerances. */
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(import.meta.dirname, "..", "..");
export const BIN = join(ROOT, "bin", "vgg.js");

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function vgg(args: string[], opts: { timeout?: number } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: opts.timeout ?? 120_000, cwd: ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
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
