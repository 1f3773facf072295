/**
 * A short run of the fuzzing harness (bench/fuzz.ts; `npm run fuzz` does 10,000 files per format): every format the
 * project reads, mutated, must be accepted or rejected with a one-line VggError naming the file - no crash, no hang,
 * no allocation beyond what the file justifies. And the harness must see each of those failures when one happens.
 * Then the serve fuzz (bench/fuzz/serve.ts; 10,000 requests in `npm run fuzz`): malformed requests to `vgg serve`'s
 * server get a 4xx, never a 5xx, a drop or a hang, and the server answers as before afterwards.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FORMATS } from "../bench/fuzz/formats.js";
import { checkFiles, type FormatStats, formatTable, runFuzz } from "../bench/fuzz/run.js";
import {
  ALLOWED,
  exchange,
  makeServeSeeds,
  runServeFuzz,
  serveTable,
  startServeChild,
  validJson,
  writeToyModel,
} from "../bench/fuzz/serve.js";

const PER_FORMAT = 150;

test("the harness sees crashes, hangs, worker deaths, oversize allocations and unprintable messages", async () => {
  const dir = mkdtempSync(join(tmpdir(), "vgg-fuzz-self-"));
  try {
    const kinds = [
      "accept",
      "reject",
      "reject-unnamed",
      "reject-garbled",
      "throw",
      "deep",
      "alloc",
      "alloc-buffer",
      "hang",
      "abort",
      "accept",
    ];
    const files = kinds.map((k, i) => {
      const f = join(dir, `${i}.txt`);
      writeFileSync(f, k);
      return f;
    });
    const got = await checkFiles("selftest", files, 1500);
    const flags = (r: (typeof got)[number]) =>
      ("oversize" in r && r.oversize ? "+oversize" : "") + ("garbled" in r && r.garbled ? "+garbled" : "");
    const summary = got.map((r) => `${r.outcome}${flags(r)}`);
    assert.deepEqual(summary, [
      "accepted",
      "rejected",
      "crash",
      "rejected+garbled",
      "crash",
      "crash",
      "accepted+oversize",
      "accepted+oversize",
      "hang",
      "died",
      "accepted",
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test(`${PER_FORMAT} mutated files per format: no crash, hang, oversize allocation or unprintable message`, {
  timeout: 120_000,
}, async () => {
  const keepDir = mkdtempSync(join(tmpdir(), "vgg-fuzz-failures-"));
  let stats: FormatStats[] = [];
  try {
    stats = await runFuzz({ perFormat: PER_FORMAT, seed: 7, jobs: 1, timeoutMs: 5000, keepDir });
    const table = formatTable(stats);
    const failures = stats.flatMap((s) =>
      s.failures.map((f) => `${s.format} #${f.index} ${f.kind} (${f.what}): ${f.message.split("\n")[0]}`),
    );
    assert.deepEqual(failures, [], `${table}\n${failures.join("\n")}\n(failing files kept in ${keepDir})`);
    assert.deepEqual(
      stats.map((s) => s.format),
      [...FORMATS],
    );
    for (const s of stats) {
      assert.equal(s.files, PER_FORMAT, `${s.format}: every file ran`);
      assert.equal(s.rejected + s.accepted, PER_FORMAT, `${s.format}: every file accepted or rejected\n${table}`);
      // Not vacuous: the mutations reach the readers' checks, and not only one trivial check.
      assert.ok(s.rejected >= PER_FORMAT / 3, `${s.format}: only ${s.rejected} of ${PER_FORMAT} rejected\n${table}`);
      const kinds = Object.keys(s.reasons).length;
      assert.ok(kinds >= 3, `${s.format}: only ${kinds} kinds of rejection: ${JSON.stringify(s.reasons)}`);
    }
  } finally {
    if (stats.every((s) => s.failures.length === 0)) rmSync(keepDir, { recursive: true, force: true });
  }
});

test("400 malformed requests to vgg serve's server, slow clients beside them: no 5xx, drop, hang or crash; same answer after", {
  timeout: 120_000,
}, async () => {
  const st = await runServeFuzz({ requests: 400, seed: 7, lanes: 4, slow: 6 });
  const table = serveTable(st);
  const failures = st.failures.map((f) => `#${f.index} ${f.kind} (${f.group}: ${f.what}): ${f.message.split("\n")[0]}`);
  assert.deepEqual(failures, [], `${table}\n${failures.join("\n")}`);
  for (const k of Object.keys(st.statuses)) assert.ok(k === "dropped" || ALLOWED.includes(Number(k)), `outcome ${k}\n${table}`);
  assert.deepEqual(st.after, { alive: true, ready: true, sameAnswer: true, exitCode: 0 }, table);
  // Not vacuous: the mutants reach the codec's checks, the routes and the limits, and the valid ones are answered.
  for (const k of ["200", "400", "404", "405", "413"]) assert.ok((st.statuses[k] ?? 0) > 0, `no ${k}\n${table}`);
  assert.ok(Object.keys(st.reasons).length >= 30, `only ${Object.keys(st.reasons).length} kinds of refusal\n${table}`);
  assert.ok(st.validChecked >= 5, table);
  assert.equal(
    Object.values(st.slowOutcomes).reduce((a, b) => a + b, 0),
    6,
    table,
  );
});

test("a request waiting its turn longer than the request timeout is answered; a stalled client is still dropped", async () => {
  // The socket's idle timeout (the request timeout) used to drop a request waiting in the queue: no bytes move then.
  const dir = mkdtempSync(join(tmpdir(), "vgg-serve-wait-"));
  const model = join(dir, "toy.onnx");
  writeToyModel(model);
  const child = await startServeChild(model, ["--timeout-ms", "500", "--max-batch", "64", "--max-delay-ms", "1500"]);
  try {
    const valid = validJson(await makeServeSeeds());
    const [waited, stalled] = await Promise.all([
      exchange(child.port, valid, 10_000),
      exchange(child.port, { ...valid, send: "stall", upTo: valid.bytes.length - 100 }, 10_000),
    ]);
    assert.equal(waited.status, 200, `${waited.end} after ${waited.ms.toFixed(0)} ms`);
    assert.ok(waited.ms >= 1400, `answered after ${waited.ms.toFixed(0)} ms: the batch did not wait its --max-delay-ms`);
    assert.ok(stalled.end === "closed" || stalled.status === 408, `the stalled client: ${stalled.end} ${stalled.status}`);
    assert.ok(stalled.ms < 4000, `the stalled client was held ${stalled.ms.toFixed(0)} ms`);
  } finally {
    child.proc.kill("SIGTERM");
    await child.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
