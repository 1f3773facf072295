/**
 * The fuzz driver: for each format, make N mutants, hand them to worker processes one file at a time, and tally
 * what happened. A worker that exceeds the per-file time limit is killed (a hang) and replaced; one that dies is a
 * crash (a native fault or an abort); an allocation above the file's bound is an oversize allocation.
 */
import { type ChildProcess, fork } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import type { WorkerResult } from "./child.js";
import { FORMATS, type Format, makeMutant } from "./formats.js";
import { makeSeeds, type Seed } from "./seeds.js";

export interface FuzzOptions {
  perFormat: number;
  formats?: readonly Format[];
  seed?: number;
  /** Worker processes per format. */
  jobs?: number;
  /** Per-file time limit. */
  timeoutMs?: number;
  /** Where failing files are copied (default: a vgg-fuzz-failures-<seed> folder in the temp dir). */
  keepDir?: string;
  /** Only these mutant indices (to reproduce one file). */
  indices?: readonly number[];
  onFormatDone?: (s: FormatStats) => void;
}

export interface Failure {
  index: number;
  kind: "crash" | "hang" | "oversize" | "bad message" | "seed";
  seed: string;
  what: string;
  message: string;
  /** A copy of the failing file. */
  file?: string;
}

export interface FormatStats {
  format: Format;
  files: number;
  /** Rejected with a one-line VggError naming the file. */
  rejected: number;
  accepted: number;
  crashes: number;
  hangs: number;
  oversize: number;
  /** Rejected with a VggError whose message holds line breaks or control characters. */
  badMessages: number;
  maxMs: number;
  /** The slowest file: its index and mutation. */
  slowest?: { index: number; what: string; ms: number };
  /** Largest single allocation seen, bytes. */
  maxAlloc: number;
  /** Peak RSS of the worker processes, bytes. */
  peakRss: number;
  seconds: number;
  failures: Failure[];
  /** How often each rejection message came up, numbers and quoted names masked ("N", '...'). */
  reasons: Record<string, number>;
}

const CHILD = new URL("./child.js", import.meta.url);

export type Outcome = WorkerResult | { outcome: "hang" | "died"; message: string };

/** One worker process; `run` resolves with its result, a hang (it was killed) or its death. */
class Worker {
  private readonly proc: ChildProcess;
  readonly ready: Promise<void>;
  private pending?: (r: Outcome) => void;
  private stderr = "";
  dead = false;
  peakRss = 0;

  constructor(format: Format) {
    this.proc = fork(CHILD, [format], { execArgv: ["--max-old-space-size=2048"], stdio: ["ignore", "ignore", "pipe", "ipc"] });
    // A send racing the worker's death reports an error event; the exit handler below already accounts for it.
    this.proc.on("error", () => {});
    this.proc.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString("utf8")).slice(-2000);
    });
    this.ready = new Promise((resolve, reject) => {
      const fail = (why: string) => {
        clearTimeout(timer);
        this.kill();
        reject(new Error(`fuzz worker for ${format} failed to start (${why}): ${this.stderr}`));
      };
      const timer = setTimeout(() => fail("no word after 60 s"), 60_000);
      this.proc.once("message", () => {
        clearTimeout(timer);
        resolve();
      });
      this.proc.once("exit", (code, signal) => fail(String(signal ?? code)));
    });
    this.proc.on("message", (m: WorkerResult | { ready: true }) => {
      if ("ready" in m) return;
      this.peakRss = Math.max(this.peakRss, m.rss);
      const p = this.pending;
      this.pending = undefined;
      p?.(m);
    });
    this.proc.on("exit", (code, signal) => {
      this.dead = true;
      const p = this.pending;
      this.pending = undefined;
      p?.({
        outcome: "died",
        message: `worker died (${signal ?? `exit code ${code}`}): ${this.stderr.trim().split("\n").slice(-3).join(" | ")}`,
      });
    });
  }

  run(id: number, file: string, timeoutMs: number): Promise<Outcome> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        if (this.pending !== done) return;
        this.pending = undefined;
        this.kill();
        resolve({ outcome: "hang", message: `no result after ${timeoutMs} ms` });
      }, timeoutMs);
      const done = (r: Outcome) => {
        clearTimeout(timer);
        resolve(r);
      };
      this.pending = done;
      this.proc.send({ id, file });
    });
  }

  kill(): void {
    this.dead = true;
    this.proc.kill("SIGKILL");
  }
}

