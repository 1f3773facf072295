/**
 * `npm run bench` (second part): the training step, this project (`vgg bench train`: the whole SGD step as one ONNX
 * graph) against PyTorch eager (scripts/torch_train_bench.py: same model, batch, SGD settings, 2 threads), each a
 * child process, alternating within every round so a noisy neighbour slows both.
 *
 *   node dist/bench/train.js [--rounds 3] [--steps 6] [--cases vgg11_bn:compact:32:128,vgg16_bn:compact:32:128]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { intFlag, median, parseFlags } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const DEFAULT_CASES = "vgg11_bn:compact:32:128,vgg16_bn:compact:32:128";

interface Sample {
  imagesPerSecond: number;
  peakRssMB: number;
}

function run(cmd: string, args: string[]): Record<string, number> {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8", timeout: 1_800_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr.trim().split("\n").pop()}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() ?? "{}");
}

function ours(arch: string, head: string, size: number, batch: number, steps: number): Sample {
  const j = run(process.execPath, [
    join(ROOT, "bin", "vgg.js"),
    "bench",
    "train",
    "--arch",
    arch,
    "--head",
    head,
    "--num-classes",
    "10",
    "--input-size",
    String(size),
    "--batch",
    String(batch),
    "--steps",
    String(steps),
    "--threads",
    "2",
    "--json",
  ]);
  return { imagesPerSecond: j.imagesPerSecond, peakRssMB: j.peakRssMB };
}

function pytorch(arch: string, head: string, size: number, batch: number, steps: number): Sample {
  const j = run("/usr/bin/python3", [
    join(ROOT, "scripts", "torch_train_bench.py"),
    "--arch",
    arch,
    "--head",
    head,
    "--size",
    String(size),
    "--batch",
    String(batch),
    "--steps",
    String(steps),
    "--threads",
    "2",
  ]);
  return { imagesPerSecond: j.img_s, peakRssMB: j.peak_rss_mb };
}

const flags = parseFlags(process.argv.slice(2));
const rounds = intFlag(flags, "rounds", 3);
const steps = intFlag(flags, "steps", 6);
const cases = (flags.get("cases") ?? DEFAULT_CASES).split(",").map((c) => {
  const [arch, head, size, batch] = c.split(":");
  return { arch, head, size: Number(size), batch: Number(batch) };
});
const rows: string[] = [];
const raw: unknown[] = [];
for (const c of cases) {
  const o: Sample[] = [];
  const p: Sample[] = [];
  for (let r = 0; r < rounds; r++) {
    // Alternate which goes first, so neither always inherits the other's warm caches or its noise.
    const pair =
      r % 2
        ? [() => p.push(pytorch(c.arch, c.head, c.size, c.batch, steps)), () => o.push(ours(c.arch, c.head, c.size, c.batch, steps))]
        : [() => o.push(ours(c.arch, c.head, c.size, c.batch, steps)), () => p.push(pytorch(c.arch, c.head, c.size, c.batch, steps))];
    for (const f of pair) f();
    process.stderr.write(
      `[bench train] ${c.arch} ${c.size} b${c.batch} round ${r + 1}: ours ${o.at(-1)?.imagesPerSecond.toFixed(1)} img/s, PyTorch ${p.at(-1)?.imagesPerSecond.toFixed(1)} img/s\n`,
    );
  }
  const om = median(o.map((s) => s.imagesPerSecond));
  const pm = median(p.map((s) => s.imagesPerSecond));
  const orss = Math.max(...o.map((s) => s.peakRssMB));
  const prss = Math.max(...p.map((s) => s.peakRssMB));
  rows.push(
    `| ${c.arch}, ${c.head} head, ${c.size}x${c.size}, batch ${c.batch} | ${om.toFixed(1)} | ${pm.toFixed(1)} | ${(om / pm).toFixed(2)}x | ${orss.toFixed(0)} MB | ${prss.toFixed(0)} MB |`,
  );
  raw.push({ ...c, ours: o, pytorch: p });
}
const md = [
  `# Training step benchmark, ${new Date().toISOString()}`,
  "",
  `${rounds} rounds, ${steps} timed steps each (after 2 warm-up steps), contenders alternating; SGD momentum 0.9, weight decay 5e-4, dropout 0; medians.`,
  "",
  "| case | ours img/s | PyTorch img/s | ratio | ours peak RSS | PyTorch peak RSS |",
  "|---|---:|---:|---:|---:|---:|",
  ...rows,
  "",
].join("\n");
console.log(md);
const dir = join(ROOT, "bench", "results");
mkdirSync(dir, { recursive: true });
const stamp = new Date().toISOString().slice(0, 16).replace(/[-:]/g, "").replace("T", "T");
writeFileSync(join(dir, `train-${stamp}.md`), md);
writeFileSync(join(dir, `train-${stamp}.json`), `${JSON.stringify(raw, null, 1)}\n`);
