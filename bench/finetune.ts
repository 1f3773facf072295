/**
 * `npm run bench:finetune`: the fine-tuning step (`vgg train --freeze features`) against full training, ours and
 * PyTorch's (scripts/torch_finetune_bench.py: requires_grad=False on features, features.eval()), vgg16 at 224x224,
 * batch 8, the paper head with 10 classes, dropout 0 on both sides. Every measurement is a child process; within a
 * round the contenders alternate (ours, torch, ours, torch, ...), the order reversed every other round, so a noisy
 * neighbour slows all of them. Beside each sample: the CPU the rest of the machine used meanwhile.
 *
 *   node dist/bench/finetune.js [--rounds 3] [--steps 3] [--warmup 2] [--arch vgg16] [--size 224] [--batch 8]
 *       [--contenders ours-frozen,torch-frozen,ours-frozen-inputs,ours-full,torch-full] [--out FILE.md]
 *   node dist/bench/finetune.js --child --freeze features|none [--frozen baked|inputs] ...   (one sample, JSON line)
 *
 * ours-frozen bakes the frozen weights into the step graph as constants (what `vgg train --freeze` does);
 * ours-frozen-inputs feeds them as graph inputs instead (the same inference-mode forward, without ORT's prepacking).
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { encodeTrainStep, resolveFreeze, trainSessionOptions } from "../src/graph/train-step.js";
import { createSession } from "../src/runtime/ort.js";
import type { StateDict } from "../src/tensor.js";
import { runTrainStep } from "../src/train/step-runner.js";
import { initWeights } from "../src/weights/init.js";
import { buildModel } from "../src/zoo/model.js";
import { intFlag, median, parseFlags, peakRssMB, randomInput } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CONTENDERS = ["ours-frozen", "torch-frozen", "ours-frozen-inputs", "ours-full", "torch-full"] as const;
type Contender = (typeof CONTENDERS)[number];

interface Setup {
  arch: string;
  size: number;
  batch: number;
  steps: number;
  warmup: number;
}

interface Sample {
  msPerStep: number;
  imagesPerSecond: number;
  ms: number[];
  buildMs?: number;
  peakRssMB: number;
  /** CPU used by everything but the child while it ran, in % of all cores. */
  othersCpuPct: number;
  load1: number;
}

/** One child's measurement: build the step graph, warm up, time `steps` steps (outputs fed back, as the trainer does). */
async function child(s: Setup, freeze: boolean, baked: boolean): Promise<void> {
  const m = buildModel(s.arch, { head: "paper", numClasses: 10, inputSize: s.size, dropout: 0 });
  const weights: StateDict = initWeights(m, "torchvision", 0);
  const momentum: StateDict = new Map();
  const F = freeze ? resolveFreeze(m, "features") : 0;
  const t0 = performance.now();
  const { bytes, ...step } = encodeTrainStep(m, { batchSize: s.batch, freeze: F, frozenWeights: freeze && baked ? weights : undefined });
  const session = await createSession(bytes, { ...trainSessionOptions(m, F), threads: 2 });
  const buildMs = performance.now() - t0;
  const x = randomInput(s.batch, s.size);
  const y = { dtype: "int64" as const, shape: [s.batch], data: BigInt64Array.from({ length: s.batch }, (_, k) => BigInt(k % 10)) };
  const ms: number[] = [];
  for (let k = 0; k < s.warmup + s.steps; k++) {
    const t = performance.now();
    await runTrainStep(session, step, weights, momentum, { x, y, lr: 0.01, seed: k });
    if (k >= s.warmup) ms.push(performance.now() - t);
  }
  await session.release();
  const cpu = process.cpuUsage();
  const med = median(ms);
  console.log(
    JSON.stringify({
      median_ms: med,
      img_s: (s.batch * 1000) / med,
      ms: ms.map((v) => Math.round(v)),
      build_ms: Math.round(buildMs),
      cpu_s: (cpu.user + cpu.system) / 1e6,
      peak_rss_mb: Math.round(peakRssMB()),
    }),
  );
}

function busySeconds(): number {
  const v = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = v;
  return (user + nice + system + irq + softirq) / 100;
}

