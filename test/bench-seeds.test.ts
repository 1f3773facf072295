/**
 * `npm run bench:seeds` (bench/seeds.ts) through the real script on a tiny synthetic set: each seed's run is the
 * recipe with --seed N, the table's numbers are the runs' own result.json, mean/sd/range are computed from them, and a
 * finished set is read again rather than retrained.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { tmp, toyData } from "./helpers.js";

const dir = tmp("vgg-seeds-");
after(() => rmSync(dir, { recursive: true, force: true }));

const SCRIPT = join(import.meta.dirname, "..", "bench", "seeds.js");
const data = `npy:${toyData(dir, 200, 1)};${toyData(dir, 64, 2)}`;
const RECIPE = [
  ...["--arch", "vgg11_bn", "--head", "compact", "--width-divisor", "16", "--batch-size", "32", "--lr", "0.05", "--workers", "0"],
  ...["--data", data, "--val", "0", "--epochs", "1", "--ema", "0.9", "--test-protocol", "dense"],
];

const seeds = (extra: string[]) => spawnSync(process.execPath, [SCRIPT, "--seeds", "3,5", "--dir", join(dir, "runs"), ...extra, "--", ...RECIPE], { encoding: "utf8" });

test("bench:seeds: a row per seed from its result.json, then mean, sd and range; a finished set is not retrained", { timeout: 300_000 }, () => {
  const r = seeds([]);
  assert.equal(r.status, 0, r.stderr);
  const md = readFileSync(join(dir, "runs", "seeds.md"), "utf8");
  assert.equal(r.stdout.trim(), md.trim());
  assert.match(md, /--epochs 1 --ema 0\.9 --test-protocol dense --seed N/);
  assert.match(md, /\| seed \| test top-1 % \| dense top-1 % \| EMA top-1 % \| EMA dense top-1 % \| train min \|/);
  const results = [3, 5].map((s) => JSON.parse(readFileSync(join(dir, "runs", `seed-${s}`, "result.json"), "utf8")));
  // The seed reached the run: its config says so.
  const cfg = readFileSync(join(dir, "runs", "seed-5.log"), "utf8");
  assert.match(cfg, /seed 5/);
  const pct = (x: number) => (100 * x).toFixed(2);
  const rows = md.split("\n").filter((l) => /^\| (3|5|mean|sd|range) \|/.test(l));
  assert.equal(rows.length, 5);
  for (const [k, res] of results.entries()) {
    const cells = rows[k].split("|").map((c) => c.trim());
    assert.deepEqual(cells.slice(2, 6), [pct(res.test.top1), pct(res.testProtocol.top1), pct(res.ema.test.top1), pct(res.ema.testProtocol.top1)]);
  }
  const t = results.map((res) => 100 * res.test.top1);
  const mean = (t[0] + t[1]) / 2;
  assert.equal(rows[2].split("|")[2].trim(), mean.toFixed(2));
  assert.equal(rows[3].split("|")[2].trim(), (Math.abs(t[0] - t[1]) / Math.SQRT2).toFixed(2));
  assert.equal(rows[4].split("|")[2].trim(), `${Math.min(...t).toFixed(2)}-${Math.max(...t).toFixed(2)}`);

  // Run again: read, not retrained (the runs' files untouched), the same table.
  const before = statSync(join(dir, "runs", "seed-3", "last.safetensors")).mtimeMs;
  const again = seeds(["--md", join(dir, "again.md")]);
  assert.equal(again.status, 0, again.stderr);
  assert.equal(readFileSync(join(dir, "again.md"), "utf8"), md);
  assert.equal(statSync(join(dir, "runs", "seed-3", "last.safetensors")).mtimeMs, before);
  assert.doesNotMatch(again.stderr, /training/);
});

test("bench:seeds refuses flags it sets itself and bad seed lists", () => {
  for (const [extra, msg] of [
    [["--", "--seed", "1"], /--seed is this script's to set/],
    [["--seeds", "1,1", "--"], /want distinct non-negative integers/],
    [[], /the recipe's vgg train flags go after --/],
  ] as const) {
    const r = spawnSync(process.execPath, [SCRIPT, ...extra], { encoding: "utf8" });
    assert.equal(r.status, 2);
    assert.match(r.stderr, msg);
  }
});
