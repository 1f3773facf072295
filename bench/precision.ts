/**
 * fp32 vs fp16 vs int8 inference, each contender in its own process (fresh ORT, its own peak RSS), alternating
 * over rounds so that load from the rest of the machine hits them alike.
 *
 *   node dist/bench/precision.js [--arch vgg16] [--input-size 224] [--batch 1,8] [--precisions fp32,int8,fp16]
 *        [--rounds 3] [--iterations 5] [--threads 2] [--out bench/results/precision-<time>.md]
 *   one contender: node dist/bench/precision.js --one --precision int8 [--activations uint8|int8] [--per-tensor]
 *        [--reduce-range] [--profile] [--save-onnx FILE] ...
 *
 * Contender names: fp32 (Winograd auto, the default), fp32-direct (--winograd off), fp16, fp16c (fp16 compute), int8 (U8S8 per-channel), int8-s8s8, int8-pt (per-tensor),
 * int8-rr (reduce range). int8 is calibrated on random images (--calibrate-random): speed does not depend on the
 * ranges. With --profile the contender also reports which kernels ORT ran (from ORT's profiler).
 */
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildInferenceGraph } from "../src/graph/infer.js";
import { lowerPrecision, type PrecisionOptions } from "../src/graph/precision.js";
import { resolveWinograd } from "../src/graph/winograd-infer.js";
import { encodeModelParts, type ModelSpec } from "../src/onnx/encode.js";
import { compileSpec, openCompiled } from "../src/runtime/open-graph.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel, macCount } from "../src/zoo/model.js";
import { intFlag, median, parseFlags, randomInput, timeSession } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

const CONTENDERS: Record<string, PrecisionOptions> = {
  fp32: { precision: "fp32" },
  "fp32-direct": { precision: "fp32", winograd: "off" },
  fp16: { precision: "fp16" },
  fp16c: { precision: "fp16", fp16Compute: true },
  int8: { precision: "int8", calibrateRandom: 4 },
  "int8-s8s8": { precision: "int8", calibrateRandom: 4, quantize: { activations: "int8" } },
  "int8-pt": { precision: "int8", calibrateRandom: 4, quantize: { perChannel: false } },
  "int8-rr": { precision: "int8", calibrateRandom: 4, quantize: { reduceRange: true } },
};

interface ProfileEvent {
  cat?: string;
  name: string;
  dur: number;
  args?: { op_name?: string };
}

function kernelSummary(prefix: string, skipRuns: number): Record<string, { nodes: number; ms: number }> {
  const dir = dirname(prefix);
  const base = prefix.slice(dir.length + 1);
  const file = readdirSync(dir)
    .filter((f) => f.startsWith(base) && f.endsWith(".json"))
    .sort()
    .at(-1);
  if (!file) throw new Error("no ORT profile written");
  const ev = JSON.parse(readFileSync(join(dir, file), "utf8")) as (ProfileEvent & { ts: number })[];
  const runs = ev.filter((e) => e.cat === "Session" && e.name === "model_run").sort((a, b) => a.ts - b.ts);
  const from = runs[skipRuns]?.ts ?? 0;
  const n = Math.max(1, runs.length - skipRuns);
  const out: Record<string, { nodes: number; ms: number }> = {};
  const seen = new Map<string, Set<string>>();
  for (const e of ev) {
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time") || e.ts < from) continue;
    const op = e.args?.op_name ?? "?";
    out[op] ??= { nodes: 0, ms: 0 };
    const o = out[op];
    o.ms += e.dur / 1000 / n;
    const s = seen.get(op) ?? new Set();
    s.add(e.name);
    seen.set(op, s);
  }
  for (const [op, s] of seen) out[op].nodes = s.size;
  rmSync(join(dir, file));
  return out;
}

async function one(f: Map<string, string>): Promise<void> {
  const arch = f.get("arch") ?? "vgg16";
  const size = intFlag(f, "input-size", 224);
  const batch = intFlag(f, "batch", 1);
  const threads = intFlag(f, "threads", 2);
  const name = f.get("precision") ?? "fp32";
  const p = CONTENDERS[name];
  if (!p) throw new Error(`unknown contender '${name}' (known: ${Object.keys(CONTENDERS).join(", ")})`);
  const t0 = performance.now();
  const m = buildModel(arch, { inputSize: size, head: (f.get("head") as "paper" | "compact") ?? "paper" });
  const winograd = resolveWinograd(p.winograd, p.precision ?? "fp32", "cpu");
  const graph = buildInferenceGraph(m, initWeights(m, "torchvision", 0), { winograd });
  let spec: ModelSpec | undefined = await lowerPrecision(m, graph, p, threads);
  const fileBytes = encodeModelParts(spec).length;
  const save = f.get("save-onnx");
  if (save) writeFileSync(save, Buffer.concat(encodeModelParts(spec).parts));
  const profile = f.has("profile") ? join(tmpdir(), `vgg-prec-${process.pid}`) : undefined;
  // As the library does it: the weights leave JS (to files ORT reads) before the session exists.
  const compiled = compileSpec(spec);
  spec = undefined;
  const session = await openCompiled(compiled, { threads, profilePrefix: profile });
  const loadMs = performance.now() - t0;
  const warmup = intFlag(f, "warmup", 2);
  const cpu0 = process.cpuUsage();
  const stat0 = busyJiffies();
  const w0 = performance.now();
  const r = await timeSession(session, randomInput(batch, size), {
    warmup,
    iterations: intFlag(f, "iterations", 5),
    macsPerImage: macCount(m),
    loadMs,
  });
  // CPU the rest of the machine used while this contender ran, as % of all cores (busy time minus our own).
  const wallMs = performance.now() - w0;
  const cpu = process.cpuUsage(cpu0);
  const busyMs = ((busyJiffies() - stat0) * 1000) / CLK_TCK;
  const othersPct = Math.max(0, (100 * (busyMs - (cpu.user + cpu.system) / 1000)) / (wallMs * cpus().length));
  if (profile) session.endProfiling();
  await session.release();
  const kernels = profile ? kernelSummary(profile, warmup) : undefined;
  process.stdout.write(
    `${JSON.stringify({ contender: name, arch, size, batch, fileMB: fileBytes / 2 ** 20, ...r, othersPct, kernels })}\n`,
  );
}