function sample(c: Contender, s: Setup): Sample {
  const common = ["--arch", s.arch, "--size", String(s.size), "--batch", String(s.batch), "--steps", String(s.steps)];
  const freeze = c.endsWith("full") ? "none" : "features";
  const [cmd, args] = c.startsWith("torch")
    ? ["/usr/bin/python3", [join(ROOT, "scripts", "torch_finetune_bench.py"), ...common, "--warmup", String(s.warmup), "--freeze", freeze]]
    : [
        process.execPath,
        [fileURLToPath(import.meta.url), "--child", ...common, "--warmup", String(s.warmup), "--freeze", freeze].concat(
          c === "ours-frozen-inputs" ? ["--frozen", "inputs"] : [],
        ),
      ];
  const load1 = loadavg()[0];
  const busy0 = busySeconds();
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: 1_800_000, maxBuffer: 1 << 24 });
  const wall = (performance.now() - t0) / 1000;
  const busy = busySeconds() - busy0;
  if (r.status !== 0) throw new Error(`${c} failed: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const j = JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
  return {
    msPerStep: j.median_ms,
    imagesPerSecond: j.img_s,
    ms: j.ms,
    buildMs: j.build_ms,
    peakRssMB: j.peak_rss_mb,
    othersCpuPct: Math.max(0, (100 * (busy - j.cpu_s)) / (wall * cpus().length)),
    load1,
  };
}

function table(s: Setup, results: Map<Contender, Sample[]>): string[] {
  const med = (c: Contender) => median((results.get(c) ?? []).map((x) => x.msPerStep));
  const rows = [...results].map(([c, xs]) => {
    const m = med(c);
    const range = `${Math.min(...xs.map((x) => x.msPerStep)).toFixed(0)}-${Math.max(...xs.map((x) => x.msPerStep)).toFixed(0)}`;
    const others = xs.map((x) => x.othersCpuPct.toFixed(0)).join("/");
    const load = xs.map((x) => x.load1.toFixed(2)).join("/");
    // The fastest single step: the least disturbed by other work on a shared machine.
    const best = Math.min(...xs.flatMap((x) => x.ms));
    return `| ${c} | ${m.toFixed(0)} | ${range} | ${best.toFixed(0)} | ${((s.batch * 1000) / m).toFixed(2)} | ${others} | ${load} | ${Math.max(...xs.map((x) => x.peakRssMB))} MB |`;
  });
  const ratio = (a: Contender, b: Contender, what: string) =>
    results.has(a) && results.has(b)
      ? [`- ${what}: ${(med(b) / med(a)).toFixed(2)}x (${med(a).toFixed(0)} vs ${med(b).toFixed(0)} ms/step)`]
      : [];
  return [
    "| contender | median ms/step | range over rounds | best step ms | img/s | others' CPU % per round | load (1 min) per round | peak RSS |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
    ...rows,
    "",
    "Speed-ups (how many times faster the first is):",
    ...ratio("ours-frozen", "torch-frozen", "ours frozen vs PyTorch frozen"),
    ...ratio("ours-full", "torch-full", "ours full vs PyTorch full"),
    ...ratio("ours-frozen", "ours-full", "ours frozen vs ours full"),
    ...ratio("torch-frozen", "torch-full", "PyTorch frozen vs PyTorch full"),
    ...ratio("ours-frozen", "ours-frozen-inputs", "frozen weights baked in vs as graph inputs"),
  ];
}

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const s: Setup = {
    arch: f.get("arch") ?? "vgg16",
    size: intFlag(f, "size", 224),
    batch: intFlag(f, "batch", 8),
    steps: intFlag(f, "steps", 3),
    warmup: intFlag(f, "warmup", 2),
  };
  if (f.has("child")) return child(s, f.get("freeze") === "features", f.get("frozen") !== "inputs");
  const rounds = intFlag(f, "rounds", 3);
  const chosen = (f.get("contenders") ?? CONTENDERS.join(",")).split(",") as Contender[];
  for (const c of chosen) if (!CONTENDERS.includes(c)) throw new Error(`unknown contender ${c} (known: ${CONTENDERS.join(", ")})`);
  const uptime0 = readFileSync("/proc/loadavg", "utf8").trim();
  const t0 = new Date();
  const results = new Map<Contender, Sample[]>(chosen.map((c) => [c, []]));
  for (let r = 0; r < rounds; r++) {
    for (const c of r % 2 ? [...chosen].reverse() : chosen) {
      const x = sample(c, s);
      results.get(c)?.push(x);
      process.stderr.write(
        `[bench finetune] round ${r + 1} ${c}: ${x.msPerStep.toFixed(0)} ms/step (${x.ms.join(", ")}), others ${x.othersCpuPct.toFixed(0)}% CPU\n`,
      );
    }
  }
  const md = [
    `# Fine-tuning step: --freeze features vs full training, ${t0.toISOString().slice(0, 16)}Z`,
    "",
    `${s.arch}, ${s.size}x${s.size}, batch ${s.batch}, paper head, 10 classes, dropout 0; SGD momentum 0.9, weight decay 5e-4; 2 threads each.`,
    `${rounds} rounds, contenders alternating (order reversed every other round); each sample a child process: ${s.warmup} warm-up steps, then the median of ${s.steps} timed steps; the table gives the median over rounds.`,
    "Frozen: ours bakes features into the step graph as constants, inference-mode forward, no backward there (ours-frozen-inputs: the same graph with the frozen weights as inputs); PyTorch: requires_grad=False on features, features.eval(), SGD over the classifier.",
    "",
    `Command: \`${["node dist/bench/finetune.js", ...process.argv.slice(2)].join(" ")}\` (npm run bench:finetune)`,
    `Machine: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}); /proc/loadavg at start ${uptime0}, at end ${readFileSync("/proc/loadavg", "utf8").trim()}.`,
    "",
    ...table(s, results),
    "",
  ].join("\n");
  console.log(md);
  const out = f.get("out") ?? join(ROOT, "bench", "results", `finetune-${t0.toISOString().slice(0, 10)}.md`);
  writeFileSync(out, md);
  writeFileSync(out.replace(/\.md$/, ".json"), `${JSON.stringify({ setup: s, results: Object.fromEntries(results) }, null, 1)}\n`);
  process.stderr.write(`[bench finetune] wrote ${out}\n`);
}

await main();
