/**
 * What ORT actually runs for our graph and for torch's export: per op type, the node count after ORT's graph
 * optimisations and the time per run, from ORT's own profiler. Two graphs that fuse the same way show the same
 * rows; a difference in the rows, not in the totals, is what points at our compiler.
 *
 *   node dist/bench/profile.js [--arch vgg16] [--batch 1] [--input-size 224] [--iterations 5] [--model FILE.onnx]
 *
 * Without --model the export is taken from bench/run.js's cache (run `npm run bench -- --quick` once first).
 */
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

interface ProfileEvent {
  cat?: string;
  name: string;
  dur: number;
  args?: { op_name?: string; provider?: string };
}

function runNode(script: string, args: string[]): Promise<string> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [join(ROOT, "dist", "bench", script), ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    c.stdout.on("data", (d) => {
      out += d;
    });
    c.on("error", rej);
    c.on("close", (code) => (code === 0 ? res(out) : rej(new Error(`${script} exited ${code}`))));
  });
}

/** Per op type: nodes per run and ms per run, from an ORT profile of `runs` model runs. */
function summarise(file: string): { runs: number; nodes: number; ops: Map<string, { count: number; ms: number }> } {
  const ev = JSON.parse(readFileSync(file, "utf8")) as ProfileEvent[];
  const runs = ev.filter((e) => e.cat === "Session" && e.name === "model_run").length;
  const kernels = ev.filter((e) => e.cat === "Node" && e.name.endsWith("_kernel_time"));
  const ops = new Map<string, { count: number; ms: number }>();
  const names = new Set<string>();
  for (const e of kernels) {
    const op = e.args?.op_name ?? "?";
    names.add(e.name);
    const o = ops.get(op) ?? { count: 0, ms: 0 };
    o.count++;
    o.ms += e.dur / 1000;
    ops.set(op, o);
  }
  for (const o of ops.values()) {
    o.count /= runs;
    o.ms /= runs;
  }
  return { runs, nodes: names.size, ops };
}

function newest(prefix: string): string {
  const dir = dirname(prefix);
  const base = prefix.slice(dir.length + 1);
  const hits = readdirSync(dir).filter((f) => f.startsWith(base) && f.endsWith(".json"));
  if (hits.length === 0) throw new Error(`no ORT profile written under ${prefix}`);
  return join(dir, hits.sort().at(-1)!);
}

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const arch = f.get("arch") ?? "vgg16";
  const size = f.get("input-size") ?? "224";
  const common = [
    "--arch",
    arch,
    "--batch",
    f.get("batch") ?? "1",
    "--input-size",
    size,
    "--iterations",
    f.get("iterations") ?? "5",
    "--warmup",
    "1",
  ];
  const model = f.get("model") ?? join(tmpdir(), "vgg-bench-cache", `${arch}-${size}.onnx`);
  if (!existsSync(model)) throw new Error(`${model} not found: pass --model or run \`npm run bench -- --quick\` first`);
  const dir = join(tmpdir(), `vgg-profile-${process.pid}`);
  const pOurs = join(dir, "ours");
  const pExp = join(dir, "export");
  await import("node:fs").then((fs) => fs.mkdirSync(dir, { recursive: true }));
  const ours = JSON.parse((await runNode("ours.js", [...common, "--profile", pOurs])).trim().split("\n").pop()!);
  const exp = JSON.parse((await runNode("ort-export.js", ["--model", model, ...common, "--profile", pExp])).trim().split("\n").pop()!);
  const a = summarise(newest(pOurs));
  const b = summarise(newest(pExp));
  rmSync(dir, { recursive: true, force: true });

  const lines = [
    `| op (after ORT's fusions) | ours: nodes/run | ours: ms/run | export: nodes/run | export: ms/run |`,
    "|---|---:|---:|---:|---:|",
  ];
  for (const op of [...new Set([...a.ops.keys(), ...b.ops.keys()])]) {
    const x = a.ops.get(op);
    const y = b.ops.get(op);
    lines.push(`| ${op} | ${x?.count ?? 0} | ${x ? x.ms.toFixed(1) : "-"} | ${y?.count ?? 0} | ${y ? y.ms.toFixed(1) : "-"} |`);
  }
  lines.push(`| **kernels in the optimised graph** | ${a.nodes} | | ${b.nodes} | |`);
  lines.push(`| **median ms/batch (profiling on)** | | ${ours.msPerBatch.toFixed(1)} | | ${exp.msPerBatch.toFixed(1)} |`);
  process.stdout.write(`${lines.join("\n")}\n`);
}

main().catch((err) => {
  process.stderr.write(`profile: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
