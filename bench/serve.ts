/**
 * `npm run bench:serve`: `vgg serve` under closed-loop load on loopback, against the same model's offline figure.
 *
 * For each model (vgg11_bn at 224, and a small vgg11_bn: width /4, compact head, 10 classes, 32x32), exported by
 * `vgg export` into a temporary folder and served by `vgg serve` in a child process: C clients (1, 8, 32, 128), each
 * sending one batch-1 request with binary tensor data (Triton's extension), waiting for its answer and sending the
 * next. A warm-up (at least --warmup seconds and C answers), then --seconds of measurement: images/s, p50/p99
 * latency, statuses, the mean batch the server ran (from /metrics), the CPU others used meanwhile. Before each
 * level and after the last, `vgg bench infer --batch <max-batch>` measures the offline figure, so the two alternate
 * on this shared machine. Then overload: a server with a small --max-queue and 4x the saturating number of clients
 * (each resending at once on a 429) until --overload-requests answers after --overload-warmup uncounted ones, the
 * server's RSS read every 100 answers.
 *
 * Targets (the issue's): throughput at saturation >= 85% of the offline figure; p99 below saturation <= 2 x (the
 * offline batch time at --max-batch + --max-delay-ms); no errors below saturation; at 4x overload only 429s, RSS
 * flat (the last quarter's median within max(5%, 16 MB) of the first quarter's).
 *
 *   node dist/bench/serve.js [--quick] [--models vgg11_bn,small] [--concurrency 1,8,32,128] [--seconds S]
 *        [--warmup S] [--max-batch 8] [--max-delay-ms 5] [--overload-requests 10000] [--overload-queue N]
 *        [--overload-warmup 1000] [--threads N] [--out DIR] [--from FILE.json]
 *
 * --seconds and --warmup apply to every model (default: vgg11_bn 40 s / 10 s, small 10 s / 2 s; --quick: 8/3 and
 * 3/1, 2,000 overload requests). Writes serve-<time>.json (every latency summary, offline run, RSS sample) and
 * serve-<time>.md to --out (default bench/results; with --quick a temporary folder). --from re-renders a run's .md.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { Xoshiro128 } from "../src/random.js";
import { intFlag, median, parseFlags } from "./timing.js";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const VGG = join(ROOT, "bin", "vgg.js");
const TICK_S = 0.01; // USER_HZ

interface ModelCase {
  name: string;
  args: string[];
  seconds: number;
  warmup: number;
  /** `vgg bench infer` iterations and warm-up batches. */
  offline: [number, number];
}

const MODELS: Record<string, (quick: boolean) => ModelCase> = {
  vgg11_bn: (q) => ({
    name: "vgg11_bn",
    args: ["--arch", "vgg11_bn"],
    seconds: q ? 8 : 40,
    warmup: q ? 3 : 10,
    offline: q ? [3, 1] : [6, 1],
  }),
  small: (q) => ({
    name: "small",
    args: ["--arch", "vgg11_bn", "--width-divisor", "4", "--head", "compact", "--num-classes", "10", "--input-size", "32"],
    seconds: q ? 3 : 10,
    warmup: q ? 1 : 2,
    offline: q ? [300, 30] : [2000, 100],
  }),
};

interface Offline {
  imagesPerSecond: number;
  msPerBatch: number;
  othersCpuPct: number;
}

interface Level {
  concurrency: number;
  seconds: number;
  /** 200s answered within the window, per second (batch-1 requests: images/s). */
  imagesPerSecond: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  answered: number;
  /** Every answer in the window by status (or client error code). */
  statuses: Record<string, number>;
  /** 200s whose body was not the size the model's logits take. */
  badAnswers: number;
  meanBatch: number;
  othersCpuPct: number;
  serverCpuCores: number;
  serverRssMB: number;
}

interface Overload {
  concurrency: number;
  maxQueue: number;
  requests: number;
  seconds: number;
  statuses: Record<string, number>;
  goodputImagesPerSecond: number;
  p99OkMs: number;
  /** Server RSS every 100 answers, MB. */
  rssMB: number[];
  rssFirstQuarterMB: number;
  rssLastQuarterMB: number;
  /** Before the warm-up requests (not counted). */
  rssFreshMB: number;
  warmupRequests: number;
  exitCode: number | null;
}

