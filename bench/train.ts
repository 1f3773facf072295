/**
 * `npm run bench` (second part): the training step, this project (the whole SGD step as one ONNX graph) against
 * PyTorch eager (same model, batch, SGD settings, 2 threads), each a child process, alternating within every round
 * (the order reversed every other round) so a noisy neighbour slows both. Beside each sample: the CPU the rest of
 * the machine used meanwhile.
 *
 *   node dist/bench/train.js [--rounds 2] [--steps N] [--warmup 2] [--cases A,B,...] [--baseline DIR] [--out FILE.md]
 *
 * A case is arch:head:size:batch, or arch:head:size:batch:features for fine-tuning with `features` frozen. The
 * default cases: the 32x32 rows (vgg11_bn and vgg16_bn, compact head, batch 128), training at 224x224 (vgg16_bn
 * batch 8, vgg11 batch 16, paper head) and frozen fine-tuning (vgg16 at 224x224, batch 8). Timed steps: --steps, else
 * 6 at 32x32 and 3 from 112x112 up (a vgg16_bn step at 224 takes ~7 s). Ours: `vgg bench train` (full steps) or
 * bench/finetune.js's child (frozen); PyTorch: scripts/torch_train_bench.py or scripts/torch_finetune_bench.py.
 * --baseline DIR: ours from another checkout (built, with its own dist/) as a third contender, for before/after.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { intFlag, median, parseFlags } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEFAULT_CASES = "vgg11_bn:compact:32:128,vgg16_bn:compact:32:128,vgg16_bn:paper:224:8,vgg11:paper:224:16,vgg16:paper:224:8:features";

interface Case {
  arch: string;
  head: string;
  size: number;
  batch: number;
  freeze?: "features";
  steps: number;
  warmup: number;
}

interface Sample {
  imagesPerSecond: number;
  peakRssMB: number;
  /** CPU used by everything but the child while it ran, in % of all cores. */
  othersCpuPct: number;
}

function busySeconds(): number {
  const v = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = v;
  return (user + nice + system + irq + softirq) / 100;
}

/** CPU seconds of this process's waited-for children (cutime + cstime of /proc/self/stat). */
function childrenSeconds(): number {
  const f = readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" ");
  return (Number(f[13]) + Number(f[14])) / 100;
}

