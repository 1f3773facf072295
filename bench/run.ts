/**
 * `npm run bench`: VGG inference, this project (Winograd by default, and with --winograd off) against ONNX Runtime on
 * torch's own ONNX export and against PyTorch eager, on the same machine in the same minutes.
 *
 *   node dist/bench/run.js [--rounds 3] [--quick] [--cases vgg16:224:1,vgg16:224:8,vgg11_bn:224:8]
 *        [--iterations K] [--threads 2] [--ours cli|lib] [--no-first] [--python /usr/bin/python3] [--out DIR]
 *   node dist/bench/run.js --from bench/results/infer-<date>.json   (re-render a finished run)
 *
 * Every measurement is its own child process (cold caches, an honest peak RSS, no allocator state shared between
 * contenders), and the contenders alternate within each round, so a noisy neighbour on this shared 2-core machine
 * slows all of them rather than whichever happened to run during the noise.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildModel, macCount, paramCount } from "../src/zoo/model.js";
import { intFlag, median, parseFlags } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const TORCH_ARCHS = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn"];
const DEFAULT_CASES = "vgg16:224:1,vgg16:224:8,vgg11_bn:224:8";

type Contender = "ours" | "ours-direct" | "ort-export" | "pytorch";
const CONTENDERS: Contender[] = ["ours", "ours-direct", "ort-export", "pytorch"];
const LABEL: Record<Contender, string> = {
  ours: "ours (vgg bench infer: Winograd auto)",
  "ours-direct": "ours, --winograd off (ORT's Conv)",
  "ort-export": "ORT on torch's export",
  pytorch: "PyTorch eager",
};

type FirstWho = "ours" | "pytorch" | "pytorchSkipInit";

interface Case {
  arch: string;
  size: number;
  batch: number;
}

interface Sample {
  imagesPerSecond: number;
  msPerBatch: number;
  peakRssMB: number;
  loadMs: number;
  gflops?: number;
  timesMs?: number[];
  wallMs: number;
  othersCpuPct?: number;
  stealPct?: number;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  wallMs: number;
  /** The child's own peak RSS and CPU seconds (GNU time), when /usr/bin/time exists. */
  peakRssMB?: number;
  cpuS?: number;
  /** CPU the rest of the machine used while the child ran, in % of all cores: the noise this sample suffered. */
  othersCpuPct?: number;
  /** Time the hypervisor gave our vCPUs to someone else, in % of all cores. */
  stealPct?: number;
}

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function cpuTicks(): { busy: number; steal: number } {
  try {
    const v = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
    const [user, nice, system, , , irq, softirq, steal] = v;
    return { busy: user + nice + system + irq + softirq, steal };
  } catch {
    return { busy: Number.NaN, steal: Number.NaN };
  }
}

const TICK_S = 0.01; // USER_HZ is 100 on every Linux this runs on
const HAVE_TIME = existsSync("/usr/bin/time");
let timeFileSeq = 0;