interface ModelResult {
  model: string;
  args: string[];
  fileMB: number;
  maxBatch: number;
  maxDelayMs: number;
  offline: Offline[];
  levels: Level[];
  overload?: Overload;
  serveExitCode: number | null;
}

interface Raw {
  date: string;
  command: string;
  env: Record<string, unknown>;
  results: ModelResult[];
}

function log(msg: string): void {
  process.stderr.write(`[bench:serve ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// CPU accounting: what the rest of the machine used while we measured

function busyTicks(): number {
  const v = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq] = v;
  return user + nice + system + irq + softirq;
}

function procTicks(pid: number | undefined): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  } catch {
    return 0;
  }
}

function rssMB(pid: number | undefined): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024;
  } catch {
    return Number.NaN;
  }
}

/** Starts a CPU account; `end` gives others' CPU in % of all cores and the process's own use in cores. */
function cpuAccount(pid: number | undefined) {
  const t0 = performance.now();
  const busy0 = busyTicks();
  const proc0 = procTicks(pid);
  const own0 = process.cpuUsage();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const own = process.cpuUsage(own0);
    const ownS = (own.user + own.system) / 1e6;
    const procS = (procTicks(pid) - proc0) * TICK_S;
    const busyS = (busyTicks() - busy0) * TICK_S;
    return { othersCpuPct: Math.max(0, (100 * (busyS - procS - ownS)) / (wall * cpus().length)), procCores: procS / wall };
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Child processes

/** Runs `vgg ARGS`; resolves with its last JSON line and the CPU it used (read every 200 ms while it ran). */
function runJson(args: string[], timeoutMs = 20 * 60_000): Promise<Record<string, unknown> & { cpuS: number }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [VGG, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    let ticks = 0;
    const poll = setInterval(() => (ticks = Math.max(ticks, procTicks(child.pid))), 200);
    child.stdout.setEncoding("utf8").on("data", (s: string) => (out += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (err += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      clearInterval(poll);
      if (code !== 0) return fail(new Error(`vgg ${args.join(" ")} exited ${code}: ${err.trim().split("\n").slice(-3).join(" | ")}`));
      const line = out
        .trim()
        .split("\n")
        .reverse()
        .find((l) => l.startsWith("{"));
      done({ ...(line ? (JSON.parse(line) as Record<string, unknown>) : {}), cpuS: ticks * TICK_S });
    });
  });
}

interface Server {
  proc: ChildProcess;
  port: number;
  stop: () => Promise<number | null>;
}

function startServe(file: string, args: string[]): Promise<Server> {
  const proc = spawn(process.execPath, [VGG, "serve", "--model", file, "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stderr?.setEncoding("utf8").on("data", (s: string) => (out += s));
  const exited = new Promise<number | null>((r) => proc.on("exit", (code) => r(code)));
  const stop = () => {
    if (proc.exitCode === null) proc.kill("SIGTERM");
    return exited;
  };
  return new Promise((done, fail) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      fail(new Error(`vgg serve did not get ready: ${out}`));
    }, 180_000);
    proc.on("exit", () => fail(new Error(`vgg serve exited: ${out}`)));
    proc.stdout?.setEncoding("utf8").on("data", (s: string) => {
      out += s;
      const url = /listening on http:\/\/127\.0\.0\.1:(\d+)\/v2/.exec(out);
      if (url && /^ready: /m.test(out)) {
        clearTimeout(timer);
        done({ proc, port: Number(url[1]), stop });
      }
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The closed-loop clients

interface Answer {
  status: string;
  ok: boolean;
  start: number;
  end: number;
}

interface Target {
  port: number;
  path: string;
  body: Buffer;
  headerLength: number;
  /** Bytes of a right answer: its JSON header (Inference-Header-Content-Length) + the logits. */
  logitsBytes: number;
}

function send(agent: http.Agent, t: Target): Promise<Answer> {
  const start = performance.now();
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: "127.0.0.1",
        port: t.port,
        path: t.path,
        method: "POST",
        agent,
        headers: {
          "Content-Type": "application/octet-stream",
          "Content-Length": t.body.length,
          "Inference-Header-Content-Length": t.headerLength,
        },
      },
      (res) => {
        let n = 0;
        res.on("data", (d: Buffer) => (n += d.length));
        res.on("end", () => {
          const ihcl = Number(res.headers["inference-header-content-length"]);
          const status = String(res.statusCode);
          resolve({ status, ok: status === "200" && n === ihcl + t.logitsBytes, start, end: performance.now() });
        });
        res.on("error", (e: NodeJS.ErrnoException) => resolve({ status: e.code ?? "error", ok: false, start, end: performance.now() }));
      },
    );
    req.on("error", (e: NodeJS.ErrnoException) => resolve({ status: e.code ?? "error", ok: false, start, end: performance.now() }));
    req.end(t.body);
  });
}

/**
 * C clients in a closed loop until `until(answers so far)` says stop; every answer goes to `onAnswer`. Resolves
 * once every client has its last answer (nothing left in the server's queue).
 */
async function closedLoop(t: Target, c: number, onAnswer: (a: Answer) => boolean): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  let stop = false;
  const client = async () => {
    while (!stop) {
      const a = await send(agent, t);
      if (!onAnswer(a)) stop = true;
    }
  };
  await Promise.all(Array.from({ length: c }, client));
  agent.destroy();
}

const quantile = (sorted: number[], q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];

async function batchStats(port: number, model: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = (k: string) => Number(new RegExp(`vgg_batch_size_${k}\\{model="${model}"\\} (\\S+)`).exec(text)?.[1] ?? 0);
  return { sum: m("sum"), count: m("count") };
}

async function measureLevel(t: Target, server: Server, model: string, c: number, warmupS: number, seconds: number): Promise<Level> {
  const t0 = performance.now();
  let phase: "warmup" | "window" | "drain" = "warmup";
  let warmAnswers = 0;
  let windowStart = 0;
  let windowEnd = 0;
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let okCount = 0;
  let bad = 0;
  let account: ReturnType<typeof cpuAccount> | undefined;
  let cpu = { othersCpuPct: Number.NaN, procCores: Number.NaN };
  let batches0 = { sum: 0, count: 0 };
  let batchesReady: Promise<void> = Promise.resolve();
  let rss = Number.NaN;
  const startWindow = () => {
    phase = "window";
    windowStart = performance.now();
    account = cpuAccount(server.proc.pid);
    batchesReady = batchStats(t.port, model).then((b) => {
      batches0 = b;
    });
  };
  let batches1: Promise<{ sum: number; count: number }> = Promise.resolve({ sum: 0, count: 0 });
  await closedLoop(t, c, (a) => {
    const now = performance.now();
    if (phase === "warmup") {
      warmAnswers++;
      if (now - t0 >= warmupS * 1000 && warmAnswers >= c) startWindow();
      return true;
    }
    if (phase === "window") {
      if (now - windowStart >= seconds * 1000) {
        phase = "drain";
        windowEnd = now;
        cpu = account?.() ?? cpu;
        rss = rssMB(server.proc.pid);
        batches1 = batchStats(t.port, model);
        return false;
      }
      statuses[a.status] = (statuses[a.status] ?? 0) + 1;
      if (a.status === "200") {
        okCount++;
        latencies.push(a.end - a.start);
        if (!a.ok) bad++;
      }
      return true;
    }
    return false;
  });
  await batchesReady;
  const b1 = await batches1;
  const span = (windowEnd - windowStart) / 1000;
  latencies.sort((x, y) => x - y);
  return {
    concurrency: c,
    seconds: span,
    imagesPerSecond: okCount / span,
    p50Ms: quantile(latencies, 0.5),
    p90Ms: quantile(latencies, 0.9),
    p99Ms: quantile(latencies, 0.99),
    maxMs: latencies[latencies.length - 1] ?? Number.NaN,
    answered: Object.values(statuses).reduce((x, y) => x + y, 0),
    statuses,
    badAnswers: bad,
    meanBatch: (b1.sum - batches0.sum) / Math.max(1, b1.count - batches0.count),
    othersCpuPct: cpu.othersCpuPct,
    serverCpuCores: cpu.procCores,
    serverRssMB: rss,
  };
}

async function measureOverload(t: Target, server: Server, c: number, maxQueue: number, requests: number, warm: number): Promise<Overload> {
  const fresh = rssMB(server.proc.pid);
  // A fresh server's heap grows over its first requests whatever happens: the RSS is followed after a warm-up.
  let w = 0;
  await closedLoop(t, c, () => ++w < warm);
  const statuses: Record<string, number> = {};
  const rss: number[] = [rssMB(server.proc.pid)];
  const ok: number[] = [];
  let n = 0;
  const t0 = performance.now();
  await closedLoop(t, c, (a) => {
    if (n >= requests) return false;
    n++;
    statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    if (a.status === "200") ok.push(a.end - a.start);
    if (n % 100 === 0) rss.push(rssMB(server.proc.pid));
    return n < requests;
  });
  const seconds = (performance.now() - t0) / 1000;
  ok.sort((x, y) => x - y);
  const q = Math.max(1, Math.floor(rss.length / 4));
  return {
    concurrency: c,
    maxQueue,
    requests: n,
    seconds,
    statuses,
    goodputImagesPerSecond: ok.length / seconds,
    p99OkMs: quantile(ok, 0.99),
    rssMB: rss,
    rssFirstQuarterMB: median(rss.slice(0, q)),
    rssLastQuarterMB: median(rss.slice(-q)),
    rssFreshMB: fresh,
    warmupRequests: warm,
    exitCode: null,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// One model

async function targetOf(port: number, name: string): Promise<Target> {
  const meta = (await (await fetch(`http://127.0.0.1:${port}/v2/models/${name}`)).json()) as {
    inputs: { name: string; shape: number[] }[];
    outputs: { name: string; shape: number[] }[];
  };
  const shape = [1, ...meta.inputs[0].shape.slice(1)];
  const n = shape.reduce((a, b) => a * b, 1);
  const rng = new Xoshiro128(1);
  const x = new Float32Array(n);
  for (let k = 0; k < n; k++) x[k] = rng.normal();
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: meta.inputs[0].name, shape, datatype: "FP32", parameters: { binary_data_size: x.byteLength } }],
      outputs: [{ name: meta.outputs[0].name, parameters: { binary_data: true } }],
    }),
  );
  const k = meta.outputs[0].shape.slice(1).reduce((a, b) => a * b, 1);
  return {
    port,
    path: `/v2/models/${name}/infer`,
    body: Buffer.concat([header, Buffer.from(x.buffer)]),
    headerLength: header.length,
    logitsBytes: 4 * k,
  };
}

