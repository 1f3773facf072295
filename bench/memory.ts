/**
 * The memory estimate (src/graph/memory.ts) against the real peak RSS: each size runs `vgg bench train|infer --json` in a
 * fresh process (its own peak), and the table gives estimate / measured. The guard should err high: a ratio
 * under 1 is a run the guard could let through that then runs out of memory.
 *
 *   node dist/bench/memory.js [--out bench/results/memory-<time>.md]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { estimateInference, estimateTraining, fmtMiB } from "../src/graph/memory.js";
import { buildModel, type ModelOptions } from "../src/zoo/model.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface Case {
  kind: "train" | "infer";
  arch: string;
  o: ModelOptions;
  batch: number;
}

const C = (kind: Case["kind"], arch: string, o: ModelOptions, batch: number): Case => ({ kind, arch, o, batch });
const CASES: Case[] = [
  C("train", "vgg11_bn", { head: "compact", widthDivisor: 4, inputSize: 32, numClasses: 10 }, 128),
  C("train", "vgg11_bn", { head: "compact", inputSize: 32, numClasses: 10 }, 128),
  C("train", "vgg16_bn", { head: "compact", inputSize: 32, numClasses: 10 }, 128),
  C("train", "vgg11", { inputSize: 64, numClasses: 10 }, 16),
  C("train", "vgg11_bn", { head: "compact", inputSize: 112, numClasses: 10 }, 16),
  C("train", "vgg13", { head: "compact", inputSize: 96, numClasses: 10 }, 32),
  C("infer", "vgg16", {}, 1),
  C("infer", "vgg16", {}, 8),
  C("infer", "vgg11_bn", {}, 8),
];

function flags(c: Case): string[] {
  const f = ["--arch", c.arch, "--batch", String(c.batch), "--json"];
  if (c.o.head) f.push("--head", c.o.head);
  if (c.o.widthDivisor) f.push("--width-divisor", String(c.o.widthDivisor));
  if (c.o.inputSize) f.push("--input-size", String(c.o.inputSize));
  if (c.o.numClasses) f.push("--num-classes", String(c.o.numClasses));
  return c.kind === "train" ? ["bench", "train", ...f, "--steps", "2", "--warmup", "1"] : ["bench", "infer", ...f, "--iterations", "3"];
}

const rows: string[] = [];
for (const c of CASES) {
  const r = spawnSync(process.execPath, [join(ROOT, "bin", "vgg.js"), ...flags(c)], {
    encoding: "utf8",
    env: { ...process.env, VGG_NO_MEMORY_CHECK: "1" },
  });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0) throw new Error(`vgg ${flags(c).join(" ")}: ${r.stderr}`);
  const measured = (JSON.parse(line) as { peakRssMB: number }).peakRssMB * 2 ** 20;
  const m = buildModel(c.arch, c.o);
  const e = c.kind === "train" ? estimateTraining(m, c.batch) : estimateInference(m, c.batch);
  const size = `${c.arch} ${c.o.head ?? "paper"}${c.o.widthDivisor ? `/${c.o.widthDivisor}` : ""} ${c.o.inputSize ?? 224}px b${c.batch}`;
  rows.push(`| ${c.kind} | ${size} | ${fmtMiB(e.total)} | ${fmtMiB(measured)} | ${(e.total / measured).toFixed(2)} |`);
  console.log(rows[rows.length - 1]);
}
const md = [
  `# Memory estimate vs peak RSS (${new Date().toISOString().slice(0, 16)})`,
  "",
  "`node dist/bench/memory.js`: estimate from src/graph/memory.ts, peak RSS of a fresh `vgg bench` process.",
  "",
  "| work | size | estimate | peak RSS | estimate / RSS |",
  "|---|---|---|---|---|",
  ...rows,
  "",
].join("\n");
const outArg = process.argv.indexOf("--out");
const out =
  outArg > 0
    ? process.argv[outArg + 1]
    : join(ROOT, "bench", "results", `memory-${new Date().toISOString().slice(0, 16).replace(":", "")}.md`);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, md);
console.log(`wrote ${out}`);