function run(cmd: string, args: string[], timeoutMs = 15 * 60_000): Promise<RunResult> {
  const tf = join(tmpdir(), `vgg-bench-time-${process.pid}-${timeFileSeq++}.txt`);
  const [c, a]: [string, string[]] = HAVE_TIME ? ["/usr/bin/time", ["-o", tf, "-f", "%M %U %S", cmd, ...args]] : [cmd, args];
  return new Promise((res, rej) => {
    const before = cpuTicks();
    const t0 = performance.now();
    const child = spawn(c, a, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", rej);
    child.on("close", (code) => {
      clearTimeout(timer);
      const wallMs = performance.now() - t0;
      const after = cpuTicks();
      const r: RunResult = { code, stdout, stderr, wallMs };
      if (HAVE_TIME && existsSync(tf)) {
        // On failure GNU time writes "Command exited with non-zero status N" first; the numbers come last.
        const [kb, u, sy] = readFileSync(tf, "utf8").trim().split("\n").pop()!.split(" ").map(Number);
        rmSync(tf, { force: true });
        if ([kb, u, sy].every(Number.isFinite)) {
          r.peakRssMB = kb / 1024;
          r.cpuS = u + sy;
          const capacity = (wallMs / 1000) * cpus().length;
          r.othersCpuPct = Math.max(0, (100 * ((after.busy - before.busy) * TICK_S - r.cpuS)) / capacity);
          r.stealPct = (100 * (after.steal - before.steal) * TICK_S) / capacity;
        }
      }
      res(r);
    });
  });
}

/** The last JSON object line on stdout: tools may print warnings before their one result line. */
function lastJson(r: RunResult, what: string): Record<string, unknown> {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.stderr.trim().split("\n").slice(-3).join(" | ")}`);
  const line = r.stdout
    .trim()
    .split("\n")
    .reverse()
    .find((l) => l.trim().startsWith("{"));
  if (!line) throw new Error(`${what} printed no JSON line: ${r.stdout.slice(0, 300)}`);
  return JSON.parse(line) as Record<string, unknown>;
}

function parseCases(s: string): Case[] {
  return s.split(",").map((c) => {
    const [arch, size, batch] = c.split(":");
    const cs = { arch, size: Number(size ?? 224), batch: Number(batch ?? 1) };
    if (!TORCH_ARCHS.includes(arch)) throw new Error(`case '${c}': torchvision has no ${arch} to compare against`);
    if (!(cs.size > 0 && cs.batch > 0)) throw new Error(`case '${c}': want arch:size:batch`);
    return cs;
  });
}

const caseKey = (c: Case) => `${c.arch} ${c.size}x${c.size} batch ${c.batch}`;

/** Minimal .npy float32 reader: only to check that ours and PyTorch computed the same logits. */
function readNpyF32(path: string): Float32Array {
  const b = readFileSync(path);
  const major = b[6];
  const start = major === 1 ? 10 : 12;
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const header = b.subarray(start, start + hlen).toString("latin1");
  if (!header.includes("<f4")) throw new Error(`${path}: not little-endian float32 (${header.trim()})`);
  return new Float32Array(b.buffer.slice(b.byteOffset + start + hlen, b.byteOffset + b.length));
}

const fmt = (x: number | undefined, d = 1) => (x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(d));

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const from = f.get("from");
  if (from) {
    // Re-render a finished run's raw data (e.g. after the table format changed); nothing is run.
    const raw = JSON.parse(readFileSync(from, "utf8")) as Raw;
    const { text } = report(raw);
    writeFileSync(from.replace(/\.json$/, ".md"), `${text}\n`);
    process.stdout.write(`${text}\n`);
    return;
  }
  const quick = f.has("quick");
  const rounds = intFlag(f, "rounds", quick ? 1 : 3);
  const threads = intFlag(f, "threads", 2);
  const cases = parseCases(f.get("cases") ?? (quick ? "vgg16:224:1" : DEFAULT_CASES));
  const python = f.get("python") ?? "/usr/bin/python3";
  const oursMode = f.get("ours") ?? "cli";
  const doFirst = !f.has("no-first");
  const cache = f.get("cache") ?? join(tmpdir(), "vgg-bench-cache");
  const outDir = resolve(ROOT, f.get("out") ?? "bench/results");
  // Enough batches for a stable median within the ~15-minute budget: a VGG16 batch of 8 takes 1-3 s here.
  const iters = (c: Case) => intFlag(f, "iterations", quick ? 2 : c.batch >= 4 ? 6 : 12);
  const warmup = (c: Case) => (quick ? 1 : c.batch >= 4 ? 1 : 2);
  const script = join(ROOT, "scripts", "torch_bench.py");
  const vggBin = join(ROOT, "bin", "vgg.js");
  const t0 = performance.now();
  mkdirSync(cache, { recursive: true });

  if (oursMode === "cli" && !existsSync(vggBin)) {
    throw new Error(`${vggBin} does not exist yet; use --ours lib to time the library directly`);
  }
  // Pass --warmup only if the CLI knows it; an unknown flag would abort every "ours" run.
  let cliWarmup = false;
  if (oursMode === "cli") {
    const h = await run(process.execPath, [vggBin, "bench", "infer", "--help"], 60_000);
    cliWarmup = /--warmup/.test(h.stdout + h.stderr);
  }

  const env: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    loadavgStart: loadavg(),
    threads,
    rounds,
    quick,
    oursMode,
  };
  log("PyTorch BLAS check");
  env.torchBlas = lastJson(await run(python, [script, "blas-info", "--threads", String(threads)]), "blas-info");

  // Torch's exports are cached across runs: each is ~0.5 GB and ~15 s to make, and fixed for a given torch.
  const exports = new Map<string, string>();
  for (const c of cases) {
    const k = `${c.arch}-${c.size}`;
    if (exports.has(k)) continue;
    const file = join(cache, `${k}.onnx`);
    if (!existsSync(file) || statSync(file).size < 1e6) {
      log(`exporting torchvision ${c.arch} at ${c.size} to ONNX`);
      const r = await run(python, [script, "export", "--arch", c.arch, "--input-size", String(c.size), "--out", file, "--batch-dynamic"]);
      env[`export_${k}`] = lastJson(r, `export ${k}`);
    }
    exports.set(k, file);
  }

  const samples = new Map<string, Map<Contender, Sample[]>>();
  const errors: string[] = [];
  for (const c of cases) samples.set(caseKey(c), new Map(CONTENDERS.map((x) => [x, []])));

  const commandFor = (who: Contender, c: Case): [string, string[]] => {
    const common = ["--arch", c.arch, "--batch", String(c.batch), "--input-size", String(c.size), "--threads", String(threads)];
    const k = ["--iterations", String(iters(c))];
    const w = ["--warmup", String(warmup(c))];
    if (who === "ours" || who === "ours-direct") {
      const wino = ["--winograd", who === "ours" ? "auto" : "off"];
      return oursMode === "cli"
        ? [process.execPath, [vggBin, "bench", "infer", ...common, ...k, ...(cliWarmup ? w : []), ...wino, "--json"]]
        : [process.execPath, [join(ROOT, "dist", "bench", "ours.js"), ...common, ...k, ...w, ...wino]];
    }
    if (who === "ort-export") {
      const model = exports.get(`${c.arch}-${c.size}`)!;
      return [process.execPath, [join(ROOT, "dist", "bench", "ort-export.js"), "--model", model, ...common, ...k, ...w]];
    }
    return [python, [script, "eager", ...common, ...k, ...w, "--json"]];
  };

  for (let r = 1; r <= rounds; r++) {
    for (const c of cases) {
      for (const who of CONTENDERS) {
        const [cmd, args] = commandFor(who, c);
        log(`round ${r}/${rounds} ${caseKey(c)}: ${who}`);
        try {
          const res = await run(cmd, args);
          const j = lastJson(res, `${who} ${caseKey(c)}`);
          const s: Sample = { ...(j as unknown as Sample), wallMs: res.wallMs, othersCpuPct: res.othersCpuPct, stealPct: res.stealPct };
          samples.get(caseKey(c))!.get(who)!.push(s);
          log(
            `  ${fmt(s.imagesPerSecond, 2)} img/s, ${fmt(s.msPerBatch)} ms/batch, ${fmt(s.peakRssMB, 0)} MB peak, others ${fmt(s.othersCpuPct, 0)}% CPU`,
          );
        } catch (err) {
          const msg = `round ${r} ${caseKey(c)} ${who}: ${(err as Error).message}`;
          errors.push(msg);
          log(`  FAILED ${msg}`);
        }
      }
    }
  }

  // Time to first result: a fresh process, one image, weights from a torchvision .pth, until the logits are on
  // disk and the process has exited. Wall time from the parent is the one clock both runtimes share.
  const first: Record<FirstWho, number[]> = { ours: [], pytorch: [], pytorchSkipInit: [] };
  const firstDetail: Record<string, unknown>[] = [];
  let firstAgreement: number | undefined;
  const firstArch = cases[0].arch;
  const firstSize = cases[0].size;
  if (doFirst && oursMode === "cli") {
    const pth = join(cache, `${firstArch}.pth`);
    const x = join(cache, `x1-${firstSize}.npy`);
    if (!existsSync(pth)) {
      log(`saving torchvision ${firstArch} weights`);
      lastJson(await run(python, [script, "save-weights", "--arch", firstArch, "--out", pth]), "save-weights");
    }
    if (!existsSync(x)) {
      lastJson(await run(python, [script, "make-input", "--out", x, "--batch", "1", "--input-size", String(firstSize)]), "make-input");
    }
    const yOurs = join(cache, "y-ours.npy");
    const yTorch = join(cache, "y-torch.npy");
    for (let r = 1; r <= rounds; r++) {
      for (const who of ["ours", "pytorch", "pytorchSkipInit"] as const) {
        const [cmd, args]: [string, string[]] =
          who === "ours"
            ? [
                process.execPath,
                [vggBin, "infer", "--arch", firstArch, "--weights", pth, "--input", x, "--out", yOurs, "--threads", String(threads)],
              ]
            : [
                python,
                [
                  script,
                  "first",
                  "--arch",
                  firstArch,
                  "--weights",
                  pth,
                  "--input",
                  x,
                  "--out",
                  yTorch,
                  "--threads",
                  String(threads),
                  ...(who === "pytorchSkipInit" ? ["--skip-init"] : []),
                ],
              ];
        log(`round ${r}/${rounds} first result: ${who}`);
        try {
          const res = await run(cmd, args);
          if (res.code !== 0) throw new Error(`exited ${res.code}: ${res.stderr.trim().split("\n").slice(-3).join(" | ")}`);
          first[who].push(res.wallMs);
          const inner = who === "ours" ? {} : lastJson(res, who);
          firstDetail.push({ round: r, who, ...inner, wallMs: res.wallMs, peakRssMB: res.peakRssMB, othersCpuPct: res.othersCpuPct });
          log(`  ${fmt(res.wallMs, 0)} ms wall, ${fmt(res.peakRssMB, 0)} MB peak`);
        } catch (err) {
          errors.push(`first result ${who} round ${r}: ${(err as Error).message}`);
          log(`  FAILED ${(err as Error).message}`);
        }
      }
    }
    try {
      const a = readNpyF32(yOurs);
      const b = readNpyF32(yTorch);
      if (a.length === b.length) {
        let m = 0;
        let s = 0;
        for (let k = 0; k < a.length; k++) {
          m = Math.max(m, Math.abs(a[k] - b[k]));
          s = Math.max(s, Math.abs(b[k]));
        }
        firstAgreement = m / (s || 1);
      }
    } catch (err) {
      errors.push(`comparing logits: ${(err as Error).message}`);
    }
  }
  env.loadavgEnd = loadavg();
  env.totalSeconds = (performance.now() - t0) / 1000;
  env.iterations = Object.fromEntries(cases.map((c) => [caseKey(c), iters(c)]));

  const raw: Raw = {
    env,
    cases,
    samples: Object.fromEntries([...samples].map(([k, v]) => [k, Object.fromEntries(v) as Record<Contender, Sample[]>])),
    first: doFirst && oursMode === "cli" ? first : undefined,
    firstDetail,
    firstAgreement,
    errors,
  };
  const { rows, text } = report(raw);
  process.stdout.write(`${text}\n`);
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().slice(0, 16).replace(/:/g, "");
  const base = join(outDir, `infer-${stamp}${quick ? "-quick" : ""}`);
  writeFileSync(`${base}.json`, `${JSON.stringify({ ...raw, rows }, null, 1)}\n`);
  writeFileSync(`${base}.md`, `${text}\n`);
  log(`wrote ${base}.md and .json`);
  if (errors.length) process.exitCode = 1;
}

interface Raw {
  env: Record<string, unknown>;
  cases: Case[];
  samples: Record<string, Record<Contender, Sample[]>>;
  first?: Record<FirstWho, number[]>;
  firstDetail: Record<string, unknown>[];
  firstAgreement?: number;
  errors: string[];
}

interface Row {
  case: string;
  contender: Contender;
  n: number;
  imagesPerSecond: number;
  /** Median over the runs during which the rest of the machine used under QUIET_PCT of the CPU. */
  quietImagesPerSecond?: number;
  quietN: number;
  bestImagesPerSecond: number;
  msPerBatch: number;
  gflops: number;
  peakRssMB: number;
  loadMs: number;
  othersCpuPct?: number;
  vsOrtExport: Ratios;
  vsPytorch: Ratios;
}

interface Ratios {
  median?: number;
  quiet?: number;
  best?: number;
}

/** Other work under this share of the CPU barely moves the numbers; above it, ORT's spinning pool suffers. */
const QUIET_PCT = 10;

/** Summaries and the Markdown text; separate from the runs so `--from FILE.json` can re-render old raw data. */
function report(raw: Raw): { rows: Row[]; text: string } {
  const { env, cases } = raw;
  const rows: Row[] = [];
  const weightsMB = new Map<string, number>();
  for (const c of cases) {
    const m = buildModel(c.arch, { inputSize: c.size });
    weightsMB.set(caseKey(c), (4 * paramCount(m)) / 2 ** 20);
    const macs = macCount(m);
    const per = raw.samples[caseKey(c)];
    const summary = new Map<Contender, Row>();
    for (const who of CONTENDERS) {
      const ss = per?.[who] ?? [];
      if (ss.length === 0) continue;
      const ips = median(ss.map((s) => s.imagesPerSecond));
      const quiet = ss.filter((s) => s.othersCpuPct !== undefined && s.othersCpuPct < QUIET_PCT);
      const noise = ss.map((s) => s.othersCpuPct).filter((v): v is number => v !== undefined);
      const quietIps = quiet.length ? median(quiet.map((s) => s.imagesPerSecond)) : undefined;
      summary.set(who, {
        case: caseKey(c),
        contender: who,
        n: ss.length,
        imagesPerSecond: ips,
        quietImagesPerSecond: quietIps,
        quietN: quiet.length,
        bestImagesPerSecond: Math.max(...ss.map((s) => s.imagesPerSecond)),
        msPerBatch: median(ss.map((s) => s.msPerBatch)),
        gflops: (2 * macs * (quietIps ?? ips)) / 1e9,
        peakRssMB: median(ss.map((s) => s.peakRssMB)),
        loadMs: median(ss.map((s) => s.loadMs)),
        othersCpuPct: noise.length ? median(noise) : undefined,
        vsOrtExport: {},
        vsPytorch: {},
      });
    }
    const ratios = (row: Row, ref: Row | undefined): Ratios =>
      ref
        ? {
            median: row.imagesPerSecond / ref.imagesPerSecond,
            quiet: row.quietImagesPerSecond && ref.quietImagesPerSecond ? row.quietImagesPerSecond / ref.quietImagesPerSecond : undefined,
            best: row.bestImagesPerSecond / ref.bestImagesPerSecond,
          }
        : {};
    for (const row of summary.values()) {
      row.vsOrtExport = ratios(row, summary.get("ort-export"));
      row.vsPytorch = ratios(row, summary.get("pytorch"));
      rows.push(row);
    }
  }

  const r3 = (r: Ratios) => `${fmt(r.median, 2)} / ${fmt(r.quiet, 2)} / ${fmt(r.best, 2)}`;
  const iterations = env.iterations as Record<string, number> | undefined;
  const md: string[] = [];
  md.push(`# VGG inference benchmark, ${env.date}`);
  md.push("");
  md.push(
    `${env.cpu}, ${env.cores} cores, ${env.threads} threads per contender; ${env.rounds} round(s)` +
      `${iterations ? ` of ${[...new Set(Object.values(iterations))].join("/")} timed batches` : ""}, contenders alternating. ` +
      `"quiet": the median over runs during which the rest of the machine used under ${QUIET_PCT}% of the CPU ([n] of them); ` +
      '"best": the fastest round. Ratios (median / quiet / best): images/s of the row ÷ images/s of that contender, >1 means the row is faster. ' +
      '"others CPU": what the rest of the machine used during the row\'s runs (median, % of all cores).',
  );
  md.push("");
  md.push(
    "| case | contender | images/s median | quiet [n] | best | ms/batch median | GFLOP/s | vs ORT-on-export | vs PyTorch | peak RSS MB | RSS ÷ weights | load ms | others CPU |",
  );
  md.push("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    const w = weightsMB.get(r.case)!;
    md.push(
      `| ${r.case} | ${LABEL[r.contender]} | ${fmt(r.imagesPerSecond, 2)} | ${fmt(r.quietImagesPerSecond, 2)} [${r.quietN}] | ${fmt(r.bestImagesPerSecond, 2)} | ` +
        `${fmt(r.msPerBatch)} | ${fmt(r.gflops, 0)} | ${r3(r.vsOrtExport)} | ${r3(r.vsPytorch)} | ` +
        `${fmt(r.peakRssMB, 0)} | ${fmt(r.peakRssMB / w, 2)} | ${fmt(r.loadMs, 0)} | ${fmt(r.othersCpuPct, 0)}% |`,
    );
  }
  md.push("");
  const archWeights = new Map(cases.map((c) => [c.arch, weightsMB.get(caseKey(c))!]));
  md.push(
    `Weights (4 × parameters): ${[...archWeights].map(([a, v]) => `${a} ${v.toFixed(0)} MB`).join(", ")}; target: peak RSS ≤ 2 × weights. ` +
      "GFLOP/s is from the quiet median where there is one.",
  );
  const first = raw.first;
  if (first) {
    const c0 = cases[0];
    const detail = raw.firstDetail;
    md.push("");
    md.push(`## Time to first result (${c0.arch}, one ${c0.size}x${c0.size} image, fresh process, weights from a torchvision .pth)`);
    md.push("");
    md.push("| contender | wall ms (median) | best | peak RSS MB |");
    md.push("|---|---:|---:|---:|");
    const rss = (who: FirstWho) =>
      median(detail.filter((d) => d.who === who && typeof d.peakRssMB === "number").map((d) => d.peakRssMB as number));
    const line = (label: string, who: FirstWho) =>
      md.push(`| ${label} | ${fmt(median(first[who]), 0)} | ${fmt(Math.min(...first[who]), 0)} | ${fmt(rss(who), 0)} |`);
    line("ours (`vgg infer`)", "ours");
    line("PyTorch (torchvision constructor + load_state_dict)", "pytorch");
    line("PyTorch, random init skipped", "pytorchSkipInit");
    const inner = detail.filter((d) => d.who === "pytorch");
    if (inner.length) {
      const med = (k: string) => fmt(median(inner.map((d) => d[k] as number)), 0);
      md.push("");
      md.push(
        `PyTorch's own breakdown (median): import ${med("importMs")} ms, build ${med("buildMs")} ms, torch.load + load_state_dict ${med("loadWeightsMs")} ms, ` +
          `forward ${med("runMs")} ms; result ready ${med("ms")} ms after process start.`,
      );
    }
    if (raw.firstAgreement !== undefined) {
      md.push(`Logits of ours vs PyTorch on that image: max |diff| / max |logit| = ${raw.firstAgreement.toExponential(2)}.`);
    }
  }
  const blas = env.torchBlas as Record<string, unknown> | undefined;
  if (blas) {
    md.push("");
    md.push(
      `PyTorch ${blas.torch}: BLAS libraries mapped ${(blas.blasLibraries as string[]).map((p) => p.split("/").pop()).join(", ")}; ` +
        `${blas.openblasConfig ?? "no OpenBLAS"}; 2048² GEMM ${fmt(blas.gemm2048GFlops as number, 0)} GFLOP/s; fc6 at batch 8 ${fmt(blas.fc6Batch8Ms as number, 0)} ms.`,
    );
  }
  if (raw.errors.length) {
    md.push("");
    md.push("Errors:");
    for (const e of raw.errors) md.push(`- ${e}`);
  }
  md.push("");
  md.push(`Total ${fmt(env.totalSeconds as number, 0)} s.`);
  return { rows, text: md.join("\n") };
}

main().catch((err) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