interface RunOptions {
  concurrency: number[];
  maxBatch: number;
  maxDelayMs: number;
  threads: number;
  overloadRequests: number;
  overloadQueue: number;
  overloadWarmup: number;
  seconds?: number;
  warmup?: number;
}

async function benchModel(mc: ModelCase, o: RunOptions, dir: string): Promise<ModelResult> {
  const file = join(dir, `${mc.name}.onnx`);
  log(`${mc.name}: vgg export ${mc.args.join(" ")}`);
  await runJson(["export", ...mc.args, "--out", file]);
  const seconds = o.seconds ?? mc.seconds;
  const warmup = o.warmup ?? mc.warmup;
  const serveArgs = ["--max-batch", String(o.maxBatch), "--max-delay-ms", String(o.maxDelayMs), "--threads", String(o.threads)];
  const offline = async (): Promise<Offline> => {
    const t1 = performance.now();
    const busy0 = busyTicks();
    const j = await runJson([
      "bench",
      "infer",
      ...mc.args,
      "--batch",
      String(o.maxBatch),
      "--threads",
      String(o.threads),
      "--iterations",
      String(mc.offline[0]),
      "--warmup",
      String(mc.offline[1]),
      "--json",
    ]);
    const wall = (performance.now() - t1) / 1000;
    const others = (100 * Math.max(0, (busyTicks() - busy0) * TICK_S - j.cpuS)) / (wall * cpus().length);
    const r = { imagesPerSecond: Number(j.imagesPerSecond), msPerBatch: Number(j.msPerBatch), othersCpuPct: others };
    log(
      `  offline (vgg bench infer --batch ${o.maxBatch}): ${r.imagesPerSecond.toFixed(2)} img/s, ${r.msPerBatch.toFixed(1)} ms/batch, others ${others.toFixed(0)}% CPU`,
    );
    return r;
  };
  const result: ModelResult = {
    model: mc.name,
    args: mc.args,
    fileMB: Number((readFileSync(file).length / 2 ** 20).toFixed(1)),
    maxBatch: o.maxBatch,
    maxDelayMs: o.maxDelayMs,
    offline: [],
    levels: [],
    serveExitCode: null,
  };
  let server = await startServe(file, serveArgs);
  try {
    const t = await targetOf(server.port, mc.name);
    for (const c of o.concurrency) {
      result.offline.push(await offline());
      log(`  ${c} clients: ${warmup} s warm-up (and ${c} answers), ${seconds} s measured`);
      const l = await measureLevel(t, server, mc.name, c, warmup, seconds);
      result.levels.push(l);
      log(
        `    ${l.imagesPerSecond.toFixed(2)} img/s, p50 ${l.p50Ms.toFixed(1)} ms, p99 ${l.p99Ms.toFixed(1)} ms, mean batch ${l.meanBatch.toFixed(2)}, ` +
          `statuses ${JSON.stringify(l.statuses)}, others ${l.othersCpuPct.toFixed(0)}% CPU`,
      );
    }
    result.offline.push(await offline());
    result.serveExitCode = await server.stop();
    // Overload: 4x the clients that saturate the server, against a short queue.
    const sat = saturation(result.levels);
    const c = 4 * sat.concurrency;
    log(`  overload: ${c} clients (4 x ${sat.concurrency}), --max-queue ${o.overloadQueue}, ${o.overloadRequests} requests`);
    server = await startServe(file, [...serveArgs, "--max-queue", String(o.overloadQueue)]);
    const ov = await measureOverload(
      await targetOf(server.port, mc.name),
      server,
      c,
      o.overloadQueue,
      o.overloadRequests,
      o.overloadWarmup,
    );
    ov.exitCode = await server.stop();
    result.overload = ov;
    log(
      `    ${JSON.stringify(ov.statuses)} in ${ov.seconds.toFixed(1)} s, goodput ${ov.goodputImagesPerSecond.toFixed(2)} img/s, ` +
        `RSS ${ov.rssFirstQuarterMB.toFixed(0)} -> ${ov.rssLastQuarterMB.toFixed(0)} MB, exit ${ov.exitCode}`,
    );
  } finally {
    await server.stop();
  }
  return result;
}