const CLK_TCK = 100;

/** Busy jiffies of all CPUs (user, nice, system, irq, softirq, steal) from /proc/stat. */
function busyJiffies(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0);
}

function child(args: string[]): Promise<Record<string, unknown>> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [join(ROOT, "dist", "bench", "precision.js"), "--one", ...args], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    c.stdout.on("data", (d) => (out += d));
    c.on("error", rej);
    c.on("close", (code) =>
      code === 0 ? res(JSON.parse(out.trim().split("\n").pop() as string)) : rej(new Error(`contender exited ${code}: ${args.join(" ")}`)),
    );
  });
}

const QUIET = 10;

async function compare(f: Map<string, string>): Promise<void> {
  const arch = f.get("arch") ?? "vgg16";
  const size = f.get("input-size") ?? "224";
  const batches = (f.get("batch") ?? "1,8").split(",");
  const names = (f.get("precisions") ?? "fp32,int8,fp16").split(",");
  const rounds = intFlag(f, "rounds", 3);
  const pass = ["--arch", arch, "--input-size", size, "--iterations", f.get("iterations") ?? "5", "--threads", f.get("threads") ?? "2"];
  if (f.get("head")) pass.push("--head", f.get("head") as string);
  const results = new Map<string, Record<string, unknown>[]>();
  for (let r = 0; r < rounds; r++) {
    for (const b of batches) {
      for (const n of r % 2 ? [...names].reverse() : names) {
        const x = await child([...pass, "--batch", b, "--precision", n]);
        process.stderr.write(
          `round ${r + 1} batch ${b} ${n}: ${(x.imagesPerSecond as number).toFixed(2)} img/s (others used ${(x.othersPct as number).toFixed(0)}% of the CPU)\n`,
        );
        const k = `${b}|${n}`;
        results.set(k, [...(results.get(k) ?? []), x]);
      }
    }
  }
  const lines = [
    `${arch} ${size}x${size}, ${rounds} rounds alternating, median img/s per contender (${new Date().toISOString()})`,
    "",
    "img/s: median over all rounds; quiet [n]: median over the n rounds in which the rest of the machine used under",
    `${QUIET}% of the CPU (the number to quote); best: the fastest round. vs fp32 compares quiet medians (else all).`,
    "",
    "| batch | precision | img/s median | quiet [n] | best | vs fp32 | ms/batch (quiet) | file MiB | peak RSS MB | load ms |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const summary = (xs: Record<string, unknown>[]) => {
    const quiet = xs.filter((x) => (x.othersPct as number) < QUIET);
    const ips = (ys: Record<string, unknown>[]) => median(ys.map((x) => x.imagesPerSecond as number));
    return {
      all: ips(xs),
      quiet: ips(quiet),
      nQuiet: quiet.length,
      best: Math.max(...xs.map((x) => x.imagesPerSecond as number)),
      quietRuns: quiet.length ? quiet : xs,
    };
  };
  for (const b of batches) {
    const base = summary(results.get(`${b}|fp32`) ?? []);
    for (const n of names) {
      const xs = results.get(`${b}|${n}`) ?? [];
      const s = summary(xs);
      const ratio = base.nQuiet && s.nQuiet ? s.quiet / base.quiet : s.all / base.all;
      const cell = (ys: Record<string, unknown>[], k: string, d = 0) => median(ys.map((x) => x[k] as number)).toFixed(d);
      lines.push(
        `| ${b} | ${n} | ${s.all.toFixed(2)} | ${s.nQuiet ? s.quiet.toFixed(2) : "-"} [${s.nQuiet}] | ${s.best.toFixed(2)} | ${Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : "-"} | ${cell(s.quietRuns, "msPerBatch", 1)} | ${cell(xs, "fileMB", 1)} | ${cell(xs, "peakRssMB")} | ${cell(xs, "loadMs")} |`,
      );
    }
  }
  const text = `${lines.join("\n")}\n`;
  process.stdout.write(text);
  const out = f.get("out");
  if (out) {
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, text);
  }
}

const flags = parseFlags(process.argv.slice(2));
(flags.has("one") ? one(flags) : compare(flags)).catch((err) => {
  process.stderr.write(`precision: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
