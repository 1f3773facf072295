/**
 * `vgg reproduce` end to end on a tiny budget (a few steps per run, a small test subset): the files, the tables'
 * shape, every protocol for every run, reuse of finished runs, and the page in Chromium.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { readIdxImages, readIdxLabels } from "../src/data/idx.js";
import { FASHION_MNIST_DIR } from "../src/data/spec.js";
import { writeNpy } from "../src/io/npy.js";
import { CHART_COUNT } from "../src/reproduce/html.js";
import type { ReproduceResults } from "../src/reproduce/results.js";
import { assertCleanError, ROOT, tmp, vgg } from "./helpers.js";
import { chromiumSkip, openReport } from "./report-browser.js";

const dir = tmp("vgg-reproduce-");
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const noData =
  !fs.existsSync(FASHION_MNIST_DIR) && `Fashion-MNIST not in ${FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist; CI installs it)`;
const out = join(dir, "r");
const tiny = ["--steps", "2", "--epochs", "1", "--test-images", "30", "--val", "100", "--width-divisor", "16", "--no-progress"];

test("vgg reproduce: seven runs, four protocols each, tables like the paper's, the report files", {
  skip: noData,
  timeout: 300_000,
}, async (t) => {
  const r = vgg(["reproduce", "--out", out, ...tiny], { timeout: 280_000 });
  assert.equal(r.status, 0, r.stderr);
  const res = JSON.parse(fs.readFileSync(join(out, "results.json"), "utf8")) as ReproduceResults;
  assert.deepEqual(
    res.configs.map((c) => `${c.name}@${c.trainScale}`),
    ["A@36", "A-LRN@36", "B@36", "C@36", "D@36", "E@36", "D@32:48"],
  );
  assert.deepEqual(
    res.configs.map((c) => c.depth),
    [11, 11, 13, 16, 16, 19, 16],
  );
  for (const c of res.configs) {
    assert.deepEqual(
      c.evals.map((e) => `${e.protocol}:${e.scales.length}`),
      ["single:1", "dense:1", "dense:3", "multicrop:3", "dense+multicrop:3"],
      c.name,
    );
    for (const e of c.evals) {
      assert.equal(e.n, 30);
      assert.ok(Math.abs(e.top1 + e.top1Error - 1) < 1e-9 && e.top5 >= e.top1);
    }
    assert.equal(c.confusion.length, 10);
    assert.equal(
      c.confusion.flat().reduce((a, b) => a + b, 0),
      30,
    );
    assert.ok(c.worst.every((w) => w.png.startsWith("data:image/png;base64,") && w.label !== w.predicted));
    assert.equal(c.epochs.length, 1);
    // B-E start from A's layers (the paper's rule); A and A-LRN from scratch.
    assert.equal(c.initFrom !== null, !c.name.startsWith("A"), `${c.name}: ${c.initFrom}`);
  }
  assert.deepEqual(
    res.findings.map((f) => f.id),
    ["depth", "lrn", "conv1x1", "jitter", "dense-multicrop"],
  );
  const md = fs.readFileSync(join(out, "report.md"), "utf8");
  const tables = md.split(/\n## /).filter((s) => s.includes("| config |"));
  const rowCounts = tables.map((s) => s.split("\n").filter((l) => /^\| (A|A-LRN|B|C|D|E) \|/.test(l)).length);
  assert.deepEqual(rowCounts.slice(0, 3), [7, 7, 28], md);
  assert.match(md, /29\.6 \/ 10\.4/);
  assert.match(r.stdout, /wrote .*report\.html/);
  // Two steps per net leave some at chance (clearly above it needs 26.4% top-1 on 30 images): said at the top.
  assert.match(md.split("\n")[2], /^> \*\*Warning:\*\* .* not clearly above chance: .*Train longer/);
  assert.match(r.stdout, /\nwarning: .* not clearly above chance/);
  assert.ok(res.findings.some((f) => f.agrees === null && /at chance/.test(f.undecided ?? "")));

  await t.test("the page renders in Chromium", { skip: chromiumSkip }, async () => {
    const page = await openReport(join(out, "report.html"), CHART_COUNT, join(ROOT, "test-output", "reproduce-cli-report.png"));
    assert.equal(page.canvases.length, CHART_COUNT);
    for (const c of page.canvases) assert.ok(c.n > 0.01 * c.w * c.h, `canvas ${c.id} looks blank`);
    assert.ok(page.images.length > 0 && page.images.every((w) => w === 28));
    assert.deepEqual(page.blocked, []);
    assert.deepEqual(page.errors, []);
  });

  await t.test("a second run reuses the finished runs; bad flags are one-line errors", () => {
    const again = vgg(["reproduce", "--out", out, ...tiny, "--configs", "A", "--jitter-config", "none"], { timeout: 120_000 });
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /reusing the finished run/);
    assertCleanError(vgg(["reproduce", "--out", out, "--configs", "A,F"]), /--configs: unknown 'F'/);
    assertCleanError(vgg(["reproduce", "--out", out, "--jitter", "48:32"]), /--jitter/);
    assertCleanError(vgg(["reproduce", "--out", out, "--configs", "B", "--epochs", "1"]), /init-from-a needs config A/);
  });
});

test("vgg reproduce --budget-minutes plans epochs and test images from measured speed (a 700-image subset)", {
  skip: noData,
  timeout: 300_000,
}, () => {
  const x = readIdxImages(join(FASHION_MNIST_DIR, "t10k-images-idx3-ubyte.gz"));
  const y = readIdxLabels(join(FASHION_MNIST_DIR, "t10k-labels-idx1-ubyte.gz"));
  const px = 28 * 28;
  const part = (lo: number, hi: number, name: string) => {
    writeNpy(join(dir, `${name}-x.npy`), {
      dtype: "uint8",
      shape: [hi - lo, 28, 28],
      data: (x.data as Uint8Array).slice(lo * px, hi * px),
    });
    writeNpy(join(dir, `${name}-y.npy`), {
      dtype: "int64",
      shape: [hi - lo],
      data: BigInt64Array.from(y.subarray(lo, hi), (v) => BigInt(v)),
    });
    return `${join(dir, `${name}-x.npy`)},${join(dir, `${name}-y.npy`)}`;
  };
  const data = `npy:${part(0, 500, "train")};${part(500, 700, "test")}`;
  const o = join(dir, "budget");
  const r = vgg(
    [
      "reproduce",
      "--out",
      o,
      "--data",
      data,
      "--budget-minutes",
      "0.5",
      "--configs",
      "A,B",
      "--jitter-config",
      "none",
      "--width-divisor",
      "16",
      "--val",
      "50",
      "--no-progress",
    ],
    { timeout: 280_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const m = /plan: (\d+) epochs per run .* protocols on (\d+) test images/.exec(r.stdout);
  assert.ok(m, r.stdout);
  const res = JSON.parse(fs.readFileSync(join(o, "results.json"), "utf8")) as ReproduceResults;
  assert.equal(res.settings.epochs, Number(m[1]));
  assert.ok(res.settings.epochs >= 1);
  assert.equal(res.settings.testImages, Math.min(200, Number(m[2])));
  assert.deepEqual(
    res.configs.map((c) => c.epochs.length),
    [res.settings.epochs, res.settings.epochs],
  );
  assert.equal(res.settings.budgetMinutes, 0.5);
});