// ---------------------------------------------------------------------------------------------------------------
// Judging and reporting

/** The fewest clients that reach 90% of the best throughput. */
function saturation(levels: Level[]): Level {
  const best = Math.max(...levels.map((l) => l.imagesPerSecond));
  return levels.find((l) => l.imagesPerSecond >= 0.9 * best) ?? levels[levels.length - 1];
}

interface Verdict {
  what: string;
  measured: string;
  met: boolean;
}

function judge(r: ModelResult): { verdicts: Verdict[]; offlineIps: number; offlineMs: number } {
  const offlineIps = median(r.offline.map((x) => x.imagesPerSecond));
  const offlineMs = median(r.offline.map((x) => x.msPerBatch));
  const sat = saturation(r.levels);
  const best = r.levels.reduce((a, b) => (b.imagesPerSecond > a.imagesPerSecond ? b : a));
  const below = r.levels.filter((l) => l.concurrency < sat.concurrency);
  const bound = 2 * (offlineMs + r.maxDelayMs);
  const errors = (l: Level) => Object.entries(l.statuses).reduce((n, [k, v]) => n + (k === "200" ? 0 : v), 0) + l.badAnswers;
  const v: Verdict[] = [
    {
      what: "throughput at saturation >= 85% of offline",
      measured: `${best.imagesPerSecond.toFixed(2)} img/s (${best.concurrency} clients) / ${offlineIps.toFixed(2)} = ${((100 * best.imagesPerSecond) / offlineIps).toFixed(0)}%`,
      met: best.imagesPerSecond >= 0.85 * offlineIps,
    },
    {
      what: `p99 below saturation (< ${sat.concurrency} clients) <= 2 x (batch ${offlineMs.toFixed(1)} ms + delay ${r.maxDelayMs} ms) = ${bound.toFixed(1)} ms`,
      measured: below.length ? below.map((l) => `${l.concurrency}: ${l.p99Ms.toFixed(1)} ms`).join(", ") : "no level below saturation",
      met: below.every((l) => l.p99Ms <= bound),
    },
    {
      what: "no errors below saturation (and at every level: 128 clients < the default --max-queue 256)",
      measured: r.levels.map((l) => `${l.concurrency}: ${errors(l)}`).join(", "),
      met: below.every((l) => errors(l) === 0),
    },
  ];
  const ov = r.overload;
  if (ov) {
    const other = Object.entries(ov.statuses).filter(([k]) => k !== "200" && k !== "429");
    v.push({
      what: `4x overload (${ov.concurrency} clients, --max-queue ${ov.maxQueue}): only 429s`,
      measured: Object.entries(ov.statuses)
        .map(([k, n]) => `${k}: ${n}`)
        .join(", "),
      met: other.length === 0 && (ov.statuses["429"] ?? 0) > 0,
    });
    const growth = ov.rssLastQuarterMB - ov.rssFirstQuarterMB;
    v.push({
      what: `RSS flat over ${ov.requests} requests (last quarter's median within max(5%, 16 MB) of the first's)`,
      measured: `${ov.rssFirstQuarterMB.toFixed(0)} -> ${ov.rssLastQuarterMB.toFixed(0)} MB (${growth >= 0 ? "+" : ""}${growth.toFixed(1)} MB; min ${Math.min(...ov.rssMB).toFixed(0)}, max ${Math.max(...ov.rssMB).toFixed(0)})`,
      met: growth <= Math.max(0.05 * ov.rssFirstQuarterMB, 16),
    });
  }
  return { verdicts: v, offlineIps, offlineMs };
}