/** Runs a child that prints one JSON line; with the CPU the rest of the machine used meanwhile. */
function run(cmd: string, args: string[]): { j: Record<string, number>; othersCpuPct: number } {
  const [busy0, own0, t0] = [busySeconds(), childrenSeconds(), performance.now()];
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: 1_800_000, maxBuffer: 1 << 24 });
  const wall = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim().split("\n").pop()}`);
  const others = busySeconds() - busy0 - (childrenSeconds() - own0);
  return { j: JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}"), othersCpuPct: Math.max(0, (100 * others) / (wall * cpus().length)) };
}

function oursArgs(c: Case, root = ROOT): [string, string[]] {
  const common = ["--arch", c.arch, "--batch", String(c.batch), "--steps", String(c.steps), "--warmup", String(c.warmup)];
  if (c.freeze)
    return [
      process.execPath,
      [join(root, "dist", "bench", "finetune.js"), "--child", "--freeze", c.freeze, "--size", String(c.size), ...common],
    ];
  const shape = ["--head", c.head, "--num-classes", "10", "--input-size", String(c.size), "--threads", "2", "--json"];
  return [process.execPath, [join(root, "bin", "vgg.js"), "bench", "train", ...common, ...shape]];
}

function torchArgs(c: Case): [string, string[]] {
  const common = ["--arch", c.arch, "--head", c.head, "--size", String(c.size), "--batch", String(c.batch), "--threads", "2"];
  const timing = ["--steps", String(c.steps), "--warmup", String(c.warmup)];
  const script = c.freeze ? "torch_finetune_bench.py" : "torch_train_bench.py";
  return ["/usr/bin/python3", [join(ROOT, "scripts", script), ...common, ...timing, ...(c.freeze ? ["--freeze", c.freeze] : [])]];
}

function sample(cmdArgs: [string, string[]]): Sample {
  const { j, othersCpuPct } = run(...cmdArgs);
  // `vgg bench train` reports camelCase, the Python scripts and the fine-tuning child snake_case.
  return { imagesPerSecond: j.imagesPerSecond ?? j.img_s, peakRssMB: j.peakRssMB ?? j.peak_rss_mb, othersCpuPct };
}

function parseCases(spec: string, steps: number | undefined, warmup: number): Case[] {
  return spec.split(",").map((s) => {
    const [arch, head, size, batch, freeze] = s.split(":");
    if (freeze !== undefined && freeze !== "features") throw new Error(`case ${s}: the fifth field can only be 'features'`);
    const px = Number(size);
    return { arch, head, size: px, batch: Number(batch), freeze, steps: steps ?? (px >= 112 ? 3 : 6), warmup };
  });
}

function label(c: Case): string {
  const what = c.freeze ? `, ${c.freeze} frozen` : "";
  return `${c.arch}, ${c.head} head, ${c.size}x${c.size}, batch ${c.batch}${what}`;
}

/** The samples of one case: ours, PyTorch's, and (--baseline) ours from another checkout. */
interface Samples {
  ours: Sample[];
  pytorch: Sample[];
  baseline: Sample[];
}

const imgS = (xs: Sample[]) => median(xs.map((s) => s.imagesPerSecond));
const rss = (xs: Sample[]) => Math.max(...xs.map((s) => s.peakRssMB));

function row(c: Case, s: Samples): string {
  const [o, p, b] = [s.ours, s.pytorch, s.baseline];
  const others = [...o, ...p, ...b].map((x) => x.othersCpuPct.toFixed(0)).join("/");
  const base = b.length ? ` ${imgS(b).toFixed(2)} | ${rss(b).toFixed(0)} MB |` : "";
  return `| ${label(c)} | ${imgS(o).toFixed(2)} | ${imgS(p).toFixed(2)} | ${(imgS(o) / imgS(p)).toFixed(2)}x | ${rss(o).toFixed(0)} MB | ${rss(p).toFixed(0)} MB | ${(rss(o) / rss(p)).toFixed(2)} |${base} ${others} |`;
}

function measure(c: Case, rounds: number, baseline?: string): Samples {
  const s: Samples = { ours: [], pytorch: [], baseline: [] };
  const runs = [() => s.ours.push(sample(oursArgs(c))), () => s.pytorch.push(sample(torchArgs(c)))];
  if (baseline) runs.push(() => s.baseline.push(sample(oursArgs(c, resolve(baseline)))));
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so none always inherits another's warm caches or its noise.
    for (const f of r % 2 ? [...runs].reverse() : runs) f();
    const last = (xs: Sample[], who: string) =>
      xs.length ? `, ${who} ${xs[xs.length - 1].imagesPerSecond.toFixed(2)} img/s ${xs[xs.length - 1].peakRssMB.toFixed(0)} MB` : "";
    process.stderr.write(
      `[bench train] ${label(c)} round ${r + 1}${last(s.ours, "ours")}${last(s.pytorch, "PyTorch")}${last(s.baseline, "baseline")}\n`,
    );
  }
  return s;
}

function main(): void {
  const flags = parseFlags(process.argv.slice(2));
  // Two rounds by default: the five cases take ~8 minutes so (three contenders with --baseline: ~12).
  const rounds = intFlag(flags, "rounds", 2);
  const steps = flags.has("steps") ? intFlag(flags, "steps", 3) : undefined;
  const cases = parseCases(flags.get("cases") ?? DEFAULT_CASES, steps, intFlag(flags, "warmup", 2));
  const load0 = readFileSync("/proc/loadavg", "utf8").trim();
  const t0 = new Date();
  const rows: string[] = [];
  const raw: unknown[] = [];
  const baseline = flags.get("baseline");
  for (const c of cases) {
    const s = measure(c, rounds, baseline);
    rows.push(row(c, s));
    raw.push({ ...c, ...s });
  }
  const baseCols = baseline ? ["baseline img/s", "baseline peak RSS"] : [];
  const md = [
    `# Training step benchmark, ${t0.toISOString().slice(0, 16)}Z`,
    "",
    `${rounds} rounds, contenders alternating (order reversed every other round), each sample a child process: ${cases[0].warmup} warm-up steps, then the median of the timed steps (${cases.map((c) => c.steps).join("/")} per case); the table gives the median over rounds and the largest peak RSS. SGD momentum 0.9, weight decay 5e-4, dropout 0, 10 classes, 2 threads each. Frozen: \`features\` frozen (ours: baked into the step graph; PyTorch: requires_grad=False, features.eval()).`,
    "",
    `Command: \`${["node dist/bench/train.js", ...process.argv.slice(2)].join(" ")}\``,
    `Machine: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}); /proc/loadavg at start ${load0}, at end ${readFileSync("/proc/loadavg", "utf8").trim()} (now ${loadavg()[0].toFixed(2)}).`,
    "",
    ...(baseline ? [`Baseline: ours from ${resolve(baseline)} (built there), a third contender in every round.`, ""] : []),
    `| case | ours img/s | PyTorch img/s | ratio | ours peak RSS | PyTorch peak RSS | RSS ratio | ${baseCols.map((h) => `${h} | `).join("")}others' CPU % per sample (ours, PyTorch${baseline ? ", baseline" : ""}) |`,
    `|---|---:|---:|---:|---:|---:|---:|${baseCols.map(() => "---:|").join("")}---|`,
    ...rows,
    "",
  ].join("\n");
  console.log(md);
  const stamp = t0.toISOString().slice(0, 16).replace(/[-:]/g, "");
  const out = flags.get("out") ?? join(ROOT, "bench", "results", `train-${stamp}.md`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, md);
  writeFileSync(out.replace(/\.md$/, ".json"), `${JSON.stringify(raw, null, 1)}\n`);
}

main();
