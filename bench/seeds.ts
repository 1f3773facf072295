/**
 * `npm run bench:seeds`: one `vgg train` recipe under several seeds, one after another (never at once: the runs
 * share the cores they are timed on), and the spread of their test results, so that a difference between two
 * recipes can be told from seed noise.
 *
 *   node dist/bench/seeds.js [--seeds 0,1,2] [--dir runs/seeds] [--md FILE.md] -- <vgg train flags, without --seed/--out>
 *
 * Each seed's run is `<dir>/seed-<n>` (its log and /usr/bin/time output beside it). A run that finished (result.json)
 * is read, not run again; one that was stopped is resumed (`vgg train --resume`), so the whole set can be run in
 * parts. The table (markdown, printed and written to --md, default <dir>/seeds.md): per seed, test top-1 single-crop,
 * under the run's --test-protocol, of the EMA and the SWA model when the recipe has them, the epochs' wall time; then
 * the mean, the sample standard deviation and the range of each column.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const VGG = join(ROOT, "bin", "vgg.js");
const TIME = "/usr/bin/time";

interface Scores {
  top1: number;
}
interface Result {
  test: Scores | null;
  testProtocol?: Scores & { protocol: string };
  ema?: { test: Scores | null; testProtocol?: Scores };
  swa?: { test: Scores | null; testProtocol?: Scores };
  /** Each epoch's own seconds (a resumed run's result.seconds counts only its last part). */
  epochs: { seconds: number }[];
}

/** One row's values in %, minutes last; undefined where the recipe has no such model. */
interface Row {
  seed: number;
  values: (number | undefined)[];
}

function usage(msg: string): never {
  console.error(`bench/seeds: ${msg}\nusage: node dist/bench/seeds.js [--seeds 0,1,2] [--dir DIR] [--md FILE] -- <vgg train flags>`);
  process.exit(2);
}

function parseArgs(argv: string[]): { seeds: number[]; dir: string; md: string; train: string[] } {
  const dash = argv.indexOf("--");
  if (dash < 0) usage("the recipe's vgg train flags go after --");
  const train = argv.slice(dash + 1);
  for (const f of ["--seed", "--out", "--resume"]) if (train.includes(f)) usage(`${f} is this script's to set`);
  const f = parseFlags(argv.slice(0, dash));
  const seeds = (f.get("seeds") ?? "0,1,2").split(",").map(Number);
  if (seeds.some((s) => !Number.isInteger(s) || s < 0) || new Set(seeds).size !== seeds.length)
    usage(`--seeds ${f.get("seeds")}: want distinct non-negative integers`);
  const dir = resolve(f.get("dir") ?? "runs/seeds");
  return { seeds, dir, md: resolve(f.get("md") ?? join(dir, "seeds.md")), train };
}

/** Runs (or resumes) one seed's training; the log and /usr/bin/time's report go beside its run directory. */
function runSeed(dir: string, seed: number, train: string[]): Result {
  const out = join(dir, `seed-${seed}`);
  const result = join(out, "result.json");
  if (!existsSync(result)) {
    const args = existsSync(out) ? ["train", "--out", out, "--resume", "--no-progress"] : ["train", ...train, "--seed", String(seed), "--out", out, "--no-progress"];
    const timed = existsSync(TIME);
    console.error(`seed ${seed}: ${existsSync(out) ? "resuming" : "training"} ${out}`);
    const r = spawnSync(timed ? TIME : process.execPath, timed ? ["-v", process.execPath, VGG, ...args] : [VGG, ...args], {
      encoding: "utf8",
      maxBuffer: 1 << 28,
    });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `seed-${seed}.log`), r.stdout);
    writeFileSync(join(dir, `seed-${seed}.stderr`), r.stderr);
    if (r.status !== 0) throw new Error(`seed ${seed}: vgg train exited ${r.status}: ${r.stderr.trim().split("\n").pop()}`);
  }
  return JSON.parse(readFileSync(result, "utf8")) as Result;
}

const COLUMNS: [string, (r: Result) => number | undefined][] = [
  ["test top-1 %", (r) => r.test?.top1],
  ["protocol top-1 %", (r) => r.testProtocol?.top1],
  ["EMA top-1 %", (r) => r.ema?.test?.top1],
  ["EMA protocol top-1 %", (r) => r.ema?.testProtocol?.top1],
  ["SWA top-1 %", (r) => r.swa?.test?.top1],
  ["SWA protocol top-1 %", (r) => r.swa?.testProtocol?.top1],
];

function stats(xs: number[]): { mean: number; sd: number; min: number; max: number } {
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  const sd = xs.length > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1)) : Number.NaN;
  return { mean, sd, min: Math.min(...xs), max: Math.max(...xs) };
}

/** The epochs' wall time, validation and checkpoints included (not the setup or the final test). */
const trainMinutes = (r: Result) => r.epochs.reduce((t, e) => t + e.seconds, 0) / 60;

/** The markdown table: the columns some run has, a row per seed, then mean, sd and range. */
export function seedTable(results: { seed: number; result: Result }[], protocol?: string): string {
  const cols = COLUMNS.filter(([, f]) => results.some(({ result }) => f(result) !== undefined)).map(
    ([name, f]) => [protocol ? name.replace("protocol", protocol) : name, f] as const,
  );
  const rows: Row[] = results.map(({ seed, result }) => ({
    seed,
    values: [...cols.map(([, f]) => (f(result) === undefined ? undefined : 100 * (f(result) as number))), trainMinutes(result)],
  }));
  const n = cols.length + 1;
  const fmt = (v: number | undefined, k: number) => (v === undefined || Number.isNaN(v) ? "-" : v.toFixed(k === n - 1 ? 1 : 2));
  const column = (k: number) => rows.map((r) => r.values[k]).filter((v): v is number => v !== undefined);
  const summary = (name: string, pick: (s: ReturnType<typeof stats>, k: number) => string) =>
    `| ${name} | ${Array.from({ length: n }, (_, k) => (column(k).length ? pick(stats(column(k)), k) : "-")).join(" | ")} |`;
  return [
    `| seed | ${cols.map(([name]) => name).join(" | ")} | train min |`,
    `|---|${"---|".repeat(n)}`,
    ...rows.map((r) => `| ${r.seed} | ${r.values.map(fmt).join(" | ")} |`),
    summary("mean", (s, k) => fmt(s.mean, k)),
    summary("sd", (s, k) => fmt(s.sd, k)),
    summary("range", (s, k) => `${fmt(s.min, k)}-${fmt(s.max, k)}`),
    "",
  ].join("\n");
}

function main(): void {
  const { seeds, dir, md, train } = parseArgs(process.argv.slice(2));
  mkdirSync(dir, { recursive: true });
  const results = seeds.map((seed) => ({ seed, result: runSeed(dir, seed, train) }));
  const protocol = results.find(({ result }) => result.testProtocol)?.result.testProtocol?.protocol;
  const table = [`# ${seeds.length} seeds of one recipe`, "", "```", `vgg train ${train.join(" ")} --seed N`, "```", "", seedTable(results, protocol)].join("\n");
  mkdirSync(dirname(md), { recursive: true });
  writeFileSync(md, table);
  console.log(table);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