const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");

function report(raw: Raw): string {
  const out: string[] = [
    `# vgg serve under load (${raw.date.slice(0, 16)})`,
    "",
    `\`${raw.command}\`: ${raw.env.cores} cores (${raw.env.cpu}), node ${raw.env.node}, load average at the start ${(raw.env.loadavgStart as number[]).map((x) => x.toFixed(2)).join(" ")}. ` +
      "Closed loop on loopback: each client sends a batch-1 request (binary tensor data), waits for the answer, sends the next; the clients run in the bench process, on the same cores as the server. " +
      "Offline: `vgg bench infer --batch <max-batch>` (median batch time), run before each level and after the last. " +
      '"others CPU": what the rest of the machine used during the window, % of all cores (the noise each row suffered).',
    "",
  ];
  for (const r of raw.results) {
    const { verdicts, offlineIps, offlineMs } = judge(r);
    out.push(
      `## ${r.model} (${r.args.join(" ")}; ${r.fileMB} MB), --max-batch ${r.maxBatch} --max-delay-ms ${r.maxDelayMs}`,
      "",
      `Offline, batch ${r.maxBatch}, before each level and after the last: ${r.offline.map((x) => f2(x.imagesPerSecond)).join(" / ")} img/s (median ${f2(offlineIps)}; ${f1(offlineMs)} ms per batch; others used ${r.offline.map((x) => x.othersCpuPct.toFixed(0)).join(" / ")}% CPU).`,
      "",
      "| clients | img/s | vs offline (runs before/after) | p50 ms | p90 ms | p99 ms | max ms | mean batch | answers | non-200 | server CPU (cores) | others CPU | server RSS MB |",
      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    r.levels.forEach((l, i) => {
      const near = (r.offline[i].imagesPerSecond + r.offline[i + 1].imagesPerSecond) / 2;
      const non200 = Object.entries(l.statuses)
        .filter(([k]) => k !== "200")
        .map(([k, n]) => `${n}x${k}`);
      out.push(
        `| ${l.concurrency} | ${f2(l.imagesPerSecond)} | ${((100 * l.imagesPerSecond) / near).toFixed(0)}% | ${f1(l.p50Ms)} | ${f1(l.p90Ms)} | ${f1(l.p99Ms)} | ${f1(l.maxMs)} | ${f2(l.meanBatch)} | ${l.answered} | ${non200.length ? non200.join(" ") : 0}${l.badAnswers ? ` (+${l.badAnswers} bad)` : ""} | ${f2(l.serverCpuCores)} | ${l.othersCpuPct.toFixed(0)}% | ${l.serverRssMB.toFixed(0)} |`,
      );
    });
    if (r.overload) {
      const ov = r.overload;
      out.push(
        "",
        `Overload: ${ov.concurrency} clients (4 x the ${ov.concurrency / 4} that saturate), --max-queue ${ov.maxQueue}, each resending at once on a 429: ` +
          `${ov.requests} requests in ${f1(ov.seconds)} s, ${Object.entries(ov.statuses)
            .map(([k, n]) => `${n} x ${k}`)
            .join(", ")}; goodput ${f2(ov.goodputImagesPerSecond)} img/s, p99 of the 200s ${f1(ov.p99OkMs)} ms; ` +
          `server RSS every 100 answers, after ${ov.warmupRequests} uncounted requests (${f1(ov.rssFreshMB)} MB before them): first quarter ${f1(ov.rssFirstQuarterMB)} MB, last quarter ${f1(ov.rssLastQuarterMB)} MB (medians); SIGTERM exit ${ov.exitCode}.`,
      );
    }
    out.push("", "| target | measured | met |", "|---|---|---|");
    for (const v of verdicts) out.push(`| ${v.what} | ${v.measured} | ${v.met ? "yes" : "**no**"} |`);
    out.push("");
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const f = parseFlags(process.argv.slice(2));
  const known = new Set([
    "quick",
    "models",
    "concurrency",
    "seconds",
    "warmup",
    "max-batch",
    "max-delay-ms",
    "overload-requests",
    "overload-queue",
    "overload-warmup",
    "threads",
    "out",
    "from",
  ]);
  for (const k of f.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}`);
  const from = f.get("from");
  if (from) {
    const text = report(JSON.parse(readFileSync(from, "utf8")) as Raw);
    writeFileSync(from.replace(/\.json$/, ".md"), `${text}\n`);
    process.stdout.write(`${text}\n`);
    return;
  }
  const quick = f.has("quick");
  const names = (f.get("models") ?? "vgg11_bn,small").split(",");
  for (const n of names) if (!MODELS[n]) throw new Error(`unknown model '${n}' (known: ${Object.keys(MODELS).join(", ")})`);
  const maxBatch = intFlag(f, "max-batch", 8);
  const o: RunOptions = {
    concurrency: (f.get("concurrency") ?? "1,8,32,128").split(",").map(Number),
    maxBatch,
    maxDelayMs: intFlag(f, "max-delay-ms", 5),
    threads: intFlag(f, "threads", availableParallelism()),
    overloadRequests: intFlag(f, "overload-requests", quick ? 2000 : 10_000),
    overloadQueue: intFlag(f, "overload-queue", maxBatch),
    overloadWarmup: intFlag(f, "overload-warmup", quick ? 200 : 1000),
    seconds: f.has("seconds") ? intFlag(f, "seconds", 0) : undefined,
    warmup: f.has("warmup") ? intFlag(f, "warmup", 0) : undefined,
  };
  if (o.concurrency.some((c) => !Number.isInteger(c) || c < 1)) throw new Error("--concurrency takes positive integers, e.g. 1,8,32");
  const outDir = resolve(ROOT, f.get("out") ?? (quick ? mkdtempSync(join(tmpdir(), "vgg-bench-serve-")) : "bench/results"));
  const raw: Raw = {
    date: new Date().toISOString(),
    command: `node dist/bench/serve.js ${process.argv.slice(2).join(" ")}`.trim(),
    env: { node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, loadavgStart: loadavg(), options: o },
    results: [],
  };
  const dir = mkdtempSync(join(tmpdir(), "vgg-bench-serve-models-"));
  const t0 = performance.now();
  try {
    for (const n of names) raw.results.push(await benchModel(MODELS[n](quick), o, dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  raw.env.loadavgEnd = loadavg();
  raw.env.minutes = (performance.now() - t0) / 60_000;
  const text = report(raw);
  const stamp = raw.date.slice(0, 16).replace(":", "");
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, `serve-${stamp}.json`), `${JSON.stringify(raw, null, 1)}\n`);
  writeFileSync(join(outDir, `serve-${stamp}.md`), `${text}\n`);
  process.stdout.write(`${text}\n`);
  log(`${((performance.now() - t0) / 60_000).toFixed(1)} min; wrote ${join(outDir, `serve-${stamp}.{json,md}`)}`);
}

await main();
