/**
 * Fuzzing harness for every file format the project reads (issue "Reliability"): valid seed files are mutated
 * (truncation, bit flips, lying lengths and sizes, wrong dtypes, duplicate keys, deep nesting, forbidden pickle
 * globals, corrupt zip directories ...) and each mutant goes through the readers in a worker process with a time
 * limit and allocation tracking. Every mutant must be accepted or rejected with a one-line VggError naming it.
 *
 *   node dist/bench/fuzz.js [--per-format N] [--formats pth-zip,npy,...] [--seed S] [--jobs J] [--timeout-ms T]
 *        [--keep DIR] [--index I[,J...]] [--reasons] [--json]
 *
 * Deterministic from --seed: mutant I of a format is the same file on every run (--formats F --index I remakes
 * just that one). Failing files are copied to --keep (default $TMPDIR/vgg-fuzz-failures-<seed>). Exits 1 when
 * anything crashed, hung, allocated more than its file justifies, or was refused with a message that is not one
 * printable line. --reasons lists the commonest rejections.
 * --jobs J runs J worker processes per format (default 1: the machine may be busy with other work).
 *
 * "serve" is a target too (bench/fuzz/serve.ts): --serve-requests N (default --per-format) malformed requests to
 * `vgg serve`'s server, with slow clients beside them; --formats serve runs only that, --index with it remakes
 * those requests. Exits 1 on any 5xx, unanswered request, hang, crash or wrong answer.
 */
import { FORMATS, type Format } from "./fuzz/formats.js";
import { clean, type FormatStats, formatTable, runFuzz } from "./fuzz/run.js";
import { runServeFuzz, type ServeFuzzStats, serveTable } from "./fuzz/serve.js";
import { intFlag, parseFlags } from "./timing.js";

const f = parseFlags(process.argv.slice(2));
const known = new Set(["per-format", "formats", "seed", "jobs", "timeout-ms", "keep", "index", "json", "reasons", "serve-requests"]);
for (const k of f.keys()) if (!known.has(k)) throw new Error(`unknown option --${k}`);
const targets = f.get("formats")?.split(",") ?? [...FORMATS, "serve"];
for (const x of targets) {
  if (x !== "serve" && !FORMATS.includes(x as Format)) throw new Error(`unknown format '${x}' (known: ${FORMATS.join(", ")}, serve)`);
}
const formats = targets.filter((x) => x !== "serve") as Format[];
const json = f.has("json");
const index = f.get("index");
const indices = index?.split(",").map((x) => {
  if (!/^\d+$/.test(x)) throw new Error(`--index takes mutant numbers (I or I,J,...), got '${index}'`);
  return Number(x);
});

const stats = await runFuzz({
  perFormat: intFlag(f, "per-format", 1000),
  formats,
  seed: intFlag(f, "seed", 1),
  jobs: intFlag(f, "jobs", 1),
  timeoutMs: intFlag(f, "timeout-ms", 5000),
  keepDir: f.get("keep"),
  indices,
  onFormatDone: (s: FormatStats) => {
    if (!json) process.stderr.write(`${s.format}: ${s.files} files in ${s.seconds.toFixed(1)} s\n`);
  },
});

let serve: ServeFuzzStats | undefined;
if (targets.includes("serve")) {
  const requests = intFlag(f, "serve-requests", intFlag(f, "per-format", 1000));
  serve = await runServeFuzz({
    requests,
    seed: intFlag(f, "seed", 1),
    indices,
    onProgress: (done, total) => {
      if (!json) process.stderr.write(`serve: ${done} of ${total} requests\n`);
    },
  });
  if (!json)
    process.stderr.write(`serve: ${serve.requests} requests, ${serve.slowClients} slow clients in ${serve.seconds.toFixed(1)} s\n`);
}

if (json) console.log(JSON.stringify(serve ? [...stats, serve] : stats, null, 2));
else {
  if (stats.length > 0) console.log(formatTable(stats));
  for (const s of stats) {
    if (!f.has("reasons")) break;
    const top = Object.entries(s.reasons).sort((a, b) => b[1] - a[1]);
    console.log(`\n${s.format}: ${top.length} kinds of rejection; commonest:`);
    for (const [reason, n] of top.slice(0, 10)) console.log(`  ${String(n).padStart(5)}  ${reason}`);
  }
  for (const s of stats) {
    if (s.slowest) console.log(`${s.format}: slowest #${s.slowest.index} ${s.slowest.ms.toFixed(0)} ms (${s.slowest.what})`);
  }
  for (const s of stats) {
    for (const x of s.failures.slice(0, 20)) {
      console.log(
        `\n${s.format} #${x.index} ${x.kind} (seed ${x.seed}; ${x.what})\n  ${x.message.split("\n").join("\n  ")}\n  file: ${x.file ?? "-"}`,
      );
    }
    if (s.failures.length > 20) console.log(`\n${s.format}: ${s.failures.length - 20} more failures`);
  }
}
if (serve && !json) {
  console.log(`\nserve: ${serve.requests} malformed requests to vgg serve's server\n${serveTable(serve)}`);
  if (f.has("reasons")) {
    const top = Object.entries(serve.reasons).sort((a, b) => b[1] - a[1]);
    console.log(`\nserve: ${top.length} kinds of refusal; commonest:`);
    for (const [reason, n] of top.slice(0, 15)) console.log(`  ${String(n).padStart(5)}  ${reason}`);
  }
  for (const x of serve.failures.slice(0, 20)) console.log(`\nserve #${x.index} ${x.kind} (${x.group}: ${x.what})\n  ${x.message}`);
  if (serve.failures.length > 20) console.log(`\nserve: ${serve.failures.length - 20} more failures`);
}
process.exitCode = clean(stats) && (serve?.failures.length ?? 0) === 0 ? 0 : 1;