async function fuzzFormat(
  format: Format,
  o: Required<Omit<FuzzOptions, "indices" | "onFormatDone" | "formats">> & FuzzOptions,
  work: string,
) {
  const t0 = Date.now();
  const seeds = await makeSeeds(format);
  const st: FormatStats = {
    format,
    files: 0,
    rejected: 0,
    accepted: 0,
    crashes: 0,
    hangs: 0,
    oversize: 0,
    badMessages: 0,
    maxMs: 0,
    maxAlloc: 0,
    peakRss: 0,
    seconds: 0,
    failures: [],
    reasons: {},
  };
  const keep = (file: string, f: Omit<Failure, "file">) => {
    mkdirSync(o.keepDir, { recursive: true });
    const copy = join(o.keepDir, `${format}-${f.index}${extname(file)}`);
    copyFileSync(file, copy);
    st.failures.push({ ...f, file: copy });
  };
  const workers: Worker[] = [];
  const spawn = async () => {
    const w = new Worker(format);
    await w.ready;
    return w;
  };
  /** Runs one file on worker slot `k`, replacing a dead worker; returns the outcome. */
  const runOn = async (k: number, id: number, file: string): Promise<Outcome> => {
    if (!workers[k] || workers[k].dead) {
      if (workers[k]) st.peakRss = Math.max(st.peakRss, workers[k].peakRss);
      workers[k] = await spawn();
    }
    return workers[k].run(id, file, o.timeoutMs);
  };
  // The seeds themselves must load: otherwise every mutant would be "rejected" for the wrong reason.
  for (const [i, s] of seeds.entries()) {
    const file = join(work, `${format}-seed-${i}${s.ext}`);
    writeFileSync(file, s.bytes);
    const r = await runOn(0, -1 - i, file);
    if (r.outcome !== "accepted") {
      const failure = {
        index: -1 - i,
        kind: "seed" as const,
        seed: s.name,
        what: "unmutated seed",
        message: `${r.outcome}: ${r.message ?? ""}`,
      };
      keep(file, failure);
      st.crashes++;
    }
    rmSync(file, { force: true });
  }
  const indices = o.indices ?? Array.from({ length: o.perFormat }, (_, i) => i);
  let next = 0;
  const lane = async (k: number) => {
    for (let j = next++; j < indices.length; j = next++) {
      const index = indices[j];
      const m = makeMutant(format, seeds, o.seed, index);
      const file = join(work, `${format}-${index}${m.seed.ext}`);
      writeFileSync(file, m.bytes);
      const r = await runOn(k, index, file);
      tally(st, r, index, m.seed, m.what, file, keep);
      rmSync(file, { force: true });
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, o.jobs) }, (_, k) => lane(k)));
  } finally {
    for (const w of workers) {
      st.peakRss = Math.max(st.peakRss, w.peakRss);
      w.kill();
    }
  }
  st.seconds = (Date.now() - t0) / 1000;
  return st;
}

/** A rejection message with its particulars masked, so that messages group by kind. */
function reasonOf(message: string): string {
  return message
    .replace(/^FILE: /, "")
    .replace(/'[^']*'/g, "'...'")
    .replace(/\[[^\]]*\]/g, "[...]")
    .replace(/-?\d+(\.\d+)?/g, "N")
    .slice(0, 120);
}

