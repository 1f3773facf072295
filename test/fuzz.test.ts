/**
 * A short run of the fuzzing harness (bench/fuzz.ts; `npm run fuzz` does 10,000 files per format): every format the
 * project reads, mutated, must be accepted or rejected with a one-line VggError naming the file - no crash, no hang,
 * no allocation beyond what the file justifies. And the harness must see each of those failures when one happens.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FORMATS } from "../bench/fuzz/formats.js";
import { checkFiles, type FormatStats, formatTable, runFuzz } from "../bench/fuzz/run.js";

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
