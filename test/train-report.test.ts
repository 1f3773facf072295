/**
 * report.md's time to accuracy (--test-every-epoch), DAWNBench's measure: the epochs' own seconds summed to the end of
 * the first epoch at an accuracy, the per-epoch test not counted.
 */
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import type { Scores } from "../src/eval/metrics.js";
import { timeTo, writeReport } from "../src/train/report.js";
import type { EpochMetrics } from "../src/train/types.js";
import { tmp } from "./helpers.js";

const dir = tmp("vgg-report-");
after(() => rmSync(dir, { recursive: true, force: true }));

const scores = (top1: number): Scores => ({ n: 100, top1, top5: 1, top1Error: 1 - top1, top5Error: 0, loss: 0.5 });

function epoch(k: number, seconds: number, test: number, emaTest?: number): EpochMetrics {
  return {
    epoch: k,
    step: 10 * k,
    lr: 0.01,
    trainLoss: 1,
    trainTop1: 0.5,
    val: null,
    imagesPerSecond: 100,
    seconds,
    test: scores(test),
    ...(emaTest === undefined ? {} : { emaTest: scores(emaTest) }),
  };
}

test("timeTo: the first epoch at the accuracy and the seconds through it; null when never reached", () => {
  const h = [epoch(1, 10, 0.5), epoch(2, 20, 0.92), epoch(3, 30, 0.91), epoch(4, 40, 0.95)];
  assert.deepEqual(
    timeTo(h, 0.9, (m) => m.test?.top1),
    { epoch: 2, seconds: 30 },
  );
  assert.deepEqual(
    timeTo(h, 0.95, (m) => m.test?.top1),
    { epoch: 4, seconds: 100 },
  );
  assert.equal(
    timeTo(h, 0.96, (m) => m.test?.top1),
    null,
  );
  assert.equal(
    timeTo(h, 0.5, (m) => m.emaTest?.top1),
    null,
  );
});

test("report.md: a row per whole percent from 90% to the best, weights and EMA side by side", () => {
  const h = [epoch(1, 61, 0.885, 0.87), epoch(2, 60, 0.905, 0.915), epoch(3, 59.6, 0.93, 0.921)];
  const md = readFileSync(writeReport(dir, "t", "setup", h, null, 3, 200), "utf8");
  const table = md.slice(md.indexOf("| test top-1 | weights | EMA |"));
  const rows = table.split("\n").slice(2, 6);
  assert.deepEqual(rows, [
    "| 90% | 2:01 (epoch 2) | 2:01 (epoch 2) |",
    "| 91% | 3:01 (epoch 3) | 2:01 (epoch 2) |",
    "| 92% | 3:01 (epoch 3) | 3:01 (epoch 3) |",
    "| 93% | 3:01 (epoch 3) | - |",
  ]);
  assert.match(md, /\| 3 \| 0\.0100 \| 1\.0000 \| 50\.00 \| - \| - \| - \| 93\.00 \| 92\.10 \| 100 \|/);
  // Below 90% there is nothing to time.
  const low = readFileSync(writeReport(dir, "t", "setup", [epoch(1, 10, 0.4)], null, 1, 10), "utf8");
  assert.doesNotMatch(low, /Time to test top-1/);
});