function tally(
  st: FormatStats,
  out: Outcome,
  index: number,
  seed: Seed,
  what: string,
  file: string,
  keep: (file: string, f: Omit<Failure, "file">) => void,
): void {
  st.files++;
  const base = { index, seed: seed.name, what };
  if (out.outcome === "hang" || out.outcome === "died") {
    if (out.outcome === "hang") st.hangs++;
    else st.crashes++;
    keep(file, { ...base, kind: out.outcome === "hang" ? "hang" : "crash", message: out.message ?? "" });
    return;
  }
  const r = out as WorkerResult;
  if (r.ms > st.maxMs) {
    st.maxMs = r.ms;
    st.slowest = { index, what, ms: r.ms };
  }
  st.maxAlloc = Math.max(st.maxAlloc, r.maxAlloc);
  st.peakRss = Math.max(st.peakRss, r.rss);
  if (r.outcome === "crash") {
    st.crashes++;
    keep(file, { ...base, kind: "crash", message: `${r.message}\n${r.stack ?? ""}`.trim() });
  } else if (r.outcome === "rejected") {
    st.rejected++;
    const reason = reasonOf(r.message ?? "");
    st.reasons[reason] = (st.reasons[reason] ?? 0) + 1;
  } else st.accepted++;
  if (r.garbled) {
    st.badMessages++;
    keep(file, { ...base, kind: "bad message", message: `a VggError message is not one printable line: ${r.garbled}` });
  }
  if (r.oversize) {
    st.oversize++;
    keep(file, { ...base, kind: "oversize", message: `bound ${r.bound} bytes exceeded: ${r.oversize}` });
  }
}

/**
 * Runs existing files through a format's readers in one worker (replaced after a hang or a death), as the fuzzer
 * does: for checking the harness itself, or a file found elsewhere. `format` may also be "selftest".
 */
export async function checkFiles(format: string, files: readonly string[], timeoutMs = 5000): Promise<Outcome[]> {
  const out: Outcome[] = [];
  let w: Worker | undefined;
  try {
    for (const [i, file] of files.entries()) {
      if (!w || w.dead) {
        w = new Worker(format as Format);
        await w.ready;
      }
      out.push(await w.run(i, file, timeoutMs));
    }
  } finally {
    w?.kill();
  }
  return out;
}

/** Fuzzes each format in turn; files are made and removed in a temporary folder. */
export async function runFuzz(opts: FuzzOptions): Promise<FormatStats[]> {
  const seed = opts.seed ?? 1;
  const o = {
    ...opts,
    seed,
    jobs: opts.jobs ?? 1,
    timeoutMs: opts.timeoutMs ?? 5000,
    keepDir: opts.keepDir ?? join(tmpdir(), `vgg-fuzz-failures-${seed}`),
    formats: opts.formats ?? FORMATS,
  };
  const work = mkdtempSync(join(tmpdir(), "vgg-fuzz-"));
  const out: FormatStats[] = [];
  try {
    for (const format of o.formats) {
      const st = await fuzzFormat(format, o, work);
      out.push(st);
      opts.onFormatDone?.(st);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return out;
}

/** True when nothing crashed, hung, allocated beyond its bound or gave an unprintable message. */
export function clean(stats: readonly FormatStats[]): boolean {
  return stats.every((s) => s.crashes === 0 && s.hangs === 0 && s.oversize === 0 && s.badMessages === 0);
}

const MB = (b: number) => (b / 2 ** 20).toFixed(1);

/** The per-format table, as plain text. */
export function formatTable(stats: readonly FormatStats[]): string {
  const head = [
    "format",
    "files",
    "rejected (VggError)",
    "accepted",
    "crashes",
    "hangs",
    "oversize",
    "bad msg",
    "max ms",
    "max alloc MB",
    "peak RSS MB",
    "s",
  ];
  const rows = stats.map((s) => [
    s.format,
    s.files,
    s.rejected,
    s.accepted,
    s.crashes,
    s.hangs,
    s.oversize,
    s.badMessages,
    s.maxMs.toFixed(1),
    MB(s.maxAlloc),
    MB(s.peakRss),
    s.seconds.toFixed(1),
  ]);
  const cells = [head, ...rows].map((r) => r.map(String));
  const w = head.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(" | ")} |`;
  return [
    line(cells[0]),
    `|${w.map((n, i) => (i === 0 ? `${"-".repeat(n + 1)}-` : `${"-".repeat(n + 1)}:`)).join("|")}|`,
    ...cells.slice(1).map(line),
  ].join("\n");
}
